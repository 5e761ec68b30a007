/**
 * One p11-kit RPC request in, one response out, over a `Pkcs11` module (enclave/api/pkcs11.ts):
 * each supported call reads its arguments in signature order (codec.ts), ends the message,
 * calls the module and writes its results, as p11-kit rpc-server.c does for each `rpc_C_*`.
 * A Pkcs11Error becomes the error response with its CKR_ value; a malformed argument is
 * CKR_DEVICE_ERROR (rpc-server.c `PARSE_ERROR`); calls not listed in HANDLERS answer
 * CKR_FUNCTION_NOT_SUPPORTED without reading their arguments.
 *
 * Output buffers (`fy`): the module writes into a buffer the server allocates, never larger than
 * the call's bound (below) whatever size the client names. A length query (size 0) is answered
 * with the bound without calling the module, which PKCS#11 v2.40 §5.2 allows ("a number of bytes
 * which would suffice", possibly somewhat larger); a buffer smaller than the output gets the
 * length and CKR_OK on the wire, which p11-kit's client turns into CKR_BUFFER_TOO_SMALL
 * (rpc-server.c `proto_write_byte_array`).
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { P11KitError, P11KitErrorCode as E } from './errors.ts';
import { RPC_HANDSHAKE } from './calls.ts';
import type { CodecLimits, RpcReader, WireAttribute, WireMechanism } from './codec.ts';
import { RpcWriter, valueKind } from './codec.ts';

const { CKR } = P;

/** A connection's view of the token: its own module instance once the client has called C_Initialize. */
export interface CallContext {
  /** The initialized module (CKR_CRYPTOKI_NOT_INITIALIZED before C_Initialize). */
  module(): P.Pkcs11;
  /** C_Initialize: a fresh module for this connection (CKR_CRYPTOKI_ALREADY_INITIALIZED if it has one). */
  initialize(): void;
  /** C_Finalize: the connection's module finalized and dropped. */
  finalize(): void;
  readonly limits: CodecLimits;
  /** Bytes fed to C_DecryptUpdate per session since C_DecryptInit (the bound of C_DecryptFinal); an entry goes with C_CloseSession or C_Finalize. */
  readonly decryptPending: Map<bigint, number>;
  /** The signature length of the sign operation C_SignInit started per session (`signatureLength`); an entry goes with C_CloseSession or C_Finalize. */
  readonly signLength: Map<bigint, number>;
}

type Handler = (r: RpcReader, c: CallContext) => Buffer;

// ---- conversions between wire values and the module's ----

const handle = (v: bigint): P.Handle => P.handleOf(v);
const wireHandle = (h: P.Handle): bigint => h.readBigUInt64LE(0);
const num = (v: bigint): number => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Number.MAX_SAFE_INTEGER);
const text = (b: Buffer): string => b.toString('utf8');

/** A template for the module; an attribute sent without a value is refused (PKCS#11 v2.40 §4.1.1). */
function template(attrs: WireAttribute[]): P.Template {
  return attrs.map((a) => {
    if (a.value === null) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID);
    return { type: a.type, value: a.value };
  });
}

/** A mechanism for the module, in pkcs11js's shape (CK_PARAMS_GCM, CK_PARAMS_EC_DH, or the raw parameter bytes). */
function mechanism(m: WireMechanism): P.Mechanism {
  const p = m.param;
  if (p === null) return { mechanism: m.type };
  switch (p.kind) {
    case 'bytes':
      return { mechanism: m.type, parameter: p.bytes };
    case 'gcm':
      if (p.ivBits > 0xffffffffn || p.tagBits > 0xffffffffn) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID);
      return { mechanism: m.type, parameter: { type: P.CK_PARAMS_GCM, iv: p.iv, aad: p.aad, ivBits: Number(p.ivBits), tagBits: Number(p.tagBits) } };
    case 'ecdh':
      if (p.kdf > 0xffffffffn) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID);
      return { mechanism: m.type, parameter: { type: P.CK_PARAMS_EC_DH, kdf: Number(p.kdf), publicData: p.publicData, ...(p.sharedData !== null && { sharedData: p.sharedData }) } };
    case 'unsupported':
      return P.fail(CKR.CKR_MECHANISM_INVALID);
  }
}

