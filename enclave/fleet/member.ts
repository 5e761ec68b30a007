/**
 * One fleet member's replication rule as a deterministic state machine: messages and client
 * intents in, messages, answers, refusals and events out. No clock, randomness or I/O of its own:
 * the caller passes the time (`now`, in ticks), and the platform gives random bytes (for the
 * incarnation, drawn once per boot) and durable writes. The protocol and why it is safe:
 * docs/fleet.md. Viewstamped Replication Revisited (Liskov & Cowling, 2012): §4.1 normal
 * operation, §4.2 view change, §4.3 recovery (here: rejoin and Admit).
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { FleetCode, FleetFault, type FleetCodeValue } from './faults.ts';
import {
  checkAppend,
  checkChain,
  compact,
  configAt,
  entriesAfter,
  hashAt,
  newer,
  recordsAt,
  tipOf,
  type DurableState,
  type Tip,
} from './log.ts';
import { opOf, transition, type Intent, type Op, type RecordOp } from './rules.ts';
import { ANY_INCARNATION, configHash, entryHash, INCARNATION_BYTES, sameBytes, seal, verify, type Body, type Config, type Entry, type Envelope } from './wire.ts';

export interface MemberPlatform {
  /** Random bytes (the incarnation). */
  readonly random: (n: number) => Uint8Array;
  /** Makes the state durable (NVRAM and storage) before returning. */
  readonly persist: (state: DurableState) => void;
}

/**
 * A deliberately broken rule, for the simulation's positive controls only: `count-unadmitted`
 * counts any incarnation in quorums and lets a booted member resume from its durable state as if
 * admitted; `half-quorum` takes n/2 (rounded down) as a majority.
 */
export type BrokenRule = 'count-unadmitted' | 'half-quorum';

export interface MemberOptions {
  readonly n: number;
  readonly replicationKey: Uint8Array;
  /** Ticks without a sign of a working leader before a view change. */
  readonly viewChangeTicks?: number;
  /** Ticks without progress before this member takes part in a re-form. */
  readonly reformTicks?: number;
  /** Ticks between resends of an unanswered message. */
  readonly resendTicks?: number;
  /** Committed entries kept behind the commit point (older ones fold into the snapshot). */
  readonly keep?: number;
  readonly maxBatch?: number;
  readonly maxQueue?: number;
  readonly broken?: BrokenRule;
}

export type Answer =
  | { readonly ok: true; readonly intent: Intent; readonly op: RecordOp; readonly index: number; readonly hash: Uint8Array }
  | { readonly ok: false; readonly intent: Intent; readonly code: FleetCodeValue };

/** What the oracle watches: a leader's commit with the ids it counted, a re-form installed. */
export type FleetEvent =
  | { readonly type: 'commit'; readonly index: number; readonly hash: Uint8Array; readonly view: number; readonly counted: readonly number[]; readonly admitOf: number | null }
  | { readonly type: 'reform'; readonly epoch: number; readonly config: Config; readonly tip: Tip };

export interface Output {
  readonly send: Envelope[];
  readonly answers: Answer[];
  readonly faults: FleetFault[];
  readonly events: FleetEvent[];
}

export type Status = 'recovering' | 'learner' | 'normal' | 'viewchange' | 'reform' | 'retired';

type Purpose = 'view' | 'follow' | 'rejoin' | 'reform';
interface Awaiting {
  readonly purpose: Purpose;
  readonly from: number;
  readonly expect: Tip | null;
  readonly since: number;
}
interface Outstanding {
  readonly index: number;
  readonly hash: Uint8Array;
  readonly acks: Set<number>;
  readonly intents: readonly { intent: Intent; op: RecordOp }[];
  readonly admitOf: number | null;
  readonly entry: Entry | null;
}
type Vote = { inc: Uint8Array; body: Extract<Body, { type: 'reformVote' }> };
type Dvc = { inc: Uint8Array; body: Extract<Body, { type: 'doViewChange' }> };
interface ReformPlan {
  readonly epoch: number;
  readonly config: Config;
  readonly setHash: Uint8Array;
  readonly best: number;
  readonly bestTip: Tip;
  readonly view: number;
}

