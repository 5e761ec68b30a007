/**
 * Pre-vote in member processes (docs/fleet.md "View change"): three `bkv serve --fleet` members on
 * loopback, quiet for 2 s once formed (nothing sent but the normal traffic: no re-form accepts
 * answered back and forth, no view change, no question), then every link of one follower cut for
 * four view-change timeouts, then healed. The leader and the other follower must stay normal in
 * their view throughout, the cut-off member must keep
 * its view (it asks, `preVote`, and nobody grants) and follow the same leader once healed, and no
 * member may send a `doViewChange`. The members' `sent` counts (GET /fleet/status) show the
 * question was asked. And a leader that hears no follower while they hear it (their links into it
 * cut) is replaced once they see nothing commit. And a leader of a fleet serving the vault, cut
 * off both ways, counts itself cut off (enclave/fleet/normal.ts `cutOff`; its status `cutOff`,
 * `bkv fleet status` health `cut-off`): it answers a client's operation 503 NOT_READY at once, so
 * a client that asks it first recovers its key through the others instead of waiting for a commit
 * that can not come; healed, it follows the new leader.
 * test/enclave/fleet/prevote.test.ts is the same on the tick-driven network.
 */
import { afterAll, expect, it } from 'vitest';
import { runBkvAsync } from '../../helpers/cli.ts';
import { fleetClient, ProcFleet, postOp, type MemberStatus } from '../../helpers/fleet-procs.ts';

