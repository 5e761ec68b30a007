/**
 * The PKCS#11 remote (test/helpers/remote-token/): the emulator in its own thread,
 * driven through a synchronous `Pkcs11` over a SharedArrayBuffer. The token conformance suite
 * runs on it too (test/hsm/tokens/conformance.test.ts, kind `remote`); here: the wire protocol's
 * strictness both ways (malformed, truncated, oversized frames: CKR_ARGUMENTS_BAD from the token
 * thread, CKR_GENERAL_ERROR in the client, never a crash, and the remote keeps serving), output
 * buffers capped at what a reply carries, a hung token thread (timeout: CKR_DEVICE_ERROR), close,
 * and graphene-pk11's Module driving the emulator through the remote and directly.
 */
import { createECDH, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import * as graphene from 'graphene-pk11';
import { afterAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import { ensureToken } from '../../../hsm/tokens/open.ts';
import { RemotePkcs11 } from '../../helpers/remote-token/client.ts';
import type { RemoteOptions } from '../../helpers/remote-token/client.ts';
import type { CallSpec } from '../../helpers/remote-token/protocol.ts';
import { CALLS, MIN_CAPACITY, PROTOCOL_VERSION, ProtocolError, Reader, Writer, callSpec, decodeRequest, decodeResponse, encodeError, encodeRequest, encodeResult } from '../../helpers/remote-token/protocol.ts';
import { grapheneUserSession } from '../../helpers/graphene.ts';

const SO = 'so-pin-0000';
const USER = 'user-pin-1111';
const open: RemotePkcs11[] = [];
afterAll(() => {
  for (const r of open.splice(0)) r.close();
});

function remote(opts: RemoteOptions = {}): RemotePkcs11 {
  const r = new RemotePkcs11({ ...opts, emulator: { pinKdfIterations: 1000, ...opts.emulator } });
  open.push(r);
  return r;
}

/** A remote with a token `t`, a logged-in R/W session and an AES-256 GCM key. */
function ready(opts: RemoteOptions = {}) {
  const m = remote(opts);
  m.C_Initialize();
  ensureToken(m, 't', SO, USER);
  const slot = m.C_GetSlotList(true)[0]!;
  const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  m.C_Login(s, P.CKU_USER, USER);
  const key = m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_VALUE_LEN, value: 32 },
    { type: P.CKA_ENCRYPT, value: true },
    { type: P.CKA_DECRYPT, value: true },
  ]);
  return { m, slot, s, key };
}

const gcm = (iv: Buffer): P.Mechanism => ({ mechanism: P.CKM_AES_GCM, parameter: { type: P.CK_PARAMS_GCM, iv, aad: Buffer.alloc(0), ivBits: 96, tagBits: 128 } });

function failure(fn: () => unknown): { name: string; method: string; detail?: string } {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof P.Pkcs11Error)) throw e;
    return { name: e.message, method: e.method, detail: (e as { detail?: string }).detail };
  }
  throw new Error('expected the call to fail');
}

/** The header of a reply frame, checked for form; the code of an error reply. */
function replyOf(frame: Buffer): { status: number; seq: number; code?: number; detail?: string } {
  const r = new Reader(frame);
  expect(r.u8()).toBe(PROTOCOL_VERSION);
  const status = r.u8();
  const seq = r.u32();
  expect([0, 1]).toContain(status);
  if (status === 0) return { status, seq };
  const code = r.u32();
  r.str();
  const detail = r.flag('presence') ? r.str() : undefined;
  r.end();
  return { status, seq, code, ...(detail !== undefined && { detail }) };
}

const request = (name: string, args: unknown[], seq = 7) => encodeRequest(seq, callSpec(name)!, args);

