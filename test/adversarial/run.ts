/**
 * Runs every adversarial script in turn and prints their reports (npm run adversarial):
 *
 *   npx tsx test/adversarial/run.ts [--quick] [--seed S] [--soak-minutes M]
 *
 * Default sizes: crash storm 50 rounds, storage faults 8 rounds, token faults 4 rounds, rollback
 * storm 10 rounds, races 10 trials of 64 attackers, replays, strangers 20 rounds, timing 2000 samples (reported, not
 * gated); the soak only with --soak-minutes. `--quick`: the CI sizes of test/adversarial.test.ts.
 * Exit 1 when any script found a violation.
 */
import { isMain, parseArgs, printReport, runMain } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { crashStorm } from './crash-storm.ts';
import { races } from './races.ts';
import { replays } from './replays.ts';
import { rollbackStorm } from './rollback-storm.ts';
import { soak } from './soak.ts';
import { stranger } from './stranger.ts';
import { storageFaults } from './storage-faults.ts';
import { timing } from './timing.ts';
import { tokenFaults } from './token-faults.ts';

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['seed', 'soak-minutes'], ['quick']);
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
    const minutes = a.num('soak-minutes', 0);
    if (minutes > 0) await step(soak({ minutes, seed, log }));
    console.log('\n== summary');
    for (const r of out) console.log(`${r.violations.length ? 'FAIL' : 'ok  '} ${r.name}: ${r.checks} checks, ${r.violations.length} violations`);
    return out;
  }, { print: false });
}
