/**
 * The argument checks both record stores make before they touch storage (the refusals the
 * RecordStore contract in types.ts lists): one place, so SQLite and PostgreSQL refuse the same
 * inputs with the same InvalidArgument messages.
 */
import { decodeFields, encodeFields } from '../../enclave/api/codec.ts';
import { AUDIT_EVENT_LEN, AuditEventSchema, MAX_RECORD_ID, MAX_SEALED_RECORD } from '../../enclave/api/messages.ts';
import type { AuditEvent, StoredAuditEvent } from '../../enclave/api/messages.ts';
import { StorageCode, StorageError } from './types.ts';
import type { BatchWrite } from './types.ts';

export const invalid = (msg: string) => new StorageError(StorageCode.InvalidArgument, msg);

export function checkPartition(p: number): void {
  if (!Number.isInteger(p) || p < 0 || p > 0xffff) throw invalid('partition: not an integer in 0..65535');
}

export function checkUint(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${what}: not a non-negative safe integer`);
}

export function checkId(id: unknown, what: string): asserts id is Uint8Array {
  if (!(id instanceof Uint8Array) || id.length < 1 || id.length > MAX_RECORD_ID) {
    throw invalid(`${what}: expected 1..${MAX_RECORD_ID} bytes`);
  }
}

export function checkChunkSize(chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw invalid('chunkSize: not a positive integer');
}

/** A batch that passed `checkBatch`: its writes in record id order, its audit events' bytes with their seqs in the same order. */
export interface CheckedBatch {
  /** The writes in record id order (a copy): PostgreSQL locks their rows in this order. */
  sorted: BatchWrite[];
  events: Uint8Array[];
  seqs: number[];
  /** The lowest seq of `seqs` (null: no events): stored events from here on are superseded. */
  minSeq: number | null;
}

/** The seq an audit event's encoding starts with (AuditEventSchema: a u53, 8 bytes big-endian). */
function leadingSeq(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) * 2 ** 32 + (((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0);
}

/** Byte order of record ids, as PostgreSQL sorts bytea and SQLite a BLOB. */
const byId = (a: BatchWrite, b: BatchWrite): number => Buffer.compare(a.recordId, b.recordId);

/** The writes in record id order (a copy); refused when two name the same id (equal neighbours). */
function sortedById(writes: readonly BatchWrite[]): BatchWrite[] {
  const sorted = [...writes].sort(byId);
  for (let i = 1; i < sorted.length; i++) {
    if (byId(sorted[i - 1]!, sorted[i]!) === 0) throw invalid('writes: a record id appears twice in one batch');
  }
  return sorted;
}

/**
 * The checks of `applyBatch` (types.ts): partition, epoch, each write's id and blob size, no id
 * twice, each audit event AUDIT_EVENT_LEN bytes that start with its seq, no seq twice. The events
 * are not decoded (the host can not read them; the enclave checks them when it verifies the
 * chain). Throws InvalidArgument; nothing is applied.
 */
export function checkBatch(partition: number, epoch: number, writes: BatchWrite[], audit: StoredAuditEvent[]): CheckedBatch {
  checkPartition(partition);
  checkUint(epoch, 'epoch');
  for (const w of writes) {
    checkId(w?.recordId, 'writes.recordId');
    if (!(w.blob instanceof Uint8Array) || w.blob.length > MAX_SEALED_RECORD) {
      throw invalid(`writes.blob: expected 0..${MAX_SEALED_RECORD} bytes`);
    }
  }
  const sorted = sortedById(writes);
  const events: Uint8Array[] = [];
  const seqs: number[] = [];
  const seqSeen = new Set<number>();
  let minSeq: number | null = null;
  for (const ev of audit) {
    checkUint(ev?.seq, 'audit.seq');
    if (!(ev.bytes instanceof Uint8Array) || ev.bytes.length !== AUDIT_EVENT_LEN) throw invalid(`audit.bytes: expected ${AUDIT_EVENT_LEN} bytes`);
    if (leadingSeq(ev.bytes) !== ev.seq) throw invalid('audit: the event does not carry its seq');
    if (seqSeen.has(ev.seq)) throw invalid('audit: two events with the same seq');
    seqSeen.add(ev.seq);
    events.push(ev.bytes);
    seqs.push(ev.seq);
    if (minSeq === null || ev.seq < minSeq) minSeq = ev.seq;
  }
  return { sorted, events, seqs, minSeq };
}

/** An audit event as applyBatch takes it (its encoding and seq), for callers that hold it decoded (tests, tools). */
export function storedAudit(ev: AuditEvent): StoredAuditEvent {
  return { seq: ev.seq, bytes: encodeFields(AuditEventSchema, ev) };
}

/** The checks of `compact`. */
export function checkCompact(partition: number, beforeEpoch: number): void {
  checkPartition(partition);
  checkUint(beforeEpoch, 'beforeEpoch');
}

/** The checks of `auditEvents`. */
export function checkAuditRange(partition: number, fromSeq: number, limit: number): void {
  checkPartition(partition);
  checkUint(fromSeq, 'fromSeq');
  checkUint(limit, 'limit');
}

/** A stored audit event read back: it must decode and carry the seq of its row (else Corrupt). */
export function decodeAuditRow(seq: number | string, bytes: Uint8Array): AuditEvent {
  let ev: AuditEvent;
  try {
    ev = decodeFields(AuditEventSchema, bytes, 'audit event');
  } catch (e) {
    throw new StorageError(StorageCode.Corrupt, `audit event ${seq} does not decode`, undefined, { cause: e });
  }
  if (String(ev.seq) !== String(seq)) throw new StorageError(StorageCode.Corrupt, `audit event ${seq} carries seq ${ev.seq}`);
  return ev;
}
