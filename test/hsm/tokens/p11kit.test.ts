/**
 * The p11-kit RPC server (hsm/tokens/p11kit/) against a live server started by each suite:
 * - on the wire, with the tests' own client (p11kit-wire.ts): the calls, and every refusal
 *   (garbage, truncated, oversized frames, unknown calls, wrong signatures and handshakes,
 *   impossible counts): each is refused as p11-kit's server refuses it, logged, leaks nothing,
 *   and the server goes on serving another client;
 * - through Debian's p11-kit-client.so (package p11-kit-modules) from OpenSC's pkcs11-tool,
 *   GnuTLS's p11tool, pkcs11js and graphene-pk11 (each signs and verifies ECDSA P-256 too).
 * A suite whose program is missing skips and says why; with CI=true it fails instead.
 */
import { execFile } from 'node:child_process';
import { createECDH } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { p256 } from '@noble/curves/nist.js';
import * as P from '../../../enclave/api/pkcs11.ts';
import { P11KitErrorCode, RPC_HANDSHAKE, serveToken } from '../../../hsm/tokens/p11kit/index.ts';
import type { P11KitLogEvent, RunningVaultTokenServer } from '../../../hsm/tokens/p11kit/index.ts';
import { RpcReader, RpcWriter } from '../../../hsm/tokens/p11kit/codec.ts';
import { callNamed } from '../../../hsm/tokens/p11kit/calls.ts';
import { WireClient } from './p11kit-wire.ts';

const run = promisify(execFile);
const CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const ci = process.env.CI === 'true' || process.env.CI === '1';
const USER_PIN = 'user-1234';
const SO_PIN = 'so-12345678';
/** The emulator's lockout in these tests: 3 wrong user PINs in a row. */
const MAX_FAILURES = 3;
/** A frame begun must end within this (the default is 30 s). */
const FRAME_TIMEOUT_MS = 600;

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, program))) return join(dir, program);
  return null;
}

/** Null when `needs` are all present; else why the suite skips (with CI=true the suite fails instead). */
function missing(needs: { what: string; present: boolean }[]): string | null {
  const absent = needs.filter((n) => !n.present).map((n) => n.what);
  if (absent.length === 0) return null;
  const why = `${absent.join(' and ')} not installed (apt-get install -y p11-kit-modules opensc gnutls-bin)`;
  if (ci) throw new Error(`CI=true: ${why}`);
  return why;
}

interface Served {
  server: RunningVaultTokenServer;
  logs: P11KitLogEvent[];
  dir: string;
  env: NodeJS.ProcessEnv;
}

/** A server on a fresh data folder (its own token, PINs given, fast PIN derivation). */
async function startServer(userPin = USER_PIN): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-p11kit-'));
  const logs: P11KitLogEvent[] = [];
  const server = await serveToken({
    dataDir: join(dir, 'data'),
    socketPath: join(dir, 'token.sock'),
    pins: { userPin, soPin: SO_PIN },
    emulator: { userPinMaxFailures: MAX_FAILURES, pinKdfIterations: 1000 },
    frameTimeoutMs: FRAME_TIMEOUT_MS,
    log: (e) => logs.push(e),
  });
  return { server, logs, dir, env: { ...process.env, P11_KIT_SERVER_ADDRESS: server.address } };
}

/** A server for the enclosing describe block, started before its tests and removed after them. */
function served(userPin?: string): () => Served {
  let s: Served | undefined;
  beforeAll(async () => {
    s = await startServer(userPin);
  });
  afterAll(async () => {
    if (!s) return;
    await s.server.close();
    rmSync(s.dir, { recursive: true, force: true });
  });
  return () => s!;
}

const ulong = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const attr = (type: number, value: Buffer) => ({ type, value, length: value.length });

/** A connected, initialized client logged in on a new session; returns the session handle. */
async function loggedIn(s: Served): Promise<{ c: WireClient; session: bigint }> {
  const { client: c } = await WireClient.connect(s.server.socketPath);
  expect(await c.initialize()).toBe(0);
  const slots = await c.call('C_GetSlotList', (w) => w.byte(1).bufferSize('fu', 8));
  expect(WireClient.rv(slots)).toBe(0);
  const slot = slots.ulongArray().values![0]!;
  const open = await c.call('C_OpenSession', (w) => w.ulong(slot).ulong(P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION));
  expect(WireClient.rv(open)).toBe(0);
  const session = open.ulong();
  const login = await c.call('C_Login', (w) => w.ulong(session).ulong(P.CKU_USER).byteArray(Buffer.from(USER_PIN)));
  expect(WireClient.rv(login)).toBe(0);
  return { c, session };
}

/** A P-256 session key pair made on the wire, its private key allowed `usage`; its handles and CKA_EC_POINT. */
async function wireKeyPair(c: WireClient, session: bigint, usage: number): Promise<{ pub: bigint; priv: bigint; der: Buffer }> {
  const kp = await c.call('C_GenerateKeyPair', (w) =>
    w
      .ulong(session)
      .mechanism(P.CKM_EC_KEY_PAIR_GEN, null)
      .attributes([attr(P.CKA_EC_PARAMS, Buffer.from(P.EC_PARAMS_P256)), attr(P.CKA_TOKEN, Buffer.of(0))])
      .attributes([attr(usage, Buffer.of(1)), attr(P.CKA_TOKEN, Buffer.of(0))]),
  );
  expect(WireClient.rv(kp)).toBe(0);
  const pub = kp.ulong();
  const priv = kp.ulong();
  const point = await c.call('C_GetAttributeValue', (w) => w.ulong(session).ulong(pub).attributeBuffers([{ type: P.CKA_EC_POINT, size: 128 }]));
  const der = point.template({ maxTemplate: 4, maxOutput: 1024 })[0]!.value!;
  expect(der.subarray(0, 2)).toEqual(Buffer.from('0441', 'hex')); // DER OCTET STRING of 65 bytes
  return { pub, priv, der };
}

