/**
 * The fleet simulation's driver: seeded schedules of a whole fleet in one process, every
 * invariant checked after every step (docs/fleet.md, "Simulation").
 *
 *   npm run sim -- --schedules N --seed S [--jobs J] [--n 3|5] [--steps T] [--faults a,b,...]
 *                  [--charters on|off] [--shrink-first] [--broken count-unadmitted|half-quorum|skip-mac|shared-key|charter-two|reform-majority]
 *                  [--liveness T] [--effects-only] [--trace]
 *
 *   --schedules  how many schedules (default 1000); schedule i runs seed S + i (default S = 1)
 *   --jobs       worker threads (default 1; seeds are split between them, results are the same)
 *   --n          members (default: each seed picks 3 or 5)
 *   --steps      ticks of faults per schedule (default 240, then 60 quiet ticks)
 *   --liveness   then every member running again, the network healed: within T ticks a leader must
 *                commit and every member follow it (world.ts ScheduleOptions `liveness`; default off)
 *   --faults     fault kinds on (default all: drop,duplicate,delay,replay,partition,crash,restore,clone)
 *   --charters   charter changes (a member added, one removed, twice) in every schedule (on), in
 *                none (off); default: in about half, drawn per seed (world.ts ScheduleOptions)
 *   --shrink-first  the charter changes start with a removal (3 -> 2 -> 3 -> 2 -> 3: a member
 *                replaced after it is gone), not an addition
 *   --broken     a deliberately broken rule (positive control: the run must fail)
 *   --trace      print the whole trace of each schedule (with --schedules 1)
 *
 * Prints progress and a summary. On a violation: the failing seed, its violations, the fewest
 * fault kinds that still make that seed fail, the trace up to the violation and the command that
 * reproduces it; exits 1.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { fleetFaultName } from '../../enclave/fleet/faults.ts';
import { BROKEN_RULES, type BrokenRule } from '../../enclave/fleet/member.ts';
import { minimize, reproduce } from './minimize.ts';
import { FAULTS, runSchedule, type FaultKind, type ScheduleOptions } from './world.ts';

interface Args {
  schedules: number;
  seed: number;
  jobs: number;
  base: Omit<ScheduleOptions, 'seed'>;
  trace: boolean;
}

function parse(argv: string[]): Args {
  const a: Args = { schedules: 1000, seed: 1, jobs: 1, base: {}, trace: false };
  const base: { -readonly [K in keyof ScheduleOptions]?: ScheduleOptions[K] } = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    const num = (): number => {
      const v = Number(val());
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${k}: not a whole number`);
      return v;
    };
    if (k === '--schedules') a.schedules = num();
    else if (k === '--seed') a.seed = num();
    else if (k === '--jobs') a.jobs = Math.max(1, Math.min(num(), availableParallelism()));
    else if (k === '--n') {
      const n = num();
      if (n !== 3 && n !== 5) throw new Error('--n: 3 or 5');
      base.n = n;
    } else if (k === '--steps') base.steps = num();
    else if (k === '--liveness') base.liveness = num();
    else if (k === '--faults') {
      const v = val();
      const list = v === 'none' ? [] : v.split(',');
      for (const f of list) if (!(FAULTS as readonly string[]).includes(f)) throw new Error(`--faults: unknown kind ${f}`);
      base.faults = list as FaultKind[];
    } else if (k === '--broken') {
      const v = val();
      if (!(BROKEN_RULES as readonly string[]).includes(v)) throw new Error(`--broken: one of ${BROKEN_RULES.join(', ')}`);
      base.broken = v as BrokenRule;
    } else if (k === '--charters') {
      const v = val();
      if (v !== 'on' && v !== 'off') throw new Error('--charters: on or off');
      base.charters = v === 'on';
    } else if (k === '--shrink-first') base.shrinkFirst = true;
    else if (k === '--effects-only') base.effectsOnly = true;
    else if (k === '--trace') a.trace = true;
    else throw new Error(`unknown option ${k}`);
  }
  a.base = base;
  return a;
}

interface Summary {
  seed: number;
  n: number;
  violations: readonly string[];
  stats: Awaited<ReturnType<typeof runSchedule>>['stats'];
}

async function runAll(args: Args, onResult: (s: Summary) => void): Promise<void> {
  const seeds = Array.from({ length: args.schedules }, (_, i) => args.seed + i);
  if (args.jobs === 1) {
    for (const seed of seeds) {
      const r = await runSchedule({ ...args.base, seed, trace: args.trace });
      if (args.trace) console.log(r.trace.join('\n'));
      onResult(r);
    }
    return;
  }
  const url = new URL('./worker.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
  await Promise.all(
    Array.from({ length: args.jobs }, (_, j) => {
      const mine = seeds.filter((_, i) => i % args.jobs === j);
      return new Promise<void>((resolve, reject) => {
        const w = new Worker(boot, { eval: true, workerData: { seeds: mine, base: args.base } });
        w.on('message', onResult);
        w.on('error', reject);
        w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
      });
    }),
  );
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`sim: ${(e as Error).message}`);
    process.exit(2);
  }
  console.log(`fleet simulation: ${args.schedules} schedules from seed ${args.seed}, ${args.jobs} job(s), Node ${process.version}${args.base.broken ? `, BROKEN RULE ${args.base.broken}` : ''}`);
  const t0 = performance.now();
  const failing: Summary[] = [];
  const totals = { done: 0, n3: 0, n5: 0, acked: 0, committed: 0, messages: 0, reforms: 0, crashes: 0, restores: 0, clones: 0, partitions: 0, forged: 0, charters: 0, livenessServed: 0, livenessWaived: 0, livenessOperator: 0 };
  const refused = new Map<string, number>();
  const step = Math.max(1, Math.floor(args.schedules / 10));
  await runAll(args, (s) => {
    totals.done++;
    if (s.n === 3) totals.n3++;
    else totals.n5++;
    for (const k of ['acked', 'committed', 'messages', 'reforms', 'crashes', 'restores', 'clones', 'partitions', 'forged', 'charters', 'livenessServed', 'livenessWaived', 'livenessOperator'] as const) totals[k] += s.stats[k];
    for (const [c, v] of Object.entries(s.stats.refused)) refused.set(c, (refused.get(c) ?? 0) + v);
    if (s.violations.length > 0) failing.push(s);
    if (totals.done % step === 0 || totals.done === args.schedules) {
      console.log(`  ${totals.done}/${args.schedules} schedules, ${failing.length} failing, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  });
  const secs = (performance.now() - t0) / 1000;
  console.log(`\n${totals.done} schedules (${totals.n3} of 3 members, ${totals.n5} of 5) in ${secs.toFixed(1)} s`);
  console.log(`  answered changes ${totals.acked}, committed entries ${totals.committed}, messages ${totals.messages}, re-forms ${totals.reforms}, charter changes committed ${totals.charters}`);
  console.log(`  faults: ${totals.crashes} crashes, ${totals.restores} restores from old images, ${totals.clones} clones, ${totals.partitions} partitions, ${totals.forged} forged messages delivered (each refused with a typed fault, or a violation)`);
  if (args.base.liveness) console.log(`  liveness (every member running again, the network healed, ${args.base.liveness} ticks): ${totals.livenessServed} served, ${totals.livenessOperator} served after the operator approved a re-form without the members it waited for, ${totals.livenessWaived} waived (an uncommitted addition whose member has no process, or a member whose log predates a charter change during a re-form, with no re-form the operator can approve; or the fleet serves and such a member can not hear its leader: docs/fleet.md "Limits of this slice")`);
  console.log(`  refused messages: ${[...refused].sort().map(([c, v]) => `${fleetFaultName(Number(c))} ${v}`).join(', ')}`);
  if (failing.length === 0) {
    console.log('  violations: 0');
    return;
  }
  failing.sort((a, b) => a.seed - b.seed);
  const first = failing[0]!;
  console.log(`  VIOLATIONS in ${failing.length} schedule(s); seeds ${failing.slice(0, 20).map((f) => f.seed).join(', ')}`);
  console.log(`\nfirst failing seed ${first.seed} (${first.n} members):`);
  for (const v of first.violations) console.log(`  ${v}`);
  const opts: ScheduleOptions = { ...args.base, seed: first.seed };
  const m = await minimize(opts);
  console.log(`\nfewest fault kinds that still fail: ${m.faults.join(', ') || 'none'}; first violation at tick ${m.result.failedAt}`);
  for (const v of m.result.violations) console.log(`  ${v}`);
  console.log('\ntrace (last 60 steps up to the violation):');
  console.log(m.result.trace.slice(-60).join('\n'));
  console.log(`\nreproduce: ${reproduce(opts, m.faults)}`);
  process.exitCode = 1;
}

await main();
