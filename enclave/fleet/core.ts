/**
 * The state of one fleet member (durable and RAM) and the helpers every role shares: sending,
 * refusing, writing durably, who leads a view, which incarnation a configuration admits. The
 * roles are one file each, functions of this state: normal.ts (VR Revisited §4.1), view-change.ts
 * (§4.2), catchup.ts (§4.3: catch-up, rejoin), reform.ts (a whole fleet's re-form). member.ts is
 * the entry (messages, intents, ticks in; `Output` out). Only enclave/fleet/ reads this state.
 */
import { charterHash } from './ceremony.ts';
import { FleetFault, type FleetCodeValue } from './faults.ts';
import { pairKeys, sharedKeysForControl, type MemberSecrets, type MessageKeys } from './keys.ts';
import { configAt, isMemberOf, membersOf, tipOf, type DurableState, type Tip } from './log.ts';
import { MAX_DURABLE_ENTRIES } from './durable.ts';
import type { Intent, RecordOp } from './rules.ts';
import { MAX_MEMBERS, MAX_OPS_PER_ENTRY } from './codec.ts';
import { ANY_INCARNATION, INCARNATION_BYTES, sameBytes, seal, type Body, type Config, type Entry } from './wire.ts';

export interface MemberPlatform {
  /** Random bytes (the incarnation). */
  readonly random: (n: number) => Uint8Array;
  /** Makes the state durable (NVRAM and storage) before returning. */
  readonly persist: (state: DurableState) => void;
}

/**
 * A deliberately broken rule, for the simulation's positive controls only: `count-unadmitted`
 * counts any incarnation in quorums and lets a booted member resume from its durable state as if
 * admitted; `half-quorum` takes n/2 (rounded down) as a majority; `skip-mac` takes a message
 * without checking its MAC; `shared-key` gives every pair of members one key (keys.ts
 * `sharedKeysForControl`), so a member can MAC a message in another member's name;
 * `charter-two` lets a charter change add or remove two members at once (log.ts
 * checkCharterChange), so a majority of the old charter and one of the new may not meet;
 * `reform-majority` re-forms with the votes of any majority, as if the operator had approved a
 * re-form without the others (reform.ts `reformVoters`).
 */
export type BrokenRule = 'count-unadmitted' | 'half-quorum' | 'skip-mac' | 'shared-key' | 'charter-two' | 'reform-majority';
export const BROKEN_RULES: readonly BrokenRule[] = ['count-unadmitted', 'half-quorum', 'skip-mac', 'shared-key', 'charter-two', 'reform-majority'];

/**
 * Committed entries a member keeps for its vault to apply, at most (`floor`): half of what its
 * state file holds (durable.ts MAX_DURABLE_ENTRIES), the rest for entries not committed yet.
 */
export const MAX_UNAPPLIED_ENTRIES = MAX_DURABLE_ENTRIES / 2;

export interface MemberOptions {
  /** Members of the founding charter (the fleet's size at the ceremony). */
  readonly n: number;
  /** What the device keeps in NVRAM (keys.ts): its message keys are derived from it once, at boot. */
  readonly secrets: MemberSecrets;
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
  /** Messages out, sealed (wire.ts); the header names the receiver. */
  readonly send: Uint8Array[];
  readonly answers: Answer[];
  readonly faults: FleetFault[];
  readonly events: FleetEvent[];
}

export type Status = 'recovering' | 'learner' | 'normal' | 'viewchange' | 'reform' | 'retired';

export type Purpose = 'view' | 'follow' | 'rejoin' | 'reform';
export interface Awaiting {
  readonly purpose: Purpose;
  readonly from: number;
  readonly expect: Tip | null;
  readonly since: number;
}
export interface Outstanding {
  readonly index: number;
  readonly hash: Uint8Array;
  readonly acks: Set<number>;
  readonly intents: readonly { intent: Intent; op: RecordOp }[];
  readonly admitOf: number | null;
  readonly entry: Entry | null;
}
export type Vote = { inc: Uint8Array; body: Extract<Body, { type: 'reformVote' }> };
export type Dvc = { inc: Uint8Array; body: Extract<Body, { type: 'doViewChange' }> };
export interface ReformPlan {
  readonly epoch: number;
  readonly config: Config;
  readonly setHash: Uint8Array;
  readonly best: number;
  readonly bestTip: Tip;
  readonly view: number;
}