/** Another client can still initialize and read the module's information. */
async function stillServes(s: Served): Promise<void> {
  const { client: c, serverVersion } = await WireClient.connect(s.server.socketPath);
  expect(serverVersion).toBe(0);
  expect(await c.initialize()).toBe(0);
  const info = await c.call('C_GetInfo');
  expect(WireClient.rv(info)).toBe(0);
  expect(info.version()).toEqual({ major: 2, minor: 40 });
  expect(info.spaceString()).toMatch(/^Backup Key Vault/);
  c.close();
}

describe('p11-kit server: calls on the wire', () => {
  const s = served();

  it('answers the version byte with protocol version 0, also to a client that offers a later one', async () => {
    const { client, serverVersion } = await WireClient.connect(s().server.socketPath, 2);
    expect(serverVersion).toBe(0);
    client.close();
    await stillServes(s());
  });

  it('refuses every call before C_Initialize with CKR_CRYPTOKI_NOT_INITIALIZED, and a second C_Initialize', async () => {
    const { client: c } = await WireClient.connect(s().server.socketPath);
    expect(WireClient.rv(await c.call('C_GetInfo'))).toBe(P.CKR.CKR_CRYPTOKI_NOT_INITIALIZED);
    expect(await c.initialize()).toBe(0);
    expect(await c.initialize()).toBe(P.CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED);
    expect(WireClient.rv(await c.call('C_Finalize'))).toBe(0);
    expect(WireClient.rv(await c.call('C_GetInfo'))).toBe(P.CKR.CKR_CRYPTOKI_NOT_INITIALIZED);
    c.close();
  });

  it('a request that arrives one byte at a time is answered once its last byte is in', async () => {
    const { client: c } = await WireClient.connect(s().server.socketPath);
    const body = new RpcWriter(callNamed('C_Initialize'), 'request').byteArray(RPC_HANDSHAKE).byte(0).byteArray(Buffer.alloc(0)).finish();
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 7, 0, 0, 0, 0]), Buffer.alloc(4), body]);
    frame.writeUInt32BE(body.length, 8);
    for (const byte of frame) {
      c.raw(Buffer.of(byte));
      await new Promise((r) => setImmediate(r));
    }
    const head = await c.read(12);
    expect(head!.readUInt32BE(0)).toBe(7); // the call code, echoed
    const answer = await c.read(head!.readUInt32BE(8));
    expect(answer!.equals(new RpcWriter(callNamed('C_Initialize')).finish())).toBe(true);
    c.close();
  });

  it('answers a call it does not implement with CKR_FUNCTION_NOT_SUPPORTED', async () => {
    const { client: c } = await WireClient.connect(s().server.socketPath);
    expect(await c.initialize()).toBe(0);
    const r = await c.call('C_DigestInit', (w) => w.ulong(1).mechanism(P.CKM_SHA256, null));
    expect(WireClient.rv(r)).toBe(P.CKR.CKR_FUNCTION_NOT_SUPPORTED);
    c.close();
  });

  it('AES-GCM: length query, encrypt, decrypt; a tampered tag is refused (PKCS#11 v2.40 §2.12.3)', async () => {
    const { c, session } = await loggedIn(s());
    const gen = await c.call('C_GenerateKey', (w) =>
      w
        .ulong(session)
        .mechanism(P.CKM_AES_KEY_GEN, null)
        .attributes([attr(P.CKA_VALUE_LEN, ulong(32)), attr(P.CKA_ENCRYPT, Buffer.of(1)), attr(P.CKA_DECRYPT, Buffer.of(1)), attr(P.CKA_TOKEN, Buffer.of(0))]),
    );
    expect(WireClient.rv(gen)).toBe(0);
    const key = gen.ulong();
    const gcm = { iv: Buffer.alloc(12, 9), aad: Buffer.from('header'), tagBits: 128 };
    const plain = Buffer.from('sixty-four hex digits of backup key');
    expect(WireClient.rv(await c.call('C_EncryptInit', (w) => w.ulong(session).mechanism(P.CKM_AES_GCM, gcm).ulong(key)))).toBe(0);
    const query = await c.call('C_Encrypt', (w) => w.ulong(session).byteArray(plain).bufferSize('fy', 0));
    expect(WireClient.rv(query)).toBe(0);
    expect(query.byteArray()).toEqual({ data: null, length: plain.length + 16 });
    // The client names a 4 GB buffer: the server allocates what the call can produce, no more.
    const enc = await c.call('C_Encrypt', (w) => w.ulong(session).byteArray(plain).bufferSize('fy', 0xfffffff0));
    expect(WireClient.rv(enc)).toBe(0);
    const ct = enc.byteArray().data!;
    expect(ct.length).toBe(plain.length + 16);
    expect(WireClient.rv(await c.call('C_DecryptInit', (w) => w.ulong(session).mechanism(P.CKM_AES_GCM, gcm).ulong(key)))).toBe(0);
    const dec = await c.call('C_Decrypt', (w) => w.ulong(session).byteArray(ct).bufferSize('fy', 1024));
    expect(WireClient.rv(dec)).toBe(0);
    expect(dec.byteArray().data).toEqual(plain);
    const bad = Buffer.from(ct);
    bad[bad.length - 1]! ^= 1;
    expect(WireClient.rv(await c.call('C_DecryptInit', (w) => w.ulong(session).mechanism(P.CKM_AES_GCM, gcm).ulong(key)))).toBe(0);
    const refused = await c.call('C_Decrypt', (w) => w.ulong(session).byteArray(bad).bufferSize('fy', 1024));
    expect(WireClient.rv(refused)).toBe(P.CKR.CKR_GENERAL_ERROR); // as SoftHSM2 answers a bad tag
    c.close();
  });

  it('ECDH1-DERIVE on a P-256 key pair: the derived secret equals the peer side computed with node:crypto', async () => {
    const { c, session } = await loggedIn(s());
    const { priv, der } = await wireKeyPair(c, session, P.CKA_DERIVE);
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const derive = await c.call('C_DeriveKey', (w) =>
      w
        .ulong(session)
        .mechanism(P.CKM_ECDH1_DERIVE, { kdf: P.CKD_NULL, publicData: peer.getPublicKey() })
        .ulong(priv)
        .attributes([
          attr(P.CKA_CLASS, ulong(P.CKO_SECRET_KEY)),
          attr(P.CKA_KEY_TYPE, ulong(P.CKK_GENERIC_SECRET)),
          attr(P.CKA_VALUE_LEN, ulong(32)),
          attr(P.CKA_SENSITIVE, Buffer.of(0)),
          attr(P.CKA_EXTRACTABLE, Buffer.of(1)),
          attr(P.CKA_TOKEN, Buffer.of(0)),
        ]),
    );
    expect(WireClient.rv(derive)).toBe(0);
    const secret = derive.ulong();
    const value = await c.call('C_GetAttributeValue', (w) => w.ulong(session).ulong(secret).attributeBuffers([{ type: P.CKA_VALUE, size: 64 }]));
    expect(WireClient.rv(value)).toBe(0);
    expect(value.template({ maxTemplate: 4, maxOutput: 1024 })[0]!.value).toEqual(peer.computeSecret(der.subarray(2)));
    c.close();
  });

  it('ECDSA P-256 (PKCS#11 v2.40 §2.3.6): a length query answers 64, a short buffer keeps the operation, r || s verifies with @noble/curves; refusals', async () => {
    const { c, session } = await loggedIn(s());
    const { pub, priv, der } = await wireKeyPair(c, session, P.CKA_SIGN);
    const q = der.subarray(2);
    const hash = Buffer.alloc(32, 0x5a);
    const rv = async (name: string, f: (w: RpcWriter) => RpcWriter) => WireClient.rv(await c.call(name, f));
    expect(await rv('C_SignInit', (w) => w.ulong(session).mechanism(P.CKM_ECDSA, null).ulong(priv))).toBe(0);
    const query = await c.call('C_Sign', (w) => w.ulong(session).byteArray(hash).bufferSize('fy', 0));
    expect(WireClient.rv(query)).toBe(0);
    expect(query.byteArray()).toEqual({ data: null, length: 64 });
    const short = await c.call('C_Sign', (w) => w.ulong(session).byteArray(hash).bufferSize('fy', 63));
    expect(short.byteArray()).toEqual({ data: null, length: 64 }); // the client's CKR_BUFFER_TOO_SMALL; the operation goes on
    const signed = await c.call('C_Sign', (w) => w.ulong(session).byteArray(hash).bufferSize('fy', 0xfffffff0));
    expect(WireClient.rv(signed)).toBe(0);
    const sig = signed.byteArray().data!;
    expect(sig.length).toBe(64);
    expect(p256.verify(sig, hash, q, { prehash: false, lowS: false })).toBe(true);
    expect(await rv('C_Sign', (w) => w.ulong(session).byteArray(hash).bufferSize('fy', 64))).toBe(P.CKR.CKR_OPERATION_NOT_INITIALIZED);
    const verify = async (data: Buffer, signature: Buffer) => {
      expect(await rv('C_VerifyInit', (w) => w.ulong(session).mechanism(P.CKM_ECDSA, null).ulong(pub))).toBe(0);
      return rv('C_Verify', (w) => w.ulong(session).byteArray(data).byteArray(signature));
    };
    expect(await verify(hash, sig)).toBe(0);
    const bad = Buffer.from(sig);
    bad[40]! ^= 1;
    expect(await verify(hash, bad)).toBe(P.CKR.CKR_SIGNATURE_INVALID);
    expect(await verify(Buffer.alloc(32, 0x5b), sig)).toBe(P.CKR.CKR_SIGNATURE_INVALID);
    expect(await verify(hash, sig.subarray(0, 63))).toBe(P.CKR.CKR_SIGNATURE_LEN_RANGE);
    expect(await verify(hash, Buffer.concat([sig, Buffer.of(0)]))).toBe(P.CKR.CKR_SIGNATURE_LEN_RANGE);
    // single-part only: C_SignUpdate ends the operation (as SoftHSM2 2.6.1)
    expect(await rv('C_SignInit', (w) => w.ulong(session).mechanism(P.CKM_ECDSA, null).ulong(priv))).toBe(0);
    expect(await rv('C_SignUpdate', (w) => w.ulong(session).byteArray(hash))).toBe(P.CKR.CKR_OPERATION_NOT_INITIALIZED);
    expect(await rv('C_Sign', (w) => w.ulong(session).byteArray(hash).bufferSize('fy', 64))).toBe(P.CKR.CKR_OPERATION_NOT_INITIALIZED);
    // the public key can not sign, the private key can not verify
    expect(await rv('C_SignInit', (w) => w.ulong(session).mechanism(P.CKM_ECDSA, null).ulong(pub))).toBe(P.CKR.CKR_KEY_FUNCTION_NOT_PERMITTED);
    expect(await rv('C_VerifyInit', (w) => w.ulong(session).mechanism(P.CKM_ECDSA, null).ulong(priv))).toBe(P.CKR.CKR_KEY_FUNCTION_NOT_PERMITTED);
    c.close();
  });

  it('C_GetAttributeValue: a sensitive value is unavailable, the other attributes still answer, and a short buffer is CKR_BUFFER_TOO_SMALL', async () => {
    const { c, session } = await loggedIn(s());
    const gen = await c.call('C_GenerateKey', (w) =>
      w.ulong(session).mechanism(P.CKM_AES_KEY_GEN, null).attributes([attr(P.CKA_VALUE_LEN, ulong(32)), attr(P.CKA_SENSITIVE, Buffer.of(1)), attr(P.CKA_TOKEN, Buffer.of(0))]),
    );
    const key = gen.ulong();
    const ask = (items: { type: number; size: number }[]) => c.call('C_GetAttributeValue', (w) => w.ulong(session).ulong(key).attributeBuffers(items));
    const r = await ask([
      { type: P.CKA_VALUE, size: 64 },
      { type: P.CKA_VALUE_LEN, size: 8 },
      { type: P.CKA_SENSITIVE, size: 1 },
      { type: P.CKA_LABEL, size: 0 },
    ]);
    expect(WireClient.rv(r)).toBe(0);
    const attrs = r.template({ maxTemplate: 16, maxOutput: 1 << 20 });
    expect(attrs[0]).toEqual({ type: P.CKA_VALUE, value: null });
    expect(attrs[1]).toEqual({ type: P.CKA_VALUE_LEN, value: ulong(32) });
    expect(attrs[2]).toEqual({ type: P.CKA_SENSITIVE, value: Buffer.of(1) });
    expect(r.ulong()).toBe(BigInt(P.CKR.CKR_ATTRIBUTE_SENSITIVE));
    const short = await ask([{ type: P.CKA_VALUE_LEN, size: 4 }]);
    expect(WireClient.rv(short)).toBe(0);
    expect(short.template({ maxTemplate: 16, maxOutput: 1 << 20 })).toEqual([{ type: P.CKA_VALUE_LEN, value: null }]);
    expect(short.ulong()).toBe(BigInt(P.CKR.CKR_BUFFER_TOO_SMALL));
    c.close();
  });

  it("keeps each client's sessions to itself: another connection's session handle is CKR_SESSION_HANDLE_INVALID", async () => {
    const a = await loggedIn(s());
    const { client: b } = await WireClient.connect(s().server.socketPath);
    expect(await b.initialize()).toBe(0);
    const r = await b.call('C_GetSessionInfo', (w) => w.ulong(a.session));
    expect(WireClient.rv(r)).toBe(P.CKR.CKR_SESSION_HANDLE_INVALID);
    a.c.close();
    b.close();
  });

  it('bounds C_GenerateRandom by the output limit (CKR_ARGUMENTS_BAD above it); 0 bytes is an empty answer', async () => {
    const { c, session } = await loggedIn(s());
    const none = await c.call('C_GenerateRandom', (w) => w.ulong(session).bufferSize('fy', 0xffffffff));
    expect(WireClient.rv(none)).toBe(0);
    expect(none.byteArray()).toEqual({ data: Buffer.alloc(0), length: 0 });
    const ok = await c.call('C_GenerateRandom', (w) => w.ulong(session).bufferSize('fy', 32));
    expect(WireClient.rv(ok)).toBe(0);
    expect(ok.byteArray().data!.length).toBe(32);
    const big = await c.call('C_GenerateRandom', (w) => w.ulong(session).bufferSize('fy', 0x7fffffff));
    expect(WireClient.rv(big)).toBe(P.CKR.CKR_ARGUMENTS_BAD);
    c.close();
  });
});