describe('remote: calls cross as bytes', () => {
  it('answers as the emulator does: infos, handles, output buffers, errors with code, method and detail', () => {
    const { m, slot, s, key } = ready();
    const direct = new EmulatorModule();
    direct.C_Initialize();
    expect(m.C_GetInfo()).toEqual(direct.C_GetInfo());
    const info = m.C_GetTokenInfo(slot);
    expect(P.trimLabel(info.label)).toBe('t');
    expect(info.totalPublicMemory).toBe(0xffffffffffffffffn);
    expect(m.C_GetMechanismList(slot)).toEqual(direct.C_GetMechanismList(P.handleOf(0)));
    expect(m.C_GetSessionInfo(s)).toEqual({ slotID: P.handleOf(0), state: P.CKS_RW_USER_FUNCTIONS, flags: P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION, deviceError: 0 });
    // The output buffer is the caller's: filled in place, its filled part returned.
    const out = Buffer.alloc(64, 0xee);
    m.C_EncryptInit(s, gcm(Buffer.alloc(12, 1)), key);
    const ct = m.C_Encrypt(s, Buffer.from('hello'), out);
    expect(ct.length).toBe(21);
    expect(ct.buffer).toBe(out.buffer);
    expect(out.subarray(21).every((b) => b === 0xee)).toBe(true);
    m.C_DecryptInit(s, gcm(Buffer.alloc(12, 1)), key);
    expect(m.C_Decrypt(s, ct, Buffer.alloc(64)).toString()).toBe('hello');
    const rnd = Buffer.alloc(32);
    expect(m.C_GenerateRandom(s, rnd)).toBe(rnd);
    expect(rnd.equals(Buffer.alloc(32))).toBe(false);
    // An empty output buffer asks for nothing and keeps the operation (as directly).
    m.C_EncryptInit(s, gcm(Buffer.alloc(12, 2)), key);
    expect(m.C_Encrypt(s, Buffer.from('x'), Buffer.alloc(0)).length).toBe(0);
    expect(failure(() => m.C_Encrypt(s, Buffer.from('x'), Buffer.alloc(4))).name).toBe('CKR_BUFFER_TOO_SMALL');
    expect(m.C_Encrypt(s, Buffer.from('x'), Buffer.alloc(64)).length).toBe(17);
    // Errors: the module's code and method.
    expect(failure(() => m.C_Login(s, P.CKU_USER, USER))).toMatchObject({ name: 'CKR_USER_ALREADY_LOGGED_IN', method: 'C_Login' });
    expect(failure(() => m.C_GenerateRandom(P.handleOf(999), Buffer.alloc(4))).name).toBe('CKR_SESSION_HANDLE_INVALID');
    expect(failure(() => m.C_GenerateRandom(s, Buffer.alloc(0))).name).toBe('CKR_ARGUMENTS_BAD');
    // find: one handle or null without a count, a list with one
    m.C_FindObjectsInit(s, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }]);
    expect(m.C_FindObjects(s)).toEqual(key);
    expect(m.C_FindObjects(s)).toBeNull();
    m.C_FindObjectsFinal(s);
    m.C_FindObjectsInit(s, []);
    expect(m.C_FindObjects(s, 10)).toEqual([key]);
    m.C_FindObjectsFinal(s);
  });

  it('a failing self-test crosses with its detail; a thread that can not start is CKR_DEVICE_ERROR', () => {
    const m = remote({ emulator: { selfTestFault: 'aes-kw' } });
    expect(failure(() => m.C_Initialize())).toMatchObject({ name: 'CKR_FIPS_SELF_TEST_FAILED', method: 'C_Initialize', detail: expect.stringMatching(/aes-kw/) });
    expect(failure(() => m.C_GetSlotList(true)).name).toBe('CKR_CRYPTOKI_NOT_INITIALIZED');
    const bad = failure(() => new RemotePkcs11({ emulator: { noSuchOption: 1 } as never }));
    expect(bad).toMatchObject({ name: 'CKR_DEVICE_ERROR', detail: expect.stringMatching(/unknown emulator option noSuchOption/) });
  });

  it('arguments of the wrong JS type are a TypeError, as in pkcs11js, and nothing is sent', () => {
    const { m, slot, s } = ready();
    expect(() => m.C_OpenSession(1 as unknown as P.Handle, P.CKF_SERIAL_SESSION)).toThrow(TypeError);
    expect(() => m.C_CreateObject(s, [{ type: P.CKA_START_DATE, value: new Date() as unknown as string }])).toThrow(/attribute value must be/);
    expect(() => m.C_EncryptInit(s, { mechanism: P.CKM_AES_GCM, parameter: 'iv' as unknown as Buffer }, P.handleOf(1))).toThrow(TypeError);
    expect(P.trimLabel(m.C_GetTokenInfo(slot).label)).toBe('t');
  });

  it('the host side imports nothing of the token thread: only bytes cross', () => {
    for (const f of ['client.ts', 'protocol.ts']) {
      const src = readFileSync(new URL(`../../helpers/remote-token/${f}`, import.meta.url), 'utf8');
      const imports = [...src.matchAll(/^import[^;]*?from '([^']+)'/gms)].map((x) => x[1]);
      expect(imports.filter((i) => /hsm\/|emulator\//.test(i!))).toEqual([]);
    }
  });
});

