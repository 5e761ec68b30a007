/**
 * Product bugs the fuzzers found that are reported and not fixed yet. A violation that matches
 * one (same target, same kind, message matching) is counted as "known": the driver prints it and
 * still saves the input, but it does not fail a run unless `--strict` (and test/fuzz.test.ts
 * fails only on violations that match none). Keep every match narrow, so that a new bug of the
 * same kind still fails; delete an entry once the product is fixed, and its regression input in
 * test/fuzz/corpus-regressions/ then guards the fix.
 */
import type { Finding } from './lib/engine.ts';

export interface KnownIssue {
  id: string;
  target: string;
  kind: string;
  /** Matched against the violation's message. */
  match: RegExp;
  summary: string;
}

export const KNOWN_ISSUES: readonly KnownIssue[] = [
];

export function knownIssueOf(f: Pick<Finding, 'target' | 'kind' | 'message'>): KnownIssue | undefined {
  return KNOWN_ISSUES.find((k) => k.target === f.target && k.kind === f.kind && k.match.test(f.message));
}
