/**
 * The simulated world of one schedule: every member of a fleet in one process, over a network and
 * a clock driven by one seed. The network drops, delays, duplicates, reorders, replays and
 * partitions; processes crash, restart from their disk or from an old image of it, and are
 * cloned (a second running copy of a member's disk). Members exchange bytes (enclave/fleet/wire.ts):
 * the network reads only what a host can (the header, to route), and in some schedules a forging
 * adversary (forge.ts) alters captured messages; every forgery must be refused with a typed fault
 * and change nothing. Before it starts, the fleet runs the key ceremony (ceremony.ts): each member
 * gets its message keys from what its own device keeps, never the fleet secret from the world.
 * Clients send intents to any member. The
 * oracle (oracle.ts) checks the invariants after every step. Same seed, same options: the same
 * run, step for step.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { configAt, genesis, recordsAt, tipOf, type DurableState } from '../../enclave/fleet/log.ts';
import { Member, type Answer, type BrokenRule, type Output } from '../../enclave/fleet/member.ts';
import type { Intent } from '../../enclave/fleet/rules.ts';
import { FleetCode, FleetFault } from '../../enclave/fleet/faults.ts';
import { messageKeys, pairKeys, sharedKeysForControl, type MemberSecrets, type MessageKeys } from '../../enclave/fleet/keys.ts';
import { GENESIS_HASH, open, readHeader, type Entry } from '../../enclave/fleet/wire.ts';
import { ceremony, charterPlan, type CharterStep } from './ceremony.ts';
import { forge, FORGERIES } from './forge.ts';
import { Oracle, type ProcView } from './oracle.ts';
import { Rng } from './rng.ts';

export const FAULTS = ['drop', 'duplicate', 'delay', 'replay', 'partition', 'crash', 'restore', 'clone', 'forge'] as const;
export type FaultKind = (typeof FAULTS)[number];

export interface ScheduleOptions {
  readonly seed: number;
  /** Members: 3 or 5 (default: chosen by the seed). */
  readonly n?: 3 | 5;
  /** Ticks of faults, then `quiet` ticks without (default 240 + 60). */
  readonly steps?: number;
  readonly quiet?: number;
  readonly faults?: readonly FaultKind[];
  readonly broken?: BrokenRule;
  /** Keep a trace of every step (for a failing seed). */
  readonly trace?: boolean;
  /** Only consequences count as violations (no direct quorum check at commit): for positive controls. */
  readonly effectsOnly?: boolean;
  /** Count wire bytes of every message sent. */
  readonly measure?: boolean;
  /**
   * Charter changes during the run (docs/fleet.md, "Membership changes"): a member added, one
   * removed, another added, another removed (3 → 4 → 3 → 4 → 3, or 5 → 6 → 5 → 6 → 5), each
   * approved at every running member, proposed to the leaders until it commits; a member added
   * boots from an empty state with the grant of a member of the new charter. Default: on in
   * about half the schedules (drawn from a stream of its own).
   */
  readonly charters?: boolean;
  /** The plan's changes start with a removal (3 -> 2 -> 3 ...: a member replaced after it is gone), not an addition. */
  readonly shrinkFirst?: boolean;
  /**
   * After the schedule, a liveness check of this many ticks (0: none, the default): every clone
   * stopped, every member id of the charter in force running again (from its own disk), the
   * network healed and without faults. Within that many ticks a leader must commit an op sent
   * after the heal and every running member of the charter must be normal in the leader's epoch
   * and view, or the run fails with a `liveness:` violation (docs/fleet.md "View change",
   * "Re-form": a fleet whose members all run again must serve); the two limits of a re-form that
   * docs/fleet.md "Limits of this slice" names are counted as waived (`livenessWaived`).
   */
  readonly liveness?: number;
}

export interface ScheduleResult {
  readonly seed: number;
  readonly n: number;
  readonly violations: readonly string[];
  /** The tick of the first violation, or -1. */
  readonly failedAt: number;
  readonly trace: readonly string[];
  readonly stats: {
    acked: number;
    committed: number;
    messages: number;
    bytes: number;
    refused: Record<string, number>;
    reforms: number;
    crashes: number;
    restores: number;
    clones: number;
    partitions: number;
    /** With ScheduleOptions `liveness`: the schedule served after the heal (1), or waited on an addition whose member has no process (`livenessWaived`, a known limit). */
    livenessServed: number;
    livenessWaived: number;
    /** Schedules that served only once the operator approved a re-form without the members the fleet waited for (member.ts approveReform). */
    livenessOperator: number;
    durableWrites: number;
    /** Forged messages delivered (each refused with a typed fault, or the run reports a violation). */
    forged: number;
    /** Charter changes committed (members added and removed). */
    charters: number;
  };
}

/**
 * A member's durable storage: the log (`state`, which an old image can replace) and what its
 * device keeps in NVRAM (`secrets`: identity seed, fleet secret, charter), which a restore of the
 * log keeps and a clone copies.
 */
