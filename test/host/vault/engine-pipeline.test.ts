/**
 * host/vault/engine.ts pipelining: when a batch is prepared and operations are queued, the next
 * batch (of records not in the prepared one) goes to the enclave before the prepared one is
 * persisted, is staged there, and is prepared right behind the Commit (Prepare); operations on a
 * record of the prepared batch wait for a later batch. When that Commit fails the batch behind
 * it fails with it: both batches' clients get the error, nothing is released, and the engine
 * stops for a reload. With nothing queued at that point, the next batch is sent behind the Commit.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { Handling, Lifecycle } from '../../../enclave/api/codes.ts';
import { HostRequests, HostResponses } from '../../../enclave/api/messages.ts';
import type { HostResponse } from '../../../enclave/api/messages.ts';
import { createEnclave } from '../../../enclave/main.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { EscrowClient } from '../../../client/escrow.ts';
import { openSqliteStore } from '../../../host/storage/sqlite.ts';
import type { RecordStore } from '../../../host/storage/types.ts';
import { ChannelErrorCode } from '../../../host/channel/channel.ts';
import { EnclaveCallError, PartitionEngine } from '../../../host/vault/engine.ts';
import { CONTEXT } from '../../helpers/vault-harness.ts';
import { testIssuer, wallClockClientExtras } from '../../helpers/auth.ts';
import { testPlatform } from '../../helpers/platform.ts';

const te = new TextEncoder();
const dirs: string[] = [];
const stores: RecordStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Sent {
  type: string;
  epoch: number | undefined;
  /** A Batch's op count. */
  ops?: number;
  /** Requests sent before this one whose answers had not come back yet. */
  unanswered: string[];
  /** Its answer's type, once it came. */
  answer?: string;
}

/**
 * An engine over a real enclave and SQLite. `failCommit`: the nth Commit's device dies;
 * `holdFirstBatch`: the first Batch's answer waits for it; `failRead`: a storage read fails;
 * `refuseBatch`: the nth Batch is refused (BatchOutOfOrder) without reaching the enclave;
 * `oneDeep`: the engine stages one batch deep (a fleet member's).
 */
