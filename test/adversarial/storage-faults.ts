/**
 * Storage faults under load: a RecordStore wrapper (lib/faulty-store.ts) injects, round by
 * round, write errors in applyBatch (nothing applied), read errors in getMany, an outage (every
 * write fails), and a full disk (a real SQLITE_FULL: the store is swapped for a connection to the
 * same file with `maxSizeBytes` at its current size). Checked:
 *
 *   - every operation of a batch whose applyBatch failed got an error, never an answer (nothing
 *     released: the relay sees each record's operation in flight when its batch fails);
 *   - when the faults stop, the live vault serves again (or, failing that, after a restart);
 *   - after each round the vault is reopened and the ledger holds (lib/ledger.ts): every
 *     acknowledged registration recovers, no guess refunded or charged twice, no record refused.
 *
 * A separate scenario, in its own folder: the ambiguous commit. applyBatch applies the batch and
 * then fails (a connection lost after COMMIT, an error reported after the data reached the
 * disk), although the store contract says a rejected batch is not applied. Checked: the batch's
 * clients got errors, nothing was released, and the vault comes back after a restart with the
 * guesses of that batch still charged. (Before the engine stopped and reloaded the partition on
 * such a failure, it sent Abort and ran the next batch at the same epoch, whose NVRAM intent
 * replaced the one that matched storage: the partition then refused to load for good.)
 *
 *   npx tsx test/adversarial/storage-faults.ts [--rounds N] [--seed S] [--mode worker|process]
 * Exit 1 on a violation.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMessage } from '../../enclave/api/codec.ts';
import { ClientResponses } from '../../enclave/api/messages.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import { VaultHost } from '../../host/vault/vault-host.ts';
import { testIssuer } from '../helpers/auth.ts';
import { Rng, bump, isMain, note, runMain, sleep, tempDir } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { FaultyStore } from './lib/faulty-store.ts';
import type { StoreFault } from './lib/faulty-store.ts';
import { VaultClient, describe, hex } from './lib/flows.ts';
import { finishStorm, startStorm, stormArgs } from './lib/storm.ts';
import type { StormKnobs } from './lib/storm.ts';
import { Ledger, driveLoad } from './lib/ledger.ts';

export interface StorageFaultOptions extends StormKnobs<'worker' | 'process'> {
  rounds: number;
  loadMs?: number;
  /** Run the ambiguous-commit scenario (default true). */
  ambiguous?: boolean;
}

/**
 * A VaultHost whose store calls go through a FaultyStore, and a client whose relay knows which
 * operation is in flight for each record: when a batch fails in applyBatch, the operations of
 * its written records are marked, and an answer to a marked one is a violation.
 */
async function faultyVault(dataDir: string, mode: 'worker' | 'process', partitions: number, rng: Rng, report: Report) {
  const host = await VaultHost.open({ dataDir, mode, partitions, auth: (await testIssuer()).config });
  const { store, detach } = FaultyStore.attach(host, rng);
  const inFlight = new Map<string, { mustFail: boolean }>();
  const inner = store.applyBatch.bind(store);
  const target = host.store as unknown as { applyBatch: FaultyStore['applyBatch'] };
  target.applyBatch = async (p, epoch, writes, audit) => {
    try {
      await inner(p, epoch, writes, audit);
    } catch (e) {
      for (const w of writes) {
        const f = inFlight.get(hex(w.recordId));
        if (f) f.mustFail = true;
      }
      throw e;
    }
  };
  const client = await VaultClient.create(async (recordId, message) => {
    const k = hex(recordId);
    const mark = { mustFail: false };
    inFlight.set(k, mark);
    try {
      const r = await host.submit(recordId, message);
      report.checks++;
      if (mark.mustFail) {
        const plain = r.sealed ? null : decodeMessage(ClientResponses, r.response);
        report.violations.push(`an operation whose batch failed in applyBatch was answered (${plain ? plain.type : 'sealed answer'})`);
      }
      return r;
    } finally {
      inFlight.delete(k);
    }
  }, host.info.enclavePublicKey);
  return { host, store, detach, client };
}

/** One registration per partition on fresh ids, then a login: true when all succeed. */
async function probe(ledger: Ledger, client: VaultClient, host: VaultHost): Promise<boolean> {
  const want = host.info.partitions;
  const got = new Set<number>();
  let ok = true;
  for (let i = 0; got.size < want && i < 200; i++) {
    const e = ledger.newEntry();
    const p = host.partitionOf(e.id);
    if (got.has(p)) {
      ledger.entries.pop();
      continue;
    }
    got.add(p);
    const r = await ledger.register(client, e);
    if (!r.registered) ok = false;
    else if (!(await ledger.login(client, e, true)).key) ok = false;
  }
  return ok;
}