export class Member {
  readonly id: number;
  readonly incarnation: Uint8Array;
  private readonly n: number;
  private readonly key: Uint8Array;
  private readonly t: { vc: number; reform: number; resend: number; keep: number; batch: number; queue: number };
  private d: DurableState;
  private st: Status = 'recovering';
  private wasAdmitted = false;
  /** This member's log is a prefix of the current view leader's (set when a view starts or a catch-up installs). */
  private synced = false;
  private now = 0;
  private lastProgress = 0;
  private lastSent = -Infinity;
  private vcStart = 0;
  private seqOut = 0;
  private readonly seen = new Map<string, number>();
  private out: { send: Envelope[]; answers: Answer[]; faults: FleetFault[]; events: FleetEvent[] } = { send: [], answers: [], faults: [], events: [] };
  // leader
  private queue: Intent[] = [];
  private outstanding: Outstanding | null = null;
  private readonly learners = new Map<number, { inc: Uint8Array; tip: Tip }>();
  // view change, catch-up, re-form
  private dvcs = new Map<number, Dvc>();
  private awaiting: Awaiting | null = null;
  private readonly votes = new Map<number, Map<number, Vote>>();
  private readonly accepts = new Map<number, Map<number, { inc: Uint8Array; body: Extract<Body, { type: 'reformAccept' }> }>>();
  private plan: ReformPlan | null = null;
  private myAccept: Extract<Body, { type: 'reformAccept' }> | null = null;

  /** Boots a member from its durable state: a fresh incarnation, not admitted by any configuration. */
  constructor(
    durable: DurableState,
    private readonly platform: MemberPlatform,
    private readonly opts: MemberOptions,
    now = 0,
  ) {
    this.id = durable.member;
    this.n = opts.n;
    this.key = opts.replicationKey;
    this.d = durable;
    this.incarnation = platform.random(INCARNATION_BYTES);
    if (this.incarnation.length !== INCARNATION_BYTES) throw new Error('fleet: incarnation needs 16 random bytes');
    this.t = {
      vc: opts.viewChangeTicks ?? 10,
      reform: opts.reformTicks ?? 40,
      resend: opts.resendTicks ?? 2,
      keep: opts.keep ?? 4,
      batch: opts.maxBatch ?? 16,
      queue: opts.maxQueue ?? 64,
    };
    this.now = now;
    this.lastProgress = now;
    if (opts.broken === 'count-unadmitted' && durable.base.config.epoch > 0) {
      // positive control: resume from the durable state as if this incarnation were admitted
      this.wasAdmitted = true;
      this.enterViewChange();
    }
  }

  get status(): Status {
    return this.st;
  }
  get durable(): DurableState {
    return this.d;
  }
  get view(): number {
    return this.d.view;
  }
  get epoch(): number {
    return this.d.base.config.epoch;
  }
  isLeader(): boolean {
    return this.st === 'normal' && this.leaderOf(this.d.view) === this.id;
  }

  // ---- entry points -------------------------------------------------------------------------

  /** A client intent arriving at this member. Only the leader of a normal view takes it. */
  submit(intent: Intent, now: number): Output {
    this.begin(now);
    if (!this.isLeader()) this.out.answers.push({ ok: false, intent, code: FleetCode.NotLeader });
    else if (this.queue.length >= this.t.queue) this.out.answers.push({ ok: false, intent, code: FleetCode.Unexpected });
    else {
      this.queue.push(intent);
      this.propose();
    }
    return this.end();
  }

  /** Timers: resends, view change, rejoin, re-form. */
  tick(now: number): Output {
    this.begin(now);
    const quiet = now - this.lastProgress;
    const resend = now - this.lastSent >= this.t.resend;
    switch (this.st) {
      case 'normal':
        if (this.isLeader()) {
          if (resend) this.heartbeat();
          this.propose();
          if (quiet > this.t.reform) this.startReform(this.nextReformEpoch());
        } else if (quiet > this.t.vc) this.startViewChange(this.d.view + 1);
        break;
      case 'viewchange':
        if (quiet > this.t.reform) this.startReform(this.nextReformEpoch());
        else if (now - this.vcStart > this.t.vc) this.startViewChange(this.d.view + 1);
        else if (resend) this.resendViewChange();
        break;
      case 'recovering':
      case 'learner':
        if (this.d.base.config.epoch === 0 || quiet > this.t.reform) this.startReform(this.nextReformEpoch());
        else if (resend && this.st === 'recovering') {
          this.awaiting = { purpose: 'rejoin', from: -1, expect: null, since: now };
          this.broadcast({ type: 'rejoin', commit: this.d.commit, commitHash: hashAt(this.d, this.d.commit)! });
        }
        break;
      case 'reform':
        if (now - this.vcStart > this.t.reform) this.startReform(this.nextReformEpoch());
        else if (resend) this.resendReform();
        break;
      case 'retired':
        break;
    }
    return this.end();
  }

  /** A message from another member, through the (untrusted) network. */
  receive(env: Envelope, now: number): Output {
    this.begin(now);
    const why = this.admit(env);
    if (why !== null) this.refuse(why, env.from);
    else this.dispatch(env);
    return this.end();
  }