export interface Disk {
  state: DurableState;
  images: DurableState[];
  readonly secrets: MemberSecrets;
}
export interface Proc extends ProcView {
  member: Member | null;
  readonly disk: Disk;
  side: number;
  extra: boolean;
  /** Booted as a clone: its member's disk as it was when copied (stale once the original acknowledges more). */
  readonly cloned: boolean;
  readonly appended: Set<string>;
  readonly startedAt: number;
}
/** A message on the network: its bytes, and what the network read from its header to route it. */
export interface InFlight {
  at: number;
  order: number;
  msg: Uint8Array;
  to: number;
  /** For the trace: the header's type, sender and sender incarnation as sent. */
  note: string;
  fromPid: number;
  forged: boolean;
}

/**
 * Codes a forged message may be refused with: the envelope's (header, sender, sequence number,
 * MAC, receiver incarnation, a retired process) and the body decoder's. A forgery that reaches the
 * protocol (its MAC verified) is taken, whatever the protocol then does with it.
 */
const ENVELOPE_CODES: ReadonlySet<number> = new Set([FleetCode.BadMac, FleetCode.UnknownMember, FleetCode.WrongIncarnation, FleetCode.Replay, FleetCode.Retired, ...Object.values(FleetCode).filter((c) => c >= FleetCode.Truncated)]);

/** One fleet in one process: its processes, disks, network and oracle. Driven by `runSchedule` (random) or by a test (scripted). */
export class World {
  readonly n: number;
  readonly f: number;
  readonly rng: Rng;
  readonly oracle: Oracle;
  readonly procs: Proc[] = [];
  readonly trace: string[] = [];
  readonly stats: ScheduleResult['stats'] = { acked: 0, committed: 0, messages: 0, bytes: 0, refused: {}, reforms: 0, crashes: 0, restores: 0, clones: 0, partitions: 0, durableWrites: 0, forged: 0, charters: 0, livenessServed: 0, livenessWaived: 0, livenessOperator: 0 };
  /** Every member id that has a process (the founding ones, then the members charter changes added). */
  readonly ids: number[] = [];
  /** The charter changes of this run, in order, and the one being made (approved, proposed until it commits). */
  readonly plan: readonly CharterStep[];
  planNext = 0;
  pending: CharterStep | null = null;
  /** The operator's choices (when a change starts): a stream of its own. */
  readonly operator: Rng;
  private readonly pairCache = new Map<string, Uint8Array>();
  /** Every answer a client got: ok or refused. */
  readonly answers: Answer[] = [];
  readonly on: Set<FaultKind>;
  now = 0;
  failedAt = -1;
  partitioned = false;
  /** Charged sessions so far (a reset names one of them). */
  readonly sessions: number[] = [];
  /** Member id → tick of its last restore from an old image, until an incarnation booted since is admitted. */
  readonly restored = new Map<number, number>();
  private net: InFlight[] = [];
  /** Forged messages in flight: a queue and a random stream of their own, so that a schedule runs the same with or without them. */
  private forgedNet: InFlight[] = [];
  readonly adversary: Rng;
  private order = 0;
  /** Messages captured on the network (up to 400), for replays and forgeries. */
  readonly sent: Uint8Array[] = [];
  /** Messages sent in the current tick (the adversary's fresh captures: their sequence numbers are not yet seen). */
  readonly recent: Uint8Array[] = [];
  /** Sees every message a member sends (a test's capture). */
  tap: ((msg: Uint8Array) => void) | null = null;
  /** Each member's message keys, as its device derives them (the world reads catch-ups with them; tests seal with them). */
  readonly keys: readonly MessageKeys[];
  private readonly lastState = new Map<number, string>();

  /** A fleet whose members got their secrets from the key ceremony (ceremony.ts). */
  static async create(o: Omit<ScheduleOptions, 'seed'> & { seed: number; n: 3 | 5 }): Promise<World> {
    const secrets = await ceremony(o.n, o.seed);
    const operator = new Rng(o.seed ^ 0xc4a7);
    const on = o.charters ?? (o.broken === 'charter-two' || operator.chance(0.5));
    return new World({ ...o, secrets, operator, plan: on ? await charterPlan(secrets, o.seed, 4, o.broken === 'charter-two', o.shrinkFirst === true) : [] });
  }

