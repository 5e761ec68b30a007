/**
 * View change (Viewstamped Replication Revisited §4.2, docs/fleet.md "View change"): a follower
 * that hears no leader asks the others first (`seekView`: pre-vote, after Ongaro 2014 §9.6); once a
 * majority of the member ids heard no leader either, it moves to view v + 1 and sends
 * `doViewChange`; the new leader adopts the most up-to-date log (normal view, then length), counts
 * the senders under the configuration at that log's tip, fetches the log if it is not its own,
 * then sends `startView`.
 */
import { requestCatchup } from './catchup.ts';
import type { MemberCore, Dvc } from './core.ts';
import { FleetCode } from './faults.ts';
import { entriesAfter, isMemberOf, newer, tipOf } from './log.ts';
import { propose, moveToView, ackTip, tryCommit, checkAdmission } from './normal.ts';
import { sameBytes, type Body, type Envelope } from './wire.ts';

/**
 * A member that hears no leader (a follower past its view-change wait, or a view change past it)
 * asks to move to the next view instead of moving: `preVote` to every member, and it moves once a
 * majority of the member ids at its tip, itself included, answered `preVoteGrant` (`onPreVote`).
 * A member cut off from a working fleet thus never moves to a view above the fleet's: when the
 * network heals, its first `doViewChange` would otherwise pull every member out of a working view
 * (the others join any higher view they hear of, as VR Revisited §4.2 has it), and a member that
 * only the leader could not reach would move the whole fleet to another leader over one broken
 * link (test/enclave/fleet/prevote.test.ts). Asking changes when a view change starts, never what
 * it decides: liveness only. `resend`: the timer says to send the question again.
 */
export function seekView(c: MemberCore, resend: boolean): void {
  if (!c.wasAdmitted || (c.st !== 'normal' && c.st !== 'viewchange')) return;
  const view = c.nextView(c.d.view);
  if (c.preVote?.view !== view) c.preVote = { view, grants: new Set([c.id]) };
  else if (!resend) return;
  c.broadcast({ type: 'preVote', epoch: c.epoch, view });
  tryPreVote(c);
}

/**
 * Ticks a follower's commit point has stood still while its log holds entries past it (0 when it
 * moved, or nothing waits). The leader resends an entry until a majority acknowledged it and tells
 * the commit point on every message, so in a working view that is about one round trip. A leader
 * whose followers' acknowledgements do not reach it (a link down one way) still sends, so they
 * never go quiet on it, yet nothing commits: a follower counts it gone after a view-change wait of
 * this (member.ts `tick`), and answers a question as if it heard no leader
 * (test/enclave/fleet/prevote.test.ts). An idle fleet has nothing waiting and never stalls.
 */
export function stalledFor(c: MemberCore): number {
  const s = c.stall;
  if (c.st !== 'normal' || c.isLeader() || tipOf(c.d).index <= c.d.commit || s.commit !== c.d.commit || s.view !== c.d.view) {
    c.stall = { commit: c.d.commit, view: c.d.view, since: c.now };
    return 0;
  }
  return c.now - s.since;
}

/**
 * Whether this member heard no working leader for half a view-change timeout: in a view change,
 * or a follower whose leader went quiet or commits nothing (`stalledFor`); the asker waited a
 * whole timeout, half here lets one that lost the same leader a tick later answer at the asker's
 * first question. A leader never does.
 */
function leaderless(c: MemberCore): boolean {
  if (c.st === 'viewchange') return true;
  return c.st === 'normal' && !c.isLeader() && (c.now - c.lastProgress > c.t.vc / 2 || stalledFor(c) > c.t.vc / 2);
}

/** Answers a member that asks to move to a view above this member's, if this member heard no leader either; a member that hears one says nothing. */
export function onPreVote(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'preVote' }>): void {
  if (b.view > c.d.view && leaderless(c)) c.send(env.from, { type: 'preVoteGrant', epoch: c.epoch, view: b.view }, env.fromInc);
}

export function onPreVoteGrant(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'preVoteGrant' }>): void {
  if (c.preVote?.view !== b.view) return;
  c.preVote.grants.add(env.from);
  tryPreVote(c);
}

/** With grants from a majority of the member ids at this member's tip: the view change starts. */
function tryPreVote(c: MemberCore): void {
  const p = c.preVote;
  if (!p || p.view !== c.nextView(c.d.view)) return;
  let count = 0;
  for (const m of p.grants) if (m === c.id || isMemberOf(c.configTip(), m)) count++;
  if (count < c.quorum()) return;
  c.vcRound++;
  startViewChange(c, p.view);
}

export function startViewChange(c: MemberCore, view: number): void {
  if (!c.wasAdmitted || (c.st !== 'normal' && c.st !== 'viewchange')) return;
  c.write({ ...c.d, view });
  enterViewChange(c);
  const body = dvcBody(c);
  c.dvcs.set(c.id, { inc: c.incarnation, body });
  c.broadcast(body);
  tryStartView(c);
}