export async function storageFaults(o: StorageFaultOptions): Promise<Report> {
  const s = startStorm(o, { mode: 'worker', concurrency: 12, tmp: 'storage' }, (seed, mode) => `storage faults (${o.rounds} rounds, ${mode} devices, seed ${seed})`);
  const { rng, mode, partitions, concurrency, log, report, tmp } = s;
  const ledger = new Ledger(report, 'sf');
  const dataDir = tmp.dir;
  const kinds: StoreFault[] = ['write-error', 'read-error', 'outage', 'full-disk'];
  let ops = 0;
  let failedBatches = 0;
  try {
    let v = await faultyVault(dataDir, mode, partitions, rng, report);
    try {
      // Records to log into from the start.
      await driveLoad(ledger, v.client, { rng, concurrency, stop: () => ledger.registered().length >= 24, mix: { register: 1, right: 0 } });
      for (let round = 1; round <= o.rounds; round++) {
        const kind = kinds[(round - 1) % kinds.length]!;
        const store = v.store;
        let capped: Awaited<ReturnType<typeof openSqliteStore>> | undefined;
        const before = store.counts.batchesFailed;
        if (kind === 'full-disk') {
          const db = join(dataDir, 'vault.db');
          capped = await openSqliteStore(db, { maxSizeBytes: statSync(db).size + rng.int(0, 3) * 4096 });
          store.inner = capped;
          store.fault = 'none';
        } else {
          store.fault = kind;
          store.p = kind === 'outage' ? 1 : 0.2 + rng.next() * 0.4;
        }
        let stop = false;
        const load = driveLoad(ledger, v.client, { rng, concurrency, stop: () => stop });
        await sleep(o.loadMs ?? rng.int(800, 2000));
        stop = true;
        const st = await load;
        ops += st.ops;
        // Faults off.
        store.fault = 'none';
        const failed = store.counts.batchesFailed - before;
        failedBatches += failed;
        if (kind === 'read-error') bump(report.faults, 'getMany read errors', store.counts.readsFailed);
        else bump(report.faults, kind === 'full-disk' ? 'SQLITE_FULL batches' : `${kind} batches`, failed);
        store.counts.readsFailed = 0;
        if (capped) {
          // The failed writes were the file's growth; swap back to the uncapped connection.
          store.inner = store.base;
          await capped.close();
        }
        // The live vault serves again?
        let served = await probe(ledger, v.client, v.host);
        report.checks++;
        if (!served) note(report, `after ${kind} stopped, the live vault did not serve until a restart`);
        // Restart and check the ledger.
        v.detach();
        await v.host.close();
        try {
          v = await faultyVault(dataDir, mode, partitions, rng, report);
        } catch (e) {
          report.violations.push(`round ${round} (${kind}): the vault does not come back after a restart: ${describe(e)}`);
          return report;
        }
        if (!served) {
          served = await probe(ledger, v.client, v.host);
          report.checks++;
          if (!served) report.violations.push(`round ${round} (${kind}): the vault does not serve after the faults stopped and a restart`);
        }
        await ledger.verify(v.client, { recover: (e) => e.touched || round === o.rounds });
        log(`round ${round}/${o.rounds}: ${kind}, ${st.ops} ops (${st.unknown} unanswered), ${failed} failed batches, records ${ledger.registered().length}, violations ${report.violations.length}`);
      }
    } finally {
      v.detach();
      await v.host.close();
    }
    if (o.ambiguous !== false) await ambiguousCommit(report, rng, mode, log);
  } finally {
    tmp.remove();
  }
  report.stats['operations'] = ops;
  report.stats['failed batches (applyBatch rejected)'] = failedBatches;
  return finishStorm(s, ledger);
}

/**
 * The ambiguous commit: a login whose batch is applied by the store and then reported failed.
 * Then another batch on the partition (any operation), then a restart.
 */
export async function ambiguousCommit(report: Report, rng: Rng, mode: 'worker' | 'process', log: (l: string) => void): Promise<void> {
  const tmp = tempDir('ambiguous');
  const ledger = new Ledger(report, 'ac', { limit: 5, integrityIsViolation: false });
  /** The victim's count must show the guess of the applied batch (it landed: it stays charged). */
  const stillCharged = async (client: VaultClient, victim: { id: Uint8Array; limit: number }, when: string) => {
    const st = await client.status(victim.id);
    report.checks++;
    const r = st.ok && st.res.type === 'StatusResult' ? st.res.attemptsRemaining : undefined;
    if (r !== victim.limit - 1) report.violations.push(`ambiguous commit, ${when}: the record the applied batch charged says ${r ?? (st.ok ? st.res.type : describe(st.error))} remaining, expected ${victim.limit - 1} (the batch landed)`);
  };
  try {
    let v = await faultyVault(tmp.dir, mode, 1, rng, report);
    const victim = ledger.newEntry();
    const other = ledger.newEntry();
    await ledger.register(v.client, victim);
    await ledger.register(v.client, other);
    v.store.fault = 'ambiguous-commit';
    v.store.p = 1;
    const o = await ledger.login(v.client, victim, false);
    v.store.fault = 'none';
    bump(report.faults, 'ambiguous commits');
    report.checks++;
    if (o.unknownAt !== 'LoginStart') report.violations.push(`ambiguous commit: the login of the failed batch was answered (${o.start?.type})`);
    // The live vault (which may reload the partition first) and another batch on the partition.
    await stillCharged(v.client, victim, 'on the live vault');
    await ledger.login(v.client, other, false);
    // A restart.
    v.detach();
    await v.host.close();
    try {
      v = await faultyVault(tmp.dir, mode, 1, rng, report);
    } catch (e) {
      report.checks++;
      report.violations.push(`ambiguous commit: the vault does not come back after a restart (${describe(e)}): applyBatch applied a batch and then failed, and the NVRAM no longer accepts the storage it left`);
      log('ambiguous commit: the vault refuses to load after the restart');
      return;
    }
    try {
      await stillCharged(v.client, victim, 'after a restart');
      await ledger.verify(v.client, { recover: () => true });
      log('ambiguous commit: the vault came back after the restart');
    } finally {
      v.detach();
      await v.host.close();
    }
  } finally {
    tmp.remove();
  }
}


if (isMain(import.meta.url)) {
  runMain(async () => {
    return storageFaults(stormArgs(process.argv.slice(2), { rounds: 8, concurrency: 12, modes: ['worker', 'process'] as const }).knobs);
  });
}
