/**
 * One captured message of each type, altered every way the network could: each single-bit flip,
 * each truncation, a byte appended, counts above their bounds and a trailing byte behind a valid
 * MAC, another receiver id, a stale receiver incarnation, the same bytes twice. Each alteration is
 * refused by the member it reaches with one FleetFault of the expected code, its durable state is
 * the same object after, it sends and answers nothing, and it still answers a valid message; the
 * fleet then commits the next change with no violation of the oracle (docs/fleet.md, "What a
 * member checks").
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeBody } from '../../enclave/fleet/codec.ts';
import { FleetCode, FleetFault } from '../../enclave/fleet/faults.ts';
import type { Member } from '../../enclave/fleet/member.ts';
import { tipOf } from '../../enclave/fleet/log.ts';
import { HEADER_BYTES, MAC_BYTES, open, readHeader, seal, sealBody, type Envelope, type MessageType } from '../../enclave/fleet/wire.ts';
import { exhaustive } from './forge.ts';
import { World, type Proc } from './world.ts';
const TYPES: MessageType[] = ['prepare', 'prepareOk', 'commit', 'doViewChange', 'startView', 'rejoin', 'catchupRequest', 'catchup', 'reformVote', 'reformAccept', 'preVote', 'preVoteGrant'];

/** Codes a message refused before its MAC is checked may carry: the header's own checks. */
const HEADER_CODES = [FleetCode.WireVersion, FleetCode.UnknownType, FleetCode.UnknownMember, FleetCode.Replay, FleetCode.BadValue, FleetCode.BadMac];
/** Codes of the wire format and the envelope: a genuine message never gets one. */
const WIRE_CODES = new Set<number>([FleetCode.BadMac, FleetCode.Replay, FleetCode.WrongIncarnation, FleetCode.UnknownMember, ...Object.values(FleetCode).filter((c) => c >= FleetCode.Truncated)]);

/**
 * A 3-member fleet formed (re-form votes and accepts, a view start), a change committed (prepare,
 * prepareOk, commit), a member restarted (rejoin, catch-up), the leader cut off and back (view
 * change, catch-up request): the last message of each type any member sent.
 */
async function captured() {
  const w = await World.create({ seed: 11, n: 3, faults: [] });
  const last = new Map<MessageType, Uint8Array>();
  /** The highest sequence number each sender incarnation used: a test's message in its name takes the next one, as the sender would. */
  const seqs = new Map<string, number>();
  w.tap = (msg) => {
    const h = readHeader(msg);
    last.set(h.type, msg);
    const k = bytesToHex(h.fromInc);
    seqs.set(k, Math.max(seqs.get(k) ?? 0, h.seq));
  };
  const settled = () => w.leaders().length === 1 && w.alive().every((p) => p.member!.status === 'normal');
  const until = (pred: () => boolean, max = 80) => {
    for (let i = 0; i < max && !pred(); i++) w.step();
  };
  until(settled);
  w.submit(w.leaders()[0]!, { kind: 'register', id: 'r0', limit: 3 });
  until(() => w.answers.some((a) => a.ok));
  const restarted = w.alive().find((p) => !p.member!.isLeader())!;
  const retiredInc = restarted.member!.incarnation;
  w.crash(restarted);
  w.restart(restarted.id);
  until(() => w.alive().every((p) => p.member!.status === 'normal'));
  const oldLeader = w.leaders()[0]!;
  w.partition((p) => (p.id === oldLeader.id ? 1 : 0));
  for (let i = 0; i < 40; i++) w.step();
  w.partition(null);
  until(settled);
  expect([...last.keys()].sort()).toEqual([...TYPES].sort());
  expect(w.oracle.violations).toEqual([]);
  const nextSeq = (fromInc: Uint8Array): number => {
    const k = bytesToHex(fromInc);
    const s = (seqs.get(k) ?? 0) + 1;
    seqs.set(k, s);
    return s;
  };
  return { w, last, nextSeq, retiredInc: { id: restarted.id, inc: retiredInc } };
}

