/**
 * One operation of a batch, start to end: its envelope opened, decoded and its issuer token
 * checked (`admit`, a pre-pass over the whole batch), then (`computeOp`) the partition check, the
 * stored record checked against the rollback index and unsealed (or this batch's own later
 * version of it), the rules (ops.ts), the new version sealed with its index leaf, the audit
 * events chained, and the answer sealed to the client. What an op produces goes into the batch's
 * `Effects`, which only batch.ts hands on: nothing here sends anything out of the enclave.
 */
import { EnclaveFault, Handling, Integrity, PlatformFault as PlatformCodes } from '../api/codes.ts';
import { decodeMessage, encodeMessage } from '../api/codec.ts';
import type { TokenVerifier } from '../api/auth-verify.ts';
import type { ClientRequest, HostRequest, StoredAuditEvent } from '../api/messages.ts';
import { CLIENT_REQUEST_VIEWS, ClientRequests, ClientResponses, DEFAULT_OPAQUE_CONTEXT } from '../api/messages.ts';
import type { RandomSource } from '../opaque/bytes.ts';
import { ctEqual } from '../opaque/bytes.ts';
import { OpaqueError } from '../opaque/errors.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import type { Suite, SuiteId } from '../opaque/suite.ts';
import type { Platform } from '../platform.ts';
import { TokenError } from '../token.ts';
import type { AuditLog } from './audit.ts';
import { digestOf } from './digest.ts';
import { openRequestSync } from './e2e-open.ts';
import type { E2eReceiver } from './e2e-open.ts';
import type { EnclaveKeys } from './keys.ts';
import { handle } from './ops.ts';
import type { OpContext } from './ops.ts';
import type { RecordIndex } from './record-index.ts';
import { KIND_RECORD, KIND_TOMBSTONE, parseHeader, seal, unseal, zeroizeRecord } from './record.ts';
import type { VaultRecord } from './record.ts';
import type { VaultTables } from './sessions.ts';
import { changeOp, fleetChangeOf } from './fleet-change.ts';
import { batchBytes } from './arena.ts';
import type { ChangeOp } from './fleet-change.ts';

const te = new TextEncoder();

/** What a loaded vault works with (vault.ts makes it at LoadEnd; fixed until a reload or zeroization). */
export interface VaultParts {
  readonly p: Platform;
  readonly keys: EnclaveKeys;
  readonly index: RecordIndex;
  readonly sha256: HashPrimitives;
  readonly audit: AuditLog;
  readonly tables: VaultTables;
  readonly suites: Map<SuiteId, Suite>;
  readonly rng: RandomSource;
}

export type BatchRequest = Extract<HostRequest, { type: 'Batch' }>;
type BatchOp = BatchRequest['ops'][number];

/** A record as a batch left it: its content, version and index leaf, and its sealed blob (the one write the host gets for it). */
export interface Written {
  recordId: Uint8Array;
  /** Its index key (RecordIndex.keyOf). */
  key: Uint8Array;
  record: VaultRecord | null;
  version: number;
  leaf: Uint8Array | null;
  blob: Uint8Array;
}

/** What the ops of one batch have done so far. batch.ts holds it until the batch's Commit or Abort. */
export interface Effects {
  epoch: number;
  /** By record id (hex): the record after the batch's ops so far. */
  overlay: Map<string, Written>;
  /** Every record id (hex) an op of this batch named, written or not. */
  touched: Set<string>;
  /** Its audit events, encoded once (audit.ts) and carried as they are to the host's store. */
  audit: StoredAuditEvent[];
  /** The audit chain after the batch's last event. */
  auditSeq: number;
  auditHead: Uint8Array;
  /** One answer per op, sealed to its client (plain only when the envelope did not open). */
  results: { opId: number; sealed: number; response: Uint8Array }[];
  /** A fleet member's batch: each write's change, in op order, for the fleet's log (fleet-change.ts); absent otherwise. */
  changes?: ChangeOp[];
}

type Opened = ReturnType<typeof openRequestSync>;
/**
 * A batch op's request after the pre-pass: opened, decoded and authorized, or the error to answer
 * with (`sealResponse` present when the envelope opened, so that the answer is sealed).
 */
export type Admitted = { request: ClientRequest; sealResponse: Opened['sealResponse'] } | { error: unknown; sealResponse?: Opened['sealResponse'] };

/** openRequestSync, with its error as a value (thrown later, where the op would have opened it). */
function openOrError(r: E2eReceiver, recordId: Uint8Array, message: Uint8Array, rng: RandomSource): Opened | { error: unknown } {
  try {
    return openRequestSync(r, recordId, message, rng, batchBytes.alloc);
  } catch (error) {
    return { error };
  }
}