  // ---- the envelope: who sent it, to whom, once -----------------------------------------------

  private admit(env: Envelope): FleetCodeValue | null {
    if (this.st === 'retired') return FleetCode.Retired;
    if (env.to !== this.id || env.from === this.id || !Number.isInteger(env.from) || env.from < 0 || env.from >= this.n) return FleetCode.UnknownMember;
    // a sequence number already seen is refused before the MAC is computed; it is recorded only once the MAC verifies
    const k = `${env.from}:${bytesToHex(env.fromInc)}`;
    if (!Number.isSafeInteger(env.seq) || env.seq <= (this.seen.get(k) ?? 0)) return FleetCode.Replay;
    if (!verify(this.key, env)) return FleetCode.BadMac;
    if (!sameBytes(env.toInc, ANY_INCARNATION) && !sameBytes(env.toInc, this.incarnation)) return FleetCode.WrongIncarnation;
    this.seen.set(k, env.seq);
    return null;
  }

  private dispatch(env: Envelope): void {
    const b = env.body;
    switch (b.type) {
      case 'rejoin':
        return this.onRejoin(env, b);
      case 'catchupRequest':
        return this.serveCatchup(env, b.commit, b.commitHash);
      case 'catchup':
        return this.onCatchup(env, b);
      case 'reformVote':
        return this.onReformVote(env, b);
      case 'reformAccept':
        return this.onReformAccept(env, b);
    }
    // epoch-bound messages
    if (this.st === 'reform') {
      // a re-form this member voted in without accepting a set is dropped when a working leader shows up
      const r = this.d.reform!;
      const working = b.type === 'prepare' || b.type === 'commit' || b.type === 'startView';
      if (!working || r.setHash !== null || b.epoch < this.epoch) return this.refuse(FleetCode.StaleEpoch, env.from);
      this.abandonReform(b.epoch > this.epoch);
      if ((this.st as Status) === 'recovering') return;
    }
    if (b.epoch !== this.epoch) return this.refuse(FleetCode.StaleEpoch, env.from);
    if (b.view < this.d.view) return this.refuse(FleetCode.StaleView, env.from);
    switch (b.type) {
      case 'prepare':
        return this.onPrepare(env, b);
      case 'prepareOk':
        return this.onPrepareOk(env, b);
      case 'commit':
        return this.onCommit(env, b);
      case 'doViewChange':
        return this.onDoViewChange(env, b);
      case 'startView':
        return this.onStartView(env, b);
    }
  }

  // ---- normal operation (VR Revisited §4.1) ---------------------------------------------------

  private propose(): void {
    if (!this.isLeader() || this.outstanding) return;
    const tip = tipOf(this.d);
    const cfg = this.configTip();
    if (this.d.commit === tip.index) {
      for (const [m, l] of this.learners) {
        if (sameBytes(cfg.admitted[m], l.inc)) {
          this.learners.delete(m);
          continue;
        }
        if (l.tip.index === tip.index && sameBytes(l.tip.hash, tip.hash)) {
          this.learners.delete(m);
          return this.append([{ kind: 'admit', member: m, incarnation: l.inc }], [], m);
        }
      }
    }
    if (this.queue.length === 0) return;
    const recs = recordsAt(this.d, tip.index);
    const taken: { intent: Intent; op: RecordOp }[] = [];
    while (this.queue.length > 0 && taken.length < this.t.batch) {
      const intent = this.queue.shift()!;
      const op = opOf(intent, recs.get(intent.id));
      const next = transition(recs.get(intent.id), op);
      if (typeof next === 'number') this.out.answers.push({ ok: false, intent, code: next });
      else {
        recs.set(intent.id, next);
        taken.push({ intent, op });
      }
    }
    if (taken.length > 0) this.append(taken.map((x) => x.op), taken, null);
  }

  private append(ops: Op[], intents: { intent: Intent; op: RecordOp }[], admitOf: number | null): void {
    const tip = tipOf(this.d);
    const index = tip.index + 1;
    const entry: Entry = { index, view: this.d.view, prevHash: tip.hash, hash: entryHash(tip.hash, index, this.d.view, ops), ops };
    this.write({ ...this.d, entries: [...this.d.entries, entry] });
    this.outstanding = { index, hash: entry.hash, acks: new Set([this.id]), intents, admitOf, entry };
    this.sendPrepare();
    this.tryCommit();
  }

  private sendPrepare(): void {
    const o = this.outstanding;
    if (o?.entry) this.broadcast({ type: 'prepare', epoch: this.epoch, view: this.d.view, commit: this.d.commit, entry: o.entry });
  }