describe('p11-kit server: the frames p11-kit-client.so 0.24.1 sent for pkcs11-tool --keygen (test/vectors/p11-kit/)', () => {
  const vectors = JSON.parse(readFileSync(join(import.meta.dirname, '../../vectors/p11-kit/pkcs11-tool-keygen.json'), 'utf8')) as {
    userPin: string;
    frames: { dir: 'request' | 'response'; code: number; body: string }[];
  };
  const s = served(vectors.userPin);

  it('replayed in order on one connection: the same answers, byte for byte but for the token information (serial, label, time)', async () => {
    const { client: c } = await WireClient.connect(s().server.socketPath);
    const frames = vectors.frames;
    expect(frames.length).toBe(76);
    for (let i = 0; i < frames.length; i += 2) {
      const [req, res] = [frames[i]!, frames[i + 1]!];
      expect([req.dir, res.dir, res.code]).toEqual(['request', 'response', req.code]);
      const answer = await c.frame(Buffer.from(req.body, 'hex'));
      const expected = Buffer.from(res.body, 'hex');
      const name = new RpcReader(Buffer.from(req.body, 'hex')).call.name;
      if (name === 'C_GetTokenInfo') expect(answer!.subarray(0, 30), name).toEqual(expected.subarray(0, 30));
      else expect(answer!.toString('hex'), `${i / 2}: ${name}`).toBe(res.body);
    }
    c.close();
  });
});