// ---- output bounds (bytes the server allocates for one call's output) ----

/** AES-GCM adds at most a 16-byte tag (PKCS#11 v2.40 §2.12.3); a block cipher at most a block. */
const CIPHER_OVERHEAD = 16;
/** Largest signature or MAC of any mechanism this server passes on (an RSA-4096 signature). */
const SIGNATURE_BOUND = 512;
/**
 * The exact output of the emulator's signing mechanisms: HMAC-SHA256 / SHA512 (v2.40 §2.20) and
 * CKM_ECDSA on P-256, r || s (§2.3.1: twice the 32-byte order length); any other mechanism gets
 * SIGNATURE_BOUND. So a C_Sign length query after C_SignInit(CKM_ECDSA) is answered 64.
 */
function signatureLength(mechanism: number): number {
  if (mechanism === P.CKM_SHA256_HMAC) return 32;
  if (mechanism === P.CKM_SHA512_HMAC || mechanism === P.CKM_ECDSA) return 64;
  return SIGNATURE_BOUND;
}
/** Largest wrapped key (an EC or RSA private key in PKCS#8, wrapped and padded). */
const WRAPPED_BOUND = 8192;

/**
 * Runs `fn` with an output buffer for an `fy` of `size` bytes and writes `ay`: the bytes, or the
 * length the caller needs. `bound` (at most the server's output limit) is the most the call can produce.
 */
function output(c: CallContext, out: { size: number; query: boolean }, bound: number, fn: (buf: Buffer) => Buffer, w: RpcWriter): Buffer {
  const cap = Math.max(1, Math.min(bound, c.limits.maxOutput));
  // A length query, or a buffer of length 0: the module is not called (a call would consume the input).
  if (out.query || out.size === 0) return w.byteArray(null, cap).finish();
  let result: Buffer;
  try {
    result = fn(Buffer.alloc(Math.min(out.size, cap)));
  } catch (e) {
    if (e instanceof P.Pkcs11Error && e.code === CKR.CKR_BUFFER_TOO_SMALL) return w.byteArray(null, cap).finish();
    throw e;
  }
  return w.byteArray(Buffer.from(result)).finish();
}

const reply = (r: RpcReader): RpcWriter => new RpcWriter(r.call);
const empty = (r: RpcReader): Buffer => reply(r).finish();

/** C_GetAttributeValue's per-attribute errors, in the order of precedence the answer reports. */
const ATTRIBUTE_ERRORS: readonly number[] = [CKR.CKR_ATTRIBUTE_SENSITIVE, CKR.CKR_ATTRIBUTE_TYPE_INVALID, CKR.CKR_BUFFER_TOO_SMALL];

/**
 * C_GetAttributeValue, PKCS#11 v2.40 §5.7: each attribute is asked for on its own, so that one
 * sensitive or unknown attribute marks only itself unavailable (CK_UNAVAILABLE_INFORMATION) and
 * the call still answers the others, with the CKR_ value as the response's last field
 * (rpc-server.c `proto_write_attribute_array`).
 */
