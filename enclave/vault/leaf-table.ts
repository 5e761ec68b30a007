/**
 * A compact hash table from record key (the first 16 bytes of SHA-256 of the record id) to a
 * 16-byte leaf, in flat typed arrays (keys, leaves, a used flag): 33 bytes per slot and no object
 * per entry, so a partition with a million records costs 41 to 63 MB of enclave memory (1.25 to
 * 1.9 slots per entry, below), not hundreds.
 * Open addressing with linear probing and backward-shift deletion (no tombstones); grows by half
 * at a load factor of 0.8, so a full table holds 1.25 to 1.9 slots per entry (doubling would
 * give 1.25 to 2.5, and a growth step would hold the old and the new arrays at once: 2.5x the old
 * size instead of 3x). A table whose size is known ahead (the record count in NVRAM at load) is
 * made big enough at once with `LeafTable.forEntries`.
 */
const KEY = 16;
const VAL = 16;
const MAX_LOAD = 0.8;
const GROWTH = 1.5;

export class LeafTable {
  private keys: Uint8Array;
  private vals: Uint8Array;
  private used: Uint8Array;
  private cap: number;
  size = 0;

  constructor(initialCapacity = 1024) {
    this.cap = Math.max(16, Math.ceil(initialCapacity));
    this.keys = new Uint8Array(this.cap * KEY);
    this.vals = new Uint8Array(this.cap * VAL);
    this.used = new Uint8Array(this.cap);
  }

  /** A table that holds `n` entries without growing (and grows as usual past them). */
  static forEntries(n: number): LeafTable {
    return new LeafTable(Math.max(1024, Math.ceil((n + 1) / MAX_LOAD) + 16));
  }

  /** Slots in the table. */
  get capacity(): number {
    return this.cap;
  }

  private home(key: Uint8Array): number {
    return (((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) >>> 0) % this.cap;
  }

  private find(key: Uint8Array): number {
    let i = this.home(key);
    for (;;) {
      if (!this.used[i]) return -1 - i;
      if (this.keyAt(i, key)) return i;
      i = (i + 1) % this.cap;
    }
  }

  private keyAt(i: number, key: Uint8Array): boolean {
    const off = i * KEY;
    for (let j = 0; j < KEY; j++) if (this.keys[off + j] !== key[j]) return false;
    return true;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    const i = this.find(key);
    return i >= 0 ? this.vals.slice(i * VAL, i * VAL + VAL) : undefined;
  }

  set(key: Uint8Array, val: Uint8Array): void {
    let i = this.find(key);
    if (i < 0) {
      if ((this.size + 1) / this.cap > MAX_LOAD) {
        this.grow();
        i = this.find(key);
      }
      i = -1 - i;
      this.keys.set(key.length === KEY ? key : key.subarray(0, KEY), i * KEY);
      this.used[i] = 1;
      this.size++;
    }
    // No view of a small array where none is needed (a view gives it an ArrayBuffer: bytes.ts latin1Key).
    this.vals.set(val.length === VAL ? val : val.subarray(0, VAL), i * VAL);
  }

  delete(key: Uint8Array): boolean {
    let i = this.find(key);
    if (i < 0) return false;
    this.used[i] = 0;
    this.size--;
    // Backward-shift: move later entries of the probe run into the hole.
    let j = i;
    for (;;) {
      j = (j + 1) % this.cap;
      if (!this.used[j]) break;
      const h = this.home(this.keys.subarray(j * KEY, j * KEY + KEY));
      const between = i <= j ? h > i && h <= j : h > i || h <= j;
      if (between) continue;
      this.keys.copyWithin(i * KEY, j * KEY, j * KEY + KEY);
      this.vals.copyWithin(i * VAL, j * VAL, j * VAL + VAL);
      this.used[i] = 1;
      this.used[j] = 0;
      i = j;
    }
    return true;
  }

  private grow(): void {
    const { keys, vals, used, cap } = this;
    this.cap = Math.ceil(cap * GROWTH);
    this.keys = new Uint8Array(this.cap * KEY);
    this.vals = new Uint8Array(this.cap * VAL);
    this.used = new Uint8Array(this.cap);
    this.size = 0;
    for (let i = 0; i < cap; i++) {
      if (used[i]) this.set(keys.subarray(i * KEY, i * KEY + KEY), vals.subarray(i * VAL, i * VAL + VAL));
    }
  }

  /** Bytes held by the table's arrays. */
  get bytes(): number {
    return this.keys.byteLength + this.vals.byteLength + this.used.byteLength;
  }
}

const SEGMENTS = 64;

/**
 * The record index's table for large partitions: 64 LeafTables chosen by a byte of the key that
 * the tables' own hash does not use (byte 4; keys are SHA-256 prefixes, so segments fill evenly).
 * Each segment grows on its own, so a growth step copies 1/64 of the entries and holds 1/64 of
 * the table twice, where one table holds its whole old and new arrays at once and stalls the
 * device while it copies them. Same slots per entry on average.
 */
export class SegmentedLeafTable {
  private readonly segs: LeafTable[];

  constructor(initialCapacityPerSegment = 64) {
    this.segs = Array.from({ length: SEGMENTS }, () => new LeafTable(initialCapacityPerSegment));
  }

  private seg(key: Uint8Array): LeafTable {
    return this.segs[key[4]! & (SEGMENTS - 1)]!;
  }

  get size(): number {
    let n = 0;
    for (const s of this.segs) n += s.size;
    return n;
  }

  get capacity(): number {
    let n = 0;
    for (const s of this.segs) n += s.capacity;
    return n;
  }

  get bytes(): number {
    let n = 0;
    for (const s of this.segs) n += s.bytes;
    return n;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.seg(key).get(key);
  }

  set(key: Uint8Array, val: Uint8Array): void {
    this.seg(key).set(key, val);
  }

  delete(key: Uint8Array): boolean {
    return this.seg(key).delete(key);
  }
}