describe('p11-kit server: refusals (each logged, the server keeps serving)', () => {
  const s = served();

  const refusals = (reason: keyof typeof P11KitErrorCode) => s().logs.filter((e) => e.event === 'refused' && e.reason === reason);
  const header = (code: number, options: number, body: number) => {
    const h = Buffer.alloc(12);
    h.writeUInt32BE(code, 0);
    h.writeUInt32BE(options, 4);
    h.writeUInt32BE(body, 8);
    return h;
  };
  /** A request body: call id, signature, then `rest`. */
  const message = (id: number, sig: string, rest: Buffer = Buffer.alloc(0)) => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(id, 0);
    h.writeUInt32BE(sig.length, 4);
    return Buffer.concat([h, Buffer.from(sig, 'latin1'), rest]);
  };

  it('a header announcing a 4 GB body: the connection is closed after the 12 header bytes', async () => {
    const { client } = await WireClient.connect(s().server.socketPath);
    client.raw(header(1, 0, 0xffffffff));
    expect(await client.closedWithin(2000)).toBe(true);
    expect(refusals('FrameTooLarge').length).toBeGreaterThan(0);
    await stillServes(s());
  });

  it('oversized options: closed', async () => {
    const before = refusals('FrameTooLarge').length;
    const { client } = await WireClient.connect(s().server.socketPath);
    client.raw(header(1, 1 << 20, 10));
    expect(await client.closedWithin(2000)).toBe(true);
    expect(refusals('FrameTooLarge').length).toBe(before + 1);
    await stillServes(s());
  });

  it('a frame left unfinished is closed after the frame timeout; a connection idle between frames stays open', async () => {
    const idle = await WireClient.connect(s().server.socketPath);
    expect(await idle.client.initialize()).toBe(0);
    const { client } = await WireClient.connect(s().server.socketPath);
    client.raw(Buffer.concat([header(1, 0, 40), Buffer.alloc(10)]));
    expect(await client.closedWithin(FRAME_TIMEOUT_MS / 2)).toBe(false);
    expect(await client.closedWithin(FRAME_TIMEOUT_MS * 4)).toBe(true);
    expect(refusals('FrameTimeout').length).toBe(1);
    expect(idle.client.ended).toBe(false);
    expect(WireClient.rv(await idle.client.call('C_GetInfo'))).toBe(0);
    idle.client.close();
  });

  it('garbage instead of frames (an HTTP request): closed', async () => {
    const { client } = await WireClient.connect(s().server.socketPath, null);
    client.raw(Buffer.from('GET / HTTP/1.1\r\nHost: vault\r\n\r\n'));
    expect(await client.closedWithin(2000)).toBe(true);
    await stillServes(s());
  });

  it('a frame cut short by the end of the connection: logged as TruncatedFrame', async () => {
    const { client } = await WireClient.connect(s().server.socketPath);
    client.raw(Buffer.concat([header(1, 0, 100), Buffer.alloc(50)]));
    client.close();
    await expect.poll(() => refusals('TruncatedFrame').length).toBeGreaterThan(0);
    await stillServes(s());
  });

  it('an unknown call id, the error id, and a wrong signature: the connection is closed', async () => {
    for (const body of [message(200, 'u', Buffer.alloc(8)), message(0, 'u', Buffer.alloc(8)), message(callNamed('C_GetInfo').id, 'u')]) {
      const { client } = await WireClient.connect(s().server.socketPath);
      expect(await client.frame(body)).toBe(null);
      expect(client.ended).toBe(true);
    }
    expect(refusals('UnknownCall').length).toBe(2);
    expect(refusals('BadSignature').length).toBe(1);
    await stillServes(s());
  });

  it('a wrong handshake string in C_Initialize: CKR_GENERAL_ERROR, as p11-kit answers it', async () => {
    const { client: c } = await WireClient.connect(s().server.socketPath);
    const r = await c.call('C_Initialize', (w) => w.byteArray(Buffer.from('PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-2')).byte(0).byteArray(Buffer.alloc(0)));
    expect(WireClient.rv(r)).toBe(P.CKR.CKR_GENERAL_ERROR);
    expect(refusals('BadHandshake').length).toBe(1);
    // Still not initialized; the right handshake works on the same connection.
    expect(WireClient.rv(await c.call('C_GetInfo'))).toBe(P.CKR.CKR_CRYPTOKI_NOT_INITIALIZED);
    expect(await c.initialize()).toBe(0);
    c.close();
  });

  it('arguments cut short, trailing bytes, a bad flag byte, an impossible count: CKR_DEVICE_ERROR, and the connection goes on', async () => {
    const { c, session } = await loggedIn(s());
    const login = callNamed('C_Login');
    const u64 = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(n);
      return b;
    };
    const cases: [string, Buffer][] = [
      ['Truncated', message(login.id, login.request, u64(session).subarray(0, 5))],
      ['TrailingBytes', message(callNamed('C_CloseSession').id, 'u', Buffer.concat([u64(999n), Buffer.of(0)]))],
      ['InvalidValue', message(callNamed('C_SeedRandom').id, 'uay', Buffer.concat([u64(session), Buffer.of(7), Buffer.alloc(4)]))],
      // 2^32-1 attributes announced, none sent: refused before anything is allocated.
      ['TooLong', message(callNamed('C_FindObjectsInit').id, 'uaA', Buffer.concat([u64(session), Buffer.from('ffffffff', 'hex')]))],
      // 200 attributes (within the template limit) announced, no bytes for them.
      ['TooLong', message(callNamed('C_FindObjectsInit').id, 'uaA', Buffer.concat([u64(session), Buffer.from('000000c8', 'hex')]))],
      // A byte array longer than the message.
      ['Truncated', message(callNamed('C_SeedRandom').id, 'uay', Buffer.concat([u64(session), Buffer.of(1), Buffer.from('00100000', 'hex')]))],
    ];
    for (const [reason, body] of cases) {
      const before = refusals(reason as keyof typeof P11KitErrorCode).length;
      const answer = await c.frame(body);
      expect(answer, reason).not.toBe(null);
      expect(answer!.equals(RpcWriter.error(P.CKR.CKR_DEVICE_ERROR)), reason).toBe(true);
      expect(refusals(reason as keyof typeof P11KitErrorCode).length, reason).toBe(before + 1);
    }
    // Same connection, same session: still logged in and working.
    const r = await c.call('C_GenerateRandom', (w) => w.ulong(session).bufferSize('fy', 16));
    expect(WireClient.rv(r)).toBe(0);
    c.close();
  });

  it('a client that sends requests without reading the answers is cut off once they pile up (Flooding)', async () => {
    const { c, session } = await loggedIn(s());
    c.pause();
    // Each asks for 1 MiB of random bytes; the answers stay unread.
    const one = new RpcWriter(callNamed('C_GenerateRandom'), 'request').ulong(session).bufferSize('fy', 1 << 20).finish();
    const frame = Buffer.concat([header(9, 0, one.length), one]);
    for (let i = 0; i < 12; i++) c.raw(frame);
    await expect.poll(() => refusals('Flooding').length, { timeout: 5000 }).toBe(1);
    c.close();
    await stillServes(s());
  });

  it('random frames (seeded): each is answered or closes its connection, never crashes the server', async () => {
    let x = 0x9e3779b9;
    const rnd = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x >>> 0;
    };
    for (let i = 0; i < 60; i++) {
      const { client } = await WireClient.connect(s().server.socketPath);
      const len = rnd() % 64;
      const body = Buffer.alloc(len);
      for (let j = 0; j < len; j++) body[j] = rnd() & 0xff;
      // A valid call id half of the time, so that argument decoding is reached too.
      if (len >= 4 && i % 2 === 0) body.writeUInt32BE(1 + (rnd() % 65), 0);
      const answer = await client.frame(body);
      if (answer !== null) expect(answer.readUInt32BE(0)).toBeLessThan(66);
      client.close();
    }
    await stillServes(s());
  });

  it('logs carry codes and call names only: no PIN and none of the bytes that were refused', async () => {
    const text = JSON.stringify(s().logs);
    expect(text).not.toContain(USER_PIN);
    expect(text).not.toContain('HTTP');
    expect(text).not.toContain('V-2');
    for (const e of s().logs.filter((l) => l.event === 'refused')) expect(Object.keys(e).sort()).toEqual(expect.arrayContaining(['answer', 'connection', 'event', 'reason']));
  });

  it('a closed connection leaves nothing behind: its module is finalized and the count returns to zero', async () => {
    await expect.poll(() => s().server.connections()).toBe(0);
    expect(s().logs.filter((e) => e.event === 'connected').length).toBe(s().logs.filter((e) => e.event === 'closed').length);
  });
});

