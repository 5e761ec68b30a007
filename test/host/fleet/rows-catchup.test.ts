/**
 * Catch-up by stored rows between member processes (docs/fleet-vault.md, "Catch-up by stored
 * rows"; host/fleet/rows-endpoint.ts, row-copy.ts, vault-node.ts), 3 members serving the vault:
 *   1. a follower SIGKILLed while more batches commit than the log keeps (VAULT_LOG_KEEP), then
 *      restarted with the only member it can copy from serving one altered row (a fake member in
 *      this file in front of a real follower): the device refuses the copy, the member stays
 *      behind and its store holds its own rows; restarted with only the leader's api address open,
 *      its host copies the leader's rows (read from a snapshot while the fleet commits, its
 *      batches written meanwhile), the device takes them, every member's
 *      vault.db holds the same rows at the same applied batch, and it applies the next batch as
 *      a follower; killed behind again with a whole copy marked in its folder and its store half
 *      rewritten, it finishes the copy at start;
 *   2. GET /fleet/rows answers nothing without the fleet's peer secret: no, malformed, oversized,
 *      wrong, stale, replayed or another path's credential (401/403 with a typed error), another
 *      method, a query or a body (405/400/413); a valid one the NDJSON copy, from a follower and
 *      from the leader;
 *   3. the copier (row-copy.ts downloadRows) refuses a copy whose framing is broken (no or another
 *      member's header, truncated, a wrong count, ids out of order or repeated, a non-canonical or
 *      oversized field, a line over the bound, a line after the end, a refusal, another content
 *      type) and leaves no staging file; a whole one lands in the staging file, marked.
 */
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { EscrowClient } from '../../../client/escrow.ts';
import { VAULT_LOG_KEEP } from '../../../hsm/fleet/device.ts';
import { checkFleetConfig, fleetJson } from '../../../host/fleet/config.ts';
import { PEER_SECRET_FILE, peerAuthKey, peerCredential, readPeerSecret } from '../../../host/fleet/peer-auth.ts';
import { ROWS_PATH } from '../../../host/fleet/rows-endpoint.ts';
import { downloadRows, RowCopyError, STAGING_DONE, stagingPath } from '../../../host/fleet/row-copy.ts';
import { openSqliteStore } from '../../../host/storage/sqlite.ts';
import { fleetClient, ProcFleet, type MemberStatus } from '../../helpers/fleet-procs.ts';
import { freePort } from '../../helpers/tcp-proxy.ts';

let f: ProcFleet;
const te = new TextEncoder();
const KEY = new Uint8Array(32).fill(7);

const urls = () => f.apiPorts.map((p) => `http://127.0.0.1:${p}`);
type Status = MemberStatus & { behind?: boolean };
const statusOf = (i: number) => f.status(urls()[i]!) as Promise<Status | null>;

/** An SDK client over every member. */
const sdk = () => fleetClient(f.root, urls());

