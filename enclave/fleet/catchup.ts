/**
 * Catch-up and rejoin (Viewstamped Replication Revisited §4.3, with durable logs; docs/fleet.md
 * "Rejoin"): a member behind asks for the entries after its commit point, or a snapshot when that
 * point is gone, and installs them only after checking the whole chain against its own state and
 * only if the result is at least as up to date as its own log. A booted member sends `rejoin`,
 * installs the leader's log as a learner, and serves once an Admit of its incarnation commits.
 */
import type { MemberCore, Purpose } from './core.ts';
import { FleetCode } from './faults.ts';
import { bytesToHex } from '@noble/hashes/utils.js';
import { checkChain, compact, configAt, entriesAfter, hashAt, isMemberOf, newer, tipOf, type DurableState, type Tip } from './log.ts';
import { following, ackTip, checkAdmission } from './normal.ts';
import { maybeAccept } from './reform.ts';
import { enterView } from './view-change.ts';
import { ANY_INCARNATION, sameBytes, type Body, type Envelope } from './wire.ts';

export function requestCatchup(c: MemberCore, purpose: Purpose, from: number, expect: Tip | null, toInc: Uint8Array = ANY_INCARNATION): void {
  c.awaiting = { purpose, from, expect, since: c.now };
  c.send(from, { type: 'catchupRequest', commit: c.d.commit, commitHash: hashAt(c.d, c.d.commit)! }, toInc);
}

export function onRejoin(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'rejoin' }>): void {
  if (!c.isLeader()) return relayRejoin(c, env, b);
  // An incarnation whose Admit is committed may still ask: a learner not admitted within the
  // re-form timeout votes for a re-form, and a working leader's message ends that vote with the
  // member recovering (reform.ts abandonReform) before it heard its Admit commit. It gets the log,
  // which holds its Admit (checkAdmission), and is not made a learner again. One whose Admit is
  // only proposed is refused, as before: a learner again could wait for a majority that is not
  // there, where its re-form vote is what the fleet needs (liveness.test.ts).
  if (c.admitted(configAt(c.d, c.d.commit), env.from, env.fromInc)) return serveCatchup(c, env, b.commit, b.commitHash);
  if (c.admitted(c.configTip(), env.from, env.fromInc)) return c.refuse(FleetCode.Unexpected, env.from);
  c.learners.set(env.from, { inc: env.fromInc, tip: { index: -1, hash: new Uint8Array(0) } });
  serveCatchup(c, env, b.commit, b.commitHash);
}

/** Relayed answers remembered at most (by incarnation); the oldest half is dropped past it. */
const MAX_RELAYED = 64;

/**
 * A follower answers a rejoin its leader can not: a member whose log predates the charter change
 * that added the leader does not know the leader's identity, so neither takes the other's messages
 * (wire.ts keys), and it waited for good (docs/fleet.md "Rejoin"). A normal, synced follower sends
 * it its log when the configuration at the requester's commit point does not hold the leader, or
 * lies before this log's snapshot, at most once per re-form timeout per incarnation (a snapshot
 * is large, and the requester asks every few ticks). The requester takes it only if it can not
 * hear the leader of that view (`onCatchup`), and asks again, of a leader it now knows.
 */
function relayRejoin(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'rejoin' }>): void {
  if (c.st !== 'normal' || !c.synced) return c.refuse(FleetCode.Unexpected, env.from);
  const have = hashAt(c.d, b.commit);
  if (have !== undefined && sameBytes(have, b.commitHash) && isMemberOf(configAt(c.d, b.commit), c.leaderOf(c.d.view))) return c.refuse(FleetCode.Unexpected, env.from);
  const k = `${env.from}:${bytesToHex(env.fromInc)}`;
  const last = c.relayed.get(k);
  if (last !== undefined && c.now - last < c.t.reform) return;
  if (c.relayed.size >= MAX_RELAYED) for (const old of [...c.relayed.keys()].slice(0, MAX_RELAYED / 2)) c.relayed.delete(old);
  c.relayed.set(k, c.now);
  serveCatchup(c, env, b.commit, b.commitHash);
}

