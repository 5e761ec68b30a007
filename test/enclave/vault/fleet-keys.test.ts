/**
 * One set of vault keys per fleet (enclave/vault/keys.ts fleet mode, enclave/fleet/vault-keys.ts),
 * on every token and on the emulator through p11-kit-client.so:
 * - two tokens given the same fleet secret and charter derive the same public keys (the HPKE key
 *   clients pin, the OPAQUE server key of every suite), hold no P-256 token key pair, and a record
 *   sealed through one opens through the other;
 * - another secret or another charter gives other keys, and the record does not open there;
 * - a later start checks every key the token holds: a token of another fleet, a single vault's
 *   token, a token with one key of another fleet's, or with vault keys but no bkv-derive, is refused
 *   (Lifecycle.FleetKeysMismatch); a token missing keys on a provisioned start is NotProvisioned;
 *   a token that can not import is refused as a token fault;
 * - the values imported are HKDF-SHA256(fleet secret, "", label || charter hash || name) (checked
 *   with node:crypto's HKDF) and are zero once provisioning returns.
 * SoftHSM2 is one token per test process at a time (test/helpers/tokens.ts), so the two members'
 * tokens are opened one after the other: what one sealed is opened by the next.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import { EnclaveFault, Integrity, Lifecycle, PlatformFault } from '../../../enclave/api/codes.ts';
import { LABELS } from '../../../enclave/api/labels.ts';
import { encodeCharter } from '../../../enclave/fleet/ceremony.ts';
import { vaultKeyRoot } from '../../../enclave/fleet/vault-keys.ts';
import type { FleetVaultKeyRoot } from '../../../enclave/fleet/vault-keys.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { SUITE_IDS } from '../../../enclave/opaque/suite.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import type { Token } from '../../../enclave/token.ts';
import { deriveEnclaveKeys, ensureTokenKeys, FLEET_TOKEN_KEYS, LABEL_DERIVE, LABEL_OPRF, LABEL_P256 } from '../../../enclave/vault/keys.ts';
import { KIND_RECORD, seal, unseal } from '../../../enclave/vault/record.ts';
import type { VaultRecord } from '../../../enclave/vault/record.ts';
import { thrownBy } from '../../helpers/errors.ts';
import { describeTokens, freshToken, USER_PIN } from '../../helpers/tokens.ts';
import type { FreshToken, TokenKind } from '../../helpers/tokens.ts';

const rid = new TextEncoder().encode('record-1');
const record: VaultRecord = {
  status: 1,
  suite: 1,
  attemptLimit: 10,
  attemptsUsed: 3,
  registrationId: new Uint8Array(16).fill(7),
  ksf: new Uint8Array(0),
  opaqueRecord: new Uint8Array(192).fill(9),
  backupKey: new Uint8Array(32).fill(5),
  registeredAt: 1_700_000_000_000,
  pacing: 0,
  lastGuessAt: 0,
};

const charter = (fill: number) => ({ fleetId: new Uint8Array(16).fill(fill), founder: 0, identities: [1, 2, 3].map((i) => new Uint8Array(32).fill(fill + i)) });
const secret = randomBytes(32);
const ROOT = vaultKeyRoot(Uint8Array.from(secret), charter(10));
const OTHER_SECRET = vaultKeyRoot(Uint8Array.from(randomBytes(32)), charter(10));
const OTHER_CHARTER = vaultKeyRoot(Uint8Array.from(secret), charter(40));

const suites = new Map<SuiteId, Suite>();
beforeAll(async () => {
  for (const id of SUITE_IDS) suites.set(id, await fastSuite(id));
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const faultCode = (fn: () => unknown) => {
  const e = thrownBy(fn);
  expect(e).toBeInstanceOf(EnclaveFault);
  return (e as EnclaveFault).code;
};

const tokens = new Map<Pkcs11Token, FreshToken>();

function open(kind: TokenKind): Pkcs11Token {
  const t = freshToken(kind);
  const token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
  tokens.set(token, t);
  return token;
}

/** The same token opened again (a later start: a new session, nothing cached). */
function reopen(token: Pkcs11Token): Pkcs11Token {
  const t = tokens.get(token)!;
  return new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
}

