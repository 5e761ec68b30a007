/**
 * Races, at high concurrency, through the HTTP service and through a VaultHost directly:
 *
 *   guesses   many concurrent wrong-password logins on one record (some finish with a KE3 that
 *             can not verify, some drop the session after KE2) never get more KE2s than the
 *             record's limit, and the record ends with no guess left; several records at once,
 *             limits 1..10.
 *   change    concurrent password changes (1..3 changers, each: a login with the current
 *             password, then a registration authorized by that session) and logins with the old
 *             password, with each new password and with a wrong one: at most one change is
 *             acknowledged; afterwards exactly one password opens the record (the acknowledged
 *             change's, or the old one when none was); a login started after the change was
 *             acknowledged never recovers with the old password; every released key is the
 *             record's backup key.
 *
 *   npx tsx test/adversarial/races.ts [--trials N] [--attackers N] [--seed S] [--via host|http|both]
 * Exit 1 on a violation.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { fetchVaultInfo, httpRelay } from '../../client/http-relay.ts';
import { startService } from '../../host/service/server.ts';
import { testIssuer } from '../helpers/auth.ts';
import { Rng, bump, isMain, note, parseArgs, runMain, te } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { VaultClient, describe, sameBytes } from './lib/flows.ts';
import { finishStorm, startStorm } from './lib/storm.ts';
import { openHost } from './lib/vaults.ts';

export interface RacesOptions {
  trials: number;
  attackers?: number;
  seed?: number;
  via?: 'host' | 'http' | 'both';
  partitions?: number;
  log?: (line: string) => void;
}

function name(prefix: string): Uint8Array {
  return te.encode(`${prefix}-${randomBytes(6).toString('hex')}`);
}

/** Many concurrent wrong logins on `records` records at once. */
async function guessRace(report: Report, c: VaultClient, rng: Rng, via: string, attackers: number, records: number): Promise<void> {
  const recs = Array.from({ length: records }, () => ({ id: name('race-g'), limit: rng.int(1, 10), key: new Uint8Array(randomBytes(32)), pw: te.encode(`pw-${randomBytes(4).toString('hex')}`) }));
  for (const r of recs) {
    const reg = await c.register(r.id, r.pw, r.key, { attemptLimit: r.limit });
    if (!reg.registered) {
      report.violations.push(`${via} guesses: setup registration failed: ${reg.start?.type}/${reg.finish?.type}/${describe(reg.error)}`);
      return;
    }
  }
  const tally = recs.map(() => ({ ke2: 0, locked: 0, wrong: 0, errors: 0, released: 0, minRemaining: Infinity }));
  await Promise.all(
    recs.flatMap((r, i) =>
      Array.from({ length: attackers }, async () => {
        const finish = rng.chance(0.7);
        const o = await c.login(r.id, te.encode(`guess-${randomBytes(4).toString('hex')}`), { finish });
        const t = tally[i]!;
        if (o.unknownAt) t.errors++;
        if (o.ke2) {
          t.ke2++;
          const rem = (o.start as { attemptsRemaining: number }).attemptsRemaining;
          t.minRemaining = Math.min(t.minRemaining, rem);
        }
        if (o.start?.type === 'Locked' || o.finish?.type === 'Locked') t.locked++;
        if (o.finish?.type === 'WrongPassword') t.wrong++;
        if (o.finish?.type === 'Recovered' || o.key || o.badRelease) t.released++;
      }),
    ),
  );
  for (const [i, r] of recs.entries()) {
    const t = tally[i]!;
    report.checks += 4;
    bump(report.stats as Record<string, number>, `${via} guesses: wrong logins`, attackers);
    if (t.ke2 > r.limit) report.violations.push(`${via} guesses: ${t.ke2} KE2s for a record with limit ${r.limit} (${attackers} concurrent wrong logins)`);
    if (t.released) report.violations.push(`${via} guesses: ${t.released} wrong logins got a key`);
    if (t.errors) note(report, `${via} guesses: some logins got no answer (transport); the bounds hold whatever they did`);
    const st = await c.status(r.id);
    if (!st.ok || st.res.type !== 'StatusResult') report.violations.push(`${via} guesses: Status after the race answered ${st.ok ? st.res.type : describe(st.error)}`);
    else if (st.res.attemptsRemaining !== 0) report.violations.push(`${via} guesses: ${st.res.attemptsRemaining} remaining after ${t.ke2} KE2s on limit ${r.limit}`);
    if (t.ke2 < r.limit) note(report, `${via} guesses: fewer KE2s than the limit before the record locked`);
    // The right password is refused now, for good.
    const right = await c.login(r.id, r.pw);
    report.checks++;
    if (right.key || right.ke2) report.violations.push(`${via} guesses: the right password still logs in after the limit was spent (${right.start?.type}/${right.finish?.type})`);
  }
}

