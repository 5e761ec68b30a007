/**
 * The fleet storm's ledger (test/adversarial/fleet-storm.ts): what clients sent and were told,
 * against what the members wrote: the committed history (each folder's `history.jsonl`, one line
 * per entry a member learned committed, gathered at every check and never forgotten, so a restored
 * folder can not take a line back) and each member's durable state (`state.bin`: its log and, at
 * its commit point, its records). Its own statement of the rules (docs/fleet.md, "Invariants and
 * the simulation"; enclave/fleet/rules.ts is the code it checks):
 *
 * - committed histories agree: at every index, every trail and every member's durable log up to
 *   its commit hold one hash (one is a prefix of the other);
 * - no acknowledged operation lost: each is in the history at the index and hash it was
 *   acknowledged with, and the durable logs of a majority of member ids hold it (a hash at or
 *   after its index that matches the history's: the chain commits to everything before);
 * - each guess granted once: a guess number of a (record, registration) acknowledged to one
 *   session only; the history numbers a registration's guesses 1, 2, 3... without a gap or a repeat
 *   (an index no trail holds may hide a registration: across one, both checks start again);
 * - no guess refunded: attempts used go down only by a committed reset that follows a charge,
 *   and only a reset (or charge, or registration) a client sent; a member's durable record at a
 *   version says what the history says at that version (used, total, limit, status);
 * - never more than `limit` charges between resets.
 * Each violation is reported once, with the seed, the round and where it was seen.
 */
import { decodeDurable } from '../../../enclave/fleet/durable.ts';
import { recordsAt } from '../../../enclave/fleet/log.ts';
import type { RecordState } from '../../../enclave/fleet/rules.ts';
import type { Report } from './common.ts';

export type OpJson = Record<string, string | number>;

export interface FleetAck {
  readonly index: number;
  readonly hash: string;
  readonly op: OpJson;
  /** The process that answered (a member, a restored member, a clone). */
  readonly by: string;
  readonly round: number;
}

/** What the ledger reads of one member folder's durable state. */
export interface DurableView {
  /** Where it was read (a member, a clone's folder). */
  readonly name: string;
  /** The member id whose copy it is; `counts`: a member's own folder (a majority is counted over these). */
  readonly member: number;
  readonly counts: boolean;
  readonly commit: number;
  /** Chain hashes the log holds: its snapshot's point and every entry's. */
  readonly points: ReadonlyMap<number, string>;
  readonly tip: number;
  /** Its records at its commit point. */
  readonly records: ReadonlyMap<string, RecordState>;
}

/** Reads a member folder's `state.bin` (null when the member never wrote one). Throws what the decoder throws. */
export function durableView(bytes: Uint8Array | null, o: { name: string; member: number; n: number; counts: boolean }): DurableView | null {
  if (bytes === null) return null;
  const d = decodeDurable(bytes, o.member, o.n);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const points = new Map<number, string>([[d.base.index, hex(d.base.hash)]]);
  for (const e of d.entries) points.set(e.index, hex(e.hash));
  const tip = d.entries.at(-1)?.index ?? d.base.index;
  return { name: o.name, member: o.member, counts: o.counts, commit: d.commit, points, tip, records: recordsAt(d, d.commit) };
}

interface Line {
  readonly hash: string;
  readonly ops: readonly OpJson[];
  readonly texts: readonly string[];
  readonly from: string;
}

type ModelRecord = { version: number; status: string; limit: number; used: number; total: number };

export class FleetLedger {
  private readonly history = new Map<number, Line>();
  private readonly acks: FleetAck[] = [];
  private readonly ackHash = new Map<number, string>();
  private readonly sent = new Set<string>();
  private readonly seen = new Set<string>();
  private round = 0;
  /** At the last check: indices below the highest known that no trail holds; acknowledged charges whose registration a gap hides. */
  gaps = 0;
  undetermined = 0;
  /** Committed entries known, operations acknowledged. */
  get entries(): number {
    return this.history.size;
  }
  get acknowledged(): number {
    return this.acks.length;
  }

  constructor(
    private readonly report: Report,
    private readonly o: { seed: number; fleet: string; n: number },
  ) {}

  private violation(what: string, where: string): void {
    if (this.seen.has(what)) return;
    this.seen.add(what);
    this.report.violations.push(`seed ${this.o.seed} round ${this.round} (${this.o.fleet}): ${what} [${where}]`);
  }

  /** An intent a client is about to send (a charge, reset or registration in the history must be one). */
  sentIntent(intent: OpJson): void {
    this.sent.add(sentKey(intent));
  }

