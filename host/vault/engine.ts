/**
 * The host side of one enclave partition: group commit over the batch protocol.
 *
 * Client operations (opaque HPKE ciphertexts for one record id each) queue up; while one batch
 * is with the enclave, the next one fills. For each batch the engine reads the stored blobs,
 * sends Batch, persists the enclave's writes and audit events in one storage transaction, sends
 * Commit, and only then hands each client its (still encrypted) response. Overlap (the rule:
 * overlap.ts; the sequence: runBatch): when a batch is prepared and operations are waiting, the
 * next batch (of records not in the prepared one) goes to the enclave at once, which computes it
 * while storage commits the prepared one, and a Prepare right behind the Commit gives it its
 * NVRAM intent, with the batch after it staged right behind that Prepare; so the device does not
 * sit idle through the storage commit or a round trip through the host. A storage or commit
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
import { HOST_RESPONSE_OF, HOST_RESPONSE_VIEWS, HostRequests, HostResponses, MAX_BATCH_OPS, MAX_LOAD_ENTRIES } from '../../enclave/api/messages.ts';
import { ChannelErrorCode } from '../channel/channel.ts';
import type { RecordStore } from '../storage/types.ts';
import { recordKey } from '../storage/types.ts';
import { planNext, planStaged } from './overlap.ts';
import type { Taken } from './overlap.ts';

export interface OpResult {
  /** true: `response` is the enclave's HPKE-sealed answer for the client. */
  sealed: boolean;
  response: Uint8Array;
}

interface Queued {
  recordId: Uint8Array;
  /** recordKey(recordId), computed once per op at submit: the overlap planner's key. */
  key: string;
  request: Uint8Array;
  resolve: (r: OpResult) => void;
  reject: (e: unknown) => void;
}

type Prepared = Extract<HostResponse, { type: 'Prepared' }>;

/** A batch sent to the enclave, its Prepared answer still to come. */
interface Started {
  batch: Queued[];
  epoch: number;
  prepared: Promise<Prepared>;
  t0: number;
  /** The batch staged behind it right behind its Prepare (overlap.ts rule 2), before its Prepared came. */
  behind?: Staging;
}

