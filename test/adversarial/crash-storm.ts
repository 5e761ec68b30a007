/**
 * Crash storm: many rounds of concurrent load (registrations, logins with the right and with a
 * wrong password) on a vault that is killed at random points, each followed by a clean reopen
 * and the ledger's invariants (lib/ledger.ts): every acknowledged registration recovers with its
 * password, no guess is refunded (nor charged without a login), nothing corrupt is accepted.
 *
 *   npx tsx test/adversarial/crash-storm.ts --rounds N [--mode process|service|mixed]
 *       [--seed S] [--concurrency C] [--partitions P]
 *
 * Kinds of round (chosen at random; `--mode process` keeps to the first two, `--mode service`
 * to the third):
 *   failpoint     a VaultHost on child-process devices started with a random batch failpoint
 *                 (batch:before-intent, batch:prepared, commit:before-nvram, commit:after-nvram)
 *                 and hit count: every device SIGKILLs itself at that hit, is restarted by the
 *                 VaultHost, and dies again at the same hit count, as long as the load runs;
 *   device-kill   a VaultHost on child-process devices; the driver SIGKILLs a random device
 *                 process at random times (process.kill), the VaultHost restarts it;
 *   service-kill  the vault service in a child process (worker or child-process devices) is
 *                 SIGKILLed as a whole at a random time, with requests in flight.
 * After each round the vault is closed (or is dead) and reopened without faults, and the ledger
 * is checked against it: Status of every record, a recovery of every record touched in the
 * round and of a random sample of the others (of all of them in the last round).
 * The report counts the SIGKILLs delivered (`kills`): the driver's, and the devices' own at
 * their failpoint (one per device restart that follows no failed batch or restart).
 * Exit 1 on a violation.
 */
import type { VaultHost } from '../../host/vault/vault-host.ts';
import { bump, isMain, note, runMain, sleep } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { describe } from './lib/flows.ts';
import { finishStorm, startStorm, stormArgs } from './lib/storm.ts';
import type { StormKnobs } from './lib/storm.ts';
import { Ledger, driveLoad } from './lib/ledger.ts';
import { myDevicePids, openHost, openService } from './lib/vaults.ts';
import type { OpenVault } from './lib/vaults.ts';

export const FAILPOINTS = ['batch:before-intent', 'batch:prepared', 'commit:before-nvram', 'commit:after-nvram'] as const;
export type RoundKind = 'failpoint' | 'device-kill' | 'service-kill';

export interface CrashStormOptions extends StormKnobs<'process' | 'service' | 'mixed'> {
  rounds: number;
  /** Load time per round, ms (default 800..2500). */
  loadMs?: [number, number];
  /** Called after each round with the report so far (run.ts --min-kills prints its progress). */
  progress?: (report: Report, round: number) => void;
}