/** A member's token provisioned in fleet mode: its public keys (HPKE, OPAQUE per suite) and a record it sealed. */
async function member(token: Token, root: FleetVaultKeyRoot) {
  const h = ensureTokenKeys(token, true, root);
  const keys = await deriveEnclaveKeys(token, h, suites);
  const pub = { e2e: hex(keys.e2e.publicKey), server: Object.fromEntries([...keys.server].map(([id, k]) => [id, hex(k.serverPublicKey)])) };
  const blob = seal(token, h.seal, rid, { kind: KIND_RECORD, suite: 1, epoch: 1, version: 1 }, record);
  return { h, keys, pub, blob };
}

describeTokens(
  'one set of vault keys per fleet',
  (kind) => {
    it('two tokens given one fleet secret and charter: the same public keys, no P-256 token key, records open across', async () => {
      const a = open(kind);
      const ma = await member(a, ROOT);
      expect(ma.h.created).toBe(true);
      expect(ma.h.p256).toBeUndefined();
      expect(a.findKey(LABEL_P256)).toBeNull();
      expect(Object.keys(ma.pub.server).sort()).toEqual([...SUITE_IDS].sort());
      // the P-256 server key came from bkv-derive in the firmware (no token Diffie-Hellman)
      expect(ma.keys.server.get('P256-SHA256')!.serverDh).toBeUndefined();
      const b = open(kind);
      const mb = await member(b, ROOT);
      expect(mb.pub).toEqual(ma.pub);
      expect(hex(mb.keys.keyCheck)).toBe(hex(ma.keys.keyCheck));
      expect(hex(mb.keys.indexKey)).toBe(hex(ma.keys.indexKey));
      for (const id of SUITE_IDS) expect(hex(mb.keys.server.get(id)!.oprfSeed)).toBe(hex(ma.keys.server.get(id)!.oprfSeed));
      expect(unseal(b, mb.h.seal, rid, ma.blob).record).toEqual(record);
      expect(unseal(b, mb.h.seal, rid, mb.blob).record).toEqual(record);
      // another token given another secret, or another charter: other keys, and A's record does not open
      for (const root of [OTHER_SECRET, OTHER_CHARTER]) {
        const c = open(kind);
        const mc = await member(c, root);
        expect(mc.pub.e2e).not.toBe(ma.pub.e2e);
        for (const id of SUITE_IDS) expect(mc.pub.server[id]).not.toBe(ma.pub.server[id]);
        expect(faultCode(() => unseal(c, mc.h.seal, rid, ma.blob))).toBe(Integrity.SealedRecordInvalid);
      }
    });

    it('a later start checks the keys: the same fleet passes; another fleet, another charter or a missing key is refused', () => {
      const t = open(kind);
      const first = ensureTokenKeys(t, true, ROOT);
      // a later start (a new session on the token), provisioned: the same handles, nothing created
      const u = reopen(t);
      const again = ensureTokenKeys(u, false, ROOT);
      expect({ ...again, created: true }).toEqual({ ...first, created: true });
      expect(again.created).toBe(false);
      for (const root of [OTHER_SECRET, OTHER_CHARTER]) {
        expect(faultCode(() => ensureTokenKeys(u, false, root))).toBe(Lifecycle.FleetKeysMismatch);
        expect(faultCode(() => ensureTokenKeys(u, true, root))).toBe(Lifecycle.FleetKeysMismatch);
      }
      // a provisioned start on a token without keys: not provisioned, and nothing imported
      const empty = open(kind);
      expect(faultCode(() => ensureTokenKeys(empty, false, ROOT))).toBe(Lifecycle.NotProvisioned);
      expect(empty.findKey(LABEL_DERIVE)).toBeNull();
    });

    it("a single vault's token is refused, and so is a token with one key of another fleet's or keys without bkv-derive", () => {
      const single = open(kind);
      ensureTokenKeys(single, true);
      expect(faultCode(() => ensureTokenKeys(single, true, ROOT))).toBe(Lifecycle.FleetKeysMismatch);
      expect(faultCode(() => ensureTokenKeys(single, false, ROOT))).toBe(Lifecycle.FleetKeysMismatch);
      // bkv-derive of this fleet, bkv-oprf of another's: refused at bkv-oprf
      const mixed = open(kind);
      const value = (root: FleetVaultKeyRoot, name: string, len: number) => new Uint8Array(hkdfSync('sha256', root.fleetSecret, new Uint8Array(0), Buffer.concat([Buffer.from(LABELS.fleetVaultKey), root.charterHash, Buffer.from(name)]), len));
      mixed.importHmacKey(LABEL_DERIVE, value(ROOT, LABEL_DERIVE, 32));
      mixed.importHmacKey(LABEL_OPRF, value(OTHER_SECRET, LABEL_OPRF, 64));
      const e = thrownBy(() => ensureTokenKeys(mixed, true, ROOT)) as EnclaveFault;
      expect(e.code).toBe(Lifecycle.FleetKeysMismatch);
      expect(e.message).toContain(LABEL_OPRF);
      // vault keys without bkv-derive (never how a member imports): refused before any import
      const headless = open(kind);
      headless.importHmacKey(LABEL_OPRF, value(ROOT, LABEL_OPRF, 64));
      expect(faultCode(() => ensureTokenKeys(headless, true, ROOT))).toBe(Lifecycle.FleetKeysMismatch);
      expect(headless.findKey(LABEL_DERIVE)).toBeNull();
    });

    it('imports HKDF-SHA256(fleet secret, "", label || charter hash || name) and leaves the values zero', () => {
      const t = open(kind);
      const seen: { label: string; value: Uint8Array; copy: string }[] = [];
      const spy = new Proxy(t, {
        get(target, k) {
          const v = Reflect.get(target, k, target) as unknown;
          if (k === 'importAesKey' || k === 'importHmacKey') {
            return (label: string, value: Uint8Array, ...rest: unknown[]) => {
              seen.push({ label, value, copy: hex(value) });
              return (v as (...a: unknown[]) => number).call(target, label, value, ...rest);
            };
          }
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      const h = ensureTokenKeys(spy, true, ROOT);
      const specs = FLEET_TOKEN_KEYS[h.profile];
      expect(seen.map((s) => s.label)).toEqual(specs.map((s) => s.label));
      const hash = createHash('sha256').update(LABELS.fleetCharter).update(encodeCharter(charter(10))).digest();
      expect(hex(ROOT.charterHash)).toBe(hash.toString('hex'));
      for (const [i, s] of seen.entries()) {
        const want = hkdfSync('sha256', secret, new Uint8Array(0), Buffer.concat([Buffer.from('bkv/fleet/vault-key/v1'), hash, Buffer.from(s.label)]), specs[i]!.length);
        expect(s.copy, s.label).toBe(Buffer.from(want).toString('hex'));
        expect(s.value.length, s.label).toBe(specs[i]!.length);
        expect(s.value.every((x) => x === 0), `${s.label} wiped`).toBe(true);
      }
    });

    it('a token that can not create a key from its value is refused as a token fault', () => {
      const t = open(kind);
      const { importAesKey: _a, importHmacKey: _h, ...rest } = Object.fromEntries(
        ['findKey', 'generateAesKey', 'generateHmacKey', 'encryptGcm', 'decryptGcm', 'encryptEcb', 'profiles', 'hmac', 'random', 'destroyAllKeys'].map((k) => [k, (t as unknown as Record<string, (...a: unknown[]) => unknown>)[k]!.bind(t)]),
      ) as Record<string, unknown>;
      const e = thrownBy(() => ensureTokenKeys(rest as unknown as Token, true, ROOT)) as EnclaveFault;
      expect(e.code).toBe(PlatformFault.TokenError);
      expect(e.message).toContain('C_CreateObject');
      expect(t.findKey(LABEL_DERIVE)).toBeNull();
    });
  },
  { p11kit: true },
);
