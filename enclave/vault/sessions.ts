/**
 * Bounded, expiring tables of in-flight protocol state, held only in enclave memory: staged
 * registrations, login sessions between KE2 and KE3, and recovered sessions that may authorize
 * a password change. Lost on restart by design: a dropped session never refunds its guess.
 */
import { EnclaveFault, Handling } from '../api/codes.ts';
import { SUITE_CODE } from '../api/messages.ts';
import { serverLoginStateDecode, serverLoginStateEncode } from '../opaque/server.ts';
import type { ServerLoginState } from '../opaque/server.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';

/** How many entries each of a partition's tables holds at most. */
export interface TableLimits {
  stages: number;
  loginSessions: number;
  authSessions: number;
}

/** 100,000 login sessions are 16 MB of slots (LoginSessionTable); the other tables hold as many. */
export const DEFAULT_TABLE_LIMITS: TableLimits = { stages: 100_000, loginSessions: 100_000, authSessions: 100_000 };

export class ExpiringTable<V> implements SessionTable<V> {
  private readonly m = new Map<string, { v: V; expires: number }>();
  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
    private readonly onDrop?: (v: V) => void,
  ) {}

  get size(): number {
    return this.m.size;
  }

  put(key: string, v: V, now: number): void {
    if (this.m.size >= this.max) this.sweep(now, true);
    if (this.m.size >= this.max) throw new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight');
    this.m.delete(key); // a re-used key moves to the end: the table stays in insertion order
    this.m.set(key, { v, expires: now + this.ttlMs });
  }

  /** Removes and returns the entry: 'missing', 'expired', or the value. */
  take(key: string, now: number): V | 'missing' | 'expired' {
    const e = this.m.get(key);
    if (!e) return 'missing';
    this.m.delete(key);
    if (e.expires <= now) {
      this.onDrop?.(e.v);
      return 'expired';
    }
    return e.v;
  }

  /** True if some live entry satisfies `pred`. */
  some(now: number, pred: (v: V) => boolean): boolean {
    for (const e of this.m.values()) if (e.expires > now && pred(e.v)) return true;
    return false;
  }

  /**
   * Drops expired entries. Entries are kept in insertion order, which is expiry order while the
   * clock does not go back, so this stops at the first live one: O(expired), not O(size), on
   * every batch. `full` looks at every entry (when the table is full, in case the clock went back).
   */
  sweep(now: number, full = false): void {
    for (const [k, e] of this.m) {
      if (e.expires <= now) {
        this.m.delete(k);
        this.onDrop?.(e.v);
      } else if (!full) {
        return;
      }
    }
  }

  clear(): void {
    for (const e of this.m.values()) this.onDrop?.(e.v);
    this.m.clear();
  }
}

/** What the login handlers need of a table of sessions (ExpiringTable has it; so has LoginSessionTable). */
export interface SessionTable<V> {
  readonly size: number;
  put(key: string, v: V, now: number): void;
  take(key: string, now: number): V | 'missing' | 'expired';
  some(now: number, pred: (v: V) => boolean): boolean;
  sweep(now: number): void;
  clear(): void;
}

/** A login session between KE2 and KE3 (ops.ts LoginSession). */
export interface StoredLoginSession {
  idHex: string;
  suite: SuiteId;
  /** null for a fake session (unknown record). */
  registrationId: Uint8Array | null;
  state: ServerLoginState | null;
}

// Slot layout: the serialized ServerLoginState (serverLoginStateEncode: 2 + Nm + Nx <= 130
// bytes) at 0, the registration id (16) at 130.
const STATE_MAX = 130;
const REG_OFF = STATE_MAX;
const REG_LEN = 16;
const SLOT = 160;
const F_USED = 1;
const F_REG = 2;

/**
 * The login sessions of a partition, compact: each in a fixed slot of one flat byte array (the
 * OPAQUE server state serialized with serverLoginStateEncode, the registration id) beside typed
 * arrays of expiry times and flags, found through one Map from session id to slot. A session
 * lives up to two minutes and the table holds up to its maximum (100,000), so the garbage
 * collector walks one Map entry and one string per session instead of half a dozen objects,
 * typed arrays and a WeakMap entry. A slot is wiped when its session is taken, expires or is
 * cleared. Same contract as ExpiringTable: insertion-ordered sweep, 'missing' / 'expired' /
 * the session from take, TooManySessions when full of live ones.
 */
