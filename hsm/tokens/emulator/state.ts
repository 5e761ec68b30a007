/**
 * The emulator token's PKCS#11 module: a thin dispatcher for the v2.40 §5 functions of the
 * `Pkcs11` interface (enclave/api/pkcs11.ts) over its managers: slots and tokens (pins.ts and
 * the store, persistence.ts), sessions and handles (sessions.ts), objects and the attribute
 * policy (objects.ts, attributes.ts) and the mechanisms (crypto.ts, mechanisms.ts).
 *
 * It behaves like SoftHSM2 2.6.1 driven through pkcs11js on the subset this project uses: the
 * same checks in the same order, so the same mistake gets the same CKR_ code
 * (test/conformance/). Its deliberate differences are listed in softhsm-config/README.md: PIN
 * lockout, power-on self-tests, zeroization, only P-256 and only this project's mechanisms, no
 * find oracle on secret values, and private objects encrypted at rest under a PIN-wrapped key.
 *
 * Slots: one per token in the store, in creation order (slot id = index), and one free slot
 * after them where C_InitToken creates a new token (which becomes visible at once).
 */
import { createSecretKey, randomBytes as nodeRandomBytes, randomFillSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import * as P from '../../../enclave/api/pkcs11.ts';
import { decodeAttrs, encodeAttrs, getBool, getBytes, getUlong, readTemplate, applyTemplate, matches } from './attributes.ts';
import { checkValue } from './mechanisms.ts';
import type { Attrs } from './attributes.ts';
import { CryptoOps } from './crypto.ts';
import { buildObject, extractInfo, requireClass, MAX_TEMPLATE } from './objects.ts';
import type { TemplateInfo } from './objects.ts';
import { TokenStore } from './persistence.ts';
import type { StoreState, StoredObject, StoredToken } from './persistence.ts';
import { MAX_PIN_LEN, MIN_PIN_LEN, openBody, sealBody, soLocked, tokenFlags, unwrapTokenKey, userLocked, wrapTokenKey } from './pins.ts';
import type { PinPolicy } from './pins.ts';
import { runSelfTests } from './selftest.ts';
import type { SelfTestReport } from './selftest.ts';
import { Handles, haveRead, haveWrite, sessionState } from './sessions.ts';
import type { Session, Who } from './sessions.ts';

const { CKR } = P;

export interface EmulatorOptions {
  /** Token store file; null or absent keeps the tokens in memory (gone with the process). */
  storeFile?: string | null;
  /** Wrong user PINs in a row before CKF_USER_PIN_LOCKED (default 10; 0 = never). */
  userPinMaxFailures?: number;
  /** Wrong SO PINs in a row before CKF_SO_PIN_LOCKED (default 0 = never). */
  soPinMaxFailures?: number;
  /** PBKDF2 iterations for new PINs (default 20000). */
  pinKdfIterations?: number;
  /** How long key use trusts the loaded store before checking the file again (default 100 ms). */
  revalidateMs?: number;
  lockTimeoutMs?: number;
  lockStaleMs?: number;
  /** Tests only: the named power-on self-test fails. */
  selfTestFault?: string;
}

/** A token object's decoded attributes, for the stored body they were decoded from. */
interface Decoded {
  body: Buffer;
  attrs: Attrs;
  /** The object as `object()` hands it out, made once per decoded state. */
  live?: LiveObject;
}

/** An object as the module sees it: where it lives and its (decrypted) attributes. */
export interface LiveObject {
  uid: string;
  serial: string;
  session: number | null;
  attrs: Attrs;
}

export class EmulatorModule implements P.Pkcs11 {
  readonly libPath = 'backup-key-vault:emulator';
  private initialized = false;
  private store: TokenStore | null = null;
  private readonly handles = new Handles();
  private readonly sessions = new Map<number, Session>();
  /** Login state per token serial, with the token key it unlocked. */
  private readonly logins = new Map<string, { who: Exclude<Who, null>; tokenKey: Buffer }>();
  private readonly sessionObjects = new Map<string, LiveObject & { private: boolean }>();
  private readonly decoded = new Map<string, Decoded>();
  /**
   * node:crypto KeyObjects of secret keys (CKA_VALUE), by object uid, so that a key operation
   * neither copies the key into the JS heap nor imports it again. An entry serves only the very
   * attribute map it was made from (a re-decoded, changed or re-created object has a new one), and
   * is dropped with its object: C_DestroyObject, C_SetAttributeValue, logout, the close of the
   * session of a session object, a store reload that no longer has the object, C_InitToken,
   * C_Finalize and zeroization.
   */
  private readonly keyObjects = new Map<string, { serial: string; attrs: Attrs; key: KeyObject }>();
  /** C_GenerateRandom's pool: filled by the CSPRNG 4 KiB at a time, every byte handed out once and wiped. */
  private readonly randomPool = Buffer.alloc(4096);
  private randomOff = 4096;
  private prunedState: StoreState | null = null;
  private readonly policy: PinPolicy;
  private readonly revalidateMs: number;
  private checkedAt = -Infinity;
  private lastSelfTest: SelfTestReport | null = null;
  private readonly crypto: CryptoOps;

  constructor(private readonly opts: EmulatorOptions = {}) {
    this.policy = {
      userMaxFailures: opts.userPinMaxFailures ?? 10,
      soMaxFailures: opts.soPinMaxFailures ?? 0,
      kdfIterations: opts.pinKdfIterations ?? 20_000,
    };
    this.revalidateMs = opts.revalidateMs ?? 100;
    this.crypto = new CryptoOps(this);
  }

  // ---------------------------------------------------------------- general (§5.4)
  C_Initialize(_options?: P.InitializationOptions): void {
    if (this.initialized) P.fail(CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED, 'C_Initialize');
    const report = runSelfTests(this.opts.selfTestFault);
    this.lastSelfTest = report;
    if (!report.ok) {
      const e = new P.Pkcs11Error(CKR.CKR_FIPS_SELF_TEST_FAILED, 'C_Initialize');
      Object.assign(e, { detail: `self-tests failed: ${report.failed.join(', ')}` });
      throw e;
    }
    // The store outlives C_Finalize (an in-memory store too): a re-initialized module sees its tokens.
    this.store ??= new TokenStore(this.opts.storeFile ?? null, { lockTimeoutMs: this.opts.lockTimeoutMs, lockStaleMs: this.opts.lockStaleMs });
    this.initialized = true;
  }

  C_Finalize(): void {
    this.requireInit();
    this.sessions.clear();
    this.handles.clear();
    this.sessionObjects.clear();
    for (const l of this.logins.values()) l.tokenKey.fill(0);
    this.logins.clear();
    this.decoded.clear();
    this.keyObjects.clear();
    this.initialized = false;
  }

  C_GetInfo(): P.ModuleInfo {
    this.requireInit();
    return {
      cryptokiVersion: { major: 2, minor: 40 },
      manufacturerID: pad('Backup Key Vault', 32),
      flags: 0,
      libraryDescription: pad('BKV PKCS#11 token emulator', 32),
      libraryVersion: { major: 1, minor: 0 },
    };
  }

  /** The last power-on self-test report (null before C_Initialize). */
  selfTestReport(): SelfTestReport | null {
    return this.lastSelfTest;
  }

  /**
   * Device zeroization: every token and object is destroyed and the store file overwritten with
   * zeros, synced and removed; sessions and logins end. The module stays initialized with one
   * free slot (a real HSM's zeroize command; SoftHSM2 has none).
   */
  zeroize(): void {
    this.requireInit();
    this.store!.zeroize();
    this.sessions.clear();
    this.handles.clear();
    this.sessionObjects.clear();
    for (const l of this.logins.values()) l.tokenKey.fill(0);
    this.logins.clear();
    this.decoded.clear();
    this.keyObjects.clear();
  }

  // ---------------------------------------------------------------- slots and tokens (§5.5)
  C_GetSlotList(_tokenPresent?: boolean): P.Handle[] {
    this.requireInit();
    const n = this.tokens().length;
    return Array.from({ length: n + 1 }, (_, i) => P.handleOf(i));
  }

  C_GetSlotInfo(slot: P.Handle): P.SlotInfo {
    this.requireInit();
    const i = this.slotIndex(slot);
    return {
      slotDescription: pad(`BKV emulator slot ${i}`, 64),
      manufacturerID: pad('Backup Key Vault', 32),
      flags: P.CKF_TOKEN_PRESENT,
      hardwareVersion: { major: 1, minor: 0 },
      firmwareVersion: { major: 1, minor: 0 },
    };
  }

  C_GetTokenInfo(slot: P.Handle): P.TokenInfo {
    this.requireInit();
    const t = this.tokens()[this.slotIndex(slot)] ?? null;
    const now = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
    return {
      label: t ? P.padLabel(t.label) : pad('', 32),
      manufacturerID: pad('Backup Key Vault', 32),
      model: pad('BKV emulator', 16),
      serialNumber: pad(t?.serial ?? '', 16),
      flags: tokenFlags(t, this.policy),
      maxSessionCount: 0,
      sessionCount: 0xffffffff,
      maxRwSessionCount: 0,
      rwSessionCount: 0xffffffff,
      maxPinLen: MAX_PIN_LEN,
      minPinLen: MIN_PIN_LEN,
      hardwareVersion: { major: 1, minor: 0 },
      firmwareVersion: { major: 1, minor: 0 },
      utcTime: `${now}00`,
      totalPublicMemory: 0xffffffffffffffffn,
      freePublicMemory: 0xffffffffffffffffn,
      totalPrivateMemory: 0xffffffffffffffffn,
      freePrivateMemory: 0xffffffffffffffffn,
    };
  }

  C_GetMechanismList(slot: P.Handle): number[] {
    this.requireInit();
    this.slotIndex(slot);
    return [...MECHANISMS.keys()];
  }

  C_GetMechanismInfo(slot: P.Handle, mech: number): P.MechanismInfo {
    this.requireInit();
    this.slotIndex(slot);
    const info = MECHANISMS.get(mech);
    if (!info) P.fail(CKR.CKR_MECHANISM_INVALID, 'C_GetMechanismInfo');
    return { ...info };
  }

  /** Returns the padded label (pkcs11js's declared result, which graphene-pk11 reads). */
  C_InitToken(slot: P.Handle, pin?: string, label?: string): string {
    this.requireInit();
    const i = this.slotIndex(slot);
    const existing = this.tokens()[i];
    if (existing && [...this.sessions.values()].some((s) => s.serial === existing.serial)) P.fail(CKR.CKR_SESSION_EXISTS, 'C_InitToken');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_InitToken');
    const pinLen = Buffer.byteLength(pin, 'utf8');
    if (pinLen < MIN_PIN_LEN || pinLen > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_INCORRECT, 'C_InitToken');
    const name = P.trimLabel(label ?? '').slice(0, 32);
    const tokenKey = nodeRandomBytes(32);
    try {
      const so = wrapTokenKey(tokenKey, pin, this.policy.kdfIterations);
      const rv = this.store!.update((s) => {
        const t = s.tokens[i];
        if (t) {
          if (soLocked(t, this.policy)) return CKR.CKR_PIN_LOCKED;
          const old = unwrapTokenKey(pin, t.soSalt, t.soKey);
          if (!old) {
            s.tokens[i] = { ...t, soFailures: t.soFailures + 1 };
            return CKR.CKR_PIN_INCORRECT;
          }
          old.fill(0);
          s.tokens[i] = { ...t, label: name, soSalt: so.salt, soKey: so.wrapped, userSalt: Buffer.alloc(0), userKey: Buffer.alloc(0), soFailures: 0, userFailures: 0, objects: [] };
        } else {
          if (i !== s.tokens.length) return CKR.CKR_SLOT_ID_INVALID;
          s.tokens.push({
            serial: nodeRandomBytes(8).toString('hex'),
            label: name,
            soSalt: so.salt,
            soKey: so.wrapped,
            userSalt: Buffer.alloc(0),
            userKey: Buffer.alloc(0),
            soFailures: 0,
            userFailures: 0,
            objects: [],
          });
        }
        return 0;
      });
      if (rv) P.fail(rv, 'C_InitToken');
    } finally {
      tokenKey.fill(0);
    }
    if (existing) {
      this.handles.forgetObjects(existing.serial, false);
      this.logins.delete(existing.serial);
      this.dropKeyObjects(existing.serial);
    }
    return P.padLabel(name);
  }

  C_InitPIN(session: P.Handle, pin?: string): void {
    this.requireInit();
    const s = this.session(session, 'C_InitPIN');
    const login = this.logins.get(s.serial);
    if (login?.who !== 'so') P.fail(CKR.CKR_USER_NOT_LOGGED_IN, 'C_InitPIN');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_InitPIN');
    const len = Buffer.byteLength(pin, 'utf8');
    if (len < MIN_PIN_LEN || len > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_LEN_RANGE, 'C_InitPIN');
    const user = wrapTokenKey(login.tokenKey, pin, this.policy.kdfIterations);
    this.updateToken(s.serial, (t) => ({ ...t, userSalt: user.salt, userKey: user.wrapped, userFailures: 0 }));
  }

  C_SetPIN(session: P.Handle, oldPin: string, newPin: string): void {
    this.requireInit();
    const s = this.session(session, 'C_SetPIN');
    if (typeof oldPin !== 'string' || typeof newPin !== 'string') P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_SetPIN');
    const len = Buffer.byteLength(newPin, 'utf8');
    if (len < MIN_PIN_LEN || len > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_LEN_RANGE, 'C_SetPIN');
    const state = this.state(s);
    if (state === P.CKS_RW_PUBLIC_SESSION || state === P.CKS_RW_USER_FUNCTIONS) {
      const t = this.token(s.serial);
      if (t.userKey.length === 0) P.fail(CKR.CKR_USER_PIN_NOT_INITIALIZED, 'C_SetPIN');
      if (userLocked(t, this.policy)) P.fail(CKR.CKR_PIN_LOCKED, 'C_SetPIN');
      const key = unwrapTokenKey(oldPin, t.userSalt, t.userKey);
      if (!key) {
        this.updateToken(s.serial, (x) => ({ ...x, userFailures: x.userFailures + 1 }));
        P.fail(CKR.CKR_PIN_INCORRECT, 'C_SetPIN');
      }
      const user = wrapTokenKey(key, newPin, this.policy.kdfIterations);
      key.fill(0);
      this.updateToken(s.serial, (x) => ({ ...x, userSalt: user.salt, userKey: user.wrapped, userFailures: 0 }));
    } else if (state === P.CKS_RW_SO_FUNCTIONS) {
      const t = this.token(s.serial);
      if (soLocked(t, this.policy)) P.fail(CKR.CKR_PIN_LOCKED, 'C_SetPIN');
      const key = unwrapTokenKey(oldPin, t.soSalt, t.soKey);
      if (!key) {
        this.updateToken(s.serial, (x) => ({ ...x, soFailures: x.soFailures + 1 }));
        P.fail(CKR.CKR_PIN_INCORRECT, 'C_SetPIN');
      }
      const so = wrapTokenKey(key, newPin, this.policy.kdfIterations);
      key.fill(0);
      this.updateToken(s.serial, (x) => ({ ...x, soSalt: so.salt, soKey: so.wrapped, soFailures: 0 }));
    } else {
      P.fail(CKR.CKR_SESSION_READ_ONLY, 'C_SetPIN');
    }
  }

  // ---------------------------------------------------------------- sessions (§5.6)
  C_OpenSession(slot: P.Handle, flags: number): P.Handle {
    this.requireInit();
    const i = this.slotIndex(slot);
    if ((flags & P.CKF_SERIAL_SESSION) === 0) P.fail(CKR.CKR_SESSION_PARALLEL_NOT_SUPPORTED, 'C_OpenSession');
    const t = this.tokens()[i];
    if (!t) P.fail(CKR.CKR_TOKEN_NOT_RECOGNIZED, 'C_OpenSession');
    if ((flags & P.CKF_RW_SESSION) === 0 && this.logins.get(t.serial)?.who === 'so') P.fail(CKR.CKR_SESSION_READ_WRITE_SO_EXISTS, 'C_OpenSession');
    const h = this.handles.newSession();
    this.sessions.set(h, { handle: h, serial: t.serial, rw: (flags & P.CKF_RW_SESSION) !== 0, op: null });
    return P.handleOf(h);
  }

  C_CloseSession(session: P.Handle): void {
    this.requireInit();
    const s = this.session(session, 'C_CloseSession');
    this.closeSession(s);
  }

  C_CloseAllSessions(slot: P.Handle): void {
    this.requireInit();
    const t = this.tokens()[this.slotIndex(slot)];
    if (!t) return;
    for (const s of [...this.sessions.values()]) if (s.serial === t.serial) this.closeSession(s);
  }

  C_GetSessionInfo(session: P.Handle): P.SessionInfo {
    this.requireInit();
    const s = this.session(session, 'C_GetSessionInfo');
    const i = this.tokens().findIndex((t) => t.serial === s.serial);
    return { slotID: P.handleOf(Math.max(i, 0)), state: this.state(s), flags: P.CKF_SERIAL_SESSION | (s.rw ? P.CKF_RW_SESSION : 0), deviceError: 0 };
  }

  C_Login(session: P.Handle, userType: number, pin?: string): void {
    this.requireInit();
    const s = this.session(session, 'C_Login');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Login');
    const cur = this.logins.get(s.serial)?.who ?? null;
    if (userType === P.CKU_SO) {
      if ([...this.sessions.values()].some((x) => x.serial === s.serial && !x.rw)) P.fail(CKR.CKR_SESSION_READ_ONLY_EXISTS, 'C_Login');
      if (cur === 'user') P.fail(CKR.CKR_USER_ANOTHER_ALREADY_LOGGED_IN, 'C_Login');
      if (cur === 'so') P.fail(CKR.CKR_USER_ALREADY_LOGGED_IN, 'C_Login');
      const t = this.token(s.serial);
      if (soLocked(t, this.policy)) P.fail(CKR.CKR_PIN_LOCKED, 'C_Login');
      const key = unwrapTokenKey(pin, t.soSalt, t.soKey);
      if (!key) {
        this.updateToken(s.serial, (x) => ({ ...x, soFailures: x.soFailures + 1 }));
        P.fail(CKR.CKR_PIN_INCORRECT, 'C_Login');
      }
      if (t.soFailures > 0) this.updateToken(s.serial, (x) => ({ ...x, soFailures: 0 }));
      this.logins.set(s.serial, { who: 'so', tokenKey: key });
    } else if (userType === P.CKU_USER) {
      if (cur === 'so') P.fail(CKR.CKR_USER_ANOTHER_ALREADY_LOGGED_IN, 'C_Login');
      if (cur === 'user') P.fail(CKR.CKR_USER_ALREADY_LOGGED_IN, 'C_Login');
      const t = this.token(s.serial);
      if (t.userKey.length === 0) P.fail(CKR.CKR_USER_PIN_NOT_INITIALIZED, 'C_Login');
      if (userLocked(t, this.policy)) P.fail(CKR.CKR_PIN_LOCKED, 'C_Login');
      const key = unwrapTokenKey(pin, t.userSalt, t.userKey);
      if (!key) {
        // The failure is durable before the answer leaves: a crash can not refund a guess.
        this.updateToken(s.serial, (x) => ({ ...x, userFailures: x.userFailures + 1 }));
        P.fail(CKR.CKR_PIN_INCORRECT, 'C_Login');
      }
      if (t.userFailures > 0) this.updateToken(s.serial, (x) => ({ ...x, userFailures: 0 }));
      this.logins.set(s.serial, { who: 'user', tokenKey: key });
    } else if (userType === P.CKU_CONTEXT_SPECIFIC) {
      P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_Login');
    } else {
      P.fail(CKR.CKR_USER_TYPE_INVALID, 'C_Login');
    }
  }

  C_Logout(session: P.Handle): void {
    this.requireInit();
    const s = this.session(session, 'C_Logout');
    this.logout(s.serial);
  }

  // ---------------------------------------------------------------- objects (§5.7)
  C_CreateObject(session: P.Handle, template: P.Template): P.Handle {
    this.requireInit();
    const s = this.session(session, 'C_CreateObject');
    const info = extractInfo(template, { cls: P.CKO_DATA, keyType: P.CKK_VENDOR_DEFINED, token: false, private: true });
    this.check(requireClass(info), 'C_CreateObject');
    this.check(haveWrite(this.state(s), info.token, info.private), 'C_CreateObject');
    const attrs = this.check(buildObject(info, template, 'create', this.ctx(s)), 'C_CreateObject');
    if (info.cls === P.CKO_SECRET_KEY && !template.some((a) => a.type === P.CKA_VALUE)) P.fail(CKR.CKR_TEMPLATE_INCOMPLETE, 'C_CreateObject');
    if (info.cls === P.CKO_SECRET_KEY) {
      // The key check value (v3.0 §4.10.2): computed when the template has none, checked when it has one.
      const given = template.find((a) => a.type === P.CKA_CHECK_VALUE);
      const kcv = checkValue(info.keyType, getBytes(attrs, P.CKA_VALUE));
      if (!given) attrs.set(P.CKA_CHECK_VALUE, { t: 'x', v: kcv });
      else if (P.encodeAttributeValue(given.value).length > 0 && !P.encodeAttributeValue(given.value).equals(kcv)) P.fail(CKR.CKR_ATTRIBUTE_VALUE_INVALID, 'C_CreateObject');
    }
    if (info.cls === P.CKO_SECRET_KEY || info.cls === P.CKO_PRIVATE_KEY) {
      attrs.set(P.CKA_LOCAL, { t: 'b', v: false });
      attrs.set(P.CKA_ALWAYS_SENSITIVE, { t: 'b', v: false });
      attrs.set(P.CKA_NEVER_EXTRACTABLE, { t: 'b', v: false });
    } else if (info.cls === P.CKO_PUBLIC_KEY) {
      attrs.set(P.CKA_LOCAL, { t: 'b', v: false });
    }
    return P.handleOf(this.insertObject(s, attrs));
  }

  C_CopyObject(session: P.Handle, object: P.Handle, template: P.Template): P.Handle {
    this.requireInit();
    const s = this.session(session, 'C_CopyObject');
    const o = this.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_CopyObject', true);
    const wasToken = getBool(o.attrs, P.CKA_TOKEN, false);
    const wasPrivate = getBool(o.attrs, P.CKA_PRIVATE, true);
    this.check(haveRead(this.state(s), wasToken, wasPrivate), 'C_CopyObject');
    if (!getBool(o.attrs, P.CKA_COPYABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_CopyObject');
    const info = extractInfo(template, { cls: 0, keyType: 0, token: wasToken, private: wasPrivate });
    if (wasPrivate && !info.private) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, 'C_CopyObject');
    this.check(haveWrite(this.state(s), info.token, info.private), 'C_CopyObject');
    if (template.length > MAX_TEMPLATE) P.fail(CKR.CKR_TEMPLATE_INCONSISTENT, 'C_CopyObject');
    const attrs = this.check(applyTemplate(o.attrs, template, 'copy', this.ctx(s)), 'C_CopyObject');
    return P.handleOf(this.insertObject(s, attrs));
  }

  C_DestroyObject(session: P.Handle, object: P.Handle): void {
    this.requireInit();
    const s = this.session(session, 'C_DestroyObject');
    const o = this.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_DestroyObject', true);
    this.check(haveWrite(this.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_DestroyObject');
    if (!getBool(o.attrs, P.CKA_DESTROYABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_DestroyObject');
    this.removeObject(o);
  }

  C_GetAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): P.AttributeResult[] {
    this.requireInit();
    const s = this.session(session, 'C_GetAttributeValue');
    const o = this.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_GetAttributeValue', true);
    this.check(haveRead(this.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_GetAttributeValue');
    return this.check(readTemplate(o.attrs, template), 'C_GetAttributeValue');
  }

  C_SetAttributeValue(session: P.Handle, object: P.Handle, template: P.Template): void {
    this.requireInit();
    const s = this.session(session, 'C_SetAttributeValue');
    const o = this.object(object, CKR.CKR_OBJECT_HANDLE_INVALID, 'C_SetAttributeValue', true);
    this.check(haveWrite(this.state(s), getBool(o.attrs, P.CKA_TOKEN, false), getBool(o.attrs, P.CKA_PRIVATE, true)), 'C_SetAttributeValue');
    if (!getBool(o.attrs, P.CKA_MODIFIABLE, true)) P.fail(CKR.CKR_ACTION_PROHIBITED, 'C_SetAttributeValue');
    const attrs = this.check(applyTemplate(o.attrs, template, 'set', this.ctx(s)), 'C_SetAttributeValue');
    this.replaceObject(o, attrs);
  }

  C_FindObjectsInit(session: P.Handle, template: P.Template): void {
    this.requireInit();
    const s = this.session(session, 'C_FindObjectsInit');
    if (s.op) P.fail(CKR.CKR_OPERATION_ACTIVE, 'C_FindObjectsInit');
    const state = this.state(s);
    const isPublic = state === P.CKS_RO_PUBLIC_SESSION || state === P.CKS_RW_PUBLIC_SESSION;
    const found = new Set<number>();
    const t = this.token(s.serial, true);
    for (const so of t.objects) {
      if (isPublic && so.private) continue;
      const attrs = this.decode(s.serial, so);
      if (!attrs || !matches(attrs, template)) continue;
      found.add(this.handles.object(s.serial, so.uid, so.private, null));
    }
    for (const o of this.sessionObjects.values()) {
      if (o.serial !== s.serial || (isPublic && o.private)) continue;
      if (matches(o.attrs, template)) found.add(this.handles.object(o.serial, o.uid, o.private, o.session));
    }
    s.op = { kind: 'find', handles: [...found].sort((a, b) => a - b) };
  }

  C_FindObjects(session: P.Handle): P.Handle | null;
  C_FindObjects(session: P.Handle, maxObjectCount: number): P.Handle[];
  C_FindObjects(session: P.Handle, maxObjectCount?: number): P.Handle | null | P.Handle[] {
    this.requireInit();
    if (maxObjectCount !== undefined && !(maxObjectCount >= 1)) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_FindObjects');
    const s = this.session(session, 'C_FindObjects');
    if (s.op?.kind !== 'find') P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_FindObjects');
    const n = maxObjectCount ?? 1;
    const out = s.op.handles.splice(0, n).map((h) => P.handleOf(h));
    if (maxObjectCount === undefined) return out[0] ?? null;
    return out;
  }

  C_FindObjectsFinal(session: P.Handle): void {
    this.requireInit();
    const s = this.session(session, 'C_FindObjectsFinal');
    if (s.op?.kind !== 'find') P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_FindObjectsFinal');
    s.op = null;
  }

  // ---------------------------------------------------------------- cryptography (§5.8-5.14)
  C_EncryptInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.encryptInit(session, mechanism, key);
  }
  C_Encrypt(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.encrypt(session, inData, outData);
  }
  C_EncryptUpdate(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.encryptUpdate(session, inData, outData);
  }
  C_EncryptFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.encryptFinal(session, outData);
  }
  C_DecryptInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.decryptInit(session, mechanism, key);
  }
  C_Decrypt(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.decrypt(session, inData, outData);
  }
  C_DecryptUpdate(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.decryptUpdate(session, inData, outData);
  }
  C_DecryptFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.decryptFinal(session, outData);
  }
  C_SignInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.macInit('sign', session, mechanism, key);
  }
  C_Sign(session: P.Handle, inData: Buffer, outData: Buffer): Buffer {
    return this.crypto.sign(session, inData, outData);
  }
  C_SignUpdate(session: P.Handle, inData: Buffer): void {
    this.crypto.macUpdate('sign', session, inData);
  }
  C_SignFinal(session: P.Handle, outData: Buffer): Buffer {
    return this.crypto.signFinal(session, outData);
  }
  C_VerifyInit(session: P.Handle, mechanism: P.Mechanism, key: P.Handle): void {
    this.crypto.macInit('verify', session, mechanism, key);
  }
  C_Verify(session: P.Handle, inData: Buffer, signature: Buffer): boolean {
    return this.crypto.verify(session, inData, signature);
  }
  C_VerifyUpdate(session: P.Handle, inData: Buffer): void {
    this.crypto.macUpdate('verify', session, inData);
  }
  C_VerifyFinal(session: P.Handle, signature: Buffer): boolean {
    return this.crypto.verifyFinal(session, signature);
  }
  C_GenerateKey(session: P.Handle, mechanism: P.Mechanism, template: P.Template): P.Handle {
    return this.crypto.generateKey(session, mechanism, template);
  }
  C_GenerateKeyPair(session: P.Handle, mechanism: P.Mechanism, publicKeyTemplate: P.Template, privateKeyTemplate: P.Template): P.KeyPair {
    return this.crypto.generateKeyPair(session, mechanism, publicKeyTemplate, privateKeyTemplate);
  }
  C_WrapKey(session: P.Handle, mechanism: P.Mechanism, wrappingKey: P.Handle, key: P.Handle, wrappedKey: Buffer): Buffer {
    return this.crypto.wrapKey(session, mechanism, wrappingKey, key, wrappedKey);
  }
  C_UnwrapKey(session: P.Handle, mechanism: P.Mechanism, unwrappingKey: P.Handle, wrappedKey: Buffer, template: P.Template): P.Handle {
    return this.crypto.unwrapKey(session, mechanism, unwrappingKey, wrappedKey, template);
  }
  C_DeriveKey(session: P.Handle, mechanism: P.Mechanism, key: P.Handle, template: P.Template): P.Handle {
    return this.crypto.deriveKey(session, mechanism, key, template);
  }
  C_GenerateRandom(session: P.Handle, buf: Buffer): Buffer {
    this.requireInit();
    if (!Buffer.isBuffer(buf) || buf.length === 0) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_GenerateRandom');
    this.session(session, 'C_GenerateRandom');
    this.fillRandom(buf);
    return buf;
  }

  // ---------------------------------------------------------------- internals shared with crypto.ts
  requireInit(): void {
    if (!this.initialized) P.fail(CKR.CKR_CRYPTOKI_NOT_INITIALIZED);
  }

  /** Throws for a non-zero CKR_ code; passes a value through. */
  check<T>(v: T | number, method: string): T {
    if (typeof v === 'number') {
      if (v !== 0) P.fail(v, method);
      return undefined as T;
    }
    return v;
  }

  session(h: P.Handle, method: string): Session {
    const s = this.sessions.get(P.handleNumber(h));
    if (!s) P.fail(CKR.CKR_SESSION_HANDLE_INVALID, method);
    return s;
  }

  state(s: Session): number {
    return sessionState(s.rw, this.logins.get(s.serial)?.who ?? null);
  }

  ctx(s: Session): { soLoggedIn: boolean } {
    return { soLoggedIn: this.logins.get(s.serial)?.who === 'so' };
  }

  /** An object by handle, or `code` (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID, ...). */
  object(h: P.Handle, code: number, method: string, fresh = false): LiveObject {
    const e = this.handles.get(P.handleNumber(h));
    if (!e || e.kind !== 'object') P.fail(code, method);
    if (e.session !== null || this.sessionObjects.has(e.uid)) {
      const o = this.sessionObjects.get(e.uid);
      if (!o) P.fail(code, method);
      return o;
    }
    const t = this.tokenOrNull(e.serial, fresh);
    let so: StoredObject | undefined;
    if (t) {
      for (const x of t.objects) {
        if (x.uid === e.uid) {
          so = x;
          break;
        }
      }
    }
    const d = so ? this.decodeEntry(e.serial, so) : null;
    if (!so || !d) {
      this.handles.forgetObject(e.uid);
      P.fail(code, method);
    }
    // One LiveObject per decoded state of the object (read-only to callers).
    return (d.live ??= { uid: so.uid, serial: e.serial, session: null, attrs: d.attrs });
  }

  /**
   * The KeyObject of a secret key object's CKA_VALUE (`value`, which the caller has checked), from
   * the cache when it was made from this same attribute map (see `keyObjects`).
   */
  secretKeyObject(o: LiveObject, value: Buffer): KeyObject {
    const c = this.keyObjects.get(o.uid);
    if (c !== undefined && c.attrs === o.attrs) return c.key;
    const key = createSecretKey(value);
    this.keyObjects.set(o.uid, { serial: o.serial, attrs: o.attrs, key });
    return key;
  }

  /** Entries in the KeyObject cache (tests check it is dropped with its objects). */
  keyObjectCacheSize(): number {
    return this.keyObjects.size;
  }

  private dropKeyObjects(serial: string): void {
    for (const [uid, c] of this.keyObjects) if (c.serial === serial) this.keyObjects.delete(uid);
  }

  /** Random bytes from the pool (refilled by randomFillSync), each pool byte wiped once handed out. */
  private fillRandom(buf: Buffer): void {
    const pool = this.randomPool;
    if (buf.length > pool.length) {
      randomFillSync(buf);
      return;
    }
    if (this.randomOff + buf.length > pool.length) {
      randomFillSync(pool);
      this.randomOff = 0;
    }
    const off = this.randomOff;
    pool.copy(buf, 0, off, off + buf.length);
    pool.fill(0, off, off + buf.length);
    this.randomOff = off + buf.length;
  }

  /** Stores a new object (token or session) and returns its handle. */
  insertObject(s: Session, attrs: Attrs): number {
    const uid = nodeRandomBytes(16).toString('hex');
    const isPrivate = getBool(attrs, P.CKA_PRIVATE, true);
    if (getBool(attrs, P.CKA_TOKEN, false)) {
      const body = this.encode(s.serial, attrs, isPrivate);
      this.updateToken(s.serial, (t) => ({ ...t, objects: [...t.objects, { uid, private: isPrivate, body }] }));
      this.decoded.set(uid, { body, attrs });
      return this.handles.object(s.serial, uid, isPrivate, null);
    }
    this.sessionObjects.set(uid, { uid, serial: s.serial, session: s.handle, attrs, private: isPrivate });
    return this.handles.object(s.serial, uid, isPrivate, s.handle);
  }

  private replaceObject(o: LiveObject, attrs: Attrs): void {
    this.keyObjects.delete(o.uid);
    if (o.session !== null) {
      const so = this.sessionObjects.get(o.uid);
      if (so) so.attrs = attrs;
      return;
    }
    const isPrivate = getBool(attrs, P.CKA_PRIVATE, true);
    const body = this.encode(o.serial, attrs, isPrivate);
    let found = false;
    this.updateToken(o.serial, (t) => ({
      ...t,
      objects: t.objects.map((x) => {
        if (x.uid !== o.uid) return x;
        found = true;
        return { uid: x.uid, private: isPrivate, body };
      }),
    }));
    if (!found) P.fail(CKR.CKR_OBJECT_HANDLE_INVALID, 'C_SetAttributeValue');
    this.decoded.set(o.uid, { body, attrs });
  }

  private removeObject(o: LiveObject): void {
    this.handles.forgetObject(o.uid);
    this.keyObjects.delete(o.uid);
    if (o.session !== null) {
      this.sessionObjects.delete(o.uid);
      return;
    }
    this.updateToken(o.serial, (t) => ({ ...t, objects: t.objects.filter((x) => x.uid !== o.uid) }));
    const d = this.decoded.get(o.uid);
    if (d) wipeAttrs(d.attrs);
    this.decoded.delete(o.uid);
  }

  private encode(serial: string, attrs: Attrs, isPrivate: boolean): Buffer {
    const plain = encodeAttrs(attrs);
    if (!isPrivate) return plain;
    const key = this.logins.get(serial)?.tokenKey;
    if (!key) P.fail(CKR.CKR_USER_NOT_LOGGED_IN);
    const sealed = sealBody(key, plain);
    plain.fill(0);
    return sealed;
  }

  /** A stored object's attributes, or null when it is private and the token key is not loaded. */
  private decode(serial: string, so: StoredObject): Attrs | null {
    return this.decodeEntry(serial, so)?.attrs ?? null;
  }

  private decodeEntry(serial: string, so: StoredObject): Decoded | null {
    const d = this.decoded.get(so.uid);
    if (d && (d.body === so.body || d.body.equals(so.body))) return d;
    let plain: Buffer | null = so.body;
    if (so.private) {
      const key = this.logins.get(serial)?.tokenKey;
      if (!key) return null;
      plain = openBody(key, so.body);
      if (!plain) {
        const e = new P.Pkcs11Error(CKR.CKR_DEVICE_ERROR);
        Object.assign(e, { detail: `token object ${so.uid} does not decrypt under the token key` });
        throw e;
      }
    }
    const attrs = decodeAttrs(plain);
    if (so.private) plain.fill(0);
    if (d) wipeAttrs(d.attrs);
    this.keyObjects.delete(so.uid);
    const entry: Decoded = { body: so.body, attrs };
    this.decoded.set(so.uid, entry);
    return entry;
  }

  private tokens(): StoredToken[] {
    return this.pruned(this.store!.read()).tokens;
  }

  private tokenOrNull(serial: string, fresh: boolean): StoredToken | null {
    let state;
    const now = performance.now();
    if (fresh || now - this.checkedAt > this.revalidateMs) {
      state = this.pruned(this.store!.read());
      this.checkedAt = now;
    } else state = this.store!.cached();
    for (const t of state.tokens) if (t.serial === serial) return t;
    return null;
  }

  /**
   * Forgets (and wipes) the decoded attributes of objects that are no longer in the store: other
   * modules on the same store file (one per partition) destroy and create objects, and without
   * this every object ever seen stayed decoded here. Runs once per newly read store state.
   */
  private pruned(state: StoreState): StoreState {
    if (state === this.prunedState) return state;
    this.prunedState = state;
    if (this.decoded.size === 0 && this.keyObjects.size === 0) return state;
    const live = new Set<string>();
    for (const t of state.tokens) for (const o of t.objects) live.add(o.uid);
    for (const [uid, d] of this.decoded) {
      if (live.has(uid)) continue;
      wipeAttrs(d.attrs);
      this.decoded.delete(uid);
    }
    for (const uid of this.keyObjects.keys()) {
      if (!live.has(uid) && !this.sessionObjects.has(uid)) this.keyObjects.delete(uid);
    }
    return state;
  }

  /** Entries in the decoded-attributes cache (tests check it stays bounded). */
  decodedCacheSize(): number {
    return this.decoded.size;
  }

  token(serial: string, fresh = true): StoredToken {
    const t = this.tokenOrNull(serial, fresh);
    if (!t) P.fail(CKR.CKR_DEVICE_REMOVED);
    return t;
  }

  private updateToken(serial: string, fn: (t: StoredToken) => StoredToken): void {
    this.store!.update((s) => {
      const i = s.tokens.findIndex((t) => t.serial === serial);
      if (i < 0) P.fail(CKR.CKR_DEVICE_REMOVED);
      s.tokens[i] = fn(s.tokens[i]!);
    });
  }

  private slotIndex(slot: P.Handle): number {
    const i = P.handleNumber(slot);
    if (i < 0 || i > this.tokens().length) P.fail(CKR.CKR_SLOT_ID_INVALID);
    return i;
  }

  private logout(serial: string): void {
    const l = this.logins.get(serial);
    if (l) l.tokenKey.fill(0);
    this.logins.delete(serial);
    this.handles.forgetObjects(serial, true);
    this.dropKeyObjects(serial);
    for (const [uid, o] of this.sessionObjects) {
      if (o.serial === serial && o.private) {
        wipeAttrs(o.attrs);
        this.sessionObjects.delete(uid);
      }
    }
    const t = this.store!.cached().tokens.find((x) => x.serial === serial);
    for (const o of t?.objects ?? []) {
      const d = o.private ? this.decoded.get(o.uid) : undefined;
      if (d) {
        wipeAttrs(d.attrs);
        this.decoded.delete(o.uid);
      }
    }
  }

  private closeSession(s: Session): void {
    this.sessions.delete(s.handle);
    this.handles.forgetSession(s.handle);
    for (const [uid, o] of this.sessionObjects) {
      if (o.session === s.handle) {
        wipeAttrs(o.attrs);
        this.sessionObjects.delete(uid);
        this.keyObjects.delete(uid);
      }
    }
    if (![...this.sessions.values()].some((x) => x.serial === s.serial)) {
      this.logout(s.serial);
      this.handles.forgetObjects(s.serial, false);
    }
  }

  /** Template helpers for crypto.ts. */
  extract(template: P.Template, dflt: Parameters<typeof extractInfo>[1]): TemplateInfo {
    return extractInfo(template, dflt);
  }
  build(info: TemplateInfo, template: P.Attribute[], op: 'generate' | 'derive' | 'unwrap', s: Session): Attrs | number {
    return buildObject(info, template, op, this.ctx(s));
  }
  classOf(o: LiveObject): number {
    return getUlong(o.attrs, P.CKA_CLASS, P.CKO_VENDOR_DEFINED);
  }
}

function wipeAttrs(a: Attrs): void {
  const v = a.get(P.CKA_VALUE);
  if (v?.t === 'x') v.v.fill(0);
}

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length);
}

