/**
 * The host side of one enclave partition: group commit over the batch protocol.
 *
 * Client operations (opaque HPKE ciphertexts for one record id each) queue up; while one batch
 * is with the enclave, the next one fills. For each batch the engine reads the stored blobs,
 * sends Batch, persists the enclave's writes and audit events in one storage transaction, sends
 * Commit, and only then hands each client its (still encrypted) response. Overlap (see
 * runBatch): when a batch is prepared and operations are waiting, the next batch (of records not
 * in the prepared one) goes to the enclave at once, which computes it while storage commits the
 * prepared one, and a Prepare right behind the Commit gives it its NVRAM intent; so the device
 * does not sit idle through the storage commit or a round trip through the host. A storage or commit
 * failure stops the engine: its clients get an error, nothing the enclave charged is released,
 * and the partition must reload (VaultHost restarts it) to learn which state storage is in.
 *
 * At start it streams every stored row to the enclave (LoadChunk/LoadEnd) so the enclave can
 * check them against its NVRAM before it serves anything.
 */
import { decodeMessage, encodeMessage } from '../../enclave/api/codec.ts';
import { EnclaveFault, Handling, PlatformFault as PlatformCodes, faultName } from '../../enclave/api/codes.ts';
import type { Device } from '../../enclave/api/device.ts';
import type { HostRequest, HostResponse, ResponseOf } from '../../enclave/api/messages.ts';
import { HOST_RESPONSE_OF, HostRequests, HostResponses, MAX_BATCH_OPS, MAX_LOAD_ENTRIES } from '../../enclave/api/messages.ts';
import { ChannelErrorCode } from '../channel/channel.ts';
import type { RecordStore } from '../storage/types.ts';
import { recordKey } from '../storage/types.ts';

export interface OpResult {
  /** true: `response` is the enclave's HPKE-sealed answer for the client. */
  sealed: boolean;
  response: Uint8Array;
}

interface Queued {
  recordId: Uint8Array;
  request: Uint8Array;
  resolve: (r: OpResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Byte fields of the enclave's answers taken as views into the answer (a buffer the channel gives
 * this engine alone and nobody writes) instead of one copy each: the sealed blobs go to storage,
 * which copies them, and the responses to their clients, read-only.
 */
const RESPONSE_VIEWS: ReadonlySet<string> = new Set(['writes.recordId', 'writes.blob', 'results.response']);

type Prepared = Extract<HostResponse, { type: 'Prepared' }>;

/** A batch sent to the enclave, its Prepared answer still to come. */
interface Started {
  batch: Queued[];
  epoch: number;
  prepared: Promise<Prepared>;
  t0: number;
}

export interface BatchStats {
  batches: number;
  ops: number;
  lastBatchSize: number;
}

/**
 * A call to the enclave that did not get its answer: `code` is the enclave's fault code
 * (enclave/api/codes.ts) for a Fault, or ChannelErrorCode.UnexpectedResponse for an answer its
 * request does not have.
 */
export class EnclaveCallError extends Error {
  override readonly name = 'EnclaveCallError';
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`${code === ChannelErrorCode.UnexpectedResponse ? 'UnexpectedResponse' : faultName(code)}: ${message}`);
  }
}

export class PartitionEngine {
  private queue: Queued[] = [];
  private running = false;
  private epoch = 0;
  private closed = false;
  readonly stats: BatchStats = { batches: 0, ops: 0, lastBatchSize: 0 };
  /** Called after each committed batch (metrics hooks). */
  onBatch?: (size: number, ms: number) => void;

  constructor(
    private readonly device: Device,
    private readonly store: RecordStore,
    readonly partition: number,
    private readonly maxQueue = 10_000,
  ) {}

  /**
   * One request to the enclave and its answer, typed by the request (messages.ts ResponseOf) and
   * checked at run time: a Fault, or an answer the request does not have (or not `expect`, when
   * given), throws EnclaveCallError. The encoded request is this call's own: it crosses to the
   * device without a copy (RequestOptions.transfer), and the answer's bytes come back the same way.
   */
  async call<R extends HostRequest, T extends ResponseOf<R>['type'] = ResponseOf<R>['type']>(req: R, expect?: T): Promise<Extract<ResponseOf<R>, { type: T }>> {
    const res = decodeMessage(HostResponses, await this.device.request(encodeMessage(HostRequests, req), { transfer: true }), { views: RESPONSE_VIEWS });
    if (res.type === 'Fault') throw new EnclaveCallError(res.code, new TextDecoder().decode(res.message));
    const allowed: readonly string[] = expect === undefined ? HOST_RESPONSE_OF[req.type] : [expect];
    if (!allowed.includes(res.type)) throw new EnclaveCallError(ChannelErrorCode.UnexpectedResponse, `${req.type} answered ${res.type}, not ${allowed.join(' or ')}`);
    return res as Extract<ResponseOf<R>, { type: T }>;
  }

