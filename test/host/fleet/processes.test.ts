/**
 * A fleet of 3 members as real processes on loopback (`bkv serve --fleet ... --member I`), every
 * member reaching every other through a TCP proxy the test controls (test/helpers/fleet-procs.ts),
 * under a load of registrations, charges and resets from clients that follow the 421 NOT_LEADER
 * hint. Meanwhile, each round:
 *   (a) SIGKILL the leader, then a follower, and restart each from its folder;
 *   (c) restore a member from a copy of its folder taken earlier (its log rolled back);
 *   (b) cut the leader off (every proxy to and from it), probe it with operations while cut, heal;
 *   (d) clone a member: a copy of its folder run as a second process with the same member id,
 *       which takes over the member's address for a while (the proxies retarget to it), then dies;
 *       a member left retired by its clone's admission is restarted from its folder.
 * The ledger (ledger.ts) checks, against the committed history every member wrote (each folder's
 * history.jsonl, copies included): no fork, every acknowledged operation in that history at its
 * index and hash, each guess number of a registration acknowledged to one session only, guesses
 * numbered without a gap or a repeat, attempts used down only by a reset; and the cut-off member
 * and the overridden original acknowledge nothing. Positive control: the same cut with members
 * that take half the fleet for a majority (BKV_FLEET_BROKEN_RULE=half-quorum) is reported.
 * BKV_FLEET_PROC_ROUNDS=N runs N rounds (default 1).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/tcp-proxy.ts';
import { postOp, ProcFleet, sleep, type AckedOp } from '../../helpers/fleet-procs.ts';
import { checkLedger } from './ledger.ts';

const ROUNDS = Number(process.env.BKV_FLEET_PROC_ROUNDS ?? 1);
const fleets: ProcFleet[] = [];
afterAll(async () => {
  await Promise.all(fleets.map((f) => f.close()));
});

async function fleetOf(env: NodeJS.ProcessEnv = {}): Promise<ProcFleet> {
  const f = await ProcFleet.create(3, env);
  fleets.push(f);
  await Promise.all([0, 1, 2].map((i) => f.start(i)));
  await f.allNormal();
  return f;
}

/** Clients: intents to the member each believes leads; 421's leader URL followed; another member after a failure. */
class Load {
  running = true;
  readonly acks: AckedOp[] = [];
  private session = 0;
  private readonly charged = new Map<string, number[]>();
  private readonly done: Promise<void>[];

  constructor(
    private readonly f: ProcFleet,
    clients: number,
  ) {
    this.done = Array.from({ length: clients }, (_, k) => this.client(k));
  }

  private intent(id: string): Record<string, string | number> {
    const r = Math.random();
    const charged = this.charged.get(id) ?? [];
    if (r < 0.15) return { kind: 'register', id, limit: 200 };
    if (r < 0.25 && charged.length) return { kind: 'reset', id, session: charged.at(-1)! };
    return { kind: 'charge', id, session: ++this.session };
  }