  private heartbeat(): void {
    if (this.outstanding?.entry) this.sendPrepare();
    else if (this.outstanding) this.broadcast({ type: 'startView', epoch: this.epoch, view: this.d.view, tip: this.outstanding.index, tipHash: this.outstanding.hash });
    else this.broadcast({ type: 'commit', epoch: this.epoch, view: this.d.view, commit: this.d.commit });
  }

  private onPrepare(env: Envelope, b: Extract<Body, { type: 'prepare' }>): void {
    if (env.from !== this.leaderOf(b.view)) return this.refuse(FleetCode.NotLeader, env.from);
    if (!this.following(env, b.view)) return;
    const e = b.entry;
    const tip = tipOf(this.d);
    if (e.index <= tip.index) {
      const have = hashAt(this.d, e.index);
      if (have && !sameBytes(have, e.hash)) return this.refuse(FleetCode.WrongPrevHash, env.from);
    } else {
      const why = checkAppend(this.d, e);
      if (why !== null) {
        this.refuse(why, env.from);
        if (why === FleetCode.WrongIndex) this.requestCatchup('follow', env.from, null);
        return;
      }
      this.write({ ...this.d, entries: [...this.d.entries, e] });
    }
    this.learnCommit(b.commit);
    this.lastProgress = this.now;
    this.ackTip(env);
  }

  private onCommit(env: Envelope, b: Extract<Body, { type: 'commit' }>): void {
    if (env.from !== this.leaderOf(b.view)) return this.refuse(FleetCode.NotLeader, env.from);
    if (!this.following(env, b.view)) return;
    this.learnCommit(b.commit);
    this.lastProgress = this.now;
    this.ackTip(env);
  }

  /** Whether this member follows the leader of `view` now; if it is behind that view, it asks the leader for its log. */
  private following(env: Envelope, view: number): boolean {
    if (this.st === 'recovering') return false;
    const synced = this.synced && (this.st === 'normal' || this.st === 'learner') && view === this.d.view;
    if (!synced) {
      if (view > this.d.view) this.moveToView(view);
      const a = this.awaiting;
      if (a?.purpose !== 'follow' || this.now - a.since >= this.t.resend) this.requestCatchup('follow', env.from, null);
      return false;
    }
    if (!this.admitted(this.configTip(), env.from, env.fromInc)) {
      this.refuse(FleetCode.NotAdmitted, env.from);
      return false;
    }
    return true;
  }

  /** A later view's leader shows up: this member's log is not known to be a prefix of that leader's until it catches up. */
  private moveToView(view: number): void {
    this.write({ ...this.d, view });
    this.synced = false;
    if (this.st === 'normal') this.enterViewChange();
  }

  private ackTip(env: Envelope): void {
    const tip = tipOf(this.d);
    this.send(env.from, { type: 'prepareOk', epoch: this.epoch, view: this.d.view, index: tip.index, hash: tip.hash }, env.fromInc);
  }

  /** A follower's commit point follows the leader's, up to its own tip (its log is a prefix of the leader's in this view). */
  private learnCommit(commit: number): void {
    const c = Math.min(commit, tipOf(this.d).index);
    if (c > this.d.commit) this.d = compact({ ...this.d, commit: c }, this.t.keep);
    this.checkAdmission();
  }

  private onPrepareOk(env: Envelope, b: Extract<Body, { type: 'prepareOk' }>): void {
    if (!this.isLeader() || b.view !== this.d.view) return this.refuse(FleetCode.Unexpected, env.from);
    const o = this.outstanding;
    if (!this.admitted(this.configTip(), env.from, env.fromInc)) {
      this.learners.set(env.from, { inc: env.fromInc, tip: { index: b.index, hash: b.hash } });
      if (this.opts.broken !== 'count-unadmitted') {
        this.propose();
        return;
      }
    }
    this.lastProgress = this.now;
    if (o && b.index === o.index && sameBytes(b.hash, o.hash)) {
      o.acks.add(env.from);
      this.tryCommit();
    }
  }

  private quorum(): number {
    return this.opts.broken === 'half-quorum' ? Math.floor(this.n / 2) : Math.floor(this.n / 2) + 1;
  }

