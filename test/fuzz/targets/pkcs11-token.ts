/**
 * Fuzz target: the token calls that cross the PKCS#11 boundary: the firmware's `Pkcs11Token`
 * (enclave/token-pkcs11.ts) over the emulator token (hsm/tokens/emulator/), with the arguments
 * an attacker can reach (host-supplied sealed blobs into C_Decrypt, client-supplied points into
 * C_DeriveKey / CKM_ECDH1_DERIVE, data into C_Sign), plus raw module calls with fuzzed
 * templates. Skipped when the emulator is not there.
 *
 * The keys are planted with C_CreateObject (known values, CKA_SENSITIVE, not extractable): an
 * AES-256 key, an HMAC generic secret and a P-256 private key under the firmware's labels.
 * Input: a program of up to 8 operations, each an opcode byte and its arguments (length-prefixed
 * byte strings, so mutations keep the structure):
 *   0 decryptGcm(iv, aad, ct)   1 encryptGcm(iv, aad, pt)   2 hmac(hash bit, data)
 *   3 ecdhX(point)              4 findKey(label)            5 random(n, u16)
 *   6 C_GetAttributeValue(a planted key, fuzzed attribute types)
 *   7 C_FindObjectsInit(fuzzed template), C_FindObjects, C_FindObjectsFinal
 * Oracle: Token methods fail only with TokenError, module calls only with Pkcs11Error (the
 * CKR_ contract); every result agrees with node:crypto computing the same thing with the planted
 * key (AES-GCM open/seal, HMAC, ECDH x-coordinate, and an invalid point is refused); random(n)
 * gives n bytes; no planted key value ever comes out of any call (a sensitive CKA_VALUE is
 * CKR_ATTRIBUTE_SENSITIVE); after the program the token still answers a known-answer HMAC.
 */
import { createCipheriv, createDecipheriv, createECDH, createHash, createHmac } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as P from '../../../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import type { KeyHandle } from '../../../enclave/token.ts';
import { TokenError } from '../../../enclave/token.ts';
import { LABEL_DERIVE, LABEL_P256, LABEL_SEAL } from '../../../enclave/vault/keys.ts';
import { describeError, equalBytes, SecretScanner, violation } from '../lib/oracle.ts';

export const name = 'pkcs11-token';
export const weight = 2;
export const maxInputLength = 2048;

const EMULATOR = resolve(import.meta.dirname, '../../../hsm/tokens/emulator/module.ts');
const OPEN = resolve(import.meta.dirname, '../../../hsm/tokens/open.ts');
const LABEL = 'bkv-fuzz-pkcs11';
const SO_PIN = 'fuzz-so-pin-0000';
const USER_PIN = 'fuzz-user-pin-1111';

const sha = (s: string) => new Uint8Array(createHash('sha256').update(s).digest());
export const PKCS11_PLANTED = {
  aes: sha('bkv-fuzz/pkcs11/aes'),
  hmac: Uint8Array.of(...sha('bkv-fuzz/pkcs11/hmac'), ...sha('bkv-fuzz/pkcs11/hmac-2')),
  ec: sha('bkv-fuzz/pkcs11/p256'),
};
const scanner = new SecretScanner([
  { name: 'the planted AES key', bytes: PKCS11_PLANTED.aes },
  { name: 'the planted HMAC key', bytes: PKCS11_PLANTED.hmac },
  { name: 'the planted P-256 private key', bytes: PKCS11_PLANTED.ec },
]);

interface Ctx {
  module: P.Pkcs11;
  token: Pkcs11Token;
  session: P.Handle;
  keys: { aes: KeyHandle; hmac: KeyHandle; ec: KeyHandle };
}

let ctx: Ctx | null = null;
let last: string | undefined;

export function outcome(): string | undefined {
  return last;
}