  private async client(k: number): Promise<void> {
    const f = this.f;
    let target = k % f.n;
    for (let n = 0; this.running; n++) {
      const id = `r${(k + n) % 6}`;
      const intent = this.intent(id);
      for (let attempt = 0; attempt < 6 && this.running; attempt++) {
        const p = f.procs[target];
        const reply = p ? await postOp(p.api, intent) : null;
        if (reply?.status === 200) {
          this.acks.push({ ...reply.body, by: p!.label });
          if (intent.kind === 'charge') this.charged.set(id, [...(this.charged.get(id) ?? []), intent.session as number]);
          break;
        }
        const to = reply?.status === 421 ? f.apiPorts.findIndex((port) => reply.body?.error?.leader === `http://127.0.0.1:${port}`) : -1;
        if (to >= 0 && to !== target) {
          target = to;
          continue;
        }
        if (reply?.status === 409) break; // refused by the rules: not registered, a reset with nothing charged
        target = (target + 1) % f.n;
        await sleep(100);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

/** Operations sent straight to `api`, a process that can not reach a majority: each acknowledgement is a violation. */
async function probe(api: string, label: string, count: number, violations: string[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const replies = await Promise.all([postOp(api, { kind: 'charge', id: 'r0', session: 9_000_000 + i }), postOp(api, { kind: 'register', id: `probe-${label.replace(/\W/g, '')}-${i}`, limit: 3 })]);
    for (const r of replies) if (r?.status === 200) violations.push(`${label} acknowledged an operation while it could not reach a majority: ${JSON.stringify(r.body)}`);
  }
}

/** Cuts the leader off, waits for a leader on the other side, probes the cut one, heals. */
async function cutTheLeader(f: ProcFleet, violations: string[]): Promise<void> {
  const cut = await f.waitFor('a leader', () => f.leader());
  for (const p of f.linksOf(cut)) p.cut();
  f.note(`cut m${cut}`);
  await f.waitFor('a leader on the majority side', async () => {
    const l = await f.leader();
    return l !== null && l !== cut ? l : null;
  });
  await probe(f.procs[cut]!.api, `cut-off m${cut}`, 3, violations);
  for (const p of f.linksOf(cut)) p.heal();
  f.note(`healed m${cut}`);
}

describe('a fleet of 3 member processes on loopback', () => {
  it('keeps every acknowledged operation and grants each guess once through kills, a restore, a cut and a clone', async () => {
    const f = await fleetOf();
    const load = new Load(f, 4);
    const violations: string[] = [];
    const failovers: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      f.note(`round ${round}`);
      await sleep(1000);

      // (a) SIGKILL the leader, then a follower; each restarts from its folder
      const lead = await f.waitFor('a leader', () => f.leader());
      const t0 = Date.now();
      await f.kill(f.procs[lead]!);
      await f.waitFor('a new leader', async () => {
        const l = await f.leader();
        return l !== null && l !== lead ? l : null;
      });
      failovers.push(Date.now() - t0);
      f.note(`failover after ${failovers.at(-1)} ms`);
      await f.start(lead);
      await f.allNormal();
      const follower = ((await f.waitFor('a leader', () => f.leader())) + 1) % f.n;
      await f.kill(f.procs[follower]!);
      await f.start(follower);
      await f.allNormal();

      // (c) a copy of a follower's folder now, restored after the load moved on
      const old = ((await f.waitFor('a leader', () => f.leader())) + 2) % f.n;
      const copy = f.copyOf(old, `copy-${round}-m${old}`);
      await sleep(2000);
      await f.kill(f.procs[old]!);
      f.restore(old, copy);
      await f.start(old);
      await f.allNormal();

      // (b) the leader cut off: it acknowledges nothing; the others go on
      await cutTheLeader(f, violations);
      await f.allNormal();

      // (d) a clone of a follower takes over its address for a while, then dies
      const k = ((await f.waitFor('a leader', () => f.leader())) + 1) % f.n;
      const cloneFleet = f.cloneFolder(k, `clone-${round}`);
      const [api, peer] = [await freePort(), await freePort()];
      const clone = await f.start(k, { fleet: cloneFleet, api, peer, label: `clone of m${k}` });
      for (let i = 0; i < f.n; i++) f.proxies[i]![k]?.retarget(peer);
      f.note(`the clone of m${k} takes its address`);
      await sleep(1000);
      await probe(f.procs[k]!.api, `m${k} overridden by its clone`, 2, violations);
      await sleep(1500);
      for (let i = 0; i < f.n; i++) f.proxies[i]![k]?.retarget(f.peerPorts[k]!);
      await f.kill(clone);
      await sleep(1000);
      if ((await f.status(f.procs[k]!.api))?.status === 'retired') {
        f.note(`m${k} was retired by its clone's admission: restarted from its folder`);
        await f.kill(f.procs[k]!);
        await f.start(k);
      }
      await f.allNormal();
    }
    await load.stop();
    // the members learn the last commit from the leader's heartbeat: then their trails are complete
    await f.allNormal();
    await sleep(1000);
    const ledger = checkLedger(f.trailTexts(), load.acks);
    f.note(`ledger: ${load.acks.length} acknowledged operations, ${ledger.entries} committed entries; failovers ${failovers.join(', ')} ms`);
    console.log(f.events.join('\n'));
    expect([...violations, ...ledger.violations]).toEqual([]);
    expect(load.acks.length).toBeGreaterThan(20);
    expect(load.acks.some((a) => a.op.kind === 'charge')).toBe(true);
  }, 60_000 + ROUNDS * 90_000);

  it('positive control: members that take half the fleet for a majority acknowledge on the cut-off side, and the ledger says so', async () => {
    const f = await fleetOf({ BKV_FLEET_BROKEN_RULE: 'half-quorum' });
    const load = new Load(f, 2);
    const violations: string[] = [];
    await sleep(500);
    await cutTheLeader(f, violations);
    await load.stop();
    await sleep(500);
    const ledger = checkLedger(f.trailTexts(), load.acks);
    console.log([...f.events, ...violations, ...ledger.violations].join('\n'));
    expect(violations.length).toBeGreaterThan(0);
  }, 90_000);
});
