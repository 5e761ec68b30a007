/**
 * Normal operation (Viewstamped Replication Revisited §4.1, docs/fleet.md "The quorum rule"): the
 * leader batches intents into one outstanding entry, sends `prepare`, and commits once a majority
 * of member ids, each through the incarnation the configuration admits, acked it (an Admit's own
 * member does not count); a follower checks and appends the entry, follows the leader's commit
 * once synced with it, and acks its tip.
 */
import { requestCatchup } from './catchup.ts';
import type { MemberCore } from './core.ts';
import { FleetCode, type FleetCodeValue } from './faults.ts';
import { intentFits, MAX_PAYLOAD_BYTES } from './codec.ts';
import { bytesToHex } from '@noble/hashes/utils.js';
import { checkAppend, checkCharterChange, compact, configAt, hashAt, isMemberOf, recordsAt, tipOf } from './log.ts';
import { opOf, transition, type CharterOp, type Intent, type Op, type RecordOp } from './rules.ts';
import { encodeOp } from './codec.ts';
import { enterViewChange } from './view-change.ts';
import { entryHash, NO_PAYLOAD, sameBytes, type Body, type Config, type Entry, type Envelope } from './wire.ts';

export function propose(c: MemberCore): void {
  if (!c.isLeader() || c.outstanding) return;
  const tip = tipOf(c.d);
  const cfg = c.configTip();
  if (c.d.commit === tip.index) {
    for (const [m, l] of c.learners) {
      if (sameBytes(cfg.admitted[m], l.inc)) {
        c.learners.delete(m);
        continue;
      }
      if (l.tip.index === tip.index && sameBytes(l.tip.hash, tip.hash)) {
        c.learners.delete(m);
        return append(c, [{ kind: 'admit', member: m, incarnation: l.inc }], [], m);
      }
    }
  }
  if (c.queue.length === 0) return;
  const recs = recordsAt(c.d, tip.index);
  const taken: { intent: Intent; op: RecordOp }[] = [];
  while (c.queue.length > 0 && taken.length < c.t.batch) {
    const intent = c.queue.shift()!;
    const op = opOf(intent, recs.get(intent.id));
    const next = transition(recs.get(intent.id), op);
    if (typeof next === 'number') c.out.answers.push({ ok: false, intent, code: next });
    else {
      recs.set(intent.id, next);
      taken.push({ intent, op });
    }
  }
  if (taken.length > 0) append(c, taken.map((x) => x.op), taken, null);
}

/**
 * A whole batch as one entry (a vault batch, docs/fleet-vault.md): every intent turned into its op
 * against the leader's records, all or none (the first one no rule allows fails the whole batch
 * with its code), appended with `payload` at once. Only when nothing else is on the way: no entry
 * outstanding and no intent queued (else Busy), so the batch is the next entry of the log. A batch
 * may change no record (a vault batch of reads): its entry has no ops and still takes a majority,
 * so that only a member that leads a majority answers it.
 */
export function proposeBatch(c: MemberCore, intents: readonly Intent[], payload: Uint8Array): FleetCodeValue | null {
  const fail = (code: FleetCodeValue): FleetCodeValue => {
    for (const intent of intents) c.out.answers.push({ ok: false, intent, code });
    return code;
  };
  if (!c.isLeader()) return fail(FleetCode.NotLeader);
  if (c.outstanding || c.queue.length > 0) return fail(FleetCode.Busy);
  if (intents.length > c.t.batch) return fail(FleetCode.TooMany);
  if (payload.length > MAX_PAYLOAD_BYTES) return fail(FleetCode.TooLong);
  const recs = recordsAt(c.d, tipOf(c.d).index);
  const taken: { intent: Intent; op: RecordOp }[] = [];
  for (const intent of intents) {
    if (!intentFits(intent)) return fail(FleetCode.BadValue);
    const op = opOf(intent, recs.get(intent.id));
    const next = transition(recs.get(intent.id), op);
    if (typeof next === 'number') return fail(next);
    recs.set(intent.id, next);
    taken.push({ intent, op });
  }
  append(c, taken.map((x) => x.op), taken, null, payload);
  return null;
}

