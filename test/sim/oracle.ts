/**
 * The simulation's oracle: its own model of the vault rules and of the one committed history,
 * checked after every step against what every process of every member holds and what the
 * leaders answered (docs/fleet.md, "Invariants"). It reads the members' state; members never
 * read it.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { hashAt, type DurableState } from '../../enclave/fleet/log.ts';
import type { Answer, FleetEvent } from '../../enclave/fleet/member.ts';
import type { Op } from '../../enclave/fleet/rules.ts';
import type { Config, Entry } from '../../enclave/fleet/wire.ts';

interface ModelRecord {
  status: 'registered' | 'locked' | 'deleted';
  limit: number;
  used: number;
  total: number;
  /** Entry and position of the op that registered it (`index.k`): one registration's guesses are numbered from 1. */
  reg: string;
}

/** What the oracle knows of a process: its member id, incarnation and every entry it ever made durable. */
export interface ProcView {
  readonly pid: number;
  readonly id: number;
  readonly inc: string;
  readonly appended: ReadonlySet<string>;
}

const hex = bytesToHex;
const majority = (n: number): number => Math.floor(n / 2) + 1;

export class Oracle {
  readonly violations: string[] = [];
  /** index → entry hash of the one committed history. */
  private readonly history = new Map<number, string>();
  private top = 0;
  private readonly model = new Map<string, ModelRecord>();
  /** Canonical configurations: each applies to entries after `after`; `members`: the charter's member ids (a charter change applies to its own entry). */
  private readonly configs: OracleConfig[] = [];
  private readonly reforms = new Map<number, string>();
  private readonly grants = new Map<string, number>();
  /** Each committed charge (entry, record, guess, session) → the guess it grants (record / registration entry / guess number); one entry may re-register a record between two charges. */
  private readonly chargeKeys = new Map<string, string>();
  acked = 0;
  committed = 0;

  /** `effectsOnly`: skip the direct quorum check at each commit, so that only consequences (forks, double grants, lost answers, broken rules) count. */
  constructor(
    private readonly n: number,
    genesisHash: Uint8Array,
    private readonly effectsOnly = false,
  ) {
    this.history.set(0, hex(genesisHash));
    this.configs.push({ after: 0, epoch: 0, admitted: new Array<null>(n).fill(null), members: Array.from({ length: n }, (_, i) => i), serial: 0 });
  }

  private fail(msg: string): void {
    if (this.violations.length < 20) this.violations.push(msg);
  }

  /** The canonical configuration that applies to entry `index`. */
  configFor(index: number): OracleConfig {
    let c = this.configs[0]!;
    for (const x of this.configs) if (x.after < index) c = x;
    return c;
  }

  /**
   * Every process's committed prefix must be the one history; a newly committed entry is checked
   * against the model. `got`: entries the process received in this step (a catch-up it installed).
   */
  observe(who: string, before: DurableState, after: DurableState, got: readonly Entry[] = []): void {
    if (before === after) return; // the state did not change: it was checked when it was made
    for (let i = Math.max(after.base.index, 0); i <= after.commit; i++) {
      const h = hashAt(after, i);
      if (!h) continue;
      const known = this.history.get(i);
      if (known !== undefined) {
        if (known !== hex(h)) this.fail(`${who}: committed entry ${i} differs from the history (the logs fork)`);
        continue;
      }
      if (i !== this.top + 1) {
        this.fail(`${who}: committed entry ${i} after a gap (history ends at ${this.top})`);
        continue;
      }
      const e = after.entries.find((x) => x.index === i) ?? [...before.entries, ...got].find((x) => x.index === i && hex(x.hash) === hex(h));
      if (!e) {
        this.fail(`${who}: committed entry ${i} first seen without its content`);
        continue;
      }
      this.history.set(i, hex(h));
      this.top = i;
      this.committed++;
      this.apply(e);
    }
  }

  private apply(e: Entry): void {
    e.ops.forEach((op, k) => {
      const why = this.step(op, e.index, k);
      if (why) this.fail(`entry ${e.index} op ${k} (${op.kind}): ${why}`);
    });
  }