  /** Commits the outstanding entry once a majority of member ids, each with its admitted incarnation, hold it; an Admit's own member does not count. */
  private tryCommit(): void {
    const o = this.outstanding;
    if (!o) return;
    const counted = [...o.acks].filter((m) => m !== o.admitOf);
    if (counted.length < this.quorum()) return;
    this.outstanding = null;
    this.d = compact({ ...this.d, commit: o.index }, this.t.keep);
    this.lastProgress = this.now;
    this.out.events.push({ type: 'commit', index: o.index, hash: o.hash, view: this.d.view, counted, admitOf: o.admitOf });
    for (const { intent, op } of o.intents) this.out.answers.push({ ok: true, intent, op, index: o.index, hash: o.hash });
    this.checkAdmission();
    if (this.st !== 'normal') return;
    this.broadcast({ type: 'commit', epoch: this.epoch, view: this.d.view, commit: this.d.commit });
    this.propose();
  }

  /** After the log changed: a learner whose incarnation is admitted by a committed Admit serves; an admitted one whose id admits another incarnation retires. */
  private checkAdmission(): void {
    const mine = this.configTip().admitted[this.id];
    if (this.wasAdmitted && !sameBytes(mine, this.incarnation) && this.opts.broken !== 'count-unadmitted') {
      this.st = 'retired';
      this.outstanding = null;
      this.queue = [];
      return;
    }
    if (this.st === 'learner' && sameBytes(configAt(this.d, this.d.commit).admitted[this.id], this.incarnation)) {
      this.wasAdmitted = true;
      this.st = 'normal';
      this.write({ ...this.d, normalView: this.d.view });
    }
  }

  // ---- view change (VR Revisited §4.2) --------------------------------------------------------

  private startViewChange(view: number): void {
    if (!this.wasAdmitted || (this.st !== 'normal' && this.st !== 'viewchange')) return;
    this.write({ ...this.d, view });
    this.enterViewChange();
    const body = this.dvcBody();
    this.dvcs.set(this.id, { inc: this.incarnation, body });
    this.broadcast(body);
    this.tryStartView();
  }

  /** Leaves normal operation: nothing outstanding is answered (it may still commit in the next view; clients retry). */
  private enterViewChange(): void {
    this.st = 'viewchange';
    this.synced = false;
    this.vcStart = this.now;
    this.outstanding = null;
    this.queue = [];
    this.dvcs = new Map();
    this.awaiting = null;
  }

  private dvcBody(): Extract<Body, { type: 'doViewChange' }> {
    const tip = tipOf(this.d);
    return { type: 'doViewChange', epoch: this.epoch, view: this.d.view, normalView: this.d.normalView, tip: tip.index, tipHash: tip.hash, config: this.configTip() };
  }

  private resendViewChange(): void {
    this.broadcast(this.dvcBody());
    if (this.awaiting) this.requestCatchup(this.awaiting.purpose, this.awaiting.from, this.awaiting.expect);
  }

  private onDoViewChange(env: Envelope, b: Extract<Body, { type: 'doViewChange' }>): void {
    if (b.view > this.d.view) this.startViewChange(b.view);
    if (this.st === 'normal' && b.view === this.d.view && this.isLeader()) {
      const tip = tipOf(this.d);
      return this.send(env.from, { type: 'startView', epoch: this.epoch, view: this.d.view, tip: tip.index, tipHash: tip.hash }, env.fromInc);
    }
    if (this.st !== 'viewchange' || b.view !== this.d.view) return;
    this.dvcs.set(env.from, { inc: env.fromInc, body: b });
    this.tryStartView();
  }

  /**
   * The new leader's rule: among the view changes received, the most up-to-date log (normal view,
   * then tip) wins; the senders count only if the configuration at the tip of that log admits
   * their incarnation, and a majority of ids must count (docs/fleet.md, "View change").
   */
  private tryStartView(): void {
    if (this.st !== 'viewchange' || this.leaderOf(this.d.view) !== this.id || this.awaiting) return;
    let best: [number, Dvc] | null = null;
    for (const [m, v] of this.dvcs) {
      const nv = { normalView: v.body.normalView, tip: v.body.tip };
      if (!best || newer(nv, { normalView: best[1].body.normalView, tip: best[1].body.tip })) best = [m, v];
    }
    if (!best) return;
    const cfg = best[1].body.config;
    if (!this.admitted(cfg, this.id, this.incarnation)) return;
    let count = 0;
    for (const [m, v] of this.dvcs) if (this.admitted(cfg, m, v.inc)) count++;
    if (count < this.quorum()) return;
    const tip = tipOf(this.d);
    const want = { index: best[1].body.tip, hash: best[1].body.tipHash };
    if (want.index === tip.index && sameBytes(want.hash, tip.hash)) this.enterView();
    else this.requestCatchup('view', best[0], want, best[1].inc);
  }

