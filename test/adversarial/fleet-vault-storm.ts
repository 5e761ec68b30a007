/**
 * Fleet vault storm: rounds of escrow load on a real fleet of member processes on loopback that
 * serve the vault (`bkv serve --fleet ... --member I`, docs/fleet-vault.md "The vault in the member
 * process"; 3 members, some fleets 5), each member reaching each other through a TCP proxy the
 * storm controls (test/helpers/fleet-procs.ts), while the round injects the faults both fleet
 * storms share (lib/fleet-faults.ts, with the meanings it gives): kill-leader, kill-follower,
 * kill-majority, cut, restore, clone. Half of them (option `quiet`) are quiet: the load pauses
 * from the moment the fault is dealt until the fleet is whole again.
 *
 * The fleet is one vault seen through several URLs, so the single vault's ledger holds it
 * (lib/ledger.ts): clients (lib/flows.ts VaultClient over the SDK's HTTP relay on every member's
 * URL, identity KSF, the fast suite and sealer, so the CPU goes to the fleet) register new
 * records, recover with the right and with a wrong password, and ask for Status. A request every
 * member refused before its device saw it (421 NOT_LEADER, 503 NOT_READY, a connection never
 * made: client/vault-members.ts `notTaken`) charged nothing and is sent again; any other failure
 * of a charging request leaves its outcome unknown, and the ledger's bounds allow both. What the
 * fleet adds to the single vault's bounds (docs/fleet-vault.md "What the host of a member runs"):
 * a second step that reaches a member without the first's state is answered UnknownSession or
 * UnknownStage (the login's guess stays charged: KE2 received, KE3 lost); a majority re-form may
 * commit a LoginStart a survivor held pending (an unanswered LoginStart: charged or not).
 * Registrations ask for standard guess pacing (a fleet's floor), and the load keeps at most 2
 * wrong guesses between successes so that pacing (3 free guesses) rarely stands in the way; a
 * LoginStart it refuses (RetryLater) charged nothing and says the attempts remaining.
 *
 * Probes: while a member is cut off, or overridden by its clone, a wrong login and a registration
 * sent to it alone must not be acknowledged (no KE2, no Registered): it can not reach a majority.
 * A restored member and a clone are probed too (their answers go to the ledger like any other).
 *
 * After every round the load stops and the fleet settles: a leader, every running member normal
 * under it and at its applied batch, except members `behind` (restored from a copy older than the
 * batches the others keep: they wait for a catch-up by stored rows; the storm does not wait for
 * it, but probes them: a behind member must acknowledge nothing). Then the ledger is checked
 * through the fleet: Status of every record, a recovery of every record touched in the round and
 * of a sample of the others (of all in a fleet's last round); and every member's store (SQLite
 * vault.db in its folder) holds the same blob for every record as every other member at the same
 * applied batch. Violations: a registration acknowledged and not recoverable, attempts outside the
 * bounds (a refunded guess, or one charged twice), a key released to a wrong password, an
 * acknowledgement by a member that could not reach a majority, stores that disagree at the same
 * applied batch. A round that can not run (a fleet that does not start or come back in time) is
 * an error in the report, with its seed, round and every member's status. Before each fault the
 * driver checks that a majority can serve without its target (lib/fleet-faults.ts: it waits up to
 * a minute, else leaves the fault out, in the report's stats); a wait for the fleet that runs past
 * RECOVER_MS while a member is behind or not yet admitted goes on up to CATCH_UP_MS.
 *
 *   npx tsx test/adversarial/fleet-vault-storm.ts --rounds N [--seed S] [--members 3|5] [--clients C]
 *       [--actions kill-leader,cut,...] [--broken RULE]
 *
 * `--actions`: every round's faults, in order (default drawn by the seed, `--actions ''`: none).
 * Positive controls only: `--control restore-all` puts every member back to a copy of a few
 * seconds before (a rollback of the whole fleet, outside the trust model): the storm must report
 * refunded guesses or lost registrations; `--broken RULE`: the members run with a broken rule
 * (BKV_FLEET_BROKEN_RULE, enclave/fleet/core.ts).
 * Exit 1 on a violation or an error.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Relay } from '../../client/escrow.ts';
import { fastSealRequest } from '../../client/e2e-seal-node.ts';
import { httpRelay } from '../../client/http-relay.ts';
import { VaultHttpError, VaultMembersError } from '../../client/vault-errors.ts';
import { notTaken } from '../../client/vault-members.ts';
import { Handling, faultName } from '../../enclave/api/codes.ts';
import { PACING } from '../../enclave/api/pacing.ts';
import { mintToken, readIssuerPrivate, type IssuerPrivate } from '../../host/auth/issuer.ts';
import { readVaultKeyFile } from '../../host/cli/io.ts';
import { VAULT_KEY_FILE } from '../../host/fleet/member-host.ts';
import { ProcFleet, type MemberProc } from '../helpers/fleet-procs.ts';
import { Rng, bump, isMain, newReport, note, parseArgs, runMain, sleep, te } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { FLEET_ACTIONS, FleetFaults, closeFleet, pickFault, reviveFleet, servingLeader, startMembers, type FleetAction, type FleetStormKnobs, type ServeStatus } from './lib/fleet-faults.ts';
import { TokenBook, VaultClient, describe, hex, type LoginOutcome } from './lib/flows.ts';
import type { ClientResponse } from '../../enclave/api/messages.ts';
import { Ledger, driveLoad, type Entry, type LoadStats } from './lib/ledger.ts';

/** How long the storm waits for a fleet to come back (a leader, every member normal) before it calls the round an error. */
const RECOVER_MS = 45_000;
/** How long such a wait goes on (in all) while a member is behind (a catch-up by stored rows) or not yet admitted (lib/fleet-faults.ts waitFor). */
const CATCH_UP_MS = 120_000;
/** A client's wait for one answer (a leader whose batch no majority takes answers 503 UNAVAILABLE after 10 s). */
const CLIENT_TIMEOUT_MS = 15_000;
/** Attempt limit of every record; wrong guesses only while at least LIMIT - 1 remain (at most 2 between successes: pacing's 3 free guesses). */
const LIMIT = 10;
/** Extra arguments of every member: no request rate limits (the load asks the same records often, all from one address). */
const MEMBER_ARGS = ['--record-limit', 'off', '--address-limit', 'off'];

