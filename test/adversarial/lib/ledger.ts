/**
 * The driver's ledger of what the vault acknowledged, and the invariants checked against it
 * after every fault:
 *
 *   - every acknowledged registration recovers with its password (and the released key is the
 *     one registered);
 *   - attempts remaining never rise above what the ledger allows (no guess refunded), and never
 *     fall below it (no guess charged that no login asked for);
 *   - nothing is released without a KE3 that verifies, and nothing corrupt is accepted.
 *
 * Operations on one record are serialized by the driver (a record is "busy" while one runs), so
 * each record's history is a sequence and the bounds are exact where the answers are known:
 *
 *   registration acknowledged          [L, L]
 *   KE2 received, attemptsRemaining r  [r, r]     (checked first to be within [lo-1, hi-1])
 *   LoginStart unanswered              [lo-1, hi]  (charged or not)
 *   recovered (valid KE3 answered)     [L, L]
 *   valid KE3 unanswered               [lo, L]     (reset or not)
 *   WrongPassword r                    [r, r]     (checked to be within [lo, hi])
 *   RetryLater r (pacing, no charge)   [r, r]     (checked to be within [lo, hi])
 *
 * A registration whose finish got no answer is "maybe": after the next restart the vault says
 * whether it landed, and if it did it must recover like any other.
 */
import { randomBytes } from 'node:crypto';
import { Handling, faultName } from '../../../enclave/api/codes.ts';
import type { ClientResponse } from '../../../enclave/api/messages.ts';
import type { Report } from './common.ts';
import { Rng, bump, note, sleep, te } from './common.ts';
import type { LoginOutcome, RegisterOutcome, VaultClient } from './flows.ts';
import { describe, sameBytes } from './flows.ts';

export type EntryState = 'registered' | 'maybe' | 'absent';

export interface Entry {
  id: Uint8Array;
  name: string;
  password: Uint8Array;
  backupKey: Uint8Array;
  limit: number;
  state: EntryState;
  /** Bounds on attempts remaining. */
  lo: number;
  hi: number;
  busy: boolean;
  /** Operated on since the last verification. */
  touched: boolean;
}

export interface LedgerOptions {
  /** Attempt limit of new registrations (default 10). */
  limit?: number;
  /** Integrity faults (rollback detected, a record that does not open) are violations (default true). */
  integrityIsViolation?: boolean;
}

export class Ledger {
  readonly entries: Entry[] = [];
  private n = 0;
  readonly limit: number;
  integrityIsViolation: boolean;
  /** Answers by type, faults by name. */
  readonly answers: Record<string, number> = {};
  /** Operations whose outcome stayed unknown (no answer), by message. */
  readonly unknown: Record<string, number> = {};
  /** Called when the vault acknowledges a write to a record (a registration, a charged guess, a reset). */
  onAck?: (e: Entry) => void;

  constructor(
    readonly report: Report,
    readonly tag: string,
    opts: LedgerOptions = {},
  ) {
    this.limit = opts.limit ?? 10;
    this.integrityIsViolation = opts.integrityIsViolation ?? true;
  }

  violation(e: Entry | null, msg: string): void {
    this.report.violations.push(`${e ? `[${e.name}] ` : ''}${msg}`);
  }

  check(ok: boolean, e: Entry | null, msg: string): boolean {
    this.report.checks++;
    if (!ok) this.violation(e, msg);
    return ok;
  }

  newEntry(): Entry {
    const name = `${this.tag}-${this.n++}-${randomBytes(4).toString('hex')}`;
    const e: Entry = {
      id: te.encode(name),
      name,
      password: te.encode(`pw-${randomBytes(8).toString('hex')}`),
      backupKey: new Uint8Array(randomBytes(32)),
      limit: this.limit,
      state: 'absent',
      lo: 0,
      hi: 0,
      busy: false,
      touched: true,
    };
    this.entries.push(e);
    return e;
  }

  registered(): Entry[] {
    return this.entries.filter((e) => e.state === 'registered');
  }

  private seen(res: ClientResponse | undefined): void {
    if (!res) return;
    const key = res.type === 'Fault' ? `Fault:${faultName(res.code)}` : res.type;
    bump(this.answers, key);
  }

  /** A fault answer: integrity faults are violations when so configured; others are counted. */
  private fault(e: Entry, res: ClientResponse, where: string): void {
    if (res.type !== 'Fault') return;
    const integrity = res.code >= 2200 && res.code < 2300;
    if (integrity && this.integrityIsViolation) this.violation(e, `${where}: the vault answered ${faultName(res.code)} (a state it refuses after a fault)`);
  }

  // ---- applying outcomes ----

