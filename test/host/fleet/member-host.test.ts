/**
 * The member host's client API (host/fleet/member-host.ts), three members in this process on
 * loopback: status while the key ceremony waits and once the fleet formed; an operation answered
 * by the leader after its commit (200 with index, hash and the op as committed); 421 NOT_LEADER
 * with the leader's URL from a follower; the rules' refusals by name (409); and the edge's
 * refusals: a body over 4 KiB (413), bad JSON (400), an intent that is not one (400), an unknown
 * route (404), a wrong method (405).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFleetConfig, fleetJson, initFleet } from '../../../host/fleet/config.ts';
import { MAX_OP_BODY, MemberHost } from '../../../host/fleet/member-host.ts';
import { freePort } from '../../helpers/tcp-proxy.ts';

let root: string;
const hosts: MemberHost[] = [];
const api: string[] = [];

const get = async (url: string, init?: RequestInit) => {
  const r = await fetch(url, init);
  return { status: r.status, body: (await r.json()) as any };
};
const op = (i: number, body: unknown) => get(`${api[i]}/fleet/ops`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'bkv-member-host-'));
  await initFleet({ dir: root, members: 3 });
  const file = join(root, 'fleet.json');
  const cfg = checkFleetConfig(JSON.parse(readFileSync(file, 'utf8')));
  const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  writeFileSync(file, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, api: { host: '127.0.0.1', port: ports[2 * i]! }, peer: { host: '127.0.0.1', port: ports[2 * i + 1]! } })) }));
  for (let i = 0; i < 3; i++) {
    hosts.push(new MemberHost({ fleetFile: file, member: i, serve: 'replication-test', log: () => undefined }));
    api.push(`http://127.0.0.1:${ports[2 * i]}`);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.close()));
  rmSync(root, { recursive: true, force: true });
});

describe('the member host', () => {
  let leader = -1;

  it('answers its status while the ceremony waits, then once the fleet formed', async () => {
    const first = hosts[1]!.start();
    let s = { status: 0, body: {} as any };
    for (let t = 0; t < 100 && !/identity of member/.test(s.body.waiting ?? ''); t++) {
      s = await get(`${api[1]}/fleet/status`).catch(() => s);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(s.body).toMatchObject({ member: 1, status: 'ceremony', leader: null, waiting: expect.stringMatching(/identity of member 0/) });
    expect((await op(1, { kind: 'lock', id: 'r' })).status).toBe(503);
    await Promise.all([first, hosts[0]!.start(), hosts[2]!.start()]);
    for (let t = 0; t < 200 && leader < 0; t++) {
      const all = await Promise.all(api.map((a) => get(`${a}/fleet/status`)));
      const normal = all.filter((x) => x.body.status === 'normal');
      if (normal.length === 3 && normal.every((x) => x.body.leader?.id === normal[0]!.body.leader?.id)) leader = normal[0]!.body.leader.id;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(leader).toBeGreaterThanOrEqual(0);
    const st = (await get(`${api[leader]}/fleet/status`)).body;
    expect(st).toMatchObject({ member: leader, status: 'normal', epoch: 1, leader: { id: leader, api: api[leader] }, secretCheck: expect.stringMatching(/^[0-9a-f]{32}$/), incarnation: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(st.peers.map((p: any) => p.state)).toEqual(['connected', 'connected']);
  }, 60_000);

  it('the leader answers after the commit; a follower answers 421 with the leader; the rules refuse by name', async () => {
    const ok = await op(leader, { kind: 'register', id: 'alice', limit: 2 });
    expect(ok).toMatchObject({ status: 200, body: { index: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/), op: { kind: 'register', id: 'alice', base: 0, limit: 2 } } });
    const c = await op(leader, { kind: 'charge', id: 'alice', session: 5 });
    expect(c.body.op).toEqual({ kind: 'charge', id: 'alice', base: 1, guess: 1, session: 5 });
    const follower = (leader + 1) % 3;
    expect(await op(follower, { kind: 'charge', id: 'alice', session: 6 })).toEqual({ status: 421, body: { error: { code: 'NOT_LEADER', num: 6023, message: 'this member does not lead the fleet now; ask the leader', leader: api[leader] } } });
    expect(await op(leader, { kind: 'charge', id: 'nobody', session: 7 })).toMatchObject({ status: 409, body: { error: { code: 'Fleet.TransitionNotAllowed', num: 2512 } } });
  });

  it('refuses a body over 4 KiB, bad JSON, an intent that is not one, an unknown route, a wrong method', async () => {
    expect(await op(leader, 'x'.repeat(MAX_OP_BODY + 1))).toMatchObject({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
    // the same without a length announced: counted as it arrives
    const chunked = new ReadableStream({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode('y'.repeat(1024)));
        c.close();
      },
    });
    expect(await get(`${api[leader]}/fleet/ops`, { method: 'POST', body: chunked, duplex: 'half' } as RequestInit)).toMatchObject({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
    expect(await op(leader, '{"kind":')).toMatchObject({ status: 400, body: { error: { code: 'MALFORMED_JSON' } } });
    expect(await op(leader, { kind: 'charge', id: 'alice' })).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', message: '"session" is missing' } } });
    expect(await op(leader, { kind: 'register', id: 'alice', limit: 2, admin: true })).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
    expect(await get(`${api[leader]}/nothing`)).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    expect(await get(`${api[leader]}/fleet/ops`)).toMatchObject({ status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED' } } });
    expect(await get(`${api[leader]}/fleet/status`, { method: 'POST', body: '{}' })).toMatchObject({ status: 405 });
    // nothing of that reached the log: the next charge is guess 2
    expect((await op(leader, { kind: 'charge', id: 'alice', session: 8 })).body.op.guess).toBe(2);
  });
});