function getAttributeValue(r: RpcReader, c: CallContext): Buffer {
  const session = handle(r.ulong());
  const object = handle(r.ulong());
  const wanted = r.attributeBuffers(c.limits);
  r.end();
  const m = c.module();
  let rv: number = CKR.CKR_OK;
  const worse = (code: number) => {
    if (rv === CKR.CKR_OK || ATTRIBUTE_ERRORS.indexOf(code) < ATTRIBUTE_ERRORS.indexOf(rv)) rv = code;
  };
  const results = wanted.map(({ type, size }) => {
    if (valueKind(type) === 'template') {
      worse(CKR.CKR_ATTRIBUTE_TYPE_INVALID);
      return { type, value: null, length: -1 };
    }
    let value: Buffer;
    try {
      value = m.C_GetAttributeValue(session, object, [{ type }])[0]!.value;
    } catch (e) {
      if (e instanceof P.Pkcs11Error && (e.code === CKR.CKR_ATTRIBUTE_SENSITIVE || e.code === CKR.CKR_ATTRIBUTE_TYPE_INVALID)) {
        worse(e.code);
        return { type, value: null, length: -1 };
      }
      throw e;
    }
    if (size === 0) return { type, value: null, length: value.length };
    if (size < value.length) {
      worse(CKR.CKR_BUFFER_TOO_SMALL);
      return { type, value: null, length: -1 };
    }
    return { type, value: Buffer.from(value), length: value.length };
  });
  return reply(r).attributes(results).ulong(rv).finish();
}

/** A CK_ULONG array result (`au`) for a caller with room for `room` values (0: the count only). */
function ulongs(r: RpcReader, values: readonly bigint[], room: number): Buffer {
  if (room === 0 || room < values.length) return reply(r).ulongArray(null, values.length).finish();
  return reply(r).ulongArray(values).finish();
}