/** A batch staged behind a prepared one (overlap.ts rule 1): the device's Staged answer, or (null) why it was not sent. */
interface Staging {
  batch: Queued[];
  epoch: number;
  t0: number;
  answer: Promise<unknown> | null;
  error?: unknown;
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
    /** Ops per batch (a fleet member's batch is one log entry: enclave/fleet/codec.ts MAX_OPS_PER_ENTRY). */
    private readonly maxBatchOps = MAX_BATCH_OPS,
    /**
     * Stage a second batch right behind the staged one's Prepare (overlap.ts rule 2). A fleet
     * member does not: its batches are log entries replicated to every peer, and two deep makes
     * about half as many again, each a round trip, and a member copied a few seconds back that
     * many more entries behind.
     */
    private readonly twoDeep = true,
  ) {}

  /**
   * One request to the enclave and its answer, typed by the request (messages.ts ResponseOf) and
   * checked at run time: a Fault, or an answer the request does not have (or not `expect`, when
   * given), throws EnclaveCallError. The encoded request is this call's own: it crosses to the
   * device without a copy (RequestOptions.transfer), and the answer's bytes come back the same way.
   */
  async call<R extends HostRequest, T extends ResponseOf<R>['type'] = ResponseOf<R>['type']>(req: R, expect?: T): Promise<Extract<ResponseOf<R>, { type: T }>> {
    const res = decodeMessage(HostResponses, await this.device.request(encodeMessage(HostRequests, req), { transfer: true }), { views: HOST_RESPONSE_VIEWS });
    if (res.type === 'Fault') throw new EnclaveCallError(res.code, new TextDecoder().decode(res.message));
    const allowed: readonly string[] = expect === undefined ? HOST_RESPONSE_OF[req.type] : [expect];
    if (!allowed.includes(res.type)) throw new EnclaveCallError(ChannelErrorCode.UnexpectedResponse, `${req.type} answered ${res.type}, not ${allowed.join(' or ')}`);
    return res as Extract<ResponseOf<R>, { type: T }>;
  }

  /**
   * Boots the partition: Info, then the full load. Returns the enclave's info. `onLoaded` is
   * told, after each chunk the enclave took, how many stored records (rows with a blob) it held.
   */
  async start(onLoaded?: (records: number) => void): Promise<ResponseOf<{ type: 'Info' }>> {
    for await (const chunk of this.store.scan(this.partition, MAX_LOAD_ENTRIES)) {
      await this.call({
        type: 'LoadChunk',
        entries: chunk.map((r) => ({ recordId: r.recordId, blob: r.blob })),
      });
      onLoaded?.(chunk.reduce((n, r) => n + (r.blob.length > 0 ? 1 : 0), 0));
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
      this.queue.push({ recordId, key: recordKey(recordId), request, resolve, reject });
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
          next = this.sendBatch(this.take(planNext(this.queue, this.maxBatchOps)), this.epoch + 1);
        }
        next = await this.runBatch(next);
      }
    } finally {
      this.running = false;
    }
  }

  /** Takes a plan's batch out of the queue (overlap.ts decides which ops). */
  private take(plan: Taken<Queued>): Queued[] {
    this.queue = plan.rest;
    return plan.batch;
  }

  /** Whether another batch may be sent now: operations wait and the engine is not closing. */
  private canSend(): boolean {
    return this.queue.length > 0 && !this.closed;
  }

  /** The Batch ops of `batch`; `stored` is getMany's answer for its ids, aligned with it (no row: an empty blob). */
  private ops(batch: Queued[], stored: readonly ({ blob: Uint8Array } | undefined)[]) {
    return batch.map((q, i) => ({
      opId: i,
      recordId: q.recordId,
      stored: stored[i]?.blob ?? new Uint8Array(0),
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
   * One batch through the commit rule, overlapped with the batches behind it (overlap.ts): its
   * Prepared; the batch behind it staged (rule 1), unless one was staged right behind its Prepare
   * (rule 2); its writes and audit events persisted in one storage transaction; Commit; the batch
   * behind it prepared or sent right behind the Commit (rules 2, 3), and the next one staged
   * right behind that Prepare (rule 2); Committed, and only then its clients' answers. Returns
   * the batch behind it, if one was sent. A failure past Prepared stops the engine (rule 4).
   */
  private async runBatch(cur: Started): Promise<Started | undefined> {
    const ready = await this.awaitPrepared(cur);
    if (!ready) {
      await this.requeueStray(cur.behind);
      return undefined;
    }
    const { prepared, epoch } = ready;
    // The batch behind it: staged already, right behind its Prepare (rule 2), unless that Prepare
    // failed (awaitPrepared's retry: the device refused what came behind it, whose ops go back to
    // the queue); or staged now (rule 1), half of what may go when nothing is staged behind it, so
    // that the other half can go right behind its Prepare.
    const early = cur.behind && !ready.retried ? cur.behind : undefined;
    if (cur.behind && !early) await this.requeueStray(cur.behind);
    const staged = early ?? (this.canSend() ? await this.stage(cur.batch, epoch + 1, this.twoDeep) : undefined);
    try {
      await this.store.applyBatch(this.partition, epoch, prepared.writes, prepared.audit);
    } catch (e) {
      // A failed commit may still have been applied (a lost connection, an fsync error). Only a
      // reload settles it: the enclave keeps the batch's intent in NVRAM and, at load, accepts
      // storage at its committed state or at that intent. So no Abort (a new batch would replace
      // the intent): this engine stops, and the partition restarts.
      this.fail([...cur.batch, ...(staged?.batch ?? [])], e);
      return undefined;
    }
    const commit = this.call({ type: 'Commit', epoch });
    commit.catch(() => {});
    // The batch behind it, right behind the Commit: the staged one's Prepare (rule 2), or a new one (rule 3).
    const follow = staged ? this.prepareStaged(staged) : this.canSend() ? this.sendBatch(this.take(planNext(this.queue, this.maxBatchOps)), epoch + 1) : undefined;
    // And right behind that Prepare, the next batch staged behind the staged one (rule 2): its
    // reads see this batch's writes (persisted above), and the device has work queued through
    // the round trip to the host that a Prepared would otherwise cost.
    if (this.twoDeep && follow && staged && staged.answer && this.canSend()) follow.behind = await this.stage(staged.batch, staged.epoch + 1);
    let committed: Awaited<typeof commit>;
    try {
      committed = await commit;
    } catch (e) {
      // The batch is in storage; the enclave's NVRAM may not say so: the same reload settles it.
      this.fail([...cur.batch, ...(follow?.batch ?? []), ...(follow?.behind?.batch ?? [])], e);
      return undefined;
    }
    this.epoch = epoch;
    for (const r of committed.results) cur.batch[r.opId]?.resolve({ sealed: r.sealed === 1, response: r.response });
    this.stats.batches++;
    this.stats.ops += cur.batch.length;
    this.stats.lastBatchSize = cur.batch.length;
    this.onBatch?.(cur.batch.length, performance.now() - cur.t0);
    return follow;
  }

  /**
   * A batch staged right behind the Prepare of a batch that did not become pending by it: the
   * device refused it with a Fault (it stages a batch only behind the pending one), so nothing of
   * it ran and its ops go back to the front of the queue; if its reads had failed, or its answer
   * did not come, its clients get that error. Had the device taken it, the engine stops (a reload
   * settles the state).
   */
  private async requeueStray(s: Staging | undefined): Promise<void> {
    if (!s) return;
    let taken = false;
    let refusal: unknown = s.error;
    if (s.answer) {
      try {
        await s.answer;
        taken = true;
      } catch (e) {
        refusal = e;
      }
    }
    if (this.failed) for (const q of s.batch) q.reject(this.failed);
    else if (taken) this.fail(s.batch, new EnclaveCallError(ChannelErrorCode.UnexpectedResponse, `batch ${s.epoch} was staged behind a batch that did not become pending`));
    // The device's Fault: nothing of it ran. Anything else (its reads failed, the channel) reaches its clients.
    else if (refusal instanceof EnclaveCallError && refusal.code !== ChannelErrorCode.UnexpectedResponse) this.queue = [...s.batch, ...this.queue];
    else for (const q of s.batch) q.reject(refusal);
  }

  /**
   * The batch's Prepared and its epoch (`retried`: sent again as a new Batch after the device
   * refused it); undefined when it has none (its clients got the error).
   */
  private async awaitPrepared(cur: Started): Promise<{ prepared: Prepared; epoch: number; retried: boolean } | undefined> {
    try {
      try {
        return { prepared: await cur.prepared, epoch: cur.epoch, retried: false };
      } catch (e) {
        // Someone else (an operator tool) committed a batch: learn the epoch and try once more.
        if (!(e instanceof EnclaveCallError) || e.code !== Handling.BatchOutOfOrder) throw e;
        this.epoch = (await this.call({ type: 'Info' })).epoch;
        const epoch = this.epoch + 1;
        return { prepared: await this.prepare(cur.batch, epoch), epoch, retried: true };
      }
    } catch (e) {
      // The enclave could not write its NVRAM intent: it needs a reload before it serves again.
      if (e instanceof EnclaveCallError && e.code === PlatformCodes.NvramError) this.fail(cur.batch, e);
      else for (const q of cur.batch) q.reject(e);
      return undefined;
    }
  }

  /**
   * Rules 1 and 2: the batch staged behind the batch `ahead` (prepared, or its Prepare just sent),
   * its stored blobs read and sent now, before `ahead` is persisted (the device takes requests in
   * order). `half`: only the first half of the ops that may go (overlap.ts planStaged).
   * Undefined when no queued op may go.
   */
  private async stage(ahead: Queued[], epoch: number, half = false): Promise<Staging | undefined> {
    const batch = this.take(planStaged(ahead, this.queue, this.maxBatchOps, half));
    if (!batch.length) return undefined;
    const t0 = performance.now();
    try {
      const stored = await this.store.getMany(this.partition, batch.map((q) => q.recordId));
      const answer = this.call({ type: 'Batch', epoch, ops: this.ops(batch, stored) }, 'Staged');
      answer.catch(() => {}); // awaited through prepareStaged; never an unhandled rejection meanwhile
      return { batch, epoch, t0, answer };
    } catch (error) {
      return { batch, epoch, t0, answer: null, error };
    }
  }

  /**
   * Rule 2: right behind Commit, the staged batch's Prepare; its Prepared comes as a Batch's
   * would. A batch that was not sent (its reads failed) gets no Prepare: its clients get the
   * error when runBatch comes to it.
   */
  private prepareStaged(s: Staging): Started {
    let prepared: Promise<Prepared>;
    if (s.answer) {
      const prepare = this.call({ type: 'Prepare', epoch: s.epoch });
      prepare.catch(() => {});
      prepared = s.answer.then(() => prepare);
    } else {
      prepared = Promise.reject(s.error);
    }
    prepared.catch(() => {});
    return { batch: s.batch, epoch: s.epoch, prepared, t0: s.t0 };
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
