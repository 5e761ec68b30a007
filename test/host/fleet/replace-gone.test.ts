/**
 * A member of a 3-member fleet lost for good, in member processes serving the vault
 * (docs/fleet.md "Membership changes in the processes"): a whole-fleet power cut, member 2's
 * machine never back; `bkv fleet reform --without 2` lets members 0 and 1 serve again, and
 * `bkv fleet replace --member 2` replaces it: member 2 removed first (a charter of 2, committed by
 * the two left), then member 3 added, started when the command says, caught up and admitted. The
 * fleet of 0, 1 and 3 then tolerates one member down again: member 0 killed, the users still
 * recover. Refused on the way: `bkv fleet remove` of a member of 3 that answers (2 would be left,
 * needing each other), and a removal below 2.
 */
import { readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { checkFleetConfig } from '../../../host/fleet/config.ts';
import { runBkvAsync } from '../../helpers/cli.ts';
import { fleetClient, ProcFleet, type MemberStatus } from '../../helpers/fleet-procs.ts';

const fleets: ProcFleet[] = [];
afterAll(async () => {
  await Promise.all(fleets.map((f) => f.close()));
});

const te = new TextEncoder();
const KEY = new Uint8Array(32).fill(9);
type Status = MemberStatus & { epoch?: number; charter?: { serial: number; members: number[]; committed: number }; behind?: boolean };

it('power cut, member 2 gone for good: reform without it, replace it (3 -> 2 -> 3), and the new three tolerate one down', async () => {
  const f = await ProcFleet.serving(3, ['--record-limit', 'off', '--address-limit', 'off']);
  fleets.push(f);
  const fleetNow = () => checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
  const apiOf = (i: number) => `http://127.0.0.1:${fleetNow().members[i]!.api.port}`;
  const statusOf = (i: number) => f.status(apiOf(i)) as Promise<Status | null>;
  const recoverAll = async (members: number[]) => {
    const c = await fleetClient(f.root, members.map(apiOf));
    for (const id of ['ann', 'ben']) {
      const r = await c.recover(te.encode(id), te.encode('pw'));
      expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(KEY)), `${id} recovers through members ${members.join(', ')}`).toBe(true);
    }
  };
  try {
    const c = await fleetClient(f.root, [0, 1, 2].map(apiOf));
    for (const id of ['ann', 'ben']) await c.register(te.encode(id), te.encode('pw'), KEY, { attemptLimit: 5 });

    // a fleet of 3 with every member up does not go to 2
    const healthy = await runBkvAsync(f.root, ['fleet', 'remove', f.root, '--member', '2', '--timeout', '5']);
    expect(healthy.code, healthy.err).toBe(1);
    expect(healthy.err).toMatch(/3 members and member 2 answers/);

    // the power cut; member 2 never comes back
    for (const p of f.procs) if (p) await f.kill(p);
    await Promise.all([0, 1].map((i) => f.start(i)));
    await f.waitFor('members 0 and 1 in a re-form', async () => (await Promise.all([0, 1].map(statusOf))).every((s) => s?.status === 'reform'), 30_000);
    const reformed = await runBkvAsync(f.root, ['fleet', 'reform', f.root, '--without', '2', '--timeout', '120']);
    expect(reformed.code, reformed.err).toBe(0);
    await recoverAll([0, 1]);

    // replace member 2: removed first (it does not answer), then member 3 added
    const r = await f.replaceWith(2, 3);
    expect(fleetNow().members[2]).toEqual(expect.objectContaining({ removed: 1 }));
    expect(fleetNow().members[3]).toEqual(expect.objectContaining({ id: 3, joined: 2 }));
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/member 2 does not answer: removed first \(charter change 1\)/);
    expect(JSON.parse(r.out)).toEqual(expect.objectContaining({ added: 3, removed: 2, serial: 1 }));
    const three = await f.waitFor('members 0, 1, 3 normal under one leader, none behind', async () => {
      const s = await Promise.all([0, 1, 3].map(statusOf));
      return s.every((x) => x?.status === 'normal' && x.leader?.id === s[0]!.leader?.id && x.behind !== true) ? s : null;
    }, 60_000);
    for (const s of three) expect(s!.charter).toEqual(expect.objectContaining({ serial: 2, members: [0, 1, 3], committed: 2 }));
    const st = await runBkvAsync(f.root, ['fleet', 'status', f.root]);
    expect(st.code, st.err).toBe(0);

    // the new three tolerate one down: member 0 killed, members 1 and 3 serve
    await f.kill(f.procs[0]!);
    await f.waitFor('a leader among members 1 and 3', async () => {
      const s = await Promise.all([1, 3].map(statusOf));
      return s.every((x) => x?.status === 'normal' && x.leader !== null && x.leader.id !== 0) ? s : null;
    }, 60_000);
    await recoverAll([1, 3]);
    // member 0 gone too: removed (3 -> 2, it does not answer); a removal that would leave one is refused
    const below = await runBkvAsync(f.root, ['fleet', 'remove', f.root, '--member', '0', '--timeout', '5']);
    expect(below.code, below.err).toBe(0);
    const last = await runBkvAsync(f.root, ['fleet', 'remove', f.root, '--member', '1', '--timeout', '5']);
    expect(last.code, last.err).toBe(1);
    expect(last.err).toMatch(/2 members, the fewest a charter keeps/);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${f.failureReport(60)}`);
  }
}, 300_000);
