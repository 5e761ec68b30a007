/**
 * A follower's side of a replicated batch (enclave/vault/apply.ts, docs/fleet-vault.md): a second
 * vault, with its own NVRAM and storage and the leader's keys (the one token both use stands in
 * for the fleet keys of the ceremony, a later slice), takes every batch the leader persisted as
 * an Apply, makes it durable by the batch rule, and can then serve the records itself: a login
 * on it recovers the key, with the guesses the leader charged still charged, and a restart
 * reloads them through its rollback index. Every Apply that does not fit this member's records
 * is refused with ApplyRefused (or RollbackDetected for an old stored blob), changes nothing, and
 * the follower takes the next good one; a vault that follows no leader refuses Apply altogether.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { refusalCode } from '../../helpers/errors.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnclave } from '../../../enclave/main.ts';
import { Handling, Integrity } from '../../../enclave/api/codes.ts';
import { HostResponses, type HostRequest } from '../../../enclave/api/messages.ts';
import { decodeMessage } from '../../../enclave/api/codec.ts';
import { CHANGE_TAGS, changeOp, fleetChangeOf } from '../../../enclave/vault/fleet-change.ts';
import { parseHeader } from '../../../enclave/vault/record.ts';
import { openSqliteStore } from '../../../host/storage/sqlite.ts';
import type { RecordStore } from '../../../host/storage/types.ts';
import { PartitionEngine } from '../../../host/vault/engine.ts';
import { EscrowClient } from '../../../client/escrow.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { randomBytes } from 'node:crypto';
import { CONTEXT, clientExtras, openHarness, type Harness } from '../../helpers/vault-harness.ts';
import { tapWrites } from '../../helpers/fleet-changes.ts';
import { testPlatform, type TestPlatform } from '../../helpers/platform.ts';

type Apply = Extract<HostRequest, { type: 'Apply' }>;
interface Persisted {
  epoch: number;
  ops: Apply['ops'];
  writes: { recordId: Uint8Array; blob: Uint8Array }[];
}

const te = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * Every batch the leader's host persists, with the ops its device named in Prepared; each is
 * also worked out here from the stored records before and after (one op per record per batch:
 * the test's commands run one at a time), and the two must agree.
 */
function captureLeader(h: Harness, fleetLeader = true): Persisted[] {
  const out: Persisted[] = [];
  const named = new Map<number, Apply['ops']>();
  const device = h.enclave;
  const request = device.request.bind(device);
  device.request = async (req, o) => {
    const res = await request(req, o);
    const m = decodeMessage(HostResponses, res);
    if (m.type === 'Prepared') named.set(m.epoch, m.ops);
    return res;
  };
  tapWrites(h, (epoch, writes) => {
    const ops = writes.map((w) => {
      const change = fleetChangeOf(w.before, w.after);
      if (change === null) throw new Error('the leader wrote a change the fleet rules do not know');
      return changeOp(w.recordId, change, w.stored.length > 0 ? parseHeader(w.stored).version : 0);
    });
    // a vault that is no fleet member names none
    expect(named.get(epoch), `the ops the leader's device named for epoch ${epoch}`).toEqual(fleetLeader ? ops : []);
    out.push({ epoch, ops, writes: writes.map((w) => ({ recordId: w.recordId, blob: w.blob })) });
  });
  return out;
}