  private constructor(private readonly o: Omit<ScheduleOptions, 'seed'> & { seed: number; n: 3 | 5; secrets: readonly MemberSecrets[]; operator: Rng; plan: readonly CharterStep[] }) {
    this.plan = o.plan;
    this.operator = o.operator;
    this.rng = new Rng(o.seed ^ 0x5eed);
    this.adversary = new Rng(o.seed ^ 0xf0e6);
    this.n = o.n;
    this.f = Math.floor((this.n - 1) / 2);
    this.on = new Set<FaultKind>(o.faults ?? FAULTS);
    for (let id = 0; id < o.n; id++) this.ids.push(id);
    this.oracle = new Oracle(this.n, GENESIS_HASH, o.effectsOnly);
    this.keys = o.secrets.map((s) => (o.broken === 'shared-key' ? sharedKeysForControl(s) : messageKeys(s)));
    for (let id = 0; id < this.n; id++) this.boot(id, { state: genesis(id, o.secrets[id]!.charter.identities), images: [], secrets: o.secrets[id]! }, false, 0);
  }

  /** The key of the pair (from, to), from the sender's keys (a member added by a charter change: from its device's secrets). */
  messageKey(from: number, to: number): Uint8Array {
    const k = this.keys[from]?.send[to];
    if (k) return k;
    const key = `${from}:${to}`;
    let v = this.pairCache.get(key);
    if (!v) {
      const secrets = this.procs.find((p) => p.id === from)?.disk.secrets ?? this.o.secrets[from]!;
      const identity = this.plan.map((s) => s.change.identities[to]).find((x) => x) ?? this.o.secrets[0]!.charter.identities[to]!;
      v = pairKeys(secrets, to, identity).send;
      this.pairCache.set(key, v);
    }
    return v;
  }

  /** The operator approves the change being made at every running process (a process that boots later is approved at its boot). */
  approvePending(): void {
    const s = this.pending;
    if (!s) return;
    for (const p of this.alive()) p.member!.approveCharter(s.change);
  }

  /** Proposes the change being made to every running leader; a committed change ends it (a member it adds boots, with its grant). */
  driveCharter(): void {
    const s = this.pending;
    if (!s) return;
    if ([...this.oracle.charterAt.values()].includes(s.change.serial)) {
      this.stats.charters++;
      this.log(`charter ${s.change.serial} committed (${s.removed === null ? `member ${s.joined.map((j) => j.member).join(', ')} added` : `member ${s.removed} removed`})`);
      this.pending = null;
      for (const j of s.joined) {
        this.ids.push(j.member);
        this.boot(j.member, { state: genesis(j.member, this.o.secrets[0]!.charter.identities), images: [], secrets: j }, false, 0);
      }
      return;
    }
    for (const p of this.leaders()) {
      const before = p.member!.durable;
      const r = p.member!.proposeCharter(s.change, this.now);
      if (typeof r.index === 'number') this.log(`p${p.pid}(m${p.id}) proposed charter ${s.change.serial} at entry ${r.index}`);
      this.handle(p, before, r.out, []);
    }
  }

  /** Starts the next change of the plan, if none is being made. */
  startCharter(): void {
    if (this.pending || this.planNext >= this.plan.length) return;
    this.pending = this.plan[this.planNext++]!;
    this.log(`operator approves charter ${this.pending.change.serial}`);
    this.approvePending();
  }

  log(s: string): void {
    if (this.o.trace) this.trace.push(`t=${this.now} ${s}`);
  }

  boot(id: number, disk: Disk, extra: boolean, side: number): Proc {
    const appended = new Set<string>();
    const note = (s: DurableState): void => {
      appended.add(`${s.base.index}:${bytesToHex(s.base.hash)}`);
      for (const e of s.entries) appended.add(`${e.index}:${bytesToHex(e.hash)}`);
    };
    note(disk.state);
    const platform = {
      random: (k: number) => this.rng.bytes(k),
      persist: (s: DurableState) => {
        disk.state = s;
        this.stats.durableWrites++;
        note(s);
      },
    };
    const member = new Member(disk.state, platform, { n: this.n, secrets: disk.secrets, broken: this.o.broken }, this.now);
    if (this.pending) member.approveCharter(this.pending.change);
    const p: Proc = { pid: this.procs.length, id, inc: bytesToHex(member.incarnation), member, disk, side, extra, cloned: extra, appended, startedAt: this.now };
    this.procs.push(p);
    this.log(`boot p${p.pid} (member ${id}${extra ? ', clone' : ''}) inc ${p.inc.slice(0, 6)} at entry ${disk.state.commit}`);
    return p;
  }

  alive(): Proc[] {
    return this.procs.filter((p) => p.member !== null);
  }
  aliveOf(id: number): Proc[] {
    return this.procs.filter((p) => p.member !== null && p.id === id);
  }
  primaryOf(id: number): Proc {
    let last: Proc | undefined;
    for (const p of this.procs) if (p.id === id && !p.extra) last = p;
    return last!;
  }
  leaders(): Proc[] {
    return this.alive().filter((p) => p.member!.isLeader());
  }

