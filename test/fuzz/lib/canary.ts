/**
 * Fuzzing: the planted canaries. A token whose key objects have known values (the sealing key,
 * the OPRF root, the derivation root and the P-256 server key), a deterministic random source,
 * and the list of every secret the enclave holds or derives from them, plus the canary backup
 * keys and passwords of the records the fuzz vault plants. No byte of any of these may ever
 * appear in anything the enclave emits.
 *
 * The token has the optional EC calls (enclave/token.ts), so the P-256 server key lives in it and
 * its Diffie-Hellman crosses the token boundary (enclave/vault/token-dh.ts), as on a PKCS#11 token.
 * Test-only accessor: `CanaryToken.secretValues()` exposes the key objects, which the enclave
 * can not read back through the token interface. Also the fuzz vaults' in-memory NVRAM region
 * (`FuzzNvram`).
 */
import { createCipheriv, createDecipheriv, createECDH, createHash, createHmac } from 'node:crypto';
import { deriveEnclaveKeys, LABEL_DERIVE, LABEL_OPRF, LABEL_P256, LABEL_SEAL } from '../../../enclave/vault/keys.ts';
import type { KeyHandle, Token } from '../../../enclave/token.ts';
import type { Nvram } from '../../../enclave/platform.ts';
import { TokenError } from '../../../enclave/token.ts';
import { SUITE_IDS } from '../../../enclave/opaque/suite.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { deriveOprfKey } from '../../../enclave/opaque/derive.ts';

const te = new TextEncoder();
const sha256 = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
const sha512 = (s: string): Uint8Array => new Uint8Array(createHash('sha512').update(s).digest());

/** The planted token key values (fixed, so seeds sealed to the enclave key stay valid across runs). */
export const PLANTED_KEYS: Readonly<Record<string, Uint8Array>> = Object.freeze({
  [LABEL_SEAL]: sha256('bkv-fuzz/canary/token/seal'),
  [LABEL_OPRF]: sha512('bkv-fuzz/canary/token/oprf'),
  [LABEL_DERIVE]: sha256('bkv-fuzz/canary/token/derive'),
  /** The P-256 private scalar of the OPAQUE P256-SHA256 server key (below the group order). */
  [LABEL_P256]: sha256('bkv-fuzz/canary/token/p256'),
});

/** The operator secret of the fuzz vault (its SHA-256 is provisioned); no seed carries it. */
export const OPERATOR_SECRET = sha256('bkv-fuzz/canary/operator-secret');

/** A deterministic random source: AES-256-CTR keystream keyed by a label and a seed. */
export function drbg(label: string, seed: number | string): (n: number) => Uint8Array {
  const key = sha256(`bkv-fuzz/drbg/${label}/${seed}`);
  const c = createCipheriv('aes-256-ctr', key, new Uint8Array(16));
  return (n: number) => new Uint8Array(c.update(new Uint8Array(n)));
}

/**
 * An in-memory token with the same semantics as the test MemoryToken (sensitive keys behind
 * handles), whose keys are planted (known values) instead of random.
 */
export class CanaryToken implements Token {
  private readonly objects = new Map<KeyHandle, { label: string; kind: 'aes' | 'hmac' | 'ec'; value: Buffer }>();
  private nextHandle = 1;
  constructor(private readonly rng: (n: number) => Uint8Array) {}