  /** The oracle's own statement of the vault rules (not the members' code). */
  private step(op: Op, index: number, k: number): string | null {
    if (op.kind === 'admit') {
      const c = this.configFor(index + 1);
      if (!c.members.includes(op.member)) return `admitted id ${op.member}, not a member`;
      const admitted = [...this.configFor(index).admitted];
      admitted[op.member] = hex(op.incarnation);
      this.configs.push({ ...c, after: index, admitted });
      return null;
    }
    if (op.kind === 'charter') {
      // the oracle's own statement of a charter change: the next serial, ids never reused, and
      // every majority of the old members meets every majority of the new (Ongaro 2014 §4.1)
      const c = this.configFor(index);
      if (op.serial !== c.serial + 1) return `charter serial ${op.serial} after ${c.serial}`;
      const members = op.identities.flatMap((x, i) => (x ? [i] : []));
      for (const m of members) if (m < c.admitted.length && !c.members.includes(m)) return `id ${m} given again after its removal`;
      const all = new Set([...c.members, ...members]);
      if (majority(c.members.length) + majority(members.length) <= all.size) return `two majorities of charters ${c.serial} and ${op.serial} may not meet (${c.members.join(',')} to ${members.join(',')})`;
      this.charterAt.set(index, op.serial);
      const admitted = op.identities.map((x, i) => (x ? (c.admitted[i] ?? null) : null));
      this.configs.push({ after: index - 1, epoch: c.epoch, admitted, members, serial: op.serial });
      return null;
    }
    const r = this.model.get(op.id);
    switch (op.kind) {
      case 'register':
        if (r?.status === 'registered') return 'registered over a live record';
        this.model.set(op.id, { status: 'registered', limit: op.limit, used: 0, total: 0, reg: `${index}.${k}` });
        return null;
      case 'replace':
        // a new registration of a live record (the vault checked its proof): guesses count from 0 under a new registration
        if (!r || r.status !== 'registered') return 'replaced a record that is not live';
        this.model.set(op.id, { status: 'registered', limit: op.limit, used: 0, total: 0, reg: `${index}.${k}` });
        return null;
      case 'touch':
        if (!r || r.status === 'deleted') return 'rewrote a record that does not exist';
        return null;
      case 'charge':
        if (!r || r.status !== 'registered') return 'guess charged on a record that is not live';
        if (r.used >= r.limit) return `guess ${r.used + 1} charged past the limit ${r.limit}`;
        if (op.guess !== r.total + 1) return `guess numbered ${op.guess}, expected ${r.total + 1}`;
        r.used++;
        r.total++;
        this.chargeKeys.set(`${index}:${op.id}:${op.guess}:${op.session}`, `${op.id}/${r.reg}/${op.guess}`);
        return null;
      case 'reset':
        if (!r || r.status !== 'registered' || r.used < 1) return 'reset with no guess charged';
        r.used = 0;
        return null;
      case 'lock':
        if (!r || r.status !== 'registered' || r.used < r.limit) return 'locked below the limit';
        r.status = 'locked';
        return null;
      case 'delete':
        if (!r || r.status === 'deleted') return 'deleted a missing record';
        r.status = 'deleted';
        return null;
    }
  }

  /** A leader's answer to a client: only what is in the history, and a guess to one session only. */
  answer(who: string, a: Answer): void {
    if (!a.ok) return;
    this.acked++;
    if (this.history.get(a.index) !== hex(a.hash)) return this.fail(`${who}: answered ${a.op.kind} ${a.op.id} at entry ${a.index}, which is not in the committed history`);
    if (a.op.kind !== 'charge') return;
    const key = this.chargeKeys.get(`${a.index}:${a.op.id}:${a.op.guess}:${a.op.session}`);
    if (!key) return this.fail(`${who}: answered a charge the history does not hold`);
    const prev = this.grants.get(key);
    if (prev !== undefined && prev !== a.op.session) this.fail(`${who}: guess ${key} granted to sessions ${prev} and ${a.op.session}`);
    this.grants.set(key, a.op.session);
  }

