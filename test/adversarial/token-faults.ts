/**
 * Token errors on a live vault (the enclave-level token faults, call by call, are the fuzz
 * target test/fuzz/targets/token-faults.ts; this is what it does not cover: a VaultHost whose
 * devices' token fails while partitions serve, and what the host does about it).
 *
 * The emulator token keeps its objects (keys, and the NVRAM data objects) in one checksummed
 * store file in the data folder, re-read by every device when it changes. A round, under load:
 *   corrupt  the store file's checksum is broken (taken under the store's own lock, so no device
 *            write is lost) for a random time, then the exact bytes are put back: every token
 *            call that reads it fails with CKR_DEVICE_ERROR meanwhile (NVRAM writes included);
 *   lock     (--slow) the store's lock file is held past the token's lock timeout (10 s), so
 *            NVRAM writes fail with CKR_DEVICE_ERROR while reads go on.
 * Checked: every operation during the fault got an error or a typed fault, never a key without
 * its KE3 or a refunded guess; once the token works again, each partition serves again, or at
 * least says it does not (/health's partitionsReady), so that no partition fails every request
 * while reporting ready; after a restart the ledger holds (lib/ledger.ts).
 *
 *   npx tsx test/adversarial/token-faults.ts [--rounds N] [--seed S] [--mode worker|process] [--slow]
 * Exit 1 on a violation.
 */
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EMULATOR_STORE_FILE } from '../../hsm/tokens/emulator/backend.ts';
import { bump, isMain, note, runMain, sleep } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { describe } from './lib/flows.ts';
import { finishStorm, startStorm, stormArgs } from './lib/storm.ts';
import type { StormKnobs } from './lib/storm.ts';
import { Ledger, driveLoad } from './lib/ledger.ts';
import type { Entry } from './lib/ledger.ts';
import { openHost } from './lib/vaults.ts';

export interface TokenFaultOptions extends StormKnobs<'worker' | 'process'> {
  rounds: number;
  slow?: boolean;
  /** How long a partition may fail every probe after the token recovered (default 3000 ms). */
  silentMs?: number;
}

const LOCK_OWNER = `${process.pid} 0 adversarial-token-faults`;

/** Takes the emulator store's lock file as a device would (persistence.ts: O_EXCL, owner pid). */
function takeStoreLock(file: string): string {
  const lock = `${file}.lock`;
  const deadline = performance.now() + 15_000;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, LOCK_OWNER);
      closeSync(fd);
      return lock;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || performance.now() > deadline) throw e;
    }
  }
}

/** Runs `fn` holding the emulator store's lock file. */
function underStoreLock<T>(file: string, fn: () => T): T {
  const lock = takeStoreLock(file);
  try {
    return fn();
  } finally {
    unlinkSync(lock);
  }
}

