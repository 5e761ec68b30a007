/**
 * The firmware's `Token` (enclave/token.ts) over any PKCS#11 v2.40 module (enclave/api/pkcs11.ts
 * `Pkcs11`): the emulator token or SoftHSM2 through pkcs11js, injected by the device. One R/W
 * session, logged in as the user (v2.40 §5.6); handles cached by label (C_FindObjects on SoftHSM2
 * costs time for every stored object; bench/tokens.ts compares the tokens).
 *
 * Key templates (v2.40 §4.7-4.9): every key is a private token object, CKA_SENSITIVE = true,
 * CKA_EXTRACTABLE = false (so CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE hold), with only the
 * usage flags it needs set and every other one set false explicitly (SoftHSM2's defaults are
 * true), CKA_COPYABLE = false and CKA_MODIFIABLE = false last (so no attribute can be changed
 * afterwards, v3.0 §4.4.1):
 *   AES-256 (CKM_AES_KEY_GEN)            CKA_ENCRYPT, CKA_DECRYPT (CKA_ENCRYPT only for a
 *                                         counter-mode key of the ctr-hmac profile)
 *   generic secret (CKM_GENERIC_SECRET_KEY_GEN, >= the digest length, as SoftHSM2 requires)
 *                                         CKA_SIGN (CKM_SHA256_HMAC / CKM_SHA512_HMAC)
 *   EC P-256 (CKM_EC_KEY_PAIR_GEN)        private key CKA_DERIVE only (CKM_ECDH1_DERIVE, CKD_NULL)
 * Which firmware token profiles the token meets (token-profiles.ts) the device says
 * (hsm/tokens/open.ts checked them); without that, they are read from the module at first use.
 * A key every member of a fleet must hold (enclave/fleet/vault-keys.ts) is created from its value
 * (C_CreateObject) with the same template but CKA_VALUE for CKA_VALUE_LEN; the module then sets
 * CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE false (v2.40 §4.9: the value existed
 * outside the token), while CKA_SENSITIVE and CKA_EXTRACTABLE keep it from ever leaving again.
 * Mechanisms: AES-ECB (whole blocks, no parameter); AES-GCM with CK_PARAMS_GCM (96-bit IV, 128-bit tag; an empty plaintext goes
 * through C_EncryptInit + C_EncryptFinal, since pkcs11js hands an empty input over as NULL);
 * HMAC by C_Sign; ECDH derives a session generic-secret key (sensitive false, extractable true),
 * reads its CKA_VALUE (the shared x-coordinate) and destroys it.
 *
 * Data objects (CKO_DATA, v2.40 §4.5) hold the device's NVRAM: SoftHSM2 makes CKA_VALUE of a
 * data object read-only, so a write is destroy + create (hsm/nvram-token.ts alternates two
 * objects so that a crash between the two leaves the previous value).
 *
 * Provisioning by several processes at once (one device per partition): generate* first looks
 * the label up and returns an existing key, inside `exclusive` (a lock the device provides), so
 * racing partitions end up with one key per label. Faults are TokenError('CKR_...').
 */
import * as P from './api/pkcs11.ts';
import type { KeyHandle, Token } from './token.ts';
import { TokenError } from './token.ts';
import { supportedProfiles } from './token-profiles.ts';
import type { TokenProfile } from './token-profiles.ts';

export const DATA_APPLICATION = 'backup-key-vault';

export interface Pkcs11TokenOptions {
  /** An initialized module (C_Initialize done by the device). */
  module: P.Pkcs11;
  /** The token's label (CK_TOKEN_INFO, without padding). */
  label: string;
  userPin: string;
  /** Runs `fn` holding a lock shared by every process that uses this token. */
  exclusive?: <T>(fn: () => T) => T;
  /**
   * Also hold `exclusive` around every call that reads or writes token objects or the token's
   * state (slot lookup, session login, find, attribute reads, create, destroy, generate). SoftHSM2's
   * file object store can fail a write (CKR_GENERAL_ERROR) when another thread of the same process
   * rescans the token at that moment, and a C_GetTokenInfo while another process logs in; the
   * device sets this for SoftHSM2.
   */
  lockObjectStore?: boolean;
  /** The firmware token profiles the token meets, strongest first (hsm/tokens/requirements.ts); read from the module when absent. */
  profiles?: readonly TokenProfile[];
}

