/**
 * The benches' statistics, in one place: the median of a sample, the sample at a percentile, and
 * the middle item of a list ranked by one of its numbers (the window whose latencies a report
 * shows beside the median rate). No imports. The adversarial scripts keep their
 * own statistics (test/adversarial/lib/common.ts): no test imports bench/ except
 * test/bench/bench-lib.test.ts, which checks the benches themselves.
 */

/** The median; for an even count, the mean of the two middle values. NaN for an empty sample. */
export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The nearest-rank percentile (p in 0..100) of an already sorted sample. NaN for an empty one. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** The middle item of `xs` ranked by `rank` (the upper one of the two for an even count). */
export function middleBy<T>(xs: readonly T[], rank: (x: T) => number): T {
  if (!xs.length) throw new RangeError('middleBy of an empty list');
  return [...xs].sort((a, b) => rank(a) - rank(b))[xs.length >> 1]!;
}
