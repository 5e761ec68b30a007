/**
 * Bounded, expiring tables of in-flight protocol state, held only in enclave memory: staged
 * registrations, login sessions between KE2 and KE3, and recovered sessions that may authorize
 * a password change. Lost on restart by design: a dropped session never refunds its guess.
 *
 * Room is taken while a batch is computed, never at its commit (the batch protocol, batch.ts):
 * an operation that makes an entry asks `room` first (the table's maximum, and its record id's
 * quota) and is refused with TooManySessions before it produces anything, so it charges nothing;
 * the entry it then `put`s is pending (invisible to `take`) until its batch commits. `commit`
 * only marks entries live, so nothing can fail after the batch's NVRAM commit; an aborted or
 * dropped batch releases its entries (`abort`, `dropAll`), and so does an operation that fails
 * after its handler ran (`opFailed`). Every table is indexed by record id, so what one record
 * holds is a lookup, never a scan of the table.
 */
import { EnclaveFault, Handling } from '../api/codes.ts';
import { SUITE_CODE } from '../api/messages.ts';
import { serverLoginStateDecode, serverLoginStateEncode } from '../opaque/server.ts';
import type { ServerLoginState } from '../opaque/server.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import type { AuthSession, Stage } from './ops.ts';
import { batchBytes } from './arena.ts';

export const SESSION_TTL_MS = 120_000;
export const STAGE_TTL_MS = 300_000;
export const AUTH_TTL_MS = 300_000;

/** Entries each table of a partition holds at most: 100,000 login sessions are 16 MB of slots. */
export const MAX_TABLE_ENTRIES = 100_000;
/**
 * Login sessions (KE2 sent, KE3 not yet received) one record id holds at most. Above the default
 * attempt limit (10), so concurrent logins on a record with that limit spend its guesses before
 * they meet this; a user has one or two open. It bounds what one id can take of the table, above
 * all the fake sessions of an unknown id, which charge nothing.
 */
export const MAX_LOGIN_SESSIONS_PER_ID = 16;
/**
 * Stages one record id holds at most: a registration or password change in flight, with its
 * retries. RegisterStart needs no proof and charges nothing, so anyone can open stages for any id.
 */
export const MAX_STAGES_PER_ID = 8;
/**
 * Recovered sessions one record id holds at most. Each takes a login with the right password
 * and authorizes one change or delete; the ninth recovery within the 5 minutes one lives
 * replaces the oldest (only the password's holder makes them, so a valid KE3 is never refused
 * for this quota).
 */
export const MAX_AUTH_SESSIONS_PER_ID = 8;

/** How many entries each table holds at most, in all and for one record id. */
export interface TableLimits {
  stages: number;
  loginSessions: number;
  authSessions: number;
  stagesPerId: number;
  loginSessionsPerId: number;
  authSessionsPerId: number;
}

export const DEFAULT_TABLE_LIMITS: Readonly<TableLimits> = {
  stages: MAX_TABLE_ENTRIES,
  loginSessions: MAX_TABLE_ENTRIES,
  authSessions: MAX_TABLE_ENTRIES,
  stagesPerId: MAX_STAGES_PER_ID,
  loginSessionsPerId: MAX_LOGIN_SESSIONS_PER_ID,
  authSessionsPerId: MAX_AUTH_SESSIONS_PER_ID,
};

const tooMany = () => new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight');
const tooManyForId = () => new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight for this record', 'recordId');

/** What the batch protocol does with a table (VaultTables runs it on all three). */
interface BatchTable {
  /** Sweeps expired entries; entries put from now on are pending in batch `epoch`. */
  begin(epoch: number, now: number): void;
  /** An operation of the batch starts: `opFailed` releases what it puts from here on. */
  opStart(): void;
  opFailed(): void;
  /** Batch `epoch` is durable: its entries go live. Never throws. */
  commit(epoch: number): void;
  /** Batch `epoch` and every batch after it are dropped: their entries are released. */
  abort(epoch: number): void;
  dropAll(): void;
  clear(): void;
}

/**
 * The entries each batch in flight made, in order: at most the pending batch and the one staged
 * behind it (batch.ts), the later one last. `K` names an entry (a key or a slot).
 */
class InFlight<K> {
  private batches: { epoch: number; made: K[] }[] = [];
  private opMark = 0;

  /** True while a batch is in flight: an entry put now is pending in the last one. */
  get open(): boolean {
    return this.batches.length > 0;
  }