function replaceFile(file: string, bytes: Buffer): void {
  const tmp = `${file}.adv.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, file);
}

export async function tokenFaults(o: TokenFaultOptions): Promise<Report> {
  const s = startStorm(o, { mode: 'worker', concurrency: 8, tmp: 'token' }, (seed, mode) => `token faults on a live vault (${o.rounds} rounds, ${mode} devices, seed ${seed})`);
  const { rng, mode, partitions, concurrency, log, report, tmp } = s;
  const ledger = new Ledger(report, 'tf');
  const dataDir = tmp.dir;
  const file = join(dataDir, EMULATOR_STORE_FILE);
  let ops = 0;
  try {
    let v = await openHost({ dataDir, mode, partitions });
    try {
      await driveLoad(ledger, v.client, { rng, concurrency: 8, stop: () => ledger.registered().length >= 16, mix: { register: 1, right: 0 } });
      for (let round = 1; round <= o.rounds; round++) {
        const kind = o.slow && round % 2 === 0 ? 'lock' : 'corrupt';
        let stop = false;
        const load = driveLoad(ledger, v.client, { rng, concurrency, stop: () => stop });
        await sleep(rng.int(100, 400));
        if (kind === 'corrupt') {
          const original = underStoreLock(file, () => {
            const bytes = readFileSync(file);
            const bad = Buffer.from(bytes);
            bad[rng.int(0, bad.length - 1)]! ^= 1 << rng.int(0, 7);
            replaceFile(file, bad);
            return bytes;
          });
          bump(report.faults, 'token store corrupted (CKR_DEVICE_ERROR)');
          await sleep(rng.int(300, 1500));
          underStoreLock(file, () => replaceFile(file, original));
        } else {
          // Hold the lock past the token's 10 s lock timeout (and below its 10 s staleness check,
          // renewed by touching the file).
          const lock = takeStoreLock(file);
          bump(report.faults, 'token store lock held (CKR_DEVICE_ERROR on writes)');
          const until = performance.now() + 11_000;
          while (performance.now() < until) {
            await sleep(1000);
            writeFileSync(lock, LOCK_OWNER);
          }
          unlinkSync(lock);
        }
        await sleep(rng.int(100, 300));
        stop = true;
        const st = await load;
        ops += st.ops;
        // The token works again: does every partition serve, or say that it does not?
        const silent = await silentPartitions(ledger, v, o.silentMs ?? 3000);
        report.checks++;
        for (const s of silent) {
          report.violations.push(
            `round ${round} (${kind}): after the token recovered, partition ${s.partition} refused every operation for ${((o.silentMs ?? 3000) / 1000).toFixed(1)} s while reporting ready (partitionsReady true: /health answers 200); last error: ${s.why}`,
          );
        }
        const down = v.host.partitionsReady().map((r, p) => (r ? -1 : p)).filter((p) => p >= 0);
        if (down.length) note(report, `after a token fault a partition stayed down until restarted`);
        // Restart (reload every partition) and check the ledger.
        await v.close();
        try {
          v = await openHost({ dataDir, mode, partitions });
        } catch (e) {
          report.violations.push(`round ${round} (${kind}): the vault does not come back after a restart: ${describe(e)}`);
          return report;
        }
        await ledger.verify(v.client, { recover: (e) => e.touched || round === o.rounds });
        log(`round ${round}/${o.rounds}: ${kind}, ${st.ops} ops (${st.unknown} unanswered), records ${ledger.registered().length}, silent partitions ${silent.length}, violations ${report.violations.length}`);
      }
    } finally {
      await v.close();
    }
  } finally {
    tmp.remove();
  }
  report.stats['operations'] = ops;
  return finishStorm(s, ledger);
}

/**
 * Partitions that, for `ms`, fail every probe (a registration on a fresh id of that partition)
 * while the host reports them ready.
 */
async function silentPartitions(ledger: Ledger, v: Awaited<ReturnType<typeof openHost>>, ms: number): Promise<{ partition: number; why: string }[]> {
  const out: { partition: number; why: string }[] = [];
  for (let p = 0; p < v.host.info.partitions; p++) {
    const deadline = performance.now() + ms;
    let served = false;
    let why = '';
    while (!served && performance.now() < deadline) {
      let e: Entry = ledger.newEntry();
      while (v.host.partitionOf(e.id) !== p) {
        ledger.entries.pop();
        e = ledger.newEntry();
      }
      const r = await ledger.register(v.client, e);
      served = r.registered;
      if (!served) {
        why = r.error ? describe(r.error) : `${r.start?.type}/${r.finish?.type ?? '-'}`;
        await sleep(200);
      }
    }
    if (!served && v.host.partitionsReady()[p]) out.push({ partition: p, why });
  }
  return out;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const { args, knobs } = stormArgs(process.argv.slice(2), { rounds: 6, concurrency: 8, modes: ['worker', 'process'] as const, flags: ['slow'] });
    return tokenFaults({ ...knobs, slow: args.flag('slow') });
  });
}