async function rig(opts: { failCommit?: number; holdFirstBatch?: Promise<void>; failRead?: () => boolean; refuseBatch?: number; oneDeep?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-pipeline-'));
  dirs.push(dir);
  const sqlite = await openSqliteStore(join(dir, 'vault.db'));
  stores.push(sqlite);
  const store: RecordStore = Object.assign(Object.create(sqlite) as RecordStore, {
    getMany: (p: number, ids: Uint8Array[]) => (opts.failRead?.() ? Promise.reject(new Error('storage read failed')) : sqlite.getMany(p, ids)),
  });
  const issuer = await testIssuer();
  const platform = testPlatform();
  platform.auth = issuer.config;
  const enclave = await createEnclave(platform);
  const sent: Sent[] = [];
  const open = new Set<string>();
  let commits = 0;
  const engine = new PartitionEngine(
    {
      request: async (b) => {
        const req = decodeMessage(HostRequests, b);
        const epoch = 'epoch' in req ? (req.epoch as number) : undefined;
        const tag = `${req.type}#${sent.length}`;
        const me = sent.length;
        sent.push({ type: req.type, epoch, ...(req.type === 'Batch' && { ops: req.ops.length }), unanswered: [...open].map((t) => t.split('#')[0]!) });
        if (req.type === 'Commit' && ++commits === opts.failCommit) {
          // The device dies before it answers this Commit (it may or may not have written NVRAM).
          await new Promise((r) => setTimeout(r, 20));
          throw new Error('device crashed during Commit');
        }
        open.add(tag);
        try {
          const nthBatch = sent.filter((x) => x.type === 'Batch').length;
          if (req.type === 'Batch' && nthBatch === 1) await opts.holdFirstBatch;
          // Delivered in order (the enclave queues its requests, as the device does); only the
          // answer may be held back.
          const answer =
            req.type === 'Batch' && nthBatch === opts.refuseBatch
              ? encodeMessage(HostResponses, { type: 'Fault', code: Handling.BatchOutOfOrder, field: te.encode('epoch'), message: te.encode('refused by the test') })
              : await enclave.request(b);
          sent[me]!.answer = decodeMessage(HostResponses, answer).type;
          return answer;
        } finally {
          open.delete(tag);
        }
      },
    },
    store,
    0,
    10_000,
    undefined,
    !opts.oneDeep,
  );
  const info = await engine.start();
  const client = new EscrowClient({
    relay: (recordId, message) => engine.submit(recordId, message),
    enclavePublicKey: info.hpkePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...wallClockClientExtras(issuer),
    auth: (rid: Uint8Array) => issuer.token(rid, platform.clock.t),
  });
  return { engine, client, sent };
}

const tick = () => new Promise((r) => setTimeout(r, 1));

/**
 * Status operations for `n` ids in exactly two batches: the first id's batch is held at the
 * enclave until the other operations have queued behind it. Returns their promises in id order.
 */
async function twoBatches(opts: { failCommit?: number; refuseBatch?: number; oneDeep?: boolean; onFailure?: (e: unknown) => void }, n: number, name: string) {
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const r = await rig({ ...opts, holdFirstBatch: hold });
  if (opts.onFailure) r.engine.onFailure = opts.onFailure;
  const ids = Array.from({ length: n }, (_, i) => te.encode(`${name}-${i}`));
  const first = r.client.status(ids[0]!);
  while (!r.sent.some((x) => x.type === 'Batch')) await tick();
  const rest = ids.slice(1).map((id) => r.client.status(id));
  while (r.engine.queueDepth < rest.length) await tick();
  release();
  return { ...r, ids, ops: [first, ...rest] };
}

describe('engine pipelining', () => {
  it('stages half of the queue before the Commit, prepares it right behind the Commit, and stages the other half right behind that Prepare, in epoch order', async () => {
    const { engine, sent, ids, ops } = await twoBatches({}, 12, 'pipe');
    const results = await Promise.all(ops);
    expect(engine.failed).toBeNull();
    expect(results.map((r) => r.type)).toEqual(ids.map(() => 'NotRegistered'));
    const base = sent.find((s) => s.type === 'Batch')!.epoch!;
    const control = sent.filter((s) => ['Batch', 'Commit', 'Prepare'].includes(s.type)).map((s) => `${s.type} ${s.epoch! - base}`);
    expect(control).toEqual(['Batch 0', 'Batch 1', 'Commit 0', 'Prepare 1', 'Batch 2', 'Commit 1', 'Prepare 2', 'Commit 2']);
    const batches = sent.filter((s) => s.type === 'Batch');
    // The 11 queued behind the first: 6 staged while the first was prepared and not yet
    // committed, 5 right behind the Prepare of those 6, before the first batch's Commit answered.
    expect(batches.map((b) => b.ops)).toEqual([1, 6, 5]);
    expect(batches[1]!.unanswered).not.toContain('Commit');
    expect(batches[2]!.unanswered).toEqual(expect.arrayContaining(['Commit', 'Prepare']));
    expect(engine.stats.batches).toBe(3);
  });

  it('one deep (as a fleet member stages): the whole queue staged behind the prepared batch, nothing behind its Prepare', async () => {
    const { engine, sent, ids, ops } = await twoBatches({ oneDeep: true }, 12, 'one');
    const results = await Promise.all(ops);
    expect(results.map((r) => r.type)).toEqual(ids.map(() => 'NotRegistered'));
    const base = sent.find((s) => s.type === 'Batch')!.epoch!;
    expect(sent.filter((s) => ['Batch', 'Commit', 'Prepare'].includes(s.type)).map((s) => `${s.type} ${s.epoch! - base}`)).toEqual(['Batch 0', 'Batch 1', 'Commit 0', 'Prepare 1', 'Commit 1']);
    expect(sent.filter((s) => s.type === 'Batch').map((b) => b.ops)).toEqual([1, 11]);
    expect(engine.stats.batches).toBe(2);
  });

  it('when the staged batch cannot be read, its clients get the error, nothing is staged behind it, and the engine goes on', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    let reads = 0;
    let failNext = false;
    const r = await rig({ holdFirstBatch: hold, failRead: () => (reads++, failNext && !(failNext = false)) });
    const first = r.client.status(te.encode('read-0'));
    while (!r.sent.some((x) => x.type === 'Batch')) await tick();
    const rest = [1, 2, 3].map((i) => r.client.status(te.encode(`read-${i}`)));
    const settled = Promise.allSettled(rest);
    while (r.engine.queueDepth < rest.length) await tick();
    failNext = true; // the next read is the staged batch's (two of the three)
    release();
    expect(await first).toMatchObject({ type: 'NotRegistered' });
    // Which two were staged is queue order (each client seals its request before it queues).
    const out = await settled;
    const failed = out.filter((x) => x.status === 'rejected');
    expect(failed.length).toBe(2);
    for (const x of failed) expect(String(x.reason)).toMatch(/storage read failed/);
    expect(out.filter((x) => x.status === 'fulfilled')).toEqual([{ status: 'fulfilled', value: expect.objectContaining({ type: 'NotRegistered' }) }]);
    expect(r.engine.failed).toBeNull();
    // The failed batch was not sent (no Batch or Prepare for it reached the enclave); the third
    // op went in a batch of its own after the first one's Commit.
    expect(r.sent.filter((s) => s.type === 'Batch').map((s) => s.ops)).toEqual([1, 1]);
    expect(r.sent.some((s) => s.type === 'Prepare')).toBe(false);
    expect(reads).toBeGreaterThan(1);
    expect(await r.client.status(te.encode('read-after'))).toMatchObject({ type: 'NotRegistered' });
  });

  it('when the staged batch is refused, the batch staged behind its Prepare is refused too and goes back to the queue: every op is answered, the engine goes on', async () => {
    const { engine, sent, ids, ops } = await twoBatches({ refuseBatch: 2 }, 12, 'stray');
    const results = await Promise.all(ops);
    expect(results.map((r) => r.type)).toEqual(ids.map(() => 'NotRegistered'));
    expect(engine.failed).toBeNull();
    const batches = sent.filter((s) => s.type === 'Batch');
    // Batch 2 (6 ops, refused by the test), its Prepare refused by the enclave, Batch 3 (5 ops,
    // behind that Prepare) refused by the enclave; then the 6 again (after an Info) and the 5 again.
    expect(batches.slice(0, 3).map((b) => [b.ops, b.answer])).toEqual([
      [1, 'Prepared'],
      [6, 'Fault'],
      [5, 'Fault'],
    ]);
    expect(sent.find((s) => s.type === 'Prepare')!.answer).toBe('Fault');
    const accepted = batches.filter((b) => b.answer !== 'Fault').reduce((n, b) => n + b.ops!, 0);
    expect(accepted).toBe(12); // each op ran once
    expect(engine.stats.ops).toBe(12);
    // One Info to learn the epoch (after the start's): the 5 went back to the queue, not through
    // a second refusal and retry.
    expect(sent.filter((s) => s.type === 'Info').length).toBe(2);
  });

  it('an operation on a record of the prepared batch waits for a later batch, and sees its result', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const r = await rig({ holdFirstBatch: hold });
    const a = te.encode('same-a');
    const first = r.client.status(a);
    while (!r.sent.some((x) => x.type === 'Batch')) await tick();
    // Queued behind it: the same record twice and two others.
    const rest = [r.client.status(a), r.client.status(te.encode('same-b')), r.client.status(a), r.client.status(te.encode('same-c'))];
    while (r.engine.queueDepth < rest.length) await tick();
    release();
    const all = await Promise.all([first, ...rest]);
    expect(all.map((x) => x.type)).toEqual(all.map(() => 'NotRegistered'));
    expect(r.engine.failed).toBeNull();
    // Batch 0 = [a]; staged batch 1 = [b, c]; then [a, a] after it.
    const batches = r.sent.filter((s) => s.type === 'Batch');
    expect(batches.length).toBe(3);
    expect(r.engine.stats.ops).toBe(5);
  });

  it('a failed Commit fails the batch sent behind it too; nothing is released and the engine stops', async () => {
    let failure: unknown;
    const { engine, client, sent, ops } = await twoBatches({ failCommit: 1, onFailure: (e) => (failure = e) }, 8, 'fail');
    const all = await Promise.allSettled(ops);
    expect(all.every((r) => r.status === 'rejected')).toBe(true);
    for (const r of all) expect(String((r as PromiseRejectedResult).reason)).toMatch(/device crashed during Commit/);
    expect(String(failure)).toMatch(/device crashed during Commit/);
    expect(engine.failed).toBeTruthy();
    // The batch behind the failed Commit was staged before it and prepared after it.
    const i = sent.findIndex((s) => s.type === 'Commit');
    expect(sent.slice(0, i).filter((s) => s.type === 'Batch').length).toBe(2);
    expect(sent.slice(i + 1).some((s) => s.type === 'Prepare')).toBe(true);
    await expect(client.status(te.encode('after'))).rejects.toThrow(/device crashed during Commit/);
  });
});