  private enterView(): void {
    this.write({ ...this.d, normalView: this.d.view });
    this.st = 'normal';
    this.synced = true;
    this.lastProgress = this.now;
    this.dvcs = new Map();
    const tip = tipOf(this.d);
    // the adopted uncommitted suffix commits by the same rule as when it was proposed: an Admit's own member does not count
    const admit = entriesAfter(this.d, this.d.commit).flatMap((e) => e.ops).find((op) => op.kind === 'admit');
    const admitOf = admit?.kind === 'admit' ? admit.member : null;
    this.outstanding = tip.index > this.d.commit ? { index: tip.index, hash: tip.hash, acks: new Set([this.id]), intents: [], admitOf, entry: null } : null;
    this.broadcast({ type: 'startView', epoch: this.epoch, view: this.d.view, tip: tip.index, tipHash: tip.hash });
    this.tryCommit();
    this.propose();
  }

  private onStartView(env: Envelope, b: Extract<Body, { type: 'startView' }>): void {
    if (env.from !== this.leaderOf(b.view)) return this.refuse(FleetCode.NotLeader, env.from);
    if (this.st === 'recovering') return;
    if (this.synced && (this.st === 'normal' || this.st === 'learner') && b.view === this.d.view) return this.ackTip(env);
    const tip = tipOf(this.d);
    if (b.view > this.d.view) this.moveToView(b.view);
    else this.synced = false;
    if (b.tip === tip.index && sameBytes(b.tipHash, tip.hash)) {
      this.write({ ...this.d, normalView: b.view });
      this.st = this.wasAdmitted ? 'normal' : 'learner';
      this.synced = true;
      this.awaiting = null;
      this.lastProgress = this.now;
      this.checkAdmission();
      this.ackTip(env);
    } else this.requestCatchup('follow', env.from, { index: b.tip, hash: b.tipHash }, env.fromInc);
  }

  // ---- catch-up, rejoin (VR Revisited §4.3, with durable logs) --------------------------------

  private requestCatchup(purpose: Purpose, from: number, expect: Tip | null, toInc: Uint8Array = ANY_INCARNATION): void {
    this.awaiting = { purpose, from, expect, since: this.now };
    this.send(from, { type: 'catchupRequest', commit: this.d.commit, commitHash: hashAt(this.d, this.d.commit)! }, toInc);
  }

  private onRejoin(env: Envelope, b: Extract<Body, { type: 'rejoin' }>): void {
    if (!this.isLeader() || this.admitted(this.configTip(), env.from, env.fromInc)) return this.refuse(FleetCode.Unexpected, env.from);
    this.learners.set(env.from, { inc: env.fromInc, tip: { index: -1, hash: new Uint8Array(0) } });
    this.serveCatchup(env, b.commit, b.commitHash);
  }

  /** Any member that holds a log may send it: the requester decides whether to take it. */
  private serveCatchup(env: Envelope, commit: number, commitHash: Uint8Array): void {
    if (this.st === 'recovering' || this.st === 'retired') return this.refuse(FleetCode.Unexpected, env.from);
    const have = hashAt(this.d, commit);
    const suffix = have !== undefined && sameBytes(have, commitHash);
    this.send(
      env.from,
      {
        type: 'catchup',
        epoch: this.epoch,
        view: this.d.view,
        normalView: this.d.normalView,
        commit: this.d.commit,
        snapshot: suffix ? null : this.d.base,
        entries: suffix ? entriesAfter(this.d, commit) : [...this.d.entries],
      },
      env.fromInc,
    );
  }