export class MemberCore {
  readonly id: number;
  readonly incarnation: Uint8Array;
  /** Members of the founding charter. */
  readonly n: number;
  /** The positive control `shared-key` only: one key for every pair. */
  private readonly shared: MessageKeys | null;
  /** Pair keys by id, with the identity they were derived from (keys.ts pairKeys): an id names one device for the fleet's life, a charter change adds keys, never changes one. */
  private readonly pairs = new Map<number, { identity: Uint8Array; keys: { send: Uint8Array; receive: Uint8Array } | null }>();
  private readonly rootHash: Uint8Array;
  /** Charter changes this member's device was given the operator's approval for (member.ts approveCharter), by hex of the change. */
  readonly approved = new Set<string>();
  /**
   * The operator's approval of a re-form without some member ids (member.ts `approveReform`):
   * applies while the configuration at this member's tip is of epoch `fromEpoch` and this
   * incarnation is the one it names for this member (reform.ts `reformVoters`); the kept members'
   * votes count only from the incarnations it names. In RAM, as charter approvals.
   */
  reformWithout: { readonly fromEpoch: number; readonly without: ReadonlySet<number>; readonly kept: ReadonlyMap<number, Uint8Array> } | null = null;
  readonly t: { vc: number; reform: number; resend: number; keep: number; batch: number; queue: number };
  d: DurableState;
  st: Status = 'recovering';
  wasAdmitted = false;
  /** Whether this member has applied an entry's payload (member.ts setApplied); compaction keeps every entry from the first it has not (`floor`). */
  applied: ((payload: Uint8Array) => boolean) | null = null;

  /**
   * The last index compaction may fold: before the first entry whose payload this member has not
   * applied, but never more than MAX_UNAPPLIED_ENTRIES committed entries behind the commit point.
   * A vault that can not apply from its log (behind: waiting for a catch-up by stored rows) would
   * otherwise keep every entry the fleet commits until its state outgrew what the state file
   * holds (MAX_DURABLE_ENTRIES: the encoding refused it and the member process died, CI
   * 2026-12-06). Entries folded unapplied make the vault behind (fleet-seat.ts `behind`), which
   * is the catch-up by stored rows' case: it adopts rows only at a batch its log names committed.
   */
  floor(d: DurableState = this.d): number {
    const f = this.applied;
    if (!f) return Number.MAX_SAFE_INTEGER;
    for (const e of d.entries) if (e.payload.length > 0 && !f(e.payload)) return Math.max(e.index - 1, d.commit - MAX_UNAPPLIED_ENTRIES);
    return Number.MAX_SAFE_INTEGER;
  }
  /** This member's log is a prefix of the current view leader's (set when a view starts or a catch-up installs). */
  synced = false;
  now = 0;
  lastProgress = 0;
  /**
   * Leading: the tick of each admitted member's last acknowledgement in this epoch and view, since
   * when this member leads it, and whether it heard a majority in it yet (normal.ts
   * `withoutMajority`, `cutOff`).
   */
  acks = { key: '', since: 0, at: new Map<number, number>(), had: false };
  /** Leading: whether `cutOff` held at the last tick (Member.cutOff). */
  cut = false;
  /** The commit point and view a follower last saw move, and since when (view-change.ts `stalledFor`). */
  stall = { commit: -1, view: -1, since: 0 };
  /** The tick this incarnation became a learner (caught up, not admitted yet): a learner the fleet does not admit in time votes for a re-form. */
  learnerSince = 0;
  /**
   * This incarnation dropped a re-form vote for a working leader of a newer epoch (reform.ts
   * `abandonReform`): at epoch 0 too it then asks that leader to rejoin, rather than vote again at
   * once (member.ts `tick`).
   */
  sawNewerEpoch = false;
  /**
   * The tick of this member's last broadcast: the timers' resends (member.ts `tick`: the leader's
   * heartbeat, a view change's, a re-form's, a rejoin) wait `resendTicks` after it. A message to one
   * member does not count: a leader answering one member every tick (catch-ups, re-form accepts)
   * would otherwise send the others no heartbeat, and they would start a view change.
   */
  lastSent = -Infinity;
  vcStart = 0;
  /** View changes in a row without a view that worked for `viewChangeTicks`: each waits twice the last (PBFT, Castro and Liskov 1999 §4.4), up to 8 times `viewChangeTicks`. */
  vcRound = 0;
  /** Ticks in a row this member has been normal and heard its leader (or, leading, a follower) within two resends. */
  normalTicks = 0;
  /** How long this member waits for a view before the next: `viewChangeTicks`, doubled per view change in a row. */
  vcWait(): number {
    return this.t.vc * 2 ** Math.min(this.vcRound, 3);
  }
  seqOut = 0;
  readonly seen = new Map<string, number>();
  /** Following: when this member last sent its log to a rejoining incarnation its leader may be unknown to (catchup.ts `relayRejoin`), by `id:incarnation`. */
  readonly relayed = new Map<string, number>();
  out: { send: Uint8Array[]; answers: Answer[]; faults: FleetFault[]; events: FleetEvent[] } = { send: [], answers: [], faults: [], events: [] };
  // leader
  queue: Intent[] = [];
  outstanding: Outstanding | null = null;
  readonly learners = new Map<number, { inc: Uint8Array; tip: Tip }>();
  // view change, catch-up, re-form
  /**
   * The view this member asks to move to and the member ids that answered they heard no leader
   * either, itself included (view-change.ts `seekView`); null while it hears its leader. In RAM: a
   * restarted member is not admitted and takes no part in view changes.
   */
  preVote: { view: number; grants: Set<number> } | null = null;
  dvcs = new Map<number, Dvc>();
  awaiting: Awaiting | null = null;
  readonly votes = new Map<number, Map<number, Vote>>();
  readonly accepts = new Map<number, Map<number, { inc: Uint8Array; body: Extract<Body, { type: 'reformAccept' }> }>>();
  plan: ReformPlan | null = null;
  myAccept: Extract<Body, { type: 'reformAccept' }> | null = null;
  /** The tick this member last answered a member's re-form accept of its epoch with its own (reform.ts `onReformAccept`). */
  readonly acceptAnswered = new Map<number, number>();


