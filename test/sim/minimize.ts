/**
 * Shrinks a failing schedule: the same seed, run again with one fault kind off at a time, keeps a
 * kind off whenever the run still fails. The result names the fewest fault kinds this seed needs
 * and the trace of that run up to the first violation.
 */
import { FAULTS, runSchedule, type FaultKind, type ScheduleOptions, type ScheduleResult } from './world.ts';

export interface Minimal {
  readonly faults: readonly FaultKind[];
  readonly result: ScheduleResult;
}

export async function minimize(o: ScheduleOptions): Promise<Minimal> {
  let faults: FaultKind[] = [...(o.faults ?? FAULTS)];
  let result = await runSchedule({ ...o, faults, trace: true });
  if (result.violations.length === 0) return { faults, result };
  for (const k of [...faults]) {
    const fewer = faults.filter((x) => x !== k);
    const r = await runSchedule({ ...o, faults: fewer, trace: true });
    if (r.violations.length > 0) {
      faults = fewer;
      result = r;
    }
  }
  return { faults, result };
}

/** The command that runs one seed again, exactly. */
export function reproduce(o: ScheduleOptions, faults: readonly FaultKind[]): string {
  const parts = ['npm run sim --', `--seed ${o.seed}`, '--schedules 1'];
  if (o.n) parts.push(`--n ${o.n}`);
  if (o.broken) parts.push(`--broken ${o.broken}`);
  if (o.charters !== undefined) parts.push(`--charters ${o.charters ? 'on' : 'off'}`);
  if (o.shrinkFirst) parts.push('--shrink-first');
  if (o.effectsOnly) parts.push('--effects-only');
  if (o.steps !== undefined) parts.push(`--steps ${o.steps}`);
  if (o.liveness) parts.push(`--liveness ${o.liveness}`);
  if (faults.length !== FAULTS.length) parts.push(`--faults ${faults.join(',') || 'none'}`);
  return parts.join(' ');
}