  /** A leader's commit: a majority of member ids, each through the incarnation the history admits, made the entry durable. */
  event(who: string, ev: FleetEvent, procs: readonly ProcView[]): void {
    if (ev.type === 'commit') {
      const cfg = this.configFor(ev.index);
      const key = `${ev.index}:${hex(ev.hash)}`;
      const holders = new Set<number>();
      for (const p of procs) if (p.id !== ev.admitOf && cfg.members.includes(p.id) && cfg.admitted[p.id] === p.inc && p.appended.has(key)) holders.add(p.id);
      if (holders.size < majority(cfg.members.length) && !this.effectsOnly) this.fail(`${who}: committed entry ${ev.index} held by only ${holders.size} admitted member(s) (a minority commit)`);
      return;
    }
    const h = hex(configHashKey(ev.config));
    const prev = this.reforms.get(ev.epoch);
    if (prev !== undefined && prev !== h) this.fail(`${who}: epoch ${ev.epoch} re-formed twice with different sets`);
    this.reforms.set(ev.epoch, h);
    if (prev === undefined && ev.tip.index < this.top) this.fail(`${who}: re-form of epoch ${ev.epoch} at entry ${ev.tip.index} drops committed entries up to ${this.top}`);
    const key = `${ev.tip.index}:${hex(ev.tip.hash)}`;
    const members = ev.config.charter.identities.flatMap((x, i) => (x ? [i] : []));
    const before = this.configFor(ev.tip.index + 1);
    if (prev === undefined && (ev.config.charter.serial !== before.serial || members.join(',') !== before.members.join(','))) this.fail(`${who}: re-form of epoch ${ev.epoch} with charter ${ev.config.charter.serial} (${members.join(',')}) where the history holds ${before.serial} (${before.members.join(',')})`);
    // the set: every member id, or (the operator's approval, member.ts approveReform) a majority of
    // them that leaves out exactly the ids an approval names
    const set = members.filter((m) => ev.config.admitted[m]);
    if (set.length < members.length) {
      const left = members.filter((m) => !ev.config.admitted[m]).join(',');
      if (2 * set.length <= members.length) this.fail(`${who}: re-form of epoch ${ev.epoch} with ${set.length} of ${members.length} members (not a majority)`);
      if (!this.reformApprovals.some((a) => a.fromEpoch < ev.epoch && members.filter((m) => a.without.includes(m)).join(',') === left)) this.fail(`${who}: re-form of epoch ${ev.epoch} without member ${left}, which no operator approval names`);
    }
    for (const m of set) {
      const inc = hex(ev.config.admitted[m]!);
      const ok = ev.tip.index === 0 || procs.some((p) => p.id === m && p.inc === inc && p.appended.has(key));
      if (!ok) this.fail(`${who}: re-form of epoch ${ev.epoch}: member ${m} never held the chosen log`);
    }
    if (prev === undefined) this.configs.push({ after: ev.tip.index, epoch: ev.epoch, admitted: ev.config.admitted.map((x) => (x ? hex(x) : null)), members, serial: ev.config.charter.serial });
  }

  /** The model's record, for the end-of-run comparison with every member's committed records. */
  modelOf(id: string): ModelRecord | undefined {
    return this.model.get(id);
  }
  get historyTop(): number {
    return this.top;
  }
  /** The operator's approvals of a re-form without some members (World.approveReform). */
  readonly reformApprovals: { readonly fromEpoch: number; readonly without: readonly number[] }[] = [];
  /** Committed charter changes: entry index → serial. */
  readonly charterAt = new Map<number, number>();
}

export interface OracleConfig {
  readonly after: number;
  readonly epoch: number;
  readonly admitted: (string | null)[];
  readonly members: readonly number[];
  readonly serial: number;
}

function configHashKey(c: Config): Uint8Array {
  const parts = c.admitted.map((x) => (x ? hex(x) : '-')).join(',');
  return new TextEncoder().encode(`${c.epoch}|${parts}|${c.charter.serial}`);
}