/** Concurrent password changes and logins on one record. */
async function changeRace(report: Report, c: VaultClient, rng: Rng, via: string, attackers: number): Promise<void> {
  const id = name('race-c');
  const key = new Uint8Array(randomBytes(32));
  const old = te.encode(`old-${randomBytes(4).toString('hex')}`);
  const reg = await c.register(id, old, key, { attemptLimit: 100 });
  if (!reg.registered) {
    report.violations.push(`${via} change: setup registration failed`);
    return;
  }
  const changers = rng.int(1, 3);
  const news = Array.from({ length: changers }, (_, i) => te.encode(`new-${i}-${randomBytes(4).toString('hex')}`));
  let ackedAt = Infinity;
  const acked: number[] = [];
  /** Changes whose registration got no answer (landed or not). */
  const maybe: number[] = [];
  const logins: { pw: 'old' | number | 'wrong'; sentAt: number; key?: Uint8Array; badRelease?: boolean }[] = [];
  const tasks: Promise<void>[] = [];
  for (let i = 0; i < changers; i++) {
    tasks.push(
      (async () => {
        const r = await c.changePassword(id, old, news[i]!);
        if (r.login.badRelease || (r.login.key && !sameBytes(r.login.key, key))) report.violations.push(`${via} change: a changer got a wrong key`);
        if (r.register?.registered) {
          acked.push(i);
          ackedAt = Math.min(ackedAt, performance.now());
        } else if (r.register?.unknownAt === 'RegisterFinish') {
          maybe.push(i);
          note(report, `${via} change: a password change got no answer (transport): either outcome is accepted for it`);
        }
      })(),
    );
  }
  const n = Math.max(4, Math.floor(attackers / 4));
  for (let k = 0; k < n; k++) {
    const which = rng.pick(['old', 'old', 'wrong', ...news.map((_, i) => i)] as const) as 'old' | 'wrong' | number;
    tasks.push(
      (async () => {
        const pw = which === 'old' ? old : which === 'wrong' ? te.encode('wrong') : news[which]!;
        const sentAt = performance.now();
        const o = await c.login(id, pw);
        logins.push({ pw: which, sentAt, key: o.key, badRelease: o.badRelease });
      })(),
    );
  }
  await Promise.all(tasks);
  report.checks += 3 + logins.length;
  bump(report.stats as Record<string, number>, `${via} change: trials`);
  if (acked.length > 1) report.violations.push(`${via} change: ${acked.length} concurrent password changes were all acknowledged; only one can hold`);
  for (const l of logins) {
    if (l.badRelease) report.violations.push(`${via} change: a key was released to a login whose KE3 could not verify`);
    if (l.key && !sameBytes(l.key, key)) report.violations.push(`${via} change: a released key is not the record's backup key`);
    if (l.key && l.pw === 'wrong') report.violations.push(`${via} change: a wrong password recovered`);
    if (l.key && l.pw === 'old' && l.sentAt > ackedAt) report.violations.push(`${via} change: the old password recovered in a login started after the change was acknowledged`);
    if (l.key && typeof l.pw === 'number' && !acked.includes(l.pw) && !maybe.includes(l.pw)) report.violations.push(`${via} change: password ${l.pw} recovered but its change was not acknowledged`);
  }
  // Afterwards: exactly one password opens the record.
  const works: string[] = [];
  for (const [label, pw] of [['old', old], ...news.map((p, i) => [`new-${i}`, p] as const)] as const) {
    const o = await c.login(id, pw);
    if (o.key) works.push(label);
    if (o.key && !sameBytes(o.key, key)) report.violations.push(`${via} change: the key after the race is not the backup key`);
  }
  const expected = acked.length === 1 ? [`new-${acked[0]}`] : ['old', ...maybe.map((i) => `new-${i}`)];
  if (works.length !== 1) report.violations.push(`${via} change: after concurrent changes ${works.length === 0 ? 'neither password' : works.join(' and ')} opens the record (${changers} changers, acknowledged: ${acked.join(',') || 'none'})`);
  else if (!expected.includes(works[0]!)) report.violations.push(`${via} change: ${works[0]} opens the record, the acknowledged state says ${expected.join(' or ')}`);
}

export async function races(o: RacesOptions): Promise<Report> {
  const attackers = o.attackers ?? 64;
  const s = startStorm({ ...o, mode: o.via }, { mode: 'both', concurrency: attackers, tmp: 'races' }, (seed, via) => `races (${o.trials} trials each, ${attackers} concurrent attackers, via ${via}, seed ${seed})`);
  const { rng, mode: via, partitions, log, report, tmp } = s;
  try {
    if (via === 'host' || via === 'both') {
      const v = await openHost({ dataDir: `${tmp.dir}/host`, mode: 'worker', partitions });
      try {
        for (let t = 1; t <= o.trials; t++) {
          await guessRace(report, v.client, rng, 'host', attackers, rng.int(1, 3));
          await changeRace(report, v.client, rng, 'host', attackers);
          log(`host trial ${t}/${o.trials}: violations ${report.violations.length}`);
        }
      } finally {
        await v.close();
      }
    }
    if (via === 'http' || via === 'both') {
      const svc = await startService({ dataDir: `${tmp.dir}/http`, partitions, rateLimits: { record: false, address: false }, logger: pino({ level: 'silent' }), auth: (await testIssuer()).config });
      try {
        const info = await fetchVaultInfo(svc.url);
        const c = await VaultClient.create(httpRelay({ baseUrl: svc.url, timeoutMs: 120_000 }), info.enclavePublicKey);
        for (let t = 1; t <= o.trials; t++) {
          await guessRace(report, c, rng, 'http', attackers, rng.int(1, 3));
          await changeRace(report, c, rng, 'http', attackers);
          log(`http trial ${t}/${o.trials}: violations ${report.violations.length}`);
        }
      } finally {
        await svc.close();
      }
    }
  } finally {
    tmp.remove();
  }
  return finishStorm(s);
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['trials', 'attackers', 'seed', 'via', 'partitions']);
    const via = a.get('via') ?? 'both';
    if (!['host', 'http', 'both'].includes(via)) throw new Error('--via must be host, http or both');
    return races({
      trials: a.num('trials', 10),
      attackers: a.num('attackers', 64),
      seed: a.get('seed') === undefined ? undefined : a.num('seed', 1),
      via: via as RacesOptions['via'],
      log: (l) => console.log(l),
    });
  });
}