/** What names a charter change in a device's approvals: the hex of its op's bytes (serial and every identity). */
export function charterKey(op: CharterOp): string {
  return bytesToHex(encodeOp(op));
}

/** The leader's side of member.ts proposeCharter: the refusal's code, or null once the change is appended. */
export function proposeCharter(c: MemberCore, op: CharterOp): FleetCodeValue | null {
  if (!c.isLeader()) return FleetCode.NotLeader;
  if (!c.approved.has(charterKey(op))) return FleetCode.CharterNotApproved;
  const tip = tipOf(c.d);
  const cfg = c.configTip();
  if (!checkCharterChange(cfg, op, c.charterChanges())) return FleetCode.TransitionNotAllowed;
  if (c.outstanding || c.queue.length > 0 || c.d.commit !== tip.index) return FleetCode.Busy;
  // one change at a time: the last one is committed (the committed configuration's charter is the tip's)
  if (configAt(c.d, c.d.commit).charter.serial !== cfg.charter.serial) return FleetCode.Busy;
  if (!op.identities[c.id]) return FleetCode.NotLeader;
  // an entry of this view committed first (Ongaro 2015, the single-server change's fix): else an empty one now
  const last = c.d.entries[c.d.entries.length - 1];
  if (!last || last.view !== c.d.view) {
    append(c, [], [], null);
    return FleetCode.Busy;
  }
  append(c, [op], [], null);
  return null;
}

export function append(c: MemberCore, ops: Op[], intents: { intent: Intent; op: RecordOp }[], admitOf: number | null, payload: Uint8Array = NO_PAYLOAD): void {
  const tip = tipOf(c.d);
  const index = tip.index + 1;
  const entry: Entry = { index, view: c.d.view, prevHash: tip.hash, hash: entryHash(tip.hash, index, c.d.view, ops, payload), ops, payload };
  c.write({ ...c.d, entries: [...c.d.entries, entry] });
  c.outstanding = { index, hash: entry.hash, acks: new Set([c.id]), intents, admitOf, entry };
  sendPrepare(c);
  tryCommit(c);
}

export function sendPrepare(c: MemberCore): void {
  const o = c.outstanding;
  if (o?.entry) c.broadcast({ type: 'prepare', epoch: c.epoch, view: c.d.view, commit: c.d.commit, entry: o.entry });
}

export function heartbeat(c: MemberCore): void {
  if (c.outstanding?.entry) sendPrepare(c);
  else if (c.outstanding) c.broadcast({ type: 'startView', epoch: c.epoch, view: c.d.view, tip: c.outstanding.index, tipHash: c.outstanding.hash });
  else c.broadcast({ type: 'commit', epoch: c.epoch, view: c.d.view, commit: c.d.commit });
}

export function onPrepare(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'prepare' }>): void {
  if (env.from !== c.leaderOf(b.view)) return c.refuse(FleetCode.NotLeader, env.from);
  if (!following(c, env, b.view)) return;
  const e = b.entry;
  const tip = tipOf(c.d);
  if (e.index <= tip.index) {
    const have = hashAt(c.d, e.index);
    if (have && !sameBytes(have, e.hash)) return c.refuse(FleetCode.WrongPrevHash, env.from);
    learnCommit(c, b.commit);
  } else {
    const why = checkAppend(c.d, e, c.charterChanges());
    if (why !== null) {
      c.refuse(why, env.from);
      if (why === FleetCode.WrongIndex) requestCatchup(c, 'follow', env.from, null);
      return;
    }
    // the entry and the commit point it brings, in one write (the commit point written is what
    // lets the host apply a batch: Member.persistCommit)
    c.d = { ...c.d, entries: [...c.d.entries, e] };
    learnCommit(c, b.commit);
    c.write(c.d);
  }
  c.lastProgress = c.now;
  ackTip(c, env);
}