const HANDLERS: Record<string, Handler> = {
  C_Initialize(r, c) {
    const hs = r.byteArray();
    r.byte(); // whether the application passed pReserved
    r.byteArray(); // its bytes: not used
    r.end();
    // rpc-server.c `rpc_C_Initialize`: a missing or wrong handshake string is CKR_GENERAL_ERROR.
    if (hs.data === null || !hs.data.equals(RPC_HANDSHAKE)) throw new P11KitError(E.BadHandshake, 'C_Initialize without the protocol handshake');
    c.initialize();
    return empty(r);
  },
  C_Finalize(r, c) {
    r.end();
    c.finalize();
    return empty(r);
  },
  C_GetInfo(r, c) {
    r.end();
    const i = c.module().C_GetInfo();
    return reply(r).version(i.cryptokiVersion).spaceString(i.manufacturerID, 32).ulong(i.flags).spaceString(i.libraryDescription, 32).version(i.libraryVersion).finish();
  },
  C_GetSlotList(r, c) {
    const present = r.byte() !== 0;
    const room = r.ulongBufferSize();
    r.end();
    return ulongs(r, c.module().C_GetSlotList(present).map(wireHandle), room);
  },
  C_GetSlotInfo(r, c) {
    const slot = handle(r.ulong());
    r.end();
    const i = c.module().C_GetSlotInfo(slot);
    return reply(r).spaceString(i.slotDescription, 64).spaceString(i.manufacturerID, 32).ulong(i.flags).version(i.hardwareVersion).version(i.firmwareVersion).finish();
  },
  C_GetTokenInfo(r, c) {
    const slot = handle(r.ulong());
    r.end();
    const t = c.module().C_GetTokenInfo(slot);
    const w = reply(r).spaceString(t.label, 32).spaceString(t.manufacturerID, 32).spaceString(t.model, 16).spaceString(t.serialNumber, 16);
    for (const v of [t.flags, t.maxSessionCount, t.sessionCount, t.maxRwSessionCount, t.rwSessionCount, t.maxPinLen, t.minPinLen]) w.ulong(v);
    for (const v of [t.totalPublicMemory, t.freePublicMemory, t.totalPrivateMemory, t.freePrivateMemory]) w.ulong(v);
    return w.version(t.hardwareVersion).version(t.firmwareVersion).spaceString(t.utcTime, 16).finish();
  },
  C_GetMechanismList(r, c) {
    const slot = handle(r.ulong());
    const room = r.ulongBufferSize();
    r.end();
    return ulongs(r, c.module().C_GetMechanismList(slot).map(BigInt), room);
  },
  C_GetMechanismInfo(r, c) {
    const slot = handle(r.ulong());
    const type = num(r.ulong());
    r.end();
    const i = c.module().C_GetMechanismInfo(slot, type);
    return reply(r).ulong(i.minKeySize).ulong(i.maxKeySize).ulong(i.flags).finish();
  },
  C_InitToken(r, c) {
    const slot = handle(r.ulong());
    const pin = r.bytes();
    const label = r.string();
    r.end();
    c.module().C_InitToken(slot, text(pin), text(label));
    return empty(r);
  },
  C_OpenSession(r, c) {
    const slot = handle(r.ulong());
    const flags = num(r.ulong());
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_OpenSession(slot, flags))).finish();
  },
  C_CloseSession(r, c) {
    const s = r.ulong();
    r.end();
    c.module().C_CloseSession(handle(s));
    c.decryptPending.delete(s);
    c.signLength.delete(s);
    return empty(r);
  },
  C_CloseAllSessions(r, c) {
    const slot = handle(r.ulong());
    r.end();
    c.module().C_CloseAllSessions(slot);
    return empty(r);
  },
  C_GetSessionInfo(r, c) {
    const s = handle(r.ulong());
    r.end();
    const i = c.module().C_GetSessionInfo(s);
    return reply(r).ulong(wireHandle(i.slotID)).ulong(i.state).ulong(i.flags).ulong(i.deviceError).finish();
  },
  C_InitPIN(r, c) {
    const s = handle(r.ulong());
    const pin = r.bytes();
    r.end();
    c.module().C_InitPIN(s, text(pin));
    return empty(r);
  },
  C_SetPIN(r, c) {
    const s = handle(r.ulong());
    const oldPin = r.bytes();
    const newPin = r.bytes();
    r.end();
    c.module().C_SetPIN(s, text(oldPin), text(newPin));
    return empty(r);
  },
  C_Login(r, c) {
    const s = handle(r.ulong());
    const user = num(r.ulong());
    const pin = r.bytes();
    r.end();
    c.module().C_Login(s, user, text(pin));
    return empty(r);
  },
  C_Logout(r, c) {
    const s = handle(r.ulong());
    r.end();
    c.module().C_Logout(s);
    return empty(r);
  },
  C_CreateObject(r, c) {
    const s = handle(r.ulong());
    const t = r.template(c.limits);
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_CreateObject(s, template(t)))).finish();
  },
  C_CopyObject(r, c) {
    const s = handle(r.ulong());
    const o = handle(r.ulong());
    const t = r.template(c.limits);
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_CopyObject(s, o, template(t)))).finish();
  },
  C_DestroyObject(r, c) {
    const s = handle(r.ulong());
    const o = handle(r.ulong());
    r.end();
    c.module().C_DestroyObject(s, o);
    return empty(r);
  },
  C_GetAttributeValue: getAttributeValue,
  C_SetAttributeValue(r, c) {
    const s = handle(r.ulong());
    const o = handle(r.ulong());
    const t = r.template(c.limits);
    r.end();
    c.module().C_SetAttributeValue(s, o, template(t));
    return empty(r);
  },
  C_FindObjectsInit(r, c) {
    const s = handle(r.ulong());
    const t = r.template(c.limits);
    r.end();
    c.module().C_FindObjectsInit(s, template(t));
    return empty(r);
  },
  C_FindObjects(r, c) {
    const s = handle(r.ulong());
    const room = r.ulongBufferSize();
    r.end();
    // At most `maxTemplate` handles a call: the client asks again for the rest (PKCS#11 v2.40 §5.7).
    const found = c.module().C_FindObjects(s, Math.min(room, c.limits.maxTemplate));
    return reply(r).ulongArray(found.map(wireHandle)).finish();
  },
  C_FindObjectsFinal(r, c) {
    const s = handle(r.ulong());
    r.end();
    c.module().C_FindObjectsFinal(s);
    return empty(r);
  },
  C_EncryptInit: init('C_EncryptInit'),
  C_Encrypt: dataCall('C_Encrypt', (n) => n + CIPHER_OVERHEAD),
  C_EncryptUpdate: dataCall('C_EncryptUpdate', (n) => n + CIPHER_OVERHEAD),
  C_EncryptFinal: finalCall('C_EncryptFinal', () => 2 * CIPHER_OVERHEAD),
  C_DecryptInit(r, c) {
    const s = r.ulong();
    const m = mechanism(r.mechanism());
    const key = handle(r.ulong());
    r.end();
    c.module().C_DecryptInit(handle(s), m, key);
    c.decryptPending.set(s, 0);
    return empty(r);
  },
  C_Decrypt: dataCall('C_Decrypt', (n) => n),
  C_DecryptUpdate: dataCall('C_DecryptUpdate', (n) => n, (c, s, n) => c.decryptPending.set(s, (c.decryptPending.get(s) ?? 0) + n)),
  // Unknown (no C_DecryptInit seen on this connection): the output limit.
  C_DecryptFinal: finalCall('C_DecryptFinal', (c, s) => c.decryptPending.get(s) ?? c.limits.maxOutput),
  C_SignInit: init('C_SignInit', (c, s, m) => c.signLength.set(s, signatureLength(m.mechanism))),
  C_Sign: dataCall('C_Sign', () => SIGNATURE_BOUND, undefined, (c, s) => c.signLength.get(s) ?? SIGNATURE_BOUND),
  C_SignUpdate(r, c) {
    const s = handle(r.ulong());
    const data = r.bytes();
    r.end();
    c.module().C_SignUpdate(s, data);
    return empty(r);
  },
  C_SignFinal: finalCall('C_SignFinal', (c, s) => c.signLength.get(s) ?? SIGNATURE_BOUND),
  C_VerifyInit: init('C_VerifyInit'),
  C_Verify(r, c) {
    const s = handle(r.ulong());
    const data = r.bytes();
    const sig = r.bytes();
    r.end();
    if (!c.module().C_Verify(s, data, sig)) P.fail(CKR.CKR_SIGNATURE_INVALID, 'C_Verify');
    return empty(r);
  },
  C_VerifyUpdate(r, c) {
    const s = handle(r.ulong());
    const data = r.bytes();
    r.end();
    c.module().C_VerifyUpdate(s, data);
    return empty(r);
  },
  C_VerifyFinal(r, c) {
    const s = handle(r.ulong());
    const sig = r.bytes();
    r.end();
    if (!c.module().C_VerifyFinal(s, sig)) P.fail(CKR.CKR_SIGNATURE_INVALID, 'C_VerifyFinal');
    return empty(r);
  },
  C_GenerateKey(r, c) {
    const s = handle(r.ulong());
    const m = mechanism(r.mechanism());
    const t = r.template(c.limits);
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_GenerateKey(s, m, template(t)))).finish();
  },
  C_GenerateKeyPair(r, c) {
    const s = handle(r.ulong());
    const m = mechanism(r.mechanism());
    const pub = r.template(c.limits);
    const priv = r.template(c.limits);
    r.end();
    const kp = c.module().C_GenerateKeyPair(s, m, template(pub), template(priv));
    return reply(r).ulong(wireHandle(kp.publicKey)).ulong(wireHandle(kp.privateKey)).finish();
  },
  C_WrapKey(r, c) {
    const s = handle(r.ulong());
    const m = mechanism(r.mechanism());
    const wrapping = handle(r.ulong());
    const key = handle(r.ulong());
    const out = r.outputSize();
    r.end();
    return output(c, out, WRAPPED_BOUND, (b) => c.module().C_WrapKey(s, m, wrapping, key, b), reply(r));
  },
  C_UnwrapKey(r, c) {
    const s = handle(r.ulong());
    const m = mechanism(r.mechanism());
    const unwrapping = handle(r.ulong());
    const wrapped = r.bytes();
    const t = r.template(c.limits);
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_UnwrapKey(s, m, unwrapping, wrapped, template(t)))).finish();
  },
  C_DeriveKey(r, c) {
    const s = handle(r.ulong());
    const m = mechanism(r.mechanism());
    const base = handle(r.ulong());
    const t = r.template(c.limits);
    r.end();
    return reply(r).ulong(wireHandle(c.module().C_DeriveKey(s, m, base, template(t)))).finish();
  },
  C_SeedRandom(r, c) {
    handle(r.ulong());
    r.bytes();
    r.end();
    c.module();
    // The token's generator takes no outside seed (PKCS#11 v2.40 §5.15).
    return P.fail(CKR.CKR_RANDOM_SEED_NOT_SUPPORTED, 'C_SeedRandom');
  },
  C_GenerateRandom(r, c) {
    const s = handle(r.ulong());
    const out = r.outputSize();
    r.end();
    // The size is the number of random bytes asked for: bounded like any output.
    if (out.size > c.limits.maxOutput) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_GenerateRandom');
    // No bytes asked for: nothing to generate, once the session is known to be valid.
    if (out.size === 0) {
      c.module().C_GetSessionInfo(s);
      return reply(r).byteArray(Buffer.alloc(0)).finish();
    }
    return reply(r).byteArray(Buffer.from(c.module().C_GenerateRandom(s, Buffer.alloc(out.size)))).finish();
  },
};