interface Follower {
  platform: TestPlatform;
  store: RecordStore;
  engine: PartitionEngine;
  dir: string;
  /** The Apply request for a persisted leader batch, with this member's stored blobs. */
  applyOf(p: Persisted): Promise<Apply>;
  /** Apply, persist, Commit: what the follower's host does with a batch its device accepted. */
  replicate(p: Persisted): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function openFollower(h: Harness): Promise<Follower> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-follower-'));
  const platform = testPlatform({ token: h.platform.token, tokenKind: h.platform.tokenKind });
  platform.auth = h.platform.auth;
  platform.clock = h.platform.clock;
  const store = await openSqliteStore(join(dir, 'vault.db'));
  const boot = async () => {
    const engine = new PartitionEngine(await createEnclave(platform, { fleet: true }), store, 0);
    await engine.start();
    return engine;
  };
  const f: Follower = {
    platform,
    store,
    dir,
    engine: await boot(),
    async applyOf(p) {
      const stored = await store.getMany(0, p.writes.map((w) => w.recordId));
      return { type: 'Apply', epoch: p.epoch, ops: p.ops, writes: p.writes.map((w, i) => ({ recordId: w.recordId, stored: stored[i]?.blob ?? EMPTY, blob: w.blob })) };
    },
    async replicate(p) {
      const prepared = await f.engine.call(await f.applyOf(p));
      expect(prepared.writes.length).toBe(p.writes.length);
      await store.applyBatch(0, p.epoch, prepared.writes, prepared.audit);
      const committed = await f.engine.call({ type: 'Commit', epoch: p.epoch });
      expect(committed.results).toEqual([]);
    },
    async restart() {
      await f.engine.close();
      f.engine = await boot();
    },
    async close() {
      await f.engine.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return f;
}

/** An EscrowClient of the follower's engine (same keys as the leader's, so the same pinned key). */
async function clientOf(f: Follower, h: Harness): Promise<EscrowClient> {
  return new EscrowClient({
    relay: (rid, m) => f.engine.submit(rid, m),
    enclavePublicKey: h.hpkePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...clientExtras(h),
  });
}


let h: Harness | undefined;
let f: Follower | undefined;
afterEach(async () => {
  await f?.close();
  await h?.close();
  f = h = undefined;
});

describe("a follower applies the leader's batches", () => {
  it('takes every batch, then serves the records itself with the guesses charged on the leader', async () => {
    h = await openHarness({ fleet: true });
    const log = captureLeader(h);
    f = await openFollower(h);
    const c = await h.client();
    const rid = te.encode('alice');
    const key = new Uint8Array(32).fill(0x42);
    await c.register(rid, te.encode('right'), key, { attemptLimit: 5 });
    expect((await c.recover(rid, te.encode('wrong'))).ok).toBe(false);
    expect((await c.recover(rid, te.encode('wrong'))).ok).toBe(false);
    await c.register(te.encode('bob'), te.encode('pw'), key, { attemptLimit: 2 });
    await c.delete(te.encode('bob'), { backupKey: key });
    expect(log.length).toBeGreaterThanOrEqual(6);
    for (const p of log) await f.replicate(p);
    expect((await f.engine.call({ type: 'Info' })).epoch).toBe(log.at(-1)!.epoch);

    // the follower serves alice: two guesses still charged, the right password recovers the key
    const fc = await clientOf(f, h);
    expect(await fc.status(rid)).toMatchObject({ attemptsRemaining: 3, locked: 0 });
    const r = await fc.recover(rid, te.encode('right'));
    expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
    expect(await fc.status(te.encode('bob'))).toMatchObject({ type: 'NotRegistered' });
    // a restart reloads what it applied through its rollback index
    await f.restart();
    expect(await (await clientOf(f, h)).status(rid)).toMatchObject({ attemptsRemaining: 5, locked: 0 });
  });

  it('refuses what does not fit its records, changes nothing, and takes the next good batch', async () => {
    h = await openHarness({ fleet: true });
    const log = captureLeader(h);
    f = await openFollower(h);
    const c = await h.client();
    const rid = te.encode('carol');
    await c.register(rid, te.encode('right'), new Uint8Array(32).fill(7), { attemptLimit: 3 });
    const registered = log.length;
    expect((await c.recover(rid, te.encode('wrong'))).ok).toBe(false); // a charge, then a touch
    const charge = log.find((p, i) => i >= registered && p.ops.some((o) => o.change === CHANGE_TAGS.charge))!;
    const touch = log.find((p) => p.ops.some((o) => o.change === CHANGE_TAGS.touch))!;
    expect(charge).toBeDefined();
    expect(touch).toBeDefined();
    for (const p of log.slice(0, log.indexOf(charge))) await f.replicate(p);
    const epoch = (await f.engine.call({ type: 'Info' })).epoch;

    const good = await f.applyOf(charge);
    const w0 = good.writes[0]!;
    const o0 = good.ops[0]!;
    const flipped = Uint8Array.from(w0.blob);
    flipped[flipped.length - 1]! ^= 1;
    const registration = log.find((p) => p.ops.some((o) => o.change === CHANGE_TAGS.register))!;
    const cases: [string, Apply, number][] = [
      ['an op on another version', { ...good, ops: [{ ...o0, base: o0.base + 1 }] }, Handling.ApplyRefused],
      ['a change the blob does not hold (a reset for a charge)', { ...good, ops: [{ ...o0, change: CHANGE_TAGS.reset }] }, Handling.ApplyRefused],
      ['a change not allowed on the record (a register over a live one)', { ...good, ops: [{ ...o0, change: CHANGE_TAGS.register, limit: 3 }] }, Handling.ApplyRefused],
      ['an unknown change', { ...good, ops: [{ ...o0, change: 6 }] }, Handling.ApplyRefused],
      ['a blob altered by the host', { ...good, writes: [{ ...w0, blob: flipped }] }, Handling.ApplyRefused],
      ['the registration blob again (an old blob of the record)', { ...good, writes: [{ ...w0, blob: registration.writes[0]!.blob }] }, Handling.ApplyRefused],
      ['a write no op names', { ...good, ops: [] }, Handling.ApplyRefused],
      ['an op with no write', { ...good, writes: [] }, Handling.ApplyRefused],
      ['the record written twice', { ...good, writes: [w0, w0] }, Handling.ApplyRefused],
      ['the stored blob missing (the host hides the record)', { ...good, writes: [{ ...w0, stored: EMPTY }] }, Integrity.RollbackDetected],
      ['another epoch', { ...good, epoch: good.epoch + 1 }, Handling.BatchOutOfOrder],
      ['at an epoch already committed', { ...good, epoch: epoch }, Handling.BatchOutOfOrder],
    ];
    for (const [what, req, code] of cases) {
      expect(await refusalCode(f.engine.call(req)), what).toBe(code);
      expect((await f.engine.call({ type: 'Info' })).epoch, what).toBe(epoch);
    }
    // the genuine batch still applies, and the touch after it
    await f.replicate(charge);
    for (const p of log.slice(log.indexOf(charge) + 1)) await f.replicate(p);
    expect(await (await clientOf(f, h)).status(rid)).toMatchObject({ attemptsRemaining: 2 });
    expect(touch.epoch).toBeLessThanOrEqual(log.at(-1)!.epoch);
  });

  it('a vault that follows no leader refuses Apply', async () => {
    h = await openHarness();
    const log = captureLeader(h, false);
    await (await h.client()).register(te.encode('dave'), te.encode('pw'), new Uint8Array(32), { attemptLimit: 3 });
    const p = log[0]!;
    const req: Apply = { type: 'Apply', epoch: p.epoch + 1, ops: p.ops, writes: p.writes.map((w) => ({ ...w, stored: EMPTY })) };
    expect(await refusalCode(h.engine.call(req))).toBe(Handling.NotAFollower);
  });
});