  crash(p: Proc): void {
    p.member = null;
    if (!p.extra) this.stats.crashes++;
    this.log(`crash p${p.pid}(m${p.id})${p.extra ? ' (clone)' : ''}`);
  }
  /** Boots member `id` again from its primary's disk, or from `image` (an old copy of that disk). */
  restart(id: number, image?: DurableState): Proc {
    const prim = this.primaryOf(id);
    if (!image) return this.boot(id, prim.disk, false, prim.side);
    this.restored.set(id, this.now);
    this.stats.restores++;
    this.log(`restore m${id} from an image at entry ${image.commit}`);
    return this.boot(id, { state: image, images: [...prim.disk.images], secrets: prim.disk.secrets }, false, prim.side);
  }
  /** A second running copy of a process's disk. */
  clone(src: Proc, side: number): Proc {
    this.stats.clones++;
    this.log(`clone p${src.pid}(m${src.id})`);
    return this.boot(src.id, { state: src.disk.state, images: [], secrets: src.disk.secrets }, true, side);
  }
  /** Sides per process (messages cross only within a side); null heals. */
  partition(side: ((p: Proc) => number) | null): void {
    this.partitioned = side !== null;
    if (side) {
      this.stats.partitions++;
      for (const p of this.procs) p.side = side(p);
      this.log(`partition ${this.alive().map((p) => `p${p.pid}:${p.side}`).join(' ')}`);
    } else this.log('heal');
  }
  submit(p: Proc, intent: Intent): void {
    this.call(p, (m) => m.submit(intent, this.now));
  }
  /** The leader at `p` hands the lead on (member.ts stepDown: what a vault member behind its log does). */
  stepDown(p: Proc): void {
    this.call(p, (m) => m.stepDown(this.now));
  }

  /**
   * The operator approves, at process `p`, a re-form out of epoch `fromEpoch` without the member
   * ids `without`, for the boots `kept` (default: the running processes of the other ids, as the
   * operator reads them from the members' status; member.ts approveReform).
   */
  approveReform(p: Proc, fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array> = this.keptBoots(without)): void {
    this.log(`operator approves at p${p.pid}(m${p.id}) a re-form from epoch ${fromEpoch} without member ${without.join(', ')}`);
    this.oracle.reformApprovals.push({ fromEpoch, without: [...without] });
    this.call(p, (m) => m.approveReform(fromEpoch, without, kept, this.now));
  }

  /** The incarnation of each running process whose id `without` does not name (the first one per id). */
  keptBoots(without: readonly number[]): Map<number, Uint8Array> {
    const kept = new Map<number, Uint8Array>();
    for (const p of this.alive()) if (!without.includes(p.id) && !kept.has(p.id)) kept.set(p.id, p.member!.incarnation);
    return kept;
  }

  /**
   * Ids counted against the damage budget: more than one running copy; running as a clone the
   * fleet has not admitted (a clone is its member's disk as it was when copied: with its original
   * down, it votes in a re-form for that id from the old state, as a restore would); or restored
   * and not admitted again since.
   */
  damaged(): Set<number> {
    const d = new Set<number>();
    const cfg = this.oracle.configFor(this.oracle.historyTop + 1);
    for (const id of this.ids) {
      const alive = this.aliveOf(id);
      if (alive.length > 1 || alive.some((p) => p.cloned && cfg.admitted[id] !== p.inc)) d.add(id);
      const since = this.restored.get(id);
      if (since !== undefined) {
        const healed = this.procs.some((p) => p.id === id && p.startedAt >= since && cfg.admitted[id] === p.inc);
        if (healed) this.restored.delete(id);
        else d.add(id);
      }
    }
    return d;
  }

  /** `forged`: the output of a forged message, which changes nothing (no state line in the trace). */
  private handle(p: Proc, before: DurableState, out: Output, got: readonly Entry[], forged = false): void {
    const who = `p${p.pid}(m${p.id})`;
    for (const fl of out.faults) {
      const k = String(fl.code);
      this.stats.refused[k] = (this.stats.refused[k] ?? 0) + 1;
    }
    this.oracle.observe(who, before, p.member?.durable ?? p.disk.state, got);
    if (this.o.trace && p.member && !forged) {
      const m = p.member;
      const d = m.durable;
      const t = tipOf(d);
      const line = `${m.status} view ${d.view}/${d.normalView} commit ${d.commit} tip ${t.index}:${bytesToHex(t.hash).slice(0, 6)}`;
      if (this.lastState.get(p.pid) !== line) this.log(`${who} ${line}`);
      this.lastState.set(p.pid, line);
    }
    for (const ev of out.events) {
      if (ev.type === 'reform') {
        this.stats.reforms++;
        this.log(`${who} re-formed epoch ${ev.epoch} at entry ${ev.tip.index}`);
      } else this.log(`${who} committed entry ${ev.index} (view ${ev.view}, counted ${ev.counted.join(',')})`);
      this.oracle.event(who, ev, this.procs);
    }
    for (const a of out.answers) {
      this.answers.push(a);
      if (a.ok) {
        this.stats.acked++;
        if (a.op.kind === 'charge') this.sessions.push(a.op.session);
        this.log(`${who} answered ${a.op.kind} ${a.op.id} at entry ${a.index}`);
      }
      this.oracle.answer(who, a);
    }
    for (const msg of out.send) {
      this.stats.messages++;
      this.tap?.(msg);
      if (this.o.measure) this.stats.bytes += msg.length;
      if (this.recent.length < 64) this.recent.push(msg);
      if (this.sent.length < 400) this.sent.push(msg);
      else if (this.rng.chance(0.2)) this.sent[this.rng.int(this.sent.length)] = msg;
      if (this.on.has('drop') && this.rng.chance(0.05)) continue;
      const delay = this.on.has('delay') && this.rng.chance(0.08) ? 2 + this.rng.int(10) : this.on.has('delay') ? 1 + this.rng.int(2) : 1;
      this.net.push(this.inFlight(msg, this.now + delay, p.pid));
      if (this.on.has('duplicate') && this.rng.chance(0.03)) this.net.push(this.inFlight(msg, this.now + 1 + this.rng.int(6), p.pid));
    }
    if (this.failedAt < 0 && this.oracle.violations.length > 0) this.failedAt = this.now;
  }

