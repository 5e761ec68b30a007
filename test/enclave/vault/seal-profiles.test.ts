/**
 * Record sealing on the two firmware token profiles (enclave/token-profiles.ts), on every token
 * and on the emulator through p11-kit-client.so:
 * - ctr-hmac's construction (enclave/vault/seal-ctr-hmac.ts) is AES-256-CTR (NIST SP 800-38A,
 *   counter block IV || 1, 2, ...) and HMAC-SHA256(AAD || IV || C || AL) truncated to 16 bytes (RFC 7518
 *   §5.2.2.1), checked byte for byte against node:crypto with token keys of known value;
 * - a record sealed under one profile does not open as the other (format byte or key swapped),
 *   and a ctr-hmac blob with any byte changed, truncated or moved to another id is refused;
 *   both profiles' blobs have one length;
 * - the profile is chosen at provisioning (the strongest the token meets) and kept: a later start
 *   on a token that meets both keeps ctr-hmac, and a vault whose keys are of a profile the token
 *   no longer meets (gcm-ecdh keys behind p11-kit's client) is refused, never switched.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EnclaveFault, Integrity, PlatformFault } from '../../../enclave/api/codes.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { ensureTokenKeys, findSealKey, LABEL_P256, LABEL_SEAL, LABEL_SEAL_CTR, LABEL_SEAL_MAC } from '../../../enclave/vault/keys.ts';
import { HEADER_LEN, KIND_RECORD, KIND_TOMBSTONE, SEALED_FORMAT_CTR_HMAC, seal, unseal } from '../../../enclave/vault/record.ts';
import type { VaultRecord } from '../../../enclave/vault/record.ts';
import { ctrHmacDecrypt, ctrHmacEncrypt } from '../../../enclave/vault/seal-ctr-hmac.ts';
import { thrownBy } from '../../helpers/errors.ts';
import { describeTokens, freshToken, USER_PIN } from '../../helpers/tokens.ts';
import type { FreshToken } from '../../helpers/tokens.ts';

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

/** A session token object of known value (CKA_TOKEN false): the test can compute what the token should. */
function knownKey(t: FreshToken, keyType: number, value: Buffer, usage: number): number {
  const s = t.module.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  const h = t.module.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: keyType },
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_VALUE, value },
    { type: usage, value: true },
  ]);
  return P.handleNumber(h);
}

const faultCode = (fn: () => unknown) => (thrownBy(fn) as EnclaveFault).code;

