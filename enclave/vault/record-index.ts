/**
 * Rollback protection: the enclave's authenticated index of the partition's live records.
 *
 * Every live sealed record contributes one leaf, HMAC-SHA256(index key, len(id) || id ||
 * SHA-256(blob)). The NVRAM holds the record count and the AdHash sum of all leaves (adhash.ts),
 * updated at every committed batch. While running, the enclave keeps the leaf of every record in
 * memory and accepts a stored blob only if its leaf is the one it expects, so an older version of
 * one record is refused at once. At start the host streams every stored row; the enclave
 * recomputes count and sum and compares them with its NVRAM, so an older copy of the database,
 * or of any one record, is refused before anything is served.
 *
 * Crash consistency: a batch is persisted by the host before the enclave writes its NVRAM. A
 * crash in between leaves storage one batch ahead (epoch = NVRAM epoch + 1). At load the enclave
 * accepts that state only as "revert these rows to their previous blob" — nothing of that batch
 * was released, so undoing it loses no acknowledged write and refunds no released guess.
 *
 * Cost: one HMAC and one SHA-256 per record at start; 32 bytes of leaf plus the id per record
 * in enclave memory; NVRAM traffic fixed per batch whatever the number of records.
 */
import { EnclaveFault, Handling, Integrity } from '../api/codes.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import { toHex } from '../opaque/bytes.ts';
import { addInto, subInto } from './adhash.ts';
import { KIND_RECORD, parseHeader } from './record.ts';

export class RecordIndex {
  readonly leaves = new Map<string, Uint8Array>();
  readonly sum = new Uint8Array(32);
  count = 0;

  constructor(
    private readonly key: Uint8Array,
    private readonly h: HashPrimitives,
  ) {}

  leafOf(recordId: Uint8Array, blob: Uint8Array): Uint8Array {
    return this.h.hmac(this.key, Uint8Array.of(recordId.length), recordId, this.h.hash(blob));
  }

  get(idHex: string): Uint8Array | undefined {
    return this.leaves.get(idHex);
  }

  /** Replaces (or removes, with null) the leaf of one record, keeping count and sum. */
  set(idHex: string, leaf: Uint8Array | null): void {
    const old = this.leaves.get(idHex);
    if (old) {
      subInto(this.sum, old);
      this.count--;
      this.leaves.delete(idHex);
    }
    if (leaf) {
      addInto(this.sum, leaf);
      this.count++;
      this.leaves.set(idHex, leaf);
    }
  }

  matches(count: number, sum: Uint8Array): boolean {
    return this.count === count && this.sum.every((x, i) => x === sum[i]);
  }
}

function isLiveRecord(blob: Uint8Array | undefined): blob is Uint8Array {
  if (!blob || blob.length === 0) return false;
  return parseHeader(blob).kind === KIND_RECORD;
}

/** Rebuilds the index from the host's stream of stored rows (see the header). */
export class IndexLoader {
  private readonly current: RecordIndex;
  private readonly alt = new Map<string, Uint8Array | null>();
  private readonly seen = new Set<string>();
  private readonly altSum = new Uint8Array(32);
  private altCount = 0;
  private readonly revertIds: Uint8Array[] = [];

  constructor(
    key: Uint8Array,
    h: HashPrimitives,
    private readonly durableEpoch: number,
    private readonly inPartition: (recordId: Uint8Array) => boolean,
  ) {
    this.current = new RecordIndex(key, h);
  }

  add(recordId: Uint8Array, blob: Uint8Array, prev: Uint8Array | undefined): void {
    const idHex = toHex(recordId);
    if (this.seen.has(idHex)) throw new EnclaveFault(Handling.DuplicateRecordInLoad, 'a record was streamed twice', 'recordId');
    if (!this.inPartition(recordId)) throw new EnclaveFault(Integrity.IndexMismatch, 'a record of another partition was streamed', 'recordId');
    this.seen.add(idHex);
    let header;
    try {
      header = blob.length ? parseHeader(blob) : null;
    } catch {
      throw new EnclaveFault(Integrity.SealedRecordInvalid, 'a stored record has no valid header', 'blob');
    }
    const leaf = isLiveRecord(blob) ? this.current.leafOf(recordId, blob) : null;
    if (leaf) this.current.set(idHex, leaf);
    // The alternative state: rows written by the batch that never became durable, reverted.
    let altLeaf = leaf;
    if (header && header.epoch === this.durableEpoch + 1) {
      let prevLive = false;
      try {
        prevLive = isLiveRecord(prev);
      } catch {
        prevLive = false;
      }
      altLeaf = prevLive ? this.current.leafOf(recordId, prev!) : null;
      this.alt.set(idHex, altLeaf);
      this.revertIds.push(recordId);
    }
    if (altLeaf) {
      addInto(this.altSum, altLeaf);
      this.altCount++;
    }
  }

  /** The index, and the rows the host must revert; a fault when neither state matches the NVRAM. */
  finish(count: number, sum: Uint8Array): { index: RecordIndex; revert: Uint8Array[] } {
    if (this.current.matches(count, sum)) return { index: this.current, revert: [] };
    const altMatches = this.altCount === count && this.altSum.every((x, i) => x === sum[i]);
    if (this.revertIds.length > 0 && altMatches) {
      for (const [idHex, leaf] of this.alt) this.current.set(idHex, leaf);
      return { index: this.current, revert: this.revertIds };
    }
    throw new EnclaveFault(Integrity.RollbackDetected, 'stored records do not match the enclave state');
  }
}
