/**
 * The emulator's cryptographic functions, PKCS#11 v2.40 §5.8 (encryption), §5.9 (decryption),
 * §5.11 (signing and MACing), §5.12 (verifying), §5.14 (key management: C_GenerateKey,
 * C_GenerateKeyPair, C_WrapKey, C_UnwrapKey, C_DeriveKey), with the checks in SoftHSM2's order:
 * session, operation already active, key handle, read access, the key's usage flag
 * (CKR_KEY_FUNCTION_NOT_PERMITTED), the mechanism (CKR_MECHANISM_INVALID), the key type
 * (CKR_KEY_TYPE_INCONSISTENT), then the parameters.
 *
 * pkcs11js conventions the emulator shares: an empty input Buffer reaches the library as a NULL
 * pointer (CKR_ARGUMENTS_BAD, the operation stays active); an empty output Buffer asks for the
 * length only (nothing is consumed, the operation stays active); a too-small output Buffer is
 * CKR_BUFFER_TOO_SMALL and the operation stays active (v2.40 §5.2); every other end of a
 * single-part call ends the operation. A GCM tag that does not verify, a tampered wrapped key
 * and an invalid ECDH point are CKR_GENERAL_ERROR, as in SoftHSM2.
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { getBool, getBytes, getUlong } from './attributes.ts';
import type { Attrs } from './attributes.ts';
import {
  GcmStream,
  HMAC_SIZE,
  aesUnwrap,
  aesWrap,
  checkValue,
  checkValueAes,
  checkValueGeneric,
  ctEqual,
  derOctetString,
  ecb,
  ecbCipher,
  ecGenerate,
  ecPeerPoint,
  ecdh,
  ecdsaSign,
  ecdsaVerify,
  ECDSA_P256_SIGNATURE_BYTES,
  gcmDecrypt,
  gcmDecryptInto,
  gcmEncryptInto,
  hmac,
  isAesKeyLength,
  randomBytes,
} from './mechanisms.ts';
import type { HmacHash } from './mechanisms.ts';
import type { EmulatorState, LiveObject } from './state.ts';
import { withHeader } from './objects.ts';
import { haveRead, haveWrite } from './session-table.ts';
import type { Session } from './session-table.ts';

const { CKR } = P;
/** DER OIDs of P-384, P-521, secp256k1, P-224, P-192 (named curves OpenSSL, hence SoftHSM2, has). */
const OTHER_CURVES = new Set(['06052b81040022', '06052b81040023', '06052b8104000a', '06052b81040021', '06082a8648ce3d030101']);
const b = (v: boolean) => ({ t: 'b' as const, v });
const u = (v: number) => ({ t: 'u' as const, v: BigInt(v) });
const x = (v: Buffer) => ({ t: 'x' as const, v });

const NO_BYTES = Buffer.alloc(0);

/** The CK_GCM_PARAMS of a mechanism (absent IV or AAD: empty), or null when it has none. */
function gcmParams(m: P.Mechanism): P.GcmParams | null {
  const p = m.parameter as P.GcmParams | undefined;
  if (!p || typeof p !== 'object' || Buffer.isBuffer(p)) return null;
  if (p.type !== P.CK_PARAMS_AES_GCM && p.type !== P.CK_PARAMS_GCM && p.type !== P.CK_PARAMS_AES_GCM_v240) return null;
  return p;
}



function noParameter(m: P.Mechanism): boolean {
  return m.parameter === undefined || m.parameter === null || (Buffer.isBuffer(m.parameter) && m.parameter.length === 0);
}

/** Copies `r` into the caller's buffer and returns the filled part (pkcs11js style). */
function output(out: Buffer, r: Buffer): Buffer {
  r.copy(out, 0);
  return out.subarray(0, r.length);
}

function isInput(b: unknown): b is Buffer {
  return Buffer.isBuffer(b) && b.length > 0;
}

export class CryptoOps {
  constructor(private readonly m: EmulatorState) {}

  private begin(session: P.Handle, method: string): Session {
    this.m.requireInit();
    const s = this.m.session(session, method);
    if (s.op) P.fail(CKR.CKR_OPERATION_ACTIVE, method);
    return s;
  }

  private readable(s: Session, h: P.Handle, code: number, method: string): LiveObject {
    const o = this.m.object(h, code, method);
    this.m.check(haveRead(this.m.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), method);
    return o;
  }