export function onCommit(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'commit' }>): void {
  if (env.from !== c.leaderOf(b.view)) return c.refuse(FleetCode.NotLeader, env.from);
  if (!following(c, env, b.view)) return;
  learnCommit(c, b.commit);
  c.lastProgress = c.now;
  // The leader commits further than this member's log reaches: a prepare it lost, which the leader
  // does not send again once a majority holds that entry. Without a next entry it would stay
  // behind for as long as the fleet is quiet (its vault a batch short): it asks for the rest (VR
  // Revisited §4.1: a replica that learns of a commit beyond its log does state transfer).
  if (b.commit > tipOf(c.d).index) {
    askToFollow(c, env.from);
    return;
  }
  ackTip(c, env);
}

/** Asks `from` (the leader) for the log from this member's commit point: once per resend interval while an earlier 'follow' request waits. */
function askToFollow(c: MemberCore, from: number): void {
  const a = c.awaiting;
  if (a?.purpose !== 'follow' || c.now - a.since >= c.t.resend) requestCatchup(c, 'follow', from, null);
}

/** Whether this member follows the leader of `view` now; if it is behind that view, it asks the leader for its log. */
export function following(c: MemberCore, env: Envelope, view: number): boolean {
  if (c.st === 'recovering') return false;
  const synced = c.synced && (c.st === 'normal' || c.st === 'learner') && view === c.d.view;
  if (!synced) {
    if (view > c.d.view) moveToView(c, view);
    askToFollow(c, env.from);
    return false;
  }
  if (!c.admitted(c.configTip(), env.from, env.fromInc)) {
    c.refuse(FleetCode.NotAdmitted, env.from);
    return false;
  }
  return true;
}

/** A later view's leader shows up: this member's log is not known to be a prefix of that leader's until it catches up. */
export function moveToView(c: MemberCore, view: number): void {
  c.write({ ...c.d, view });
  c.synced = false;
  if (c.st === 'normal') enterViewChange(c);
}

export function ackTip(c: MemberCore, env: Envelope): void {
  const tip = tipOf(c.d);
  c.send(env.from, { type: 'prepareOk', epoch: c.epoch, view: c.d.view, index: tip.index, hash: tip.hash }, env.fromInc);
}

/** A follower's commit point follows the leader's, up to its own tip (its log is a prefix of the leader's in this view). */
export function learnCommit(c: MemberCore, commit: number): void {
  const upto = Math.min(commit, tipOf(c.d).index);
  if (upto > c.d.commit) c.d = compact({ ...c.d, commit: upto }, c.t.keep, c.floor());
  checkAdmission(c);
}

export function onPrepareOk(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'prepareOk' }>): void {
  if (!c.isLeader() || b.view !== c.d.view) return c.refuse(FleetCode.Unexpected, env.from);
  const o = c.outstanding;
  if (!c.admitted(c.configTip(), env.from, env.fromInc)) {
    c.learners.set(env.from, { inc: env.fromInc, tip: { index: b.index, hash: b.hash } });
    if (c.opts.broken !== 'count-unadmitted') {
      propose(c);
      return;
    }
  }
  c.lastProgress = c.now;
  acksOf(c).set(env.from, c.now);
  if (o && b.index === o.index && sameBytes(b.hash, o.hash)) {
    o.acks.add(env.from);
    tryCommit(c);
  }
}

/** This leader's acknowledgements by member in its current epoch and view (a new view starts an empty table). */
function acksOf(c: MemberCore): Map<number, number> {
  const key = `${c.epoch}/${c.d.view}`;
  if (c.acks.key !== key) {
    c.acks = { key, since: c.now, at: new Map(), had: false };
    c.cut = false;
  }
  return c.acks.at;
}

/**
 * A leader that, for a view-change timeout, heard fewer members with an admitted incarnation than
 * a majority, itself included: nothing it proposes commits, and it can admit nobody (an Admit
 * needs a majority without its own member); its host hears of it through `cutOff` (below), which
 * waits its view-change wait instead. With every member running, only a re-form moves such
 * a fleet, so it joins one another member votes for (reform.ts `onReformVote`). Before, its
 * messages kept its follower from seeing "no working leader", the restarted members' votes ended
 * at its next message, and the fleet stood still (test/sim/reform-join.test.ts). A leader that
 * hears a majority does not join: a re-form needs every id, and one member gone for good would
 * then stop a fleet that still had a majority.
 */
