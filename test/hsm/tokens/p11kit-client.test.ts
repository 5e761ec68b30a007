/**
 * The p11kit token kind (test/helpers/tokens.ts): the emulator served by `bkv token serve` in a
 * child process, driven in this process through p11-kit-client.so 0.24.1 with pkcs11js. The
 * conformance suite runs on it too (test/hsm/tokens/conformance.test.ts); here: it answers as the
 * emulator in process does (infos, the mechanism list less what the client can not carry, output
 * buffers, errors with their code), graphene-pk11 as a client of it, and many calls in a row.
 * Skips when p11-kit-client.so is missing and says why; with CI=true it fails instead.
 */
import { createECDH, createHmac, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { beforeAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import { P11KIT_CLIENT_REFUSES } from '../../../hsm/tokens/p11kit/index.ts';
import { ckr, freshToken, skipReason, USER_PIN } from '../../helpers/tokens.ts';
import type { FreshToken } from '../../helpers/tokens.ts';

const why = skipReason('p11kit');
const b = (type: number, value: boolean): P.Attribute => ({ type, value });

/** A logged-in R/W session on the token (the login is per connection: this process's one). */
function session(t: FreshToken): P.Handle {
  const s = t.module.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  if (ckr(() => t.module.C_Login(s, P.CKU_USER, USER_PIN)) !== 'CKR_USER_ALREADY_LOGGED_IN') expect(t.module.C_GetSessionInfo(s).state).toBe(P.CKS_RW_USER_FUNCTIONS);
  return s;
}

function hmacKey(m: P.Pkcs11, s: P.Handle, value: Buffer): P.Handle {
  return m.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    b(P.CKA_TOKEN, false),
    b(P.CKA_SIGN, true),
    b(P.CKA_VERIFY, true),
    { type: P.CKA_VALUE, value },
  ]);
}