  // ---- AES-GCM ----
  private cipherInit(kind: 'encrypt' | 'decrypt', session: P.Handle, mech: P.Mechanism, keyH: P.Handle): void {
    const method = kind === 'encrypt' ? 'C_EncryptInit' : 'C_DecryptInit';
    const s = this.begin(session, method);
    const o = this.readable(s, keyH, CKR.CKR_OBJECT_HANDLE_INVALID, method);
    if (!getBool(o.attrs, kind === 'encrypt' ? P.CKA_ENCRYPT : P.CKA_DECRYPT, false)) P.fail(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, method);
    const isEcb = mech?.mechanism === P.CKM_AES_ECB;
    if (mech?.mechanism !== P.CKM_AES_GCM && !isEcb) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    if (getUlong(o.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_AES) P.fail(CKR.CKR_KEY_TYPE_INCONSISTENT, method);
    if (isEcb) {
      if (!noParameter(mech)) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
      const v = getBytes(o.attrs, P.CKA_VALUE);
      if (!isAesKeyLength(v.length)) P.fail(CKR.CKR_MECHANISM_INVALID, method);
      const k = this.m.secretKeyObject(o, v);
      const base = { ecb: true, key: k, raw: v, iv: NO_BYTES, aad: NO_BYTES, tagBytes: 0, single: true, multi: true };
      s.op = kind === 'encrypt' ? { kind, ...base, stream: null } : { kind, ...base, chunks: [] };
      return;
    }
    const g = gcmParams(mech);
    const tagBits = g?.tagBits ?? 0;
    if (!g || tagBits > 128 || tagBits % 8 !== 0) P.fail(CKR.CKR_ARGUMENTS_BAD, method);
    const value = getBytes(o.attrs, P.CKA_VALUE);
    if (!isAesKeyLength(value.length)) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    const gIv = g.iv ?? NO_BYTES;
    if (gIv.length === 0 || gIv.length > 256) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
    // The key as a cached KeyObject: the operation keeps it even if the object is destroyed before it ends.
    const key = this.m.secretKeyObject(o, value);
    // Private copies of IV and AAD: the caller may reuse its buffers once Init returns.
    const iv = Buffer.from(gIv);
    const aad = Buffer.from(g.aad ?? NO_BYTES);
    const tagBytes = tagBits / 8;
    s.op =
      kind === 'encrypt'
        ? { kind, ecb: false, key, raw: value, iv, aad, tagBytes, single: true, multi: true, stream: null }
        : { kind, ecb: false, key, raw: value, iv, aad, tagBytes, single: true, multi: true, chunks: [] };
  }

  encryptInit(session: P.Handle, mech: P.Mechanism, key: P.Handle): void {
    this.cipherInit('encrypt', session, mech, key);
  }

  decryptInit(session: P.Handle, mech: P.Mechanism, key: P.Handle): void {
    this.cipherInit('decrypt', session, mech, key);
  }

  private op<K extends NonNullable<Session['op']>['kind']>(session: P.Handle, kind: K, method: string, part: 'single' | 'multi'): [Session, Extract<NonNullable<Session['op']>, { kind: K }>] {
    const s = this.m.session(session, method);
    const op = s.op;
    if (!op || op.kind !== kind) P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, method);
    if (op.kind !== 'find' && !op[part]) {
      s.op = null;
      P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, method);
    }
    return [s, op as Extract<NonNullable<Session['op']>, { kind: K }>];
  }

  encrypt(session: P.Handle, inData: Buffer, out: Buffer): Buffer {
    this.m.requireInit();
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Encrypt');
    const [s, op] = this.op(session, 'encrypt', 'C_Encrypt', 'single');
    if (out.length === 0) return out;
    if (op.ecb && inData.length % 16 !== 0) {
      s.op = null;
      P.fail(CKR.CKR_DATA_LEN_RANGE, 'C_Encrypt');
    }
    if (out.length < inData.length + op.tagBytes) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_Encrypt');
    s.op = null;
    if (op.ecb) return output(out, ecb(op.key, inData, false));
    return out.subarray(0, gcmEncryptInto(op.key, op.iv, op.aad, inData, op.tagBytes, out, op.raw));
  }

  encryptUpdate(session: P.Handle, inData: Buffer, out: Buffer): Buffer {
    this.m.requireInit();
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_EncryptUpdate');
    const [, op] = this.op(session, 'encrypt', 'C_EncryptUpdate', 'multi');
    if (out.length === 0) return out;
    if (out.length < inData.length) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_EncryptUpdate');
    op.stream ??= op.ecb ? ecbCipher(op.key, false) : new GcmStream(op.key, op.iv, op.aad, op.tagBytes);
    op.single = false;
    return output(out, op.stream.update(inData));
  }

  encryptFinal(session: P.Handle, out: Buffer): Buffer {
    this.m.requireInit();
    const [s, op] = this.op(session, 'encrypt', 'C_EncryptFinal', 'multi');
    if (out.length === 0) return out;
    if (out.length < op.tagBytes) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_EncryptFinal');
    s.op = null;
    if (op.ecb) {
      try {
        return output(out, op.stream ? op.stream.final() : NO_BYTES);
      } catch {
        P.fail(CKR.CKR_DATA_LEN_RANGE, 'C_EncryptFinal'); // a partial block left
      }
    }
    const stream = op.stream ?? new GcmStream(op.key, op.iv, op.aad, op.tagBytes);
    return output(out, stream.final());
  }

  decrypt(session: P.Handle, inData: Buffer, out: Buffer): Buffer {
    this.m.requireInit();
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Decrypt');
    const [s, op] = this.op(session, 'decrypt', 'C_Decrypt', 'single');
    if (out.length === 0) return out;
    if (op.ecb && inData.length % 16 !== 0) {
      s.op = null;
      P.fail(CKR.CKR_ENCRYPTED_DATA_LEN_RANGE, 'C_Decrypt');
    }
    if (out.length < inData.length) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_Decrypt');
    s.op = null;
    if (op.ecb) return output(out, ecb(op.key, inData, true));
    const n = gcmDecryptInto(op.key, op.iv, op.aad, inData, op.tagBytes, out, op.raw);
    if (n < 0) P.fail(CKR.CKR_GENERAL_ERROR, 'C_Decrypt');
    return out.subarray(0, n);
  }

  decryptUpdate(session: P.Handle, inData: Buffer, out: Buffer): Buffer {
    this.m.requireInit();
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_DecryptUpdate');
    const [, op] = this.op(session, 'decrypt', 'C_DecryptUpdate', 'multi');
    op.chunks.push(Buffer.from(inData));
    op.single = false;
    return out.subarray(0, 0);
  }

  decryptFinal(session: P.Handle, out: Buffer): Buffer {
    this.m.requireInit();
    const [s, op] = this.op(session, 'decrypt', 'C_DecryptFinal', 'multi');
    const all = Buffer.concat(op.chunks);
    if (out.length === 0) return out;
    if (out.length < Math.max(0, all.length - op.tagBytes)) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_DecryptFinal');
    s.op = null;
    if (op.ecb) {
      if (all.length % 16 !== 0) P.fail(CKR.CKR_ENCRYPTED_DATA_LEN_RANGE, 'C_DecryptFinal');
      return output(out, ecb(op.key, all, true));
    }
    const pt = gcmDecrypt(op.key, op.iv, op.aad, all, op.tagBytes);
    if (!pt) P.fail(CKR.CKR_GENERAL_ERROR, 'C_DecryptFinal');
    return output(out, pt);
  }

  // ---- HMAC (§2.20) and ECDSA (§2.3.6) ----
  /**
   * C_SignInit / C_VerifyInit, in SoftHSM2's order: the key's usage flag, the mechanism, then the
   * key: a generic secret for the HMACs; for CKM_ECDSA (no parameter) a P-256 private key to sign
   * and a P-256 public key to verify (the key type and class: CKR_KEY_TYPE_INCONSISTENT; another
   * curve: CKR_CURVE_NOT_SUPPORTED, the emulator has P-256 only).
   */
  signInit(kind: 'sign' | 'verify', session: P.Handle, mech: P.Mechanism, keyH: P.Handle): void {
    const method = kind === 'sign' ? 'C_SignInit' : 'C_VerifyInit';
    const s = this.begin(session, method);
    const o = this.readable(s, keyH, CKR.CKR_OBJECT_HANDLE_INVALID, method);
    if (!getBool(o.attrs, kind === 'sign' ? P.CKA_SIGN : P.CKA_VERIFY, false)) P.fail(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, method);
    if (mech?.mechanism === P.CKM_ECDSA) {
      if (!noParameter(mech)) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
      const cls = kind === 'sign' ? P.CKO_PRIVATE_KEY : P.CKO_PUBLIC_KEY;
      if (getUlong(o.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_EC || this.m.classOf(o) !== cls) P.fail(CKR.CKR_KEY_TYPE_INCONSISTENT, method);
      if (!getBytes(o.attrs, P.CKA_EC_PARAMS).equals(Buffer.from(P.EC_PARAMS_P256))) P.fail(CKR.CKR_CURVE_NOT_SUPPORTED, method);
      // The operation's own copy: the caller may destroy the key before C_Sign (as for the AES keys).
      const key = Buffer.from(kind === 'sign' ? getBytes(o.attrs, P.CKA_VALUE) : ecPeerPoint(getBytes(o.attrs, P.CKA_EC_POINT)));
      s.op = { kind, ecdsa: true, key, single: true, multi: false };
      return;
    }
    const hash: HmacHash | null = mech?.mechanism === P.CKM_SHA256_HMAC ? 'sha256' : mech?.mechanism === P.CKM_SHA512_HMAC ? 'sha512' : null;
    if (!hash) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    if (getUlong(o.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_GENERIC_SECRET) P.fail(CKR.CKR_KEY_TYPE_INCONSISTENT, method);
    const value = getBytes(o.attrs, P.CKA_VALUE);
    if (value.length < HMAC_SIZE[hash]) P.fail(CKR.CKR_KEY_SIZE_RANGE, method);
    const key = this.m.secretKeyObject(o, value);
    s.op = { kind, ecdsa: false, hash, key, single: true, multi: true, chunks: [] };
  }

  /**
   * C_Sign. CKM_ECDSA: `inData` is the hash, of any length (SEC 1 §4.1.3 keeps its leftmost 256
   * bits); the signature is r || s, 64 bytes. A signing failure (a stored scalar that is not in
   * [1, n-1]) is CKR_GENERAL_ERROR and ends the operation, as in SoftHSM2.
   */
  sign(session: P.Handle, inData: Buffer, out: Buffer): Buffer {
    this.m.requireInit();
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Sign');
    const [s, op] = this.op(session, 'sign', 'C_Sign', 'single');
    if (out.length === 0) return out;
    if (out.length < (op.ecdsa ? ECDSA_P256_SIGNATURE_BYTES : HMAC_SIZE[op.hash])) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_Sign');
    s.op = null;
    if (!op.ecdsa) return output(out, hmac(op.hash, op.key, [inData]));
    try {
      return output(out, ecdsaSign(op.key, inData));
    } catch {
      P.fail(CKR.CKR_GENERAL_ERROR, 'C_Sign');
    } finally {
      op.key.fill(0);
    }
  }

  macUpdate(kind: 'sign' | 'verify', session: P.Handle, inData: Buffer): void {
    this.m.requireInit();
    const method = kind === 'sign' ? 'C_SignUpdate' : 'C_VerifyUpdate';
    if (!isInput(inData)) P.fail(CKR.CKR_ARGUMENTS_BAD, method);
    const [, op] = this.op(session, kind, method, 'multi');
    if (op.ecdsa) return; // unreachable: `op` ended a single-part operation
    op.chunks.push(Buffer.from(inData));
    op.single = false;
  }

  /**
   * CKM_ECDSA is single-part only (v2.40 Current Mechanisms §2.3.1, Table 26), and v2.40 names no
   * code for a multi-part call on it; the emulator answers as SoftHSM2 2.6.1 does:
   * C_SignUpdate / C_VerifyUpdate end the operation with CKR_OPERATION_NOT_INITIALIZED (`op`),
   * C_SignFinal / C_VerifyFinal answer the same and leave it, so C_Sign / C_Verify still works.
   */
  private singlePartOnly(session: P.Handle, method: string): void {
    const op = this.m.session(session, method).op;
    if ((op?.kind === 'sign' || op?.kind === 'verify') && op.ecdsa) P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, method);
  }

  signFinal(session: P.Handle, out: Buffer): Buffer {
    this.m.requireInit();
    this.singlePartOnly(session, 'C_SignFinal');
    const [s, op] = this.op(session, 'sign', 'C_SignFinal', 'multi');
    if (op.ecdsa) return out; // unreachable: singlePartOnly refused it
    if (out.length === 0) return out;
    if (out.length < HMAC_SIZE[op.hash]) P.fail(CKR.CKR_BUFFER_TOO_SMALL, 'C_SignFinal');
    s.op = null;
    return output(out, hmac(op.hash, op.key, op.chunks));
  }

  verify(session: P.Handle, inData: Buffer, sig: Buffer): boolean {
    this.m.requireInit();
    if (!isInput(inData) || !isInput(sig)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Verify');
    const [s, op] = this.op(session, 'verify', 'C_Verify', 'single');
    s.op = null;
    if (op.ecdsa) {
      // A signature that is not exactly r || s of 32 bytes each: CKR_SIGNATURE_LEN_RANGE (v2.40 §5.12).
      if (sig.length !== ECDSA_P256_SIGNATURE_BYTES) P.fail(CKR.CKR_SIGNATURE_LEN_RANGE, 'C_Verify');
      if (!ecdsaVerify(op.key, inData, sig)) P.fail(CKR.CKR_SIGNATURE_INVALID, 'C_Verify');
      return true;
    }
    if (sig.length !== HMAC_SIZE[op.hash]) P.fail(CKR.CKR_SIGNATURE_LEN_RANGE, 'C_Verify');
    if (!ctEqual(hmac(op.hash, op.key, [inData]), sig)) P.fail(CKR.CKR_SIGNATURE_INVALID, 'C_Verify');
    return true;
  }

  verifyFinal(session: P.Handle, sig: Buffer): boolean {
    this.m.requireInit();
    if (!isInput(sig)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_VerifyFinal');
    this.singlePartOnly(session, 'C_VerifyFinal');
    const [s, op] = this.op(session, 'verify', 'C_VerifyFinal', 'multi');
    s.op = null;
    if (op.ecdsa) return false; // unreachable: singlePartOnly refused it
    if (sig.length !== HMAC_SIZE[op.hash]) P.fail(CKR.CKR_SIGNATURE_LEN_RANGE, 'C_VerifyFinal');
    if (!ctEqual(hmac(op.hash, op.key, op.chunks), sig)) P.fail(CKR.CKR_SIGNATURE_INVALID, 'C_VerifyFinal');
    return true;
  }

  // ---- key management ----
  generateKey(session: P.Handle, mech: P.Mechanism, template: P.Template): P.Handle {
    const method = 'C_GenerateKey';
    this.m.requireInit();
    const s = this.m.session(session, method);
    const keyType = mech?.mechanism === P.CKM_AES_KEY_GEN ? P.CKK_AES : mech?.mechanism === P.CKM_GENERIC_SECRET_KEY_GEN ? P.CKK_GENERIC_SECRET : -1;
    if (keyType < 0) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    const info = this.m.extract(template, { cls: P.CKO_SECRET_KEY, keyType, token: false, private: true });
    if (info.cls !== P.CKO_SECRET_KEY) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    if (info.keyType !== keyType) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, method);
    this.m.check(haveWrite(this.m.state(s), info.token, info.private), method);
    const { len, checkValue } = secretKeyLength(template, method, false);
    if (len === 0) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, method);
    if (keyType === P.CKK_AES && !isAesKeyLength(len)) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    if (len > 1 << 16) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    const tmpl = this.m.check(withHeader(info, template, [P.CKA_CHECK_VALUE]), method);
    const attrs = this.m.check(this.m.build(info, tmpl, 'generate', s), method);
    const value = randomBytes(len);
    attrs.set(P.CKA_LOCAL, b(true));
    attrs.set(P.CKA_KEY_GEN_MECHANISM, u(mech.mechanism));
    attrs.set(P.CKA_ALWAYS_SENSITIVE, b(getBool(attrs, P.CKA_SENSITIVE, false)));
    attrs.set(P.CKA_NEVER_EXTRACTABLE, b(!getBool(attrs, P.CKA_EXTRACTABLE, false)));
    setSecretValue(attrs, keyType, value, checkValue);
    return P.handleOf(this.m.insertObject(s, attrs));
  }

  generateKeyPair(session: P.Handle, mech: P.Mechanism, pubT: P.Template, privT: P.Template): P.KeyPair {
    const method = 'C_GenerateKeyPair';
    this.m.requireInit();
    const s = this.m.session(session, method);
    if (mech?.mechanism !== P.CKM_EC_KEY_PAIR_GEN) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    const pub = this.m.extract(pubT, { cls: P.CKO_PUBLIC_KEY, keyType: P.CKK_EC, token: false, private: false });
    if (pub.cls !== P.CKO_PUBLIC_KEY) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    if (pub.keyType !== P.CKK_EC) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, method);
    const priv = this.m.extract(privT, { cls: P.CKO_PRIVATE_KEY, keyType: P.CKK_EC, token: false, private: true });
    if (priv.cls !== P.CKO_PRIVATE_KEY) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    if (priv.keyType !== P.CKK_EC) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, method);
    this.m.check(haveWrite(this.m.state(s), pub.token || priv.token, pub.private || priv.private), method);
    let params: Buffer = Buffer.alloc(0);
    for (const a of pubT) if (a.type === P.CKA_EC_PARAMS) params = P.encodeAttributeValue(a.value);
    if (params.length === 0) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, method);
    // P-256 only; other named curves SoftHSM2 has are CKR_CURVE_NOT_SUPPORTED here, anything else
    // fails key generation as in SoftHSM2 (CKR_GENERAL_ERROR).
    if (!params.equals(Buffer.from(P.EC_PARAMS_P256))) P.fail(OTHER_CURVES.has(params.toString('hex')) ? CKR.CKR_CURVE_NOT_SUPPORTED : CKR.CKR_GENERAL_ERROR, method);
    const pubAttrs = this.m.check(this.m.build(pub, this.m.check(withHeader(pub, pubT, []), method), 'generate', s), method);
    const privAttrs = this.m.check(this.m.build(priv, this.m.check(withHeader(priv, privT, []), method), 'generate', s), method);
    const { d, q } = ecGenerate();
    pubAttrs.set(P.CKA_LOCAL, b(true));
    pubAttrs.set(P.CKA_KEY_GEN_MECHANISM, u(P.CKM_EC_KEY_PAIR_GEN));
    pubAttrs.set(P.CKA_EC_POINT, x(derOctetString(q)));
    privAttrs.set(P.CKA_LOCAL, b(true));
    privAttrs.set(P.CKA_KEY_GEN_MECHANISM, u(P.CKM_EC_KEY_PAIR_GEN));
    privAttrs.set(P.CKA_ALWAYS_SENSITIVE, b(getBool(privAttrs, P.CKA_SENSITIVE, false)));
    privAttrs.set(P.CKA_NEVER_EXTRACTABLE, b(!getBool(privAttrs, P.CKA_EXTRACTABLE, false)));
    privAttrs.set(P.CKA_EC_PARAMS, x(Buffer.from(params)));
    privAttrs.set(P.CKA_VALUE, x(d));
    const publicKey = P.handleOf(this.m.insertObject(s, pubAttrs));
    const privateKey = P.handleOf(this.m.insertObject(s, privAttrs));
    return { privateKey, publicKey };
  }

  wrapKey(session: P.Handle, mech: P.Mechanism, wrapH: P.Handle, keyH: P.Handle, out: Buffer): Buffer {
    const method = 'C_WrapKey';
    this.m.requireInit();
    const s = this.m.session(session, method);
    const pad = this.wrapMechanism(mech, method);
    const w = this.readable(s, wrapH, CKR.CKR_WRAPPING_KEY_HANDLE_INVALID, method);
    if (this.m.classOf(w) !== P.CKO_SECRET_KEY || getUlong(w.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_AES) P.fail(CKR.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, method);
    if (!getBool(w.attrs, P.CKA_WRAP, false)) P.fail(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, method);
    const k = this.readable(s, keyH, CKR.CKR_KEY_HANDLE_INVALID, method);
    if (!getBool(k.attrs, P.CKA_EXTRACTABLE, false)) P.fail(CKR.CKR_KEY_UNEXTRACTABLE, method);
    if (getBool(k.attrs, P.CKA_WRAP_WITH_TRUSTED, false) && !getBool(w.attrs, P.CKA_TRUSTED, false)) P.fail(CKR.CKR_KEY_NOT_WRAPPABLE, method);
    if (this.m.classOf(k) !== P.CKO_SECRET_KEY) P.fail(CKR.CKR_KEY_NOT_WRAPPABLE, method);
    const data = getBytes(k.attrs, P.CKA_VALUE);
    if (!pad && (data.length < 16 || data.length % 8 !== 0)) P.fail(CKR.CKR_KEY_SIZE_RANGE, method);
    const kek = getBytes(w.attrs, P.CKA_VALUE);
    if (!isAesKeyLength(kek.length)) P.fail(CKR.CKR_WRAPPING_KEY_SIZE_RANGE, method);
    const wrapped = aesWrap(kek, data, pad);
    if (out.length === 0) return out;
    if (out.length < wrapped.length) P.fail(CKR.CKR_BUFFER_TOO_SMALL, method);
    return output(out, wrapped);
  }

  unwrapKey(session: P.Handle, mech: P.Mechanism, unwrapH: P.Handle, wrapped: Buffer, template: P.Template): P.Handle {
    const method = 'C_UnwrapKey';
    this.m.requireInit();
    if (!isInput(wrapped)) P.fail(CKR.CKR_ARGUMENTS_BAD, method);
    const s = this.m.session(session, method);
    if (mech?.mechanism === P.CKM_AES_KEY_WRAP && (wrapped.length < 24 || wrapped.length % 8 !== 0)) P.fail(CKR.CKR_WRAPPED_KEY_LEN_RANGE, method);
    if (mech?.mechanism === P.CKM_AES_KEY_WRAP_PAD && (wrapped.length < 16 || wrapped.length % 8 !== 0)) P.fail(CKR.CKR_WRAPPED_KEY_LEN_RANGE, method);
    const pad = this.wrapMechanism(mech, method);
    const w = this.readable(s, unwrapH, CKR.CKR_UNWRAPPING_KEY_HANDLE_INVALID, method);
    if (this.m.classOf(w) !== P.CKO_SECRET_KEY || getUlong(w.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_AES) P.fail(CKR.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, method);
    if (!getBool(w.attrs, P.CKA_UNWRAP, false)) P.fail(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, method);
    const info = this.m.extract(template, { cls: P.CKO_VENDOR_DEFINED, keyType: P.CKK_VENDOR_DEFINED, token: false, private: true });
    if (!info.hasClass || !info.hasKeyType) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, method);
    if (info.cls !== P.CKO_SECRET_KEY) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, method);
    this.m.check(haveWrite(this.m.state(s), info.token, info.private), method);
    const tmpl = this.m.check(withHeader(info, template, []), method);
    const kek = getBytes(w.attrs, P.CKA_VALUE);
    if (!isAesKeyLength(kek.length)) P.fail(CKR.CKR_UNWRAPPING_KEY_SIZE_RANGE, method);
    const data = aesUnwrap(kek, wrapped, pad);
    if (!data) P.fail(CKR.CKR_GENERAL_ERROR, method);
    const attrs = this.m.check(this.m.build(info, tmpl, 'unwrap', s), method);
    attrs.set(P.CKA_LOCAL, b(false));
    attrs.set(P.CKA_ALWAYS_SENSITIVE, b(false));
    attrs.set(P.CKA_NEVER_EXTRACTABLE, b(false));
    attrs.set(P.CKA_VALUE, x(data));
    if (!template.some((a) => a.type === P.CKA_CHECK_VALUE)) attrs.set(P.CKA_CHECK_VALUE, x(checkValue(info.keyType, data)));
    return P.handleOf(this.m.insertObject(s, attrs));
  }

  private wrapMechanism(mech: P.Mechanism, method: string): boolean {
    if (mech?.mechanism !== P.CKM_AES_KEY_WRAP && mech?.mechanism !== P.CKM_AES_KEY_WRAP_PAD) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    if (!noParameter(mech)) P.fail(CKR.CKR_ARGUMENTS_BAD, method);
    return mech.mechanism === P.CKM_AES_KEY_WRAP_PAD;
  }

  deriveKey(session: P.Handle, mech: P.Mechanism, baseH: P.Handle, template: P.Template): P.Handle {
    const method = 'C_DeriveKey';
    this.m.requireInit();
    const s = this.m.session(session, method);
    if (mech?.mechanism !== P.CKM_ECDH1_DERIVE) P.fail(CKR.CKR_MECHANISM_INVALID, method);
    const base = this.readable(s, baseH, CKR.CKR_OBJECT_HANDLE_INVALID, method);
    if (!getBool(base.attrs, P.CKA_DERIVE, false)) P.fail(CKR.CKR_KEY_FUNCTION_NOT_PERMITTED, method);
    const info = this.m.extract(template, { cls: P.CKO_VENDOR_DEFINED, keyType: P.CKK_VENDOR_DEFINED, token: false, private: true });
    if (!info.hasClass || !info.hasKeyType) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, method);
    if (info.cls !== P.CKO_SECRET_KEY) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    if (info.keyType !== P.CKK_GENERIC_SECRET && info.keyType !== P.CKK_AES) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, method);
    this.m.check(haveWrite(this.m.state(s), info.token, info.private), method);
    if (this.m.classOf(base) !== P.CKO_PRIVATE_KEY || getUlong(base.attrs, P.CKA_KEY_TYPE, -1) !== P.CKK_EC) P.fail(CKR.CKR_KEY_TYPE_INCONSISTENT, method);
    const p = mech.parameter as P.EcdhParams | undefined;
    if (!p || typeof p !== 'object' || Buffer.isBuffer(p) || p.type !== P.CK_PARAMS_EC_DH) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
    if (p.kdf !== P.CKD_NULL) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
    if (p.sharedData && p.sharedData.length > 0) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
    if (!isInput(p.publicData)) P.fail(CKR.CKR_MECHANISM_PARAM_INVALID, method);
    const given = secretKeyLength(template, method, true);
    let byteLen = given.len;
    if (info.keyType === P.CKK_AES && ![0, 16, 24, 32].includes(byteLen)) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
    let z: Buffer;
    try {
      z = ecdh(getBytes(base.attrs, P.CKA_VALUE), ecPeerPoint(p.publicData));
    } catch {
      P.fail(CKR.CKR_GENERAL_ERROR, method);
    }
    const tmpl = this.m.check(withHeader(info, template, [P.CKA_CHECK_VALUE]), method);
    const attrs = this.m.check(this.m.build(info, tmpl, 'derive', s), method);
    if (byteLen === 0) byteLen = info.keyType === P.CKK_AES ? 32 : z.length;
    if (byteLen > z.length) P.fail(CKR.CKR_FUNCTION_FAILED, method);
    const value = Buffer.from(z.subarray(z.length - byteLen));
    z.fill(0);
    setDerivedHistory(attrs, base.attrs);
    setSecretValue(attrs, info.keyType, value, given.checkValue);
    return P.handleOf(this.m.insertObject(s, attrs));
  }
}