export interface FleetVaultStormOptions extends FleetStormKnobs {
  /** Faults of every round, in this order (default: 2..5 drawn by weight). */
  actions?: readonly FleetAction[];
  /**
   * A positive control only: `restore-all` ends every round's faults by restoring every member at
   * once from copies taken a few seconds earlier (SIGKILL all, put the copies back, start all): a
   * rollback of the whole fleet, NVRAM files included, which the trust model leaves out (the fleet
   * majority is trusted) and which must read as refunded guesses and lost registrations.
   */
  control?: 'restore-all';
  /**
   * How likely a fault is quiet (default 0.5): the load's clients wait from its SIGKILL or cut
   * until the fleet is whole again. A member down or cut off while more batches commit than the
   * members keep behind their commit point (32) comes back `behind` until it has caught up by
   * stored rows copied from another member; until then it can not serve, and a fault that would
   * leave fewer than a majority able to serve waits for it, or is left out with the round's other
   * faults (lib/fleet-faults.ts `serviceable`). Quiet faults let a round deliver all of its faults sooner.
   */
  quiet?: number;
}

/** Tokens of the fleet's issuer (DIR/auth/issuer.key, `bkv fleet init`'s development issuer), per record id, reused for 5 minutes. */
class IssuerTokens extends TokenBook {
  private readonly mine = new Map<string, { bytes: Promise<Uint8Array>; atMs: number }>();
  constructor(private readonly issuer: IssuerPrivate) {
    super();
  }
  override bytes(recordId: Uint8Array): Promise<Uint8Array> {
    const k = hex(recordId);
    const now = Date.now();
    const t = this.mine.get(k);
    if (t && now - t.atMs < 300_000) return t.bytes;
    const bytes = mintToken(this.issuer, { subject: new TextDecoder().decode(recordId), ttlS: 600 }).then((s) => new TextEncoder().encode(s));
    this.mine.set(k, { bytes, atMs: now });
    return bytes;
  }
}

