/**
 * The ledger of the multi-process fleet test (processes.test.ts): what the clients were told
 * (acknowledgements) against the committed history the members wrote (each folder's
 * history.jsonl: one line per entry it learned committed). Its own statement of the rules,
 * like the simulation's oracle (test/sim/oracle.ts), on what the processes left on disk.
 */

export type OpJson = Record<string, string | number>;

export interface Ack {
  readonly index: number;
  readonly hash: string;
  readonly op: OpJson;
  /** Which process answered (for the report). */
  readonly by: string;
}

export interface LedgerResult {
  readonly violations: string[];
  /** Committed entries known (from every trail). */
  readonly entries: number;
}

/**
 * Checks: the trails agree at every index (no fork); every acknowledged operation is in the
 * history at the index and hash it was acknowledged with; each guess number of a registration
 * was acknowledged to one session only; within a registration the history numbers guesses 1, 2,
 * 3... (none is granted twice, none taken back), attempts used never pass the limit and go down
 * only by a reset that follows a charge (a new registration starts again).
 */
export function checkLedger(trails: readonly { name: string; text: string }[], acks: readonly Ack[]): LedgerResult {
  const violations: string[] = [];
  const history = new Map<number, { hash: string; ops: string[] }>();
  for (const t of trails) {
    for (const line of t.text.split('\n')) {
      if (!line) continue;
      const e = JSON.parse(line) as { index: number; hash: string; ops: unknown[] };
      const had = history.get(e.index);
      if (had && had.hash !== e.hash) violations.push(`fork at entry ${e.index}: ${had.hash.slice(0, 8)} and ${e.hash.slice(0, 8)} (${t.name})`);
      else history.set(e.index, { hash: e.hash, ops: e.ops.map((o) => JSON.stringify(o)) });
    }
  }
  for (const a of acks) {
    const e = history.get(a.index);
    if (!e) violations.push(`acknowledged ${JSON.stringify(a.op)} at entry ${a.index} (by ${a.by}) is in no member's committed history`);
    else if (e.hash !== a.hash || !e.ops.includes(JSON.stringify(a.op))) violations.push(`acknowledged ${JSON.stringify(a.op)} at entry ${a.index} (by ${a.by}) is not what the history holds there`);
  }
  // the registration an index falls in: the last register of the id at or before it
  const registrations = new Map<string, number[]>();
  for (const [i, e] of [...history].sort(([a], [b]) => a - b)) {
    for (const text of e.ops) {
      const op = JSON.parse(text) as OpJson;
      if (op.kind === 'register' || op.kind === 'replace') registrations.set(String(op.id), [...(registrations.get(String(op.id)) ?? []), i]);
    }
  }
  const regAt = (id: string, index: number): number => (registrations.get(id) ?? []).filter((i) => i <= index).at(-1) ?? -1;
  const granted = new Map<string, number>();
  for (const a of acks) {
    if (a.op.kind !== 'charge') continue;
    const key = `${a.op.id} registered at ${regAt(String(a.op.id), a.index)}, guess ${a.op.guess}`;
    const s = granted.get(key);
    if (s !== undefined && s !== a.op.session) violations.push(`${key}: acknowledged to sessions ${s} and ${a.op.session}`);
    granted.set(key, a.op.session as number);
  }
  // entry by entry, per record: guesses numbered 1, 2, 3... within a registration; attempts used up
  // by one per charge, never above the limit, down only by a reset that follows a charge
  const rec = new Map<string, { used: number; total: number; limit: number }>();
  const top = Math.max(0, ...history.keys());
  for (let i = 1; i <= top; i++) {
    const e = history.get(i);
    if (!e) {
      rec.clear(); // a gap in every trail: the walk starts again after it
      continue;
    }
    for (const text of e.ops) {
      const op = JSON.parse(text) as OpJson;
      const id = String(op.id);
      const r = rec.get(id);
      if (op.kind === 'register' || op.kind === 'replace') rec.set(id, { used: 0, total: 0, limit: Number(op.limit) });
      else if (op.kind === 'charge' && r) {
        if (Number(op.guess) !== r.total + 1) violations.push(`entry ${i}: guess ${op.guess} of ${id} after guess ${r.total}`);
        if (r.used + 1 > r.limit) violations.push(`entry ${i}: ${id} charged past its limit`);
        rec.set(id, { ...r, used: r.used + 1, total: Number(op.guess) });
      } else if (op.kind === 'reset' && r) {
        if (r.used === 0) violations.push(`entry ${i}: a reset of ${id} with nothing charged`);
        rec.set(id, { ...r, used: 0 });
      }
    }
  }
  return { violations, entries: history.size };
}