/** Whether a client script's `ecdsaSignature` (r || s, hex) verifies on `hash` under its `ecPoint` (CKA_EC_POINT, hex DER) with @noble/curves. */
function ecdsaVerifies(out: Record<string, unknown>, hash: Buffer): boolean {
  const point = Buffer.from(out.ecPoint as string, 'hex');
  expect(point.subarray(0, 2).toString('hex')).toBe('0441');
  return p256.verify(Buffer.from(out.ecdsaSignature as string, 'hex'), hash, point.subarray(2), { prehash: false, lowS: false });
}

const clientMissing = missing([{ what: CLIENT, present: existsSync(CLIENT) }]);
const toolMissing = missing([
  { what: CLIENT, present: existsSync(CLIENT) },
  { what: 'pkcs11-tool', present: which('pkcs11-tool') !== null },
]);

describe.skipIf(toolMissing !== null)(`pkcs11-tool through p11-kit-client.so${toolMissing ? ` (skipped: ${toolMissing})` : ''}`, () => {
  const s = served();
  const tool = (...args: string[]) => run('pkcs11-tool', ['--module', CLIENT, ...args], { env: s().env });
  /** A run expected to fail: its stderr. */
  const failing = async (...args: string[]) => {
    const r = await tool(...args).then(
      () => null,
      (e: { stderr: string }) => e.stderr,
    );
    expect(r, `pkcs11-tool ${args.join(' ')} should fail`).not.toBe(null);
    return r!;
  };

  it('--list-slots shows the vault token', async () => {
    const { stdout } = await tool('--list-slots');
    expect(stdout).toContain(`token label        : ${s().server.label}`);
    expect(stdout).toContain('token manufacturer : Backup Key Vault');
    expect(stdout).toMatch(/token flags\s+: login required, rng, token initialized, PIN initialized/);
  });

  it('--list-mechanisms lists those p11-kit 0.24.1 can carry', async () => {
    const { stdout } = await tool('--list-mechanisms');
    expect(stdout).toContain('AES-KEY-GEN');
    expect(stdout).toContain('SHA256-HMAC');
    expect(stdout).toContain('ECDSA-KEY-PAIR-GEN');
    expect(stdout).toMatch(/^\s*ECDSA, keySize=\{256,256\}, sign, verify$/m);
  });

  it('--keypairgen EC:prime256v1, --sign and --verify --mechanism ECDSA: r || s that @noble/curves verifies; a tampered signature is invalid', async () => {
    const pin = ['--login', '--pin', USER_PIN];
    const gen = await tool(...pin, '--keypairgen', '--key-type', 'EC:prime256v1', '--label', 'tool-ec', '--id', 'ec01');
    expect(gen.stdout).toContain('Public Key Object; EC  EC_POINT 256 bits');
    const q = Buffer.from(/EC_POINT:\s+0441([0-9a-f]{130})/.exec(gen.stdout)![1]!, 'hex');
    const f = (name: string) => join(s().dir, name);
    const hash = Buffer.alloc(32, 0x3c);
    writeFileSync(f('hash'), hash);
    const signed = await tool(...pin, '--sign', '--mechanism', 'ECDSA', '--id', 'ec01', '-i', f('hash'), '-o', f('sig'));
    expect(signed.stderr).toContain('Using signature algorithm ECDSA');
    const sig = readFileSync(f('sig'));
    expect(sig.length).toBe(64); // OpenSC writes r || s as the token gives it (no --signature-format)
    expect(p256.verify(sig, hash, q, { prehash: false, lowS: false })).toBe(true);
    const verify = (sigFile: string) => tool(...pin, '--verify', '--mechanism', 'ECDSA', '--id', 'ec01', '-i', f('hash'), '--signature-file', f(sigFile));
    expect((await verify('sig')).stdout).toContain('Signature is valid');
    const bad = Buffer.from(sig);
    bad[3]! ^= 1;
    writeFileSync(f('bad'), bad);
    // OpenSC 0.23 reports C_Verify's CKR_SIGNATURE_INVALID as text (its exit status stays 0)
    const refused = await verify('bad');
    expect(refused.stdout + refused.stderr).toContain('Invalid signature');
    expect(refused.stdout).not.toContain('Signature is valid');
  });

  it('--keygen AES:32 then --list-objects shows the key, its value sensitive', async () => {
    const gen = await tool('--login', '--pin', USER_PIN, '--keygen', '--key-type', 'AES:32', '--label', 'escrow-aes');
    expect(gen.stdout).toContain('Secret Key Object; AES length 32');
    const list = await tool('--login', '--pin', USER_PIN, '--list-objects');
    expect(list.stdout).toContain('label:      escrow-aes');
    expect(list.stderr).toContain('CKR_ATTRIBUTE_SENSITIVE');
  });

  it('PIN lockout after the configured failures, which SoftHSM2 never does', async () => {
    for (let i = 0; i < MAX_FAILURES; i++) expect(await failing('--login', '--pin', 'wrong-pin', '--list-objects')).toContain('CKR_PIN_INCORRECT');
    expect(await failing('--login', '--pin', USER_PIN, '--list-objects')).toContain('CKR_PIN_LOCKED');
    const { stdout } = await tool('--list-slots');
    expect(stdout).toContain('user PIN locked');
  });
});