  private onCatchup(env: Envelope, b: Extract<Body, { type: 'catchup' }>): void {
    const a = this.awaiting;
    if (!a || (a.from !== env.from && !(a.from === -1 && env.from === this.leaderOf(b.view)))) return this.refuse(FleetCode.Unexpected, env.from);
    // to follow a view's leader, take its log only once it is normal in that view (a leader still
    // changing view has not adopted the most up-to-date log yet)
    const following = a.purpose === 'follow' || a.purpose === 'rejoin';
    if (following && (b.normalView !== b.view || env.from !== this.leaderOf(b.view) || b.view < this.d.view)) return this.refuse(FleetCode.Unexpected, env.from);
    let cand: DurableState;
    if (b.snapshot) {
      if (b.snapshot.index < this.d.commit || b.snapshot.config.admitted.length !== this.n) return this.refuse(FleetCode.StaleCatchup, env.from);
      cand = { ...this.d, base: b.snapshot, entries: [] };
    } else cand = { ...this.d, entries: this.d.entries.filter((e) => e.index <= this.d.commit) };
    const why = checkChain(cand, b.entries);
    if (why !== null) return this.refuse(why, env.from);
    cand = { ...cand, entries: [...cand.entries, ...b.entries] };
    const tip = tipOf(cand);
    if (a.expect && (a.expect.index !== tip.index || !sameBytes(a.expect.hash, tip.hash))) return this.refuse(FleetCode.Unexpected, env.from);
    // a member's log never goes back (VR Revisited §4.2's order: normal view, then length)
    if (newer({ normalView: this.d.normalView, tip: tipOf(this.d).index }, { normalView: b.normalView, tip: tip.index })) return this.refuse(FleetCode.StaleCatchup, env.from);
    const epochChanged = cand.base.config.epoch !== this.d.base.config.epoch;
    if (epochChanged && a.purpose !== 'rejoin') return this.refuse(FleetCode.StaleEpoch, env.from);
    const commit = Math.max(Math.min(b.commit, tip.index), Math.min(this.d.commit, tip.index), cand.base.index);
    const view = a.purpose === 'view' || a.purpose === 'reform' ? this.d.view : Math.max(this.d.view, b.view);
    this.write(compact({ ...cand, commit, view, normalView: b.normalView }, this.t.keep));
    this.awaiting = null;
    switch (a.purpose) {
      case 'view':
        if (this.st === 'viewchange') this.enterView();
        return;
      case 'reform':
        return this.maybeAccept();
      case 'rejoin':
      case 'follow':
        if (this.wasAdmitted && (this.st === 'viewchange' || this.st === 'normal')) {
          this.st = 'normal';
          this.write({ ...this.d, normalView: this.d.view });
        } else if (this.st === 'recovering' || this.st === 'learner') this.st = 'learner';
        else return;
        this.synced = true;
        this.lastProgress = this.now;
        this.checkAdmission();
        return this.ackTip(env);
    }
  }

  // ---- re-form of a whole fleet: unanimity (docs/fleet.md, "Re-form") ------------------------

  private nextReformEpoch(): number {
    return Math.max(this.epoch, this.d.reform?.epoch ?? 0) + 1;
  }

  private startReform(epoch: number): void {
    if (this.st === 'retired') return;
    this.write({ ...this.d, reform: { epoch, voter: this.incarnation, setHash: null } });
    this.st = 'reform';
    this.vcStart = this.now;
    this.outstanding = null;
    this.queue = [];
    this.plan = null;
    this.myAccept = null;
    this.awaiting = null;
    const tip = tipOf(this.d);
    const body: Vote['body'] = { type: 'reformVote', epoch, view: this.d.view, normalView: this.d.normalView, tip: tip.index, tipHash: tip.hash };
    this.votesOf(epoch).set(this.id, { inc: this.incarnation, body });
    this.broadcast(body);
    this.tryPlan();
  }

  /** A re-form this member voted in but never accepted a set for is dropped for good: it will vote only in a later epoch. */
  private abandonReform(newerEpoch: boolean): void {
    this.plan = null;
    this.lastProgress = this.now;
    if (this.wasAdmitted && !newerEpoch) this.enterViewChange();
    else this.st = 'recovering';
  }

  private votesOf(epoch: number): Map<number, Vote> {
    let v = this.votes.get(epoch);
    if (!v) this.votes.set(epoch, (v = new Map()));
    return v;
  }

  private resendReform(): void {
    const r = this.d.reform;
    const own = r && this.votesOf(r.epoch).get(this.id);
    if (own) this.broadcast(own.body);
    if (this.myAccept) this.broadcast(this.myAccept);
    if (this.awaiting) this.requestCatchup(this.awaiting.purpose, this.awaiting.from, this.awaiting.expect);
  }

  private onReformVote(env: Envelope, b: Vote['body']): void {
    if (b.epoch <= this.epoch) {
      if (this.myAccept && b.epoch === this.epoch) this.send(env.from, this.myAccept, env.fromInc);
      return this.refuse(FleetCode.StaleEpoch, env.from);
    }
    const votes = this.votesOf(b.epoch);
    if (!votes.has(env.from)) votes.set(env.from, { inc: env.fromInc, body: b });
    const unhappy = this.st !== 'normal' || this.now - this.lastProgress > this.t.vc;
    const r = this.d.reform;
    if (unhappy && this.st !== 'retired' && (!r || b.epoch > r.epoch)) this.startReform(b.epoch);
    else this.tryPlan();
  }