  constructor(
    durable: DurableState,
    readonly platform: MemberPlatform,
    readonly opts: MemberOptions,
    now: number,
  ) {
    this.id = durable.member;
    this.n = opts.n;
    const sec = opts.secrets;
    const named = sec.joined ? sec.joined.identities[durable.member] : sec.charter.identities[durable.member];
    if (sec.member !== durable.member || sec.charter.identities.length !== opts.n || !named) throw new Error('fleet: the secrets are not of this member of this fleet');
    this.shared = opts.broken === 'shared-key' ? sharedKeysForControl(sec) : null;
    this.rootHash = charterHash(sec.charter);
    this.d = durable;
    this.persistedCommit = durable.commit;
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
    if (this.t.batch > MAX_OPS_PER_ENTRY) throw new Error(`fleet: a batch holds at most ${MAX_OPS_PER_ENTRY} ops (the decoder's bound)`);
    this.now = now;
    this.lastProgress = now;
  }

  get epoch(): number {
    return this.d.base.config.epoch;
  }
  isLeader(): boolean {
    return this.st === 'normal' && this.leaderOf(this.d.view) === this.id && isMemberOf(this.configTip(), this.id);
  }
  /** A majority of the member ids of `cfg`'s charter (the tip's by default: a charter counts from the moment it is in the log). */
  quorum(cfg: Config = this.configTip()): number {
    const size = membersOf(cfg).length;
    return this.opts.broken === 'half-quorum' ? Math.floor(size / 2) : Math.floor(size / 2) + 1;
  }
  /** Members a charter change may add or remove: one (two only under the positive control `charter-two`). */
  charterChanges(): number {
    return this.opts.broken === 'charter-two' ? 2 : 1;
  }
  /** The member ids at this member's tip. */
  members(): number[] {
    return membersOf(this.configTip());
  }
  /** The next view after `view` whose leader is a member at this member's tip (a view whose leader id is empty or removed is skipped). */
  nextView(view: number): number {
    return this.viewLedFrom(this.configTip(), view + 1);
  }
  /** The first view from `view` on whose leader is a member of `cfg`. */
  viewLedFrom(cfg: Config, view: number): number {
    let v = view;
    while (!isMemberOf(cfg, this.leaderOf(v))) v++;
    return v;
  }
  /**
   * Members a charter change at this member's tip removed, with their identity, while they are to
   * hear of it: until the change has been committed for two view-change timeouts, the leader's
   * messages still go to them (not theirs to it), so a removed member learns the commit and
   * retires (normal.ts checkAdmission). In RAM: a member that boots with the removal in its log
   * sends a removed member nothing.
   */
  private readonly former = new Map<number, { identity: Uint8Array; serial: number; committedAt: number | null }>();
  /** Notes the ids the tip's charter removed (called when the tip's configuration changes). */
  private noteRemoved(before: Config | null, after: Config): void {
    if (!before || after.charter.serial <= before.charter.serial) return;
    before.charter.identities.forEach((k, m) => {
      if (k && !after.charter.identities[m]) this.former.set(m, { identity: k, serial: after.charter.serial, committedAt: null });
    });
  }
  /** Removed ids still to hear from this member (see `former`); the others are forgotten. */
  formerMembers(): number[] {
    const out: number[] = [];
    const tip = this.configTip();
    const committed = configAt(this.d, this.d.commit).charter.serial;
    for (const [m, f] of this.former) {
      if (tip.charter.identities[m] || tip.charter.serial < f.serial) {
        this.former.delete(m); // the removal was dropped from the log: a member again, or not removed
        continue;
      }
      if (committed >= f.serial) f.committedAt ??= this.now;
      if (f.committedAt !== null && this.now - f.committedAt > 2 * this.t.vc) this.former.delete(m);
      else out.push(m);
    }
    return out;
  }
  /** The identity at member id `m`: the tip's charter, a member it just removed, else the charter this device was granted under. */
  private identityOf(m: number): Uint8Array | null {
    return this.configTip().charter.identities[m] ?? this.former.get(m)?.identity ?? this.opts.secrets.joined?.identities[m] ?? null;
  }
  private pair(m: number): { send: Uint8Array; receive: Uint8Array } | null {
    if (m === this.id) return null;
    const id = this.identityOf(m);
    if (!id) return null;
    const had = this.pairs.get(m);
    if (had && (had.identity === id || sameBytes(had.identity, id))) return had.keys;
    let keys: { send: Uint8Array; receive: Uint8Array } | null;
    try {
      keys = pairKeys(this.opts.secrets, m, id, this.rootHash);
    } catch (e) {
      if (!(e instanceof FleetFault)) throw e;
      keys = null; // an identity that gives no shared secret: no message to or from that id
    }
    this.pairs.set(m, { identity: id, keys });
    return keys;
  }
  /** The key this member MACs what it sends to `m` with (null: no such member). */
  sendKey(m: number): Uint8Array | null {
    return this.shared ? (this.shared.send[m] ?? null) : (this.pair(m)?.send ?? null);
  }
  /** The key that checks what `m` sends to this member. */
  receiveKey(m: number): Uint8Array | null {
    return this.shared ? (this.shared.receive[m] ?? null) : (this.pair(m)?.receive ?? null);
  }
  /** Enters the learner state (a no-op when in it already). */
  becomeLearner(): void {
    if (this.st !== 'learner') this.learnerSince = this.now;
    this.st = 'learner';
  }
  /**
   * The leader of a view: one id per view whatever charter a member holds (a member that took a
   * charter change and one that did not yet agree on it), so two members never both lead a view.
   */
  leaderOf(view: number): number {
    return view % MAX_MEMBERS;
  }
  private tipConfig: { d: DurableState; c: Config } | null = null;
  configTip(): Config {
    if (this.tipConfig?.d !== this.d) {
      const c = configAt(this.d, tipOf(this.d).index);
      this.noteRemoved(this.tipConfig?.c ?? null, c);
      this.tipConfig = { d: this.d, c };
    }
    return this.tipConfig.c;
  }
  admitted(c: Config, m: number, inc: Uint8Array): boolean {
    return this.opts.broken === 'count-unadmitted' || sameBytes(c.admitted[m], inc);
  }
  write(d: DurableState): void {
    this.d = d;
    this.platform.persist(d);
    this.persistedCommit = d.commit;
  }
  /** The commit index of the state last written (the commit point learned since lives in RAM until the next write). */
  persistedCommit = 0;
  /** Seals and sends; a body over a bound of the wire format (a catch-up too long, a snapshot too large) is not sent: its fault goes in the output. */
  send(to: number, body: Body, toInc: Uint8Array = ANY_INCARNATION): void {
    const key = this.sendKey(to);
    if (!key) return;
    try {
      this.out.send.push(seal(key, { from: this.id, to, fromInc: this.incarnation, toInc, seq: ++this.seqOut, body }));
    } catch (e) {
      if (!(e instanceof FleetFault)) throw e;
      this.out.faults.push(e);
    }
  }
  /** To every other member id at this member's tip; a member added by a change that is not at its tip yet takes it from the members it knows (member.ts tick). */
  broadcast(body: Body): void {
    this.lastSent = this.now;
    for (const m of this.members()) if (m !== this.id) this.send(m, body);
    if (this.isLeader()) for (const m of this.formerMembers()) this.send(m, body);
    const j = this.opts.secrets.joined;
    if (j && !isMemberOf(this.configTip(), this.id)) j.identities.forEach((k, m) => k && m !== this.id && !isMemberOf(this.configTip(), m) && this.send(m, body));
  }
  refuse(code: FleetCodeValue, from?: number): void {
    this.out.faults.push(new FleetFault(code, 'fleet: message refused', from));
  }
  begin(now: number): void {
    this.now = now;
    this.out = { send: [], answers: [], faults: [], events: [] };
  }
  end(): Output {
    return this.out;
  }
}