  ack(a: FleetAck): void {
    this.acks.push(a);
    if (!this.ackHash.has(a.index)) this.ackHash.set(a.index, a.hash);
  }

  /** One folder's history.jsonl as it is now, read after `round`; its lines join what the ledger knows. */
  addTrail(name: string, text: string, round: number): void {
    this.round = round;
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      let e: { index: number; hash: string; ops: OpJson[] };
      try {
        e = JSON.parse(raw);
      } catch {
        // the last line of a member killed while appending it
        continue;
      }
      const had = this.history.get(e.index);
      if (had && had.hash !== e.hash) this.violation(`fork at entry ${e.index}: ${had.hash.slice(0, 8)} (${had.from}) and ${e.hash.slice(0, 8)}`, name);
      else if (!had) this.history.set(e.index, { hash: e.hash, ops: e.ops, texts: e.ops.map((op) => JSON.stringify(op)), from: name });
    }
  }

  /** The hash the history (or an acknowledgement, which the checks tie to it) gives index `i`. */
  private known(i: number): string | undefined {
    return this.history.get(i)?.hash ?? this.ackHash.get(i);
  }

  /** True when `v`'s log holds entry `i` with `hash`: its hash at `i`, or at a later point it holds, matches. */
  private holds(v: DurableView, i: number, hash: string): boolean {
    if (i > v.tip) return false;
    const at = v.points.get(i);
    if (at !== undefined) return at === hash;
    for (const [k, h] of v.points) if (k >= i && this.known(k) !== undefined) return this.known(k) === h;
    return false;
  }

  /**
   * Checks everything known against the members' durable states now (`views`: every member
   * folder and clone folder that has a state). Returns the number of invariant checks run.
   */
  check(round: number, views: readonly DurableView[]): number {
    this.round = round;
    let checks = 0;
    // committed histories agree: each durable log up to its commit point against the history
    for (const v of views) {
      for (const [i, h] of v.points) {
        if (i > v.commit || i === 0) continue;
        const k = this.known(i);
        checks++;
        if (k !== undefined && k !== h) this.violation(`${v.name}'s committed log holds ${h.slice(0, 8)} at entry ${i}, the history ${k.slice(0, 8)}`, v.name);
      }
    }
    // every acknowledgement in the history and held by a majority of member ids
    const majority = Math.floor(this.o.n / 2) + 1;
    for (const a of this.acks) {
      checks++;
      const e = this.history.get(a.index);
      const what = `acknowledged ${JSON.stringify(a.op)} at entry ${a.index} by ${a.by} (round ${a.round})`;
      if (!e) this.violation(`${what} is in no member's committed history`, a.by);
      else if (e.hash !== a.hash || !e.texts.includes(JSON.stringify(a.op))) this.violation(`${what} is not what the history holds there`, a.by);
      const holders = new Set(views.filter((v) => v.counts && this.holds(v, a.index, a.hash)).map((v) => v.member));
      if (holders.size < majority) this.violation(`${what} is held by ${holders.size} of ${this.o.n} members' durable logs (${[...holders].map((m) => `m${m}`).join(' ') || 'none'}), not a majority`, a.by);
    }
    // the registration an op falls in: the last register or replace of the id before it, by entry
    // and by position in the entry (one entry may hold a charge, a new registration and a charge);
    // acknowledged registrations count where the history lost their line
    const registrations = new Map<string, number[]>();
    const addReg = (id: string, at: number) => registrations.set(id, [...(registrations.get(id) ?? []), at]);
    const sorted = [...this.history].sort(([x], [y]) => x - y);
    for (const [i, e] of sorted) e.ops.forEach((op, j) => {
      if (op.kind === 'register' || op.kind === 'replace') addReg(String(op.id), i * 1e4 + j);
    });
    for (const a of this.acks) if ((a.op.kind === 'register' || a.op.kind === 'replace') && !this.history.has(a.index)) addReg(String(a.op.id), a.index * 1e4);
    for (const list of registrations.values()) list.sort((x, y) => x - y);
    // indices no trail holds: a member journals only what its log still holds when it learns a
    // commit (hsm/fleet/device.ts), and a restored folder loses lines; a registration may hide there
    const top = sorted.at(-1)?.[0] ?? 0;
    const missing: number[] = [];
    for (let i = 1; i <= top; i++) if (!this.history.has(i)) missing.push(i);
    this.gaps = missing.length;
    const gapIn = (lo: number, hi: number) => missing.some((i) => i > lo && i <= hi);
    const granted = new Map<string, number>();
    this.undetermined = 0;
    for (const a of this.acks) {
      if (a.op.kind !== 'charge') continue;
      const e = this.history.get(a.index);
      // its position in its entry (an op the history does not hold there, reported above, is taken at the entry's start)
      const j = Math.max(0, e?.texts.indexOf(JSON.stringify(a.op)) ?? 0);
      const at = (registrations.get(String(a.op.id)) ?? []).filter((x) => x < a.index * 1e4 + j).at(-1);
      if (gapIn(at === undefined ? 0 : Math.floor(at / 1e4), a.index)) {
        this.undetermined++; // a registration may lie in the gap: which one this guess belongs to is unknown
        continue;
      }
      checks++;
      const reg = at === undefined ? 'before the history known' : `at entry ${Math.floor(at / 1e4)} op ${at % 1e4}`;
      const key = `${a.op.id} registered ${reg}, guess ${a.op.guess}`;
      const s = granted.get(key);
      if (s !== undefined && s !== a.op.session) this.violation(`${key}: acknowledged to sessions ${s} and ${a.op.session}`, a.by);
      granted.set(key, Number(a.op.session));
    }
    // entry by entry, per record: the model at every version
    const model = new Map<string, ModelRecord>();
    const atVersion = new Map<string, ModelRecord>();
    for (let i = 1; i <= top; i++) {
      const e = this.history.get(i);
      if (!e) {
        model.clear(); // a gap in every trail: the walk starts again after it
        continue;
      }
      for (const op of e.ops) {
        if (op.kind === 'admit') continue;
        checks++;
        const id = String(op.id);
        const r = model.get(id);
        const where = `entry ${i}`;
        if ((op.kind === 'charge' || op.kind === 'reset' || op.kind === 'register' || op.kind === 'replace') && !this.sent.has(sentKey(op))) this.violation(`entry ${i}: ${JSON.stringify(op)} was sent by no client`, where);
        let next: ModelRecord | undefined;
        if (op.kind === 'register' || op.kind === 'replace') next = { version: Number(op.base) + 1, status: 'registered', limit: Number(op.limit), used: 0, total: 0 };
        else if (!r) next = undefined; // a record first seen after a gap: unknown until it is registered again
        else if (op.kind === 'charge') {
          if (Number(op.guess) !== r.total + 1) this.violation(`entry ${i}: guess ${op.guess} of ${id} after guess ${r.total} (a guess granted twice or taken back)`, where);
          if (r.used + 1 > r.limit) this.violation(`entry ${i}: ${id} charged past its limit ${r.limit}`, where);
          next = { ...r, version: Number(op.base) + 1, used: r.used + 1, total: Number(op.guess) };
        } else if (op.kind === 'reset') {
          if (r.used === 0) this.violation(`entry ${i}: a reset of ${id} with nothing charged`, where);
          next = { ...r, version: Number(op.base) + 1, used: 0 };
        } else if (op.kind === 'lock') next = { ...r, version: Number(op.base) + 1, status: 'locked' };
        else if (op.kind === 'delete') next = { ...r, version: Number(op.base) + 1, status: 'deleted' };
        else next = { ...r, version: Number(op.base) + 1 };
        if (r && Number(op.base) !== r.version) this.violation(`entry ${i}: ${JSON.stringify(op)} on ${id} at version ${r.version}`, where);
        if (next) {
          model.set(id, next);
          atVersion.set(`${id}@${next.version}`, next);
        } else model.delete(id);
      }
    }
    // each member's durable records against the history at the same version: a lower count of
    // attempts used at a version is a refunded guess
    for (const v of views) {
      for (const [id, rec] of v.records) {
        const m = atVersion.get(`${id}@${rec.version}`);
        if (!m) continue;
        checks++;
        if (rec.used < m.used) this.violation(`${v.name} holds ${id} at version ${rec.version} with ${rec.used} attempts used, the history ${m.used}: a refunded guess`, v.name);
        else if (rec.used !== m.used || rec.total !== m.total || rec.limit !== m.limit || rec.status !== m.status) this.violation(`${v.name} holds ${id} at version ${rec.version} as ${JSON.stringify(rec)}, the history as ${JSON.stringify(m)}`, v.name);
      }
    }
    return checks;
  }
}

function sentKey(op: OpJson): string {
  return op.kind === 'charge' || op.kind === 'reset' ? `${op.kind} ${op.id} ${op.session}` : op.kind === 'register' || op.kind === 'replace' ? `${op.kind} ${op.id} ${op.limit}` : `${op.kind} ${op.id}`;
}