describe.skipIf(clientMissing !== null)(`pkcs11js through p11-kit-client.so${clientMissing ? ` (skipped: ${clientMissing})` : ''}`, () => {
  const s = served();

  it('C_Initialize to C_Finalize in another process: slots, token info, login, AES and HMAC keys, sign and verify, random, an EC key pair, ECDSA sign and verify', async () => {
    const script = join(import.meta.dirname, 'p11kit-pkcs11js.mjs');
    const { stdout } = await run(process.execPath, [script, CLIENT, USER_PIN], { env: s().env });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(out.slots).toBe(2); // the token's slot and the free one
    expect(out.label).toBe(s().server.label);
    expect((out.tokenFlags as number) & P.CKF_USER_PIN_INITIALIZED).toBeTruthy();
    expect(out.aesValueLen).toBe(32);
    expect(out.aesValue).toBe('CKR_ATTRIBUTE_SENSITIVE');
    // p11-kit 0.24.1's client carries no AES-GCM parameters: it refuses the mechanism itself,
    // before anything reaches the server (the wire suite above runs AES-GCM on the server).
    expect(out.gcm).toBe('CKR_MECHANISM_INVALID');
    expect(out.macLength).toBe(32);
    expect(out.verifies).toBe(true);
    expect(out.verifiesTampered).toBe('CKR_SIGNATURE_INVALID');
    expect(out.randomLength).toBe(48);
    expect(out.ecPointLength).toBe(67); // DER OCTET STRING of an uncompressed P-256 point
    expect(out.ecdsaLength).toBe(64);
    expect(ecdsaVerifies(out, Buffer.alloc(32, 0xab))).toBe(true);
    expect(out.ecdsaVerifies).toBe(true);
    expect(out.ecdsaTampered).toBe('CKR_SIGNATURE_INVALID');
    expect(out.ecdsaShortBuffer).toBe('CKR_BUFFER_TOO_SMALL');
    expect(out.ecdsaAfterShortBuffer).toBe(64);
    expect(out.ecdsaOnHmacKey).toBe('CKR_KEY_TYPE_INCONSISTENT');
  });
});

