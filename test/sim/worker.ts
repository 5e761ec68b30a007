/** A simulation worker thread: runs the seeds it is given and posts one summary per schedule. */
import { parentPort, workerData } from 'node:worker_threads';
import { runSchedule, type ScheduleOptions } from './world.ts';

const { seeds, base } = workerData as { seeds: number[]; base: Omit<ScheduleOptions, 'seed'> };
for (const seed of seeds) {
  const r = await runSchedule({ ...base, seed });
  parentPort!.postMessage({ seed, n: r.n, violations: r.violations, stats: r.stats });
}
