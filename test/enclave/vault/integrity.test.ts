/**
 * What the enclave refuses: rollback of a record, of the database, of the NVRAM; crashes at every
 * step of a batch; failed self-tests; and what zeroization leaves (nothing that decrypts). On
 * every token under test. The audit chain's checks are in test/enclave/vault/audit.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { holdLogin, openHarness, storedRecord } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';
import { Integrity, Lifecycle } from '../../../enclave/api/codes.ts';
import { createEnclave } from '../../../enclave/main.ts';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { HostRequests, HostResponses } from '../../../enclave/api/messages.ts';
import { testPlatform } from '../../helpers/platform.ts';
import { describeTokens } from '../../helpers/tokens.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { ClientRequests, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { clientLoginStart } from '../../../enclave/opaque/client.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { CONTEXT, authFor } from '../../helpers/vault-harness.ts';
import type { Device } from '../../../enclave/api/device.ts';

const te = new TextEncoder();
const id = (s: string) => te.encode(s);
let h: Harness;
afterEach(async () => h?.close());

async function hostCall(enclave: Device, req: Parameters<typeof encodeMessage<typeof HostRequests.schemas>>[1]) {
  return decodeMessage(HostResponses, await enclave.request(encodeMessage(HostRequests, req)));
}

describeTokens('integrity', (kind) => {
  describe('rollback', () => {
    it('refuses an older NVRAM image beside newer storage', async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
      const old = h.platform.nvram.read();
      await c.recover(id('a'), te.encode('bad'));
      h.platform.nvram.data = old;
      await expect(h.restart()).rejects.toMatchObject({ code: Integrity.RollbackDetected });
    });

    it('an NVRAM image holding an intent rolls forward to the truth, never back', async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
      // Capture the NVRAM right after the login batch wrote its intent.
      let captured: Uint8Array | null = null;
      h.platform.failpoint = (name) => {
        if (name === 'batch:prepared') captured = h.platform.nvram.read();
      };
      await c.recover(id('a'), te.encode('bad'));
      expect(captured).not.toBeNull();
      h.platform.nvram.data = captured!;
      await h.restart();
      const c2 = await h.client();
      expect(await c2.status(id('a'))).toMatchObject({ attemptsRemaining: 4 });
    });

    it('once a KE2 is out, the record from before its guess is refused at the next start; the current one loads with the guess charged', async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      const rid = id('a');
      await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
      const before = (await storedRecord(h, rid))!;
      // One LoginStart whose KE2 reached the client, and no batch after it: the Commit that
      // released the KE2 has itself made the charged state durable in NVRAM.
      await holdLogin(h, rid, te.encode('wrong'));
      const charged = (await storedRecord(h, rid))!;
      expect(charged.record).toMatchObject({ attemptsUsed: 1 });
      await h.store.applyBatch(0, 999, [{ recordId: rid, blob: before.blob }], []);
      await expect(h.restart()).rejects.toMatchObject({ code: Integrity.RollbackDetected });
      // The same start with the current record accepts it, and the guess stays spent.
      await h.store.applyBatch(0, 1000, [{ recordId: rid, blob: charged.blob }], []);
      await h.restart();
      expect(await (await h.client()).status(rid)).toMatchObject({ type: 'StatusResult', attemptsRemaining: 4 });
    });

    it('refuses an older copy of the whole database', async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
      await c.register(id('b'), te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 5 });
      await h.reopenStore(); // checkpoint
      const db = join(h.dir, 'vault.db');
      copyFileSync(db, join(h.dir, 'old.db'));
      await c.recover(id('a'), te.encode('bad'));
      await h.store.close();
      for (const ext of ['-wal', '-shm']) if (existsSync(db + ext)) rmSync(db + ext);
      copyFileSync(join(h.dir, 'old.db'), db);
      await h.reopenStore();
      await expect(h.restart()).rejects.toMatchObject({ code: Integrity.RollbackDetected });
    });

    it('refuses a record moved to another id, or with a flipped byte', async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1));
      const blob = (await h.store.getMany(0, [id('a')]))[0]!.blob;
      await h.store.applyBatch(0, 99, [{ recordId: id('z'), blob }], []);
      await expect(c.recover(id('z'), te.encode('pw'))).resolves.toMatchObject({ ok: false }); // not a record of z
      const flipped = Uint8Array.from(blob);
      flipped[flipped.length - 1]! ^= 1;
      await h.store.applyBatch(0, 100, [{ recordId: id('a'), blob: flipped }], []);
      await expect(c.recover(id('a'), te.encode('pw'))).rejects.toMatchObject({ code: Integrity.RollbackDetected });
    });
  });

  describe('crash at every step of a batch', () => {
    for (const point of ['batch:before-intent', 'batch:prepared', 'commit:before-nvram', 'commit:after-nvram']) {
      it(`registration and login survive a crash at ${point}`, async () => {
        h = await openHarness({ tokenKind: kind });
        const c = await h.client();
        await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
        // Crash during a wrong login: the enclave dies at `point` and a new one boots.
        h.platform.failpoints.add(point);
        const r = await c.recover(id('a'), te.encode('bad')).catch((e: unknown) => e);
        h.platform.failpoints.clear();
        await h.restart();
        const c2 = await h.client();
        const st = await c2.status(id('a'));
        // Acknowledged registration intact; the guess is charged or (if the batch never landed) not,
        // but never refunded after its KE2 left.
        expect(st).toMatchObject({ type: 'StatusResult', registered: 1 });
        const remaining = (st as { attemptsRemaining: number }).attemptsRemaining;
        if (point === 'commit:after-nvram' || point === 'commit:before-nvram') expect(remaining).toBe(4);
        else expect(remaining).toBe(5);
        expect(r).toBeInstanceOf(Error); // no response was released before the crash point's batch committed
        expect(await c2.recover(id('a'), te.encode('pw'))).toMatchObject({ ok: true });
      });
    }
  });

  describe('crash with a batch staged behind the pending one', () => {
    /**
     * Raw host messages (the engine's overlap, by hand): a wrong login of `a` prepared and
     * persisted, one of `b` staged behind it, Commit, Prepare, persist, Commit; the enclave dies
     * at `point` of the first or of the staged batch. After a reload, every guess whose batch was
     * committed stays charged, and the staged batch counts only if it reached its own commit.
     */
    /** A fresh harness with records `<p>-a` and `<p>-b` (5 attempts each), and a wrong-password LoginStart op for either. */
    async function twoRecords(p: string) {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client();
      const a = id(`${p}-a`);
      const b = id(`${p}-b`);
      await c.register(a, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
      await c.register(b, te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 5 });
      const suite = await fastSuite('ristretto255-SHA512');
      const login = async (rid: Uint8Array) => {
        const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng: (n: number) => new Uint8Array(randomBytes(n)) }, te.encode('wrong'));
        const { message } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'LoginStart', auth: await authFor(h, rid), suite: SUITE_CODE['ristretto255-SHA512'], ke1 }));
        const stored = (await h.store.getMany(0, [rid]))[0]!.blob;
        return { opId: 0, recordId: rid, stored, request: message };
      };
      return { c, a, b, login };
    }
    const cases: { batch: 'first' | 'staged'; point: string; a: number; b: number }[] = [
      { batch: 'first', point: 'commit:before-nvram', a: 4, b: 5 },
      { batch: 'first', point: 'commit:after-nvram', a: 4, b: 5 },
      { batch: 'staged', point: 'batch:before-intent', a: 4, b: 5 },
      { batch: 'staged', point: 'batch:prepared', a: 4, b: 5 },
      { batch: 'staged', point: 'commit:before-nvram', a: 4, b: 4 },
      { batch: 'staged', point: 'commit:after-nvram', a: 4, b: 4 },
    ];
    for (const k of cases) {
      it(`at ${k.point} of the ${k.batch} batch`, async () => {
        const { c, a, b, login } = await twoRecords('staged');
        const e = ((await hostCall(h.enclave, { type: 'Info' })) as { epoch: number }).epoch + 1;
        const persist = async (r: Awaited<ReturnType<typeof hostCall>>, epoch: number) => {
          expect(r).toMatchObject({ type: 'Prepared', epoch });
          const p = r as Extract<typeof r, { type: 'Prepared' }>;
          await h.store.applyBatch(0, epoch, p.writes, p.audit);
        };
        const at = (batch: 'first' | 'staged') => {
          if (k.batch === batch) h.platform.failpoints.add(k.point);
        };
        await persist(await hostCall(h.enclave, { type: 'Batch', epoch: e, ops: [await login(a)] }), e);
        expect(await hostCall(h.enclave, { type: 'Batch', epoch: e + 1, ops: [await login(b)] })).toMatchObject({ type: 'Staged' });
        at('first');
        const c1 = await hostCall(h.enclave, { type: 'Commit', epoch: e });
        if (k.batch === 'staged') {
          expect(c1).toMatchObject({ type: 'Committed', epoch: e });
          if (k.point.startsWith('batch:')) at('staged');
          const p2 = await hostCall(h.enclave, { type: 'Prepare', epoch: e + 1 });
          if (k.point.startsWith('commit:')) {
            await persist(p2, e + 1);
            at('staged');
            expect(await hostCall(h.enclave, { type: 'Commit', epoch: e + 1 })).toMatchObject({ type: 'Fault' });
          } else {
            expect(p2).toMatchObject({ type: 'Fault' });
          }
        } else {
          expect(c1).toMatchObject({ type: 'Fault' });
        }
        h.platform.failpoints.clear();
        await h.restart();
        const c2 = await h.client();
        expect(await c2.status(a)).toMatchObject({ attemptsRemaining: k.a });
        expect(await c2.status(b)).toMatchObject({ attemptsRemaining: k.b });
        expect(await c2.recover(b, te.encode('pw'))).toMatchObject({ ok: true });
      });
    }

    it('one NVRAM write carries the commit and the staged batch\'s intent; if it fails, a reload rolls the first batch forward and drops the staged one', async () => {
      const { c, a, b, login } = await twoRecords('merge');
      const nv = h.platform.nvram;
      const persistPrepared = async (r: Awaited<ReturnType<typeof hostCall>>, epoch: number) => {
        if (r.type !== 'Prepared' || r.epoch !== epoch) throw new Error(`expected Prepared(${epoch}), got ${r.type}`);
        await h.store.applyBatch(0, epoch, r.writes, r.audit);
      };
      const run = async (e: number, failCommit = false) => {
        const w0 = nv.writes;
        const p1 = await hostCall(h.enclave, { type: 'Batch', epoch: e, ops: [await login(a)] });
        expect(p1).toMatchObject({ type: 'Prepared', epoch: e });
        await persistPrepared(p1, e);
        expect(await hostCall(h.enclave, { type: 'Batch', epoch: e + 1, ops: [await login(b)] })).toMatchObject({ type: 'Staged' });
        expect(nv.writes - w0).toBe(1); // the first batch's intent; nothing for the staged one
        nv.failWrites = failCommit;
        try {
          return await hostCall(h.enclave, { type: 'Commit', epoch: e });
        } finally {
          nv.failWrites = false;
        }
      };
      const epoch = async () => ((await hostCall(h.enclave, { type: 'Info' })) as { epoch: number }).epoch + 1;
      const e = await epoch();
      let w = nv.writes;
      expect(await run(e)).toMatchObject({ type: 'Committed', epoch: e });
      expect(nv.writes - w).toBe(2); // + the commit, with the staged intent in it
      w = nv.writes;
      const p2 = await hostCall(h.enclave, { type: 'Prepare', epoch: e + 1 });
      expect(p2).toMatchObject({ type: 'Prepared', epoch: e + 1 });
      expect(nv.writes - w).toBe(0); // already durable
      // A replayed Prepare changes nothing.
      expect(await hostCall(h.enclave, { type: 'Prepare', epoch: e + 1 })).toMatchObject({ type: 'Fault' });
      await persistPrepared(p2, e + 1);
      expect(await hostCall(h.enclave, { type: 'Commit', epoch: e + 1 })).toMatchObject({ type: 'Committed', epoch: e + 1 });
      expect(nv.writes - w).toBe(1);
      expect(await c.status(a)).toMatchObject({ attemptsRemaining: 4 });
      expect(await c.status(b)).toMatchObject({ attemptsRemaining: 4 });

      // The merged write fails: the enclave refuses until reloaded (the staged batch is gone, its
      // Prepare refused); after the reload the first batch, persisted and with its intent durable,
      // rolls forward, and the staged one never happened.
      const e2 = await epoch();
      expect(await run(e2, true)).toMatchObject({ type: 'Fault' });
      expect(await hostCall(h.enclave, { type: 'Prepare', epoch: e2 + 1 })).toMatchObject({ type: 'Fault' });
      await h.restart();
      const c2 = await h.client();
      expect(await c2.status(a)).toMatchObject({ attemptsRemaining: 3 });
      expect(await c2.status(b)).toMatchObject({ attemptsRemaining: 4 });
    });
  });

  describe('lifecycle', () => {
    it('refuses every request while self-tests fail', async () => {
      const p = testPlatform({ tokenKind: kind, tokenFault: 'gcm' });
      const e = await createEnclave(p);
      const info = await hostCall(e, { type: 'Info' });
      expect(info).toMatchObject({ type: 'InfoResult', state: 1 });
      const r = await hostCall(e, { type: 'LoadEnd' });
      expect(r).toMatchObject({ type: 'Fault', code: Lifecycle.SelfTestFailed });
    });

    it('zeroizes on the operator command: nothing decrypts afterwards', async () => {
      const secret = new Uint8Array(randomBytes(32));
      h = await openHarness({ operatorKeyHash: new Uint8Array(createHash('sha256').update(secret).digest()), tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1));
      expect(await hostCall(h.enclave, { type: 'Zeroize', auth: new Uint8Array(32) })).toMatchObject({ code: Lifecycle.OperatorAuthFailed });
      expect(await hostCall(h.enclave, { type: 'Zeroize', auth: secret })).toEqual({ type: 'ZeroizeDone' });
      await expect(c.recover(id('a'), te.encode('pw'))).rejects.toMatchObject({ code: Lifecycle.Zeroized });
      expect(h.platform.token.findKey('bkv-seal')).toBeNull();
      // A restart stays zeroized.
      const e2 = await createEnclave(h.platform);
      expect(await hostCall(e2, { type: 'Info' })).toMatchObject({ state: 2 });
      expect(await hostCall(e2, { type: 'LoadEnd' })).toMatchObject({ code: Lifecycle.Zeroized });
    });

    it('Census counts the locked records only with the operator secret, and only rows that are the live version', async () => {
      const secret = new Uint8Array(randomBytes(32));
      h = await openHarness({ operatorKeyHash: new Uint8Array(createHash('sha256').update(secret).digest()), tokenKind: kind });
      const c = await h.client();
      await c.register(id('a'), te.encode('pw'), new Uint8Array(32).fill(1));
      await c.register(id('b'), te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 1 });
      const before = (await storedRecord(h, id('b')))!;
      expect(await c.recover(id('b'), te.encode('wrong'))).toMatchObject({ outcome: 'wrong-password' });
      const rows = async () => (await h.store.getMany(0, [id('a'), id('b')])).map((r) => ({ recordId: r!.recordId, blob: r!.blob }));
      const census = (entries: { recordId: Uint8Array; blob: Uint8Array }[], auth: Uint8Array) => hostCall(h.enclave, { type: 'Census', entries, auth });
      expect(await census(await rows(), new Uint8Array(32))).toMatchObject({ code: Lifecycle.OperatorAuthFailed });
      expect(await census(await rows(), secret)).toEqual({ type: 'CensusResult', live: 2, locked: 1 });
      // b's row from before its lock is not the live version: neither opened nor counted.
      expect(await census([{ recordId: id('b'), blob: before.blob }], secret)).toEqual({ type: 'CensusResult', live: 0, locked: 0 });
    });

    it('refuses zeroization when no operator key was provisioned', async () => {
      h = await openHarness({ tokenKind: kind });
      expect(await hostCall(h.enclave, { type: 'Zeroize', auth: new Uint8Array(32) })).toMatchObject({ code: Lifecycle.OperatorAuthFailed });
    });
  });
}, { p11kit: true });