describe.skipIf(clientMissing !== null)(`graphene-pk11 through p11-kit-client.so${clientMissing ? ` (skipped: ${clientMissing})` : ''}`, () => {
  const s = served();

  it('in another process: the token, its mechanisms, a token AES key found by label, HMAC sign and verify, random, ECDSA sign and verify', async () => {
    const script = join(import.meta.dirname, 'p11kit-graphene.mjs');
    const { stdout } = await run(process.execPath, [script, CLIENT, USER_PIN], { env: s().env });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(ecdsaVerifies(out, Buffer.alloc(32, 0x42))).toBe(true);
    const { ecdsaSignature: _sig, ecPoint: _point, ...rest } = out;
    // seven mechanisms reach graphene: the token's less what p11-kit 0.24.1's client can not carry;
    // graphene's Verify.once answers C_Verify's CKR_SIGNATURE_INVALID as false
    expect(rest).toEqual({ label: s().server.label, mechanisms: 7, aesLabel: 'graphene-aes', found: 1, macLength: 32, verifies: true, randomLength: 20, ecdsaLength: 64, ecdsaVerifies: true, ecdsaTampered: false });
  });
});

const p11toolMissing = missing([
  { what: CLIENT, present: existsSync(CLIENT) },
  { what: 'p11tool', present: which('p11tool') !== null },
]);