/** Whether every member a request went to refused it before its device saw it (nothing charged). */
function refusedUnseen(e: unknown): boolean {
  if (e instanceof VaultMembersError) return e.attempts.every((a) => notTaken(a.error, false));
  return notTaken(e, false);
}

/** `inner`, sending a request again (after a pause) while every member refused it unseen, for at most `ms`. */
function patient(inner: Relay, ms: number): Relay {
  return async (recordId, message, meta) => {
    const end = Date.now() + ms;
    for (;;) {
      try {
        return await inner(recordId, message, meta);
      } catch (e) {
        if (Date.now() > end || !refusedUnseen(e)) throw e;
        await sleep(250);
      }
    }
  };
}

/** One fleet's run: its processes, the vault's ledger and client (the copies of folders kept for a restore are the driver's: lib/fleet-faults.ts). */
interface VaultRun {
  f: ProcFleet;
  name: string;
  roundsLeft: number;
  ledger: Ledger;
  /** A client on every member's URL. */
  client: VaultClient;
  /** A client that asks only `url`, once (probes). */
  only: (url: string) => VaultClient;
  urls: string[];
  /** The load's requests wait while true (a quiet restart: lib comment at `quiet`). */
  paused: boolean;
}

/** What a member's store holds: record id (hex) to blob (hex), or the reason it can not be read. */
function storeOf(dir: string): Map<string, string> | string {
  const file = join(dir, 'vault.db');
  if (!existsSync(file)) return 'no vault.db';
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT record_id, blob FROM records WHERE partition = 0').all() as { record_id: Buffer; blob: Buffer }[];
      return new Map(rows.map((r) => [r.record_id.toString('hex'), r.blob.toString('hex')]));
    } finally {
      db.close();
    }
  } catch (e) {
    return (e as Error).message;
  }
}