/** One delivery that must be refused: one FleetFault of `codes`, nothing sent or answered, the durable state untouched. */
function refused(m: Member, msg: Uint8Array, now: number, codes: readonly number[], what: string): void {
  const before = m.durable;
  const out = m.receive(msg, now);
  expect(out.faults, what).toHaveLength(1);
  expect(out.faults[0], what).toBeInstanceOf(FleetFault);
  expect(codes, `${what}: code ${out.faults[0]!.code}`).toContain(out.faults[0]!.code);
  expect(out.send.length + out.answers.length + out.events.length, what).toBe(0);
  expect(m.durable, what).toBe(before);
}

/** Bodies whose count field is above its bound, for the types that carry counts (the count alone: no items follow). */
function overCounts(type: MessageType, body: Uint8Array): Uint8Array[] {
  const ff = [0xff, 0xff];
  switch (type) {
    case 'prepare': // epoch, view, commit, entry index, entry view, prev hash, hash: 104 bytes, then the op count
      return [Uint8Array.from([...body.subarray(0, 104), ...ff])];
    case 'doViewChange': // epoch, view, normal view, tip, tip hash, config epoch: 72 bytes, then the admitted count
      return [Uint8Array.from([...body.subarray(0, 72), ...ff])];
    case 'catchup': // epoch, view, normal view, commit: 32 bytes, then the snapshot count (at most 1), or the entry count
      return [Uint8Array.from([...body.subarray(0, 32), ...ff]), Uint8Array.from([...body.subarray(0, 32), 0, 0, ...ff])];
    default:
      return [];
  }
}