/**
 * Opens, decodes and authorizes every request of a batch before any of them runs: the issuer's
 * token of each is checked (api/auth-verify.ts, against the platform clock) here, so no op whose
 * token fails reaches a handler, and nothing is charged, changed or revealed for it. The
 * requests are opened one after another first, so that X25519 (and, on the node:crypto
 * fallback, its key import), the key schedule and AES-GCM stay warm in the caches (interleaved
 * with OPAQUE's group operations the key import costs more: bench/README.md). Errors are
 * values: computeOp throws each after the op's partition check and before its stored record is
 * read.
 */
export async function admit(v: VaultParts, verifier: TokenVerifier, req: BatchRequest): Promise<Admitted[]> {
  const now = v.p.now();
  const opened = req.ops.map((op) => openOrError(v.keys.e2e, op.recordId, op.request, v.rng));
  // The token checks are synchronous (checkNow): no promise per op.
  return opened.map((o, i): Admitted => {
    if ('error' in o) return o;
    try {
      const request = decodeMessage(ClientRequests, o.request, { views: CLIENT_REQUEST_VIEWS });
      verifier.checkNow(request.auth, req.ops[i]!.recordId, now);
      return { request, sealResponse: o.sealResponse };
    } catch (error) {
      return { error, sealResponse: o.sealResponse };
    }
  });
}