export async function fleetVaultStorm(o: FleetVaultStormOptions): Promise<Report> {
  const seed = o.seed ?? Date.now() % 1e9;
  const rng = new Rng(seed);
  /** Choices whose number depends on the records there are (probe targets, the verified sample): apart, so the faults follow the seed alone. */
  const side = new Rng((seed ^ 0x5bd1e995) >>> 0);
  const log = o.log ?? (() => undefined);
  const report = newReport(`fleet vault storm (${o.rounds} rounds, ${o.members ? `${o.members} members` : '3 or 5 members'}, seed ${seed}${o.broken ? `, BROKEN RULE ${o.broken}` : ''}${o.control ? `, POSITIVE CONTROL ${o.control}` : ''})`);
  const stats = report.stats as Record<string, number>;
  const t0 = performance.now();
  const clients = o.clients ?? 3;
  let run: VaultRun | null = null;
  let fleets = 0;
  let failedInARow = 0;
  const load: LoadStats = { ops: 0, unknown: 0, byKind: {} };
  let statuses = 0;
  let acknowledged = 0;
  const sizes: Record<string, number> = {};
  const where = (round: number) => `seed ${seed} round ${round}${run ? ` (${run.name})` : ''}`;

  /**
   * A wrong login on a record with guesses to spare and a registration of a new record, sent to
   * `p` alone; `mustRefuse`: a process that can not reach a majority (a KE2 or a Registered from
   * it is a violation). Every answer goes to the ledger.
   */
  const probe = async (p: MemberProc, label: string, round: number, mustRefuse: boolean): Promise<void> => {
    const r = run!;
    const c = r.only(p.api);
    const free = r.ledger.entries.filter((e) => e.state === 'registered' && !e.busy && e.lo >= LIMIT - 1);
    const jobs: Promise<void>[] = [];
    const take = (e: Entry, job: (e: Entry) => Promise<boolean>) => {
      e.busy = true;
      jobs.push(
        job(e)
          .then((acked) => {
            if (!acked) return;
            if (mustRefuse) report.violations.push(`${where(round)}: ${label} acknowledged an operation on [${e.name}] while it could not reach a majority`);
            else bump(stats, 'probes acknowledged by a restored member or a clone');
          })
          .finally(() => (e.busy = false)),
      );
    };
    const kind = label.replace(/ ?m\d+ ?/g, ' ').trim();
    const answered = (op: string, o: { start?: ClientResponse; finish?: ClientResponse; unknownAt?: string; error?: unknown }) =>
      bump(stats, `probe answers (${kind}, ${op}): ${o.unknownAt ? `no answer (${o.error instanceof VaultHttpError ? `${o.error.status} ${o.error.code}` : (o.error as Error)?.name})` : outcome(o as LoginOutcome)}`);
    if (free.length) take(side.pick(free), async (e) => {
      const o = await c.login(e.id, te.encode(`wrong-${randomBytes(4).toString('hex')}`));
      // refused before any device saw it (421, 503 NOT_READY): nothing charged, nothing for the ledger
      if (!(o.unknownAt === 'LoginStart' && refusedUnseen(o.error))) r.ledger.applyLogin(e, o, false);
      answered('wrong login', o);
      return o.start?.type === 'LoginStarted';
    });
    take(r.ledger.newEntry(), async (e) => {
      const o = await r.ledger.register(c, e);
      answered('registration', o);
      return o.registered;
    });
    bump(report.faults, 'operations sent to a cut-off, restored, cloned or behind process', jobs.length);
    await Promise.all(jobs);
  };

  /**
   * Every running primary normal under one leader, or behind (restored from a copy older than the
   * log keeps). A member retired by its clone's admission is restarted (lib/fleet-faults.ts restartRetired).
   * Waited for as lib/fleet-faults.ts `waitFor` says: RECOVER_MS, CATCH_UP_MS while a member is
   * behind or not yet admitted; its error names every member's status.
   */
  const allNormal = () => faults.waitFor('every member normal under one leader (or behind)', async () => {
    const all = await faults.statusAll();
    if (await faults.restartRetired(all)) return null;
    const lead = servingLeader(all);
    if (lead === null) return null;
    return all.every((s) => s !== null && (s.behind || (s.status === 'normal' && s.leader?.id === lead))) ? all : null;
  });
  /** Whether the fault being dealt is quiet (drawn by `act`): the load then waits from the moment it is dealt. */
  let quiet = false;
  const faults: FleetFaults = new FleetFaults({
    report,
    rng,
    fleet: () => run!.f,
    recoverMs: RECOVER_MS,
    catchUpMs: CATCH_UP_MS,
    log,
    hooks: {
      probe,
      allNormal,
      dealt: () => void (run!.paused = quiet),
    },
  });

  /** The positive control `restore-all`: copies of every member at one moment, load, then every member put back to its copy. */
  const restoreAll = async (round: number, k: number): Promise<string> => {
    const f = run!.f;
    // copies of a quiet fleet (the load waits, every member at one batch), so that every copy boots
    run!.paused = true;
    await settle();
    const pids = f.procs.map((p) => p?.child.pid).filter((x): x is number => x !== undefined);
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    let copies: string[];
    try {
      copies = Array.from({ length: f.n }, (_, m) => f.copyOf(m, `all-r${round}-${k}-m${m}`));
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
      run!.paused = false;
    }
    await sleep(5000); // the load moves on past the copies
    await Promise.all(f.procs.map((p) => faults.sigkill(p, 'member SIGKILL (before the whole fleet is restored: positive control)')));
    for (let m = 0; m < f.n; m++) f.restore(m, copies[m]!);
    bump(report.faults, 'every member restored from copies of one moment (positive control)');
    await faults.startAll(Array.from({ length: f.n }, (_, i) => i));
    await allNormal();
    return 'every member restored from copies taken 5 s earlier (positive control)';
  };

  /** Fault `a` (lib/fleet-faults.ts), quiet or not by a draw (option `quiet`): a quiet fault pauses the load from the moment it is dealt until the fleet is whole. */
  const act = async (a: FleetAction, round: number, k: number): Promise<string> => {
    quiet = rng.chance(o.quiet ?? 0.5);
    try {
      const did = await faults.act(a, round, k);
      return faults.skipped ? did : `${did}${quiet ? ' (quiet)' : ''}`;
    } finally {
      // a fault left out was not dealt: not a quiet one
      if (quiet && !faults.skipped) bump(stats, 'quiet faults (the load waits until the fleet is whole)');
      quiet = false;
      run!.paused = false;
    }
  };

  /**
   * A leader, every running member normal under it at its applied batch, except those behind (the
   * storm does not wait for a catch-up by stored rows). A member its clone's admission retired
   * (it may learn so only after the last fault) is restarted, as in allNormal. Returns the statuses.
   */
  const settle = async (): Promise<ServeStatus[]> => {
    return faults.waitFor('a leader, every member at its applied batch (or behind)', async () => {
      const all = await faults.statusAll();
      if (await faults.restartRetired(all)) return null;
      if (all.some((s) => s === null)) return null;
      const ok = all as ServeStatus[];
      const l = servingLeader(ok);
      const lead = ok.find((s) => s.member === l);
      if (!lead) return null;
      return ok.every((s) => s.behind || (s.status === 'normal' && s.leader?.id === lead.member && s.appliedBatch === lead.appliedBatch)) ? ok : null;
    });
  };

  /** Status of every record, recovery of those `recover` picks, through the fleet; violations as lib/ledger.ts says. */
  const verify = async (recover: (e: Entry) => boolean): Promise<void> => {
    const r = run!;
    const todo = r.ledger.entries.filter((e) => e.state !== 'absent');
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const e = todo[next++]!;
        const again = await verifyOne(r, e, recover(e) || e.state === 'maybe');
        e.touched = again;
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    for (const e of r.ledger.entries) if (e.state === 'absent') e.touched = false;
  };

  /** Returns whether the record stays to be recovered next round (its pacing refused the login). */
  const verifyOne = async (r: VaultRun, e: Entry, recover: boolean): Promise<boolean> => {
    const l = r.ledger;
    let st = await r.client.status(e.id);
    // Status charges nothing: asked again after any failure (a view change in between)
    for (let k = 0; k < 6 && !st.ok; k++) {
      await sleep(500);
      st = await r.client.status(e.id);
    }
    if (!st.ok) {
      l.violation(e, `Status got no answer from the settled fleet: ${describe(st.error)}`);
      return false;
    }
    statuses++;
    if (e.state === 'maybe') {
      if (st.res.type === 'NotRegistered') {
        e.state = 'absent';
        bump(stats, 'unacknowledged registrations that did not land');
        return false;
      }
      if (!l.check(st.res.type === 'StatusResult', e, `Status of an unacknowledged registration answered ${st.res.type}`)) return false;
      bump(stats, 'unacknowledged registrations that landed');
      e.state = 'registered';
      e.lo = e.hi = e.limit;
    }
    if (st.res.type !== 'StatusResult') {
      l.violation(e, `an acknowledged registration is gone: Status answered ${st.res.type}${st.res.type === 'Fault' ? ` ${faultName(st.res.code)}` : ''}`);
      return false;
    }
    const rem = st.res.attemptsRemaining;
    l.check((st.res.registered === 1 && st.res.locked === 0) || e.lo === 0, e, `Status: registered=${st.res.registered} locked=${st.res.locked} with ${e.lo}..${e.hi} remaining`);
    l.check(rem <= e.hi, e, `attempts remaining ${rem}, above the ledger's bound ${e.hi}: a refunded guess`);
    l.check(rem >= e.lo, e, `attempts remaining ${rem}, below the ledger's bound ${e.lo}: a guess charged that no acknowledged login asked for`);
    e.lo = e.hi = rem;
    if (!recover) return false;
    const seen: string[] = [];
    for (let k = 0; k < 4; k++) {
      if (e.lo === 0) {
        note(report, 'a record had no guess left to verify its password with (unanswered logins may all have landed)');
        return false;
      }
      const out = await r.client.login(e.id, e.password);
      l.applyLogin(e, out, true);
      seen.push(outcome(out));
      if (out.key) return false;
      if (out.start?.type === 'RetryLater') {
        bump(stats, 'recoveries deferred by the record\'s pacing (checked in a later round)');
        return true;
      }
      const lost = out.finish?.type === 'Fault' && (out.finish.code === Handling.UnknownSession || out.finish.code === Handling.SessionExpired);
      if (!lost && !out.unknownAt) break;
      bump(stats, 'verifying logins started again (session lost or no answer)');
      await sleep(500);
    }
    l.violation(e, `an acknowledged registration does not recover with its password through the settled fleet (${seen.join('; ')})`);
    return false;
  };

  /** Members at the same applied batch (not behind) hold the same blob for every record. */
  const compareStores = (round: number, all: ServeStatus[]): void => {
    const f = run!.f;
    const byBatch = new Map<number, number[]>();
    for (const s of all) if (!s.behind && s.appliedBatch !== undefined) byBatch.set(s.appliedBatch, [...(byBatch.get(s.appliedBatch) ?? []), s.member]);
    for (const [batch, ms] of byBatch) {
      if (ms.length < 2) continue;
      const stores = ms.map((m) => storeOf(f.memberDir(m)));
      const base = stores[0]!;
      for (let i = 1; i < ms.length; i++) {
        const s = stores[i]!;
        if (typeof base === 'string' || typeof s === 'string') {
          note(report, `a member's store could not be read for the comparison (${typeof base === 'string' ? base : s})`);
          continue;
        }
        report.checks++;
        const diff = [...new Set([...base.keys(), ...s.keys()])].filter((k) => base.get(k) !== s.get(k));
        if (diff.length) report.violations.push(`${where(round)}: m${ms[0]} and m${ms[i]} are both at applied batch ${batch} and their stores disagree on ${diff.length} record(s) (first ${diff[0]!.slice(0, 16)}…)`);
      }
      bump(stats, 'store comparisons (members at one applied batch)', ms.length - 1);
    }
  };

  const check = async (round: number): Promise<void> => {
    const all = await settle();
    const behind = all.filter((s) => s.behind).map((s) => s.member);
    bump(stats, 'members found behind after a round', behind.length);
    for (const m of behind) await probe(run!.f.procs[m]!, `behind m${m}`, round, true);
    // a behind member serves again only once it has caught up by stored rows (docs/fleet-vault.md),
    // which the storm does not wait for: a fresh fleet follows, so no later round runs a member short
    if (behind.length) run!.roundsLeft = 0;
    await verify((e) => e.touched || side.chance(0.1) || run!.roundsLeft <= 0);
    // the verification's own operations moved the batches: the members settle again before their stores are compared
    compareStores(round, await settle());
  };

  const closeRun = async () => {
    if (!run) return;
    acknowledged += run.ledger.registered().length;
    await closeFleet(run.f);
    run = null;
  };

  const newRun = async (n: number, name: string): Promise<VaultRun> => {
    const f = await ProcFleet.create(n, o.broken ? { BKV_FLEET_BROKEN_RULE: o.broken } : {}, { vault: true, args: MEMBER_ARGS });
    try {
      await startMembers(f, Array.from({ length: n }, (_, i) => i));
      await f.waitFor('vault-key.pub', async () => existsSync(join(f.root, VAULT_KEY_FILE)), RECOVER_MS);
      const pinned = readVaultKeyFile(join(f.root, VAULT_KEY_FILE));
      const tokens = new IssuerTokens(readIssuerPrivate(join(f.root, 'auth', 'issuer.key')));
      const seal = fastSealRequest(pinned.enclavePublicKey);
      const urls = f.apiPorts.map((p) => `http://127.0.0.1:${p}`);
      const r: VaultRun = { f, name, roundsLeft: o.roundsPerFleet ?? rng.int(2, 4), ledger: new Ledger(report, `fv${fleets}`, { limit: LIMIT }), client: null!, only: null!, urls, paused: false };
      const gated: Relay = async (...a) => {
        while (r.paused) await sleep(50);
        return inner(...a);
      };
      const inner = patient(httpRelay({ baseUrl: urls, enclavePublicKey: pinned.enclavePublicKey, timeoutMs: CLIENT_TIMEOUT_MS }), 20_000);
      const first = await VaultClient.create(gated, pinned.enclavePublicKey, tokens, seal);
      first.registerPacing = PACING.standard;
      r.client = first;
      r.only = (url) => {
        const c = new VaultClient(httpRelay({ baseUrl: url, enclavePublicKey: pinned.enclavePublicKey, timeoutMs: CLIENT_TIMEOUT_MS }), pinned.enclavePublicKey, first.suite, tokens, seal);
        c.registerPacing = PACING.standard;
        return c;
      };
      return r;
    } catch (e) {
      await f.close();
      throw e;
    }
  };

  try {
    for (let round = 1; round <= o.rounds; round++) {
      const rt = performance.now();
      const killsBefore = report.kills;
      const violationsBefore = report.violations.length;
      let stop = false;
      let loading: Promise<LoadStats> | null = null;
      let statusLoop: Promise<void> | null = null;
      const stopLoad = async () => {
        stop = true;
        if (run) run.paused = false;
        const st = await loading;
        await statusLoop;
        loading = statusLoop = null;
        if (st) {
          load.ops += st.ops;
          load.unknown += st.unknown;
          for (const [k, v] of Object.entries(st.byKind)) bump(load.byKind, k, v);
        }
      };
      const done: string[] = [];
      try {
        if (!run || run.roundsLeft <= 0) {
          await closeRun();
          const n = o.members ?? (rng.chance(0.3) ? 5 : 3);
          fleets++;
          const name = `fleet ${fleets} of ${n}`;
          try {
            run = await newRun(n, name);
            await allNormal();
          } catch (e) {
            throw new Error(`the fleet did not start: ${(e as Error).message}`);
          }
          bump(sizes, `${n} members`);
        }
        const r = run!;
        r.roundsLeft--;
        const loadRng = new Rng((seed ^ (round * 0x9e3779b1)) >>> 0);
        loading = driveLoad(r.ledger, r.client, { rng: loadRng, concurrency: clients, stop: () => stop, keep: LIMIT - 1 });
        statusLoop = (async () => {
          while (!stop) {
            const free = r.ledger.entries.filter((e) => e.state === 'registered' && !e.busy);
            if (free.length) {
              const e = loadRng.pick(free);
              e.busy = true;
              try {
                const st = await r.client.status(e.id);
                if (st.ok && st.res.type === 'StatusResult') {
                  const rem = st.res.attemptsRemaining;
                  if (r.ledger.check(rem >= e.lo && rem <= e.hi, e, `Status says ${rem} remaining under load, the ledger allows ${e.lo}..${e.hi}${rem > e.hi ? ' (a refunded guess)' : ''}`)) e.lo = e.hi = rem;
                  else [e.lo, e.hi] = [Math.min(e.lo, rem), Math.max(e.hi, rem)];
                  statuses++;
                } else if (st.ok && st.res.type === 'NotRegistered') r.ledger.violation(e, 'Status under load says an acknowledged registration is not registered');
              } finally {
                e.busy = false;
              }
            }
            await sleep(loadRng.int(30, 150));
          }
        })();
        await sleep(rng.int(800, 1600));
        if (rng.chance(0.5)) faults.keepCopy(round, 0);
        const plan: FleetAction[] = o.actions ? [...o.actions] : Array.from({ length: rng.int(2, 5) }, () => pickFault(rng));
        for (let k = 0; k < plan.length; k++) {
          done.push(`${plan[k]} (did not finish)`);
          done[done.length - 1] = await act(plan[k]!, round, k + 1);
          // a fault left out (lib/fleet-faults.ts serviceable: no majority able to serve without
          // its target within a minute): the fleet stays short, the round's other faults too
          if (faults.skipped) {
            if (k + 1 < plan.length) {
              bump(stats, 'faults left out (after one was: the fleet short of members able to serve)', plan.length - k - 1);
              done.push(`${plan.length - k - 1} more fault(s) left out`);
            }
            break;
          }
          if (rng.chance(0.3)) faults.keepCopy(round, k + 1);
          await sleep(rng.int(100, 600));
        }
        if (o.control === 'restore-all') done.push(await restoreAll(round, plan.length + 1));
        await stopLoad();
        await check(round);
        failedInARow = 0;
      } catch (e) {
        if (loading) await stopLoad();
        const msg = (e as Error).message.split('\n').slice(0, 30).join('\n    ');
        report.errors.push(`${where(round)}, after [${done.join('; ')}]: ${msg}`);
        // The fleet gets one chance to come back (links healed, members that are down started),
        // then the ledger checks it as after any round; a fleet that does not is closed.
        if (run) {
          const f = run.f;
          try {
            await reviveFleet(f);
            run.roundsLeft = 0;
            await check(round);
          } catch (x) {
            report.errors.push(`${where(round)}: the fleet did not come back: ${(x as Error).message.split('\n')[0]}`);
          }
        }
        await closeRun();
        if (++failedInARow >= 3) {
          report.errors.push(`${where(round)}: stopped after 3 rounds in a row failed`);
          break;
        }
      }
      // the ledger's violations name the record: here they get the seed and round
      for (let i = violationsBefore; i < report.violations.length; i++) if (!report.violations[i]!.startsWith('seed ')) report.violations[i] = `${where(round)}: ${report.violations[i]}`;
      log(`round ${round}/${o.rounds} (${run?.name ?? 'fleet closed'}): ${done.join('; ') || 'no fault'}; SIGKILLs ${report.kills - killsBefore} (${report.kills} so far), records ${run?.ledger.registered().length ?? '-'}, ${Math.round(performance.now() - rt)} ms, violations ${report.violations.length - violationsBefore}`);
      o.progress?.(report, round);
    }
  } finally {
    await closeRun();
  }
  report.stats['fleets'] = `${fleets} (${Object.entries(sizes).map(([k, v]) => `${v} of ${k}`).join(', ')})`;
  report.stats['operations (register, right login, wrong login)'] = `${load.ops} (${['register', 'right', 'wrong'].map((k) => load.byKind[k] ?? 0).join(', ')})`;
  report.stats['operations without an answer (outcome unknown)'] = load.unknown;
  report.stats['Status answers checked'] = statuses;
  report.stats['acknowledged registrations at the ends of the fleets'] = acknowledged;
  report.stats['seconds'] = Math.round((performance.now() - t0) / 100) / 10;
  if (load.ops - load.unknown <= 0 && o.rounds > 0) report.violations.push(`seed ${seed}: no operation was answered in ${o.rounds} rounds: the storm checked nothing`);
  return report;
}

