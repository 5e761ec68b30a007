/**
 * Rollback protection: the enclave's authenticated index of the partition's live records.
 *
 * Every live sealed record contributes one leaf, HMAC-SHA256(index key, len(id) || id ||
 * SHA-256(blob)) truncated to 128 bits. The NVRAM holds the record count and the AdHash sum of all leaves (adhash.ts),
 * updated at every committed batch. While running, the enclave keeps the leaf of every record in
 * memory and accepts a stored blob only if its leaf is the one it expects, so an older version of
 * one record is refused at once. At start the host streams every stored row; the enclave
 * recomputes count and sum and compares them with its NVRAM, so an older copy of the database,
 * or of any one record, is refused before anything is served.
 *
 * Crash consistency: before the host persists a batch, the enclave writes the batch's resulting
 * count and sum to NVRAM as an intent; after, it writes them as committed and only then releases
 * responses. A crash in between leaves storage either at the committed state (the batch never
 * landed: nothing of it was released) or at the intent (the enclave rolls forward: guesses stay
 * charged). Any other state, including an NVRAM image one batch old beside newer storage, is
 * refused: a single NVRAM write per batch could not tell that rollback from a crash.
 *
 * Cost: one HMAC and one SHA-256 per record at start; 32 bytes per record in enclave memory
 * (leaf-table.ts: a 16-byte key and a 16-byte leaf); NVRAM traffic fixed per batch whatever the
 * number of records.
 */
import { EnclaveFault, Handling, Integrity } from '../api/codes.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import { addInto, subInto } from './adhash.ts';
import { digestOf } from './digest.ts';
import { LeafTable, SegmentedLeafTable } from './leaf-table.ts';
import { KIND_RECORD, parseHeader } from './record.ts';

/** The value the loader's table of non-live rows stores (it is a set). */
const NO_LEAF = new Uint8Array(16);
/** The one-byte length prefixes of record ids (leafOf), allocated once. */
const ID_LENGTH = Array.from({ length: 256 }, (_, n) => Uint8Array.of(n));

export class RecordIndex {
  private readonly table = new SegmentedLeafTable();
  readonly sum = new Uint8Array(32);
  count = 0;

  constructor(
    private readonly key: Uint8Array,
    private readonly h: HashPrimitives,
  ) {}

  /** The table key of a record id: the first 16 bytes of SHA-256(id). */
  keyOf(recordId: Uint8Array): Uint8Array {
    // slice, not subarray: a view of a small array would give it an ArrayBuffer of its own (bytes.ts latin1Key).
    return digestOf(this.h, recordId).slice(0, 16);
  }

  /** The 16-byte leaf of a sealed blob: HMAC-SHA256(index key, len(id) || id || SHA-256(blob)), truncated. */
  leafOf(recordId: Uint8Array, blob: Uint8Array): Uint8Array {
    return this.h.hmac(this.key, ID_LENGTH[recordId.length] ?? Uint8Array.of(recordId.length), recordId, digestOf(this.h, blob)).slice(0, 16);
  }

  get(recordId: Uint8Array): Uint8Array | undefined {
    return this.table.get(this.keyOf(recordId));
  }

  /** `get` by the table key (`keyOf`), when the caller already hashed the id. */
  getByKey(key: Uint8Array): Uint8Array | undefined {
    return this.table.get(key);
  }

  /** Replaces (or removes, with null) the leaf of one record, keeping count and sum. */
  set(recordId: Uint8Array, leaf: Uint8Array | null): void {
    this.setByKey(this.keyOf(recordId), leaf);
  }

  /** `set` by the table key (`keyOf`). */
  setByKey(k: Uint8Array, leaf: Uint8Array | null): void {
    const old = this.table.get(k);
    if (old) {
      subInto(this.sum, old);
      this.count--;
      this.table.delete(k);
    }
    if (leaf) {
      addInto(this.sum, leaf);
      this.count++;
      this.table.set(k, leaf);
    }
  }

  matches(count: number, sum: Uint8Array): boolean {
    return this.count === count && this.sum.every((x, i) => x === sum[i]);
  }

  get memoryBytes(): number {
    return this.table.bytes;
  }
}

function isLiveRecord(blob: Uint8Array | undefined): blob is Uint8Array {
  if (!blob || blob.length === 0) return false;
  return parseHeader(blob).kind === KIND_RECORD;
}

/** Rebuilds the index from the host's stream of stored rows (see the header). */
export class IndexLoader {
  private readonly index: RecordIndex;
  /**
   * Table keys of the non-live rows streamed so far (live ones are in the index): duplicates are
   * found in 32 bytes per row of typed arrays, not in a set of strings that would, for a million
   * records, add tens of megabytes to the enclave's heap while it loads.
   */
  private readonly dead = new LeafTable(64);

  constructor(
    key: Uint8Array,
    h: HashPrimitives,
    private readonly inPartition: (recordId: Uint8Array) => boolean,
  ) {
    this.index = new RecordIndex(key, h);
  }

  /** Live rows streamed so far. */
  get count(): number {
    return this.index.count;
  }

  add(recordId: Uint8Array, blob: Uint8Array): void {
    const k = this.index.keyOf(recordId).slice();
    if (this.index.getByKey(k) || this.dead.get(k)) throw new EnclaveFault(Handling.DuplicateRecordInLoad, 'a record was streamed twice', 'recordId');
    if (!this.inPartition(recordId)) throw new EnclaveFault(Integrity.IndexMismatch, 'a record of another partition was streamed', 'recordId');
    let live: boolean;
    try {
      live = isLiveRecord(blob);
    } catch {
      throw new EnclaveFault(Integrity.SealedRecordInvalid, 'a stored record has no valid header', 'blob');
    }
    if (live) this.index.setByKey(k, this.index.leafOf(recordId, blob));
    else this.dead.set(k, NO_LEAF);
  }

  /**
   * The index, if the stored rows are exactly the committed state or exactly the state of the
   * batch whose intent is in NVRAM (then `rolledForward`); a RollbackDetected fault otherwise.
   */
  /** The index, if the stored rows are exactly the state (count, sum) given: a fleet member adopting its fleet's committed state (vault.ts). */
  finishAt(count: number, sum: Uint8Array): RecordIndex | null {
    return this.index.matches(count, sum) ? this.index : null;
  }

  finish(committed: { count: number; indexSum: Uint8Array }, intent: { count: number; indexSum: Uint8Array } | null): { index: RecordIndex; rolledForward: boolean } {
    if (this.index.matches(committed.count, committed.indexSum)) return { index: this.index, rolledForward: false };
    if (intent && this.index.matches(intent.count, intent.indexSum)) return { index: this.index, rolledForward: true };
    throw new EnclaveFault(Integrity.RollbackDetected, 'stored records do not match the enclave state');
  }
}