  applyRegister(e: Entry, o: RegisterOutcome): void {
    e.touched = true;
    this.seen(o.start);
    this.seen(o.finish);
    if (o.unknownAt === 'RegisterFinish') {
      bump(this.unknown, 'RegisterFinish');
      // Only a fresh id is registered by the driver, so "maybe" is: this registration or nothing.
      if (e.state === 'absent') e.state = 'maybe';
      return;
    }
    if (o.unknownAt === 'RegisterStart') {
      bump(this.unknown, 'RegisterStart');
      return;
    }
    if (o.registered) {
      const r = o.finish as Extract<ClientResponse, { type: 'Registered' }>;
      this.check(r.attemptsRemaining === e.limit && r.attemptLimit === e.limit, e, `Registered says ${r.attemptsRemaining}/${r.attemptLimit}, asked ${e.limit}`);
      e.state = 'registered';
      e.lo = e.hi = e.limit;
      this.onAck?.(e);
      return;
    }
    if (o.finish) this.fault(e, o.finish, 'RegisterFinish');
    else if (o.start) this.fault(e, o.start, 'RegisterStart');
  }

  /** `right`: the login used the record's password. */
  applyLogin(e: Entry, o: LoginOutcome, right: boolean): void {
    e.touched = true;
    this.seen(o.start);
    this.seen(o.finish);
    if (o.badRelease) this.violation(e, `a key was released to a login whose KE3 could not verify (${right ? 'right' : 'wrong'} password)`);
    if (o.unknownAt === 'LoginStart') {
      bump(this.unknown, 'LoginStart');
      e.lo = Math.max(0, e.lo - 1);
      return;
    }
    const s = o.start!;
    if (s.type === 'LoginStarted') {
      const r = s.attemptsRemaining;
      this.check(e.hi >= 1, e, `a KE2 was given with no guess left (bound ${e.lo}..${e.hi})`);
      if (!this.check(r >= e.lo - 1 && r <= e.hi - 1, e, `LoginStarted says ${r} remaining, the ledger allows ${Math.max(0, e.lo - 1)}..${e.hi - 1}${r > e.hi - 1 ? ' (a refunded guess)' : ' (a guess charged twice)'}`)) {
        e.lo = Math.min(e.lo - 1, r);
        e.hi = Math.max(e.hi - 1, r);
      } else e.lo = e.hi = r;
      this.onAck?.(e);
    } else if (s.type === 'RetryLater') {
      // the record's pacing refused the guess before charging it (enclave/api/pacing.ts)
      const r = s.attemptsRemaining;
      if (!this.check(r >= e.lo && r <= e.hi, e, `RetryLater says ${r} remaining, the ledger allows ${e.lo}..${e.hi}`)) {
        e.lo = Math.min(e.lo, r);
        e.hi = Math.max(e.hi, r);
      } else e.lo = e.hi = r;
      return;
    } else if (s.type === 'Locked') {
      this.check(e.lo <= 0, e, `LoginStart answered Locked while the ledger has ${e.lo}..${e.hi} remaining`);
      e.lo = e.hi = 0;
      return;
    } else {
      this.fault(e, s, 'LoginStart');
      return;
    }
    if (o.unknownAt === 'LoginFinish') {
      bump(this.unknown, 'LoginFinish');
      if (right) e.hi = e.limit; // the reset may have landed
      return;
    }
    const f = o.finish;
    if (!f) return; // dropped after KE2
    if (f.type === 'Recovered') {
      this.check(right, e, 'Recovered for a wrong password');
      this.check(sameBytes(o.key, e.backupKey), e, 'the released key is not the registered one');
      this.check(f.attemptsRemaining === e.limit, e, `Recovered says ${f.attemptsRemaining} remaining, limit ${e.limit}`);
      e.lo = e.hi = e.limit;
      this.onAck?.(e);
    } else if (f.type === 'WrongPassword') {
      this.check(!right, e, 'the right password answered WrongPassword');
      const r = f.attemptsRemaining;
      if (!this.check(r >= e.lo && r <= e.hi, e, `WrongPassword says ${r} remaining, the ledger allows ${e.lo}..${e.hi}`)) {
        e.lo = Math.min(e.lo, r);
        e.hi = Math.max(e.hi, r);
      } else e.lo = e.hi = r;
    } else if (f.type === 'Fault') {
      // The session died with its device (UnknownSession): expected after a crash.
      if (f.code !== Handling.UnknownSession && f.code !== Handling.SessionExpired) this.fault(e, f, 'LoginFinish');
    } else if (f.type === 'Locked') {
      this.check(e.lo <= 0, e, `LoginFinish answered Locked with ${e.lo}..${e.hi} remaining`);
    }
  }

  // ---- operations ----

  async register(c: VaultClient, e: Entry): Promise<RegisterOutcome> {
    const o = await c.register(e.id, e.password, e.backupKey, { attemptLimit: e.limit });
    this.applyRegister(e, o);
    return o;
  }

  async login(c: VaultClient, e: Entry, right: boolean): Promise<LoginOutcome> {
    const o = await c.login(e.id, right ? e.password : te.encode(`wrong-${randomBytes(4).toString('hex')}`));
    this.applyLogin(e, o, right);
    return o;
  }