/** A login's outcome in a line: each step's answer or the failure that stood for it. */
function outcome(o: LoginOutcome): string {
  const ans = (r: ClientResponse | undefined) => (r ? (r.type === 'Fault' ? `Fault ${faultName(r.code)}` : r.type) : '-');
  return `${ans(o.start)}/${ans(o.finish)}${o.unknownAt ? ` no answer to ${o.unknownAt}${o.error ? `: ${describe(o.error)}` : ''}` : ''}`;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['rounds', 'seed', 'members', 'clients', 'actions', 'broken', 'control']);
    const control = a.get('control');
    if (control !== undefined && control !== 'restore-all') throw new Error('--control must be restore-all');
    const members = a.get('members') === undefined ? undefined : a.num('members', 3);
    if (members !== undefined && members !== 3 && members !== 5) throw new Error('--members must be 3 or 5');
    const actions = a.get('actions')?.split(',').filter((x) => x !== '');
    const unknown = actions?.filter((x) => !(FLEET_ACTIONS as readonly string[]).includes(x));
    if (unknown?.length) throw new Error(`--actions: no fault ${unknown.join(', ')} (${FLEET_ACTIONS.join(', ')})`);
    return fleetVaultStorm({
      rounds: a.num('rounds', 4),
      seed: a.get('seed') === undefined ? undefined : a.num('seed', 1),
      members: members as 3 | 5 | undefined,
      clients: a.num('clients', 3),
      ...(actions && { actions: actions as FleetAction[] }),
      ...(a.get('broken') !== undefined && { broken: a.get('broken') }),
      ...(control !== undefined && { control }),
      log: (l) => console.log(l),
    });
  });
}
