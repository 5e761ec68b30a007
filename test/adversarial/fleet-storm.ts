/**
 * Fleet storm: rounds of client load on a real fleet of member processes on loopback (`bkv serve
 * --fleet ... --member I`, docs/fleet.md "The member process"; 3 members, some fleets 5), each
 * member reaching each other through a TCP proxy the storm controls (test/helpers/fleet-procs.ts),
 * while the round injects 3 to 6 faults drawn by the seed (most of them deliver a SIGKILL; the
 * fault driver both fleet storms share, lib/fleet-faults.ts):
 *   kill-leader    SIGKILL the leader under load (mostly waiting for the failover), restart it;
 *   kill-follower  SIGKILL a follower, restart it;
 *   kill-majority  SIGKILL a majority at once (the leader among them), restart them (a re-form);
 *   cut            cut a minority off (every proxy to and from it; the leader more often than not),
 *                  probe it with intents (it must acknowledge none), heal;
 *   restore        SIGKILL a member, put back an old copy of its folder (taken in an earlier round
 *                  or earlier in this one, with the member SIGSTOPped), restart it, send it intents
 *                  at once (every folder's history.jsonl is read into the ledger first);
 *   clone          a copy of a member's folder run as a second process with the same id, which
 *                  takes the member's address for a while (intents to both: the overridden original
 *                  must acknowledge none), then SIGKILL the clone (a member retired by its clone's
 *                  admission is SIGKILLed and restarted from its folder when the settle wait finds it).
 * Clients send the replication layer's intents (POST /fleet/ops: register, charge, reset, lock,
 * touch, replace, delete on a few records with small limits, so limits are reached), follow 421
 * NOT_LEADER to the leader, and give up after a few tries (the outcome is then unknown).
 * After every round the load stops, the fleet settles, and the ledger (lib/fleet-ledger.ts) checks
 * the acknowledgements against every folder's committed history and every member's durable state:
 * no acknowledged operation lost (held by a majority), no guess refunded, each guess granted once,
 * never more than `limit` charges between resets, histories that agree; an acknowledgement by a
 * restored or cloned member is held to the same. A round that can not run (a fleet that does not
 * start or come back in time, a port taken) is an error in the report, with its seed and round.
 *
 *   npx tsx test/adversarial/fleet-storm.ts --rounds N [--seed S] [--members 3|5] [--clients C]
 *
 * Exit 1 on a violation or an error.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProcFleet, type MemberProc, type MemberStatus } from '../helpers/fleet-procs.ts';
import { Rng, bump, isMain, newReport, note, parseArgs, runMain, sleep } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { FleetFaults, closeFleet, pickFault, reviveFleet, type FleetAction, type FleetStormKnobs } from './lib/fleet-faults.ts';
import { FleetLedger, durableView, type DurableView, type OpJson } from './lib/fleet-ledger.ts';

/** How long the storm waits for a fleet to come back (a leader, every member normal) before it calls the round an error. */
const RECOVER_MS = 30_000;
/** A client's wait for one answer (a member answers `Fleet.Unanswered` after 10 s). */
const CLIENT_TIMEOUT_MS = 4000;

export interface FleetStormOptions extends FleetStormKnobs {
  /** Faults of every round, in this order (default: 3..6 drawn by weight). */
  actions?: readonly FleetAction[];
  /** `cut` takes the leader every time (the positive control: a broken quorum shows on a cut-off leader at once; a cut-off follower must first lead a view of its own). */
  cutLeader?: boolean;
}

type Reply = { status: number; body: any } | null;

async function post(api: string, intent: OpJson): Promise<Reply> {
  try {
    const r = await fetch(`${api}/fleet/ops`, { method: 'POST', body: JSON.stringify(intent), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) });
    return { status: r.status, body: await r.json() };
  } catch {
    return null;
  }
}

/** One fleet's run: its processes, its ledger (the copies of folders kept for a restore are the driver's: lib/fleet-faults.ts). */
interface FleetRun {
  f: ProcFleet;
  ledger: FleetLedger;
  name: string;
  roundsLeft: number;
  /** Folders whose state.bin the ledger reads besides the members' own: copies, clones. */
  others: { dir: string; member: number; name: string }[];
  session: number;
  charged: Map<string, number>;
  probes: number;
}

