/**
 * The emulator token's state, behind the `C_*` dispatcher (module.ts): the token store, sessions
 * and handles, logins with the token keys they unlocked, session objects, the decoded-attributes
 * and KeyObject caches, and the random pool; module start, stop and zeroization; the lookups and
 * updates the function groups share (token-ops.ts, object-ops.ts, crypto.ts). It imports none
 * of them.
 */
import { createSecretKey, randomBytes as nodeRandomBytes, randomFillSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import * as P from '../../../enclave/api/pkcs11.ts';
import { decodeAttrs, encodeAttrs, getBool, getUlong } from './attributes.ts';
import type { Attrs } from './attributes.ts';
import { buildObject, extractInfo } from './objects.ts';
import type { TemplateInfo } from './objects.ts';
import { TokenStore } from './persistence.ts';
import type { StoreState, StoredObject, StoredToken } from './persistence.ts';
import { openBody, sealBody } from './pins.ts';
import type { PinPolicy } from './pins.ts';
import { runSelfTests } from './kat.ts';
import type { SelfTestReport } from './kat.ts';
import { Handles, sessionState } from './session-table.ts';
import type { Session, Who } from './session-table.ts';

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

export class EmulatorState {
  private initialized = false;
  store: TokenStore | null = null;
  readonly handles = new Handles();
  readonly sessions = new Map<number, Session>();
  /** Login state per token serial, with the token key it unlocked. */
  readonly logins = new Map<string, { who: Exclude<Who, null>; tokenKey: Buffer }>();
  readonly sessionObjects = new Map<string, LiveObject & { private: boolean }>();
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
  readonly policy: PinPolicy;
  private readonly revalidateMs: number;
  private checkedAt = -Infinity;
  private lastSelfTest: SelfTestReport | null = null;

  constructor(private readonly opts: EmulatorOptions = {}) {
    this.policy = {
      userMaxFailures: opts.userPinMaxFailures ?? 10,
      soMaxFailures: opts.soPinMaxFailures ?? 0,
      kdfIterations: opts.pinKdfIterations ?? 20_000,
    };
    this.revalidateMs = opts.revalidateMs ?? 100;
  }

  // ---------------------------------------------------------------- general (§5.4)
  initialize(): void {
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

  finalize(): void {
    this.requireInit();
    this.forgetAll();
    this.initialized = false;
  }

  /** Ends every session and login (token keys wiped) and empties the caches. */
  private forgetAll(): void {
    this.sessions.clear();
    this.handles.clear();
    this.sessionObjects.clear();
    for (const l of this.logins.values()) l.tokenKey.fill(0);
    this.logins.clear();
    this.decoded.clear();
    this.keyObjects.clear();
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
    this.forgetAll();
  }

  /** C_GenerateRandom: random bytes from the pool, once the session is checked. */
  generateRandom(session: P.Handle, buf: Buffer): Buffer {
    this.requireInit();
    if (!Buffer.isBuffer(buf) || buf.length === 0) P.fail(CKR.CKR_ARGUMENTS_BAD, 'C_GenerateRandom');
    this.session(session, 'C_GenerateRandom');
    this.fillRandom(buf);
    return buf;
  }

  // ---------------------------------------------------------------- shared by the function groups
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

  dropKeyObjects(serial: string): void {
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

  replaceObject(o: LiveObject, attrs: Attrs): void {
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

  removeObject(o: LiveObject): void {
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
  decode(serial: string, so: StoredObject): Attrs | null {
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

  tokens(): StoredToken[] {
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

  updateToken(serial: string, fn: (t: StoredToken) => StoredToken): void {
    this.store!.update((s) => {
      const i = s.tokens.findIndex((t) => t.serial === serial);
      if (i < 0) P.fail(CKR.CKR_DEVICE_REMOVED);
      s.tokens[i] = fn(s.tokens[i]!);
    });
  }

  slotIndex(slot: P.Handle): number {
    const i = P.handleNumber(slot);
    if (i < 0 || i > this.tokens().length) P.fail(CKR.CKR_SLOT_ID_INVALID);
    return i;
  }

  logout(serial: string): void {
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

  closeSession(s: Session): void {
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

/** Zeroes a decoded object's CKA_VALUE. */
function wipeAttrs(a: Attrs): void {
  const v = a.get(P.CKA_VALUE);
  if (v?.t === 'x') v.v.fill(0);
}