describeTokens(
  'record sealing per token profile',
  (kind) => {
    it('ctr-hmac is AES-256-CTR then HMAC-SHA256/128 over AAD || IV || C || AL, byte for byte', () => {
      const t = freshToken(kind);
      const token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      const encKey = randomBytes(32);
      const macKey = randomBytes(32);
      const k = { enc: knownKey(t, P.CKK_AES, encKey, P.CKA_ENCRYPT), mac: knownKey(t, P.CKK_GENERIC_SECRET, macKey, P.CKA_SIGN) };
      for (const len of [0, 1, 15, 16, 17, 300]) {
        const iv = randomBytes(12);
        const aad = randomBytes(40);
        const pt = randomBytes(len);
        const out = ctrHmacEncrypt(token, k, iv, aad, pt);
        const ct = createCipheriv('aes-256-ctr', encKey, Buffer.concat([iv, Buffer.from([0, 0, 0, 1])])).update(pt);
        const al = Buffer.alloc(8);
        al.writeBigUInt64BE(BigInt(aad.length * 8));
        const tag = createHmac('sha256', macKey).update(Buffer.concat([aad, iv, ct, al])).digest().subarray(0, 16);
        expect(Buffer.from(out).toString('hex'), `length ${len}`).toBe(Buffer.concat([ct, tag]).toString('hex'));
        expect(Buffer.from(ctrHmacDecrypt(token, k, iv, aad, out)!).equals(pt)).toBe(true);
        // A changed AAD, IV or byte of C || T, or a truncation: no plaintext.
        expect(ctrHmacDecrypt(token, k, iv, Buffer.concat([aad, Buffer.of(0)]), out)).toBeNull();
        expect(ctrHmacDecrypt(token, k, randomBytes(12), aad, out)).toBeNull();
        const bad = Uint8Array.from(out);
        bad[Math.floor(Math.random() * bad.length)]! ^= 0x40;
        expect(ctrHmacDecrypt(token, k, iv, aad, bad)).toBeNull();
        expect(ctrHmacDecrypt(token, k, iv, aad, out.subarray(0, out.length - 1))).toBeNull();
      }
    });

    it('a record sealed under one profile does not open as the other; ctr-hmac blobs refuse any change', () => {
      const t = freshToken(kind);
      const token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN });
      const ctr = ensureTokenKeys(new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN, profiles: ['ctr-hmac'] }), true);
      expect(ctr.profile).toBe('ctr-hmac');
      const h = { kind: KIND_RECORD, suite: 1, epoch: 3, version: 2 };
      const blob = seal(token, ctr.seal, rid, h, record);
      expect(blob[4]).toBe(SEALED_FORMAT_CTR_HMAC);
      expect(unseal(token, ctr.seal, rid, blob).record).toEqual(record);
      expect(unseal(token, ctr.seal, rid, seal(token, ctr.seal, rid, { ...h, kind: KIND_TOMBSTONE }, null)).record).toBeNull();
      // Any byte changed, a truncation, another id: refused as not opening.
      for (let i = 0; i < blob.length; i += 7) {
        const bad = Uint8Array.from(blob);
        bad[i]! ^= 1;
        expect(faultCode(() => unseal(token, ctr.seal, rid, bad)), `byte ${i}`).toBe(Integrity.SealedRecordInvalid);
      }
      expect(faultCode(() => unseal(token, ctr.seal, rid, blob.subarray(0, blob.length - 1)))).toBe(Integrity.SealedRecordInvalid);
      expect(faultCode(() => unseal(token, ctr.seal, new TextEncoder().encode('record-2'), blob))).toBe(Integrity.SealedRecordInvalid);
      if (kind === 'p11kit') return; // no AES-GCM through the 0.24.1 client: the gcm-ecdh side is for the device tokens
      const gcmKey = token.generateAesKey(LABEL_SEAL);
      const gcmBlob = seal(token, gcmKey, rid, h, record);
      expect(gcmBlob.length).toBe(blob.length);
      expect(unseal(token, gcmKey, rid, gcmBlob).record).toEqual(record);
      // Each profile's blob under the other's key, and each with the other's format byte.
      expect(faultCode(() => unseal(token, gcmKey, rid, blob))).toBe(Integrity.SealedRecordInvalid);
      expect(faultCode(() => unseal(token, ctr.seal, rid, gcmBlob))).toBe(Integrity.SealedRecordInvalid);
      const relabelled = Uint8Array.from(blob);
      relabelled[4] = gcmBlob[4]!;
      expect(faultCode(() => unseal(token, gcmKey, rid, relabelled))).toBe(Integrity.SealedRecordInvalid);
      expect(faultCode(() => unseal(token, ctr.seal, rid, relabelled))).toBe(Integrity.SealedRecordInvalid);
      const gcmRelabelled = Uint8Array.from(gcmBlob);
      gcmRelabelled[4] = SEALED_FORMAT_CTR_HMAC;
      expect(faultCode(() => unseal(token, ctr.seal, rid, gcmRelabelled))).toBe(Integrity.SealedRecordInvalid);
      expect(faultCode(() => unseal(token, gcmKey, rid, gcmRelabelled))).toBe(Integrity.SealedRecordInvalid);
      expect(HEADER_LEN).toBe(35);
    });

    it('provisions on the strongest profile the token meets and keeps the one its keys are of', () => {
      const t = freshToken(kind);
      const as = (profiles?: ('gcm-ecdh' | 'ctr-hmac')[]) => new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN, ...(profiles && { profiles }) });
      const first = ensureTokenKeys(as(), true);
      expect(first.profile).toBe(kind === 'p11kit' ? 'ctr-hmac' : 'gcm-ecdh');
      const token = as();
      expect(findSealKey(token)).toEqual(first.seal);
      if (kind === 'p11kit') {
        expect(token.findKey(LABEL_SEAL)).toBeNull();
        expect(token.findKey(LABEL_P256)).toBeNull(); // the P-256 server key is derived in the firmware
        return;
      }
      // The same vault behind a transport that meets ctr-hmac only: refused, not switched.
      const refused = thrownBy(() => ensureTokenKeys(as(['ctr-hmac']), false)) as EnclaveFault;
      expect(refused).toBeInstanceOf(EnclaveFault);
      expect(refused.code).toBe(PlatformFault.TokenError);
      expect(refused.message).toBe("token: the vault's keys are of token profile gcm-ecdh, which this token does not meet (it meets: ctr-hmac)");
      // A token holding both profiles' sealing keys is refused.
      as().generateAesKey(LABEL_SEAL_CTR, true);
      expect(faultCode(() => ensureTokenKeys(as(), false))).toBe(PlatformFault.TokenError);
    });

    it('a ctr-hmac vault stays ctr-hmac on a token that meets both', () => {
      if (kind === 'p11kit') return; // meets ctr-hmac only: the case above
      const t = freshToken(kind);
      const as = (profiles?: ('gcm-ecdh' | 'ctr-hmac')[]) => new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN, ...(profiles && { profiles }) });
      const first = ensureTokenKeys(as(['ctr-hmac']), true);
      const again = ensureTokenKeys(as(), false);
      expect(again.profile).toBe('ctr-hmac');
      expect(again.seal).toEqual(first.seal);
      const token = as();
      expect([token.findKey(LABEL_SEAL), token.findKey(LABEL_P256)]).toEqual([null, null]);
      expect(token.findKey(LABEL_SEAL_CTR)).not.toBeNull();
      expect(token.findKey(LABEL_SEAL_MAC)).not.toBeNull();
      // The counter-mode key encrypts only.
      const s = t.module.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION);
      const attr = (type: number) => t.module.C_GetAttributeValue(s, P.handleOf(token.findKey(LABEL_SEAL_CTR)!), [{ type }])[0]!.value[0];
      expect([attr(P.CKA_ENCRYPT), attr(P.CKA_DECRYPT), attr(P.CKA_SENSITIVE), attr(P.CKA_EXTRACTABLE)]).toEqual([1, 0, 1, 0]);
    });
  },
  { p11kit: true },
);

it('the firmware tests run on a token profile (a control: ensureTokenKeys refuses a token that meets none)', () => {
  const t = freshToken('emulator');
  const token = new Pkcs11Token({ module: t.module, label: t.label, userPin: USER_PIN, profiles: [] });
  expect(faultCode(() => ensureTokenKeys(token, true))).toBe(PlatformFault.TokenError);
});
