/**
 * The fleet storms' fault driver (test/adversarial/fleet-storm.ts, fleet-vault-storm.ts): the
 * faults both deal to a ProcFleet (test/helpers/fleet-procs.ts), written once. A storm keeps what
 * differs: how it probes a process (intents on /fleet/ops, or a wrong login and a registration),
 * what "every member normal" means to it (the vault storm accepts members `behind`), and what it
 * does when a fault is dealt, before a restore, and with a copy or a clone's folder.
 *
 *   kill-leader    SIGKILL the leader under load (mostly waiting for the failover), restart it;
 *   kill-follower  SIGKILL a follower, restart it;
 *   kill-majority  SIGKILL a majority at once (the leader among them), restart them (a re-form);
 *   cut            cut a minority off (every proxy to and from it; the leader more often than not),
 *                  probe it (it must acknowledge nothing), heal;
 *   restore        SIGKILL a member, put back an old copy of its folder (taken in an earlier round
 *                  or earlier in this one), restart it, probe it at once;
 *   clone          a copy of a member's folder run as a second process with the same id, which
 *                  takes the member's address for a while (both probed: the overridden original
 *                  must acknowledge nothing), then SIGKILL the clone; a member its clone's
 *                  admission retired is SIGKILLed and restarted from its folder by the storm's
 *                  allNormal wait (`restartRetired`: it may learn so only after the clone is gone).
 * Every fault ends with the storm's `allNormal`. A SIGKILL the driver delivers counts in
 * report.kills and report.faults; a process already gone is a note.
 *
 * Right before a fault takes members out of service (a SIGKILL, a cut, a clone taking an address,
 * a restore), the driver asks every running member's status and deals it only if a majority of the
 * fleet can still serve without them (`ableToServe`: normal under the leader, not `behind`, its
 * vault up; a member down or cut off can not), else it waits for that (FleetFaults `serviceable`,
 * at most ABLE_WAIT_MS) and leaves the fault out if the fleet stays short. A wait for a leader (or
 * a storm's own wait, through FleetFaults `waitFor`) that runs past `recoverMs` while a member is
 * behind or not yet admitted goes on up to `catchUpMs`; its error names every member's status.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freeFixedPort } from '../../helpers/tcp-proxy.ts';
import type { MemberProc, MemberStatus, ProcFleet } from '../../helpers/fleet-procs.ts';
import { bump, childPids, note, sleep } from './common.ts';
import type { Report, Rng } from './common.ts';

export const FLEET_ACTIONS = ['kill-leader', 'kill-follower', 'kill-majority', 'cut', 'restore', 'clone'] as const;
export type FleetAction = (typeof FLEET_ACTIONS)[number];
/** How often each fault is drawn. */
const WEIGHTS: Record<FleetAction, number> = { 'kill-leader': 0.3, 'kill-follower': 0.2, 'kill-majority': 0.14, cut: 0.12, restore: 0.12, clone: 0.12 };

/** The knobs both fleet storms take (each adds its own, and its `actions`: the faults of every round). */
export interface FleetStormKnobs {
  rounds: number;
  seed?: number;
  log?: (line: string) => void;
  /** Fleet size; default 3, or 5 for about 3 fleets in 10. */
  members?: 3 | 5;
  /** Rounds per fleet before a fresh one starts (default 2..4, drawn). */
  roundsPerFleet?: number;
  /** Concurrent clients (default 3). */
  clients?: number;
  /** A positive control only: members run with this broken rule (BKV_FLEET_BROKEN_RULE, enclave/fleet/core.ts). */
  broken?: string;
  /** Called after each round with the report so far (run.ts --min-kills prints its progress). */
  progress?: (report: Report, round: number) => void;
}

/** How long a fault waits for a majority able to serve without the members it takes out before it is left out. */
export const ABLE_WAIT_MS = 60_000;

/** A member's GET /fleet/status with what a member serving the vault adds (host/fleet/member-host.ts). */
export type ServeStatus = MemberStatus & { serving?: string; behind?: boolean };

/** The leader a storm waits for: normal, leading itself, not behind (its vault serves), or null. */
export function servingLeader(all: readonly (ServeStatus | null)[]): number | null {
  return all.find((s) => s?.status === 'normal' && s.leader?.id === s.member && !s.behind)?.member ?? null;
}

/**
 * The members that can serve now: normal under the serving leader, not behind, and (serving the
 * vault) with its vault up (an applied batch); a member down (null) can not.
 */