/** Any member that holds a log may send it: the requester decides whether to take it. */
export function serveCatchup(c: MemberCore, env: Envelope, commit: number, commitHash: Uint8Array): void {
  if (c.st === 'recovering' || c.st === 'retired') return c.refuse(FleetCode.Unexpected, env.from);
  const have = hashAt(c.d, commit);
  // a member whose commit point is this log's snapshot point, or before it, takes the snapshot:
  // the snapshot's configuration may be of an epoch it never installed, even where the chains
  // agree (one a charter change added: its genesis configuration, epoch 0, is not the fleet's; one
  // a re-form went without, whose commit point is the re-form's chosen tip: reform-procs.test.ts)
  const suffix = have !== undefined && sameBytes(have, commitHash) && commit > c.d.base.index;
  c.send(
    env.from,
    {
      type: 'catchup',
      epoch: c.epoch,
      view: c.d.view,
      normalView: c.d.normalView,
      commit: c.d.commit,
      snapshot: suffix ? null : c.d.base,
      entries: suffix ? entriesAfter(c.d, commit) : [...c.d.entries],
    },
    env.fromInc,
  );
}

export function onCatchup(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'catchup' }>): void {
  const a = c.awaiting;
  // a rejoin's answer from a follower of that view (relayRejoin), taken only by a member that can
  // not hear its leader: one its log does not name
  const relay = a?.purpose === 'rejoin' && a.from === -1 && env.from !== c.leaderOf(b.view) && !isMemberOf(c.configTip(), c.leaderOf(b.view));
  if (!a || (a.from !== env.from && !(a.from === -1 && (env.from === c.leaderOf(b.view) || relay)))) return c.refuse(FleetCode.Unexpected, env.from);
  // to follow a view's leader, take its log only once it is normal in that view (a leader still
  // changing view has not adopted the most up-to-date log yet); a relayed log, from a member normal in it
  const following = a.purpose === 'follow' || a.purpose === 'rejoin';
  if (following && (b.normalView !== b.view || (env.from !== c.leaderOf(b.view) && !relay) || b.view < c.d.view)) return c.refuse(FleetCode.Unexpected, env.from);
  let cand: DurableState;
  if (b.snapshot) {
    if (b.snapshot.index < c.d.commit || b.snapshot.config.charter.serial < c.d.base.config.charter.serial) return c.refuse(FleetCode.StaleCatchup, env.from);
    cand = { ...c.d, base: b.snapshot, entries: [] };
  } else cand = { ...c.d, entries: c.d.entries.filter((e) => e.index <= c.d.commit) };
  const why = checkChain(cand, b.entries, c.charterChanges());
  if (why !== null) return c.refuse(why, env.from);
  cand = { ...cand, entries: [...cand.entries, ...b.entries] };
  const tip = tipOf(cand);
  if (a.expect && (a.expect.index !== tip.index || !sameBytes(a.expect.hash, tip.hash))) return c.refuse(FleetCode.Unexpected, env.from);
  // a member's log never goes back (VR Revisited §4.2's order: normal view, then length)
  if (newer({ normalView: c.d.normalView, tip: tipOf(c.d).index }, { normalView: b.normalView, tip: tip.index })) return c.refuse(FleetCode.StaleCatchup, env.from);
  // a view's log stays in its epoch; a member that rejoins, or fetches a re-form's chosen log (its
  // tip named by the plan, `expect` above), takes the epoch that log is in. A member that missed
  // its fleet's formation (it crashed after accepting, before installing: still epoch 0) refused
  // the chosen log of every later re-form, which waited for it for good (test/sim/reform-join.test.ts)
  const epochChanged = cand.base.config.epoch !== c.d.base.config.epoch;
  if (epochChanged && a.purpose !== 'rejoin' && a.purpose !== 'reform') return c.refuse(FleetCode.StaleEpoch, env.from);
  const commit = Math.max(Math.min(b.commit, tip.index), Math.min(c.d.commit, tip.index), cand.base.index);
  const view = a.purpose === 'view' || a.purpose === 'reform' ? c.d.view : Math.max(c.d.view, b.view);
  c.write(compact({ ...cand, commit, view, normalView: b.normalView }, c.t.keep, c.floor(cand)));
  c.awaiting = null;
  switch (a.purpose) {
    case 'view':
      if (c.st === 'viewchange') enterView(c);
      return;
    case 'reform':
      return maybeAccept(c);
    case 'rejoin':
    case 'follow':
      // a relayed log names the leader now: the next rejoin (member.ts tick) goes to it as well
      if (relay) return;
      if (c.wasAdmitted && (c.st === 'viewchange' || c.st === 'normal')) {
        c.st = 'normal';
        c.write({ ...c.d, normalView: c.d.view });
      } else if (c.st === 'recovering' || c.st === 'learner') c.becomeLearner();
      else return;
      c.synced = true;
      c.lastProgress = c.now;
      checkAdmission(c);
      return ackTip(c, env);
  }
}