describe.skipIf(why !== null)(`the emulator through p11-kit-client.so${why ? ` (skipped: ${why})` : ''}`, () => {
  let t: FreshToken;
  beforeAll(() => {
    t = freshToken('p11kit');
  });

  it('answers as the emulator does: infos, the mechanism list less what the client can not carry, output buffers, errors, find', () => {
    const m = t.module;
    const direct = new EmulatorModule();
    direct.C_Initialize();
    const info = m.C_GetInfo();
    expect(info.cryptokiVersion).toEqual(direct.C_GetInfo().cryptokiVersion);
    expect(P.trimLabel(m.C_GetTokenInfo(t.slot).label)).toBe(t.label);
    expect(P.trimLabel(m.C_GetTokenInfo(t.slot).manufacturerID)).toBe(P.trimLabel(direct.C_GetInfo().manufacturerID));
    const want = direct.C_GetMechanismList(P.handleOf(0)).filter((x) => !P11KIT_CLIENT_REFUSES.includes(x));
    expect([...m.C_GetMechanismList(t.slot)].sort()).toEqual([...want].sort());
    for (const x of P11KIT_CLIENT_REFUSES) expect(direct.C_GetMechanismList(P.handleOf(0))).toContain(x);

    const s = session(t);
    expect(m.C_GetSessionInfo(s)).toMatchObject({ state: P.CKS_RW_USER_FUNCTIONS, flags: P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION });
    const kv = randomBytes(32);
    const key = hmacKey(m, s, kv);
    // The output buffer is the caller's: filled in place, its filled part returned.
    const out = Buffer.alloc(64, 0xee);
    m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, key);
    const mac = m.C_Sign(s, Buffer.from('hello'), out);
    expect(mac.toString('hex')).toBe(createHmac('sha256', kv).update('hello').digest('hex'));
    expect(out.subarray(32).every((x) => x === 0xee)).toBe(true);
    const rnd = Buffer.alloc(32);
    m.C_GenerateRandom(s, rnd);
    expect(rnd.equals(Buffer.alloc(32))).toBe(false);
    // Errors: the module's code.
    expect(ckr(() => m.C_Login(s, P.CKU_USER, USER_PIN))).toBe('CKR_USER_ALREADY_LOGGED_IN');
    expect(ckr(() => m.C_GenerateRandom(P.handleOf(999), Buffer.alloc(4)))).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(ckr(() => m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, P.handleOf(0xfff0)))).toBe('CKR_OBJECT_HANDLE_INVALID');
    // find: one handle or null without a count, a list with one
    m.C_FindObjectsInit(s, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, b(P.CKA_TOKEN, false)]);
    expect(m.C_FindObjects(s)).toEqual(key);
    expect(m.C_FindObjects(s)).toBeNull();
    m.C_FindObjectsFinal(s);
    m.C_CloseSession(s);
  });

  it('graphene-pk11 drives it: session, login, keys found by label, HMAC sign and verify, an EC key pair, random; AES-GCM and ECDH refused by the client', () => {
    const mod = new graphene.Module(t.module as unknown as ConstructorParameters<typeof graphene.Module>[0]);
    const slots = mod.getSlots(true);
    const slot = Array.from({ length: slots.length }, (_, i) => slots.items(i)).find((x) => x.getToken().label.trim() === t.label)!;
    expect(slot).toBeDefined();
    const session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    try {
      session.login(USER_PIN, graphene.UserType.USER);
    } catch (e) {
      expect(String(e)).toMatch(/CKR_USER_ALREADY_LOGGED_IN/);
    }
    const key = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, encrypt: true, decrypt: true, sensitive: true, extractable: false, label: 'g-aes', token: true });
    expect(key.getAttribute('sensitive')).toBe(true);
    const params = new graphene.AesGcmParams(randomBytes(12), Buffer.from('aad'), 128);
    expect(() => session.createCipher({ name: 'AES_GCM', params }, key).once(Buffer.from('graphene data'), Buffer.alloc(64))).toThrow(/CKR_MECHANISM_INVALID/);

    const mk = session.generateKey(graphene.KeyGenMechanism.GENERIC_SECRET, { keyType: graphene.KeyType.GENERIC_SECRET, valueLen: 32, token: false, sign: true, verify: true, label: 'g-mac' });
    const mac = session.createSign('SHA256_HMAC', mk).once(Buffer.from('graphene'));
    expect(mac.length).toBe(32);
    expect(session.createVerify('SHA256_HMAC', mk).once(Buffer.from('graphene'), mac)).toBe(true);
    expect(() => session.createVerify('SHA256_HMAC', mk).once(Buffer.from('graphenE'), mac)).toThrow(/CKR_SIGNATURE_INVALID/);

    const keys = session.generateKeyPair(
      graphene.KeyGenMechanism.EC,
      { keyType: graphene.KeyType.EC, paramsEC: graphene.NamedCurve.getByName('secp256r1').value, token: false, label: 'g-ec' },
      { keyType: graphene.KeyType.EC, token: false, derive: true, sensitive: true, extractable: false, label: 'g-ec' },
    );
    const point = keys.publicKey.getAttribute({ pointEC: null }).pointEC as Buffer;
    expect(point.length).toBe(67); // DER OCTET STRING of the 65-byte uncompressed point
    expect(keys.privateKey.getAttribute('sensitive')).toBe(true);
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const derive = () =>
      session.deriveKey({ name: 'ECDH1_DERIVE', params: new graphene.EcdhParams(graphene.EcKdf.NULL, null, peer.getPublicKey()) }, keys.privateKey, {
        class: graphene.ObjectClass.SECRET_KEY,
        keyType: graphene.KeyType.GENERIC_SECRET,
        token: false,
      });
    expect(derive).toThrow(/CKR_MECHANISM_INVALID/);

    expect(session.find({ label: 'g-aes' }).length).toBe(1);
    expect(session.find({ label: 'g-ec' }).length).toBe(2);
    expect(session.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: 'g-ec' }).length).toBe(1);
    expect(session.generateRandom(16).length).toBe(16);
    session.close();
  });

  it('many calls in a row, each answer checked: sign and verify, random, create, find and destroy on two sessions', () => {
    const m = t.module;
    const [s1, s2] = [session(t), session(t)];
    const kv = randomBytes(32);
    const key = hmacKey(m, s1, kv);
    const seen = new Set<string>();
    const N = 300;
    for (let i = 0; i < N; i++) {
      const s = i % 2 === 0 ? s1 : s2;
      const data = Buffer.from(`message ${i}`);
      m.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, key);
      const mac = m.C_Sign(s, data, Buffer.alloc(32));
      expect(mac.toString('hex')).toBe(createHmac('sha256', kv).update(data).digest('hex'));
      m.C_VerifyInit(s, { mechanism: P.CKM_SHA256_HMAC }, key);
      expect(m.C_Verify(s, data, mac)).toBe(true);
      const r = m.C_GenerateRandom(s, Buffer.alloc(16)).toString('hex');
      expect(seen.has(r)).toBe(false);
      seen.add(r);
      const d = m.C_CreateObject(s, [{ type: P.CKA_CLASS, value: P.CKO_DATA }, b(P.CKA_TOKEN, false), { type: P.CKA_LABEL, value: `d-${i}` }, { type: P.CKA_VALUE, value: data }]);
      m.C_FindObjectsInit(s, [{ type: P.CKA_LABEL, value: `d-${i}` }]);
      expect(m.C_FindObjects(s, 4)).toEqual([d]);
      m.C_FindObjectsFinal(s);
      expect(m.C_GetAttributeValue(s, d, [{ type: P.CKA_VALUE }])[0]!.value.equals(data)).toBe(true);
      m.C_DestroyObject(s, d);
    }
    m.C_FindObjectsInit(s1, [{ type: P.CKA_CLASS, value: P.CKO_DATA }, b(P.CKA_TOKEN, false)]);
    expect(m.C_FindObjects(s1, 10)).toEqual([]);
    m.C_FindObjectsFinal(s1);
    m.C_CloseSession(s1);
    m.C_CloseSession(s2);
  });
});