export function ableToServe(all: readonly (ServeStatus | null)[]): number[] {
  const lead = servingLeader(all);
  if (lead === null) return [];
  return all
    .filter((s): s is ServeStatus => s !== null && s.status === 'normal' && s.leader?.id === lead && !s.behind && (s.serving !== 'vault' || s.appliedBatch !== undefined))
    .map((s) => s.member);
}

/** Members that are behind (waiting for a catch-up by stored rows) or not yet admitted (recovering, learner). */
export function lateMembers(all: readonly (ServeStatus | null)[]): number[] {
  return all.filter((s): s is ServeStatus => s !== null && (s.behind === true || s.status === 'recovering' || s.status === 'learner')).map((s) => s.member);
}

/** Each member's status in a few words, for an error's first line. */
export function statusLine(all: readonly (ServeStatus | null)[]): string {
  return all.map((s, m) => (s ? `m${m} ${s.status}${s.behind ? ' behind' : ''} view ${s.view} leader ${s.leader?.id ?? '-'} batch ${s.appliedBatch ?? '-'}` : `m${m} down`)).join('; ');
}

/** A fault drawn by its weight (one draw of `rng`). */
export function pickFault(rng: Rng): FleetAction {
  let x = rng.next();
  for (const a of FLEET_ACTIONS) {
    x -= WEIGHTS[a];
    if (x < 0) return a;
  }
  return 'kill-leader';
}

/** What a storm does at the driver's steps. */
export interface FaultHooks {
  /** Operations sent to `p` alone; `mustRefuse`: a process that can not reach a majority (an acknowledgement from it is a violation). */
  probe(p: MemberProc, label: string, round: number, mustRefuse: boolean): Promise<void>;
  /** Resolves once the fleet is whole again (as the storm counts it); it calls `restartRetired` on every status it reads. */
  allNormal(): Promise<unknown>;
  /** The fault is dealt (the SIGKILLs delivered, the links cut, the clone started), before the wait for the fleet. */
  dealt?(): void;
  /** A SIGKILLed member's folder is about to be replaced by an old copy (in round `round`). */
  beforeRestore?(round: number): void;
  /** A copy of member `member`'s folder was kept at `dir`. */
  onCopy?(dir: string, member: number, name: string): void;
  /** A clone of member `member` will run from the member folder `dir`. */
  onClone?(dir: string, member: number, name: string): void;
}

export interface FleetFaultsOptions {
  report: Report;
  /** The storm's fault rng: the driver draws from it in the order the storm's seeds expect. */
  rng: Rng;
  /** The fleet of the current run (a fresh one may follow; the copies are kept per fleet). */
  fleet: () => ProcFleet;
  /** How long to wait for a leader (and, in the storm's allNormal, for the fleet) before the round is an error. */
  recoverMs: number;
  /** How long `waitFor` goes on (in all, from its start) while a member is behind or not yet admitted (lateMembers); default recoverMs. */
  catchUpMs?: number;
  /** Progress lines (a fault waiting for members able to serve, a wait extended for a catch-up). */
  log?: (line: string) => void;
  hooks: FaultHooks;
  /** `cut` takes the leader every time (the half-quorum positive control: a broken quorum shows on a cut-off leader at once; a cut-off follower must first lead a view of its own). */
  cutLeader?: boolean;
}

export class FleetFaults {
  private readonly byFleet = new WeakMap<ProcFleet, Map<number, string[]>>();
  /** Why the last `act` left its fault out (fewer than a majority could serve without its target), or null. */
  skipped: string | null = null;

  constructor(private readonly o: FleetFaultsOptions) {}

  private get f(): ProcFleet {
    return this.o.fleet();
  }

  /** The copies kept of each member's folder in the current fleet, for a restore. */
  get copies(): Map<number, string[]> {
    let c = this.byFleet.get(this.f);
    if (!c) this.byFleet.set(this.f, (c = new Map()));
    return c;
  }

  /** SIGKILLs `p` and waits for its exit: a kill of kind `kind` in the report, or a note if it had ended already. */
  sigkill = async (p: MemberProc | null | undefined, kind: string): Promise<void> => {
    if (!p) throw new Error(`no running process to SIGKILL (${kind})`);
    const alive = p.child.exitCode === null && p.child.signalCode === null;
    await this.f.kill(p);
    if (alive && p.child.signalCode === 'SIGKILL') {
      this.o.report.kills++;
      bump(this.o.report.faults, kind);
    } else if (alive) note(this.o.report, `${p.label} ended by ${p.child.signalCode ?? `exit ${p.child.exitCode}`} before its SIGKILL`);
  };

  /** Every member's /fleet/status (null: down or not answering). */
  statusAll = (): Promise<(ServeStatus | null)[]> => {
    const f = this.f;
    return Promise.all(f.procs.map((p) => (p ? f.status(p.api) : null)));
  };