  /** With a vote from every member id for this member's re-form epoch: the set, the most up-to-date log, and the log fetched if it is not this one. */
  private tryPlan(): void {
    const r = this.d.reform;
    if (this.st !== 'reform' || !r || this.plan || !sameBytes(r.voter, this.incarnation)) return;
    const votes = this.votesOf(r.epoch);
    if (votes.size < this.n) return;
    const admitted: Uint8Array[] = [];
    let best = -1;
    let view = 0;
    for (let m = 0; m < this.n; m++) {
      const v = votes.get(m)!;
      admitted.push(v.inc);
      view = Math.max(view, v.body.view);
      const bv = best >= 0 ? votes.get(best)!.body : null;
      if (!bv || newer(v.body, bv)) best = m;
    }
    const config: Config = { epoch: r.epoch, admitted };
    const setHash = configHash(config);
    if (r.setHash && !sameBytes(r.setHash, setHash)) return;
    const bv = votes.get(best)!.body;
    this.plan = { epoch: r.epoch, config, setHash, best, bestTip: { index: bv.tip, hash: bv.tipHash }, view: view + 1 };
    this.write({ ...this.d, reform: { ...r, setHash } });
    const tip = tipOf(this.d);
    if (tip.index === bv.tip && sameBytes(tip.hash, bv.tipHash)) this.maybeAccept();
    else this.requestCatchup('reform', best, this.plan.bestTip, admitted[best]);
  }

  private maybeAccept(): void {
    const p = this.plan;
    if (!p || this.st !== 'reform') return;
    const tip = tipOf(this.d);
    if (tip.index !== p.bestTip.index || !sameBytes(tip.hash, p.bestTip.hash)) return;
    this.myAccept = { type: 'reformAccept', epoch: p.epoch, setHash: p.setHash, tip: tip.index, tipHash: tip.hash };
    this.broadcast(this.myAccept);
    this.onAccepted(this.id, this.incarnation, this.myAccept);
  }

  private onReformAccept(env: Envelope, b: Extract<Body, { type: 'reformAccept' }>): void {
    if (b.epoch <= this.epoch) {
      if (this.myAccept && b.epoch === this.epoch) this.send(env.from, this.myAccept, env.fromInc);
      return;
    }
    this.onAccepted(env.from, env.fromInc, b);
  }

  private onAccepted(from: number, inc: Uint8Array, b: Extract<Body, { type: 'reformAccept' }>): void {
    let acc = this.accepts.get(b.epoch);
    if (!acc) this.accepts.set(b.epoch, (acc = new Map()));
    acc.set(from, { inc, body: b });
    const p = this.plan;
    if (!p || !this.myAccept || p.epoch !== b.epoch || this.st !== 'reform') return;
    for (let m = 0; m < this.n; m++) {
      const a = acc.get(m);
      if (!a || !sameBytes(a.inc, p.config.admitted[m]) || !sameBytes(a.body.setHash, p.setHash) || a.body.tip !== p.bestTip.index || !sameBytes(a.body.tipHash, p.bestTip.hash)) return;
    }
    // every member id holds the same log and accepted this set: it is the new epoch's committed state
    const tip = tipOf(this.d);
    const full = { ...this.d, commit: tip.index };
    this.write({
      ...full,
      view: p.view,
      normalView: p.view,
      base: { index: tip.index, hash: tip.hash, config: p.config, records: recordsAt(full, tip.index) },
      entries: [],
    });
    this.out.events.push({ type: 'reform', epoch: p.epoch, config: p.config, tip });
    this.plan = null;
    this.wasAdmitted = true;
    this.st = 'normal';
    this.synced = true;
    this.lastProgress = this.now;
    this.learners.clear();
    if (this.isLeader()) this.enterView();
  }

  // ---- helpers ------------------------------------------------------------------------------

  private leaderOf(view: number): number {
    return view % this.n;
  }
  private configTip(): Config {
    return configAt(this.d, tipOf(this.d).index);
  }
  private admitted(c: Config, m: number, inc: Uint8Array): boolean {
    return this.opts.broken === 'count-unadmitted' || sameBytes(c.admitted[m], inc);
  }
  private write(d: DurableState): void {
    this.d = d;
    this.platform.persist(d);
  }
  private send(to: number, body: Body, toInc: Uint8Array = ANY_INCARNATION): void {
    this.lastSent = this.now;
    this.out.send.push(seal(this.key, { from: this.id, to, fromInc: this.incarnation, toInc, seq: ++this.seqOut, body }));
  }
  private broadcast(body: Body): void {
    for (let m = 0; m < this.n; m++) if (m !== this.id) this.send(m, body);
  }
  private refuse(code: FleetCodeValue, from?: number): void {
    this.out.faults.push(new FleetFault(code, 'fleet: message refused', from));
  }
  private begin(now: number): void {
    this.now = now;
    this.out = { send: [], answers: [], faults: [], events: [] };
  }
  private end(): Output {
    return this.out;
  }
}
