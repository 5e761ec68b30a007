/**
 * Re-form of a whole fleet into a new epoch, by unanimity of the N member ids, or of a majority of
 * them the operator approved (docs/fleet.md "Re-form", "Re-form without some members"): vote
 * (durably, with this incarnation), plan (the incarnation set and the most up-to-date log,
 * recorded durably: no other set for that epoch), fetch that log, accept, and install once every
 * incarnation of the set accepted the same set and log.
 */
import { requestCatchup } from './catchup.ts';
import type { MemberCore, Vote } from './core.ts';
import { FleetCode } from './faults.ts';
import { membersOf, newer, lastPayloadAt, recordsAt, tipOf } from './log.ts';
import { withoutMajority } from './normal.ts';
import { MAX_HELD_PAYLOADS } from './codec.ts';
import { enterViewChange, enterView } from './view-change.ts';
import { configHash, sameBytes, type Body, type Config, type Envelope } from './wire.ts';

export function nextReformEpoch(c: MemberCore): number {
  return Math.max(c.epoch, c.d.reform?.epoch ?? 0) + 1;
}

export function startReform(c: MemberCore, epoch: number): void {
  if (c.st === 'retired') return;
  c.write({ ...c.d, reform: { epoch, voter: c.incarnation, setHash: null } });
  c.st = 'reform';
  c.vcStart = c.now;
  c.outstanding = null;
  c.queue = [];
  c.plan = null;
  c.myAccept = null;
  c.awaiting = null;
  const tip = tipOf(c.d);
  const body: Vote['body'] = { type: 'reformVote', epoch, view: c.d.view, normalView: c.d.normalView, tip: tip.index, tipHash: tip.hash };
  votesOf(c, epoch).set(c.id, { inc: c.incarnation, body });
  c.broadcast(body);
  tryPlan(c);
}

/** A re-form this member voted in but never accepted a set for is dropped for good: it will vote only in a later epoch. */
export function abandonReform(c: MemberCore, newerEpoch: boolean): void {
  c.plan = null;
  c.lastProgress = c.now;
  if (newerEpoch) c.sawNewerEpoch = true;
  if (c.wasAdmitted && !newerEpoch) enterViewChange(c);
  else c.st = 'recovering';
}

export function votesOf(c: MemberCore, epoch: number): Map<number, Vote> {
  let v = c.votes.get(epoch);
  if (!v) c.votes.set(epoch, (v = new Map()));
  return v;
}

export function resendReform(c: MemberCore): void {
  const r = c.d.reform;
  const own = r && votesOf(c, r.epoch).get(c.id);
  if (own) c.broadcast(own.body);
  if (c.myAccept) c.broadcast(c.myAccept);
  if (c.awaiting) requestCatchup(c, c.awaiting.purpose, c.awaiting.from, c.awaiting.expect);
}

export function onReformVote(c: MemberCore, env: Envelope, b: Vote['body']): void {
  if (b.epoch <= c.epoch) {
    if (c.myAccept && b.epoch === c.epoch) c.send(env.from, c.myAccept, env.fromInc);
    return c.refuse(FleetCode.StaleEpoch, env.from);
  }
  const votes = votesOf(c, b.epoch);
  if (!votes.has(env.from)) votes.set(env.from, { inc: env.fromInc, body: b });
  const unhappy = c.st !== 'normal' || c.now - c.lastProgress > c.t.vc || withoutMajority(c);
  const r = c.d.reform;
  if (unhappy && c.st !== 'retired' && (!r || b.epoch > r.epoch)) startReform(c, b.epoch);
  else tryPlan(c);
}

/**
 * The member ids whose votes this member's re-form waits for: every id of the charter at its tip,
 * or, with the operator's approval of a re-form without some of them (member.ts `approveReform`)
 * that names this tip's epoch and this incarnation, the others, if they are a majority of the
 * charter, include this member and the approval names an incarnation for each; null when this
 * member does not plan (it is one the approval leaves out).
 */
export function reformVoters(c: MemberCore, tipCfg: Config = c.configTip()): number[] | null {
  const members = membersOf(tipCfg);
  if (c.opts.broken === 'reform-majority' && c.d.reform) {
    // positive control: any majority that voted, no approval asked
    const votes = votesOf(c, c.d.reform.epoch);
    const voted = members.filter((m) => votes.has(m));
    if (2 * voted.length > members.length && voted.includes(c.id)) return voted;
  }
  const a = c.reformWithout;
  if (!a || a.fromEpoch !== tipCfg.epoch) return members;
  if (a.without.has(c.id)) return null;
  // bound to this boot of each kept member: an approval replayed to a later boot (a member
  // restarted, or restored from an old image, since the operator looked) applies to nothing
  const mine = a.kept.get(c.id);
  if (!mine || !sameBytes(mine, c.incarnation)) return members;
  const kept = members.filter((m) => !a.without.has(m));
  if (!kept.every((m) => a.kept.has(m))) return members;
  // a majority of the charter's ids: every entry committed under it is on one of them (quorum
  // intersection), so the most up-to-date log of their votes holds it, as a view change's does
  return 2 * kept.length > members.length ? kept : members;
}

/**
 * With a vote from every member id this re-form counts (`reformVoters`) for this member's re-form
 * epoch: the set, the most up-to-date log, and the log fetched if it is not this one.
 */
