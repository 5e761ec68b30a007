/**
 * A fleet forming while its members start at different times, and the quiet after (docs/fleet.md
 * "Re-form", "View change"). Three members on the tick-driven network (test/helpers/fleet-net.ts),
 * two of them started late; every message takes 1 to 8 ticks. Once all three are normal in one
 * view, nothing may change for 600 ticks: no member left out of the epoch the others formed, no
 * view change, no re-form message still going round. The failures this keeps out:
 * - a member whose re-form timer ran out as the others' accepts came voted again in a new epoch;
 *   a working leader's next message ended that vote, and at epoch 0 it voted again at once,
 *   forever (member.ts `tick`, core.ts `sawNewerEpoch`);
 * - two members that installed an epoch while their accepts crossed answered each other's accept
 *   with their own, forever (reform.ts `onReformAccept`);
 * - a leader that answered one member every tick sent the others no heartbeat, and they started a
 *   view change (core.ts `lastSent`: a broadcast only).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { pairKeys } from '../../../enclave/fleet/keys.ts';
import { hashAt } from '../../../enclave/fleet/log.ts';
import { ANY_INCARNATION, seal } from '../../../enclave/fleet/wire.ts';
import { fuzzSecrets } from '../../fuzz/targets/fleet-wire.ts';
import { Net } from '../../helpers/fleet-net.ts';

/** Counts the messages the members send, by type, from the tick `from` on (Net `watch`). */
function countSends(net: Net): { from: number; counts: Map<string, number> } {
  const tally = { from: Infinity, counts: new Map<string, number>() };
  net.watch = (h) => {
    if (net.now < tally.from) return;
    const k = `${h.type} ${h.from}->${h.to}`;
    tally.counts.set(k, (tally.counts.get(k) ?? 0) + 1);
  };
  return tally;
}

const states = (net: Net) => net.members.map((m, i) => (m ? `m${i}:${m.status} e${m.epoch}/v${m.view}` : `m${i}:down`)).join(', ');
const formed = (net: Net) => net.leader() !== null && net.members.every((m) => m?.status === 'normal') && new Set(net.members.map((m) => `${m!.epoch}/${m!.view}`)).size === 1;

describe('a fleet forming with members started at different times', () => {
  it('every member joins the epoch the others formed, and then nothing changes and no re-form message goes round', () => {
    const failures: string[] = [];
    let runs = 0;
    // the start times of the last member include those just before and after the first one's
    // re-form timeout (60 ticks) and twice it, where the others' accepts cross its new vote
    for (const delay of [1, 3, 5, 8]) {
      for (const last of [3, 27, 48, 51, 54, 57, 60, 108, 111, 114, 117]) {
        for (const second of [7, 31]) {
          runs++;
          const net = new Net(3);
          net.delay = delay;
          net.kill(0);
          net.kill(1);
          const tally = countSends(net);
          let at = -1;
          for (let t = 0; t < 1000 && at < 0; t++) {
            if (t === second) net.restart(1);
            if (t === last) net.restart(0);
            net.step();
            if (t > Math.max(last, second) && formed(net)) at = net.now;
          }
          const name = `delay ${delay}, m1 started at ${second}, m0 at ${last}`;
          if (at < 0) {
            failures.push(`${name}: not formed in 1000 ticks (${states(net)})`);
            continue;
          }
          const was = states(net);
          // the re-form's own resends may still arrive for a re-form timeout; none after
          tally.from = net.now + 60 + 2 * delay;
          for (let t = 0; t < 600; t++) {
            net.step();
            if (states(net) !== was) {
              failures.push(`${name}: formed at ${at} (${was}), ${t} ticks later ${states(net)}`);
              break;
            }
          }
          const reform = [...tally.counts].filter(([k]) => k.startsWith('reform'));
          if (reform.length > 0) failures.push(`${name}: re-form messages still sent ${60 + 2 * delay} ticks after it formed: ${JSON.stringify(reform)}`);
        }
      }
    }
    expect(runs).toBe(88);
    expect(failures, failures.slice(0, 8).join('\n')).toEqual([]);
  });

  it("a leader answering one member every tick still sends the others its heartbeat: they stay in its view", () => {
    const net = new Net(3);
    expect(net.until(() => formed(net), 1000), 'the fleet forms').toBeGreaterThanOrEqual(0);
    const leader = net.leader()!;
    const asker = (leader + 1) % 3;
    const other = (leader + 2) % 3;
    const view = net.members[other]!.view;
    const tally = countSends(net);
    tally.from = net.now;
    // a catch-up request every tick, sealed with the asker's pair key under an incarnation of its
    // own (the leader answers any; the asker refuses the answers, addressed to that incarnation)
    const key = pairKeys(fuzzSecrets(asker), leader, fuzzSecrets(leader).charter.identities[leader]!).send;
    const inc = new Uint8Array(randomBytes(16));
    const disk = net.disks[asker]!;
    for (let t = 0; t < 200; t++) {
      const msg = seal(key, { from: asker, to: leader, fromInc: inc, toInc: ANY_INCARNATION, seq: t + 1, body: { type: 'catchupRequest', commit: disk.commit, commitHash: hashAt(disk, disk.commit)! } });
      net.out(net.members[leader]!.receive(msg, net.now));
      net.step();
      const m = net.members[other]!;
      expect(`${m.status} v${m.view}`, `tick ${t}: ${states(net)}`).toBe(`normal v${view}`);
    }
    // the leader did answer every request, and heartbeats still went out every resend (2 ticks)
    expect(tally.counts.get(`catchup ${leader}->${asker}`)).toBe(200);
    expect(tally.counts.get(`commit ${leader}->${other}`) ?? 0).toBeGreaterThanOrEqual(90);
  });
});