describe('fleet: every alteration of a captured message is refused, and the member keeps serving', () => {
  let ctx: Awaited<ReturnType<typeof captured>>;
  let leader: Proc;
  beforeAll(async () => {
    ctx = await captured();
    leader = ctx.w.leaders()[0]!;
  });
  /** The message key of the pair a header names (the sender's key; the receiver holds the same). */
  const keyOf = (e: { from: number; to: number }): Uint8Array => ctx.w.messageKey(e.from, e.to);

  /** A valid message the member answers: a commit from the leader (a follower acks it), a view change of the current view (the leader answers with its start). */
  function answersValid(p: Proc): void {
    const { w, nextSeq } = ctx;
    const m = p.member!;
    const follower = w.alive().find((q) => q.id !== leader.id)!;
    const probe: Envelope = m.isLeader()
      ? { from: follower.id, to: m.id, fromInc: follower.member!.incarnation, toInc: m.incarnation, seq: nextSeq(follower.member!.incarnation), body: { type: 'doViewChange', epoch: m.epoch, view: m.view, normalView: m.view, tip: tipOf(m.durable).index, tipHash: tipOf(m.durable).hash, config: { epoch: m.epoch, admitted: [null], charter: { serial: 0, identities: [new Uint8Array(32).fill(9)] } } } }
      : { from: leader.id, to: m.id, fromInc: leader.member!.incarnation, toInc: m.incarnation, seq: nextSeq(leader.member!.incarnation), body: { type: 'commit', epoch: m.epoch, view: m.view, commit: m.durable.commit } };
    const out = m.receive(seal(keyOf(probe), probe), w.now);
    expect(out.faults).toEqual([]);
    expect(out.send.map((x) => readHeader(x).type)).toEqual([m.isLeader() ? 'startView' : 'prepareOk']);
  }

  for (const type of TYPES) {
    it(`${type}: bit flips, truncations, an appended byte, over-counts, a trailing byte, another receiver or incarnation, a replay`, () => {
      const { w, last, nextSeq, retiredInc } = ctx;
      const captured = last.get(type)!;
      const env = open(keyOf(readHeader(captured)), captured);
      const KEY = keyOf(env);
      const p = w.aliveOf(env.to)[0]!;
      const m = p.member!;
      // the captured message again, fresh (the sender's next sequence number, not yet seen), so each alteration reaches the MAC
      const fresh = seal(KEY, { ...env, toInc: m.incarnation, seq: nextSeq(env.fromInc) });
      for (const [what, msg] of exhaustive(fresh)) {
        const at = what.startsWith('bit') ? Number(what.split(' ')[1]) >> 3 : -1;
        const codes = what.startsWith('cut') && msg.length < HEADER_BYTES + MAC_BYTES ? [FleetCode.Truncated] : at >= 0 && at < HEADER_BYTES ? HEADER_CODES : [FleetCode.BadMac];
        refused(m, msg, w.now, codes, `${type}: ${what}`);
      }
      const h = { ...env, type, toInc: m.incarnation };
      for (const body of overCounts(type, encodeBody(env.body))) refused(m, sealBody(KEY, { ...h, seq: nextSeq(env.fromInc) }, body), w.now, [FleetCode.TooMany], `${type}: a count above its bound`);
      refused(m, sealBody(KEY, { ...h, seq: nextSeq(env.fromInc) }, Uint8Array.from([...encodeBody(env.body), 0])), w.now, [FleetCode.TrailingBytes], `${type}: a trailing byte`);
      const elsewhere = [0, 1, 2].find((x) => x !== env.to && x !== env.from)!;
      refused(m, seal(KEY, { ...env, to: elsewhere, seq: nextSeq(env.fromInc) }), w.now, [FleetCode.UnknownMember], `${type}: to another member`);
      const stale = retiredInc.id === m.id ? retiredInc.inc : new Uint8Array(16).fill(0xaa);
      refused(m, seal(KEY, { ...env, toInc: stale, seq: nextSeq(env.fromInc) }), w.now, [FleetCode.WrongIncarnation], `${type}: to a stale incarnation`);
      // the genuine message: taken (or refused by the protocol, never by the wire checks); the same bytes again: a replay
      // (sealed last: the refusals above under a valid MAC recorded their sequence numbers)
      const genuine = seal(KEY, { ...env, toInc: m.incarnation, seq: nextSeq(env.fromInc) });
      const first = m.receive(genuine, w.now);
      expect(first.faults.filter((f) => WIRE_CODES.has(f.code)), type).toEqual([]);
      refused(m, genuine, w.now, [FleetCode.Replay], `${type}: the same bytes again`);
      answersValid(p);
    });
  }

  it('a client intent the wire format can not carry (record id too long or empty, session out of range) is answered with a refusal, not sent', () => {
    const { w } = ctx;
    const had = w.answers.length;
    w.submit(leader, { kind: 'register', id: 'x'.repeat(65), limit: 3 });
    w.submit(leader, { kind: 'register', id: '', limit: 3 });
    w.submit(leader, { kind: 'charge', id: 'r0', session: 2 ** 53 });
    w.submit(leader, { kind: 'reset', id: 'r0', session: -1 });
    expect(w.answers.slice(had).map((a) => !a.ok && a.code)).toEqual(new Array(4).fill(FleetCode.BadValue));
  });

  it('then the fleet commits the next change on every member, with no violation', () => {
    const { w } = ctx;
    const had = w.answers.length;
    // A receiver refuses the sender's own next few messages as replays (this file's messages took
    // their sequence numbers), which may starve a follower into a view change; then, as a client
    // does, the change goes again to the member that leads now.
    let to = leader;
    w.submit(to, { kind: 'charge', id: 'r0', session: 1 });
    for (let t = 0; t < 240 && !w.answers.slice(had).some((a) => a.ok); t++) {
      w.step();
      const now = w.leaders()[0];
      if (now && now !== to && now.member!.status === 'normal') w.submit((to = now), { kind: 'charge', id: 'r0', session: 2 });
    }
    expect(w.answers.slice(had).filter((a) => a.ok)).toHaveLength(1);
    for (let t = 0; t < 20; t++) w.step();
    for (const p of w.alive()) expect(p.member!.durable.commit).toBe(tipOf(leader.member!.durable).index);
    expect(w.oracle.violations).toEqual([]);
  });
});