  /**
   * `fn` waited for up to `recoverMs`, and on up to `catchUpMs` (from the start) while a member is
   * behind or not yet admitted (a catch-up by stored rows takes longer than a failover); the
   * timeout's error is led by every member's status.
   */
  waitFor = async <T>(what: string, fn: () => Promise<T | null | false>): Promise<T> => {
    const t0 = Date.now();
    const { recoverMs, catchUpMs = recoverMs } = this.o;
    try {
      try {
        return await this.f.waitFor(what, fn, recoverMs);
      } catch (e) {
        const late = lateMembers(await this.statusAll());
        if (late.length === 0 || catchUpMs <= Date.now() - t0) throw e;
        const say = `a wait for ${what} ran past ${recoverMs / 1000} s with a member behind or not yet admitted: waited on, up to ${catchUpMs / 1000} s`;
        note(this.o.report, say);
        this.o.log?.(`  ${say} (${late.map((m) => `m${m}`).join(', ')})`);
        const r = await this.f.waitFor(what, fn, catchUpMs - (Date.now() - t0));
        bump(this.o.report.stats as Record<string, number>, 'waits that went past the leader timeout for a member behind or not admitted, and ended well');
        return r;
      }
    } catch (e) {
      const lines = (e as Error).message.split('\n');
      throw new Error(`${lines[0]} after ${Math.round((Date.now() - t0) / 1000)} s [${statusLine(await this.statusAll())}]\n${lines.slice(1).join('\n')}`);
    }
  };

  /** The member that leads a majority, waited for (`waitFor`). */
  leader = (): Promise<number> => this.waitFor('a leader', () => this.f.leader());

  /**
   * Whether fault `a` may take `victims(lead)` out of service (lead: the serving leader): once a
   * majority of the fleet can serve without them (ableToServe; a member down or cut off can not),
   * it returns that leader. Else it waits for that, at most ABLE_WAIT_MS, and then leaves the
   * fault out (null; `skipped` says why, and the report counts it). Waiting rather than leaving
   * it out at once keeps the storms' coverage: a restarted member is admitted within seconds and
   * one behind catches up by stored rows within a minute or so, and the fault is then dealt.
   */
  private serviceable = async (a: FleetAction, victims: (lead: number) => number[]): Promise<number | null> => {
    const f = this.f;
    const t0 = Date.now();
    let said = false;
    for (;;) {
      const all = await this.statusAll();
      const able = ableToServe(all).filter((m) => !f.linksOf(m).every((p) => p.isCut)); // a member cut off: every link to and from it cut
      const lead = servingLeader(all);
      const left = lead === null ? [] : able.filter((m) => !victims(lead).includes(m));
      if (lead !== null && left.length > f.n / 2) {
        if (said) {
          bump(this.o.report.stats as Record<string, number>, 'faults delayed until a majority could serve without their target');
          this.o.log?.(`  ${a}: dealt after ${Math.round((Date.now() - t0) / 100) / 10} s (${able.length} of ${f.n} able to serve)`);
        }
        return lead;
      }
      const why = `${lead === null ? 'no leader able to serve' : `${able.length} of ${f.n} members able to serve (${able.map((m) => `m${m}`).join(', ') || 'none'}), ${left.length} without ${victims(lead).map((m) => `m${m}`).join('+') || 'none'}`}: ${statusLine(all)}`;
      if (Date.now() - t0 >= ABLE_WAIT_MS) {
        this.skipped = `${a} left out: no majority able to serve without its target within ${ABLE_WAIT_MS / 1000} s (${why})`;
        bump(this.o.report.stats as Record<string, number>, `faults left out (no majority able to serve without their target within ${ABLE_WAIT_MS / 1000} s)`);
        note(this.o.report, `a fault was left out: fewer than a majority of the fleet could serve without its target for ${ABLE_WAIT_MS / 1000} s`);
        f.note(this.skipped);
        this.o.log?.(`  ${this.skipped}`);
        return null;
      }
      if (!said) {
        said = true;
        f.note(`${a} waits for a majority able to serve without its target`);
        this.o.log?.(`  ${a} waits (up to ${ABLE_WAIT_MS / 1000} s) for a majority able to serve without its target: ${why}`);
      }
      await sleep(250);
    }
  };

  /** Starts members of the current fleet side by side (startMembers). */
  startAll = (ms: number[]): Promise<void> => startMembers(this.f, ms);

  /** The members but `m`. */
  others = (m: number | number[]): number[] => Array.from({ length: this.f.n }, (_, i) => i).filter((i) => (Array.isArray(m) ? !m.includes(i) : i !== m));