/** Leaves normal operation: nothing outstanding is answered (it may still commit in the next view; clients retry). */
export function enterViewChange(c: MemberCore): void {
  c.st = 'viewchange';
  c.synced = false;
  c.vcStart = c.now;
  c.preVote = null;
  c.outstanding = null;
  c.queue = [];
  c.dvcs = new Map();
  c.awaiting = null;
}

export function dvcBody(c: MemberCore): Extract<Body, { type: 'doViewChange' }> {
  const tip = tipOf(c.d);
  return { type: 'doViewChange', epoch: c.epoch, view: c.d.view, normalView: c.d.normalView, tip: tip.index, tipHash: tip.hash, config: c.configTip() };
}

export function resendViewChange(c: MemberCore): void {
  c.broadcast(dvcBody(c));
  if (c.awaiting) requestCatchup(c, c.awaiting.purpose, c.awaiting.from, c.awaiting.expect);
}

export function onDoViewChange(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'doViewChange' }>): void {
  if (b.view > c.d.view) startViewChange(c, b.view);
  if (c.st === 'normal' && b.view === c.d.view && c.isLeader()) {
    const tip = tipOf(c.d);
    return c.send(env.from, { type: 'startView', epoch: c.epoch, view: c.d.view, tip: tip.index, tipHash: tip.hash }, env.fromInc);
  }
  if (c.st !== 'viewchange' || b.view !== c.d.view) return;
  c.dvcs.set(env.from, { inc: env.fromInc, body: b });
  tryStartView(c);
}

/**
 * The new leader's rule: among the view changes received, the most up-to-date log (normal view,
 * then tip) wins; the senders count only if the configuration at the tip of that log admits
 * their incarnation, and a majority of ids must count (docs/fleet.md, "View change").
 */
export function tryStartView(c: MemberCore): void {
  if (c.st !== 'viewchange' || c.leaderOf(c.d.view) !== c.id || c.awaiting) return;
  let best: [number, Dvc] | null = null;
  for (const [m, v] of c.dvcs) {
    const nv = { normalView: v.body.normalView, tip: v.body.tip };
    if (!best || newer(nv, { normalView: best[1].body.normalView, tip: best[1].body.tip })) best = [m, v];
  }
  if (!best) return;
  const cfg = best[1].body.config;
  if (!isMemberOf(cfg, c.id) || !c.admitted(cfg, c.id, c.incarnation)) return;
  let count = 0;
  for (const [m, v] of c.dvcs) if (isMemberOf(cfg, m) && c.admitted(cfg, m, v.inc)) count++;
  if (count < c.quorum(cfg)) return;
  const tip = tipOf(c.d);
  const want = { index: best[1].body.tip, hash: best[1].body.tipHash };
  if (want.index === tip.index && sameBytes(want.hash, tip.hash)) enterView(c);
  else requestCatchup(c, 'view', best[0], want, best[1].inc);
}

export function enterView(c: MemberCore): void {
  c.write({ ...c.d, normalView: c.d.view });
  c.st = 'normal';
  c.synced = true;
  c.lastProgress = c.now;
  c.preVote = null;
  c.dvcs = new Map();
  const tip = tipOf(c.d);
  // the adopted uncommitted suffix commits by the same rule as when it was proposed: an Admit's own member does not count
  const admit = entriesAfter(c.d, c.d.commit).flatMap((e) => e.ops).find((op) => op.kind === 'admit');
  const admitOf = admit?.kind === 'admit' ? admit.member : null;
  c.outstanding = tip.index > c.d.commit ? { index: tip.index, hash: tip.hash, acks: new Set([c.id]), intents: [], admitOf, entry: null } : null;
  c.broadcast({ type: 'startView', epoch: c.epoch, view: c.d.view, tip: tip.index, tipHash: tip.hash });
  tryCommit(c);
  propose(c);
}

export function onStartView(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'startView' }>): void {
  if (env.from !== c.leaderOf(b.view)) return c.refuse(FleetCode.NotLeader, env.from);
  if (c.st === 'recovering') return;
  if (c.synced && (c.st === 'normal' || c.st === 'learner') && b.view === c.d.view) return ackTip(c, env);
  const tip = tipOf(c.d);
  if (b.view > c.d.view) moveToView(c, b.view);
  else c.synced = false;
  if (b.tip === tip.index && sameBytes(b.tipHash, tip.hash)) {
    c.write({ ...c.d, normalView: b.view });
    if (c.wasAdmitted) c.st = 'normal';
    else c.becomeLearner();
    c.synced = true;
    c.awaiting = null;
    c.lastProgress = c.now;
    checkAdmission(c);
    ackTip(c, env);
  } else requestCatchup(c, 'follow', env.from, { index: b.tip, hash: b.tipHash }, env.fromInc);
}
