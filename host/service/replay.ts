/**
 * A host-side guard against byte-identical replays of a sealed operation. Each client message is
 * sealed with a fresh HPKE encapsulation, so an honest client never sends the same bytes twice;
 * a second copy is someone replaying captured traffic. The enclave already refuses replays that
 * could gain anything (a used stage, a finished session), but a replayed LoginStart opens a new
 * session and is charged a guess like any stranger's login; refusing the copy here (409) means a
 * replay costs the user nothing, and no second answer is sealed under the same response key.
 *
 * It remembers the first 16 bytes of SHA-256(len(recordId) || recordId || message) for `windowMs`
 * (default 10 min), at most `maxEntries` (default 100,000); past that the oldest are forgotten
 * first. The keys live in flat typed arrays (a ring in arrival order and an open-addressing index
 * over it): 24 bytes per entry in the ring and 8 to 16 in the index (about 34 at the default
 * 100,000), no object per entry and no garbage for the collector on eviction (a Map of base64
 * strings cost several times that: bench/README.md).
 * Defence in depth only: the host is untrusted and this guard is no part of the enclave's rules.
 */
import { createHash } from 'node:crypto';

export interface ReplayGuardOptions {
  windowMs?: number;
  maxEntries?: number;
  now?: () => number;
}

const KEY = 16;
const EMPTY = -1;

export class ReplayGuard {
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** The ring: slot i holds a key and its expiry; `head` is the oldest, `count` are in use. */
  private readonly keys: Uint8Array;
  private readonly until: Float64Array;
  private head = 0;
  private count = 0;
  /** Open addressing (linear probing) from key to ring slot; EMPTY where free. */
  private readonly index: Int32Array;
  private readonly mask: number;

  constructor(opts: ReplayGuardOptions = {}) {
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.maxEntries = opts.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1 || this.maxEntries > 1 << 26) throw new RangeError(`maxEntries must be 1..${1 << 26}`);
    this.now = opts.now ?? (() => performance.now());
    this.keys = new Uint8Array(this.maxEntries * KEY);
    this.until = new Float64Array(this.maxEntries);
    let cap = 16;
    while (cap < this.maxEntries * 2) cap *= 2; // load factor at most 0.5
    this.index = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The key of one submission (16 bytes). */
  key(recordId: Uint8Array, message: Uint8Array): Uint8Array {
    return createHash('sha256').update(Uint8Array.of(recordId.length)).update(recordId).update(message).digest().subarray(0, KEY);
  }

  /** True when this key was remembered within the window. */
  has(key: Uint8Array): boolean {
    const i = this.find(key);
    return i >= 0 && this.until[this.index[i]!]! > this.now();
  }

  remember(key: Uint8Array): void {
    if (key.length !== KEY) throw new RangeError(`a replay key is ${KEY} bytes`);
    const t = this.now();
    // Forget what expired (the window is constant, so the ring is in expiry order), then make room.
    while (this.count > 0 && this.until[this.head]! <= t) this.evictOldest();
    // Still remembered: keep the first sighting (the ring stays in expiry order).
    if (this.find(key) >= 0) return;
    if (this.count === this.maxEntries) this.evictOldest();
    const slot = (this.head + this.count) % this.maxEntries;
    this.keys.set(key, slot * KEY);
    this.until[slot] = t + this.windowMs;
    this.count++;
    let i = this.home(key);
    while (this.index[i] !== EMPTY) i = (i + 1) & this.mask;
    this.index[i] = slot;
  }

  private home(key: Uint8Array, off = 0): number {
    return ((key[off]! | (key[off + 1]! << 8) | (key[off + 2]! << 16) | (key[off + 3]! << 24)) >>> 0) & this.mask;
  }

  /** The index position holding `key`, or -1. */
  private find(key: Uint8Array): number {
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const slot = this.index[i]!;
      if (slot === EMPTY) return -1;
      if (this.keyIs(slot, key)) return i;
    }
  }

  private keyIs(slot: number, key: Uint8Array): boolean {
    const off = slot * KEY;
    for (let j = 0; j < KEY; j++) if (this.keys[off + j] !== key[j]) return false;
    return true;
  }

  private evictOldest(): void {
    const slot = this.head;
    const key = this.keys.subarray(slot * KEY, slot * KEY + KEY);
    // Every slot in use is indexed exactly once, so the probe finds it before an empty position.
    for (let i = this.home(key); this.index[i] !== EMPTY; i = (i + 1) & this.mask) {
      if (this.index[i] === slot) {
        this.unindex(i);
        break;
      }
    }
    this.head = (this.head + 1) % this.maxEntries;
    this.count--;
  }

  /** Backward-shift deletion at index position i (no tombstones). */
  private unindex(i: number): void {
    this.index[i] = EMPTY;
    for (let j = (i + 1) & this.mask; this.index[j] !== EMPTY; j = (j + 1) & this.mask) {
      const slot = this.index[j]!;
      const h = this.home(this.keys, slot * KEY);
      const between = i <= j ? h > i && h <= j : h > i || h <= j;
      if (between) continue;
      this.index[i] = slot;
      this.index[j] = EMPTY;
      i = j;
    }
  }
}