/**
 * The `uayfy` calls (session, input, output buffer): the output bounded by `bound(input length)`;
 * `fed` runs once the module has taken the input (not for a length query, which never reaches it).
 */
function dataCall(
  name: 'C_Encrypt' | 'C_EncryptUpdate' | 'C_Decrypt' | 'C_DecryptUpdate' | 'C_Sign',
  bound: (inputLength: number) => number,
  fed?: (c: CallContext, session: bigint, inputLength: number) => void,
  sessionBound?: (c: CallContext, session: bigint) => number,
): Handler {
  return (r, c) => {
    const s = r.ulong();
    const data = r.bytes();
    const out = r.outputSize();
    r.end();
    const most = sessionBound ? sessionBound(c, s) : bound(data.length);
    const res = output(c, out, most, (b) => c.module()[name](handle(s), data, b), reply(r));
    if (fed && !out.query && out.size > 0) fed(c, s, data.length);
    return res;
  };
}

/** The `ufy` calls that end an operation (session, output buffer). */
function finalCall(name: 'C_EncryptFinal' | 'C_DecryptFinal' | 'C_SignFinal', bound: (c: CallContext, session: bigint) => number): Handler {
  return (r, c) => {
    const s = r.ulong();
    const out = r.outputSize();
    r.end();
    return output(c, out, bound(c, s), (b) => c.module()[name](handle(s), b), reply(r));
  };
}