  private call(p: Proc, fn: (m: Member) => Output, got: readonly Entry[] = []): void {
    const m = p.member!;
    const before = m.durable;
    this.handle(p, before, fn(m), got);
  }

  /** A message as the network carries it: routed by its header, which a host can read (and trust no further). */
  private inFlight(msg: Uint8Array, at: number, fromPid: number): InFlight {
    const h = readHeader(msg);
    return { at, order: this.order++, msg, to: h.to, note: `${h.type} m${h.from}:${bytesToHex(h.fromInc).slice(0, 6)}`, fromPid, forged: false };
  }

  /** Puts a genuine message on the network as if sent now (a replay, or a test's own message). */
  inject(msg: Uint8Array, at = this.now): void {
    this.net.push(this.inFlight(msg, at, -1));
  }

  /** Puts a forged message on the network for member `to`: it must be refused wherever it lands. */
  injectForged(msg: Uint8Array, to: number, what: string, at = this.now): void {
    this.forgedNet.push({ at, order: this.order++, msg, to, note: `forged (${what})`, fromPid: -1, forged: true });
  }

  /** A forged message at one process: one typed fault of the envelope or the decoder, and nothing else happens (no state, no answer, no message). */
  private deliverForged(p: Proc, msg: InFlight): void {
    const m = p.member!;
    const before = m.durable;
    const out = m.receive(msg.msg, this.now);
    this.stats.forged++;
    const clean = out.faults.length === 1 && out.faults[0] instanceof FleetFault && ENVELOPE_CODES.has(out.faults[0].code) && out.send.length === 0 && out.answers.length === 0 && out.events.length === 0 && m.durable === before;
    if (!clean) this.oracle.violations.push(`p${p.pid}(m${p.id}): a ${msg.note} message was not refused cleanly (${out.faults.length} faults ${out.faults.map((f) => f.code).join(',')}, ${out.send.length} sent, ${out.answers.length} answers, state ${m.durable === before ? 'kept' : 'changed'})`);
    this.handle(p, before, out, [], true);
  }

  private deliver(msg: InFlight): void {
    const from = msg.fromPid >= 0 ? this.procs[msg.fromPid]! : null;
    const targets = this.aliveOf(msg.to).filter((p) => !this.partitioned || !from || p.side === from.side);
    if (targets.length === 0) return;
    const rng = msg.forged ? this.adversary : this.rng;
    const chosen = targets.length > 1 && rng.chance(0.3) ? targets : [rng.pick(targets)];
    for (const p of chosen) {
      this.log(`deliver ${msg.note}->p${p.pid}(m${p.id})`);
      if (msg.forged) this.deliverForged(p, msg);
      else this.call(p, (m) => m.receive(msg.msg, this.now), this.caughtUp(msg.msg));
    }
  }

  /** One tick: due messages delivered (reordered within the tick when delays are on), then every running process's timers. */
  step(): void {
    this.now++;
    this.recent.length = 0;
    const due = this.net.filter((m) => m.at <= this.now).sort((a, b) => a.at - b.at || a.order - b.order);
    this.net = this.net.filter((m) => m.at > this.now);
    if (this.on.has('delay')) {
      for (let i = due.length - 1; i > 0; i--) {
        const j = this.rng.int(i + 1);
        [due[i], due[j]] = [due[j]!, due[i]!];
      }
    }
    // forgeries first: one made of a message sent last tick arrives before that message (its sequence number is still new)
    const forged = this.forgedNet.filter((m) => m.at <= this.now);
    this.forgedNet = this.forgedNet.filter((m) => m.at > this.now);
    for (const m of forged) if (this.failedAt < 0) this.deliver(m);
    for (const m of due) if (this.failedAt < 0) this.deliver(m);
    for (const p of this.alive()) if (this.failedAt < 0) this.call(p, (m) => m.tick(this.now));
  }

