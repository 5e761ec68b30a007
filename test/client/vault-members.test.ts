/**
 * A vault of several members (client/vault-members.ts, client/http-relay.ts): the relay moves to
 * the next member only when this one certainly did not take the request, and never costs a guess.
 * Real local HTTP servers: a vault service (host/service/server.ts, `startService`) that really
 * answers, a second one with another enclave key, and small members in front of the first that
 * count what reaches them and answer their operations as the case needs (passed through, 421
 * NOT_LEADER naming a leader, 503 with a code, or the connection reset once the whole request is
 * in). `Connection: close` on each of their answers keeps no connection pooled, so a member closed
 * by a test refuses the next connection instead of resetting a kept one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { EscrowClient } from '../../client/escrow.ts';
import {
  MAX_ANSWER_BODY_BYTES, MAX_ERROR_BODY_BYTES, MAX_VAULT_URLS, VaultHttpError, VaultKeyMismatchError, VaultMembersError, VaultTransportError, VaultUrlError, fetchVaultInfo, httpRelay, parseVaultUrls,
} from '../../client/http-relay.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import type { Suite } from '../../enclave/opaque/suite.ts';
import { startService } from '../../host/service/server.ts';
import { ErrorCode, ServiceError } from '../../host/service/error-codes.ts';
import type { ErrorCodeName, ServiceErrorJson } from '../../host/service/error-codes.ts';
import type { RunningService } from '../../host/service/server.ts';
import { CONTEXT } from '../helpers/vault-harness.ts';
import { testIssuer, wallClockClientExtras } from '../helpers/auth.ts';
import type { TestIssuer } from '../helpers/auth.ts';
import { rejectionOf, thrownBy } from '../helpers/errors.ts';

const te = new TextEncoder();
const PASSWORD = te.encode('correct horse');
const dirs: string[] = [];
const servers: Server[] = [];
let suite: Suite;
let issuer: TestIssuer;
/** The vault that answers, and another vault (another enclave key). */
let vault: RunningService;
let stranger: RunningService;

async function service(): Promise<RunningService> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-members-'));
  dirs.push(dataDir);
  return startService({ dataDir, port: 0, partitions: 1, logger: pino({ level: 'silent' }), auth: issuer.config, rateLimits: { record: false, address: false } });
}

beforeAll(async () => {
  suite = await fastSuite('ristretto255-SHA512');
  issuer = await testIssuer();
  [vault, stranger] = await Promise.all([service(), service()]);
}, 60_000);

afterAll(async () => {
  for (const s of servers.splice(0)) s.closeAllConnections(), s.close();
  await Promise.all([vault?.close(), stranger?.close()]);
  for (const d of dirs.splice(0)) for (const x of [d, `${d}.operator`]) rmSync(x, { recursive: true, force: true });
});

/**
 * How a member answers an operation: passed through, the connection reset, or an error answer
 * (`pad`: that many more bytes of message, `chunked`: sent in pieces with no Content-Length);
 * or, as a function of the operations it got so far (1 for the first), one of those.
 */
type OpsAnswer = 'pass' | 'reset' | { status: number; code: string; leader?: string; pad?: number; chunked?: boolean } | ((n: number) => Exclude<OpsAnswer, Function>);

interface Member {
  url: string;
  /** GET /v1/vault requests and POSTed operations that reached this member. */
  infos: number;
  ops: number;
  close(): Promise<void>;
}