  /**
   * After a restart: every registered record's status is within its bounds and it recovers with
   * its password (`recover`: which to recover; the others get the status check only); every
   * "maybe" record is settled. Runs `concurrency` records at a time.
   */
  async verify(c: VaultClient, opts: { recover: (e: Entry) => boolean; concurrency?: number }): Promise<void> {
    const todo = this.entries.filter((e) => e.state !== 'absent');
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const e = todo[next++]!;
        await this.verifyOne(c, e, opts.recover(e) || e.state === 'maybe');
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker));
    for (const e of this.entries) e.touched = false;
  }

  private async verifyOne(c: VaultClient, e: Entry, recover: boolean): Promise<void> {
    const st = await c.status(e.id);
    if (!st.ok) {
      this.violation(e, `Status got no answer after the restart: ${describe(st.error)}`);
      return;
    }
    this.seen(st.res);
    if (e.state === 'maybe') {
      if (st.res.type === 'NotRegistered') {
        e.state = 'absent';
        bump(this.report.stats as Record<string, number>, 'unacknowledged registrations that did not land');
        return;
      }
      if (!this.check(st.res.type === 'StatusResult', e, `Status of an unacknowledged registration answered ${st.res.type}`)) return;
      bump(this.report.stats as Record<string, number>, 'unacknowledged registrations that landed');
      e.state = 'registered';
      e.lo = e.hi = e.limit; // no login was ever made on it
    }
    if (st.res.type !== 'StatusResult') {
      this.violation(e, `an acknowledged registration is gone after the restart: Status answered ${st.res.type}${st.res.type === 'Fault' ? ` ${faultName(st.res.code)}` : ''}`);
      return;
    }
    const r = st.res.attemptsRemaining;
    this.check((st.res.registered === 1 && st.res.locked === 0) || e.lo === 0, e, `Status: registered=${st.res.registered} locked=${st.res.locked} with ${e.lo}..${e.hi} remaining`);
    this.check(r <= e.hi, e, `attempts remaining ${r} after the restart, above the ledger's bound ${e.hi}: a refunded guess`);
    this.check(r >= e.lo, e, `attempts remaining ${r} after the restart, below the ledger's bound ${e.lo}: a guess charged that no acknowledged login asked for`);
    e.lo = e.hi = r;
    if (!recover) return;
    if (r === 0) {
      note(this.report, 'a record had no guess left to verify its password with (unanswered logins may all have landed)');
      return;
    }
    const o = await c.login(e.id, e.password);
    this.applyLogin(e, o, true);
    this.check(o.key !== undefined, e, `an acknowledged registration does not recover with its password: ${o.unknownAt ? `no answer to ${o.unknownAt}` : `${o.start?.type}/${o.finish?.type ?? '-'}`}`);
  }
}

export interface LoadStats {
  ops: number;
  unknown: number;
  byKind: Record<string, number>;
}

/**
 * Concurrent load on the ledger: registrations of new ids, logins with the right password and
 * logins with a wrong one, on records no other worker is using, until `stop()` is true.
 * A wrong login is tried only where at least `keep` guesses are sure to remain.
 */
export async function driveLoad(
  ledger: Ledger,
  client: VaultClient,
  opts: { rng: Rng; concurrency: number; stop: () => boolean; mix?: { register: number; right: number }; keep?: number; onOp?: () => void },
): Promise<LoadStats> {
  const mix = opts.mix ?? { register: 0.25, right: 0.35 };
  const keep = opts.keep ?? 3;
  const stats: LoadStats = { ops: 0, unknown: 0, byKind: {} };
  const worker = async () => {
    while (!opts.stop()) {
      const x = opts.rng.next();
      const free = ledger.entries.filter((e) => e.state === 'registered' && !e.busy);
      let kind: 'register' | 'right' | 'wrong' = 'register';
      let e: Entry | undefined;
      if (x >= mix.register && free.length > 0) {
        kind = x < mix.register + mix.right ? 'right' : 'wrong';
        const fit = free.filter((f) => (kind === 'right' ? f.lo >= 1 : f.lo >= keep));
        if (fit.length) e = opts.rng.pick(fit);
        else kind = 'register';
      }
      e ??= ledger.newEntry();
      e.busy = true;
      let unknown = false;
      try {
        if (kind === 'register') unknown = (await ledger.register(client, e)).unknownAt !== undefined;
        else unknown = (await ledger.login(client, e, kind === 'right')).unknownAt !== undefined;
      } finally {
        e.busy = false;
      }
      stats.ops++;
      bump(stats.byKind, kind);
      opts.onOp?.();
      if (unknown) {
        stats.unknown++;
        await sleep(opts.rng.int(5, 40)); // the vault is down or restarting: do not spin
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return stats;
}