/** Clients: intents on a few records to the member each believes leads; 421's leader followed; another member after a failure. */
class Load {
  private running = true;
  ops = 0;
  refused = 0;
  unknown = 0;
  private readonly done: Promise<void>[];

  constructor(
    private readonly run: FleetRun,
    private readonly rng: Rng,
    private readonly round: number,
    clients: number,
  ) {
    this.done = Array.from({ length: clients }, (_, k) => this.client(k));
  }

  private intent(id: string): OpJson {
    const r = this.rng.next();
    const run = this.run;
    if (r < 0.1) return { kind: 'register', id, limit: this.rng.int(2, 6) };
    if (r < 0.62) {
      const session = ++run.session;
      run.charged.set(id, session);
      return { kind: 'charge', id, session };
    }
    if (r < 0.74) return { kind: 'reset', id, session: run.charged.get(id) ?? ++run.session };
    if (r < 0.82) return { kind: 'lock', id };
    if (r < 0.88) return { kind: 'touch', id };
    if (r < 0.94) return { kind: 'replace', id, limit: this.rng.int(2, 6) };
    return { kind: 'delete', id };
  }

  private async client(k: number): Promise<void> {
    const f = this.run.f;
    let target = k % f.n;
    while (this.running) {
      const intent = this.intent(`r${this.rng.int(0, 7)}`);
      this.run.ledger.sentIntent(intent);
      let answered = false;
      for (let attempt = 0; attempt < 6 && this.running; attempt++) {
        const p = f.procs[target];
        const reply = p ? await post(p.api, intent) : null;
        if (reply?.status === 200) {
          this.run.ledger.ack({ ...reply.body, by: p!.label, round: this.round });
          this.ops++;
          answered = true;
          break;
        }
        if (reply?.status === 409 || reply?.status === 400) {
          this.refused++; // refused by the rules (not registered, at the limit, nothing to reset)
          answered = true;
          break;
        }
        const to = reply?.status === 421 ? f.apiPorts.findIndex((port) => reply.body?.error?.leader === `http://127.0.0.1:${port}`) : -1;
        if (to >= 0 && to !== target) {
          target = to;
          continue;
        }
        target = (target + 1) % f.n;
        await sleep(100);
      }
      if (!answered) this.unknown++;
      await sleep(this.rng.exp(8));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

export async function fleetStorm(o: FleetStormOptions): Promise<Report> {
  const seed = o.seed ?? Date.now() % 1e9;
  const rng = new Rng(seed);
  const log = o.log ?? (() => undefined);
  const report = newReport(`fleet storm (${o.rounds} rounds, ${o.members ? `${o.members} members` : '3 or 5 members'}, seed ${seed}${o.broken ? `, BROKEN RULE ${o.broken}` : ''})`);
  const t0 = performance.now();
  const clients = o.clients ?? 3;
  let run: FleetRun | null = null;
  let fleets = 0;
  let failedInARow = 0;
  let ops = 0;
  let refused = 0;
  let unknown = 0;
  let acknowledged = 0;
  let entries = 0;
  let gaps = 0;
  let undetermined = 0;
  const sizes: Record<string, number> = {};
  const where = (round: number) => `seed ${seed} round ${round}${run ? ` (${run.name})` : ''}`;

  /** Intents sent straight to one process; `mustRefuse`: a process that can not reach a majority (an acknowledgement is a violation). */
  const probe = async (p: MemberProc, label: string, round: number, mustRefuse: boolean): Promise<void> => {
    const r = run!;
    const intents: OpJson[] = [
      { kind: 'charge', id: `r${rng.int(0, 7)}`, session: ++r.session },
      { kind: 'register', id: `probe-${r.probes++}`, limit: 3 },
    ];
    for (const i of intents) r.ledger.sentIntent(i);
    const replies = await Promise.all(intents.map((i) => post(p.api, i)));
    bump(report.faults, 'intents sent to a cut-off, restored or cloned process', intents.length);
    for (const reply of replies) {
      if (reply?.status !== 200) continue;
      r.ledger.ack({ ...reply.body, by: label, round });
      if (mustRefuse) report.violations.push(`${where(round)}: ${label} acknowledged ${JSON.stringify(reply.body)} while it could not reach a majority`);
    }
  };

  /** Every member normal under one leader; a member its clone's admission retired is restarted (lib/fleet-faults.ts restartRetired). */
  const allNormal = () => run!.f.waitFor('every member normal under one leader', async () => {
    const all = await faults.statusAll();
    if (await faults.restartRetired(all)) return null;
    const ids = new Set(all.map((s) => (s?.status === 'normal' ? s.leader?.id : -1)));
    return ids.size === 1 && !ids.has(-1) && !ids.has(undefined) ? all : null;
  }, RECOVER_MS);

  const faults: FleetFaults = new FleetFaults({
    report,
    rng,
    fleet: () => run!.f,
    recoverMs: RECOVER_MS,
    log,
    cutLeader: o.cutLeader === true,
    hooks: {
      probe,
      allNormal,
      // the folder's history.jsonl goes back with it: its lines are read first (a line the
      // others never wrote, a member that caught up by snapshot, would otherwise be lost)
      beforeRestore: (round) => {
        for (const t of run!.f.trailTexts()) run!.ledger.addTrail(t.name, t.text, round);
      },
      // a copy's or a clone's folder: the ledger reads its state.bin too
      onCopy: (dir, member, name) => void run!.others.push({ dir, member, name }),
      onClone: (dir, member, name) => void run!.others.push({ dir, member, name }),
    },
  });

  /** Every member normal, then at one commit with nothing pending (the followers' trails are then complete), or a note. */
  const settle = async (): Promise<void> => {
    const f = run!.f;
    await allNormal();
    try {
      await f.waitFor('every member at the leader\'s commit', async () => {
        const all = await faults.statusAll();
        const points = all.map((s) => s as (MemberStatus & { tip?: number }) | null);
        const commits = new Set(points.map((s) => (s ? `${s.commit}/${s.tip}` : 'down')));
        return commits.size === 1 && !commits.has('down') && points.every((s) => s!.commit === s!.tip);
      }, 10_000);
    } catch {
      note(report, 'a fleet did not settle at one commit within 10 s after its load stopped (checked as it was)');
    }
  };

  const check = (round: number): void => {
    const r = run!;
    const f = r.f;
    for (const t of f.trailTexts()) r.ledger.addTrail(t.name, t.text, round);
    const views: DurableView[] = [];
    const read = (dir: string, member: number, name: string, counts: boolean) => {
      const file = join(dir, 'state.bin');
      try {
        const v = durableView(existsSync(file) ? new Uint8Array(readFileSync(file)) : null, { name, member, n: f.n, counts });
        if (v) views.push(v);
      } catch (e) {
        report.violations.push(`${where(round)}: ${name}'s state.bin does not decode: ${(e as Error).message}`);
      }
    };
    for (let m = 0; m < f.n; m++) read(f.memberDir(m), m, `m${m}`, true);
    for (const x of r.others) read(x.dir, x.member, x.name, false);
    report.checks += r.ledger.check(round, views);
  };

  const closeRun = async () => {
    if (!run) return;
    acknowledged += run.ledger.acknowledged;
    entries += run.ledger.entries;
    gaps += run.ledger.gaps;
    undetermined += run.ledger.undetermined;
    await closeFleet(run.f);
    run = null;
  };

  try {
    for (let round = 1; round <= o.rounds; round++) {
      const rt = performance.now();
      const killsBefore = report.kills;
      const violationsBefore = report.violations.length;
      let load: Load | null = null;
      const done: string[] = [];
      try {
        if (!run || run.roundsLeft <= 0) {
          await closeRun();
          const n = o.members ?? (rng.chance(0.3) ? 5 : 3);
          fleets++;
          const name = `fleet ${fleets} of ${n}`;
          let f: ProcFleet | null = null;
          try {
            // members' ports below the ephemeral range (ProcFleet.create's default): a member restarts on its port
            f = await ProcFleet.create(n, o.broken ? { BKV_FLEET_BROKEN_RULE: o.broken } : {});
            run = { f, ledger: new FleetLedger(report, { seed, fleet: name, n }), name, roundsLeft: o.roundsPerFleet ?? rng.int(2, 4), others: [], session: 0, charged: new Map(), probes: 0 };
            await faults.startAll(Array.from({ length: n }, (_, i) => i));
            await allNormal();
          } catch (e) {
            if (f && !run) await f.close();
            throw new Error(`the fleet did not start: ${(e as Error).message}`);
          }
          bump(sizes, `${n} members`);
        }
        run!.roundsLeft--;
        load = new Load(run!, new Rng((seed ^ (round * 0x9e3779b1)) >>> 0), round, clients);
        await sleep(rng.int(300, 800));
        if (rng.chance(0.5)) faults.keepCopy(round, 0);
        const plan: FleetAction[] = o.actions ? [...o.actions] : Array.from({ length: rng.int(3, 6) }, () => pickFault(rng));
        for (let k = 0; k < plan.length; k++) {
          done.push(await faults.act(plan[k]!, round, k + 1));
          if (rng.chance(0.3)) faults.keepCopy(round, k + 1);
          await sleep(rng.int(100, 600));
        }
        await load.stop();
        ops += load.ops;
        refused += load.refused;
        unknown += load.unknown;
        load = null;
        await settle();
        check(round);
        failedInARow = 0;
      } catch (e) {
        if (load) await load.stop();
        const msg = (e as Error).message.split('\n').slice(0, 30).join('\n    ');
        report.errors.push(`${where(round)}, after [${done.join('; ')}]: ${msg}`);
        // The fleet gets one chance to come back (links healed, members that are down started);
        // then the ledger checks it as after any round. If it does not, every process is stopped
        // and what the fleet left on disk is checked as it is.
        if (run) {
          const f = run.f;
          try {
            await reviveFleet(f);
            await settle();
            check(round);
          } catch (x) {
            report.errors.push(`${where(round)}: the fleet did not come back: ${(x as Error).message.split('\n')[0]}`);
            await Promise.all([...f.procs, ...f.extra].map((p) => (p ? f.kill(p) : undefined)));
            note(report, 'a fleet that did not come back was checked as its processes left it: an acknowledgement held by one member while another was restored may read as not held by a majority');
            try {
              check(round);
            } catch (y) {
              report.errors.push(`${where(round)}: the ledger could not read the fleet: ${(y as Error).message}`);
            }
          }
        }
        await closeRun();
        if (++failedInARow >= 3) {
          report.errors.push(`${where(round)}: stopped after 3 rounds in a row failed`);
          break;
        }
      }
      log(`round ${round}/${o.rounds} (${where(round).replace(/^seed \d+ round \d+ /, '')}): ${done.join('; ') || 'no fault'}; SIGKILLs ${report.kills - killsBefore} (${report.kills} so far), acknowledged ${run?.ledger.acknowledged ?? 0}, ${Math.round(performance.now() - rt)} ms, violations ${report.violations.length - violationsBefore}`);
      o.progress?.(report, round);
    }
  } finally {
    await closeRun();
  }
  report.stats['fleets'] = `${fleets} (${Object.entries(sizes).map(([k, v]) => `${v} of ${k}`).join(', ')})`;
  report.stats['operations acknowledged'] = ops;
  report.stats['refused by the rules (409/400)'] = refused;
  report.stats['intents without an answer (outcome unknown)'] = unknown;
  report.stats['acknowledgements checked (probes included)'] = acknowledged;
  report.stats['committed entries read'] = entries;
  report.stats['entries no trail holds (a member journals only what its log still holds)'] = gaps;
  report.stats['acknowledged charges whose registration such a gap hides (not checked for a second session)'] = undetermined;
  report.stats['seconds'] = Math.round((performance.now() - t0) / 100) / 10;
  if (ops === 0 && o.rounds > 0) report.violations.push(`seed ${seed}: no operation was acknowledged in ${o.rounds} rounds: the storm checked nothing`);
  return report;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['rounds', 'seed', 'members', 'clients']);
    const members = a.get('members') === undefined ? undefined : a.num('members', 3);
    if (members !== undefined && members !== 3 && members !== 5) throw new Error('--members must be 3 or 5');
    return fleetStorm({ rounds: a.num('rounds', 6), seed: a.get('seed') === undefined ? undefined : a.num('seed', 1), members: members as 3 | 5 | undefined, clients: a.num('clients', 3), log: (l) => console.log(l) });
  });
}