/** A member in front of `target`: GETs pass through; operations are answered as `ops` says. */
async function member(target: string, ops: OpsAnswer = 'pass'): Promise<Member> {
  const m = { url: '', infos: 0, ops: 0 } as Member;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (req.method === 'POST') m.ops++;
      else m.infos++;
      const answer = typeof ops === 'function' ? ops(m.ops) : ops;
      if (req.method === 'POST' && answer === 'reset') return void req.socket.destroy(); // the whole request is in; the answer is lost
      if (req.method === 'POST' && typeof answer === 'object') {
        // A code of the service's table: its own error body (ServiceError.toJSON, `leader` included).
        const json: ServiceErrorJson =
          answer.code in ErrorCode
            ? new ServiceError(answer.code as ErrorCodeName, answer.leader !== undefined ? { leader: answer.leader } : {}).toJSON()
            : { error: { code: answer.code, num: 0, message: 'test member' } };
        json.error.message += '.'.repeat(answer.pad ?? 0);
        const body = JSON.stringify(json);
        if (answer.chunked) {
          res.writeHead(answer.status, { 'content-type': 'application/json', connection: 'close' });
          for (let at = 0; at < body.length; at += 1024) res.write(body.slice(at, at + 1024));
          res.end();
        } else {
          res.writeHead(answer.status, { 'content-type': 'application/json', connection: 'close' }).end(body);
        }
        return;
      }
      const r = await fetch(target + req.url, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json', connection: 'close' }).end(Buffer.from(await r.arrayBuffer()));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  m.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  m.close = () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r())));
  return m;
}

/** A URL nothing listens on (a port opened and closed again): the connection is refused. */
async function refusingUrl(): Promise<string> {
  const m = await member('http://127.0.0.1:1');
  await m.close();
  return m.url;
}

function client(urls: string | string[], pinned = vault.vault.info.enclavePublicKey): EscrowClient {
  return new EscrowClient({
    relay: httpRelay({ baseUrl: urls, enclavePublicKey: pinned }),
    enclavePublicKey: vault.vault.info.enclavePublicKey,
    suite,
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...wallClockClientExtras(issuer),
  });
}

/** A record registered on `vault` directly; returns its id. */
async function registered(name: string): Promise<Uint8Array> {
  const id = te.encode(`${name}-${randomBytes(4).toString('hex')}`);
  await client(vault.url).register(id, PASSWORD, new Uint8Array(32).fill(7), { attemptLimit: 5 });
  return id;
}

/** The record's attempts remaining, read on `vault` directly. */
async function attemptsLeft(id: Uint8Array): Promise<number> {
  const st = await client(vault.url).status(id);
  if (st.type !== 'StatusResult') throw new Error(`not registered: ${st.type}`);
  return st.attemptsRemaining;
}

describe('--vault lists (parseVaultUrls)', () => {
  it('takes one URL or several, comma-separated or as an array, in canonical form', () => {
    expect(parseVaultUrls('http://127.0.0.1:8080/')).toEqual(['http://127.0.0.1:8080']);
    expect(parseVaultUrls('https://A.example:443/vault/, http://b.example:7400')).toEqual(['https://a.example/vault', 'http://b.example:7400']);
    expect(parseVaultUrls(['http://a', 'http://b'])).toEqual(['http://a', 'http://b']);
    const many = Array.from({ length: MAX_VAULT_URLS }, (_, i) => `http://10.0.0.${i}:7400`);
    expect(parseVaultUrls(many.join(','))).toHaveLength(MAX_VAULT_URLS);
  });

  it('refuses an empty item, a URL that is not http(s), one with user info, query or fragment, a duplicate, more than 16', () => {
    const cases: [string | string[], RegExp][] = [
      ['', /is empty/],
      ['http://a,,http://b', /vault URL 2 of 3 is empty/],
      ['http://a,', /vault URL 2 of 2 is empty/],
      [[], /no vault URL/],
      ['ftp://a', /not an http\(s\) base URL/],
      ['127.0.0.1:8080', /not an http\(s\) base URL/],
      ['vault.example', /not an http\(s\) base URL/],
      ['http://user:pw@a', /not an http\(s\) base URL/],
      ['http://a/?x=1', /not an http\(s\) base URL/],
      ['http://a/#f', /not an http\(s\) base URL/],
      ['http://a,http://b,http://A:80/', /http:\/\/A:80\/ is listed twice/],
      [Array.from({ length: MAX_VAULT_URLS + 1 }, (_, i) => `http://10.0.0.${i}`).join(','), /at most 16 vault URLs \(got 17\)/],
    ];
    for (const [spec, msg] of cases) {
      const e = thrownBy(() => parseVaultUrls(spec));
      expect(e, JSON.stringify(spec)).toBeInstanceOf(VaultUrlError);
      expect((e as Error).message, JSON.stringify(spec)).toMatch(msg);
    }
    expect(thrownBy(() => httpRelay({ baseUrl: ['http://a', 'http://a/'] }))).toBeInstanceOf(VaultUrlError);
  });
});

describe('a relay over several members', () => {
  it('the first member refuses the connection: the second is used, and fetchVaultInfo does the same', async () => {
    const down = await refusingUrl();
    const id = te.encode(`refused-${randomBytes(4).toString('hex')}`);
    const c = client([down, vault.url]);
    await c.register(id, PASSWORD, new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const r = await c.recover(id, PASSWORD);
    expect(r.ok && r.attemptsRemaining).toBe(5);
    expect((await fetchVaultInfo([down, vault.url])).enclavePublicKey).toEqual(vault.vault.info.enclavePublicKey);
    // Alone, the refused member is the caller's error, as with one URL.
    const alone = await rejectionOf(fetchVaultInfo(down));
    expect(alone).toBeInstanceOf(VaultTransportError);
    expect((alone as VaultTransportError).unsent).toBe(true);
  }, 30_000);

  it('a member that went down after it answered: a LoginStart moves on only because the connection is refused (nothing sent)', async () => {
    const id = await registered('went-down');
    const a = await member(vault.url);
    const c = client([a.url, vault.url]);
    expect((await c.status(id)).type).toBe('StatusResult'); // a answers, and is remembered
    expect(a.ops).toBe(1);
    await a.close();
    const r = await c.recover(id, PASSWORD);
    expect(r.ok).toBe(true);
    expect(await attemptsLeft(id)).toBe(5);
  }, 30_000);

  it('421 NOT_LEADER naming a configured member: that leader is asked next, before the members listed between', async () => {
    const id = await registered('leader');
    const leader = await member(vault.url);
    const between = await member(vault.url);
    const follower = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: `${leader.url}/` });
    const c = client([follower.url, between.url, leader.url]);
    const r = await c.recover(id, PASSWORD);
    expect(r.ok).toBe(true);
    // LoginStart refused by the follower (twice: fetch itself resends a request answered 421 once,
    // on a new connection: the Fetch standard's HTTP-network-or-cache fetch); LoginStart and
    // LoginFinish at the leader.
    expect([follower.ops, between.ops + between.infos, leader.ops]).toEqual([2, 0, 2]);
    // The leader answered: the next request starts there.
    expect((await c.status(id)).type).toBe('StatusResult');
    expect([follower.ops, leader.ops]).toEqual([2, 3]);
  }, 30_000);

  it('421 naming a URL that is not configured: never followed; the next configured member, or a typed error', async () => {
    const id = await registered('outsider');
    const outsider = await member(vault.url);
    const follower = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: outsider.url });
    const down = await refusingUrl();
    const e = await rejectionOf(client([follower.url, down]).recover(id, PASSWORD));
    expect(e).toBeInstanceOf(VaultMembersError);
    const [first, second] = (e as VaultMembersError).attempts;
    expect(first!.member).toBe(follower.url);
    expect(first!.error).toBeInstanceOf(VaultHttpError);
    expect(first!.error).toMatchObject({ status: 421, code: 'NOT_LEADER', leader: outsider.url });
    expect(second!.member).toBe(down);
    // One member: its own 421, as with one URL.
    expect(await rejectionOf(client([follower.url]).recover(id, PASSWORD))).toMatchObject({ name: 'VaultHttpError', code: 'NOT_LEADER' });
    // A configured member after it takes the request.
    expect((await client([follower.url, vault.url]).recover(id, PASSWORD)).ok).toBe(true);
    expect(outsider.infos + outsider.ops).toBe(0);
    expect(await attemptsLeft(id)).toBe(5);
  }, 30_000);

  it('a leader asked earlier in the pass is asked once more when another member names it (it may have taken the lead since)', async () => {
    const id = await registered('lead-moved');
    // a: no leader yet at first (its first operation, which fetch sends twice), then it leads.
    const a = await member(vault.url, (n) => (n <= 2 ? { status: 421, code: 'NOT_LEADER' } : 'pass'));
    const named = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: a.url });
    const b = await member(vault.url);
    const r = await client([a.url, named.url, b.url]).recover(id, PASSWORD);
    expect(r.ok).toBe(true);
    // a: the refused LoginStart (twice), then LoginStart and LoginFinish; b was never reached.
    expect([a.ops, named.ops, b.ops + b.infos]).toEqual([4, 2, 0]);
    expect(await attemptsLeft(id)).toBe(5);
  }, 30_000);

  it('421s naming each other in a ring stop after one pass and one redirect per member: a typed error naming what each answered', async () => {
    const id = await registered('ring');
    const ring: Member[] = [];
    const urls: string[] = [];
    // Each names the next as the leader (the last names the first): a loop, were the client to follow every hint.
    for (let i = 0; i < 3; i++) {
      const m = await member(vault.url, () => ({ status: 421, code: 'NOT_LEADER', leader: urls[(i + 1) % 3]! }));
      ring.push(m);
      urls.push(m.url);
    }
    const outsider = await member(vault.url);
    // A forged 421 naming a host the client was not given adds nothing to the bound either.
    const forged = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: outsider.url });
    const e = await rejectionOf(client([...urls, forged.url]).recover(id, PASSWORD));
    expect(e).toBeInstanceOf(VaultMembersError);
    const attempts = (e as VaultMembersError).attempts;
    // ring 0 (the pass) names 1, 1 names 2, 2 names 0 (asked again once: it may lead now), 0 names 1
    // (followed already): the pass goes on to the member not asked yet, and ends.
    expect(attempts.map((a) => a.member)).toEqual([urls[0], urls[1], urls[2], urls[0], forged.url]);
    expect(attempts.length).toBeLessThanOrEqual(2 * 4);
    for (const [k, a] of attempts.entries()) {
      expect(a.error, `attempt ${k}`).toBeInstanceOf(VaultHttpError);
      expect(a.error, `attempt ${k}`).toMatchObject({ status: 421, code: 'NOT_LEADER', num: 6023 });
    }
    expect(attempts.map((a) => (a.error as VaultHttpError).leader)).toEqual([urls[1], urls[2], urls[0], urls[1], outsider.url]);
    for (const a of attempts) expect((e as Error).message).toContain(`${a.member}: vault service 421 NOT_LEADER`);
    // fetch sends each refused request twice (its own 421 resend).
    expect([...ring.map((m) => m.ops), forged.ops, outsider.infos + outsider.ops]).toEqual([4, 2, 2, 2, 0]);
    expect(await attemptsLeft(id)).toBe(5);
  }, 30_000);

  it('a 421 whose body is over the error body limit is not read: no leader followed, its status the error; an answer over the answer limit is not read either', async () => {
    const id = await registered('long-421');
    const leader = await member(vault.url);
    for (const chunked of [false, true]) {
      const long = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: leader.url, pad: MAX_ERROR_BODY_BYTES, chunked });
      const e = await rejectionOf(client([long.url, leader.url]).recover(id, PASSWORD));
      expect(e, `chunked ${chunked}`).toBeInstanceOf(VaultHttpError);
      expect(e, `chunked ${chunked}`).toMatchObject({ status: 421, code: 'HTTP_421', leader: undefined });
      expect((e as Error).message).toMatch(/error body over 8192 bytes \(not read\)/);
      expect(leader.ops + leader.infos).toBe(0);
    }
    // The same 421 within the limit is followed (a control: the padding alone does not change it).
    const short = await member(vault.url, { status: 421, code: 'NOT_LEADER', leader: leader.url, pad: MAX_ERROR_BODY_BYTES - 200 });
    expect((await client([short.url, leader.url]).recover(id, PASSWORD)).ok).toBe(true);
    expect(leader.ops).toBe(2);
    // A success over the answer limit: no usable answer (the LoginStart was sent: not moved on).
    const huge = await member(vault.url, { status: 200, code: 'NOT_AN_ERROR', pad: MAX_ANSWER_BODY_BYTES });
    const t = await rejectionOf(client([huge.url, leader.url]).recover(id, PASSWORD));
    expect(t).toBeInstanceOf(VaultTransportError);
    expect(t).not.toBeInstanceOf(VaultMembersError);
    expect((t as VaultTransportError).unsent).toBe(false);
    expect((t as Error).message).toMatch(/over 65536 bytes \(not read\)/);
    expect(leader.ops).toBe(2);
    expect(await attemptsLeft(id)).toBe(5);
  }, 30_000);

  it('a member with another enclave key is refused by name, before it gets any operation, even after a member that is down', async () => {
    const id = await registered('stranger');
    const other = await member(stranger.url);
    const down = await refusingUrl();
    for (const urls of [[other.url, vault.url], [down, other.url, vault.url]]) {
      const e = await rejectionOf(client(urls).recover(id, PASSWORD));
      expect(e).toBeInstanceOf(VaultKeyMismatchError);
      expect((e as VaultKeyMismatchError).member).toBe(other.url);
      expect((e as Error).message).toMatch(/does not have the pinned enclave key/);
    }
    expect(other.ops).toBe(0);
    expect(await attemptsLeft(id)).toBe(5);
    // The relay's ready() finds it without an operation.
    expect(await rejectionOf(httpRelay({ baseUrl: [other.url], enclavePublicKey: vault.vault.info.enclavePublicKey }).ready())).toBeInstanceOf(VaultKeyMismatchError);
  }, 30_000);

  it('a LoginStart whose connection is reset after it was sent is not retried elsewhere: a typed transport error, the next member saw nothing', async () => {
    const id = await registered('reset');
    const resets = await member(vault.url, 'reset');
    const next = await member(vault.url);
    const e = await rejectionOf(client([resets.url, next.url]).recover(id, PASSWORD));
    expect(e).toBeInstanceOf(VaultTransportError);
    expect(e).not.toBeInstanceOf(VaultMembersError);
    expect((e as VaultTransportError).unsent).toBe(false);
    expect(resets.ops).toBe(1);
    expect(next.infos + next.ops).toBe(0);
    expect(await attemptsLeft(id)).toBe(5); // nothing reached the vault: the reset member never passed it on
  }, 30_000);

  it('a Status whose connection is reset is asked of the next member (it charges and changes nothing)', async () => {
    const id = await registered('status');
    const resets = await member(vault.url, 'reset');
    const next = await member(vault.url);
    const st = await client([resets.url, next.url]).status(id);
    expect(st).toMatchObject({ type: 'StatusResult', attemptsRemaining: 5 });
    expect([resets.ops, next.ops]).toEqual([1, 1]);
  }, 30_000);

  it('503: NOT_READY and SHUTTING_DOWN move any request; UNAVAILABLE only a read-only one', async () => {
    const id = await registered('503');
    for (const code of ['NOT_READY', 'SHUTTING_DOWN']) {
      const busy = await member(vault.url, { status: 503, code });
      expect((await client([busy.url, vault.url]).recover(id, PASSWORD)).ok, code).toBe(true);
      expect(busy.ops).toBe(1);
    }
    // UNAVAILABLE is also the answer when a device died with the request inside (a guess may be charged).
    const unavailable = await member(vault.url, { status: 503, code: 'UNAVAILABLE' });
    const next = await member(vault.url);
    expect(await rejectionOf(client([unavailable.url, next.url]).recover(id, PASSWORD))).toMatchObject({ name: 'VaultHttpError', status: 503, code: 'UNAVAILABLE' });
    expect(next.ops).toBe(0);
    expect((await client([unavailable.url, next.url]).status(id)).type).toBe('StatusResult');
    expect(next.ops).toBe(1);
    // Other answers are the member's: a 500 is not moved on.
    const failing = await member(vault.url, { status: 500, code: 'ENCLAVE_FAULT' });
    expect(await rejectionOf(client([failing.url, vault.url]).status(id))).toMatchObject({ name: 'VaultHttpError', code: 'ENCLAVE_FAULT' });
  }, 60_000);

  it('one URL: no probe without a pinned key, and the member failing is its own error', async () => {
    const id = await registered('one');
    const only = await member(vault.url);
    const c = new EscrowClient({
      relay: httpRelay({ baseUrl: only.url }),
      enclavePublicKey: vault.vault.info.enclavePublicKey,
      suite,
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ...wallClockClientExtras(issuer),
    });
    expect((await c.recover(id, PASSWORD)).ok).toBe(true);
    expect([only.infos, only.ops]).toEqual([0, 2]);
    await only.close();
    const e = await rejectionOf(c.status(id));
    expect(e).toBeInstanceOf(VaultTransportError);
    expect(e).not.toBeInstanceOf(VaultMembersError);
  }, 30_000);
});