  /** The entries a genuine catch-up carries (the oracle learns an installed log's content from them). */
  private caughtUp(msg: Uint8Array): readonly Entry[] {
    const h = readHeader(msg);
    if (h.type !== 'catchup') return [];
    const b = open(this.messageKey(h.from, h.to), msg).body;
    return b.type === 'catchup' ? b.entries : [];
  }

  /** Every running member whose commit point is the history's end holds the oracle's records. */
  checkRecords(): void {
    for (const p of this.alive()) {
      const d = p.member!.durable;
      if (d.commit !== this.oracle.historyTop) continue;
      const recs = recordsAt(d, d.commit);
      for (const id of RECORD_IDS) {
        const a = recs.get(id);
        const b = this.oracle.modelOf(id);
        const same = (!a && !b) || (a && b && a.status === b.status && a.used === b.used && a.total === b.total && a.limit === b.limit);
        if (!same) this.oracle.violations.push(`p${p.pid}(m${p.id}): record ${id} differs from the model at entry ${d.commit}`);
      }
    }
    if (this.failedAt < 0 && this.oracle.violations.length > 0) this.failedAt = this.now;
  }
}

export const RECORD_IDS = ['r0', 'r1', 'r2'] as const;

/** One random schedule: faults for `steps` ticks, then `quiet` ticks healed and without faults. */
export async function runSchedule(o: ScheduleOptions): Promise<ScheduleResult> {
  const rng = new Rng(o.seed);
  const n = o.n ?? (rng.chance(0.5) ? 3 : 5);
  const w = await World.create({ ...o, n });
  const on = w.on;
  const steps = o.steps ?? 240;
  const quiet = o.quiet ?? 60;
  let session = 0;

  const intent = (): Intent => {
    const id = rng.pick(RECORD_IDS);
    const r = rng.next();
    if (r < 0.45) return { kind: 'charge', id, session: ++session };
    if (r < 0.62) return { kind: 'reset', id, session: w.sessions.length > 0 ? rng.pick(w.sessions) : 0 };
    if (r < 0.74) return { kind: 'register', id, limit: 1 + rng.int(4) };
    if (r < 0.79) return { kind: 'replace', id, limit: 1 + rng.int(4) };
    if (r < 0.84) return { kind: 'touch', id };
    if (r < 0.94) return { kind: 'lock', id };
    return { kind: 'delete', id };
  };
  const mayDamage = (id: number): boolean => {
    const d = w.damaged();
    d.add(id);
    return d.size <= w.f;
  };

  // the forging adversary, in about half of the schedules, with its own random stream (w.adversary)
  const forging = on.has('forge') && w.adversary.chance(0.5);
  const incarnations = (id: number): Uint8Array[] => w.aliveOf(id).map((p) => p.member!.incarnation);

  const faults = (): void => {
    if (forging && w.sent.length > 0 && w.adversary.chance(0.25)) {
      const kind = w.adversary.pick(FORGERIES);
      const captured = w.recent.length > 0 && w.adversary.chance(0.8) ? w.recent : w.sent;
      const f = forge(w.adversary, w.adversary.pick(captured), kind, n, incarnations, (id) => w.keys[id]!);
      w.injectForged(f.msg, f.to, kind, w.now + 1);
    }
    if (on.has('replay') && w.sent.length > 0 && rng.chance(0.2)) {
      const msg = rng.pick(w.sent);
      const h = readHeader(msg);
      w.log(`replay ${h.type} m${h.from}->m${h.to}`);
      w.inject(msg, w.now + 1);
    }
    if (on.has('partition')) {
      if (!w.partitioned && rng.chance(0.015)) w.partition(() => rng.int(2));
      else if (w.partitioned && rng.chance(0.06)) w.partition(null);
    }
    const live = w.alive();
    if (on.has('crash') && live.length > 0 && rng.chance(0.012)) w.crash(rng.pick(live));
    for (const p of w.alive()) if (p.extra && rng.chance(0.01)) w.crash(p);
    for (const id of w.ids) {
      const prim = w.primaryOf(id);
      if (prim.member !== null || w.aliveOf(id).length > 0 || !rng.chance(0.08)) continue;
      const old = prim.disk.images;
      if (on.has('restore') && old.length > 0 && rng.chance(0.35) && mayDamage(id)) w.restart(id, rng.pick(old));
      else if (on.has('crash')) w.restart(id);
    }
    if (on.has('clone') && rng.chance(0.006)) {
      const src = rng.pick(w.alive());
      if (src && mayDamage(src.id)) w.clone(src, rng.int(2));
    }
    if ((on.has('restore') || on.has('clone')) && rng.chance(0.05)) {
      const p = w.primaryOf(w.ids[rng.int(w.ids.length)]!);
      if (p.disk.images.length < 5) p.disk.images.push(p.disk.state);
      else p.disk.images[rng.int(5)] = p.disk.state;
    }
    // a clone whose incarnation the history admits becomes its member's primary; the other copy is the extra now
    const cfg = w.oracle.configFor(w.oracle.historyTop + 1);
    for (const p of w.alive()) {
      if (p.extra && cfg.admitted[p.id] === p.inc) {
        for (const q of w.procs) if (q.id === p.id && q !== p) q.extra = true;
        p.extra = false;
      }
    }
  };

  while (w.now < steps + quiet && w.failedAt < 0) {
    // the operator's charter changes, from a stream of their own: one starts now and then while faults run; each is proposed until it commits
    if (w.plan.length > 0) {
      if (w.now < steps && w.operator.chance(0.03)) w.startCharter();
      if (w.operator.chance(0.5)) w.driveCharter();
    }
    if (w.now < steps) faults();
    else if (w.partitioned) w.partition(null);
    if (rng.chance(0.6)) {
      const live = w.alive();
      const leaders = w.leaders();
      const p = leaders.length > 0 && rng.chance(0.7) ? rng.pick(leaders) : live.length > 0 ? rng.pick(live) : null;
      if (p) w.submit(p, intent());
    }
    w.step();
  }
  if (w.failedAt < 0) w.checkRecords();
  if (o.liveness && w.failedAt < 0) livenessCheck(w, o.liveness, intent);
  w.stats.committed = w.oracle.committed;
  return { seed: o.seed, n, violations: w.oracle.violations, failedAt: w.failedAt, trace: w.trace, stats: w.stats };
}

