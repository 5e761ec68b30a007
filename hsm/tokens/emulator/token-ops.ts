/**
 * The emulator's general, slot and token, and session functions, PKCS#11 v2.40 §5.4 (C_GetInfo),
 * §5.5 (slots, tokens, mechanisms, C_InitToken, C_InitPIN, C_SetPIN) and §5.6 (sessions, C_Login,
 * C_Logout), over the module's state (state.ts). A wrong PIN is counted in the store before
 * CKR_PIN_INCORRECT leaves; lockout after the policy's failures (pins.ts).
 *
 * Slots: one per token in the store, in creation order (slot id = index), and one free slot
 * after them where C_InitToken creates a new token (which becomes visible at once).
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import * as P from '../../../enclave/api/pkcs11.ts';
import { MAX_PIN_LEN, MIN_PIN_LEN, soLocked, tokenFlags, unwrapTokenKey, userLocked, wrapTokenKey } from './pins.ts';
import type { EmulatorState } from './state.ts';

const { CKR } = P;

export class TokenOps {
  constructor(private readonly m: EmulatorState) {}

  getInfo(): P.ModuleInfo {
    this.m.requireInit();
    return {
      cryptokiVersion: { major: 2, minor: 40 },
      manufacturerID: pad('Backup Key Vault', 32),
      flags: 0,
      libraryDescription: pad('BKV PKCS#11 token emulator', 32),
      libraryVersion: { major: 1, minor: 0 },
    };
  }
  // ---------------------------------------------------------------- slots and tokens (§5.5)
  getSlotList(_tokenPresent?: boolean): P.Handle[] {
    this.m.requireInit();
    const n = this.m.tokens().length;
    return Array.from({ length: n + 1 }, (_, i) => P.handleOf(i));
  }

  getSlotInfo(slot: P.Handle): P.SlotInfo {
    this.m.requireInit();
    const i = this.m.slotIndex(slot);
    return {
      slotDescription: pad(`BKV emulator slot ${i}`, 64),
      manufacturerID: pad('Backup Key Vault', 32),
      flags: P.CKF_TOKEN_PRESENT,
      hardwareVersion: { major: 1, minor: 0 },
      firmwareVersion: { major: 1, minor: 0 },
    };
  }

  getTokenInfo(slot: P.Handle): P.TokenInfo {
    this.m.requireInit();
    const t = this.m.tokens()[this.m.slotIndex(slot)] ?? null;
    const now = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
    return {
      label: t ? P.padLabel(t.label) : pad('', 32),
      manufacturerID: pad('Backup Key Vault', 32),
      model: pad('BKV emulator', 16),
      serialNumber: pad(t?.serial ?? '', 16),
      flags: tokenFlags(t, this.m.policy),
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

  getMechanismList(slot: P.Handle): number[] {
    this.m.requireInit();
    this.m.slotIndex(slot);
    return [...MECHANISMS.keys()];
  }

  getMechanismInfo(slot: P.Handle, mech: number): P.MechanismInfo {
    this.m.requireInit();
    this.m.slotIndex(slot);
    const info = MECHANISMS.get(mech);
    if (!info) P.fail(CKR.CKR_MECHANISM_INVALID, 'C_GetMechanismInfo');
    return { ...info };
  }

  /** Returns the padded label (pkcs11js's declared result, which graphene-pk11 reads). */
  initToken(slot: P.Handle, pin?: string, label?: string): string {
    this.m.requireInit();
    const i = this.m.slotIndex(slot);
    const existing = this.m.tokens()[i];
    if (existing && [...this.m.sessions.values()].some((s) => s.serial === existing.serial)) P.fail(CKR.CKR_SESSION_EXISTS, 'C_InitToken');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_InitToken');
    const pinLen = Buffer.byteLength(pin, 'utf8');
    if (pinLen < MIN_PIN_LEN || pinLen > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_INCORRECT, 'C_InitToken');
    const name = P.trimLabel(label ?? '').slice(0, 32);
    const tokenKey = nodeRandomBytes(32);
    try {
      const so = wrapTokenKey(tokenKey, pin, this.m.policy.kdfIterations);
      const rv = this.m.store!.update((s) => {
        const t = s.tokens[i];
        if (t) {
          if (soLocked(t, this.m.policy)) return CKR.CKR_PIN_LOCKED;
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
      this.m.handles.forgetObjects(existing.serial, false);
      this.m.logins.delete(existing.serial);
      this.m.dropKeyObjects(existing.serial);
    }
    return P.padLabel(name);
  }

  initPin(session: P.Handle, pin?: string): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_InitPIN');
    const login = this.m.logins.get(s.serial);
    if (login?.who !== 'so') P.fail(CKR.CKR_USER_NOT_LOGGED_IN, 'C_InitPIN');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_InitPIN');
    const len = Buffer.byteLength(pin, 'utf8');
    if (len < MIN_PIN_LEN || len > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_LEN_RANGE, 'C_InitPIN');
    const user = wrapTokenKey(login.tokenKey, pin, this.m.policy.kdfIterations);
    this.m.updateToken(s.serial, (t) => ({ ...t, userSalt: user.salt, userKey: user.wrapped, userFailures: 0 }));
  }

  setPin(session: P.Handle, oldPin: string, newPin: string): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_SetPIN');
    if (typeof oldPin !== 'string' || typeof newPin !== 'string') P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_SetPIN');
    const len = Buffer.byteLength(newPin, 'utf8');
    if (len < MIN_PIN_LEN || len > MAX_PIN_LEN) P.fail(CKR.CKR_PIN_LEN_RANGE, 'C_SetPIN');
    const state = this.m.state(s);
    const who = state === P.CKS_RW_PUBLIC_SESSION || state === P.CKS_RW_USER_FUNCTIONS ? 'user' : state === P.CKS_RW_SO_FUNCTIONS ? 'so' : null;
    if (who === null) P.fail(CKR.CKR_SESSION_READ_ONLY, 'C_SetPIN');
    const { key } = this.unlock(s.serial, who, oldPin, 'C_SetPIN');
    const next = wrapTokenKey(key, newPin, this.m.policy.kdfIterations);
    key.fill(0);
    const r = ROLES[who];
    this.m.updateToken(s.serial, (x) => ({ ...x, [r.salt]: next.salt, [r.key]: next.wrapped, [r.failures]: 0 }));
  }

  /**
   * The token key `pin` unwraps for `who`. A wrong PIN is counted in the store before
   * CKR_PIN_INCORRECT leaves: a crash can not refund a guess. `hadFailures`: wrong PINs were
   * counted before this right one.
   */
  private unlock(serial: string, who: 'so' | 'user', pin: string, fn: string): { key: Buffer; hadFailures: boolean } {
    const r = ROLES[who];
    const t = this.m.token(serial);
    if (who === 'user' && t.userKey.length === 0) P.fail(CKR.CKR_USER_PIN_NOT_INITIALIZED, fn);
    if (r.locked(t, this.m.policy)) P.fail(CKR.CKR_PIN_LOCKED, fn);
    const key = unwrapTokenKey(pin, t[r.salt], t[r.key]);
    if (!key) {
      this.m.updateToken(serial, (x) => ({ ...x, [r.failures]: x[r.failures] + 1 }));
      P.fail(CKR.CKR_PIN_INCORRECT, fn);
    }
    return { key, hadFailures: t[r.failures] > 0 };
  }

  // ---------------------------------------------------------------- sessions (§5.6)
  openSession(slot: P.Handle, flags: number): P.Handle {
    this.m.requireInit();
    const i = this.m.slotIndex(slot);
    if ((flags & P.CKF_SERIAL_SESSION) === 0) P.fail(CKR.CKR_SESSION_PARALLEL_NOT_SUPPORTED, 'C_OpenSession');
    const t = this.m.tokens()[i];
    if (!t) P.fail(CKR.CKR_TOKEN_NOT_RECOGNIZED, 'C_OpenSession');
    if ((flags & P.CKF_RW_SESSION) === 0 && this.m.logins.get(t.serial)?.who === 'so') P.fail(CKR.CKR_SESSION_READ_WRITE_SO_EXISTS, 'C_OpenSession');
    const h = this.m.handles.newSession();
    this.m.sessions.set(h, { handle: h, serial: t.serial, rw: (flags & P.CKF_RW_SESSION) !== 0, op: null });
    return P.handleOf(h);
  }

  closeSession(session: P.Handle): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_CloseSession');
    this.m.closeSession(s);
  }

  closeAllSessions(slot: P.Handle): void {
    this.m.requireInit();
    const t = this.m.tokens()[this.m.slotIndex(slot)];
    if (!t) return;
    for (const s of [...this.m.sessions.values()]) if (s.serial === t.serial) this.m.closeSession(s);
  }

  getSessionInfo(session: P.Handle): P.SessionInfo {
    this.m.requireInit();
    const s = this.m.session(session, 'C_GetSessionInfo');
    const i = this.m.tokens().findIndex((t) => t.serial === s.serial);
    return { slotID: P.handleOf(Math.max(i, 0)), state: this.m.state(s), flags: P.CKF_SERIAL_SESSION | (s.rw ? P.CKF_RW_SESSION : 0), deviceError: 0 };
  }

  login(session: P.Handle, userType: number, pin?: string): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_Login');
    if (pin === undefined) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_Login');
    const cur = this.m.logins.get(s.serial)?.who ?? null;
    if (userType === P.CKU_SO) {
      if ([...this.m.sessions.values()].some((x) => x.serial === s.serial && !x.rw)) P.fail(CKR.CKR_SESSION_READ_ONLY_EXISTS, 'C_Login');
      if (cur === 'user') P.fail(CKR.CKR_USER_ANOTHER_ALREADY_LOGGED_IN, 'C_Login');
      if (cur === 'so') P.fail(CKR.CKR_USER_ALREADY_LOGGED_IN, 'C_Login');
      this.loginAs(s.serial, 'so', pin);
    } else if (userType === P.CKU_USER) {
      if (cur === 'so') P.fail(CKR.CKR_USER_ANOTHER_ALREADY_LOGGED_IN, 'C_Login');
      if (cur === 'user') P.fail(CKR.CKR_USER_ALREADY_LOGGED_IN, 'C_Login');
      this.loginAs(s.serial, 'user', pin);
    } else if (userType === P.CKU_CONTEXT_SPECIFIC) {
      P.fail(CKR.CKR_OPERATION_NOT_INITIALIZED, 'C_Login');
    } else {
      P.fail(CKR.CKR_USER_TYPE_INVALID, 'C_Login');
    }
  }

  private loginAs(serial: string, who: 'so' | 'user', pin: string): void {
    const { key, hadFailures } = this.unlock(serial, who, pin, 'C_Login');
    if (hadFailures) this.m.updateToken(serial, (x) => ({ ...x, [ROLES[who].failures]: 0 }));
    this.m.logins.set(serial, { who, tokenKey: key });
  }

  logout(session: P.Handle): void {
    this.m.requireInit();
    const s = this.m.session(session, 'C_Logout');
    this.m.logout(s.serial);
  }

}

