/**
 * `bkv fleet reform --without I` in member processes (docs/fleet.md "Re-form without some
 * members"): three `bkv serve --fleet` members serving the vault, two users registered and one
 * wrong guess charged; then every process killed (a whole-fleet power cut) and only members 0 and
 * 1 started again: member 2's machine is gone. Without the operator the two wait for member 2's
 * vote for good; the command's refusals (a member it would leave out that answers, a member it
 * keeps that does not, fewer than a majority kept, another operator secret, ids out of range) and
 * the endpoint's (malformed, forged, an approval of another epoch or replayed to a later boot of a
 * kept member: held, applies to nothing) change nothing. With the approval the two re-form in a later epoch and serve: both users recover their
 * key, the wrong guess still counted. Member 2, started again from its folder, rejoins and is
 * admitted and applies the batches committed without it. The command then refuses (the fleet serves).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { keptJson, reformApproval } from '../../../hsm/fleet/charters.ts';
import { foundingCharter } from '../../../hsm/fleet/device.ts';
import { checkFleetConfig } from '../../../host/fleet/config.ts';
import { readOperatorSecretFile } from '../../../host/fleet/member-host.ts';
import { runBkvAsync } from '../../helpers/cli.ts';
import { fleetClient, ProcFleet, sleep, type MemberStatus } from '../../helpers/fleet-procs.ts';

const fleets: ProcFleet[] = [];
afterAll(async () => {
  await Promise.all(fleets.map((f) => f.close()));
});

const te = new TextEncoder();
const KEY = new Uint8Array(32).fill(7);
type Status = MemberStatus & { epoch?: number; incarnation?: string; reformApproval?: { fromEpoch: number; without: number[]; kept: number[]; applies: boolean } };

it('after a whole-fleet restart without member 2, the operator re-forms members 0 and 1; member 2 rejoins when it comes back', async () => {
  const f = await ProcFleet.serving(3, ['--record-limit', 'off', '--address-limit', 'off']);
  fleets.push(f);
  const api = (i: number) => `http://127.0.0.1:${f.apiPorts[i]}`;
  const statusOf = (i: number) => f.status(api(i)) as Promise<Status | null>;
  try {
    const c = await fleetClient(f.root, [0, 1, 2].map(api));
    for (const id of ['alice', 'bob']) await c.register(te.encode(id), te.encode('pw'), KEY, { attemptLimit: 5 });
    const wrong = await c.recover(te.encode('bob'), te.encode('nope'));
    expect(wrong.ok, 'a wrong guess').toBe(false);
    const epoch = (await statusOf(0))!.epoch!;

    // the power cut: every member killed; members 0 and 1 come back, member 2 does not
    for (const p of f.procs) if (p) await f.kill(p);
    await Promise.all([0, 1].map((i) => f.start(i)));
    await f.waitFor('members 0 and 1 in a re-form', async () => {
      const s = await Promise.all([0, 1].map(statusOf));
      return s.every((x) => x?.status === 'reform');
    }, 30_000);
    await sleep(3000);
    const waiting = await Promise.all([0, 1].map(statusOf));
    expect(waiting.map((s) => `${s!.status} e${s!.epoch}`), 'without the operator the two wait for member 2').toEqual([`reform e${epoch}`, `reform e${epoch}`]);
    // bkv fleet status says what they wait for, and the way out
    const told = await runBkvAsync(f.root, ['fleet', 'status', f.root]);
    expect(told.code, told.err).toBe(1);
    expect(told.err).toMatch(new RegExp(`member 0, 1 re-form and wait for member 2: start it, or, if its machine is gone for good, bkv fleet reform .* --without 2`));

    // the command's refusals, each exit 1 or 2 with nothing changed
    const bad = join(f.root, 'other.secret');
    writeFileSync(bad, 'ab'.repeat(32), { mode: 0o600 });
    const refusals: [string[], number, RegExp][] = [
      [['--without', '1'], 1, /member 1 answers/],
      [['--without', '1,2'], 1, /member 1 answers/],
      [['--without', '2', '--operator-key-file', bad], 1, /refused the approval \(Fleet\.CharterNotApproved/],
      [['--without', '9'], 2, /--without/],
      [['--without', '2,2'], 2, /distinct/],
      [['--without', 'x'], 2, /--without/],
      [[], 2, /--without/],
    ];
    for (const [args, code, msg] of refusals) {
      const r = await runBkvAsync(f.root, ['fleet', 'reform', f.root, ...args, '--timeout', '5']);
      expect(r.code, `bkv fleet reform ${args.join(' ')}: ${r.err}`).toBe(code);
      expect(r.err, args.join(' ')).toMatch(msg);
    }
    // member 0 stopped too: the command keeps a member that does not answer
    await f.kill(f.procs[0]!);
    const down = await runBkvAsync(f.root, ['fleet', 'reform', f.root, '--without', '2', '--timeout', '5']);
    expect(down.code, down.err).toBe(1);
    expect(down.err).toMatch(/member 0 does not answer/);
    // and with member 0 named too, member 1 alone is no majority of three
    const alone = await runBkvAsync(f.root, ['fleet', 'reform', f.root, '--without', '0,2', '--timeout', '5']);
    expect(alone.code, alone.err).toBe(1);
    expect(alone.err).toMatch(/are 1 of the 3 members .*keeps a majority/);
    await f.start(0);

    // the endpoint: malformed bodies 400, a forged MAC 403, an approval of another epoch held but applying to nothing
    const post = async (body: unknown) => {
      const r = await fetch(`${api(1)}/fleet/reform`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
      return { status: r.status, body: (await r.json()) as { error?: { code: string }; reformApproval?: Status['reformApproval'] } };
    };
    const secret = readOperatorSecretFile(join(f.root, 'auth', 'operator.secret'));
    const fleetId = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8'))).fleetId;
    const founding = foundingCharter([0, 1, 2].map((i) => f.memberDir(i)), Uint8Array.from(Buffer.from(fleetId, 'hex')))!;
    const bootsNow = async () => new Map((await Promise.all([0, 1].map(statusOf))).map((st, i) => [i, Uint8Array.from(Buffer.from(st!.incarnation!, 'hex'))] as const));
    const boots = await bootsNow();
    const kept = keptJson(boots);
    const mac = (e: number, w: number[], b = boots) => Buffer.from(reformApproval(secret, founding, e, w, b)).toString('hex');
    const good = { fromEpoch: epoch, without: [2], kept, approval: mac(epoch, [2]) };
    for (const body of ['{', [], { ...good, approval: undefined }, { ...good, kept: undefined }, { ...good, fromEpoch: -1 }, { ...good, without: [] }, { ...good, without: [7] }, { ...good, without: [2, 2] }, { ...good, kept: [] }, { ...good, kept: [{ member: 0, incarnation: 'xy' }] }, { ...good, kept: [{ member: 2, incarnation: kept[0]!.incarnation }] }, { ...good, kept: [kept[0], kept[0]] }, { ...good, kept: [{ ...kept[0], more: 1 }] }, { ...good, more: 1 }, { ...good, approval: 'ab' }]) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    const forged = await post({ ...good, approval: mac(epoch, [1]) });
    expect([forged.status, forged.body.error?.code], 'the MAC of other ids').toEqual([403, 'Fleet.CharterNotApproved']);
    const otherBoot = await post({ ...good, approval: mac(epoch, [2], new Map(boots).set(0, new Uint8Array(16))) });
    expect([otherBoot.status, otherBoot.body.error?.code], 'the MAC of another boot').toEqual([403, 'Fleet.CharterNotApproved']);
    const otherEpoch = await post({ ...good, fromEpoch: epoch + 1, approval: mac(epoch + 1, [2]) });
    expect([otherEpoch.status, otherEpoch.body.reformApproval], 'an approval of another epoch').toEqual([200, { fromEpoch: epoch + 1, without: [2], kept: [0, 1], applies: false }]);
    // an approval replayed to a later boot of member 1 (restarted since the operator read it) applies to nothing
    await f.kill(f.procs[1]!);
    await f.start(1);
    const replayed = await post(good);
    expect([replayed.status, replayed.body.reformApproval], 'a replay to a later boot').toEqual([200, { fromEpoch: epoch, without: [2], kept: [0, 1], applies: false }]);
    await sleep(2000);
    const still = await Promise.all([0, 1].map(statusOf));
    expect(still.map((s) => s!.status !== 'normal' && s!.epoch === epoch), `still waiting in epoch ${epoch} (${still.map((s) => `${s!.status} e${s!.epoch}`).join(', ')})`).toEqual([true, true]);

    // the operator's re-form
    const r = await runBkvAsync(f.root, ['fleet', 'reform', f.root, '--without', '2', '--timeout', '120', '--json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out) as { ok: boolean; fromEpoch: number; epoch: number; without: number[]; members: number[]; leader: number; elapsedMs: number };
    console.log(`bkv fleet reform --without 2: epoch ${j.fromEpoch} -> ${j.epoch}, leader ${j.leader}, ${j.elapsedMs} ms`);
    expect([j.ok, j.fromEpoch, j.without, j.members]).toEqual([true, epoch, [2], [0, 1]]);
    expect(j.epoch).toBeGreaterThan(epoch);
    expect([0, 1]).toContain(j.leader);
    const c2 = await fleetClient(f.root, [0, 1].map(api));
    for (const id of ['alice', 'bob']) {
      const got = await c2.recover(te.encode(id), te.encode('pw'));
      expect(got.ok && Buffer.from(got.backupKey).equals(Buffer.from(KEY)), `${id} recovers the key after the re-form`).toBe(true);
    }
    await c2.register(te.encode('carol'), te.encode('pw'), KEY, { attemptLimit: 5 });

    // member 2 comes back from its folder: it rejoins, is admitted and follows the leader
    await f.start(2);
    await f.waitFor('all three normal under one leader in the new epoch', async () => {
      const s = await Promise.all([0, 1, 2].map(statusOf));
      return s.every((x) => x?.status === 'normal' && x.epoch === j.epoch && x.leader?.id === s[0]!.leader?.id && (x as { behind?: boolean }).behind !== true) ? s : null;
    }, 60_000);
    const st = await runBkvAsync(f.root, ['fleet', 'status', f.root, '--json']);
    expect(st.code, st.err).toBe(0);
    const again = await runBkvAsync(f.root, ['fleet', 'reform', f.root, '--without', '2', '--timeout', '5']);
    expect(again.code, again.err).toBe(1);
    expect(again.err).toMatch(/member 2 answers|the fleet serves/);
    const c3 = await fleetClient(f.root, [0, 1, 2].map(api));
    const got = await c3.recover(te.encode('carol'), te.encode('pw'));
    expect(got.ok, 'carol, registered while member 2 was away, recovers').toBe(true);
    const applied = await f.waitFor('member 2 applied what the leader applied', async () => {
      const s = (await Promise.all([0, 1, 2].map(statusOf))) as (Status & { appliedBatch?: number })[];
      return new Set(s.map((x) => x.appliedBatch)).size === 1 ? s : null;
    }, 30_000);
    expect(applied[2]!.appliedBatch, 'the batches of the re-formed fleet').toBeGreaterThan(0);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${f.failureReport(60)}`);
  }
}, 300_000);