export function withoutMajority(c: MemberCore): boolean {
  if (!c.isLeader()) return false;
  acksOf(c);
  if (c.now - c.acks.since <= c.t.vc) return false;
  return heardWithin(c, c.t.vc) < c.quorum();
}

/** Leading: the member ids of `cfg` heard within `wait` ticks (acknowledgements from admitted incarnations), this member included. */
function heardWithin(c: MemberCore, wait: number, cfg: Config = c.configTip()): number {
  let heard = 1;
  for (const [m, t] of acksOf(c)) if (m !== c.id && isMemberOf(cfg, m) && c.now - t <= wait) heard++;
  return heard;
}

/**
 * Whether this leader counts itself cut off (after Raft's CheckQuorum, Ongaro 2014 §6.2; member.ts
 * `tick`): once it heard a majority in this view, when it then hears fewer for its view-change
 * wait (cut off from the others, or deaf to followers that hear it); having never heard one, after
 * the longest wait, 8 timeouts (on a network slower than a timeout, a new view's first
 * acknowledgements take a round trip). A majority of the committed charter's ids counts as well as
 * one of the tip's (an addition in flight whose member has no process yet). A leader cut off keeps
 * its view, unlike Raft's, which steps down: where the others can not form a view without it (a
 * majority of admitted incarnations is not there), the view it keeps resumes the moment it hears
 * them again. Called every tick while leading.
 */
export function cutOff(c: MemberCore): boolean {
  if (!c.isLeader()) return false;
  acksOf(c);
  const wait = c.vcWait();
  const committed = configAt(c.d, c.d.commit);
  if (heardWithin(c, wait) >= c.quorum() || (isMemberOf(committed, c.id) && heardWithin(c, wait, committed) >= c.quorum(committed))) {
    c.acks.had = true;
    return false;
  }
  return c.now - c.acks.since > (c.acks.had ? wait : 8 * c.t.vc);
}

/** Commits the outstanding entry once a majority of member ids, each with its admitted incarnation, hold it; an Admit's own member does not count. */
export function tryCommit(c: MemberCore): void {
  const o = c.outstanding;
  if (!o) return;
  const counted = [...o.acks].filter((m) => m !== o.admitOf);
  if (counted.length < c.quorum()) return;
  c.outstanding = null;
  c.d = compact({ ...c.d, commit: o.index }, c.t.keep, c.floor());
  c.lastProgress = c.now;
  c.out.events.push({ type: 'commit', index: o.index, hash: o.hash, view: c.d.view, counted, admitOf: o.admitOf });
  for (const { intent, op } of o.intents) c.out.answers.push({ ok: true, intent, op, index: o.index, hash: o.hash });
  checkAdmission(c);
  if (c.st !== 'normal') return;
  c.broadcast({ type: 'commit', epoch: c.epoch, view: c.d.view, commit: c.d.commit });
  propose(c);
}

/**
 * After the log changed: a learner whose incarnation is admitted by a committed Admit serves; an
 * admitted one whose id admits another incarnation retires, and so does one a committed charter
 * change removed (a removal only in its log is not final: a view change may drop it).
 */
export function checkAdmission(c: MemberCore): void {
  const tip = c.configTip();
  const mine = tip.admitted[c.id];
  // an id below the committed charter's length that holds no identity was removed (ids are never reused; a member added later has an id past it)
  const committed = configAt(c.d, c.d.commit).charter.identities;
  const removed = c.id < committed.length && !committed[c.id];
  if ((c.wasAdmitted && isMemberOf(tip, c.id) && !sameBytes(mine, c.incarnation) && c.opts.broken !== 'count-unadmitted') || removed) {
    c.st = 'retired';
    c.outstanding = null;
    c.queue = [];
    return;
  }
  if (c.st === 'learner' && sameBytes(configAt(c.d, c.d.commit).admitted[c.id], c.incarnation)) {
    c.wasAdmitted = true;
    c.st = 'normal';
    c.write({ ...c.d, normalView: c.d.view });
  }
}