/** C_EncryptInit, C_SignInit, C_VerifyInit: session, mechanism, key; `started` runs once the module has started the operation. */
function init(name: 'C_EncryptInit' | 'C_SignInit' | 'C_VerifyInit', started?: (c: CallContext, session: bigint, m: P.Mechanism) => void): Handler {
  return (r, c) => {
    const s = r.ulong();
    const m = mechanism(r.mechanism());
    const key = handle(r.ulong());
    r.end();
    c.module()[name](handle(s), m, key);
    started?.(c, s, m);
    return empty(r);
  };
}

/** The calls this server implements; every other call of the table answers CKR_FUNCTION_NOT_SUPPORTED. */
export const SUPPORTED_CALLS: readonly string[] = Object.keys(HANDLERS);

/**
 * The response body to one parsed request. Throws a P11KitError only for BadHandshake (which the
 * caller answers CKR_GENERAL_ERROR) and for argument faults (CKR_DEVICE_ERROR); PKCS#11 errors
 * become error responses here.
 */
export function dispatch(r: RpcReader, c: CallContext): Buffer {
  const h = HANDLERS[r.call.name];
  if (!h) return RpcWriter.error(CKR.CKR_FUNCTION_NOT_SUPPORTED);
  try {
    return h(r, c);
  } catch (e) {
    const err = P.normalizePkcs11Error(e, r.call.name);
    if (err instanceof P.Pkcs11Error) return RpcWriter.error(err.code);
    throw err;
  }
}