describe.skipIf(p11toolMissing !== null)(`p11tool (GnuTLS) through p11-kit-client.so${p11toolMissing ? ` (skipped: ${p11toolMissing})` : ''}`, () => {
  const s = served();

  it('--list-tokens shows the token with its PKCS#11 URL', async () => {
    const { stdout } = await run('p11tool', ['--provider', CLIENT, '--list-tokens'], { env: s().env });
    expect(stdout).toContain(`Label: ${s().server.label}`);
    expect(stdout).toContain(`token=${s().server.label}`);
    expect(stdout).toContain('Manufacturer: Backup Key Vault');
  });

  it('--generate-privkey ECDSA on secp256r1, then --test-sign: GnuTLS signs with CKM_ECDSA in the token and verifies with the key pair', async () => {
    const env = { ...s().env, GNUTLS_PIN: USER_PIN };
    const token = `pkcs11:token=${s().server.label}`;
    const p11tool = (...args: string[]) => run('p11tool', ['--provider', CLIENT, '--login', ...args], { env });
    await p11tool('--generate-privkey', 'ECDSA', '--curve', 'secp256r1', '--label', 'gnutls-ec', token);
    const { stdout } = await p11tool('--list-privkeys', token);
    expect(stdout).toContain('Type: Private key (EC/ECDSA-SECP256R1)');
    const signed = await p11tool('--test-sign', `${token};object=gnutls-ec;type=private`);
    const text = signed.stdout + signed.stderr;
    expect(text).toContain('Signing using ECDSA-SHA256... ok');
    expect(text).toContain('Verifying against private key parameters... ok');
    expect(text).toContain('Verifying against public key in the token... ok');
  });
});

describe.skipIf(toolMissing !== null)(`pkcs11-tool --test --login through p11-kit-client.so${toolMissing ? ` (skipped: ${toolMissing})` : ''}`, () => {
  const s = served();

  it('reports no errors (its digest, signature and decryption tests find none of their mechanisms on this token, and say so)', async () => {
    // An EC key pair on the token: OpenSC 0.23's --test signs and verifies with RSA keys only
    // ("Signatures: not implemented" for the mechanisms it knows, "non-RSA, skipping" for the key).
    await run('pkcs11-tool', ['--module', CLIENT, '--login', '--pin', USER_PIN, '--keypairgen', '--key-type', 'EC:prime256v1', '--label', 'test-ec'], { env: s().env });
    const { stdout, stderr } = await run('pkcs11-tool', ['--module', CLIENT, '--test', '--login', '--pin', USER_PIN], { env: s().env });
    const text = stdout + stderr;
    expect(text).toContain('No errors');
    expect(text).toContain('testing key 0 (test-ec) -- non-RSA, skipping');
    expect(text).toContain('seeding (C_SeedRandom) not supported');
    expect(text).not.toContain('ERR:');
    expect(s().logs.filter((e) => e.event === 'refused')).toEqual([]);
  });
});