/** The planted keys: each a token object with a label; the secret and private ones sensitive and never extractable. */
function plant(m: P.Pkcs11, s: P.Handle): void {
  const e = createECDH('prime256v1');
  e.setPrivateKey(PKCS11_PLANTED.ec);
  const id = { type: P.CKA_ID, value: Buffer.from('bkv-fuzz-p256') };
  const ecParams = { type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) };
  const on = (type: number) => ({ type, value: true });
  const objects: [cls: number, keyType: number, label: string, attrs: P.Template][] = [
    [P.CKO_SECRET_KEY, P.CKK_AES, LABEL_SEAL, [{ type: P.CKA_VALUE, value: Buffer.from(PKCS11_PLANTED.aes) }, on(P.CKA_ENCRYPT), on(P.CKA_DECRYPT)]],
    [P.CKO_SECRET_KEY, P.CKK_GENERIC_SECRET, LABEL_DERIVE, [{ type: P.CKA_VALUE, value: Buffer.from(PKCS11_PLANTED.hmac) }, on(P.CKA_SIGN)]],
    [P.CKO_PRIVATE_KEY, P.CKK_EC, LABEL_P256, [ecParams, { type: P.CKA_VALUE, value: Buffer.from(PKCS11_PLANTED.ec) }, on(P.CKA_DERIVE), id]],
    [P.CKO_PUBLIC_KEY, P.CKK_EC, LABEL_P256, [id, ecParams, { type: P.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, 65]), e.getPublicKey()]) }]],
  ];
  for (const [cls, keyType, label, attrs] of objects) {
    const secret = cls !== P.CKO_PUBLIC_KEY;
    m.C_CreateObject(s, [
      { type: P.CKA_CLASS, value: cls },
      { type: P.CKA_KEY_TYPE, value: keyType },
      ...attrs,
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: secret },
      { type: P.CKA_LABEL, value: label },
      ...(secret ? [on(P.CKA_SENSITIVE), { type: P.CKA_EXTRACTABLE, value: false }] : []),
    ]);
  }
}

export async function setup(): Promise<void> {
  const { EmulatorModule } = (await import(pathToFileURL(EMULATOR).href)) as { EmulatorModule: new (o: Record<string, unknown>) => object };
  const { ensureToken } = (await import(pathToFileURL(OPEN).href)) as { ensureToken(m: P.Pkcs11, label: string, so: string, user: string): void };
  const module = P.normalizedModule(new EmulatorModule({ pinKdfIterations: 1000 })) as unknown as P.Pkcs11;
  module.C_Initialize();
  ensureToken(module, LABEL, SO_PIN, USER_PIN);
  const slot = module.C_GetSlotList(true).find((s) => P.trimLabel(module.C_GetTokenInfo(s).label) === LABEL)!;
  const session = module.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  module.C_Login(session, P.CKU_USER, USER_PIN);
  plant(module, session);
  const token = new Pkcs11Token({ module, label: LABEL, userPin: USER_PIN });
  const find = (l: string) => {
    const h = token.findKey(l);
    if (h === null) throw new Error(`planted key ${l} not found`);
    return h;
  };
  ctx = { module, token, session, keys: { aes: find(LABEL_SEAL), hmac: find(LABEL_DERIVE), ec: find(LABEL_P256) } };
}

export async function teardown(): Promise<void> {
  if (!ctx) return;
  try {
    ctx.token.close();
    ctx.module.C_Finalize();
  } catch {
    // gone already
  }
  ctx = null;
}

export async function reset(): Promise<void> {
  await teardown();
  await setup();
}

