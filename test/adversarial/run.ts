/**
 * Runs every adversarial script in turn and prints their reports (npm run adversarial):
 *
 *   npx tsx test/adversarial/run.ts [--quick] [--seed S] [--soak-minutes M] [--min-kills K [--max-minutes T]]
 *
 * Default sizes: crash storm 50 rounds, storage faults 8 rounds, token faults 4 rounds, rollback
 * storm 10 rounds, races 10 trials of 64 attackers, replays, strangers 20 rounds, timing 2000 samples (reported, not
 * gated), fleet storm 6 rounds (the replication test API), fleet vault storm 4 rounds (members
 * serving the vault); the soak only with --soak-minutes. `--quick`: the CI sizes of
 * test/adversarial.test.ts. `--min-kills K`: then crash storm, fleet storm and fleet vault storm
 * rounds by turns (2 crash storm rounds, then 3 fleet storm rounds on one fleet, then 3 fleet vault
 * storm rounds; the seed moves on by one each turn) until K SIGKILLs in all were delivered
 * (each script counts its own), with a progress line after every round; `--max-minutes T` ends
 * that loop after T minutes of the whole run (the summary then says the target was not met).
 * The summary prints the SIGKILLs delivered: single vault (crash storm), fleet (both fleet storms), total.
 * Exit 1 when any script found a violation or reported an error.
 */
import { bump, isMain, note, newReport, parseArgs, printReport, runMain } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { crashStorm } from './crash-storm.ts';
import { fleetStorm } from './fleet-storm.ts';
import { fleetVaultStorm } from './fleet-vault-storm.ts';
import { races } from './races.ts';
import { replays } from './replays.ts';
import { rollbackStorm } from './rollback-storm.ts';
import { soak } from './soak.ts';
import { stranger } from './stranger.ts';
import { storageFaults } from './storage-faults.ts';
import { timing } from './timing.ts';
import { tokenFaults } from './token-faults.ts';