  /** Test-only: the value of every key object (the canary checks). */
  secretValues(): { label: string; value: Uint8Array }[] {
    return [...this.objects.values()].map((o) => ({ label: o.label, value: new Uint8Array(o.value) }));
  }
  findKey(label: string): KeyHandle | null {
    for (const [h, o] of this.objects) if (o.label === label) return h;
    return null;
  }
  private create(label: string, kind: 'aes' | 'hmac' | 'ec', len: number): KeyHandle {
    const planted = PLANTED_KEYS[label];
    const value = Buffer.from(planted && planted.length === len ? planted : this.rng(len));
    const h = this.nextHandle++;
    this.objects.set(h, { label, kind, value });
    return h;
  }
  generateAesKey(label: string): KeyHandle {
    return this.create(label, 'aes', 32);
  }
  generateHmacKey(label: string, len: number): KeyHandle {
    return this.create(label, 'hmac', len);
  }
  /** CKM_EC_KEY_PAIR_GEN on P-256 (the private scalar planted). */
  generateEcKeyPair(label: string): KeyHandle {
    return this.create(label, 'ec', 32);
  }
  ecPublicKey(key: KeyHandle): Uint8Array {
    const e = createECDH('prime256v1');
    e.setPrivateKey(this.key(key, 'ec'));
    return new Uint8Array(e.getPublicKey(null, 'uncompressed'));
  }
  /** CKM_ECDH1_DERIVE, CKD_NULL: x(k·P); a point not on the curve is CKR_GENERAL_ERROR, as in SoftHSM2. */
  ecdhX(key: KeyHandle, point: Uint8Array): Uint8Array {
    if (point.length !== 33 && point.length !== 65) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    const e = createECDH('prime256v1');
    e.setPrivateKey(this.key(key, 'ec'));
    try {
      return new Uint8Array(e.computeSecret(point));
    } catch {
      throw new TokenError('CKR_GENERAL_ERROR');
    }
  }
  private key(h: KeyHandle, kind: 'aes' | 'hmac' | 'ec'): Buffer {
    const o = this.objects.get(h);
    if (!o) throw new TokenError('CKR_OBJECT_HANDLE_INVALID');
    if (o.kind !== kind) throw new TokenError('CKR_KEY_TYPE_INCONSISTENT');
    return o.value;
  }
  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    if (iv.length !== 12) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    const c = createCipheriv('aes-256-gcm', this.key(key, 'aes'), iv);
    c.setAAD(aad);
    return new Uint8Array(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
  }
  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    if (iv.length !== 12) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    if (ct.length < 16) throw new TokenError('CKR_ENCRYPTED_DATA_LEN_RANGE');
    const d = createDecipheriv('aes-256-gcm', this.key(key, 'aes'), iv);
    d.setAAD(aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    try {
      return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
    } catch {
      throw new TokenError('CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac(hash === 'SHA-256' ? 'sha256' : 'sha512', this.key(key, 'hmac')).update(data).digest());
  }
  random(n: number): Uint8Array {
    return this.rng(n);
  }
  destroyAllKeys(): void {
    for (const o of this.objects.values()) o.value.fill(0);
    this.objects.clear();
  }
}

/** An NVRAM region in memory (the fuzz vaults' own, so they depend on no shared test helper). */
export class FuzzNvram implements Nvram {
  data: Uint8Array = new Uint8Array(0);
  writes = 0;
  constructor(readonly size = 256) {}
  read(): Uint8Array {
    return Uint8Array.from(this.data);
  }
  write(d: Uint8Array): void {
    if (d.length > this.size) throw new Error('NVRAM region overflow');
    this.data = Uint8Array.from(d);
    this.writes++;
  }
}

/** One secret to look for, by name. */
export interface Secret {
  name: string;
  bytes: Uint8Array;
}

/** The canary records every enclave fuzz vault plants (record id, suite, password, backup key). */
export interface CanaryRecord {
  label: string;
  recordId: Uint8Array;
  suite: SuiteId;
  password: Uint8Array;
  backupKey: Uint8Array;
  attemptLimit: number;
}

export const CANARY_A: CanaryRecord = Object.freeze({
  label: 'canary-a',
  recordId: te.encode('canary-a'),
  suite: 'ristretto255-SHA512' as SuiteId,
  password: te.encode('bkv-fuzz canary password A (never sent in the clear)'),
  backupKey: sha256('bkv-fuzz/canary/backup-key/a'),
  attemptLimit: 10,
});

export const CANARY_B: CanaryRecord = Object.freeze({
  label: 'canary-b',
  recordId: te.encode('canary-b'),
  suite: 'P256-SHA256' as SuiteId,
  password: te.encode('bkv-fuzz canary password B (never sent in the clear)'),
  backupKey: sha256('bkv-fuzz/canary/backup-key/b'),
  attemptLimit: 3,
});

export const CANARIES: readonly CanaryRecord[] = [CANARY_A, CANARY_B];

/**
 * Every secret derived from the planted token keys, recomputed here from the known key values
 * (through the enclave's own derivation over a CanaryToken): OPRF seeds and server private keys
 * per suite, the per-record OPRF keys of the canaries, the HPKE input keying material and the
 * enclave's internal keys (fake-record, index, audit, audit seal).
 */
export async function derivedSecrets(): Promise<Secret[]> {
  const token = new CanaryToken(drbg('derived-secrets', 0));
  const seal = token.generateAesKey(LABEL_SEAL);
  const oprf = token.generateHmacKey(LABEL_OPRF, 64);
  const derive = token.generateHmacKey(LABEL_DERIVE, 32);
  const p256 = token.generateEcKeyPair(LABEL_P256);
  const suites = new Map<SuiteId, Suite>();
  for (const id of SUITE_IDS) suites.set(id, await fastSuite(id));
  const k = await deriveEnclaveKeys(token, { seal, oprf, derive, p256 }, suites);
  const out: Secret[] = [];
  for (const [id, sk] of k.server) {
    out.push({ name: `oprf-seed/${id}`, bytes: sk.oprfSeed });
    out.push({ name: `server-private-key/${id}`, bytes: sk.serverPrivateKey });
    for (const c of CANARIES) out.push({ name: `oprf-key/${id}/${c.label}`, bytes: deriveOprfKey(suites.get(id)!, sk.oprfSeed, c.recordId) });
  }
  out.push({ name: 'hpke-ikm', bytes: token.hmac(derive, 'SHA-256', te.encode('bkv/e2e-key')) });
  out.push({ name: 'fake-record-key', bytes: k.fakeKey });
  out.push({ name: 'index-key', bytes: k.indexKey });
  out.push({ name: 'audit-key', bytes: k.auditKey });
  out.push({ name: 'audit-seal-key', bytes: k.auditSealKey });
  for (const v of token.secretValues()) out.push({ name: `token/${v.label}`, bytes: v.value });
  return out;
}

let cached: Promise<Secret[]> | null = null;

/** The fixed secrets: token keys and derived keys, canary backup keys and passwords, operator secret. */
export function allCanarySecrets(): Promise<Secret[]> {
  cached ??= computeCanarySecrets();
  return cached;
}

async function computeCanarySecrets(): Promise<Secret[]> {
  const out = await derivedSecrets();
  for (const c of CANARIES) {
    out.push({ name: `backup-key/${c.label}`, bytes: c.backupKey });
    out.push({ name: `password/${c.label}`, bytes: c.password });
  }
  out.push({ name: 'operator-secret', bytes: OPERATOR_SECRET });
  return out;
}