describe('remote: the protocol is strict', () => {
  it('every call round-trips; every truncation and any trailing byte of a frame is a ProtocolError', () => {
    const samples: Record<string, unknown[]> = {
      C_Initialize: [{ flags: 2, libraryParameters: 'x' }],
      C_GetSlotList: [true],
      C_InitToken: [P.handleOf(0), 'pin', 'label ü'],
      C_CreateObject: [P.handleOf(1), [{ type: 1, value: true }, { type: 3, value: 'l' }, { type: 0, value: 4 }, { type: 0x11, value: Buffer.from('v') }, { type: 0x110 }]],
      C_EncryptInit: [P.handleOf(1), gcm(Buffer.alloc(12)), P.handleOf(2)],
      C_DeriveKey: [P.handleOf(1), { mechanism: P.CKM_ECDH1_DERIVE, parameter: { type: P.CK_PARAMS_EC_DH, kdf: 1, publicData: Buffer.alloc(65, 4) } }, P.handleOf(2), []],
      C_GenerateKey: [P.handleOf(1), { mechanism: P.CKM_AES_KEY_GEN, parameter: null }, []],
      C_Encrypt: [P.handleOf(1), Buffer.from('abc'), Buffer.alloc(40)],
      C_FindObjects: [P.handleOf(1), 5],
    };
    // other calls: for each argument the first candidate its codec takes
    const candidates = [P.handleOf(1), 5, 'pin', [], { mechanism: P.CKM_AES_GCM }, true];
    const sample = (spec: CallSpec) =>
      spec.args.map((c) =>
        candidates.find((v) => {
          try {
            c.enc(new Writer(), v, 'sample');
            return true;
          } catch {
            return false;
          }
        }),
      );
    for (const spec of CALLS) {
      const args = samples[spec.name] ?? sample(spec);
      expect(args.every((a) => a !== undefined)).toBe(true);
      const frame = Buffer.from(encodeRequest(42, spec, args));
      const back = decodeRequest(frame);
      expect(back.spec.name).toBe(spec.name);
      expect(back.seq).toBe(42);
      for (let n = 0; n < frame.length; n++) expect(() => decodeRequest(frame.subarray(0, n))).toThrow(ProtocolError);
      expect(() => decodeRequest(Buffer.concat([frame, Buffer.of(0)]))).toThrow(/trailing/);
    }
    const tmpl = decodeRequest(Buffer.from(request('C_CreateObject', samples.C_CreateObject!))).args[1];
    expect(tmpl).toEqual(samples.C_CreateObject![1]);
    const mech = decodeRequest(Buffer.from(request('C_DeriveKey', samples.C_DeriveKey!))).args[1];
    expect(mech).toEqual(samples.C_DeriveKey![1]);
    // replies: a result and an error, each truncated or extended
    const spec = callSpec('C_GetSlotList')!;
    for (const frame of [Buffer.from(encodeResult(9, spec, [P.handleOf(0), P.handleOf(1)])), Buffer.from(encodeError(9, P.CKR.CKR_PIN_INCORRECT, 'C_Login', 'why'))]) {
      expect(() => decodeResponse(frame, spec, 9)).not.toThrow();
      expect(() => decodeResponse(frame, spec, 10)).toThrow(/reply to request 9/);
      for (let n = 0; n < frame.length; n++) expect(() => decodeResponse(frame.subarray(0, n), spec, 9)).toThrow(ProtocolError);
      expect(() => decodeResponse(Buffer.concat([frame, Buffer.of(1)]), spec, 9)).toThrow(/trailing/);
    }
  });

  it('random bytes never decode to anything but a ProtocolError (requests and replies)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(CALLS.length - 1), (bytes, i) => {
        for (const frame of [Buffer.from(bytes), Buffer.concat([Buffer.of(PROTOCOL_VERSION, i + 1), Buffer.from(bytes)])]) {
          try {
            decodeRequest(frame);
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
          }
          try {
            decodeResponse(frame, CALLS[i]!, frame.length >= 6 ? frame.readUInt32LE(2) : 0);
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('malformed requests reach the token thread: CKR_ARGUMENTS_BAD, and it keeps serving', () => {
    const { m, slot } = ready({ capacity: MIN_CAPACITY });
    const bad = (frame: Buffer, claimed?: number) => {
      const r = replyOf(m.exchangeFrame(frame, claimed));
      expect(r.status).toBe(1);
      expect(r.code).toBe(P.CKR.CKR_ARGUMENTS_BAD);
      return r.detail;
    };
    const good = Buffer.from(request('C_GetTokenInfo', [slot]));
    expect(replyOf(m.exchangeFrame(good))).toEqual({ status: 0, seq: 7 });
    expect(bad(Buffer.from([PROTOCOL_VERSION, 200, 1, 0, 0, 0]))).toMatch(/unknown call 200/);
    expect(bad(Buffer.from([PROTOCOL_VERSION, 0, 1, 0, 0, 0]))).toMatch(/unknown call 0/);
    expect(bad(Buffer.concat([Buffer.of(9), good.subarray(1)]))).toMatch(/version 9/);
    expect(bad(Buffer.alloc(0))).toMatch(/truncated/);
    for (let n = 1; n < good.length; n++) expect(bad(good.subarray(0, n))).toMatch(/truncated/);
    expect(bad(Buffer.concat([good, Buffer.of(0)]))).toMatch(/trailing/);
    // an optional argument's flag other than 0 or 1; a PIN that is not UTF-8; a count past the end
    const login = Buffer.from(request('C_Login', [P.handleOf(1), P.CKU_USER, 'abcd']));
    const flagAt = 6 + 4 + 8 + 8;
    expect(bad(Buffer.concat([login.subarray(0, flagAt), Buffer.of(2), login.subarray(flagAt + 1)]))).toMatch(/presence flag/);
    expect(bad(Buffer.concat([login.subarray(0, login.length - 4), Buffer.from([0xff, 0xfe, 0xc0, 0x80])]))).toMatch(/UTF-8/);
    const find = Buffer.from(request('C_FindObjectsInit', [P.handleOf(1), []]));
    find.writeUInt32LE(0xffffffff, find.length - 4);
    expect(bad(find)).toMatch(/truncated/);
    // a frame that claims more than the frame area
    expect(bad(good, MIN_CAPACITY + 1)).toMatch(/exceeds/);
    expect(bad(good, -5)).toMatch(/exceeds/);
    expect(P.trimLabel(m.C_GetTokenInfo(slot).label)).toBe('t');
  });

  it('random frames to the token thread: always a well-formed reply, and the thread keeps serving', () => {
    const m = remote({ capacity: MIN_CAPACITY });
    m.C_Initialize();
    fc.assert(
      fc.property(fc.nat(CALLS.length + 2), fc.uint8Array({ maxLength: 64 }), (id, tail) => {
        const frame = Buffer.concat([Buffer.of(PROTOCOL_VERSION, id, 3, 0, 0, 0), Buffer.from(tail)]);
        replyOf(m.exchangeFrame(frame));
      }),
      { numRuns: 1500 },
    );
    try {
      m.C_Initialize();
    } catch (e) {
      expect((e as P.Pkcs11Error).message).toBe('CKR_CRYPTOKI_ALREADY_INITIALIZED');
    }
    expect(m.C_GetSlotList(true).length).toBeGreaterThan(0);
  });

  it('malformed replies reach the client: CKR_GENERAL_ERROR, and the next call works', () => {
    const kinds = { C_GetInfo: 'truncate', C_GetSlotList: 'trailing', C_GetTokenInfo: 'overlength', C_GetMechanismList: 'status', C_GetSlotInfo: 'seq', C_GetMechanismInfo: 'version' } as const;
    const m = remote({ faults: { reply: kinds } });
    m.C_Initialize();
    const slot = P.handleOf(0);
    const calls: Record<keyof typeof kinds, () => unknown> = {
      C_GetInfo: () => m.C_GetInfo(),
      C_GetSlotList: () => m.C_GetSlotList(true),
      C_GetTokenInfo: () => m.C_GetTokenInfo(slot),
      C_GetMechanismList: () => m.C_GetMechanismList(slot),
      C_GetSlotInfo: () => m.C_GetSlotInfo(slot),
      C_GetMechanismInfo: () => m.C_GetMechanismInfo(slot, P.CKM_AES_GCM),
    };
    const details: string[] = [];
    for (const [name, call] of Object.entries(calls)) {
      const f = failure(call);
      expect(f).toMatchObject({ name: 'CKR_GENERAL_ERROR', method: name });
      details.push(f.detail!);
      expect(failure(() => m.C_GetSessionInfo(P.handleOf(77))).name).toBe('CKR_SESSION_HANDLE_INVALID');
    }
    expect(details.join('\n')).toMatch(/truncated/);
    expect(details.join('\n')).toMatch(/trailing/);
    expect(details.join('\n')).toMatch(/exceeds the 1048576-byte frame area/);
    expect(details.join('\n')).toMatch(/status 7/);
    expect(details.join('\n')).toMatch(/reply to request/);
    expect(details.join('\n')).toMatch(/version 99/);
  });
});

describe('remote: sizes', () => {
  it('a request larger than the frame area is CKR_ARGUMENTS_BAD before anything is sent', () => {
    const { m, s, key } = ready({ capacity: MIN_CAPACITY });
    m.C_EncryptInit(s, gcm(Buffer.alloc(12, 3)), key);
    expect(failure(() => m.C_Encrypt(s, Buffer.alloc(MIN_CAPACITY), Buffer.alloc(MIN_CAPACITY + 16)))).toMatchObject({ name: 'CKR_ARGUMENTS_BAD', detail: expect.stringMatching(/exceeds/) });
    // nothing reached the token: the operation is still there and works
    expect(m.C_Encrypt(s, Buffer.from('fits'), Buffer.alloc(64)).length).toBe(20);
  });

  it('output buffers are capped at what a reply carries: CKR_BUFFER_TOO_SMALL keeps the operation', () => {
    const { m, s, key } = ready({ capacity: MIN_CAPACITY });
    m.C_EncryptInit(s, gcm(Buffer.alloc(12, 4)), key);
    // a huge output buffer is fine when the result fits
    expect(m.C_Encrypt(s, Buffer.alloc(100, 1), Buffer.alloc(1 << 20)).length).toBe(116);
    m.C_EncryptInit(s, gcm(Buffer.alloc(12, 5)), key);
    // 4030 bytes in: the request fits, the 4046-byte ciphertext does not fit a reply
    expect(failure(() => m.C_Encrypt(s, Buffer.alloc(4030, 2), Buffer.alloc(8192))).name).toBe('CKR_BUFFER_TOO_SMALL');
    expect(m.C_Encrypt(s, Buffer.alloc(3000, 2), Buffer.alloc(8192)).length).toBe(3016);
  });

  it('a reply larger than the frame area is CKR_GENERAL_ERROR; C_FindObjects returns what fits, then the rest', () => {
    const { m, s } = ready({ capacity: MIN_CAPACITY });
    const d = m.C_CreateObject(s, [
      { type: P.CKA_CLASS, value: P.CKO_DATA },
      { type: P.CKA_TOKEN, value: false },
      { type: P.CKA_VALUE, value: Buffer.alloc(3000, 9) },
    ]);
    expect(m.C_GetAttributeValue(s, d, [{ type: P.CKA_VALUE }])[0]!.value.length).toBe(3000);
    expect(failure(() => m.C_GetAttributeValue(s, d, [{ type: P.CKA_VALUE }, { type: P.CKA_VALUE }]))).toMatchObject({ name: 'CKR_GENERAL_ERROR', detail: expect.stringMatching(/reply of \d+ bytes exceeds/) });
    for (let i = 0; i < 400; i++) m.C_CreateObject(s, [{ type: P.CKA_CLASS, value: P.CKO_DATA }, { type: P.CKA_TOKEN, value: false }, { type: P.CKA_APPLICATION, value: 'many' }]);
    m.C_FindObjectsInit(s, [{ type: P.CKA_APPLICATION, value: 'many' }]);
    const first = m.C_FindObjects(s, 1000);
    expect(first.length).toBeLessThan(400);
    expect(first.length + m.C_FindObjects(s, 1000).length).toBe(400);
    m.C_FindObjectsFinal(s);
  });
});

describe('remote: timeout and close', () => {
  it('a hung token thread: CKR_DEVICE_ERROR after the timeout; the thread is ended; every later call fails the same way', async () => {
    const m = remote({ timeoutMs: 300, faults: { stall: ['C_GenerateRandom'] } });
    m.C_Initialize();
    ensureToken(m, 't', SO, USER);
    const s = m.C_OpenSession(m.C_GetSlotList(true)[0]!, P.CKF_SERIAL_SESSION);
    const t0 = performance.now();
    expect(failure(() => m.C_GenerateRandom(s, Buffer.alloc(8)))).toMatchObject({ name: 'CKR_DEVICE_ERROR', method: 'C_GenerateRandom', detail: expect.stringMatching(/no answer .* 300 ms/) });
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(5000);
    const t1 = performance.now();
    expect(failure(() => m.C_GetInfo()).name).toBe('CKR_DEVICE_ERROR');
    expect(performance.now() - t1).toBeLessThan(50);
    await m.exited;
    m.close();
  });

  it('close ends the thread; later calls are CKR_DEVICE_REMOVED; graphene’s Module.close closes it', async () => {
    const m = remote();
    m.C_Initialize();
    m.close();
    expect(await m.exited).toBe(0);
    expect(failure(() => m.C_GetInfo())).toMatchObject({ name: 'CKR_DEVICE_REMOVED', method: 'C_GetInfo' });
    m.close();
    const g = remote();
    const mod = new graphene.Module(g as unknown as ConstructorParameters<typeof graphene.Module>[0]);
    mod.initialize();
    mod.close();
    expect(await g.exited).toBe(0);
  });
});

/** graphene-pk11 over a module: init a token, session, login, AES-GCM, find, EC key pair, ECDH. */
function grapheneScenario(lib: P.Pkcs11): void {
  const { mod, session } = grapheneUserSession(lib);
  expect(lib.C_GetSessionInfo(session.handle).state).toBe(P.CKS_RW_USER_FUNCTIONS);

  const key = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, encrypt: true, decrypt: true, sensitive: true, extractable: false, label: 'g-aes', token: true });
  expect(key.getAttribute('sensitive')).toBe(true);
  const iv = randomBytes(12);
  const params = new graphene.AesGcmParams(iv, Buffer.from('aad'), 128);
  const ct = session.createCipher({ name: 'AES_GCM', params }, key).once(Buffer.from('graphene data'), Buffer.alloc(64));
  expect(ct.length).toBe(13 + 16);
  const pt = session.createDecipher({ name: 'AES_GCM', params }, key).once(ct, Buffer.alloc(64));
  expect(pt.toString()).toBe('graphene data');
  const tampered = Buffer.from(ct);
  tampered[0]! ^= 1;
  expect(() => session.createDecipher({ name: 'AES_GCM', params }, key).once(tampered, Buffer.alloc(64))).toThrow(/CKR_GENERAL_ERROR/);

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
  const shared = session.deriveKey(
    { name: 'ECDH1_DERIVE', params: new graphene.EcdhParams(graphene.EcKdf.NULL, null, peer.getPublicKey()) },
    keys.privateKey,
    { class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.GENERIC_SECRET, token: false, sensitive: false, extractable: true },
  );
  expect((shared.getAttribute({ value: null }).value as Buffer).equals(peer.computeSecret(point.subarray(2)))).toBe(true);

  expect(session.find({ label: 'g-aes' }).length).toBe(1);
  expect(session.find({ label: 'g-ec' }).length).toBe(2);
  expect(session.find({ class: graphene.ObjectClass.PRIVATE_KEY }).length).toBe(1);
  expect(session.find({ class: graphene.ObjectClass.SECRET_KEY }).length).toBe(2);
  expect(session.generateRandom(16).length).toBe(16);
  session.logout();
  session.close();
  mod.finalize();
}

describe('graphene-pk11 drives the emulator', () => {
  it('through the remote', () => {
    grapheneScenario(remote());
  });
  it('directly', () => {
    grapheneScenario(P.normalizedModule(new EmulatorModule({ pinKdfIterations: 1000 })));
  });
});