/** ScheduleOptions `liveness`: everything running again and healed; a leader must commit and every member follow it within `ticks`. */
function livenessCheck(w: World, ticks: number, intent: () => Intent): void {
  w.on.clear();
  w.partition(null);
  for (const p of w.alive()) if (p.extra) w.crash(p);
  const inCharter = (id: number) => w.oracle.configFor(w.oracle.historyTop + 1).members.includes(id);
  // as a supervisor would: a retired process of a member id still in the charter (its incarnation
  // superseded by a clone's, say) runs again as a new incarnation, now and whenever one retires
  const supervise = () => {
    for (const p of w.alive()) if (p.member!.status === 'retired' && inCharter(p.id)) w.crash(p);
    for (const id of w.ids) if (inCharter(id) && w.aliveOf(id).length === 0) w.restart(id);
  };
  supervise();
  w.log('liveness: every member running, the network healed');
  const from = w.answers.length;
  const served = () => {
    if (!w.answers.slice(from).some((a) => a.ok)) return false;
    const lead = w.leaders()[0]?.member;
    if (!lead) return false;
    return w.alive().every((p) => !inCharter(p.id) || (p.member!.status === 'normal' && p.member!.epoch === lead.epoch && p.member!.view === lead.view));
  };
  /** Runs up to `ticks` ticks as the operator and clients would (charter changes only if `charters`); whether the fleet served. */
  const serveWithin = (charters: boolean): boolean => {
    const from0 = w.now;
    while (w.now < from0 + ticks && w.failedAt < 0) {
      if (charters && w.plan.length > 0 && w.operator.chance(0.5)) w.driveCharter();
      if (w.now % 4 === 0) for (const p of w.leaders()) w.submit(p, intent());
      supervise();
      w.step();
      if (served()) return true;
    }
    return false;
  };
  if (serveWithin(true)) {
    w.stats.livenessServed++;
    return;
  }
  if (w.failedAt >= 0) return;
  // Two limits of a re-form, which needs every id's vote, are counted as waived (docs/fleet.md
  // "Limits of this slice"; a re-form with fewer members, authorized by the operator, ends both):
  // - an addition not committed, with too few of the others admitted to commit it: the new member
  //   gets its grant, and so a process, only once the change commits;
  // - a member whose log predates a charter change (restored from an older image or an older copy
  //   of its folder, or a new member that has not installed the log) while a re-form runs: it does
  //   not know an added member's identity (neither takes the other's messages), or waits for the
  //   vote of a removed one.
  const named = w.alive().map((p) => configAt(p.member!.durable, tipOf(p.member!.durable).index).charter.identities.map((k) => k !== null));
  const waiting = named.some((ids) => ids.some((k, id) => k && !w.ids.includes(id)));
  const history = w.oracle.configFor(w.oracle.historyTop + 1).members;
  const lagging = w.alive().some((p) => p.member!.status === 'reform') && named.some((ids) => ids.some((k, id) => k !== history.includes(id)) || history.some((id) => !ids[id]));
  if (waiting || lagging) {
    const cause = waiting ? 'a member an uncommitted change adds has no process' : "a running member's log predates a charter change";
    // The way out of both: the operator's approval of a re-form without the members it waits for
    // (member.ts approveReform, as `bkv fleet reform --without` gives it), where the operator can
    // give one: the ids left out are the added ids with no process, the running members whose log
    // predates the committed charter (one whose tip holds an uncommitted change is ahead, not
    // behind: kept) and the damaged ones; the kept members report one epoch and are a majority of
    // the charter at each one's tip. Approved, the fleet must then serve within `ticks` again.
    const committedSerial = w.oracle.configFor(w.oracle.historyTop + 1).serial;
    const out = new Set<number>(named.flatMap((ids) => ids.flatMap((k, id) => (k && !w.ids.includes(id) ? [id] : []))));
    for (const p of w.alive()) if (configAt(p.member!.durable, tipOf(p.member!.durable).index).charter.serial < committedSerial) out.add(p.id);
    // and the damaged ones (restored from an old image, or a clone, not admitted since): the
    // operator vouches only for members whose folders are their own and current
    const damaged = w.damaged();
    for (const id of damaged) out.add(id);
    const kept = w.alive().filter((p) => !out.has(p.id));
    const tips = kept.map((p) => configAt(p.member!.durable, tipOf(p.member!.durable).index));
    const epochs = new Set(tips.map((t) => t.epoch));
    // each kept member's charter (the charters at their tips may differ: an addition on some logs
    // only) keeps a majority without the ids left out, and every id it keeps is running, undamaged
    const keeps = (t: (typeof tips)[number]) => {
      const m = t.charter.identities.flatMap((k, id) => (k ? [id] : []));
      const k = m.filter((id) => !out.has(id));
      return 2 * k.length > m.length && k.every((id) => kept.some((p) => p.id === id) && !damaged.has(id));
    };
    const can = kept.length > 0 && epochs.size === 1 && tips.every(keeps);
    if (!can) {
      w.stats.livenessWaived++;
      w.log(`liveness: waived, ${cause}; no re-form without ${[...out].join(', ')} the operator can approve (kept ${kept.map((p) => `m${p.id}:e${configAt(p.member!.durable, tipOf(p.member!.durable).index).epoch}`).join(' ')}; damaged ${[...damaged].join(',') || 'none'}; charters ${tips.map((t) => t.charter.identities.flatMap((k, id) => (k ? [id] : [])).join(',')).join(' | ')})`);
      return;
    }
    const fromEpoch = [...epochs][0]!;
    const leadOf = () => w.leaders()[0]?.member ?? null;
    const follows = (p: Proc, lead: Member) => p.member!.status === 'normal' && p.member!.epoch === lead.epoch && p.member!.view === lead.view;
    // the kept members already serve under a leader: no re-form to approve (`bkv fleet reform` refuses)
    const lead0 = leadOf();
    if (!(lead0 && kept.every((p) => !inCharter(p.id) || follows(p, lead0)))) {
      w.log(`liveness: ${cause}: the operator approves a re-form from epoch ${fromEpoch} without member ${[...out].join(', ')}`);
      for (const p of kept) w.approveReform(p, fromEpoch, [...out]);
      // meanwhile the operator proposes no charter change (as `bkv fleet add` refuses one while a
      // member is down): an addition on the kept members alone could not commit, and the fleet
      // would wait for the added member as before (seed 717)
      if (serveWithin(false)) {
        w.stats.livenessOperator++;
        return;
      }
      if (w.failedAt >= 0) return;
    }
    // What stays a limit: the fleet serves, and a member that does not follow is one whose log
    // predates the charter change that added the leader: it does not know the leader's identity,
    // so neither takes the other's messages (seeds 767, 845)
    const lead = leadOf();
    const deaf = (p: Proc) => lead !== null && !configAt(p.member!.durable, tipOf(p.member!.durable).index).charter.identities[w.leaders()[0]!.id];
    if (lead && w.answers.slice(from).some((a) => a.ok) && w.alive().every((p) => !inCharter(p.id) || follows(p, lead) || deaf(p))) {
      w.stats.livenessWaived++;
      w.log(`liveness: waived, the fleet serves; a member whose log predates the change that added its leader can not hear it`);
      return;
    }
    const states = w.alive().map((p) => `p${p.pid}(m${p.id}):${p.member!.status} e${p.member!.epoch}/v${p.member!.view}`).join(' ');
    w.oracle.violations.push(`liveness: ${ticks} ticks after the operator approved a re-form from epoch ${fromEpoch} without member ${[...out].join(', ')}, ${w.answers.slice(from).some((a) => a.ok) ? 'not every member follows the leader' : 'nothing committed'} (${states})`);
    w.failedAt = w.now;
    return;
  }
  const states = w.alive().map((p) => `p${p.pid}(m${p.id}):${p.member!.status} e${p.member!.epoch}/v${p.member!.view}`).join(' ');
  w.oracle.violations.push(`liveness: ${ticks} ticks after every member ran again and the network healed, ${w.answers.slice(from).some((a) => a.ok) ? 'not every member follows the leader' : 'nothing committed'} (${states})`);
  w.failedAt = w.now;
}
