/**
 * Each fleet member's store on a PostgreSQL database of its own (fleet.json "store", written by
 * `bkv fleet init --store-template URL`; docs/fleet-vault.md "Each member's store"):
 *   - without a server: `bkv fleet init --store-template` gives each member its own database and
 *     refuses (exit 2, nothing written) a template without {member}, one that still gives two
 *     members one database, one that carries a password; fleet.json naming one database for two
 *     members is refused;
 *   - with a server (BKV_PG_URL, an admin URL; `eval "$(scripts/ci-postgres.sh)"`), 3 member
 *     processes each on its own database bkv_fleet_<random>_<i> in the one cluster: register, a
 *     wrong recover, the leader SIGKILLed, the status through the others, the right password
 *     brings the key back; restarted, the killed member catches up and every member's database
 *     holds the same blob for the record; a member as current as the others given a running
 *     member's database (--store) refuses to start (its claim, host/fleet/store-claim.ts: without
 *     it, it started and one of the two stopped applying, Integrity.RollbackDetected), and that
 *     member goes on; a claim refuses a database that does not exist, by name; a member behind
 *     the log (down while more batches committed than the log keeps) copies the leader's rows
 *     from a snapshot of its database while four clients register, the device takes them, and
 *     every database holds the same rows. The databases are dropped at the end.
 * Without BKV_PG_URL the server's part is skipped with a printed reason, except under CI=true,
 * where it fails.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { checkFleetConfig, fleetJson, FleetConfigError, initFleet, readFleetConfig, storesFromTemplate } from '../../../host/fleet/config.ts';
import { VAULT_KEY_FILE } from '../../../host/fleet/member-host.ts';
import { claimPostgresStore, StoreClaimError } from '../../../host/fleet/store-claim.ts';
import { runBkvAsync } from '../../helpers/cli.ts';
import { escrowCli, expectCaughtUp, killLeader, memberUrls, settled as settledFleet, type EscrowRun } from '../../helpers/fleet-escrow.ts';
import { fleetClient, ProcFleet } from '../../helpers/fleet-procs.ts';
import { freePort } from '../../helpers/tcp-proxy.ts';
import { VAULT_LOG_KEEP } from '../../../hsm/fleet/device.ts';

const PG_URL = process.env.BKV_PG_URL?.trim() || undefined;
const IN_CI = /^(1|true|yes)$/i.test(process.env.CI ?? '');
const PG_HOW = 'start a throwaway server with `eval "$(scripts/ci-postgres.sh)"` (sets BKV_PG_URL; stop it with scripts/ci-postgres-stop.sh "$BKV_PG_DIR")';

/** `PG_URL` pointed at `database` (the text as is: it may hold {member}). */
function dbUrl(database: string): string {
  const u = new URL(PG_URL!);
  u.pathname = '/DATABASE';
  return u.toString().replace('/DATABASE', `/${database}`);
}

async function pgQuery<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, values)).rows;
  } finally {
    await c.end();
  }
}