/** Where each role's PIN-wrapped token key and wrong-PIN count are stored, and when it is locked. */
const ROLES = {
  so: { salt: 'soSalt', key: 'soKey', failures: 'soFailures', locked: soLocked },
  user: { salt: 'userSalt', key: 'userKey', failures: 'userFailures', locked: userLocked },
} as const;

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length);
}

/** The mechanisms and their CK_MECHANISM_INFO (key sizes as SoftHSM2 reports them). */
const MECHANISMS = new Map<number, P.MechanismInfo>([
  [P.CKM_AES_KEY_GEN, { minKeySize: 16, maxKeySize: 32, flags: P.CKF_GENERATE }],
  [P.CKM_GENERIC_SECRET_KEY_GEN, { minKeySize: 1, maxKeySize: 0x80000000, flags: P.CKF_GENERATE }],
  [P.CKM_AES_ECB, { minKeySize: 16, maxKeySize: 32, flags: P.CKF_ENCRYPT | P.CKF_DECRYPT }],
  [P.CKM_AES_GCM, { minKeySize: 16, maxKeySize: 32, flags: P.CKF_ENCRYPT | P.CKF_DECRYPT }],
  [P.CKM_AES_KEY_WRAP, { minKeySize: 16, maxKeySize: 0x80000000, flags: P.CKF_WRAP | P.CKF_UNWRAP }],
  [P.CKM_AES_KEY_WRAP_PAD, { minKeySize: 1, maxKeySize: 0x80000000, flags: P.CKF_WRAP | P.CKF_UNWRAP }],
  [P.CKM_SHA256_HMAC, { minKeySize: 32, maxKeySize: 512, flags: P.CKF_SIGN | P.CKF_VERIFY }],
  [P.CKM_SHA512_HMAC, { minKeySize: 64, maxKeySize: 512, flags: P.CKF_SIGN | P.CKF_VERIFY }],
  [P.CKM_EC_KEY_PAIR_GEN, { minKeySize: 256, maxKeySize: 256, flags: P.CKF_GENERATE_KEY_PAIR | P.CKF_EC_F_P | P.CKF_EC_NAMEDCURVE | P.CKF_EC_UNCOMPRESS }],
  [P.CKM_ECDSA, { minKeySize: 256, maxKeySize: 256, flags: P.CKF_SIGN | P.CKF_VERIFY }],
  [P.CKM_ECDH1_DERIVE, { minKeySize: 256, maxKeySize: 256, flags: P.CKF_DERIVE }],
]);