/**
 * A new secret key's template, read in order as SoftHSM2 does: its CKA_VALUE_LEN (0 when absent),
 * and whether it gets a CKA_CHECK_VALUE (not when the template gives an empty one). With
 * `valueReadOnly` (C_DeriveKey), a CKA_VALUE is CKR_ATTRIBUTE_READ_ONLY.
 */
function secretKeyLength(template: P.Template, method: string, valueReadOnly: boolean): { len: number; checkValue: boolean } {
  let len = 0;
  let checkValue = true;
  for (const a of template) {
    const raw = P.encodeAttributeValue(a.value);
    if (valueReadOnly && a.type === P.CKA_VALUE) P.fail(CKR.CKR_ATTRIBUTE_READ_ONLY, method);
    if (a.type === P.CKA_VALUE_LEN) {
      if (raw.length !== 8) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
      len = Number(raw.readBigUInt64LE(0));
    } else if (a.type === P.CKA_CHECK_VALUE) {
      if (raw.length > 0) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, method);
      checkValue = false;
    }
  }
  return { len, checkValue };
}

/** A new secret key's CKA_VALUE and, unless the template declined it, its CKA_CHECK_VALUE. */
function setSecretValue(attrs: Attrs, keyType: number, value: Buffer, checkValue: boolean): void {
  attrs.set(P.CKA_VALUE, x(value));
  if (checkValue) attrs.set(P.CKA_CHECK_VALUE, x(keyType === P.CKK_AES ? checkValueAes(value) : checkValueGeneric(value)));
}

/** v2.40 §4.10: a derived key is always-sensitive / never-extractable only if its base key was. */
function setDerivedHistory(attrs: Attrs, base: Attrs): void {
  attrs.set(P.CKA_LOCAL, b(false));
  attrs.set(P.CKA_ALWAYS_SENSITIVE, b(getBool(base, P.CKA_ALWAYS_SENSITIVE, false) && getBool(attrs, P.CKA_SENSITIVE, false)));
  attrs.set(P.CKA_NEVER_EXTRACTABLE, b(getBool(base, P.CKA_NEVER_EXTRACTABLE, true) && !getBool(attrs, P.CKA_EXTRACTABLE, false)));
}