  begin(epoch: number, drop: (k: K) => void): void {
    // A batch of this epoch or later still here was dropped without an Abort (a failpoint).
    this.abort(epoch, drop);
    this.batches.push({ epoch, made: [] });
    this.opMark = 0;
  }

  add(k: K): void {
    this.batches[this.batches.length - 1]!.made.push(k);
  }

  opStart(): void {
    this.opMark = this.batches.length ? this.batches[this.batches.length - 1]!.made.length : 0;
  }

  opFailed(drop: (k: K) => void): void {
    const made = this.batches[this.batches.length - 1]?.made;
    while (made && made.length > this.opMark) drop(made.pop()!);
  }

  /** Forgets one pending entry (released by other means). */
  remove(k: K): void {
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const made = this.batches[i]!.made;
      const j = made.lastIndexOf(k);
      if (j < 0) continue;
      made.splice(j, 1);
      if (i === this.batches.length - 1 && j < this.opMark) this.opMark--;
      return;
    }
  }

  commit(epoch: number, activate: (k: K) => void, drop: (k: K) => void): void {
    while (this.batches.length && this.batches[0]!.epoch < epoch) for (const k of this.batches.shift()!.made) drop(k);
    if (this.batches[0]?.epoch === epoch) for (const k of this.batches.shift()!.made) activate(k);
  }

  abort(epoch: number, drop: (k: K) => void): void {
    while (this.batches.length && this.batches[this.batches.length - 1]!.epoch >= epoch) for (const k of this.batches.pop()!.made) drop(k);
  }

  clear(): void {
    this.batches = [];
    this.opMark = 0;
  }
}

interface Entry<V> {
  key: string;
  v: V;
  id: string;
  expires: number;
  pending: boolean;
  /** The next older and next newer entry of the same record id. */
  older: Entry<V> | null;
  newer: Entry<V> | null;
}

/**
 * A table of values by key (stages, recovered sessions), with a list per record id. An id at its
 * quota is refused (`room` throws), or, for a table made with `evictOldest`, gives up its oldest
 * entry to the new one (`put`).
 */