function tokenError(e: unknown): unknown {
  const n = P.normalizePkcs11Error(e);
  if (n instanceof P.Pkcs11Error) {
    const t = new TokenError(n.message);
    // detail: the PKCS#11 function that failed (normalizedModule names it) and the module's own words, if any
    const own = (n as { detail?: unknown }).detail;
    const detail = [n.method, typeof own === 'string' ? own : ''].filter((x) => x !== '').join(': ');
    Object.assign(t, { code: n.code, ...(detail !== '' && { detail }) });
    return t;
  }
  return n;
}

const bool = (type: number, value: boolean): P.Attribute => ({ type, value });

/**
 * The template of a key this token makes: a token object of `label` and `id`; a secret or private
 * key is private, sensitive, not extractable and not copyable; `extra` after the id; of `usages`,
 * those in `on` true and the others false; never modifiable.
 */
function keyTemplate(cls: number, keyType: number, label: string, id: Buffer, extra: P.Template, usages: number[], on: number[]): P.Template {
  const secret = cls !== P.CKO_PUBLIC_KEY;
  return [
    { type: P.CKA_CLASS, value: cls },
    { type: P.CKA_KEY_TYPE, value: keyType },
    bool(P.CKA_TOKEN, true),
    bool(P.CKA_PRIVATE, secret),
    { type: P.CKA_LABEL, value: label },
    { type: P.CKA_ID, value: id },
    ...extra,
    ...(secret ? [bool(P.CKA_SENSITIVE, true), bool(P.CKA_EXTRACTABLE, false)] : []),
    ...usages.map((f) => bool(f, on.includes(f))),
    ...(secret ? [bool(P.CKA_COPYABLE, false)] : []),
    bool(P.CKA_MODIFIABLE, false),
  ];
}

/** The session key ECDH derives (ecdhX): read once, then destroyed. Read-only, shared by every call. */
const ECDH_TEMPLATE: P.Template = Object.freeze([
  Object.freeze({ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }),
  Object.freeze({ type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET }),
  Object.freeze(bool(P.CKA_TOKEN, false)),
  Object.freeze(bool(P.CKA_SENSITIVE, false)),
  Object.freeze(bool(P.CKA_EXTRACTABLE, true)),
]) as P.Template;

/** A Buffer over the same memory as `b` (no copy): what the module reads or writes in place. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The module's answer as bytes the caller owns: `res` itself (or its filled front) when the module
 * wrote into it, as the emulator and pkcs11js do, else a copy.
 */
function ownedResult(out: Buffer, res: Uint8Array): Uint8Array {
  if (out.buffer === res.buffer && out.byteOffset === res.byteOffset) return out.length === res.length ? res : res.subarray(0, out.length);
  return new Uint8Array(out);
}

export class Pkcs11Token implements Token {
  private session: P.Handle;
  private readonly slot: P.Handle;
  private readonly keys = new Map<string, KeyHandle>();
  private readonly publicKeys = new Map<KeyHandle, Uint8Array>();
  private readonly handleBufs = new Map<KeyHandle, P.Handle>();
  private readonly exclusive: <T>(fn: () => T) => T;

  private held = 0;
  private profileList: readonly TokenProfile[] | undefined;

  constructor(private readonly opts: Pkcs11TokenOptions) {
    const outer = opts.exclusive ?? (<T>(fn: () => T): T => fn());
    // Reentrant within this instance: a locked section may call another one.
    this.exclusive = <T>(fn: () => T): T => {
      if (this.held > 0) return fn();
      return outer(() => {
        this.held++;
        try {
          return fn();
        } finally {
          this.held--;
        }
      });
    };
    const m = opts.module;
    // The token's info is its state too: SoftHSM2 fails a C_GetTokenInfo (CKR_GENERAL_ERROR, or
    // the slot missing from C_GetSlotList) while another process's C_Login writes the token's
    // flags (test/hsm/tokens/softhsm-processes.test.ts).
    this.slot = this.store(() =>
      this.call(() => {
        for (const s of m.C_GetSlotList(true)) {
          if (P.trimLabel(m.C_GetTokenInfo(s).label) === opts.label) return s;
        }
        throw new P.Pkcs11Error(P.CKR.CKR_TOKEN_NOT_PRESENT, 'C_GetSlotList');
      }),
    );
    this.session = this.store(() => this.openSession());
  }