/** Adds `r` to `into` (faults, checks, violations, errors, kills, notes). */
function merge(into: Report, r: Report): void {
  for (const [k, v] of Object.entries(r.faults)) bump(into.faults, k, v);
  into.checks += r.checks;
  into.kills += r.kills;
  into.violations.push(...r.violations);
  into.errors.push(...r.errors);
  for (const n of r.notes) note(into, n);
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const t0 = performance.now();
    const a = parseArgs(process.argv.slice(2), ['seed', 'soak-minutes', 'min-kills', 'max-minutes'], ['quick']);
    const quick = a.flag('quick');
    const seed = a.get('seed') === undefined ? Date.now() % 1e9 : a.num('seed', 1);
    const log = (l: string) => console.log(l);
    const out: Report[] = [];
    const step = async (r: Promise<Report>) => {
      const report = await r;
      printReport(report);
      out.push(report);
    };
    await step(crashStorm({ rounds: quick ? 3 : 50, seed, log }));
    await step(storageFaults({ rounds: quick ? 4 : 8, seed, log }));
    await step(tokenFaults({ rounds: quick ? 1 : 4, seed, log }));
    await step(rollbackStorm({ rounds: quick ? 2 : 10, seed, log }));
    await step(races({ trials: quick ? 1 : 10, attackers: quick ? 32 : 64, seed, log }));
    await step(replays({ log }));
    await step(stranger({ rounds: quick ? 2 : 20, log }));
    const t = await timing({ samples: quick ? 200 : 2000, seed, log });
    printReport(t);
    await step(quick ? fleetStorm({ rounds: 1, seed, log, members: 3, actions: ['kill-leader', 'cut', 'restore', 'clone'] }) : fleetStorm({ rounds: 6, seed, log }));
    await step(quick ? fleetVaultStorm({ rounds: 1, seed, log, members: 3, actions: ['kill-leader', 'cut', 'clone', 'restore'], quiet: 1 }) : fleetVaultStorm({ rounds: 4, seed, log }));
    const minutes = a.num('soak-minutes', 0);
    if (minutes > 0) await step(soak({ minutes, seed, log }));
    const single = () => out.filter((r) => r.name.startsWith('crash storm')).reduce((s, r) => s + r.kills, 0);
    // the replication fleet storm's and the fleet vault storm's
    const fleet = () => out.filter((r) => r.name.startsWith('fleet storm') || r.name.startsWith('fleet vault storm')).reduce((s, r) => s + r.kills, 0);
    const minKills = a.num('min-kills', 0);
    const maxMs = a.num('max-minutes', Infinity) * 60_000;
    let unmet = '';
    if (single() + fleet() < minKills) {
      // more rounds of the three storms by turns, until the target or the time limit
      const extra = { crash: newReport('crash storm (rounds for --min-kills)'), fleet: newReport('fleet storm (rounds for --min-kills)'), vault: newReport('fleet vault storm (rounds for --min-kills)') };
      out.push(extra.crash, extra.fleet, extra.vault);
      const runs = { crash: 0, fleet: 0, vault: 0 };
      for (let turn = 1; single() + fleet() < minKills; turn++) {
        if (performance.now() - t0 > maxMs) {
          unmet = `--min-kills ${minKills} not met: ${single() + fleet()} SIGKILLs when --max-minutes ${a.get('max-minutes')} ran out`;
          break;
        }
        const which = (['crash', 'fleet', 'vault'] as const)[(turn - 1) % 3]!;
        const s = seed + turn;
        const into = extra[which];
        const progress = (r: Report, round: number) => {
          const now = (which === 'crash' ? single() : fleet()) + r.kills;
          const other = which === 'crash' ? fleet() : single();
          const total = now + other;
          const name = which === 'crash' ? 'crash storm' : which === 'fleet' ? 'fleet storm' : 'fleet vault storm';
          const violations = out.reduce((x, y) => x + y.violations.length, 0) + r.violations.length;
          const errors = out.reduce((x, y) => x + y.errors.length, 0) + r.errors.length;
          console.log(`progress: ${name} seed ${s} round ${round}: SIGKILLs ${total} of ${minKills} (single vault ${which === 'crash' ? now : other}, fleet ${which === 'crash' ? other : now}), violations ${violations}, errors ${errors}, ${Math.round((performance.now() - t0) / 1000)} s`);
        };
        const r = which === 'crash' ? await crashStorm({ rounds: 2, seed: s, log, progress }) : which === 'fleet' ? await fleetStorm({ rounds: 3, seed: s, log, progress }) : await fleetVaultStorm({ rounds: 3, seed: s, log, progress, roundsPerFleet: 3 });
        merge(into, r);
        runs[which]++;
        into.stats['runs (seeds from S+1, by turns)'] = runs[which];
        if (r.violations.length || r.errors.length) printReport(r);
      }
      printReport(extra.crash);
      printReport(extra.fleet);
      printReport(extra.vault);
    }
    console.log('\n== summary');
    for (const r of out) console.log(`${r.violations.length || r.errors.length ? 'FAIL' : 'ok  '} ${r.name}: ${r.checks} checks, ${r.violations.length} violations${r.errors.length ? `, ${r.errors.length} errors` : ''}${r.kills ? `, ${r.kills} SIGKILLs` : ''}`);
    console.log(`SIGKILLs delivered: single vault ${single()}, fleet ${fleet()}, total ${single() + fleet()}${minKills ? ` (target ${minKills}${unmet ? ': NOT MET' : ': met'})` : ''}`);
    console.log(`checks ${out.reduce((x, y) => x + y.checks, 0)}, violations ${out.reduce((x, y) => x + y.violations.length, 0)}, errors ${out.reduce((x, y) => x + y.errors.length, 0)}, wall ${Math.round((performance.now() - t0) / 1000)} s, seed ${seed}`);
    if (unmet) console.log(unmet);
    return out;
  }, { print: false });
}
