/**
 * The engine's overlap rule: what may go to the device while a batch waits for storage.
 *
 * A batch e is *prepared* once the device answered Prepared (its intent, with every guess it
 * charged, is in NVRAM; no answer has left). The host then persists its writes and sends
 * Commit(e); only Committed releases the answers (enclave/vault/batch.ts: a guess is charged
 * durably before KE2 leaves). Meanwhile the queue goes on filling, and:
 *
 *   1. Before e is persisted, a batch e+1 may be *staged*: sent to the device, computed, held
 *      there with no NVRAM write and no answer. Only ops whose record batch e does not name may be
 *      in it (the device refuses the whole batch otherwise): its stored blobs are read before e
 *      is persisted, and it must see exactly what it would see after Commit(e). Queue order is
 *      kept; an op on a record of e keeps its place for a later batch. At most MAX_BATCH_OPS.
 *      With nothing staged behind e yet, the engine stages the first half of the ops that may
 *      go, so that the other half can go by rule 2 (all of them when it stages one deep).
 *   2. A staged batch e+1 is prepared (its Prepare sent) right behind Commit(e), never before it.
 *      Right behind that Prepare, a batch e+2 may be staged behind e+1 on rule 1's terms (no op
 *      on a record of e+1; its reads made then, after e is persisted): the device takes it once
 *      the Prepare made e+1 pending. If that Prepare failed, the device refused e+2 and its ops
 *      go back to the front of the queue. So the device holds its next batch when it finishes
 *      one, instead of idling through a round trip to the host (e's answers, its clients' next
 *      operations, their reads): a median 0.7-0.8 ms and a mean 1.2-1.3 ms per batch of about
 *      50 logins, measured (bench/README.md, 2026-12-06 (night)).
 *      A fleet member's engine stages one deep (engine.ts `twoDeep`): its batches are log entries.
 *   3. With nothing staged, once e is durable in storage the next batch (any queued ops, their
 *      reads now see e) is sent right behind Commit(e), without waiting for Committed.
 *   4. A batch sent behind e shares e's fate: if e's storage commit or its Commit fails, both
 *      batches' clients get the error and the partition reloads (engine.ts); so do those of a
 *      batch staged behind that one.
 *
 * This file decides which ops (rules 1 to 3); engine.ts runs the sequence.
 */
import { MAX_BATCH_OPS } from '../../enclave/api/messages.ts';

/** A queued op as the planner sees it: its record's key (lower-case hex of the id, computed once at submit). */
export interface Keyed {
  readonly key: string;
}

/** What a plan takes out of the queue for one batch, and the queue left behind (order kept in both). */
export interface Taken<T> {
  batch: T[];
  rest: T[];
}

/**
 * Rule 1: the ops of `queue` that may be staged behind the prepared batch `prepared`: those whose
 * record `prepared` does not name, in queue order, at most `max`; with `half`, the first half
 * (rounded up) of those, so that the rest can go by rule 2.
 */
export function planStaged<T extends Keyed>(prepared: readonly Keyed[], queue: readonly T[], max = MAX_BATCH_OPS, half = false): Taken<T> {
  const busy = new Set<string>();
  for (const q of prepared) busy.add(q.key);
  if (half) {
    let may = 0;
    for (const q of queue) if (!busy.has(q.key)) may++;
    max = Math.ceil(Math.min(may, max) / 2);
  }
  const batch: T[] = [];
  const rest: T[] = [];
  for (const q of queue) {
    if (batch.length < max && !busy.has(q.key)) batch.push(q);
    else rest.push(q);
  }
  return { batch, rest };
}

/** Rule 3 (and a batch from an idle engine): the first `max` queued ops, whatever their records. */
export function planNext<T>(queue: readonly T[], max = MAX_BATCH_OPS): Taken<T> {
  return { batch: queue.slice(0, max), rest: queue.slice(max) };
}