describe('the typed call', () => {
  /** An engine over a device that answers every request with `answer`. */
  const answering = async (answer: HostResponse) => {
    const dir = mkdtempSync(join(tmpdir(), 'bkv-call-'));
    dirs.push(dir);
    const store = await openSqliteStore(join(dir, 'vault.db'));
    stores.push(store);
    return new PartitionEngine({ request: async () => encodeMessage(HostResponses, answer) }, store, 0);
  };

  it('returns the answer its request has', async () => {
    const engine = await answering({ type: 'Aborted', epoch: 7 });
    const r = await engine.call({ type: 'Abort', epoch: 7 });
    expect(r).toEqual({ type: 'Aborted', epoch: 7 });
  });

  it('throws EnclaveCallError with the fault code for a Fault', async () => {
    const engine = await answering({ type: 'Fault', code: Lifecycle.Zeroized, field: new Uint8Array(0), message: te.encode('zeroized') });
    const e = await engine.call({ type: 'Info' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(EnclaveCallError);
    expect((e as EnclaveCallError).code).toBe(Lifecycle.Zeroized);
  });

  it('throws EnclaveCallError UnexpectedResponse for an answer of another request, or not the one expected', async () => {
    const engine = await answering({ type: 'Staged', epoch: 1 });
    for (const call of [engine.call({ type: 'Commit', epoch: 1 }), engine.call({ type: 'Batch', epoch: 1, ops: [] }, 'Prepared')]) {
      const e = await call.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(EnclaveCallError);
      expect((e as EnclaveCallError).code).toBe(ChannelErrorCode.UnexpectedResponse);
      expect((e as Error).message).toMatch(/answered Staged/);
    }
    expect((await engine.call({ type: 'Batch', epoch: 1, ops: [] })).type).toBe('Staged');
  });
});