export async function crashStorm(o: CrashStormOptions): Promise<Report> {
  const s = startStorm(o, { mode: 'mixed', concurrency: 12, tmp: 'crash' }, (seed, mode) => `crash storm (${o.rounds} rounds, mode ${mode}, seed ${seed})`);
  const { rng, mode, partitions, concurrency, log, report, tmp } = s;
  const [loadMin, loadMax] = o.loadMs ?? [800, 2500];
  const ledger = new Ledger(report, 'cs');
  const dataDir = tmp.dir;
  const kinds: RoundKind[] = mode === 'process' ? ['failpoint', 'device-kill'] : mode === 'service' ? ['service-kill'] : ['failpoint', 'device-kill', 'service-kill'];
  let ops = 0;
  let unknown = 0;
  let failpointRounds = 0;
  try {
    // The vault is created once; every round reopens the same folder.
    {
      const v = await openHost({ dataDir, mode: 'process', partitions });
      await v.close();
    }
    for (let round = 1; round <= o.rounds; round++) {
      const kind = rng.pick(kinds);
      const loadMs = rng.int(loadMin, loadMax);
      let label: string = kind;
      let v: OpenVault;
      // A device restart follows a device's death unless it follows a failed batch or a failed
      // restart of that partition (the VaultHost's log lines, host/vault/vault-host.ts): in a
      // failpoint round those deaths are the devices' own SIGKILLs (hsm/process-main.ts).
      let crashes = 0;
      const lastLine = new Map<string, string>();
      const hostLog = (m: string) => {
        const p = /^partition (\d+)/.exec(m)?.[1] ?? '?';
        const before = lastLine.get(p) ?? '';
        if (m.includes('restarting device') && !before.includes('batch failed') && !before.includes('restart failed')) crashes++;
        lastLine.set(p, m);
      };
      if (kind === 'failpoint') {
        const failpoint = rng.pick(FAILPOINTS);
        const hit = rng.int(1, 40);
        label = `failpoint ${failpoint} hit ${hit}`;
        v = await openHost({ dataDir, mode: 'process', failpoint, failpointHit: hit, log: hostLog });
      } else if (kind === 'device-kill') {
        v = await openHost({ dataDir, mode: 'process', log: hostLog });
      } else {
        const smode = rng.pick(['worker', 'process'] as const);
        label = `service-kill (${smode} devices)`;
        v = await openService({ dataDir, mode: smode });
      }
      let stop = false;
      const load = driveLoad(ledger, v.client, { rng, concurrency, stop: () => stop });
      const t = performance.now();
      if (kind === 'failpoint') {
        await sleep(loadMs);
        failpointRounds++;
      } else if (kind === 'device-kill') {
        const kills = rng.int(1, 3);
        for (let k = 0; k < kills; k++) {
          await sleep(rng.int(100, Math.max(150, loadMs / kills)));
          const host = v.host as VaultHost;
          // Wait until the partitions are back from an earlier kill, then kill one device.
          while (host.partitionsReady().some((r) => !r)) await sleep(20);
          const pids = myDevicePids();
          if (pids.length === 0) {
            // Every partition is ready, so its device process runs: finding none is a broken harness.
            report.violations.push(`round ${round} (${label}): no device process found to kill`);
            continue;
          }
          process.kill(rng.pick(pids), 'SIGKILL');
          bump(report.faults, 'device SIGKILL');
          report.kills++;
        }
        await sleep(Math.max(0, loadMs - (performance.now() - t)));
      } else {
        await sleep(rng.int(200, loadMs));
        await v.service!.kill();
        bump(report.faults, 'service SIGKILL');
        report.kills++;
      }
      stop = true;
      const st = await load;
      ops += st.ops;
      unknown += st.unknown;
      if (kind !== 'service-kill') {
        await v.close();
        if (kind === 'failpoint') {
          bump(report.faults, 'device self-SIGKILL at failpoint', crashes);
          report.kills += crashes;
        }
      }
      // Reopen without faults and check the ledger.
      let clean: OpenVault;
      try {
        clean = kind === 'service-kill' ? await openService({ dataDir, mode: 'worker' }) : await openHost({ dataDir, mode: 'process' });
      } catch (e) {
        report.violations.push(`round ${round} (${label}): the vault refuses to reopen after the crash: ${describe(e)}`);
        break;
      }
      report.checks++;
      const last = round === o.rounds;
      const before = report.violations.length;
      try {
        await ledger.verify(clean.client, { recover: (e) => last || e.touched || rng.chance(0.05) });
      } finally {
        await clean.close();
      }
      const line = `round ${round}/${o.rounds}: ${label}, ${st.ops} ops (${st.unknown} unanswered)${kind === 'failpoint' ? `, ${crashes} device crashes` : ''}, records ${ledger.registered().length}, SIGKILLs ${report.kills}, violations ${report.violations.length - before}`;
      log(line);
      o.progress?.(report, round);
    }
  } finally {
    tmp.remove();
  }
  report.stats['rounds'] = `${o.rounds} (failpoint ${failpointRounds})`;
  report.stats['operations'] = ops;
  report.stats['operations without an answer (outcome unknown)'] = unknown;
  report.stats['acknowledged registrations at the end'] = ledger.registered().length;
  report.stats['unanswered by message'] = Object.entries(ledger.unknown).map(([k, n]) => `${k}=${n}`).join(' ');
  if (unknown === 0 && o.rounds > 2) note(report, 'no operation was ever cut by a fault: the storm did not bite');
  return finishStorm(s, ledger);
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    return crashStorm(stormArgs(process.argv.slice(2), { rounds: 10, concurrency: 12, modes: ['mixed', 'process', 'service'] as const }).knobs);
  });
}