describe('bkv fleet init --store-template: each member its own database', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'bkv-fleet-store-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('writes each member\'s store with {member} replaced; SQLite stays the default; a template without {member} is refused, exit 2, nothing written', async () => {
    const d = dir();
    const [r, plain, bad] = await Promise.all([
      runBkvAsync(d, ['fleet', 'init', '--members', '3', '--dir', 'f', '--store-template', 'postgres://vault@db.example:5433/bkv_fleet_{member}?schema=v', '--json']),
      runBkvAsync(d, ['fleet', 'init', '--members', '3', '--dir', 'g']),
      runBkvAsync(d, ['fleet', 'init', '--members', '3', '--dir', 'h', '--store-template', 'postgres://vault@db.example/bkv_fleet']),
    ]);
    expect(r.code, r.err).toBe(0);
    const fleet = readFleetConfig(join(d, 'f', 'fleet.json'));
    expect(fleet.members.map((m) => m.store)).toEqual([0, 1, 2].map((i) => `postgres://vault@db.example:5433/bkv_fleet_${i}?schema=v`));
    // what it prints carries no user name
    expect(JSON.parse(r.out).members.map((m: { store: string }) => m.store)).toEqual([0, 1, 2].map((i) => `postgres://***@db.example:5433/bkv_fleet_${i}?schema=v`));
    expect(plain.code, plain.err).toBe(0);
    expect(readFleetConfig(join(d, 'g', 'fleet.json')).members.every((m) => m.store === undefined)).toBe(true);
    expect(plain.out).toContain(`member 1: clients 127.0.0.1:7402, members 127.0.0.1:7403, data ${join(d, 'g', 'member-1')}, store ${join(d, 'g', 'member-1', 'vault.db')}`);
    expect(bad.code, bad.err).toBe(2);
    expect(bad.err).toMatch(/\{member\}" is missing: every member needs a database of its own/);
    expect(existsSync(join(d, 'h'))).toBe(false);
  }, 60_000);

  it('refuses a template that still shares a database, one with a password, one that is not PostgreSQL, before writing anything', async () => {
    const cases: [string, RegExp][] = [
      ['postgres://vault@db.example/bkv_fleet?application_name=m{member}', /two members get the same database and schema/],
      ['postgres://vault@DB.example:5432/bkv?schema=public&x={member}', /two members get the same database and schema/],
      ['postgres://vault:hunter2@db.example/bkv_fleet_{member}', /carries a password; fleet\.json holds no secret/],
      ['sqlite:/tmp/vault-{member}.db', /expected a postgres:\/\/ URL/],
      ['postgres://vault@db.example/', /\{member\}" is missing/],
    ];
    for (const [template, why] of cases) {
      const d = dir();
      const e = await initFleet({ dir: join(d, 'f'), members: 3, storeTemplate: template }).then(
        () => null,
        (x: Error) => x,
      );
      expect(e, template).toBeInstanceOf(FleetConfigError);
      expect(e!.message).toMatch(why);
      expect(e!.message).not.toContain('hunter2');
      expect(existsSync(join(d, 'f'))).toBe(false);
    }
    // positive control: {member} in the schema alone is a store of its own for each
    const { fleet } = await initFleet({ dir: join(dir(), 'f'), members: 3, storeTemplate: 'postgres://vault@db.example/bkv?schema=m{member}' });
    expect(fleet.members.map((m) => m.store)).toEqual([0, 1, 2].map((i) => `postgres://vault@db.example/bkv?schema=m${i}`));
  });

  it('refuses fleet.json whose two members name one database and schema, however spelled', () => {
    const base = (store: (i: number) => string | undefined) => ({
      format: 'bkv-fleet/1',
      fleetId: 'ab'.repeat(16),
      members: [0, 1, 2].map((i) => ({ id: i, api: `127.0.0.1:${7400 + 2 * i}`, peer: `127.0.0.1:${7401 + 2 * i}`, data: `member-${i}`, ...(store(i) !== undefined && { store: store(i) }) })),
      auth: { issuers: ['auth/issuer.pub'] },
    });
    const own = checkFleetConfig(base((i) => `postgres://u@h/db${i}`));
    expect(own.members.map((m) => m.store)).toEqual(['postgres://u@h/db0', 'postgres://u@h/db1', 'postgres://u@h/db2']);
    expect(JSON.parse(fleetJson(own)).members[2].store).toBe('postgres://u@h/db2');
    const shared: [(i: number) => string | undefined, RegExp][] = [
      [(i) => (i === 2 ? 'postgres://u@h/db0' : `postgres://u@h/db${i}`), /members\[2\]\.store: member 0's database and schema/],
      // the default port and schema spelled out, the host's case, another user: still db0's
      [(i) => (i === 0 ? 'postgres://u@H:5432/db0?schema=public' : i === 1 ? 'postgresql://other@h/db0' : 'postgres://u@h/db2'), /members\[1\]\.store: member 0's database/],
    ];
    for (const [store, why] of shared) expect(() => checkFleetConfig(base(store))).toThrow(why);
    expect(() => checkFleetConfig(base((i) => (i === 1 ? 'postgres://u:pw@h/db1' : undefined)))).toThrow(FleetConfigError);
    expect(() => checkFleetConfig(base((i) => (i === 1 ? 'postgres://u@h/' : undefined)))).toThrow(/names no database/);
    expect(() => checkFleetConfig(base((i) => (i === 1 ? 42 as unknown as string : undefined)))).toThrow(/members\[1\]\.store: expected a postgres/);
  });
});

if (PG_URL === undefined) {
  if (IN_CI) {
    describe('the vault served by 3 member processes, each on its own PostgreSQL database', () => {
      it('has a PostgreSQL server to test against (BKV_PG_URL)', () => {
        throw new Error(`CI=true but BKV_PG_URL is unset: the fleet's PostgreSQL stores must be tested in CI; ${PG_HOW}`);
      });
    });
  } else {
    console.warn(`[vault-pg.test] the fleet on PostgreSQL is skipped: BKV_PG_URL is unset. To run it, ${PG_HOW}.`);
  }
}

describe.skipIf(PG_URL === undefined)('the vault served by 3 member processes, each on its own PostgreSQL database', () => {
  const ID = 'alice';
  const prefix = `bkv_fleet_${randomBytes(4).toString('hex')}`;
  const databases = [0, 1, 2].map((i) => `${prefix}_${i}`);
  let f: ProcFleet;
  let created = false;

  beforeAll(async () => {
    for (const db of databases) await pgQuery(dbUrl('postgres'), `CREATE DATABASE "${db}"`);
    created = true;
    f = await ProcFleet.create(3, {}, { vault: true, args: ['--record-limit', 'off'] });
    // each member's store as `bkv fleet init --store-template` writes it (tested above)
    const stores = storesFromTemplate(dbUrl(`${prefix}_{member}`), 3);
    const cfg = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
    writeFileSync(f.fleetFile, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, store: stores[i]! })) }));
    const [tok, key] = await Promise.all([
      runBkvAsync(f.root, ['auth', 'token', '--issuer-key', join('auth', 'issuer.key'), '--id', ID, '--out', 'alice.tok']),
      runBkvAsync(f.root, ['key', 'new', '--out', 'my.key']),
      ...[0, 1, 2].map((i) => f.start(i)),
    ]);
    expect(tok.code, tok.err).toBe(0);
    expect(key.code, key.err).toBe(0);
    await f.waitFor('vault-key.pub', async () => existsSync(join(f.root, VAULT_KEY_FILE)), 60_000);
    await f.allNormal();
    writeFileSync(join(f.root, 'right.pw'), 'correct horse battery\n');
    writeFileSync(join(f.root, 'wrong.pw'), 'wrong horse\n');
  }, 120_000);

  afterAll(async () => {
    await f?.close();
    if (created) for (const db of databases) await pgQuery(dbUrl('postgres'), `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  });

  /** Two-step operations whose first step's state was gone at the second (the lead moved between them). */
  let sessionLosses = 0;
  const MAX_SESSION_LOSSES = 2;

  /**
   * `bkv escrow VERB ... --json` against every member (test/helpers/fleet-escrow.ts), started
   * again when its first step's session or stage was gone at its second (`lost`:
   * Handling.UnknownSession, the login's guess stays charged; Handling.UnknownStage), at most
   * MAX_SESSION_LOSSES times in the file. `lostLogins`: the logins so started again.
   */
  async function escrow(verb: string, args: string[], lost?: 'Handling.UnknownSession' | 'Handling.UnknownStage'): Promise<EscrowRun & { lostLogins: number }> {
    let lostLogins = 0;
    for (;;) {
      const r = await escrowCli(f, ID, 'alice.tok', verb, args);
      if (lost === undefined || r.json.error?.fault?.name !== lost) return { ...r, lostLogins };
      expect(++sessionLosses, `more than ${MAX_SESSION_LOSSES} operations lost their session or stage:\n${r.err}`).toBeLessThanOrEqual(MAX_SESSION_LOSSES);
      if (lost === 'Handling.UnknownSession') lostLogins++;
      f.note(`${verb} lost its session or stage (${r.json.error.message}); started again`);
    }
  }

  const settled = () => settledFleet(f);

  /** The record's blob in member `i`'s database (host/storage/postgres.ts: records(partition, record_id, blob, epoch)). */
  async function storedBlob(i: number): Promise<Buffer | null> {
    const rows = await pgQuery<{ blob: Buffer }>(dbUrl(databases[i]!), 'SELECT blob FROM public.records WHERE partition = 0 AND record_id = $1', [Buffer.from(ID)]);
    return rows[0]?.blob ?? null;
  }

  it('a claim refuses a database that does not exist (named, no password shown) and a database and schema another session holds (naming it); released, it is free', async () => {
    const noop = () => undefined;
    const missing = new URL(dbUrl(`${prefix}_missing`));
    missing.password = 'S3cr3t-pw'; // trust authentication on the test cluster: any password passes
    const gone = await claimPostgresStore(missing.href, 'bkv test', noop).then(
      () => null,
      (e: Error) => e,
    );
    expect(gone).toBeInstanceOf(StoreClaimError);
    expect(gone!.message).toMatch(new RegExp(`the store database "${prefix}_missing" does not exist on its server: create it`));
    expect(gone!.message).not.toContain('S3cr3t');
    const url = `${dbUrl(databases[0]!)}?schema=claim_test`;
    const a = await claimPostgresStore(url, 'holder A', noop);
    try {
      const b = await claimPostgresStore(url, 'holder B', noop).then(
        () => null,
        (e: Error) => e,
      );
      expect(b).toBeInstanceOf(StoreClaimError);
      expect(b!.message).toBe(`the store database "${databases[0]}" (schema claim_test) is in use by another process (holder A): every fleet member's store must be its own database or schema`);
      // positive control: another schema of the same database is another store
      const c = await claimPostgresStore(`${dbUrl(databases[0]!)}?schema=claim_other`, 'holder C', noop);
      await c.release();
    } finally {
      await a.release();
    }
    const again = await claimPostgresStore(url, 'holder B', noop);
    await again.release();
  }, 60_000);

  const keyText = (file: string) => readFileSync(join(f.root, file), 'utf8').replace(/\s+/g, '');

  it('registers, charges a wrong password, survives the leader\'s SIGKILL, the restarted member catches up to the same blob in every database, and a member given a running member\'s database refuses to start', async () => {
    onTestFailed(() => console.log(f.failureReport()));
    // each member runs on its own database, none on SQLite
    for (let i = 0; i < 3; i++) {
      expect(existsSync(join(f.memberDir(i), 'vault.db'))).toBe(false);
      const tables = await pgQuery<{ n: string }>(dbUrl(databases[i]!), "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('meta', 'records', 'audit')");
      expect(Number(tables[0]!.n)).toBe(3);
    }

    const reg = await escrow('register', ['--key-file', 'my.key', '--password-file', 'right.pw', '--attempts', '5'], 'Handling.UnknownStage');
    expect(reg.json, reg.err).toMatchObject({ ok: true, outcome: 'registered', attemptLimit: 5, attemptsRemaining: 5 });
    const wrong = await escrow('recover', ['--password-file', 'wrong.pw'], 'Handling.UnknownSession');
    expect(wrong.code, wrong.err).toBe(3);
    // a login started again after a lost session charged its first guess too
    let charged = 1 + wrong.lostLogins;
    expect(wrong.json).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 5 - charged, destroyed: false });

    // the leader SIGKILLed: the others go on from their own databases
    const leader = await killLeader(f);
    const st = await escrow('status', []);
    expect(st.json, st.err).toMatchObject({ outcome: 'registered', attemptsRemaining: 5 - charged });
    const rec = await escrow('recover', ['--password-file', 'right.pw', '--out', 'got.key'], 'Handling.UnknownSession');
    expect(rec.json, rec.err).toMatchObject({ ok: true, outcome: 'recovered', attemptsRemaining: 5 });
    charged = 0;
    expect(keyText('got.key')).toBe(keyText('my.key'));

    // restarted on its own database, it catches up: the same applied batch, the same blob in every database
    await expectCaughtUp(f, leader, storedBlob);

    // a member as current as the others (its rows byte for byte theirs), given a running member's
    // database: it refuses to start (its claim), so the two never write one records table
    const down = [0, 1, 2].find((i) => i !== leader)!;
    const other = [0, 1, 2].find((i) => i !== down)!;
    await f.kill(f.procs[down]!);
    const taken = await f.start(down, { args: ['--store', dbUrl(databases[other]!)] }).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(taken).toMatch(new RegExp(`exited 1:[^]*StoreClaimError: the store database "${databases[other]}" \\(schema public\\) is in use by another process \\(bkv fleet member ${other} `));
    expect(f.procs[down]).toBeNull();
    // the member whose database it was went on: the two running members agree on the last batch
    expect(await settled()).toHaveLength(2);
  }, 240_000);

  it('a member behind the log copies the leader\'s rows from a snapshot of its database while the fleet commits, and the device takes them', async () => {
    onTestFailed(() => console.log(f.failureReport()));
    const urls = memberUrls(f);
    // the member the test before left down comes back first
    for (let i = 0; i < 3; i++) if (!f.procs[i]) await f.start(i);
    await settled();
    const leader = (await f.leader())!;
    const t = [0, 1, 2].find((i) => i !== leader)!;
    const other = [0, 1, 2].find((i) => i !== leader && i !== t)!;
    await f.kill(f.procs[t]!);
    const c = await fleetClient(f.root, urls);
    const te = new TextEncoder();
    const key = new Uint8Array(32).fill(5);
    /** Registers `id`, again when every member refused for a moment or the lead moved (nothing was charged). */
    const register = async (id: string) => {
      for (let k = 0; ; k++) {
        try {
          return await c.register(te.encode(id), te.encode('pw'), key, { attemptLimit: 5 });
        } catch (e) {
          if (k >= 9) throw e;
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    };
    // more batches than the log keeps (two a registration): the member is behind when it comes back
    const count = Math.ceil(VAULT_LOG_KEEP / 2) + 4;
    for (let i = 0; i < count; i++) await register(`pg${i}`);
    await settled();
    // only the leader's api address open to it, while four clients keep registering
    const shut = await freePort();
    const cfg = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
    const leaderOnly = join(f.root, 'fleet-pg-leader-only.json');
    writeFileSync(leaderOnly, fleetJson({ ...cfg, members: cfg.members.map((m) => (m.id === other ? { ...m, api: { host: '127.0.0.1', port: shut } } : m)) }));
    const p = await f.start(t, { fleet: leaderOnly });
    let busy = true;
    let extra = 0;
    const load = Promise.all(
      [0, 1, 2, 3].map(async () => {
        while (busy && extra < 40) await register(`pgbusy${extra++}`);
      }),
    );
    try {
      // caught up: its copy taken and its vault no longer behind. Its status says `behind: false`
      // from the moment its vault loads until its rejoin shows the log folded batches it never
      // applied, so that alone passed before the catch-up began (CI rehearsal, 2026-12-07: the poll
      // came 80 ms after the member listened, before its rejoin)
      const took = new RegExp(`attempt \\d+: took \\d+ rows at batch \\d+ from member ${leader}\\b`);
      await f.waitFor('the member to catch up', async () => (took.test(p.log) && ((await f.status(urls[t]!)) as { behind?: boolean } | null)?.behind === false) || null, 120_000);
    } finally {
      busy = false;
      await load;
    }
    expect(extra, 'no registration ran during the catch-up').toBeGreaterThan(0);
    expect(p.log).toMatch(new RegExp(`attempt \\d+: took \\d+ rows at batch \\d+ from member ${leader}\\b`));
    expect(f.procs[leader]!.log).toMatch(new RegExp(`served a copy of \\d+ stored rows at batch \\d+ to member ${t}\\b`));
    f.note(`${extra} registrations during the copy; ${p.log.split('\n').filter((l) => /catch-up/.test(l)).join('; ')}`);
    // every member's database holds the same rows
    await settled();
    const rowsOf = async (i: number) =>
      (await pgQuery<{ id: Buffer; blob: Buffer }>(dbUrl(databases[i]!), 'SELECT record_id AS id, blob FROM public.records WHERE partition = 0 AND length(blob) > 0 ORDER BY record_id')).map((r) => `${r.id.toString('hex')}:${r.blob.toString('hex')}`);
    const want = await rowsOf(leader);
    expect(want.length).toBeGreaterThanOrEqual(1 + count + extra);
    for (const i of [0, 1, 2]) expect(await rowsOf(i), `member ${i}`).toEqual(want);
  }, 240_000);
});