/** Partition of a record id from SHA-256(id): its first 4 bytes, big-endian, mod partitions. */
export function partitionOfHash(h: Uint8Array, partitions: number): number {
  return (((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0) % partitions;
}

/**
 * One op of batch `fx`, against the committed index and the batch's earlier ops (`fx.overlay`);
 * `idHex`: its record id as lower-case hex (batch.ts computes it once per op). Its answer, its
 * write and its audit events go into `fx`. A failing op answers with its fault and leaves
 * nothing in the tables (what it wrote to `fx.overlay` before failing stays).
 */
export function computeOp(v: VaultParts, fx: Effects, op: BatchOp, idHex: string, adm: Admitted, now: number, minPacing: number): void {
  fx.touched.add(idHex);
  // Every answer to a request whose envelope opened is sealed, faults included: the client
  // takes nothing unsealed as an outcome, and the host learns no more than the fault's length.
  const sealResponse = adm.sealResponse ?? null;
  v.tables.opStart();
  try {
    // SHA-256(id) once: the partition, and the index key (RecordIndex.keyOf).
    const idHash = digestOf(v.sha256, op.recordId);
    if (partitionOfHash(idHash, v.p.partitions) !== v.p.partition) {
      throw new EnclaveFault(Integrity.IndexMismatch, 'record belongs to another partition', 'recordId');
    }
    // A request that did not open, decode or pass its token check is refused before its
    // stored record is read: a stranger's refusal costs the same for a registered id and an
    // unknown one.
    if ('error' in adm) throw adm.error;
    const key = idHash.slice(0, 16); // a copy: a view of a small array would give it an ArrayBuffer (bytes.ts latin1Key)
    const { record: current, version } = currentRecord(v, fx.overlay, op.recordId, key, idHex, op.stored);
    const ctx: OpContext = {
      now,
      rng: v.rng,
      recordId: op.recordId,
      idHex,
      current,
      suites: v.suites,
      keys: v.keys,
      opaqueContext: v.p.opaqueContext ?? DEFAULT_OPAQUE_CONTEXT,
      stages: v.tables.stages,
      sessions: v.tables.sessions,
      authSessions: v.tables.authSessions,
      minPacing,
    };
    const result = handle(ctx, adm.request);
    if (result.write !== undefined) {
      const rec = result.write === 'delete' ? null : result.write;
      if (fx.changes) {
        // A fleet member replicates only what the fleet's rules allow (docs/fleet-vault.md).
        const change = fleetChangeOf(current, rec);
        if (change === null) throw new EnclaveFault(Handling.ApplyRefused, 'the write is no change the fleet rules allow', 'recordId');
        fx.changes.push(changeOp(op.recordId, change, version));
      }
      const suite = rec ? rec.suite : (current?.suite ?? 0);
      const blob = seal(v.p.token, v.keys.seal, op.recordId, { kind: rec ? KIND_RECORD : KIND_TOMBSTONE, suite, epoch: fx.epoch, version: version + 1 }, rec, v.rng, batchBytes.alloc);
      // The record's later ops read this version; the host gets only its last blob (batch.ts).
      fx.overlay.set(idHex, { recordId: op.recordId, key, record: rec, version: version + 1, leaf: rec ? v.index.leafOf(op.recordId, blob) : null, blob });
    }
    if (result.mirror) mirrorWrite(v, op.recordId, fx.epoch);
    const rh = result.audit.length ? v.audit.recordHash(op.recordId) : null;
    for (const a of result.audit) {
      const ev = v.audit.next(fx.auditSeq, fx.auditHead, now, v.audit.drawNonce(v.rng), a.kind, rh!, a.attemptsRemaining, batchBytes.alloc);
      fx.auditSeq = ev.seq;
      fx.auditHead = ev.mac;
      fx.audit.push({ seq: ev.seq, bytes: ev.bytes });
    }
    // The answer in plain (a LoginFinish's holds the backup key) is wiped once sealed.
    const plain = encodeMessage(ClientResponses, result.response, batchBytes.alloc);
    const response = adm.sealResponse(plain);
    plain.fill(0);
    fx.results.push({ opId: op.opId, sealed: 1, response });
  } catch (e) {
    v.tables.opFailed(); // what the op put in the tables goes with it
    const f = toFault(e);
    const plain = encodeMessage(ClientResponses, { type: 'Fault', code: f.code, field: te.encode((f.field ?? '').slice(0, 64)) }, batchBytes.alloc);
    if (sealResponse) fx.results.push({ opId: op.opId, sealed: 1, response: sealResponse(plain) });
    else fx.results.push({ opId: op.opId, sealed: 0, response: plain });
  }
}

/** A throwaway record of the largest size: what the fake path seals and opens. */
const MIRROR_RECORD: VaultRecord = {
  status: 1,
  suite: 1,
  attemptLimit: 10,
  attemptsUsed: 0,
  registrationId: new Uint8Array(16),
  ksf: new Uint8Array(32),
  opaqueRecord: new Uint8Array(192),
  backupKey: new Uint8Array(32),
  registeredAt: 0,
  pacing: 0,
  lastGuessAt: 0,
};

/**
 * The token work a registered id's login does on its record, done for an unknown id on a
 * throwaway one and dropped: the stored blob's leaf and opening (currentRecord), the new blob's
 * sealing and leaf (computeOp). Nothing is written or kept.
 */
function mirrorWrite(v: VaultParts, recordId: Uint8Array, epoch: number): void {
  const blob = seal(v.p.token, v.keys.seal, recordId, { kind: KIND_RECORD, suite: 1, epoch, version: 1 }, MIRROR_RECORD, v.rng, batchBytes.alloc);
  v.index.leafOf(recordId, blob);
  const { record } = unseal(v.p.token, v.keys.seal, recordId, blob, batchBytes.alloc);
  if (record) zeroizeRecord(record);
  v.index.leafOf(recordId, blob);
}

/** The record an op works on: this batch's version of it, or the stored blob checked against the index (rollback); apply.ts reads a follower's the same way. */
export function currentRecord(v: VaultParts, overlay: Effects['overlay'], recordId: Uint8Array, key: Uint8Array, idHex: string, stored: Uint8Array): { record: VaultRecord | null; version: number } {
  const o = overlay.get(idHex);
  if (o) return { record: o.record ? { ...o.record } : null, version: o.version };
  const expected = v.index.getByKey(key);
  if (expected) {
    if (stored.length === 0 || !ctEqual(v.index.leafOf(recordId, stored), expected)) {
      throw new EnclaveFault(Integrity.RollbackDetected, 'stored record is not the current version', 'stored');
    }
    const { header, record } = unseal(v.p.token, v.keys.seal, recordId, stored, batchBytes.alloc);
    if (!record) throw new EnclaveFault(Integrity.SealedRecordInvalid, 'stored record does not open', 'stored');
    return { record, version: header.version };
  }
  // No live record: a tombstone (or nothing). Its version keeps numbering monotonic.
  let version = 0;
  if (stored.length > 0) {
    try {
      version = parseHeader(stored).version;
    } catch {
      version = 0;
    }
  }
  return { record: null, version };
}

/** Any exception as the typed fault the enclave answers with (an op's, or the device's at its boundary, main.ts). */
export function toFault(e: unknown): EnclaveFault {
  if (e instanceof EnclaveFault) return e;
  if (e instanceof OpaqueError) return new EnclaveFault(e.code, e.message, e.field);
  if (e instanceof TokenError) return new EnclaveFault(PlatformCodes.TokenError, `token: ${e.ckr}`);
  return new EnclaveFault(Handling.BadPayload, 'internal error');
}