export class ExpiringTable<V> implements BatchTable {
  private readonly m = new Map<string, Entry<V>>();
  /** Record id -> its newest entry; the others follow through `older`. */
  private readonly byId = new Map<string, Entry<V>>();
  private readonly inFlight = new InFlight<string>();
  /** Whether expiry times follow insertion order (they do unless the clock went back). */
  private ordered = true;
  private lastExpiry = -Infinity;
  private fullSweepAt = NaN;
  private readonly dropKey = (k: string): void => {
    const e = this.m.get(k);
    if (e) this.delete(e, true);
  };
  private readonly activateKey = (k: string): void => {
    const e = this.m.get(k);
    if (e) e.pending = false;
  };

  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
    private readonly perId: number,
    private readonly onDrop?: (v: V) => void,
    private readonly evictOldest = false,
  ) {}

  /** Entries held, pending ones included. */
  get size(): number {
    return this.m.size;
  }

  /** Entries `id` holds, pending ones included. */
  countOf(id: string): number {
    let n = 0;
    for (let e = this.byId.get(id) ?? null; e; e = e.older) n++;
    return n;
  }

  /** Out of the table and its id's list (not out of `inFlight`); `drop`: onDrop sees the value. */
  private delete(e: Entry<V>, drop: boolean): void {
    this.m.delete(e.key);
    if (e.newer) e.newer.older = e.older;
    else if (e.older) this.byId.set(e.id, e.older);
    else this.byId.delete(e.id);
    if (e.older) e.older.newer = e.newer;
    e.older = e.newer = null;
    if (drop) this.onDrop?.(e.v);
  }

  /**
   * Throws TooManySessions unless an entry for `id` fits: the table's maximum, and the id's
   * quota (with `evictOldest`, an id at its quota always fits: `put` makes room from its own).
   */
  room(id: string, now: number): void {
    if (this.m.size >= this.max && !this.ordered && this.fullSweepAt !== now) this.sweep(now, true);
    const atQuota = this.countOf(id) >= this.perId;
    if (atQuota && !this.evictOldest) throw tooManyForId();
    if (this.m.size >= this.max && !atQuota) throw tooMany();
  }

  /** Adds an entry for record `id`: pending while a batch is in flight (see the header). Call `room` first. */
  put(key: string, id: string, v: V, now: number): void {
    const old = this.m.get(key);
    if (old) {
      if (old.pending) this.inFlight.remove(key);
      this.delete(old, true);
    }
    this.room(id, now);
    const newest = this.byId.get(id) ?? null;
    if (this.evictOldest && this.countOf(id) >= this.perId) {
      let oldest = newest!;
      while (oldest.older) oldest = oldest.older;
      if (oldest.pending) this.inFlight.remove(oldest.key);
      this.delete(oldest, true);
    }
    const expires = now + this.ttlMs;
    if (expires < this.lastExpiry) this.ordered = false;
    else this.lastExpiry = expires;
    const pending = this.inFlight.open;
    const head = this.byId.get(id) ?? null;
    const e: Entry<V> = { key, v, id, expires, pending, older: head, newer: null };
    if (head) head.newer = e;
    this.byId.set(id, e);
    this.m.set(key, e);
    if (pending) this.inFlight.add(key);
  }

  /** Removes and returns the entry: 'missing' (a pending one too), 'expired', or the value. */
  take(key: string, now: number): V | 'missing' | 'expired' {
    const e = this.m.get(key);
    if (!e || e.pending) return 'missing';
    const expired = e.expires <= now;
    this.delete(e, expired);
    return expired ? 'expired' : e.v;
  }

  /**
   * Drops expired entries. Entries are kept in insertion order, which is expiry order while the
   * clock does not go back, so this stops at the first live one: O(expired), not O(size), on
   * every batch. `full` looks at every entry (`room` asks for it when the table is full and the
   * clock has gone back, at most once per clock value). Pending entries stay.
   */
  sweep(now: number, full = false): void {
    let last = -Infinity;
    let ordered = true;
    for (const e of this.m.values()) {
      if (!e.pending && e.expires <= now) {
        this.delete(e, true);
        continue;
      }
      if (!full) return;
      if (e.expires < last) ordered = false;
      else last = e.expires;
    }
    if (full) {
      this.ordered = ordered;
      this.lastExpiry = last;
      this.fullSweepAt = now;
    }
  }

  begin(epoch: number, now: number): void {
    this.inFlight.begin(epoch, this.dropKey);
    this.sweep(now);
  }

  opStart(): void {
    this.inFlight.opStart();
  }

  opFailed(): void {
    this.inFlight.opFailed(this.dropKey);
  }

  commit(epoch: number): void {
    this.inFlight.commit(epoch, this.activateKey, this.dropKey);
  }

  abort(epoch: number): void {
    this.inFlight.abort(epoch, this.dropKey);
  }

  dropAll(): void {
    this.inFlight.abort(0, this.dropKey);
  }

  clear(): void {
    for (const e of this.m.values()) this.onDrop?.(e.v);
    this.m.clear();
    this.byId.clear();
    this.inFlight.clear();
    this.ordered = true;
    this.lastExpiry = -Infinity;
  }
}

/** A login session between KE2 and KE3. */
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
const F_PENDING = 4;

/**
 * The login sessions of a partition, compact: each in a fixed slot of one flat byte array (the
 * OPAQUE server state serialized with serverLoginStateEncode, the registration id) beside typed
 * arrays of expiry times, flags and the links of a list per record id, found through one Map from
 * session id to slot and one from record id to the newest slot of its list. A session lives up to
 * two minutes and the table holds up to its maximum (100,000), so the garbage collector walks a
 * Map entry and a string per session and one Map entry per record id instead of half a dozen
 * objects, typed arrays and a WeakMap entry per session. A slot is wiped when its session is
 * taken, expires, is dropped or cleared. Same contract as ExpiringTable: insertion-ordered
 * sweep, 'missing' / 'expired' / the session from take, room and pending entries per batch.
 */