  /** Boots the partition: Info, then the full load. Returns the enclave's info. */
  async start(): Promise<ResponseOf<{ type: 'Info' }>> {
    for await (const chunk of this.store.scan(this.partition, MAX_LOAD_ENTRIES)) {
      await this.call({
        type: 'LoadChunk',
        entries: chunk.map((r) => ({ recordId: r.recordId, blob: r.blob })),
      });
    }
    const loaded = await this.call({ type: 'LoadEnd' });
    this.epoch = loaded.epoch;
    return this.call({ type: 'Info' });
  }

  /** Queues one client operation; resolves when its batch is durable. */
  submit(recordId: Uint8Array, request: Uint8Array): Promise<OpResult> {
    if (this.closed) return Promise.reject(new Error('partition engine closed'));
    if (this.failed) return Promise.reject(this.failed);
    if (this.queue.length >= this.maxQueue) return Promise.reject(new Error('partition queue full'));
    return new Promise((resolve, reject) => {
      this.queue.push({ recordId, request, resolve, reject });
      if (!this.running) {
        // An idle engine starts its batch on the next turn of the event loop, not at the first
        // operation: the operations that arrive in this turn (clients whose answers were just
        // released resubmit together) go in one batch instead of a batch of one and a second
        // batch of the rest, each paying a batch's NVRAM writes and storage commit.
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      let next: Started | undefined;
      while (!this.failed) {
        if (!next) {
          if (!this.queue.length) break;
          next = this.sendBatch(this.queue.splice(0, MAX_BATCH_OPS), this.epoch + 1);
        }
        next = await this.runBatch(next);
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * Up to MAX_BATCH_OPS queued operations whose records are not in `cur` (taken out of the queue,
   * in order); the others keep their places.
   */
  private takeDisjoint(cur: Queued[]): Queued[] {
    const busy = new Set<string>();
    for (const q of cur) busy.add(recordKey(q.recordId));
    const take: Queued[] = [];
    const keep: Queued[] = [];
    for (const q of this.queue) {
      if (take.length < MAX_BATCH_OPS && !busy.has(recordKey(q.recordId))) take.push(q);
      else keep.push(q);
    }
    this.queue = keep;
    return take;
  }

  private ops(batch: Queued[], stored: Map<string, { blob: Uint8Array }>) {
    return batch.map((q, i) => ({
      opId: i,
      recordId: q.recordId,
      stored: stored.get(recordKey(q.recordId))?.blob ?? new Uint8Array(0),
      request: q.request,
    }));
  }

  /** Reads the batch's stored blobs and sends it to the enclave (the answer comes later). */
  private sendBatch(batch: Queued[], epoch: number): Started {
    const prepared = this.prepare(batch, epoch);
    prepared.catch(() => {}); // awaited by runBatch; never an unhandled rejection meanwhile
    return { batch, epoch, prepared, t0: performance.now() };
  }

  private async prepare(batch: Queued[], epoch: number): Promise<Prepared> {
    const stored = await this.store.getMany(this.partition, batch.map((q) => q.recordId));
    return this.call({ type: 'Batch', epoch, ops: this.ops(batch, stored) }, 'Prepared');
  }

  /**
   * One batch: its Prepared answer, the storage transaction, Commit, then its clients' answers.
   * Pipelining: once the batch is durable in storage, the next batch (what queued meanwhile) is
   * read from storage and sent right behind the Commit, so the device starts on it without
   * waiting for the host to see Committed first. The enclave takes them in order and refuses a
   * Batch while one is pending or out of epoch order, so if the Commit fails the batch behind it
   * fails too (both batches' clients get the error and the partition reloads, as for a failed
   * Commit alone). Returns that next batch, if one was started.
   */
  private async runBatch(cur: Started): Promise<Started | undefined> {
    const { batch } = cur;
    let epoch = cur.epoch;
    let prepared: Prepared;
    try {
      try {
        prepared = await cur.prepared;
      } catch (e) {
        // Someone else (an operator tool) committed a batch: learn the epoch and try once more.
        if (!(e instanceof EnclaveCallError) || e.code !== Handling.BatchOutOfOrder) throw e;
        this.epoch = (await this.call({ type: 'Info' })).epoch;
        epoch = this.epoch + 1;
        prepared = await this.prepare(batch, epoch);
      }
    } catch (e) {
      // The enclave could not write its NVRAM intent: it needs a reload before it serves again.
      if (e instanceof EnclaveCallError && e.code === PlatformCodes.NvramError) {
        this.fail(batch, e);
        return undefined;
      }
      for (const q of batch) q.reject(e);
      return undefined;
    }
    // Overlap: the next batch goes to the enclave now, before this one is persisted, so the device
    // computes it while storage commits (the enclave stages it and prepares it after this Commit).
    // Its ops may not name a record of this batch (the enclave refuses that): those wait for the
    // batch after. Its stored blobs are read before this batch is persisted, which is why.
    let take: Queued[] = [];
    let t1 = 0;
    // The next batch's Staged answer (`staged`), or why it was not sent (`unsent`).
    let staged: Promise<unknown> | undefined;
    let unsent: Promise<never> | undefined;
    if (this.queue.length && !this.closed) {
      take = this.takeDisjoint(batch);
      if (take.length) {
        t1 = performance.now();
        try {
          const stored = await this.store.getMany(this.partition, take.map((q) => q.recordId));
          // Sent before this batch's Commit, so the device takes it first (answers come in order).
          staged = this.call({ type: 'Batch', epoch: epoch + 1, ops: this.ops(take, stored) }, 'Staged');
          staged.catch(() => {}); // awaited by runBatch; never an unhandled rejection meanwhile
        } catch (e) {
          unsent = Promise.reject(e);
          unsent.catch(() => {});
        }
      }
    }
    // One write per record: the enclave sends each record's last version in the batch only.
    try {
      await this.store.applyBatch(this.partition, epoch, prepared.writes, prepared.audit);
    } catch (e) {
      // A failed commit may still have been applied (a lost connection, an fsync error). Only a
      // reload settles it: the enclave keeps the batch's intent in NVRAM and, at load, accepts
      // storage at its committed state or at that intent. So no Abort (a new batch would replace
      // the intent): this engine stops, and the partition restarts.
      this.fail([...batch, ...take], e);
      return undefined;
    }
    const commit = this.call({ type: 'Commit', epoch });
    commit.catch(() => {});
    let follow: Started | undefined;
    if (staged) {
      // Right behind the Commit: the staged batch's intent, then its Prepared.
      const prepare = this.call({ type: 'Prepare', epoch: epoch + 1 });
      prepare.catch(() => {});
      const next = staged.then(() => prepare);
      next.catch(() => {});
      follow = { batch: take, epoch: epoch + 1, prepared: next, t0: t1 };
    } else if (unsent) {
      // (A follow whose reads failed is not sent: runBatch hands its clients the error.)
      follow = { batch: take, epoch: epoch + 1, prepared: unsent, t0: t1 };
    } else if (this.queue.length && !this.closed) {
      // The batch is durable in storage: the next one's reads see it. Sent after the Commit.
      follow = this.sendBatch(this.queue.splice(0, MAX_BATCH_OPS), epoch + 1);
    }
    let committed: Awaited<typeof commit>;
    try {
      committed = await commit;
    } catch (e) {
      // The batch is in storage; the enclave's NVRAM may not say so: the same reload settles it.
      this.fail(follow ? [...batch, ...follow.batch] : batch, e);
      return undefined;
    }
    this.epoch = epoch;
    for (const r of committed.results) batch[r.opId]?.resolve({ sealed: r.sealed === 1, response: r.response });
    this.stats.batches++;
    this.stats.ops += batch.length;
    this.stats.lastBatchSize = batch.length;
    this.onBatch?.(batch.length, performance.now() - cur.t0);
    return follow;
  }

  /** Set when a batch ended in an unknown state: the engine refuses work until its partition reloads. */
  failed: unknown = null;
  /** Called once when the engine stops on such a failure (the host restarts the partition). */
  onFailure?: (e: unknown) => void;

  private fail(batch: Queued[], e: unknown): void {
    this.failed ??= e;
    for (const q of batch) q.reject(e);
    for (const q of this.queue.splice(0)) q.reject(e);
    this.onFailure?.(e);
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.running) await new Promise((r) => setTimeout(r, 5));
  }
}

export { EnclaveFault };