export class LoginSessionTable implements SessionTable<StoredLoginSession> {
  private readonly slots = new Map<string, number>();
  private cap = 0;
  private data = new Uint8Array(0);
  private expires = new Float64Array(0);
  private stateLen = new Uint8Array(0);
  private flags = new Uint8Array(0);
  private suiteCode = new Uint8Array(0);
  private ids: (string | undefined)[] = [];
  private free: number[] = [];

  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
    /** The suite objects, to decode a state (serverLoginStateDecode needs the suite). */
    private readonly suites: ReadonlyMap<SuiteId, Suite>,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  private grow(): void {
    const cap = Math.min(this.max, Math.max(1024, this.cap * 2));
    if (cap <= this.cap) throw new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight');
    const data = new Uint8Array(cap * SLOT);
    data.set(this.data);
    this.data.fill(0);
    this.data = data;
    const expires = new Float64Array(cap);
    expires.set(this.expires);
    this.expires = expires;
    for (const k of ['stateLen', 'flags', 'suiteCode'] as const) {
      const a = new Uint8Array(cap);
      a.set(this[k]);
      this[k] = a;
    }
    for (let i = cap - 1; i >= this.cap; i--) this.free.push(i);
    this.cap = cap;
  }

  private release(slot: number): void {
    this.data.fill(0, slot * SLOT, (slot + 1) * SLOT);
    this.flags[slot] = 0;
    this.stateLen[slot] = 0;
    this.ids[slot] = undefined;
    this.free.push(slot);
  }

  put(key: string, s: StoredLoginSession, now: number): void {
    if (this.slots.size >= this.max) this.sweep(now, true);
    const prev = this.slots.get(key);
    if (prev !== undefined) {
      this.slots.delete(key);
      this.release(prev);
    }
    if (this.slots.size >= this.max) throw new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight');
    if (this.free.length === 0) this.grow();
    const slot = this.free.pop()!;
    const off = slot * SLOT;
    let len = 0;
    if (s.state) {
      const enc = serverLoginStateEncode(s.state); // moves the state's secrets out (the object is wiped)
      if (enc.length > STATE_MAX) {
        enc.fill(0);
        this.free.push(slot);
        throw new EnclaveFault(Handling.BadPayload, 'login state too large');
      }
      this.data.set(enc, off);
      len = enc.length;
      enc.fill(0);
    }
    this.stateLen[slot] = len;
    let f = F_USED;
    if (s.registrationId) {
      this.data.set(s.registrationId.subarray(0, REG_LEN), off + REG_OFF);
      f |= F_REG;
    }
    this.flags[slot] = f;
    this.suiteCode[slot] = SUITE_CODE[s.suite];
    this.ids[slot] = s.idHex;
    this.expires[slot] = now + this.ttlMs;
    this.slots.set(key, slot);
  }

  private suiteOf(slot: number): SuiteId {
    const code = this.suiteCode[slot];
    return code === SUITE_CODE['P256-SHA256'] ? 'P256-SHA256' : 'ristretto255-SHA512';
  }

  take(key: string, now: number): StoredLoginSession | 'missing' | 'expired' {
    const slot = this.slots.get(key);
    if (slot === undefined) return 'missing';
    this.slots.delete(key);
    if (this.expires[slot]! <= now) {
      this.release(slot);
      return 'expired';
    }
    const off = slot * SLOT;
    const suite = this.suiteOf(slot);
    const len = this.stateLen[slot]!;
    const s: StoredLoginSession = {
      idHex: this.ids[slot]!,
      suite,
      registrationId: this.flags[slot]! & F_REG ? this.data.slice(off + REG_OFF, off + REG_OFF + REG_LEN) : null,
      state: len ? serverLoginStateDecode(this.suites.get(suite)!, this.data.subarray(off, off + len)) : null,
    };
    this.release(slot);
    return s;
  }

  /** True if some live session satisfies `pred` (given its id, suite and registration id; never its state). */
  some(now: number, pred: (v: StoredLoginSession) => boolean): boolean {
    for (const slot of this.slots.values()) {
      if (this.expires[slot]! <= now) continue;
      const off = slot * SLOT;
      const view: StoredLoginSession = {
        idHex: this.ids[slot]!,
        suite: this.suiteOf(slot),
        registrationId: this.flags[slot]! & F_REG ? this.data.subarray(off + REG_OFF, off + REG_OFF + REG_LEN) : null,
        state: null,
      };
      if (pred(view)) return true;
    }
    return false;
  }

  /** As ExpiringTable.sweep: insertion order, stops at the first live session unless `full`. */
  sweep(now: number, full = false): void {
    for (const [k, slot] of this.slots) {
      if (this.expires[slot]! <= now) {
        this.slots.delete(k);
        this.release(slot);
      } else if (!full) {
        return;
      }
    }
  }

  clear(): void {
    this.slots.clear();
    this.data.fill(0);
    this.flags.fill(0);
    this.stateLen.fill(0);
    this.ids = [];
    this.free = [];
    for (let i = this.cap - 1; i >= 0; i--) this.free.push(i);
  }
}