  /**
   * A member its clone's admission retired (it may learn so only after the clone is gone) is
   * SIGKILLed and restarted from its folder; returns whether one was (the statuses are then stale).
   * The storms' allNormal call it on every read, so it covers the member whenever it learns.
   */
  restartRetired = async (statuses: readonly (MemberStatus | null)[]): Promise<boolean> => {
    const m = statuses.findIndex((s) => s?.status === 'retired');
    if (m < 0) return false;
    await this.sigkill(this.f.procs[m], 'member SIGKILL (retired by its clone)');
    await this.f.start(m);
    return true;
  };

  /**
   * A copy of a random member's folder for a later restore, taken with the member stopped
   * (SIGSTOP, copy, SIGCONT): the copy is the state a SIGKILL at that instant would leave, every
   * file at one point (a copy taken while it writes could pair files of different moments, a WAL
   * with a database of another).
   */
  keepCopy = (round: number, k: number): void => {
    const f = this.f;
    const m = this.o.rng.int(0, f.n - 1);
    const p = f.procs[m];
    const name = `copy-r${round}-${k}-m${m}`;
    const running = () => p?.child.pid !== undefined && p.child.exitCode === null && p.child.signalCode === null;
    const stopped = running() && signal(p!.child.pid!, 'SIGSTOP');
    let dir: string;
    try {
      dir = f.copyOf(m, name);
    } finally {
      if (stopped) signal(p!.child.pid!, 'SIGCONT');
    }
    this.copies.set(m, [...(this.copies.get(m) ?? []), dir]);
    this.o.hooks.onCopy?.(dir, m, name);
  };