const fleets: ProcFleet[] = [];
afterAll(async () => {
  await Promise.all(fleets.map((f) => f.close()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Three members serving the replication test API, every one normal under one leader: the fleet and that leader. */
async function formedFleet(): Promise<{ f: ProcFleet; l: number }> {
  const f = await ProcFleet.create(3);
  fleets.push(f);
  await Promise.all([0, 1, 2].map((i) => f.start(i)));
  await f.allNormal();
  return { f, l: (await f.waitFor('a leader', () => f.leader()))! };
}

it('a follower cut off from the fleet for 4 s keeps its view, moves nobody else, and follows the same leader once healed', async () => {
  const { f, l } = await formedFleet();
  const c = [0, 1, 2].find((i) => i !== l)!;
  const g = 3 - l - c;
  const all = async () => Promise.all(f.procs.map((p) => f.status(p!.api)));
  // a fleet that works says nothing but its normal traffic (prepare, prepareOk, commit) over 2 s:
  // no re-form accepts answered back and forth after formation, no view change, no question
  const formed = await all();
  await sleep(2000);
  const before = await all();
  const chatter = before.map((s, i) =>
    Object.entries(s!.sent ?? {})
      .filter(([type, n]) => !['prepare', 'prepareOk', 'commit'].includes(type) && n !== (formed[i]!.sent?.[type] ?? 0))
      .map(([type, n]) => `m${i} ${type} +${n - (formed[i]!.sent?.[type] ?? 0)}`),
  );
  expect(chatter.flat(), 'messages a quiet fleet sent besides its normal traffic').toEqual([]);
  expect(before.map((s) => (s!.sent?.commit ?? 0) + (s!.sent?.prepareOk ?? 0)).every((n) => n > 0), 'the counts count').toBe(true);
  const view = before[l]!.view!;
  try {
    const moved: string[] = [];
    const watch = async () => {
      const s = await all();
      for (const i of [l, g]) if (s[i]?.status !== 'normal' || s[i]?.view !== view) moved.push(`m${i}: ${s[i]?.status} view ${s[i]?.view}`);
      return s;
    };
    for (const p of f.linksOf(c)) p.cut();
    f.note(`cut m${c}`);
    const end = Date.now() + 4000;
    while (Date.now() < end) {
      await watch();
      await sleep(100);
    }
    const cut = await watch();
    expect(moved.slice(0, 3), 'the leader and the other follower stay normal in their view while m' + c + ' is cut off').toEqual([]);
    expect(cut[c]!.view, `the cut-off member keeps its view (${cut[c]!.status})`).toBe(view);
    const asked = (cut[c]!.sent?.preVote ?? 0) - (before[c]!.sent?.preVote ?? 0);
    expect(asked, 'the cut-off member asked to move (preVote sent)').toBeGreaterThan(0);
    for (const p of f.linksOf(c)) p.heal();
    f.note(`healed m${c}`);
    const back = await f.waitFor(`m${c} follows m${l} again`, async () => {
      const s = await watch();
      return s[c]?.status === 'normal' && s[c]?.leader?.id === l && s[c]?.view === view ? s : null;
    }, 15_000);
    expect(moved.slice(0, 3), 'nor once healed').toEqual([]);
    const dvc = (s: (MemberStatus | null)[]) => s.map((x) => x?.sent?.doViewChange ?? 0);
    expect(dvc(back), 'no member sent a doViewChange').toEqual(dvc(before));
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${f.failureReport(40)}`);
  }
}, 90_000);

it('a leader that hears no follower (their links to it cut, its links to them up) is replaced: its followers see nothing commit, change view, and the fleet commits again', async () => {
  const { f, l } = await formedFleet();
  const view = (await f.status(f.procs[l]!.api))!.view!;
  try {
    // proxies[i][l]: member i's way to member l
    for (let i = 0; i < 3; i++) if (i !== l) f.proxies[i]![l]!.cut();
    f.note(`cut the links into m${l}`);
    // an op to the deaf leader: its prepare reaches both followers, their acknowledgements never reach it
    const first = postOp(f.procs[l]!.api, { kind: 'register', id: 'deaf-0', limit: 3 });
    const nl = await f.waitFor('a new leader', async () => {
      const s = await Promise.all(f.procs.map((p) => f.status(p!.api)));
      const led = s.find((x, i) => i !== l && x?.status === 'normal' && x.leader?.id === i && (x.view ?? 0) > view);
      return led ? led.member : null;
    }, 20_000);
    const r = await postOp(f.procs[nl]!.api, { kind: 'register', id: 'deaf-1', limit: 3 });
    expect(r?.status, JSON.stringify(r?.body)).toBe(200);
    await first; // answered or not (a timeout, or the leader's refusal once it heard of the new view): it may commit in the new view
    for (let i = 0; i < 3; i++) if (i !== l) f.proxies[i]![l]!.heal();
    f.note(`healed m${l}`);
    await f.allNormal();
    expect((await f.leader()) ?? -1, 'the new leader keeps the lead').toBe(nl);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${f.failureReport(40)}`);
  }
}, 90_000);

it('a leader serving the vault, cut off both ways, takes no client operation: a client that asks it first recovers through the others, and healed it follows', async () => {
  const f = await ProcFleet.serving(3, ['--record-limit', 'off', '--address-limit', 'off']);
  fleets.push(f);
  const te = new TextEncoder();
  const key = new Uint8Array(32).fill(7);
  const l = (await f.waitFor('a leader', () => f.leader()))!;
  const others = [0, 1, 2].filter((i) => i !== l);
  const apis = f.procs.map((p) => p!.api);
  await (await fleetClient(f.root, apis)).register(te.encode('cq'), te.encode('pw'), key, { attemptLimit: 5 });
  const view = (await f.status(apis[l]!))!.view!;
  try {
    for (const p of f.linksOf(l)) p.cut();
    f.note(`cut m${l}`);
    // the leader counts itself cut off once it heard no follower for its view-change wait (20 ticks of 50 ms)
    const was = await f.waitFor(`m${l} cut off`, async () => {
      const s = (await f.status(apis[l]!)) as (MemberStatus & { cutOff?: boolean }) | null;
      return s?.cutOff === true ? s : null;
    }, 10_000);
    expect([was.status, was.leader?.id, was.view], `m${l} keeps its view`).toEqual(['normal', l, view]);
    const table = await runBkvAsync(f.root, ['fleet', 'status', f.root, '--json']);
    const rows = (JSON.parse(table.out) as { members: { member: number; health: string }[] }).members;
    expect(rows.find((r) => r.member === l)?.health, table.out).toBe('cut-off');
    expect([table.code, table.err], 'not healthy, and why').toEqual([1, expect.stringMatching(new RegExp(`member ${l} leads but hears no majority of the members \\(cut off`))]);
    const nl = await f.waitFor('a new leader among the others', async () => {
      const s = await Promise.all(others.map((i) => f.status(apis[i]!)));
      return s.every((x) => x?.status === 'normal' && x.leader?.id === s[0]!.leader?.id && x.leader!.id !== l) ? s[0]!.leader!.id : null;
    }, 20_000);
    // asked first, the old leader refuses at once (503 NOT_READY, before anything reaches its device); the client moves on
    const op = await fetch(`${apis[l]}/v1/records/${Buffer.from('cq').toString('base64url')}/ops`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5000) });
    const body = (await op.json()) as { error?: { code?: string } };
    expect([op.status, body.error?.code], JSON.stringify(body)).toEqual([503, 'NOT_READY']);
    const c = await fleetClient(f.root, [apis[l]!, ...others.map((i) => apis[i]!)]);
    const r = await c.recover(te.encode('cq'), te.encode('pw'));
    expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(key)), 'the key recovered through the others').toBe(true);
    for (const p of f.linksOf(l)) p.heal();
    f.note(`healed m${l}`);
    await f.waitFor(`m${l} follows m${nl}`, async () => {
      const s = (await f.status(apis[l]!)) as (MemberStatus & { cutOff?: boolean }) | null;
      return s?.status === 'normal' && s.leader?.id === nl && s.cutOff === undefined;
    }, 20_000);
    expect(await f.leader(), 'the new leader keeps the lead').toBe(nl);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${f.failureReport(40)}`);
  }
}, 120_000);