export class LoginSessionTable implements BatchTable {
  private readonly slots = new Map<string, number>();
  private readonly byId = new Map<string, number>();
  private cap = 0;
  private data = new Uint8Array(0);
  private expires = new Float64Array(0);
  /** The next older and next newer slot of the same record id (-1: none). */
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private stateLen = new Uint8Array(0);
  private flags = new Uint8Array(0);
  private suiteCode = new Uint8Array(0);
  private ids: (string | undefined)[] = [];
  private keys: (string | undefined)[] = [];
  private free: number[] = [];
  private readonly inFlight = new InFlight<number>();
  private ordered = true;
  private lastExpiry = -Infinity;
  private fullSweepAt = NaN;
  private readonly dropSlot = (slot: number): void => {
    if (this.flags[slot]! & F_USED) this.release(slot);
  };
  private readonly activateSlot = (slot: number): void => {
    this.flags[slot] = this.flags[slot]! & ~F_PENDING;
  };

  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
    private readonly perId: number,
    /** The suite objects, to decode a state (serverLoginStateDecode needs the suite). */
    private readonly suites: ReadonlyMap<SuiteId, Suite>,
  ) {}

  /** Sessions held, pending ones included. */
  get size(): number {
    return this.slots.size;
  }

  private grow(): void {
    const cap = Math.min(this.max, Math.max(1024, this.cap * 2));
    if (cap <= this.cap) throw tooMany();
    const data = new Uint8Array(cap * SLOT);
    data.set(this.data);
    this.data.fill(0);
    this.data = data;
    const expires = new Float64Array(cap);
    expires.set(this.expires);
    this.expires = expires;
    for (const k of ['next', 'prev'] as const) {
      const a = new Int32Array(cap);
      a.set(this[k]);
      this[k] = a;
    }
    for (const k of ['stateLen', 'flags', 'suiteCode'] as const) {
      const a = new Uint8Array(cap);
      a.set(this[k]);
      this[k] = a;
    }
    for (let i = cap - 1; i >= this.cap; i--) this.free.push(i);
    this.cap = cap;
  }

  /** Frees a used slot: out of both maps and its record's list, wiped. Not out of `inFlight`. */
  private release(slot: number): void {
    this.slots.delete(this.keys[slot]!);
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    if (p >= 0) this.next[p] = n;
    else if (n >= 0) this.byId.set(this.ids[slot]!, n);
    else this.byId.delete(this.ids[slot]!);
    if (n >= 0) this.prev[n] = p;
    this.data.fill(0, slot * SLOT, (slot + 1) * SLOT);
    this.flags[slot] = 0;
    this.stateLen[slot] = 0;
    this.ids[slot] = undefined;
    this.keys[slot] = undefined;
    this.free.push(slot);
  }

  /** Sessions `idHex` holds, pending ones included; drops its expired ones on the way. */
  countOf(idHex: string, now: number): number {
    let count = 0;
    for (let s = this.byId.get(idHex) ?? -1; s >= 0; ) {
      const n = this.next[s]!;
      if (!(this.flags[s]! & F_PENDING) && this.expires[s]! <= now) this.release(s);
      else count++;
      s = n;
    }
    return count;
  }

  /** Throws TooManySessions unless a session for `idHex` fits (the table's maximum, and the id's quota). */
  room(idHex: string, now: number): void {
    if (this.slots.size >= this.max && !this.ordered && this.fullSweepAt !== now) this.sweep(now, true);
    if (this.slots.size >= this.max) throw tooMany();
    if (this.countOf(idHex, now) >= this.perId) throw tooManyForId();
  }

  /** Adds a session: pending while a batch is in flight (see the header). Call `room` first. */
  put(key: string, s: StoredLoginSession, now: number): void {
    const old = this.slots.get(key);
    if (old !== undefined) {
      if (this.flags[old]! & F_PENDING) this.inFlight.remove(old);
      this.release(old);
    }
    this.room(s.idHex, now);
    if (this.free.length === 0) this.grow();
    const slot = this.free.pop()!;
    const off = slot * SLOT;
    let len = 0;
    if (s.state) {
      const enc = serverLoginStateEncode(s.state, batchBytes.alloc); // moves the state's secrets out (the object is wiped); copied below, then wiped
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
    const pending = this.inFlight.open;
    let f = F_USED | (pending ? F_PENDING : 0);
    if (s.registrationId) {
      this.data.set(s.registrationId.length === REG_LEN ? s.registrationId : s.registrationId.subarray(0, REG_LEN), off + REG_OFF);
      f |= F_REG;
    }
    this.flags[slot] = f;
    this.suiteCode[slot] = SUITE_CODE[s.suite];
    this.ids[slot] = s.idHex;
    this.keys[slot] = key;
    const expires = now + this.ttlMs;
    if (expires < this.lastExpiry) this.ordered = false;
    else this.lastExpiry = expires;
    this.expires[slot] = expires;
    const head = this.byId.get(s.idHex) ?? -1;
    this.next[slot] = head;
    this.prev[slot] = -1;
    if (head >= 0) this.prev[head] = slot;
    this.byId.set(s.idHex, slot);
    this.slots.set(key, slot);
    if (pending) this.inFlight.add(slot);
  }

  private suiteOf(slot: number): SuiteId {
    const code = this.suiteCode[slot];
    return code === SUITE_CODE['P256-SHA256'] ? 'P256-SHA256' : 'ristretto255-SHA512';
  }

  /** Removes and returns the session: 'missing' (a pending one too), 'expired', or the session. */
  take(key: string, now: number): StoredLoginSession | 'missing' | 'expired' {
    const slot = this.slots.get(key);
    if (slot === undefined || this.flags[slot]! & F_PENDING) return 'missing';
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

  /** True if `idHex` has a live (committed, unexpired) session of registration `registrationId`. */
  hasLive(idHex: string, registrationId: Uint8Array, now: number): boolean {
    for (let s = this.byId.get(idHex) ?? -1; s >= 0; s = this.next[s]!) {
      const f = this.flags[s]!;
      if (f & F_PENDING || !(f & F_REG) || this.expires[s]! <= now) continue;
      const off = s * SLOT + REG_OFF;
      let d = registrationId.length ^ REG_LEN;
      for (let i = 0; i < REG_LEN; i++) d |= this.data[off + i]! ^ (registrationId[i] ?? 0);
      if (d === 0) return true;
    }
    return false;
  }

  /** Ends every session of `idHex`, pending ones included. */
  dropId(idHex: string): void {
    for (let s = this.byId.get(idHex) ?? -1; s >= 0; ) {
      const n = this.next[s]!;
      if (this.flags[s]! & F_PENDING) this.inFlight.remove(s);
      this.release(s);
      s = n;
    }
  }

  /** As ExpiringTable.sweep: insertion order, stops at the first live session unless `full`. */
  sweep(now: number, full = false): void {
    let last = -Infinity;
    let ordered = true;
    for (const slot of this.slots.values()) {
      const e = this.expires[slot]!;
      if (!(this.flags[slot]! & F_PENDING) && e <= now) {
        this.release(slot);
        continue;
      }
      if (!full) return;
      if (e < last) ordered = false;
      else last = e;
    }
    if (full) {
      this.ordered = ordered;
      this.lastExpiry = last;
      this.fullSweepAt = now;
    }
  }

  begin(epoch: number, now: number): void {
    this.inFlight.begin(epoch, this.dropSlot);
    this.sweep(now);
  }

  opStart(): void {
    this.inFlight.opStart();
  }

  opFailed(): void {
    this.inFlight.opFailed(this.dropSlot);
  }

  commit(epoch: number): void {
    this.inFlight.commit(epoch, this.activateSlot, this.dropSlot);
  }

  abort(epoch: number): void {
    this.inFlight.abort(epoch, this.dropSlot);
  }

  dropAll(): void {
    this.inFlight.abort(0, this.dropSlot);
  }

  clear(): void {
    this.slots.clear();
    this.byId.clear();
    this.data.fill(0);
    this.flags.fill(0);
    this.stateLen.fill(0);
    this.ids = [];
    this.keys = [];
    this.free = [];
    for (let i = this.cap - 1; i >= 0; i--) this.free.push(i);
    this.inFlight.clear();
    this.ordered = true;
    this.lastExpiry = -Infinity;
  }
}

/** A partition's three tables, driven together by the batch protocol (batch.ts). */
export class VaultTables implements BatchTable {
  readonly stages: ExpiringTable<Stage>;
  readonly sessions: LoginSessionTable;
  readonly authSessions: ExpiringTable<AuthSession>;
  private readonly all: readonly BatchTable[];

  constructor(suites: ReadonlyMap<SuiteId, Suite>, limits: Partial<TableLimits> = {}) {
    const l = { ...DEFAULT_TABLE_LIMITS, ...limits };
    this.stages = new ExpiringTable<Stage>(STAGE_TTL_MS, l.stages, l.stagesPerId);
    this.sessions = new LoginSessionTable(SESSION_TTL_MS, l.loginSessions, l.loginSessionsPerId, suites);
    this.authSessions = new ExpiringTable<AuthSession>(AUTH_TTL_MS, l.authSessions, l.authSessionsPerId, (a) => a.authKey.fill(0), true);
    this.all = [this.stages, this.sessions, this.authSessions];
  }

  begin(epoch: number, now: number): void {
    for (const t of this.all) t.begin(epoch, now);
  }

  opStart(): void {
    for (const t of this.all) t.opStart();
  }

  opFailed(): void {
    for (const t of this.all) t.opFailed();
  }

  commit(epoch: number): void {
    for (const t of this.all) t.commit(epoch);
  }

  abort(epoch: number): void {
    for (const t of this.all) t.abort(epoch);
  }

  dropAll(): void {
    for (const t of this.all) t.dropAll();
  }

  clear(): void {
    for (const t of this.all) t.clear();
  }
}