/** The mechanisms and their CK_MECHANISM_INFO (key sizes as SoftHSM2 reports them). */
const MECHANISMS = new Map<number, P.MechanismInfo>([
  [P.CKM_AES_KEY_GEN, { minKeySize: 16, maxKeySize: 32, flags: P.CKF_GENERATE }],
  [P.CKM_GENERIC_SECRET_KEY_GEN, { minKeySize: 1, maxKeySize: 0x80000000, flags: P.CKF_GENERATE }],
  [P.CKM_AES_GCM, { minKeySize: 16, maxKeySize: 32, flags: P.CKF_ENCRYPT | P.CKF_DECRYPT }],
  [P.CKM_AES_KEY_WRAP, { minKeySize: 16, maxKeySize: 0x80000000, flags: P.CKF_WRAP | P.CKF_UNWRAP }],
  [P.CKM_AES_KEY_WRAP_PAD, { minKeySize: 1, maxKeySize: 0x80000000, flags: P.CKF_WRAP | P.CKF_UNWRAP }],
  [P.CKM_SHA256_HMAC, { minKeySize: 32, maxKeySize: 512, flags: P.CKF_SIGN | P.CKF_VERIFY }],
  [P.CKM_SHA512_HMAC, { minKeySize: 64, maxKeySize: 512, flags: P.CKF_SIGN | P.CKF_VERIFY }],
  [P.CKM_EC_KEY_PAIR_GEN, { minKeySize: 256, maxKeySize: 256, flags: P.CKF_GENERATE_KEY_PAIR | P.CKF_EC_F_P | P.CKF_EC_NAMEDCURVE | P.CKF_EC_UNCOMPRESS }],
  [P.CKM_ECDH1_DERIVE, { minKeySize: 256, maxKeySize: 256, flags: P.CKF_DERIVE }],
]);
