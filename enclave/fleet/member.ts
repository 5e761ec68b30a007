/**
 * One fleet member's replication rule as a deterministic state machine: messages and client
 * intents in, messages, answers, refusals and events out. No clock, randomness or I/O of its own:
 * the caller passes the time (`now`, in ticks), and the platform gives random bytes (for the
 * incarnation, drawn once per boot) and durable writes. The protocol and why it is safe:
 * docs/fleet.md. Viewstamped Replication Revisited (Liskov & Cowling, 2012): §4.1 normal
 * operation (normal.ts), §4.2 view change (view-change.ts), §4.3 recovery (catchup.ts: rejoin and
 * Admit); a whole fleet's re-form (reform.ts). This file is the entry: what arrives, checked for
 * who sent it, to whom and once, then handed to the role it concerns.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { onCatchup, onRejoin, serveCatchup } from './catchup.ts';
import { MemberCore, type MemberOptions, type MemberPlatform, type Output, type Status } from './core.ts';
import { decodeBody, intentFits, MAX_MEMBERS } from './codec.ts';
import { INCARNATION_BYTES } from './messages.ts';
import { FleetCode, FleetFault, type FleetCodeValue } from './faults.ts';
import { hashAt, isMemberOf, membersOf, tipOf, type DurableState } from './log.ts';
import { append, charterKey, cutOff, heartbeat, onCommit, onPrepare, onPrepareOk, propose, proposeBatch, proposeCharter } from './normal.ts';
import type { CharterOp } from './rules.ts';
import { abandonReform, nextReformEpoch, onReformAccept, onReformVote, reformVoters, resendReform, startReform, tryPlan } from './reform.ts';
import type { Intent } from './rules.ts';
import { enterViewChange, onDoViewChange, onPreVote, onPreVoteGrant, onStartView, resendViewChange, seekView, stalledFor, startViewChange } from './view-change.ts';
import { ANY_INCARNATION, bodyBytes, readHeader, sameBytes, verifyMac, type Envelope, type Header } from './wire.ts';

export { BROKEN_RULES } from './core.ts';
export type { Answer, BrokenRule, FleetEvent, MemberOptions, MemberPlatform, Output, Status } from './core.ts';

export class Member {
  private readonly c: MemberCore;

  /** Boots a member from its durable state: a fresh incarnation, not admitted by any configuration. */
  constructor(durable: DurableState, platform: MemberPlatform, opts: MemberOptions, now = 0) {
    this.c = new MemberCore(durable, platform, opts, now);
    if (opts.broken === 'count-unadmitted' && durable.base.config.epoch > 0) {
      // positive control: resume from the durable state as if this incarnation were admitted
      this.c.wasAdmitted = true;
      enterViewChange(this.c);
    }
  }

  get id(): number {
    return this.c.id;
  }
  get incarnation(): Uint8Array {
    return this.c.incarnation;
  }
  get status(): Status {
    return this.c.st;
  }
  get durable(): DurableState {
    return this.c.d;
  }
  get view(): number {
    return this.c.d.view;
  }
  get epoch(): number {
    return this.c.epoch;
  }
  isLeader(): boolean {
    return this.c.isLeader();
  }
  /**
   * Leading, it heard fewer than a majority of the member ids for its view-change wait (normal.ts
   * `cutOff`, as of its last tick): nothing it proposes commits until it hears them again, so its
   * host takes no client operation (host/fleet/vault-node.ts `refusal`).
   */
  get cutOff(): boolean {
    return this.c.isLeader() && this.c.cut;
  }
  /** The leader of this member's view while it is normal, else null. */
  get leader(): number | null {
    return this.c.st === 'normal' ? this.c.leaderOf(this.c.d.view) : null;
  }

  // ---- charter changes (docs/fleet.md, "Membership changes") --------------------------------

  /**
   * The operator approved charter change `change` for this member's device: the device layer
   * calls this only after checking the operator secret against the hash in its NVRAM
   * (ceremony.ts checkOperatorSecret). Only a leader whose device holds the approval proposes the
   * change (CharterNotApproved otherwise); the others check the change against the charter rules
   * like any entry (log.ts checkCharterChange), as they trust the leader's device for its own
   * entries (the trust model: devices are trusted, hosts are not, docs/fleet.md). Kept in RAM: a
   * member that restarts is approved again.
   */
  approveCharter(change: Omit<CharterOp, 'kind'>): void {
    this.c.approved.add(charterKey({ kind: 'charter', ...change }));
  }

  /**
   * The operator approved a re-form without the member ids `without`, out of the configuration of
   * epoch `fromEpoch`, with the kept members' incarnations `kept` (this boot of each: docs/fleet.md
   * "Re-form without some members"): the device layer calls this only after checking the
   * operator's MAC (hsm/fleet/charters.ts `reformApproval`). While the configuration at this
   * member's tip is of that epoch and `kept` names this incarnation, its re-forms wait for the
   * votes of the kept ids only, from the incarnations named, if they are a majority of the charter
   * (reform.ts `reformVoters`; the others are left out of the new configuration and come back as
   * restarted members do: rejoin, then Admit). Kept in RAM, replaced by a later approval.
   * BadValue for ids out of range, none to go without, or an incarnation not 16 bytes.
   */
  approveReform(fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>, now: number): Output {
    const id = (m: number) => Number.isInteger(m) && m >= 0 && m < MAX_MEMBERS;
    if (!Number.isSafeInteger(fromEpoch) || fromEpoch < 0 || without.length === 0 || !without.every(id) || kept.size === 0 || ![...kept].every(([m, inc]) => id(m) && !without.includes(m) && inc instanceof Uint8Array && inc.length === INCARNATION_BYTES)) {
      throw new FleetFault(FleetCode.BadValue, 'fleet: a re-form approval names an epoch, at least one member id to go without, and the incarnation of each member it keeps');
    }
    const c = this.c;
    c.begin(now);
    c.reformWithout = { fromEpoch, without: new Set(without), kept: new Map(kept) };
    tryPlan(c);
    return c.end();
  }

  /** The operator's re-form approval this member holds and that applies to the configuration at its tip, if any. */
  get reformApproval(): { fromEpoch: number; without: number[]; kept: number[]; applies: boolean } | null {
    const a = this.c.reformWithout;
    if (!a) return null;
    const voters = reformVoters(this.c);
    return { fromEpoch: a.fromEpoch, without: [...a.without].sort((x, y) => x - y), kept: [...a.kept.keys()].sort((x, y) => x - y), applies: voters === null || voters.length < membersOf(this.c.configTip()).length };
  }

  /**
   * The leader proposes a charter change (one member added at the next id, or one removed) as an
   * entry of its own. Refused (the code): NotLeader; Busy while an entry is outstanding, intents
   * are queued, an earlier change is not committed, or no entry of this view is committed yet (the
   * leader then appends an empty entry first: a change proposed before the leader committed in its
   * view could be decided against a configuration another leader already left, Ongaro 2015);
   * CharterNotApproved without the operator's approval in this device; TransitionNotAllowed for a
   * change the charter rules refuse (log.ts checkCharterChange). A change that removes the leader
   * itself starts a view change first (NotLeader: ask the next leader).
   */
  proposeCharter(change: Omit<CharterOp, 'kind'>, now: number): { out: Output; index: number | FleetFault } {
    const c = this.c;
    c.begin(now);
    const before = tipOf(c.d).index;
    const code = proposeCharter(c, { kind: 'charter', ...change });
    if (code === FleetCode.NotLeader && c.isLeader()) startViewChange(c, c.nextView(c.d.view));
    const out = c.end();
    return { out, index: code === null ? before + 1 : new FleetFault(code, 'fleet: charter change refused') };
  }

  // ---- entry points -------------------------------------------------------------------------

  /** A client intent arriving at this member. Only the leader of a normal view takes it. */
  submit(intent: Intent, now: number): Output {
    const c = this.c;
    c.begin(now);
    if (!c.isLeader()) c.out.answers.push({ ok: false, intent, code: FleetCode.NotLeader });
    else if (c.queue.length >= c.t.queue) c.out.answers.push({ ok: false, intent, code: FleetCode.Unexpected });
    else if (!intentFits(intent)) c.out.answers.push({ ok: false, intent, code: FleetCode.BadValue });
    else {
      c.queue.push(intent);
      propose(c);
    }
    return c.end();
  }

  /**
   * A whole batch as the next entry, with its payload (normal.ts proposeBatch): answered like
   * intents, every one ok at its commit or every one refused. A vault batch rides the log this way.
   * The entry's index, or the code of the refusal (a batch of no intents has no answers to carry it).
   */
  submitBatch(intents: readonly Intent[], payload: Uint8Array, now: number): { out: Output; index: number | FleetFault } {
    const c = this.c;
    c.begin(now);
    const before = tipOf(c.d).index;
    const code = proposeBatch(c, intents, payload);
    const out = c.end();
    return { out, index: code === null ? before + 1 : new FleetFault(code, 'fleet: batch refused') };
  }

  /** Tells which entry payloads this member has applied: compaction keeps the entries from the first it has not, and a re-form keeps their payloads (`held`). */
  setApplied(applied: (payload: Uint8Array) => boolean): void {
    this.c.applied = applied;
  }

  /** Drops the held payloads (log.ts DurableState.held) `keep` refuses: their batches are applied. Written with the next durable write. */
  releaseHeld(keep: (payload: Uint8Array) => boolean): void {
    const held = this.c.d.held.filter(keep);
    if (held.length !== this.c.d.held.length) this.c.d = { ...this.c.d, held };
  }

  /**
   * Writes the state now if the commit point it learned since the last write covers `index`: what
   * a host is told is committed (a batch to persist or apply) must be committed in this member's
   * durable state too, or a crash in between leaves a store ahead of the log it boots from
   * (enclave/vault/vault.ts refuses that load: FleetNotCommitted).
   */
  persistCommit(index: number): void {
    const c = this.c;
    if (index > c.persistedCommit && index <= c.d.commit) c.write(c.d);
  }

  /**
   * Timers: resends, view change, rejoin, re-form. An admitted member (normal or in a view change)
   * never starts a re-form on a timer: a re-form needs every one of the N ids, while a view change
   * needs only a majority, so a slow stretch must not turn the second into the first (with one
   * member gone it would wait for that member). It joins a re-form another member votes for while
   * it sees no working leader (reform.ts `onReformVote`); members that are not admitted (a whole
   * fleet restarted: recovering) start one on their timer.
   */
  tick(now: number): Output {
    const c = this.c;
    c.begin(now);
    const quiet = now - c.lastProgress;
    const resend = now - c.lastSent >= c.t.resend;
    // a view that works (normal, hearing its leader or, as leader, a follower's acks, every few
    // ticks) for a view-change timeout ends the run of view changes
    if (c.st !== 'normal' || quiet > 2 * c.t.resend) c.normalTicks = 0;
    else if (++c.normalTicks >= c.t.vc) c.vcRound = 0;
    switch (c.st) {
      case 'normal':
        if (c.isLeader()) {
          if (resend) heartbeat(c);
          propose(c);
          // a leader that hears fewer than a majority (normal.ts `cutOff`) says so to its host,
          // which then takes no client operation, and puts an empty entry on the way if none is:
          // followers that hear it and whose acknowledgements do not reach it (a leader deaf to
          // them) see it stand still and change view, as they do for a client's
          // (test/enclave/fleet/prevote.test.ts)
          c.cut = cutOff(c);
          if (c.cut && !c.outstanding && c.queue.length === 0) append(c, [], [], null);
        } else if (quiet > c.vcWait() || stalledFor(c) > c.vcWait()) seekView(c, resend);
        else c.preVote = null;
        break;
      case 'viewchange':
        // a view change that did not finish in time: the next view (once a majority heard no
        // leader either), with a longer wait (a loaded machine or disk makes every step slower; a
        // fixed wait would start views forever); this one's doViewChange is sent meanwhile
        if (resend) resendViewChange(c);
        if (now - c.vcStart > c.vcWait()) seekView(c, resend);
        break;
      case 'recovering':
      case 'learner': {
        // a member a charter change added, before its log holds that change, only asks to rejoin
        // (it takes no part in a re-form of a charter it is not in yet); a learner hears the leader
        // (no quiet), yet one that is not admitted in time follows a leader without a majority of
        // admitted members (two of three restarted): it votes. At epoch 0 (the fleet never formed
        // for this member) it votes at once, unless a working leader of a newer epoch ended its vote:
        // the others formed without it (its re-form timer ran out as their accepts came), and
        // voting again at once would end the same way at the leader's next message, forever
        const joining = !isMemberOf(c.configTip(), c.id);
        const unformed = c.d.base.config.epoch === 0 && !c.sawNewerEpoch;
        if (!joining && (unformed || quiet > c.t.reform || (c.st === 'learner' && now - c.learnerSince > c.t.reform))) startReform(c, nextReformEpoch(c));
        else if (resend && (joining || c.st === 'recovering')) {
          c.awaiting = { purpose: 'rejoin', from: -1, expect: null, since: now };
          c.broadcast({ type: 'rejoin', commit: c.d.commit, commitHash: hashAt(c.d, c.d.commit)! });
        }
        break;
      }
      case 'reform':
        if (now - c.vcStart > c.t.reform) startReform(c, nextReformEpoch(c));
        else if (resend) resendReform(c);
        break;
      case 'retired':
        break;
    }
    return c.end();
  }

  /**
   * This member leads but can not serve (its vault is behind the log: enclave/vault/fleet-seat.ts
   * `behind`): it starts the view change to the next view, whose leader is another member, rather
   * than hold the lead until a failover timeout. Safe as any view change; a no-op unless it leads.
   */
  stepDown(now: number): Output {
    const c = this.c;
    c.begin(now);
    if (c.isLeader()) startViewChange(c, c.nextView(c.d.view));
    return c.end();
  }

  /**
   * A message from another member, through the (untrusted) network: its header read, then who sent
   * it, to whom and once, its MAC over the exact bytes, and only then its body decoded
   * (docs/fleet.md, "What a member checks"). Every refusal is one `FleetFault` in the output.
   */
  receive(msg: Uint8Array, now: number): Output {
    const c = this.c;
    c.begin(now);
    if (c.st === 'retired') {
      c.refuse(FleetCode.Retired);
      return c.end();
    }
    let h: Header | null = null;
    let env: Envelope;
    try {
      h = readHeader(msg);
      const why = this.admit(h, msg);
      if (why !== null) throw new FleetFault(why, 'fleet: message refused');
      env = { from: h.from, to: h.to, fromInc: h.fromInc, toInc: h.toInc, seq: h.seq, body: decodeBody(h.type, bodyBytes(msg)) };
    } catch (e) {
      if (!(e instanceof FleetFault)) throw e;
      // the sender id as the header names it (none when the header itself is refused)
      c.out.faults.push(new FleetFault(e.code, e.message, h?.from));
      return c.end();
    }
    this.dispatch(env);
    return c.end();
  }

  // ---- the envelope: who sent it, to whom, once -----------------------------------------------

  private admit(h: Header, msg: Uint8Array): FleetCodeValue | null {
    const c = this.c;
    // the sender must be a member id at this member's tip (a removed id is refused from the moment the removal is in the log)
    const key = h.to === c.id && h.from !== c.id && (isMemberOf(c.configTip(), h.from) || !isMemberOf(c.configTip(), c.id)) ? c.receiveKey(h.from) : null;
    if (!key) return FleetCode.UnknownMember;
    // a sequence number already seen is refused before the MAC is computed; it is recorded only once the MAC verifies
    const k = `${h.from}:${bytesToHex(h.fromInc)}`;
    if (h.seq <= (c.seen.get(k) ?? 0)) return FleetCode.Replay;
    // the key of (sender, this member): only the two of them hold it (keys.ts), so a member can not MAC in another's name
    if (c.opts.broken !== 'skip-mac' && !verifyMac(key, msg)) return FleetCode.BadMac;
    if (!sameBytes(h.toInc, ANY_INCARNATION) && !sameBytes(h.toInc, c.incarnation)) return FleetCode.WrongIncarnation;
    c.seen.set(k, h.seq);
    return null;
  }

  private dispatch(env: Envelope): void {
    const c = this.c;
    const b = env.body;
    switch (b.type) {
      case 'rejoin':
        return onRejoin(c, env, b);
      case 'catchupRequest':
        return serveCatchup(c, env, b.commit, b.commitHash);
      case 'catchup':
        return onCatchup(c, env, b);
      case 'reformVote':
        return onReformVote(c, env, b);
      case 'reformAccept':
        return onReformAccept(c, env, b);
    }
    // epoch-bound messages
    if (c.st === 'reform') {
      // a re-form this member voted in without accepting a set is dropped when a working leader shows up
      const r = c.d.reform!;
      const working = b.type === 'prepare' || b.type === 'commit' || b.type === 'startView';
      if (!working || r.setHash !== null || b.epoch < c.epoch) return c.refuse(FleetCode.StaleEpoch, env.from);
      abandonReform(c, b.epoch > c.epoch);
      if ((c.st as Status) === 'recovering') return;
    }
    if (b.epoch !== c.epoch) return c.refuse(FleetCode.StaleEpoch, env.from);
    if (b.view < c.d.view) return c.refuse(FleetCode.StaleView, env.from);
    switch (b.type) {
      case 'prepare':
        return onPrepare(c, env, b);
      case 'prepareOk':
        return onPrepareOk(c, env, b);
      case 'commit':
        return onCommit(c, env, b);
      case 'doViewChange':
        return onDoViewChange(c, env, b);
      case 'startView':
        return onStartView(c, env, b);
      case 'preVote':
        return onPreVote(c, env, b);
      case 'preVoteGrant':
        return onPreVoteGrant(c, env, b);
    }
  }
}