/** Reads the input: bytes, and length-prefixed byte strings. */
class Cursor {
  i = 0;
  constructor(readonly b: Uint8Array) {}
  get done(): boolean {
    return this.i >= this.b.length;
  }
  u8(): number {
    return this.b[this.i++] ?? 0;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  bytes(): Uint8Array {
    const n = this.u8();
    const out = this.b.slice(this.i, this.i + n);
    this.i += n;
    return out;
  }
}

/** Runs a Token call: its value, or null for a TokenError; anything else is a violation. */
function tok<T>(what: string, f: () => T): T | null {
  try {
    return f();
  } catch (e) {
    if (e instanceof TokenError) return null;
    violation('untyped-error', `Pkcs11Token.${what} threw ${describeError(e)}`);
  }
}

/** Runs a module call: its value, or null for a Pkcs11Error. */
function mod<T>(what: string, f: () => T): T | null {
  try {
    return f();
  } catch (e) {
    if (e instanceof P.Pkcs11Error) return null;
    violation('untyped-error', `${what} threw ${describeError(e)}`);
  }
}

function nodeGcm(dir: 'enc' | 'dec', iv: Uint8Array, aad: Uint8Array, data: Uint8Array): Uint8Array | null {
  try {
    if (dir === 'enc') {
      const c = createCipheriv('aes-256-gcm', PKCS11_PLANTED.aes, iv);
      c.setAAD(aad);
      return new Uint8Array(Buffer.concat([c.update(data), c.final(), c.getAuthTag()]));
    }
    if (data.length < 16) return null;
    const d = createDecipheriv('aes-256-gcm', PKCS11_PLANTED.aes, iv);
    d.setAAD(aad);
    d.setAuthTag(data.subarray(data.length - 16));
    return new Uint8Array(Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]));
  } catch {
    return null;
  }
}

function nodeEcdhX(point: Uint8Array): Uint8Array | null {
  try {
    const e = createECDH('prime256v1');
    e.setPrivateKey(PKCS11_PLANTED.ec);
    return new Uint8Array(e.computeSecret(point));
  } catch {
    return null;
  }
}

const ATTRS = [P.CKA_VALUE, P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_LABEL, P.CKA_CLASS, P.CKA_KEY_TYPE, P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_ID, P.CKA_EC_POINT, P.CKA_EC_PARAMS, P.CKA_DERIVE, P.CKA_SIGN, P.CKA_ENCRYPT];