  /** Deals fault `a` (the k-th of the round) and waits for the fleet to be whole again; returns what it did, in a few words. */
  act = async (a: FleetAction, round: number, k: number): Promise<string> => {
    const { rng, hooks } = this.o;
    const f = this.f;
    const dealt = () => hooks.dealt?.();
    this.skipped = null;
    const skip = () => this.skipped!;
    switch (a) {
      case 'kill-leader': {
        await this.leader();
        const lead = await this.serviceable(a, (l) => [l]);
        if (lead === null) return skip();
        await this.sigkill(f.procs[lead], 'member SIGKILL (leader)');
        dealt();
        if (rng.chance(0.7)) {
          await this.waitFor('a new leader', async () => {
            const l = await f.leader();
            return l !== null && l !== lead ? l : null;
          });
        } else await sleep(rng.int(0, 500));
        await f.start(lead);
        await hooks.allNormal();
        return `kill leader m${lead}`;
      }
      case 'kill-follower': {
        const m = rng.pick(this.others(await this.leader()));
        if ((await this.serviceable(a, () => [m])) === null) return skip();
        await this.sigkill(f.procs[m], 'member SIGKILL (follower)');
        dealt();
        await sleep(rng.int(0, 400));
        await f.start(m);
        await hooks.allNormal();
        return `kill follower m${m}`;
      }
      case 'kill-majority': {
        // it takes a majority out by design, all brought back at once: dealt once a majority can serve before it
        await this.leader();
        const lead = await this.serviceable(a, () => []);
        if (lead === null) return skip();
        const rest = this.others(lead);
        const victims = [lead];
        while (victims.length < Math.floor(f.n / 2) + 1) victims.push(rest.splice(rng.int(0, rest.length - 1), 1)[0]!);
        await Promise.all(victims.map((m) => this.sigkill(f.procs[m], 'member SIGKILL (a majority at once)')));
        dealt();
        await sleep(rng.int(0, 500));
        await this.startAll(victims);
        await hooks.allNormal();
        return `kill majority ${victims.map((m) => `m${m}`).join('+')}`;
      }
      case 'cut': {
        const lead0 = await this.leader();
        const first = this.o.cutLeader || rng.chance(0.6) ? lead0 : rng.pick(this.others(lead0));
        const drawn = [first];
        if (f.n >= 5 && rng.chance(0.5)) drawn.push(rng.pick(this.others(drawn)));
        // the leader drawn is the leader when the cut is dealt (it may change while the fault waits)
        const victims = (l: number) => (first === lead0 ? [l, ...drawn.slice(1).filter((m) => m !== l)] : drawn);
        const lead = await this.serviceable(a, victims);
        if (lead === null) return skip();
        const cut = victims(lead);
        for (const m of cut) for (const p of f.linksOf(m)) p.cut();
        dealt();
        f.note(`cut ${cut.map((m) => `m${m}`).join('+')}`);
        bump(this.o.report.faults, 'member cut off (proxy)', cut.length);
        if (cut.includes(lead)) {
          await this.waitFor('a leader on the majority side', async () => {
            const l = await f.leader();
            return l !== null && !cut.includes(l) ? l : null;
          });
        } else await sleep(1500); // past a follower's view-change timeout (1 s), in both storms: the probe reaches a member that knows it is cut off
        await Promise.all(cut.map((m) => hooks.probe(f.procs[m]!, `cut-off m${m}`, round, true)));
        await sleep(rng.int(300, 1000));
        for (const m of cut) for (const p of f.linksOf(m)) p.heal();
        f.note(`healed ${cut.map((m) => `m${m}`).join('+')}`);
        await hooks.allNormal();
        return `cut ${cut.map((m) => `m${m}${m === lead ? ' (leader)' : ''}`).join('+')}`;
      }
      case 'restore': {
        let candidates = [...this.copies.keys()];
        if (candidates.length === 0) {
          this.keepCopy(round, k);
          await sleep(rng.int(800, 2000)); // the load moves on past the copy
          candidates = [...this.copies.keys()];
        }
        const m = rng.pick(candidates);
        const copy = rng.pick(this.copies.get(m)!);
        if ((await this.serviceable(a, () => [m])) === null) return skip();
        await this.sigkill(f.procs[m], 'member SIGKILL (before a restore)');
        dealt();
        hooks.beforeRestore?.(round);
        f.restore(m, copy);
        bump(this.o.report.faults, 'member restored from an old copy of its folder');
        const p = await f.start(m);
        await hooks.probe(p, `restored m${m}`, round, false);
        await hooks.allNormal();
        return `restore m${m} from ${copy.slice(copy.lastIndexOf('/') + 1)}`;
      }
      case 'clone': {
        const lead0 = await this.leader();
        const drawn = rng.chance(0.3) ? lead0 : rng.pick(this.others(lead0));
        const victim = (l: number) => (drawn === lead0 ? l : drawn);
        const lead = await this.serviceable(a, (l) => [victim(l)]);
        if (lead === null) return skip();
        const m = victim(lead);
        const name = `clone-r${round}-${k}`;
        const cloneFleet = f.cloneFolder(m, name);
        hooks.onClone?.(f.memberDir(m, join(f.root, name)), m, `clone of m${m} (${name})`);
        const [api, peer] = [await freeFixedPort(), await freeFixedPort()];
        const clone = await f.start(m, { fleet: cloneFleet, api, peer, label: `clone of m${m}` });
        dealt();
        bump(this.o.report.faults, 'member cloned (a second process from a copy of its folder)');
        for (let i = 0; i < f.n; i++) f.proxies[i]![m]?.retarget(peer);
        f.note(`the clone of m${m} takes its address`);
        await sleep(rng.int(400, 1000));
        await Promise.all([hooks.probe(f.procs[m]!, `m${m} overridden by its clone`, round, true), hooks.probe(clone, `clone of m${m}`, round, false)]);
        await sleep(rng.int(400, 1000));
        for (let i = 0; i < f.n; i++) f.proxies[i]![m]?.retarget(f.peerPorts[m]!);
        await this.sigkill(clone, 'clone SIGKILL');
        await sleep(rng.int(500, 1000));
        // in both storms the member, if the clone's admission retired it, is restarted by allNormal
        // (restartRetired), whenever it learns so: no check of its own here
        await hooks.allNormal();
        return `clone of m${m}${m === lead ? ' (leader)' : ''}`;
      }
    }
  };
}

/** Starts members side by side; every start ends (listening or failed) before the first failure is thrown, so none is started twice. */
export async function startMembers(f: ProcFleet, ms: number[]): Promise<void> {
  const r = await Promise.allSettled(ms.map((m) => f.start(m)));
  const bad = r.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (bad) throw bad.reason;
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false; // gone meanwhile
  }
}

/** Closes a fleet, then SIGKILLs every child process whose command line holds its folder (a member whose start timed out is in no list of the fleet's). */
export async function closeFleet(f: ProcFleet): Promise<void> {
  await f.close();
  for (const pid of childPids(process.pid)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(f.root)) process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** After a failed round: the extra processes (clones) ended, every link healed and pointed back at its member, every member that is down started. */
export async function reviveFleet(f: ProcFleet): Promise<void> {
  for (const p of f.extra) await f.kill(p);
  f.proxies.forEach((row) => row.forEach((p, j) => {
    p?.heal();
    p?.retarget(f.peerPorts[j]!);
  }));
  for (let m = 0; m < f.n; m++) if (!f.procs[m] || f.procs[m]!.child.exitCode !== null || f.procs[m]!.child.signalCode !== null) await f.start(m);
}