  /** `fn` under the lock when object-store calls are serialized (lockObjectStore). */
  private store<T>(fn: () => T): T {
    return this.opts.lockObjectStore ? this.exclusive(fn) : fn();
  }

  private get m(): P.Pkcs11 {
    return this.opts.module;
  }

  private call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw tokenError(e);
    }
  }

  private openSession(): P.Handle {
    return this.call(() => {
      const s = this.m.C_OpenSession(this.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
      try {
        this.m.C_Login(s, P.CKU_USER, this.opts.userPin);
      } catch (e) {
        const n = P.normalizePkcs11Error(e);
        if (!(n instanceof P.Pkcs11Error && n.code === P.CKR.CKR_USER_ALREADY_LOGGED_IN)) {
          this.m.C_CloseSession(s);
          throw n;
        }
      }
      return s;
    });
  }

  /** Runs an operation; if it failed leaving the session unusable (an operation still active), a fresh session replaces it. */
  private op<T>(fn: (s: P.Handle) => T): T {
    try {
      return fn(this.session);
    } catch (e) {
      const n = P.normalizePkcs11Error(e);
      if (n instanceof P.Pkcs11Error && n.code === P.CKR.CKR_OPERATION_ACTIVE) this.renewSession();
      if (n instanceof P.Pkcs11Error && (n.code === P.CKR.CKR_OBJECT_HANDLE_INVALID || n.code === P.CKR.CKR_KEY_HANDLE_INVALID)) {
        // A key destroyed (zeroization by another process) or a handle gone with a logout: look again next time.
        this.keys.clear();
        this.publicKeys.clear();
      }
      throw tokenError(e);
    }
  }

  /** Opens a new session before closing the old one, so the login (and every handle) stays. */
  private renewSession(): void {
    const old = this.session;
    this.session = this.store(() => this.openSession());
    try {
      this.m.C_CloseSession(old);
    } catch {
      // already gone
    }
  }

  profiles(): readonly TokenProfile[] {
    this.profileList ??= this.opts.profiles ?? this.call(() => supportedProfiles(this.m, this.slot));
    return this.profileList;
  }

  /** Closes the session (the device's shutdown). */
  close(): void {
    try {
      this.m.C_CloseSession(this.session);
    } catch {
      // already closed
    }
  }

  private find(template: P.Template): P.Handle[] {
    return this.store(() => this.findUnlocked(template));
  }

  private findUnlocked(template: P.Template): P.Handle[] {
    return this.op((s) => {
      this.m.C_FindObjectsInit(s, template);
      try {
        const out: P.Handle[] = [];
        for (;;) {
          const batch = this.m.C_FindObjects(s, 64);
          out.push(...batch);
          if (batch.length < 64) return out;
        }
      } finally {
        this.m.C_FindObjectsFinal(s);
      }
    });
  }

  private attr(h: P.Handle, type: number): Buffer {
    return this.store(() => this.op((s) => this.m.C_GetAttributeValue(s, h, [{ type }])[0]!.value));
  }

  // ---- keys ----
  findKey(label: string): KeyHandle | null {
    const cached = this.keys.get(label);
    if (cached !== undefined) return cached;
    return this.store(() => this.findKeyUncached(label));
  }

  private findKeyUncached(label: string): KeyHandle | null {
    let best: { h: P.Handle; id: Buffer } | null = null;
    for (const h of this.find([{ type: P.CKA_LABEL, value: label }, bool(P.CKA_TOKEN, true)])) {
      const cls = P.ulongOf(this.attr(h, P.CKA_CLASS));
      if (cls !== P.CKO_SECRET_KEY && cls !== P.CKO_PRIVATE_KEY) continue;
      const id = this.attr(h, P.CKA_ID);
      if (!best || Buffer.compare(id, best.id) < 0) best = { h, id };
    }
    if (!best) return null;
    const k = P.handleNumber(best.h);
    this.keys.set(label, k);
    return k;
  }

  private findOrCreate(label: string, create: () => P.Handle): KeyHandle {
    return this.exclusive(() => {
      this.keys.delete(label);
      const existing = this.findKey(label);
      if (existing !== null) return existing;
      const k = P.handleNumber(create());
      this.keys.set(label, k);
      return k;
    });
  }

  private secretTemplate(label: string, keyType: number, len: number, usage: number[]): P.Template {
    const flags = [P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_WRAP, P.CKA_UNWRAP, P.CKA_DERIVE];
    return keyTemplate(P.CKO_SECRET_KEY, keyType, label, Buffer.from(this.random(16)), [{ type: P.CKA_VALUE_LEN, value: len }], flags, usage);
  }

  /**
   * The template of a key created from its value (C_CreateObject): as secretTemplate, with
   * CKA_VALUE in place of CKA_VALUE_LEN (which C_CreateObject takes from the value, v2.40 §4.7
   * footnote 2). The value goes to the module as a view of the caller's bytes, without a copy here.
   */
  private importTemplate(label: string, keyType: number, value: Uint8Array, usage: number[]): P.Template {
    const flags = [P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_WRAP, P.CKA_UNWRAP, P.CKA_DERIVE];
    return keyTemplate(P.CKO_SECRET_KEY, keyType, label, Buffer.from(this.random(16)), [{ type: P.CKA_VALUE, value: asBuffer(value) }], flags, usage);
  }

  importAesKey(label: string, value: Uint8Array, encryptOnly = false): KeyHandle {
    if (!(value instanceof Uint8Array) || value.length !== 32) throw new TokenError('CKR_KEY_SIZE_RANGE');
    const usage = encryptOnly ? [P.CKA_ENCRYPT] : [P.CKA_ENCRYPT, P.CKA_DECRYPT];
    return this.findOrCreate(label, () => this.op((s) => this.m.C_CreateObject(s, this.importTemplate(label, P.CKK_AES, value, usage))));
  }

  importHmacKey(label: string, value: Uint8Array): KeyHandle {
    if (!(value instanceof Uint8Array) || value.length < 32 || value.length > 64) throw new TokenError('CKR_KEY_SIZE_RANGE');
    return this.findOrCreate(label, () => this.op((s) => this.m.C_CreateObject(s, this.importTemplate(label, P.CKK_GENERIC_SECRET, value, [P.CKA_SIGN]))));
  }

  generateAesKey(label: string, encryptOnly = false): KeyHandle {
    const usage = encryptOnly ? [P.CKA_ENCRYPT] : [P.CKA_ENCRYPT, P.CKA_DECRYPT];
    return this.findOrCreate(label, () => this.op((s) => this.m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, this.secretTemplate(label, P.CKK_AES, 32, usage))));
  }

  generateHmacKey(label: string, len: number): KeyHandle {
    return this.findOrCreate(label, () =>
      this.op((s) => this.m.C_GenerateKey(s, { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN }, this.secretTemplate(label, P.CKK_GENERIC_SECRET, len, [P.CKA_SIGN]))),
    );
  }

  generateEcKeyPair(label: string): KeyHandle {
    return this.findOrCreate(label, () => {
      const id = Buffer.from(this.random(16));
      const pub = keyTemplate(P.CKO_PUBLIC_KEY, P.CKK_EC, label, id, [{ type: P.CKA_EC_PARAMS, value: Buffer.from(P.EC_PARAMS_P256) }], [P.CKA_VERIFY, P.CKA_ENCRYPT, P.CKA_WRAP, P.CKA_DERIVE], []);
      const priv = keyTemplate(P.CKO_PRIVATE_KEY, P.CKK_EC, label, id, [], [P.CKA_DERIVE, P.CKA_SIGN, P.CKA_DECRYPT, P.CKA_UNWRAP], [P.CKA_DERIVE]);
      return this.op((s) => this.m.C_GenerateKeyPair(s, { mechanism: P.CKM_EC_KEY_PAIR_GEN }, pub, priv).privateKey);
    });
  }

  ecPublicKey(key: KeyHandle): Uint8Array {
    const cached = this.publicKeys.get(key);
    if (cached) return cached.slice();
    const priv = P.handleOf(key);
    const label = this.attr(priv, P.CKA_LABEL);
    const id = this.attr(priv, P.CKA_ID);
    const [pub] = this.find([{ type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_LABEL, value: label }, { type: P.CKA_ID, value: id }]);
    if (!pub) throw new TokenError('CKR_KEY_HANDLE_INVALID');
    let point = this.attr(pub, P.CKA_EC_POINT);
    if (point.length === 67 && point[0] === 0x04 && point[1] === 65) point = point.subarray(2);
    if (point.length !== 65 || point[0] !== 0x04) throw new TokenError('CKR_GENERAL_ERROR');
    const out = new Uint8Array(point);
    this.publicKeys.set(key, out);
    return out.slice();
  }

  ecdhX(key: KeyHandle, point: Uint8Array): Uint8Array {
    if (point.length !== 33 && point.length !== 65) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    // DER OCTET STRING around the point: unambiguous where a raw point could look like DER.
    const publicData = Buffer.concat([Buffer.from([0x04, point.length]), point]);
    return this.op((s) => {
      const h = this.m.C_DeriveKey(s, { mechanism: P.CKM_ECDH1_DERIVE, parameter: { type: P.CK_PARAMS_EC_DH, kdf: P.CKD_NULL, publicData } }, this.handleBuf(key), ECDH_TEMPLATE);
      try {
        const v = this.m.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE }])[0]!.value;
        const out = new Uint8Array(v);
        v.fill(0);
        return out;
      } finally {
        this.m.C_DestroyObject(s, h);
      }
    });
  }

  // ---- mechanisms ----
  /** The 8-byte handle Buffer of a key, made once per key handle (only an encoding of the number). */
  private handleBuf(key: KeyHandle): P.Handle {
    let h = this.handleBufs.get(key);
    if (h === undefined) {
      h = P.handleOf(key);
      if (this.handleBufs.size >= 64) this.handleBufs.clear();
      this.handleBufs.set(key, h);
    }
    return h;
  }

  /**
   * CKM_AES_GCM parameters. The module reads IV and AAD at C_EncryptInit / C_DecryptInit (pkcs11js
   * copies them into its CK_GCM_PARAMS, the emulator into its operation), so Buffer views of the
   * caller's bytes do, without a copy.
   */
  private gcm(iv: Uint8Array, aad: Uint8Array): P.Mechanism {
    return {
      mechanism: P.CKM_AES_GCM,
      parameter: { type: P.CK_PARAMS_GCM, iv: asBuffer(iv), aad: asBuffer(aad), ivBits: iv.length * 8, tagBits: 128 },
    };
  }

  /** Handles a failed operation as op() does (fresh session, forgotten handles) and returns the TokenError to throw. */
  private failed(e: unknown): unknown {
    try {
      this.op(() => {
        throw e;
      });
    } catch (t) {
      return t;
    }
    return e;
  }

  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, into?: Uint8Array): Uint8Array {
    if (iv.length !== 12) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    const m = this.m;
    const s = this.session;
    try {
      m.C_EncryptInit(s, this.gcm(iv, aad), this.handleBuf(key));
      // The module writes ciphertext || tag straight into the result's memory (the caller's `into` when it is given).
      const n = plaintext.length + 16;
      const res = into !== undefined && into.length >= n ? into.subarray(0, n) : new Uint8Array(n);
      const out = plaintext.length === 0 ? m.C_EncryptFinal(s, asBuffer(res)) : m.C_Encrypt(s, asBuffer(plaintext), asBuffer(res));
      return ownedResult(out, res);
    } catch (e) {
      throw this.failed(e);
    }
  }

  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, into?: Uint8Array): Uint8Array {
    if (iv.length !== 12) throw new TokenError('CKR_MECHANISM_PARAM_INVALID');
    if (ciphertext.length < 16) throw new TokenError('CKR_ENCRYPTED_DATA_LEN_RANGE');
    const m = this.m;
    const s = this.session;
    // The plaintext lands in the result's memory (the caller's `into` when it is given): no copy of it is left behind to wipe.
    const res = into !== undefined && into.length >= ciphertext.length ? into.subarray(0, ciphertext.length) : new Uint8Array(ciphertext.length);
    try {
      m.C_DecryptInit(s, this.gcm(iv, aad), this.handleBuf(key));
      const out = m.C_Decrypt(s, asBuffer(ciphertext), asBuffer(res));
      if (out.buffer === res.buffer && out.byteOffset === res.byteOffset) return res.subarray(0, out.length);
      const r = new Uint8Array(out);
      out.fill(0);
      res.fill(0);
      return r;
    } catch (e) {
      res.fill(0);
      throw this.failed(e);
    }
  }

  encryptEcb(key: KeyHandle, blocks: Uint8Array): Uint8Array {
    if (blocks.length === 0 || blocks.length % 16 !== 0) throw new TokenError('CKR_DATA_LEN_RANGE');
    return this.op((s) => {
      this.m.C_EncryptInit(s, { mechanism: P.CKM_AES_ECB }, this.handleBuf(key));
      const res = new Uint8Array(blocks.length);
      return ownedResult(this.m.C_Encrypt(s, asBuffer(blocks), asBuffer(res)), res);
    });
  }

  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
    const [mechanism, size] = hash === 'SHA-256' ? [P.CKM_SHA256_HMAC, 32] : hash === 'SHA-512' ? [P.CKM_SHA512_HMAC, 64] : [0, 0];
    if (!mechanism) throw new TokenError('CKR_MECHANISM_INVALID');
    return this.op((s) => {
      this.m.C_SignInit(s, { mechanism }, this.handleBuf(key));
      const res = new Uint8Array(size);
      const out = data.length === 0 ? this.m.C_SignFinal(s, asBuffer(res)) : this.m.C_Sign(s, asBuffer(data), asBuffer(res));
      return ownedResult(out, res);
    });
  }

  random(n: number): Uint8Array {
    if (!Number.isSafeInteger(n) || n < 0) throw new TokenError('CKR_ARGUMENTS_BAD');
    if (n === 0) return new Uint8Array(0);
    const res = new Uint8Array(n);
    return ownedResult(this.op((s) => this.m.C_GenerateRandom(s, asBuffer(res))), res);
  }

  destroyAllKeys(): void {
    this.store(() => {
      for (const cls of [P.CKO_SECRET_KEY, P.CKO_PRIVATE_KEY, P.CKO_PUBLIC_KEY]) {
        for (const h of this.find([{ type: P.CKA_CLASS, value: cls }, bool(P.CKA_TOKEN, true)])) {
          this.op((s) => this.m.C_DestroyObject(s, h));
        }
      }
    });
    this.keys.clear();
    this.publicKeys.clear();
  }

  // ---- data objects ----
  private dataTemplate(label: string): P.Template {
    return [
      { type: P.CKA_CLASS, value: P.CKO_DATA },
      bool(P.CKA_TOKEN, true),
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_APPLICATION, value: DATA_APPLICATION },
    ];
  }

  /** The values of every data object with this label (normally zero or one). */
  readData(label: string): Uint8Array[] {
    return this.find(this.dataTemplate(label)).map((h) => new Uint8Array(this.attr(h, P.CKA_VALUE)));
  }

  /** Replaces the data object(s) with this label by one holding `value` (destroy, then create). */
  writeData(label: string, value: Uint8Array): void {
    this.store(() => {
      this.destroyData(label);
      this.op((s) => this.m.C_CreateObject(s, [...this.dataTemplate(label), bool(P.CKA_PRIVATE, true), { type: P.CKA_VALUE, value: Buffer.from(value) }]));
    });
  }

  destroyData(label: string): void {
    this.store(() => {
      for (const h of this.find(this.dataTemplate(label))) this.op((s) => this.m.C_DestroyObject(s, h));
    });
  }
}