export function tryPlan(c: MemberCore): void {
  const r = c.d.reform;
  if (c.st !== 'reform' || !r || c.plan || !sameBytes(r.voter, c.incarnation)) return;
  const votes = votesOf(c, r.epoch);
  // every member id of the charter at this member's tip, or those the operator's approval keeps (a
  // member that takes a newer charter from the chosen log plans again in a later epoch: maybeAccept)
  const tipCfg = c.configTip();
  const members = reformVoters(c, tipCfg);
  if (!members || !members.every((m) => votes.has(m))) return;
  // under an approval, each kept member's vote counts only from the incarnation it names
  const named = c.reformWithout?.kept;
  if (named && members.length < membersOf(tipCfg).length && !members.every((m) => sameBytes(votes.get(m)!.inc, named.get(m)!))) return;
  const admitted: (Uint8Array | null)[] = tipCfg.charter.identities.map(() => null);
  let best = -1;
  let view = 0;
  for (const m of members) {
    const v = votes.get(m)!;
    admitted[m] = v.inc;
    view = Math.max(view, v.body.view);
    const bv = best >= 0 ? votes.get(best)!.body : null;
    if (!bv || newer(v.body, bv)) best = m;
  }
  const config: Config = { epoch: r.epoch, admitted, charter: tipCfg.charter };
  const setHash = configHash(config);
  if (r.setHash && !sameBytes(r.setHash, setHash)) return;
  const bv = votes.get(best)!.body;
  // the first view above every vote's whose leader is in the set (a member the approval left out leads none)
  let next = c.viewLedFrom(config, view + 1);
  while (!admitted[c.leaderOf(next)]) next = c.viewLedFrom(config, next + 1);
  c.plan = { epoch: r.epoch, config, setHash, best, bestTip: { index: bv.tip, hash: bv.tipHash }, view: next };
  c.write({ ...c.d, reform: { ...r, setHash } });
  const tip = tipOf(c.d);
  if (tip.index === bv.tip && sameBytes(tip.hash, bv.tipHash)) maybeAccept(c);
  else requestCatchup(c, 'reform', best, c.plan.bestTip, admitted[best]!);
}

export function maybeAccept(c: MemberCore): void {
  const p = c.plan;
  if (!p || c.st !== 'reform') return;
  const tip = tipOf(c.d);
  if (tip.index !== p.bestTip.index || !sameBytes(tip.hash, p.bestTip.hash)) return;
  // the chosen log holds another charter than the one this plan counted: no accept in this epoch
  if (!sameBytes(configHash({ ...p.config, charter: c.configTip().charter }), p.setHash)) return;
  c.myAccept = { type: 'reformAccept', epoch: p.epoch, setHash: p.setHash, tip: tip.index, tipHash: tip.hash };
  c.broadcast(c.myAccept);
  onAccepted(c, c.id, c.incarnation, c.myAccept);
}

export function onReformAccept(c: MemberCore, env: Envelope, b: Extract<Body, { type: 'reformAccept' }>): void {
  if (b.epoch <= c.epoch) {
    // A member still in this epoch's re-form resends its accept until it holds every member's:
    // answered with this one's, at most once per re-form timeout to each member. Two members that
    // installed the epoch while their accepts crossed would otherwise answer each other forever.
    if (c.myAccept && b.epoch === c.epoch) {
      const last = c.acceptAnswered.get(env.from);
      if (last === undefined || c.now - last > c.t.reform) {
        c.acceptAnswered.set(env.from, c.now);
        c.send(env.from, c.myAccept, env.fromInc);
      }
    }
    return;
  }
  onAccepted(c, env.from, env.fromInc, b);
}

export function onAccepted(c: MemberCore, from: number, inc: Uint8Array, b: Extract<Body, { type: 'reformAccept' }>): void {
  let acc = c.accepts.get(b.epoch);
  if (!acc) c.accepts.set(b.epoch, (acc = new Map()));
  acc.set(from, { inc, body: b });
  const p = c.plan;
  if (!p || !c.myAccept || p.epoch !== b.epoch || c.st !== 'reform') return;
  for (const m of membersOf(p.config)) {
    if (!p.config.admitted[m]) continue; // an id the operator's approval left out of the set
    const a = acc.get(m);
    if (!a || !sameBytes(a.inc, p.config.admitted[m]) || !sameBytes(a.body.setHash, p.setHash) || a.body.tip !== p.bestTip.index || !sameBytes(a.body.tipHash, p.bestTip.hash)) return;
  }
  // every member id of the set (every id, or a majority the operator approved) holds the same log
  // and accepted this set: it is the new epoch's committed state
  const tip = tipOf(c.d);
  const full = { ...c.d, commit: tip.index };
  c.write({
    ...full,
    view: p.view,
    normalView: p.view,
    base: { index: tip.index, hash: tip.hash, config: p.config, records: recordsAt(full, tip.index), lastPayload: lastPayloadAt(full, tip.index) },
    entries: [],
    // the payloads this member has not applied stay with it (member.ts setApplied)
    held: [...full.held, ...full.entries.filter((e) => e.payload.length > 0 && !(c.applied?.(e.payload) ?? true)).map((e) => e.payload)].slice(-MAX_HELD_PAYLOADS),
  });
  c.out.events.push({ type: 'reform', epoch: p.epoch, config: p.config, tip });
  c.plan = null;
  c.wasAdmitted = true;
  c.st = 'normal';
  c.synced = true;
  c.lastProgress = c.now;
  c.learners.clear();
  if (c.isLeader()) enterView(c);
}