function fuzzTemplate(c: Cursor): P.Template {
  const n = c.u8() % 6;
  const out: P.Template = [];
  for (let i = 0; i < n; i++) {
    const t = c.u8();
    const type = t < 224 ? ATTRS[t % ATTRS.length]! : (t << 24) | (c.u8() << 8);
    const k = c.u8() % 4;
    const value = k === 0 ? Buffer.from(c.bytes()) : k === 1 ? c.u8() % 2 === 1 : k === 2 ? c.u16() : new TextDecoder().decode(c.bytes());
    out.push({ type: type >>> 0, value });
  }
  return out;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!ctx) await setup();
  if (!ctx) return;
  const { token, module, session, keys } = ctx;
  const c = new Cursor(new Uint8Array(data));
  const ops: string[] = [];
  for (let step = 0; step < 8 && !c.done; step++) {
    const op = c.u8() % 8;
    switch (op) {
      case 0: {
        const iv = c.bytes(), aad = c.bytes(), ct = c.bytes();
        const r = tok('decryptGcm', () => token.decryptGcm(keys.aes, iv, aad, ct));
        const expect = iv.length === 12 ? nodeGcm('dec', iv, aad, ct) : null;
        if (r && (!expect || !equalBytes(r, expect))) violation('token-integrity', `decryptGcm opened what AES-GCM under the key does not (iv ${iv.length}, ct ${ct.length} bytes)`);
        if (!r && expect) violation('token-oracle', 'decryptGcm refused a valid ciphertext');
        if (r) scanner.scan('a decryptGcm result', r);
        ops.push(`dec:${r ? 'ok' : 'refused'}`);
        break;
      }
      case 1: {
        const iv = c.bytes(), aad = c.bytes(), pt = c.bytes();
        const r = tok('encryptGcm', () => token.encryptGcm(keys.aes, iv, aad, pt));
        if (r) {
          const expect = nodeGcm('enc', iv, aad, pt);
          if (!expect || !equalBytes(r, expect)) violation('token-oracle', `encryptGcm disagrees with AES-256-GCM under the key (iv ${iv.length} bytes)`);
          scanner.scan('an encryptGcm result', r);
        } else if (iv.length === 12) violation('token-oracle', 'encryptGcm refused a 12-byte IV');
        ops.push(`enc:${r ? 'ok' : 'refused'}`);
        break;
      }
      case 2: {
        const hash = c.u8() & 1 ? 'SHA-512' : 'SHA-256';
        const d = c.bytes();
        const r = tok('hmac', () => token.hmac(keys.hmac, hash, d));
        const expect = new Uint8Array(createHmac(hash === 'SHA-256' ? 'sha256' : 'sha512', PKCS11_PLANTED.hmac).update(d).digest());
        if (!r || !equalBytes(r, expect)) violation('token-oracle', `hmac(${hash}) ${r ? 'disagrees with HMAC under the key' : 'failed'}`);
        ops.push(`hmac:${hash}`);
        break;
      }
      case 3: {
        const point = c.bytes();
        const r = tok('ecdhX', () => token.ecdhX!(keys.ec, point));
        const expect = point.length === 33 || point.length === 65 ? nodeEcdhX(point) : null;
        if (r && (!expect || !equalBytes(r, expect))) violation('token-oracle', `ecdhX answered for a point node:crypto ${expect ? 'computes differently' : 'refuses'} (${point.length} bytes, prefix ${point[0]})`);
        if (!r && expect) violation('token-oracle', 'ecdhX refused a valid point');
        if (r) scanner.scan('an ecdhX result', r);
        ops.push(`ecdh:${r ? 'ok' : 'refused'}`);
        break;
      }
      case 4: {
        const l = new TextDecoder().decode(c.bytes());
        const h = tok('findKey', () => token.findKey(l));
        const want = l === LABEL_SEAL ? keys.aes : l === LABEL_DERIVE ? keys.hmac : l === LABEL_P256 ? keys.ec : undefined;
        if (want !== undefined && h !== want) violation('token-oracle', `findKey(${l}) did not find the planted key`);
        ops.push(`find:${h === null ? 'none' : 'found'}`);
        break;
      }
      case 5: {
        const n = c.u16() % 8193;
        const r = tok('random', () => token.random(n));
        if (r && r.length !== n) violation('token-oracle', `random(${n}) gave ${r.length} bytes`);
        ops.push('random');
        break;
      }
      case 6: {
        const which = [keys.aes, keys.hmac, keys.ec][c.u8() % 3]!;
        const template = fuzzTemplate(c).map((a) => ({ type: a.type }));
        const r = mod('C_GetAttributeValue', () => module.C_GetAttributeValue(session, P.handleOf(which), template));
        for (const a of r ?? []) if (Buffer.isBuffer(a.value)) scanner.scan(`C_GetAttributeValue(0x${a.type.toString(16)})`, a.value);
        ops.push(`getattr:${r ? 'ok' : 'refused'}`);
        break;
      }
      default: {
        const template = fuzzTemplate(c);
        const r = mod('C_FindObjectsInit', () => module.C_FindObjectsInit(session, template));
        if (r !== null) {
          mod('C_FindObjects', () => module.C_FindObjects(session, 16));
          mod('C_FindObjectsFinal', () => module.C_FindObjectsFinal(session));
        }
        ops.push(`findobj:${r === null ? 'refused' : 'ok'}`);
        break;
      }
    }
  }
  // The token still serves.
  const kat = tok('hmac (known answer)', () => token.hmac(keys.hmac, 'SHA-256', new TextEncoder().encode('kat')));
  if (!kat || !equalBytes(kat, new Uint8Array(createHmac('sha256', PKCS11_PLANTED.hmac).update('kat').digest()))) {
    violation('not-serving', `the token no longer answers a known-answer HMAC after ${ops.join(',')}`);
  }
  last = [...new Set(ops)].sort().join(',');
}