/** Registers `id`, again when a view change lost its stage or every member refused for a moment (nothing was charged). */
async function register(c: EscrowClient, id: string): Promise<void> {
  let last: unknown;
  for (let k = 0; k < 10; k++) {
    try {
      await c.register(te.encode(id), te.encode('pw'), KEY, { attemptLimit: 5 });
      return;
    } catch (e) {
      last = e;
      f.note(`register ${id}: ${e instanceof Error ? e.message : String(e)}; again`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw last;
}

/** Every stored row with a blob in member `i`'s vault.db (read-only), record id hex to blob hex. */
function rowsOf(i: number): Map<string, string> {
  const db = new Database(join(f.memberDir(i), 'vault.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT record_id, blob FROM records WHERE partition = 0').all() as { record_id: Buffer; blob: Buffer }[];
    return new Map(rows.filter((r) => r.blob.length > 0).map((r) => [r.record_id.toString('hex'), r.blob.toString('hex')]));
  } finally {
    db.close();
  }
}

/** Every running member normal under one leader, none behind, each at the leader's applied batch. */
function settled(): Promise<Status[]> {
  return f.waitFor(
    'every running member to apply the leader\'s batches',
    async () => {
      const all = (await Promise.all(f.procs.map((p, i) => (p ? statusOf(i) : null)))).filter((s): s is Status => s !== null);
      if (all.length !== f.procs.filter(Boolean).length || all.some((s) => s.status !== 'normal' || s.behind)) return null;
      const leader = all.find((s) => s.leader?.id === s.member);
      if (!leader || all.some((s) => s.leader?.id !== leader.member || s.appliedBatch !== leader.appliedBatch)) return null;
      return all;
    },
    120_000,
  );
}

/**
 * A fake member in front of real member `real`: its /fleet/status is the real one's, its
 * /fleet/rows the real one's copy (asked with the fleet's peer credential, as member `as`) with
 * one row's blob altered.
 */
async function forgingPeer(real: number, as: number): Promise<{ port: number; served: () => number; close: () => Promise<void> }> {
  const key = peerAuthKey(readPeerSecret(f.root));
  let served = 0;
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.url === '/fleet/status') {
        const r = await fetch(`${urls()[real]}/fleet/status`);
        res.writeHead(r.status, { 'content-type': 'application/json' });
        return res.end(await r.text());
      }
      const r = await fetch(`${urls()[real]}${ROWS_PATH}`, { headers: { authorization: peerCredential(key, as, 'GET', ROWS_PATH) } });
      const lines = (await r.text()).split('\n');
      if (r.status === 200 && lines.length > 3) {
        // the second row's blob, its last byte flipped (a sealed record's tag)
        const row = JSON.parse(lines[2]!) as { id: string; blob: string };
        const blob = Buffer.from(row.blob, 'base64url');
        blob[blob.length - 1]! ^= 1;
        lines[2] = JSON.stringify({ id: row.id, blob: blob.toString('base64url') });
        served++;
      }
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
      res.end(lines.join('\n'));
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    served: () => served,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('catch-up by stored rows between member processes', () => {
  beforeAll(async () => {
    // no rate limits: four clients on one address register back to back during the copy
    f = await ProcFleet.serving(3, ['--record-limit', 'off', '--address-limit', 'off']);
  }, 120_000);

  afterAll(async () => {
    await f?.close();
  });

  it('a member behind the log refuses a forged copy and keeps its rows, then takes the leader\'s copy under load, matches every member and follows', async () => {
    onTestFailed(() => console.log(f.failureReport()));
    const c = await sdk();
    for (let i = 0; i < 3; i++) await register(c, `early${i}`);
    await settled();
    const leader = await f.waitFor('a leader', () => f.leader());
    const t = [0, 1, 2].find((i) => i !== leader)!;
    const follower = [0, 1, 2].find((i) => i !== leader && i !== t)!;
    await f.kill(f.procs[t]!);
    const own = rowsOf(t);
    expect(own.size).toBe(3);

    // each registration is two batches (RegisterStart, RegisterFinish): more than the log keeps
    const count = Math.ceil(VAULT_LOG_KEEP / 2) + 4;
    for (let i = 0; i < count; i++) await register(c, `late${i}`);
    const s0 = await settled();
    const top = s0[0]!.appliedBatch!;
    expect(top).toBeGreaterThan(VAULT_LOG_KEEP + 4);

    // restarted where the only member it can copy from is a forger (the other's api address is closed)
    const forger = await forgingPeer(follower, t);
    try {
      const cfg = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
      const dead = await freePort();
      const forged = join(f.root, 'fleet-forged.json');
      writeFileSync(forged, fleetJson({ ...cfg, members: cfg.members.map((m) => (m.id === t ? m : { ...m, api: { host: '127.0.0.1', port: m.id === follower ? forger.port : dead } })) }));
      const p = await f.start(t, { fleet: forged });
      await f.waitFor('the member to know it is behind', async () => (await statusOf(t))?.behind === true || null, 60_000);
      await f.waitFor('two refused copies', async () => (p.log.match(/attempt \d+: the device refused/g)?.length ?? 0) >= 2 || null, 90_000);
      expect(forger.served()).toBeGreaterThanOrEqual(2);
      expect(p.log).toMatch(/RollbackDetected/);
      const st = await statusOf(t);
      // behind (a learner for a moment after each reboot: a new incarnation, admitted again)
      expect(st).toMatchObject({ behind: true });
      expect(st!.appliedBatch).toBeLessThan(top);
      await f.kill(p);
    } finally {
      await forger.close();
    }
    // its own rows, untouched
    expect(rowsOf(t)).toEqual(own);

    // restarted with only the leader's api address open while the fleet keeps committing: its
    // host copies the leader's rows (a snapshot of its store, its batches written meanwhile) and
    // the device takes them only if they are one state the fleet committed
    const shut = await freePort();
    const real = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
    const leaderOnly = join(f.root, 'fleet-leader-only.json');
    writeFileSync(leaderOnly, fleetJson({ ...real, members: real.members.map((m) => (m.id === follower ? { ...m, api: { host: '127.0.0.1', port: shut } } : m)) }));
    const p = await f.start(t, { fleet: leaderOnly });
    let busy = true;
    let extra = 0;
    // four clients at once: batches follow each other closely, as under real load
    const load = Promise.all(
      [0, 1, 2, 3].map(async () => {
        while (busy && extra < 60) await register(c, `busy${extra++}`);
      }),
    );
    try {
      // caught up: its copy taken and its vault no longer behind (`behind: false` alone also holds
      // from the moment its vault loads until its rejoin shows it behind: vault-pg.test.ts)
      const took = new RegExp(`attempt \\d+: took \\d+ rows at batch \\d+ from member ${leader}\\b`);
      await f.waitFor('the member to catch up', async () => (took.test(p.log) && (await statusOf(t))?.behind === false) || null, 120_000);
    } finally {
      busy = false;
      await load;
    }
    f.note(`caught up with ${extra} registrations during the copy`);
    const all = await settled();
    const caught = all[0]!.appliedBatch!;
    expect(new Set(all.map((s) => s.appliedBatch))).toEqual(new Set([caught]));
    // (at least one batch per two of the four clients' registrations: a batch may carry several)
    expect(caught).toBeGreaterThanOrEqual(top + Math.ceil(extra / 2));
    expect(p.log).toMatch(new RegExp(`attempt \\d+: took \\d+ rows at batch \\d+ from member ${leader}\\b`));
    expect(f.procs[leader]!.log).toMatch(new RegExp(`served a copy of \\d+ stored rows at batch \\d+ to member ${t}\\b`));
    // what an operator sees of a copy's steps
    expect(p.log).toMatch(new RegExp(`attempt \\d+: \\d+ rows at batch \\d+ from member ${leader} arrived; the device checks them`));
    expect(p.log).toMatch(/attempt \d+: the device took them; writing them into the store/);
    // a real member's copy is never refused: the host waits until its log names the copy's batch committed
    expect(p.log).not.toMatch(/the device refused/);
    f.note(`${extra} registrations during the copy; ${p.log.split('\n').filter((l) => /catch-up/.test(l)).join('; ')}`);
    const want = rowsOf(leader);
    expect(want.size).toBe(3 + count + extra);
    for (const i of [0, 1, 2]) expect(rowsOf(i), `member ${i}`).toEqual(want);

    // and follows: the next batches reach its store as they reach the others'
    await register(c, 'after');
    const after = await settled();
    expect(after.find((s) => s.member === t)!.appliedBatch).toBeGreaterThanOrEqual(caught + 2);
    const wantAfter = rowsOf(leader);
    expect(wantAfter.size).toBe(4 + count + extra);
    expect(rowsOf(t)).toEqual(wantAfter);

    // a stop midway: the member behind (its log caught up by snapshot, no member to copy from)
    // is killed with a whole copy marked in its folder and its store half rewritten; at start
    // the device refuses the store, takes the copy, and the host finishes writing it
    await f.kill(f.procs[t]!);
    for (let i = 0; i < count; i++) await register(c, `mid${i}`);
    await settled();
    const dead = await Promise.all([0, 1, 2].map(() => freePort()));
    const cfg = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
    const alone = join(f.root, 'fleet-alone.json');
    writeFileSync(alone, fleetJson({ ...cfg, members: cfg.members.map((m) => (m.id === t ? m : { ...m, api: { host: '127.0.0.1', port: dead[m.id]! } })) }));
    const q = await f.start(t, { fleet: alone });
    await f.waitFor('the member to know it is behind', async () => (await statusOf(t))?.behind === true || null, 60_000);
    await f.waitFor('an attempt with no member to copy from', async () => /attempt \d+: no member to copy from/.test(q.log) || null, 30_000);
    await f.kill(q);
    const src = await f.waitFor('a follower to copy from', async () => {
      const l = await f.leader();
      return l === null ? null : [0, 1, 2].find((i) => i !== l && i !== t)!;
    });
    const got = await downloadRows(f.memberDir(t), { member: src, api: urls()[src]! }, t, peerAuthKey(readPeerSecret(f.root)));
    expect(got.rows).toBe(4 + 2 * count + extra);
    const store = await openSqliteStore(join(f.memberDir(t), 'vault.db'));
    const staged = await openSqliteStore(stagingPath(f.memberDir(t)));
    try {
      const [row] = await staged.getMany(0, [te.encode('mid0')]);
      expect((await store.getMany(0, [te.encode('mid0')]))[0]).toBeUndefined();
      await store.applyBatch(0, (await store.appliedEpoch(0))!, [{ recordId: te.encode('mid0'), blob: row!.blob }], []);
    } finally {
      await staged.close();
      await store.close();
    }
    const r = await f.start(t);
    await settled();
    expect(r.log).toMatch(/a catch-up that stopped midway; writing them into the store/);
    expect(existsSync(stagingPath(f.memberDir(t)))).toBe(false);
    expect(existsSync(join(f.memberDir(t), STAGING_DONE))).toBe(false);
    const wantEnd = rowsOf(leader);
    expect(wantEnd.size).toBe(4 + 2 * count + extra);
    for (const i of [0, 1, 2]) expect(rowsOf(i), `member ${i}`).toEqual(wantEnd);
  }, 600_000);

  it('GET /fleet/rows answers only a member\'s valid, fresh, unreplayed credential; the leader serves a copy too', async () => {
    const all = await settled();
    const leader = all.find((s) => s.leader?.id === s.member)!.member;
    const fo = [0, 1, 2].find((i) => i !== leader)!;
    const asker = [0, 1, 2].find((i) => i !== fo)!;
    const key = peerAuthKey(readPeerSecret(f.root));
    expect(readFileSync(join(f.root, PEER_SECRET_FILE), 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);

    /** A raw request to member `i` (node:http: a GET may carry a body here). */
    const ask = (i: number, o: { method?: string; path?: string; auth?: string; body?: string; headers?: Record<string, string> } = {}) =>
      new Promise<{ status: number; type: string; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.request(`${urls()[i]}${o.path ?? ROWS_PATH}`, { method: o.method ?? 'GET', headers: { ...(o.auth !== undefined && { authorization: o.auth }), ...(o.body !== undefined && { 'content-length': String(Buffer.byteLength(o.body)) }), ...o.headers } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body, headers: res.headers }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(o.body);
      });
    const refusedWith = async (r: Promise<{ status: number; type: string; body: string }>, status: number, code: string) => {
      const got = await r;
      expect(got.status, got.body).toBe(status);
      expect(got.type).toMatch(/^application\/json/);
      const j = JSON.parse(got.body) as { error: { code: string; num: number; message: string } };
      expect(j.error.code).toBe(code);
      expect(typeof j.error.num).toBe('number');
      // nothing of the rows in a refusal
      expect(got.body).not.toMatch(/"blob"/);
    };

    // without the secret
    const none = await ask(fo);
    await refusedWith(Promise.resolve(none), 401, 'PEER_AUTH_REQUIRED');
    expect(none.headers['www-authenticate']).toBe('BKV-Peer');
    await refusedWith(ask(fo, { auth: 'Bearer abc' }), 401, 'PEER_AUTH_REQUIRED');
    await refusedWith(ask(fo, { auth: `${peerCredential(key, asker, 'GET', ROWS_PATH)}${'x'.repeat(300)}` }), 401, 'PEER_AUTH_REQUIRED');
    const otherKey = peerAuthKey(new Uint8Array(32).fill(1));
    await refusedWith(ask(fo, { auth: peerCredential(otherKey, asker, 'GET', ROWS_PATH) }), 403, 'PEER_AUTH_REFUSED');
    // a valid MAC with a byte changed, another path's, a stale one, the member itself
    const good = peerCredential(key, asker, 'GET', ROWS_PATH);
    const flipped = good.slice(0, -2) + (good.at(-2) === 'A' ? 'B' : 'A') + good.at(-1);
    await refusedWith(ask(fo, { auth: flipped }), 403, 'PEER_AUTH_REFUSED');
    await refusedWith(ask(fo, { auth: peerCredential(key, asker, 'GET', '/fleet/status') }), 403, 'PEER_AUTH_REFUSED');
    await refusedWith(ask(fo, { auth: peerCredential(key, asker, 'GET', ROWS_PATH, Date.now() - 120_000) }), 403, 'PEER_AUTH_REFUSED');
    await refusedWith(ask(fo, { auth: peerCredential(key, asker, 'GET', ROWS_PATH, Date.now() + 120_000) }), 403, 'PEER_AUTH_REFUSED');
    await refusedWith(ask(fo, { auth: peerCredential(key, fo, 'GET', ROWS_PATH) }), 403, 'PEER_AUTH_REFUSED');
    await refusedWith(ask(fo, { auth: peerCredential(key, 7, 'GET', ROWS_PATH) }), 403, 'PEER_AUTH_REFUSED');

    // a valid credential: the copy (positive control); the same credential again: replayed
    const copy = await ask(fo, { auth: good });
    expect(copy.status, copy.body).toBe(200);
    expect(copy.type).toBe('application/x-ndjson');
    const lines = copy.body.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ format: 'bkv-rows/1', member: fo, partition: 0, appliedBatch: all[0]!.appliedBatch });
    const rows = lines.slice(1, -1) as { id: string; blob: string }[];
    expect(lines.at(-1)).toEqual({ end: true, rows: rows.length });
    const stored = rowsOf(fo);
    expect(new Map(rows.map((r) => [Buffer.from(r.id, 'base64url').toString('hex'), Buffer.from(r.blob, 'base64url').toString('hex')]))).toEqual(stored);
    await refusedWith(ask(fo, { auth: good }), 403, 'PEER_AUTH_REFUSED');

    // authenticated, but not the request the route takes
    await refusedWith(ask(fo, { method: 'POST', auth: peerCredential(key, asker, 'POST', ROWS_PATH), body: '{}' }), 405, 'METHOD_NOT_ALLOWED');
    await refusedWith(ask(fo, { path: `${ROWS_PATH}?from=0`, auth: peerCredential(key, asker, 'GET', `${ROWS_PATH}?from=0`) }), 400, 'BAD_REQUEST');
    await refusedWith(ask(fo, { auth: peerCredential(key, asker, 'GET', ROWS_PATH), body: 'x'.repeat(100) }), 413, 'PAYLOAD_TOO_LARGE');
    // the leader serves a copy too (from a snapshot of its store: its batches do not wait on it)
    const fromLeader = await ask(leader, { auth: peerCredential(key, fo, 'GET', ROWS_PATH) });
    expect(fromLeader.status, fromLeader.body).toBe(200);
    const led = fromLeader.body.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(led[0]).toMatchObject({ format: 'bkv-rows/1', member: leader, partition: 0, appliedBatch: all[0]!.appliedBatch });
    const ledRows = led.slice(1, -1) as { id: string; blob: string }[];
    expect(led.at(-1)).toEqual({ end: true, rows: ledRows.length });
    expect(new Map(ledRows.map((r) => [Buffer.from(r.id, 'base64url').toString('hex'), Buffer.from(r.blob, 'base64url').toString('hex')]))).toEqual(rowsOf(leader));
  }, 180_000);
});

describe('the copier\'s framing checks (row-copy.ts downloadRows)', () => {
  const b64 = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');
  const head = (o: Record<string, unknown> = {}) => JSON.stringify({ format: 'bkv-rows/1', member: 1, partition: 0, appliedBatch: 9, ...o });
  const row = (id: string, blob = 'sealed-' + id) => JSON.stringify({ id: b64(id), blob: b64(blob) });
  const end = (n: number) => JSON.stringify({ end: true, rows: n });
  const ndjson = (...lines: string[]) => ({ status: 200, type: 'application/x-ndjson', body: lines.join('\n') + '\n' });

  it('refuses every broken copy without leaving a staging file; takes a whole one', async () => {
    let answer = ndjson(head(), end(0));
    const server = http.createServer((_req, res) => {
      res.writeHead(answer.status, { 'content-type': answer.type });
      res.end(answer.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const peer = { member: 1, api: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    const dir = mkdtempSync(join(tmpdir(), 'bkv-row-copy-'));
    const key = peerAuthKey(new Uint8Array(32).fill(3));
    try {
      const broken: [string, typeof answer][] = [
        ['no header', ndjson(row('a'), end(1))],
        ['another member\'s header', ndjson(head({ member: 2 }), row('a'), end(1))],
        ['another format', ndjson(head({ format: 'bkv-rows/2' }), end(0))],
        ['truncated: no end line', ndjson(head(), row('a'), row('b'))],
        ['truncated mid-line', { ...ndjson(head(), row('a')), body: `${head()}\n${row('a').slice(0, 10)}` }],
        ['a wrong count', ndjson(head(), row('a'), end(2))],
        ['ids out of order', ndjson(head(), row('b'), row('a'), end(2))],
        ['an id twice', ndjson(head(), row('a'), row('a'), end(2))],
        ['a blob in padded base64', ndjson(head(), JSON.stringify({ id: b64('a'), blob: Buffer.from('xy').toString('base64') }), end(1))],
        ['an empty blob', ndjson(head(), JSON.stringify({ id: b64('a'), blob: '' }), end(1))],
        ['an id over 64 bytes', ndjson(head(), row('x'.repeat(65)), end(1))],
        ['a row with another field', ndjson(head(), JSON.stringify({ id: b64('a'), blob: b64('z'), epoch: 3 }), end(1))],
        ['a line over the bound', ndjson(head(), row('a').replace('{', `{${' '.repeat(3000)}`), end(1))],
        ['a line after the end', ndjson(head(), row('a'), end(1), row('b'))],
        ['not JSON', ndjson(head(), '{"id":', end(0))],
        ['a refusal', { status: 409, type: 'application/json', body: '{"error":{"code":"ROWS_NOT_SERVED"}}' }],
        ['another content type', { status: 200, type: 'text/plain', body: `${head()}\n${end(0)}\n` }],
      ];
      for (const [what, a] of broken) {
        answer = a;
        const e = await downloadRows(dir, peer, 0, key).then(
          () => null,
          (err: unknown) => err,
        );
        expect(e instanceof RowCopyError, `${what}: ${String(e)}`).toBe(true);
        expect(existsSync(stagingPath(dir)), what).toBe(false);
        expect(existsSync(join(dir, STAGING_DONE)), what).toBe(false);
      }
      // positive control: a whole copy lands in the staging file, with its batch, and is marked
      answer = ndjson(head(), row('a'), row('b'), row('c'), row('d'), row('e'), end(5));
      const progress: number[] = [];
      expect(await downloadRows(dir, peer, 0, key, (n) => progress.push(n), 2)).toEqual({ appliedBatch: 9, rows: 5 });
      expect(progress).toEqual([2, 4]);
      expect(existsSync(join(dir, STAGING_DONE))).toBe(true);
      const staged = await openSqliteStore(stagingPath(dir));
      try {
        expect(await staged.appliedEpoch(0)).toBe(9);
        const got = await staged.getMany(0, ['a', 'b', 'c', 'e'].map((x) => te.encode(x)));
        expect(got.map((r) => Buffer.from(r!.blob).toString())).toEqual(['sealed-a', 'sealed-b', 'sealed-c', 'sealed-e']);
      } finally {
        await staged.close();
      }
    } finally {
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
