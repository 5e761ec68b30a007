/**
 * The vault service over HTTP (host/service/) with the escrow client on the HTTP relay
 * (client/http-relay.ts): the whole escrow story; malformed, truncated, oversized and
 * replayed input on every endpoint; both host rate limiters (429 + Retry-After, and nothing
 * rate-limited reaches the enclave); /health and /metrics; log redaction; graceful shutdown of a
 * service in a child process under SIGTERM with requests in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { Handling } from '../../../enclave/api/codes.ts';
import { ClientRequests, ClientResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import type { ClientRequest } from '../../../enclave/api/messages.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { clientLoginStart } from '../../../enclave/opaque/client.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { EscrowClient } from '../../../client/escrow.ts';
import type { Relay } from '../../../client/escrow.ts';
import { VaultHttpError, fetchVaultInfo, httpRelay } from '../../../client/http-relay.ts';
import { startService } from '../../../host/service/server.ts';
import type { RunningService, ServiceOptions } from '../../../host/service/server.ts';
import { TokenBuckets, addressKey } from '../../../host/service/rate-limit.ts';
import { ReplayGuard } from '../../../host/service/replay.ts';
import { ErrorCode } from '../../../host/service/error-codes.ts';
import { AUTH_TOKEN_HEADER, fromBase64url, opsPath, toBase64url } from '../../../enclave/api/http.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { CONTEXT } from '../../helpers/vault-harness.ts';
import { makeTestIssuer, testIssuer } from '../../helpers/auth.ts';
import type { TestIssuer } from '../../helpers/auth.ts';
import { DEFAULT_KSF_BOUNDS } from '../../../client/escrow.ts';
import { readIssuerPrivate, readStoredAuth, mintToken } from '../../../host/auth/issuer.ts';
import { expectResponse } from '../../../enclave/api/expect.ts';
import { onJsonLines, rawExchange } from '../../helpers/streams.ts';

const te = new TextEncoder();
const root = resolve(import.meta.dirname, '../../..');
const dirs: string[] = [];
let suite: Suite;
let issuer: TestIssuer;
/** The identity KSF (fast) and its bound, for the tests' clients. */
const fastKsf = { ksf: identityKsf, ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true }, pacing: 'none' as const };

beforeAll(async () => {
  suite = await fastSuite('ristretto255-SHA512');
  issuer = await testIssuer();
});
afterAll(() => {
  for (const d of dirs.splice(0)) for (const x of [d, `${d}.operator`]) rmSync(x, { recursive: true, force: true }); // the data folder and its token PINs' operator folder
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bkv-svc-'));
  dirs.push(d);
  return d;
}

interface Svc {
  svc: RunningService;
  logs: string[];
  pk: Uint8Array;
}

async function start(opts: Partial<ServiceOptions> = {}): Promise<Svc> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const svc = await startService({ dataDir: tempDir(), port: 0, partitions: 1, logger: pino({ level: 'info' }, sink), auth: issuer.config, ...opts });
  return { svc, logs, pk: svc.vault.info.enclavePublicKey };
}

function client(s: Svc, opts: { token?: string; wrap?: (r: Relay) => Relay; relay?: Relay } = {}): EscrowClient {
  const relay = opts.relay ?? httpRelay({ baseUrl: s.svc.url, token: opts.token });
  return new EscrowClient({
    relay: opts.wrap ? opts.wrap(relay) : relay,
    enclavePublicKey: s.pk,
    suite,
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...fastKsf,
    auth: (rid) => issuer.token(rid),
  });
}

/** A client that bypasses HTTP (and so the host limits): for reading guess counts in tests. */
function directClient(s: Svc): EscrowClient {
  return client(s, { relay: (r, m) => s.svc.vault.submit(r, m) });
}

async function sealed(pk: Uint8Array, recordId: Uint8Array, req: ClientRequest) {
  return sealRequest(pk, recordId, encodeMessage(ClientRequests, req));
}

async function loginStartMessage(pk: Uint8Array, recordId: Uint8Array, auth?: Uint8Array): Promise<Uint8Array> {
  const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng: (n) => new Uint8Array(randomBytes(n)), ksf: identityKsf }, te.encode('guess'));
  return (await sealed(pk, recordId, { type: 'LoginStart', auth: auth ?? (await issuer.tokenBytes(recordId)), suite: SUITE_CODE['ristretto255-SHA512'], ke1 })).message;
}

/**
 * POSTs `body`. To an ops path it adds the test issuer's token for the path's record id (header
 * bkv-auth-token, for the service's early check) unless `headers` names one or `auth` is false.
 */
async function post(url: string, path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, auth = true) {
  const m = /^\/v1\/records\/([A-Za-z0-9_-]+)\/ops$/.exec(path);
  const rid = m ? fromBase64url(m[1]!) : null;
  if (auth && rid && rid.length > 0 && !(AUTH_TOKEN_HEADER in headers)) {
    try {
      headers = { ...headers, [AUTH_TOKEN_HEADER]: await issuer.token(rid) };
    } catch {
      // an id that is not UTF-8 has no token: sent without one
    }
  }
  const res = await fetch(url + path, { method: 'POST', headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: (() => { try { return JSON.parse(text) as Record<string, any>; } catch { return undefined; } })() };
}

function postOp(url: string, recordId: Uint8Array, message: Uint8Array, headers?: Record<string, string>, auth = true) {
  return post(url, opsPath(recordId), JSON.stringify({ message: toBase64url(message) }), headers, auth);
}

/** Writes raw bytes on a fresh connection; resolves with everything read until the server closes (or `waitMs`). */
function raw(url: string, text: string | Buffer, waitMs = 5000): Promise<string> {
  return rawExchange(url, text, waitMs);
}

function expectError(r: { status: number; json?: Record<string, any>; text: string }, status: number, code: string) {
  expect(r.status, r.text).toBe(status);
  expect(r.json?.error?.code).toBe(code);
  expect(r.json?.error?.num).toBeGreaterThanOrEqual(6000);
  expect(r.json?.error?.num).toBeLessThan(6100);
  expect(typeof r.json?.error?.message).toBe('string');
  expect(r.text).not.toMatch(/\bat .*\.ts:\d+|stack|node_modules|\/work\//);
}

async function attempts(s: Svc, recordId: Uint8Array): Promise<number | undefined> {
  const st = await directClient(s).status(recordId);
  return st.type === 'StatusResult' ? st.attemptsRemaining : undefined;
}

/** The value of one sample line (`name{labels}`), 0 when absent (a labelled series not yet seen). */
function metricValue(text: string, line: string): number {
  const l = text.split('\n').find((x) => x.startsWith(line + ' '));
  return l === undefined ? 0 : Number(l.slice(line.length + 1));
}

describe('wire format and limiter units', () => {
  it('base64url: round trip, canonical, strict', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const s = toBase64url(b);
        expect(s).toBe(Buffer.from(b).toString('base64url'));
        expect(Buffer.from(fromBase64url(s)!).equals(Buffer.from(b))).toBe(true);
      }),
    );
    for (const bad of ['A', 'AA==', 'AB', 'AAB', 'A+/A', 'AA AA', 'AAA=', 'é', 'AAAAA', '\u0000AAA']) expect(fromBase64url(bad), bad).toBeNull();
    expect(fromBase64url('')).toEqual(new Uint8Array(0));
  });

  it('token buckets: burst, refill, Retry-After, sweep and a bounded table', () => {
    let now = 0;
    const b = new TokenBuckets({ perMinute: 6, burst: 2 }, 3, () => now);
    expect(b.take('a')).toEqual({ ok: true });
    expect(b.take('a')).toEqual({ ok: true });
    expect(b.take('a')).toEqual({ ok: false, retryAfterMs: 10_000 });
    now = 5_000;
    expect(b.take('a')).toEqual({ ok: false, retryAfterMs: 5_000 });
    now = 10_000;
    expect(b.take('a')).toEqual({ ok: true });
    for (const k of ['b', 'c']) expect(b.take(k)).toEqual({ ok: true });
    expect(b.size).toBe(3);
    // Full of buckets that are not full: a new key is refused, and no bucket is dropped (dropping
    // 'a' would hand it a full burst again).
    expect(b.take('d')).toEqual({ ok: false, retryAfterMs: 1000 });
    expect(b.refusedFull).toBe(1);
    expect(b.take('a')).toEqual({ ok: false, retryAfterMs: 10_000 });
    // Once buckets have refilled, a full table makes room by dropping them.
    now = 30_000;
    expect(b.take('d')).toEqual({ ok: true });
    expect(b.size).toBe(1);
    now = 1e9;
    expect(b.sweep()).toBe(1);
    expect(b.size).toBe(0);
    expect(() => new TokenBuckets({ perMinute: 0, burst: 1 })).toThrow(RangeError);
  });

  it('address keys: IPv4, IPv4-mapped, IPv6 /64', () => {
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:0:1:aaaa::1')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });

  it('error codes: unique numbers in 6000-6099, every one documented in openapi.yaml', () => {
    const nums = Object.values(ErrorCode).map((e) => e.num);
    expect(new Set(nums).size).toBe(nums.length);
    for (const n of nums) expect(n >= 6000 && n < 6100).toBe(true);
    const spec = readFileSync(join(root, 'host/service/openapi.yaml'), 'utf8');
    expect(spec).toMatch(/^openapi: 3\.1\.\d/m);
    for (const [code, e] of Object.entries(ErrorCode)) {
      expect(spec, code).toContain(`${code} ${e.num} (${e.status})`);
      expect(spec, code).toContain(`- ${code}\n`);
    }
    for (const path of ['/v1/vault:', '/v1/records/{recordId}/ops:', '/health:', '/metrics:']) expect(spec).toContain(`  ${path}`);
  });

  it('replay guard: remembers within its window, bounded', () => {
    let now = 0;
    const g = new ReplayGuard({ windowMs: 1000, maxEntries: 2, now: () => now });
    const k = g.key(te.encode('r'), te.encode('m'));
    expect(k.length).toBe(16);
    expect(g.has(k)).toBe(false);
    g.remember(k);
    expect(g.has(k)).toBe(true);
    expect(g.has(g.key(te.encode('r2'), te.encode('m')))).toBe(false);
    expect(g.has(g.key(te.encode('r'), te.encode('m2')))).toBe(false);
    now = 1001;
    expect(g.has(k)).toBe(false);
    const [x, y, z] = ['x', 'y', 'z'].map((s) => g.key(te.encode(s), te.encode('m')));
    g.remember(x!);
    g.remember(y!);
    g.remember(z!);
    expect(g.size).toBe(2);
    expect(g.has(x!)).toBe(false); // the oldest went first
    expect(g.has(y!) && g.has(z!)).toBe(true);
    expect(() => g.remember(new Uint8Array(15))).toThrow(RangeError);
  });

  it('replay guard: agrees with a model under random operations, with index collisions and wrap-around', () => {
    for (let seed = 1; seed <= 5; seed++) {
      let now = 0;
      let r = seed;
      const rand = (n: number) => ((r = (r * 1103515245 + 12345) >>> 0) >>> 8) % n;
      const max = 1 + rand(40);
      const window = 50 + rand(200);
      const g = new ReplayGuard({ windowMs: window, maxEntries: max, now: () => now });
      const model: { k: string; until: number }[] = [];
      // Few distinct first bytes: many keys share an index home, so probing and backward shift run.
      const keyOf = (i: number) => {
        const k = new Uint8Array(16);
        k[0] = i % 3;
        k[5] = i & 0xff;
        k[6] = i >> 8;
        return k;
      };
      for (let step = 0; step < 4000; step++) {
        now += rand(5);
        const i = rand(300);
        const k = keyOf(i);
        const hex = Buffer.from(k).toString('hex');
        while (model.length && model[0]!.until <= now) model.shift();
        const live = model.some((e) => e.k === hex && e.until > now);
        expect(g.has(k), `seed ${seed} step ${step}`).toBe(live);
        if (rand(2) === 0) {
          g.remember(k);
          if (!live) {
            if (model.length === max) model.shift();
            model.push({ k: hex, until: now + window });
          }
        }
        expect(g.size).toBeLessThanOrEqual(max);
      }
    }
  });
});

describe('vault service', () => {
  let s: Svc;
  beforeAll(async () => {
    s = await start({
      partitions: 2,
      rateLimits: { record: { perMinute: 6000, burst: 100 }, address: false },
      headersTimeoutMs: 800,
      bodyTimeoutMs: 500,
    });
  });
  afterAll(async () => {
    await s?.svc.close();
  });

  it('GET /v1/vault gives what clients pin', async () => {
    const info = await fetchVaultInfo(s.svc.url);
    expect(info.apiVersion).toBe(1);
    expect(info.partitions).toBe(2);
    expect(Buffer.from(info.enclavePublicKey).equals(Buffer.from(s.pk))).toBe(true);
    expect([...info.serverPublicKeys.keys()].sort()).toEqual(['P256-SHA256', 'ristretto255-SHA512']);
    expect(Buffer.from(info.serverPublicKeys.get('ristretto255-SHA512')!).equals(Buffer.from(s.svc.vault.info.serverPublicKeys.get(1)!))).toBe(true);
  });

  it('register, wrong password, recover, change password, status, delete over HTTP', async () => {
    const c = client(s);
    const id = te.encode('alice@example');
    const key = new Uint8Array(randomBytes(32));
    const reg = await c.register(id, te.encode('pw-1'), key, { attemptLimit: 5 });
    expect(reg.attemptsRemaining).toBe(5);
    const wrong = await c.recover(id, te.encode('pw-x'));
    expect(wrong).toMatchObject({ ok: false, outcome: 'wrong-password', attemptsRemaining: 4 });
    const right = await c.recover(id, te.encode('pw-1'));
    expect(right.ok && Buffer.from(right.backupKey).equals(Buffer.from(key))).toBe(true);
    expect(right.ok && right.attemptsRemaining).toBe(5);
    const changed = await c.changePassword(id, te.encode('pw-1'), te.encode('pw-2'), { attemptLimit: 5 });
    expect(changed.ok).toBe(true);
    expect((await c.recover(id, te.encode('pw-1'))).ok).toBe(false);
    const again = await c.recover(id, te.encode('pw-2'));
    expect(again.ok && Buffer.from(again.backupKey).equals(Buffer.from(key))).toBe(true);
    expect(await c.status(id)).toMatchObject({ type: 'StatusResult', registered: 1, locked: 0, attemptsRemaining: 5, attemptLimit: 5 });
    expect(await c.delete(id, { backupKey: key })).toMatchObject({ type: 'Deleted' });
    expect(await c.status(id)).toMatchObject({ type: 'NotRegistered' });
  });

  it('unknown routes 404, wrong methods 405 with Allow', async () => {
    for (const path of ['/', '/v1', '/v1/vault/', '/v2/vault', '/v1/records/YWJj/ops/x', '/v1/records/YWJj', '/healthz', '/metrics/']) {
      const r = await fetch(s.svc.url + path);
      expectError({ status: r.status, text: await r.clone().text(), json: (await r.json()) as Record<string, any> }, 404, 'NOT_FOUND');
    }
    const cases: [string, string, string][] = [
      ['POST', '/v1/vault', 'GET'],
      ['DELETE', '/health', 'GET'],
      ['PUT', '/metrics', 'GET'],
      ['GET', '/v1/records/YWJj/ops', 'POST'],
      ['PATCH', '/v1/records/YWJj/ops', 'POST'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await fetch(s.svc.url + path, { method, ...(method !== 'GET' && { body: '{}' }) });
      const text = await r.text();
      expectError({ status: r.status, text, json: JSON.parse(text) }, 405, 'METHOD_NOT_ALLOWED');
      expect(r.headers.get('allow')).toBe(allow);
    }
  });

  it('POST /ops: wrong content type 415, malformed JSON and wrong fields 400', async () => {
    const id = te.encode('malformed');
    const body = JSON.stringify({ message: 'AAAA' });
    for (const ct of [undefined, 'text/plain', 'application/json; charset=latin1', 'application/jsonx', 'multipart/form-data']) {
      const r = await post(s.svc.url, opsPath(id), body, ct === undefined ? {} : { 'content-type': ct });
      if (ct === undefined) expect(r.status).toBe(415); // fetch labels a string body text/plain
      else expectError(r, 415, 'UNSUPPORTED_MEDIA_TYPE');
    }
    expect((await post(s.svc.url, opsPath(id), body, { 'content-type': 'Application/JSON; charset=UTF-8' })).status).toBe(200);
    for (const bad of ['', '{', '{"message":"AAAA"', 'nul', '\u00ff', '{"message":"AAAA"}}']) expectError(await post(s.svc.url, opsPath(id), bad), 400, 'MALFORMED_JSON');
    for (const bad of ['null', '[]', '"AAAA"', '7', '{}', '{"message":1}', '{"message":null}', '{"message":["AAAA"]}', '{"message":"AAAA","extra":1}', '{"Message":"AAAA"}']) {
      expectError(await post(s.svc.url, opsPath(id), bad), 400, 'BAD_REQUEST');
    }
  });

  it('POST /ops: bad base64url, empty and oversized messages 400', async () => {
    const id = te.encode('malformed');
    const long = toBase64url(new Uint8Array(4097));
    for (const m of ['', 'A', 'AA==', 'AB', 'A+/A', 'AA AA', 'AAAA\n', 'é', long]) {
      const r = await post(s.svc.url, opsPath(id), JSON.stringify({ message: m }));
      expectError(r, 400, 'BAD_MESSAGE');
      expect(r.json?.error?.field).toBe('message');
    }
    expect((await postOp(s.svc.url, id, new Uint8Array(4096))).status).toBe(200);
  });

  it('POST /ops: bad and oversized record ids 400, an overlong URL 431', async () => {
    const body = JSON.stringify({ message: 'AAAA' });
    for (const idText of ['', 'YWJj=', 'YW Jj', '%2F', 'YWJ', 'A', toBase64url(new Uint8Array(65)), 'A'.repeat(300)]) {
      expectError(await post(s.svc.url, `/v1/records/${idText}/ops`, body), 400, 'BAD_RECORD_ID');
    }
    expect((await postOp(s.svc.url, new Uint8Array(64).fill(1), new Uint8Array(50))).status).toBe(200);
    const huge = await raw(s.svc.url, `POST /v1/records/${'A'.repeat(9000)}/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(huge).toContain('"HEADERS_TOO_LARGE"');
  });

  it('oversized bodies 413 (declared, and chunked without a length)', async () => {
    const id = toBase64url(te.encode('big'));
    const big = JSON.stringify({ message: 'A'.repeat(17 * 1024) });
    expectError(await post(s.svc.url, `/v1/records/${id}/ops`, big), 413, 'PAYLOAD_TOO_LARGE');
    const chunk = 'x'.repeat(4096);
    const chunked = `POST /v1/records/${id}/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` + `1000\r\n${chunk}\r\n`.repeat(5) + '0\r\n\r\n';
    const r = await raw(s.svc.url, chunked);
    expect(r).toMatch(/^HTTP\/1\.1 413 /);
    expect(r).toContain('"PAYLOAD_TOO_LARGE"');
    expect(r.toLowerCase()).toContain('connection: close');
  });

  it('truncated input: a body that stops short 408, headers that never end 408, garbage 400', async () => {
    const id = toBase64url(te.encode('slow'));
    const t0 = performance.now();
    const body = await raw(s.svc.url, `POST /v1/records/${id}/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"message":"AA`);
    expect(body).toMatch(/^HTTP\/1\.1 408 /);
    expect(body).toContain('"REQUEST_TIMEOUT"');
    expect(performance.now() - t0).toBeLessThan(4000);
    const headers = await raw(s.svc.url, `POST /v1/records/${id}/ops HTTP/1.1\r\nHost: x\r\nContent-Type: appl`);
    expect(headers).toMatch(/^HTTP\/1\.1 408 /);
    expect(headers).toContain('"REQUEST_TIMEOUT"');
    const garbage = await raw(s.svc.url, 'HELLO THERE\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    // The client hangs up mid-body: nothing breaks.
    await raw(s.svc.url, `POST /v1/records/${id}/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mes`, 50);
    expect((await fetch(`${s.svc.url}/health`)).status).toBe(200);
  });

  it('ciphertext that does not open, or moved to another record: an unsealed fault, nothing charged', async () => {
    const c = client(s);
    const a = te.encode('owner-a');
    await c.register(a, te.encode('pw'), new Uint8Array(32).fill(3), { attemptLimit: 4 });
    const junk = await postOp(s.svc.url, a, new Uint8Array(randomBytes(120)));
    expect(junk.status).toBe(200);
    expect(junk.json).toMatchObject({ sealed: false });
    expect(decodeMessage(ClientResponses, fromBase64url(junk.json!.response as string)!)).toMatchObject({ type: 'Fault', code: Handling.BadPayload });
    const moved = await postOp(s.svc.url, te.encode('owner-b'), await loginStartMessage(s.pk, a));
    expect(moved.json).toMatchObject({ sealed: false });
    expect(await attempts(s, a)).toBe(4);
  });

  it('replayed sealed operations are refused (409) and change nothing', async () => {
    const sent: Uint8Array[] = [];
    const c = client(s, { wrap: (r) => (rid, m, meta) => (sent.push(m), r(rid, m, meta)) });
    const id = te.encode('replay-target');
    await c.register(id, te.encode('pw'), new Uint8Array(32).fill(9), { attemptLimit: 6 });
    expect((await c.recover(id, te.encode('pw'))).ok).toBe(true);
    expect(sent).toHaveLength(4); // RegisterStart, RegisterFinish, LoginStart, LoginFinish
    for (const m of sent) expectError(await postOp(s.svc.url, id, m), 409, 'REPLAYED');
    expect(await attempts(s, id)).toBe(6);
    expect((await c.recover(id, te.encode('pw'))).ok).toBe(true);
  });

  it('GET /health: ready when every partition is booted and loaded, 503 while one restarts', async () => {
    const ok = await fetch(`${s.svc.url}/health`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: 'ok', draining: false, auth: 'issuers', partitions: [{ partition: 0, ready: true }, { partition: 1, ready: true }] });
    const restarting = s.svc.vault.restartPartition(1);
    const down = await fetch(`${s.svc.url}/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: 'unavailable', partitions: [{ ready: true }, { ready: false }], error: { code: 'NOT_READY' } });
    await restarting;
    expect((await fetch(`${s.svc.url}/health`)).status).toBe(200);
  });

  it('GET /metrics: ops by outcome, latency, queue depth per partition, batches', async () => {
    const r = await fetch(`${s.svc.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    expect(metricValue(text, 'bkv_ops_total{outcome="ok"}')).toBeGreaterThan(0);
    expect(metricValue(text, 'bkv_ops_total{outcome="client-fault"}')).toBeGreaterThan(0);
    expect(metricValue(text, 'bkv_ops_total{outcome="rate-limited"}')).toBe(0);
    expect(metricValue(text, 'bkv_ops_total{outcome="server-error"}')).toBe(0);
    expect(text).toMatch(/bkv_http_request_duration_seconds_bucket\{le="0.005",method="POST",route="\/v1\/records\/\{recordId\}\/ops",status="200"\} \d+/);
    expect(metricValue(text, 'bkv_enclave_queue_depth{partition="0"}')).toBe(0);
    expect(metricValue(text, 'bkv_enclave_queue_depth{partition="1"}')).toBe(0);
    expect(metricValue(text, 'bkv_partition_ready{partition="1"}')).toBe(1);
    expect(metricValue(text, 'bkv_batch_size_count{partition="0"}') + metricValue(text, 'bkv_batch_size_count{partition="1"}')).toBeGreaterThan(0);
    expect(text).toMatch(/bkv_batch_duration_seconds_sum\{partition="\d"\} [\d.e-]+/);
    expect(text).toContain('bkv_rate_limit_buckets{limiter="record"}');
    expect(text).toContain('bkv_process_cpu_seconds_total');
    expect(text).not.toMatch(/records\/[A-Za-z0-9_-]+\/ops/);
  });

  it('enclave and storage failures answer 5xx with a stable code and no detail', async () => {
    const id = te.encode('on-a-closing-partition');
    const store = s.svc.vault.store;
    const original = store.applyBatch.bind(store);
    const { StorageError, StorageCode } = await import('../../../host/storage/types.ts');
    /** [what the store throws, the answer's code, what the answer must not show] */
    const failures: [() => Error, string, string][] = [
      [() => Object.assign(new Error('SQLITE_IOERR at /secret/path/vault.db'), { code: 'SQLITE_IOERR' }), 'INTERNAL', 'SQLITE'],
      [() => new StorageError(StorageCode.Io, 'disk on fire /secret/path', 'EIO'), 'STORAGE_ERROR', '/secret'],
    ];
    for (const [failure, code, hidden] of failures) {
      store.applyBatch = async () => {
        throw failure();
      };
      try {
        const r = await postOp(s.svc.url, id, await loginStartMessage(s.pk, id));
        expectError(r, 500, code);
        expect(r.text).not.toContain(hidden);
      } finally {
        store.applyBatch = original;
      }
    }
    const m = await (await fetch(`${s.svc.url}/metrics`)).text();
    expect(metricValue(m, 'bkv_ops_total{outcome="server-error"}')).toBe(2);
    expect(s.logs.some((l) => l.includes('"errName":"StorageError"') && l.includes('"level":50'))).toBe(true);
  });

  it('logs: one JSON line per request with the route template and a keyed record hash; no secret ever', async () => {
    const marker = `rid-${randomBytes(6).toString('hex')}`;
    const id = te.encode(marker);
    const password = `pw-${randomBytes(6).toString('hex')}`;
    const backupKey = new Uint8Array(randomBytes(32));
    const sent: Uint8Array[] = [];
    const received: Uint8Array[] = [];
    const c = client(s, {
      wrap: (r) => async (rid, m, meta) => {
        sent.push(m);
        const out = await r(rid, m, meta);
        received.push(out.response);
        return out;
      },
    });
    const before = s.logs.length;
    await c.register(id, te.encode(password), backupKey, { attemptLimit: 3 });
    await c.recover(id, te.encode('wrong'));
    const ok = await c.recover(id, te.encode(password));
    expect(ok.ok).toBe(true);
    await c.status(id);
    // Malformed requests that carry the secrets in their bodies and paths.
    await post(s.svc.url, opsPath(id), JSON.stringify({ message: toBase64url(backupKey) + '!', password }));
    await post(s.svc.url, opsPath(id), `{"message":"${Buffer.from(backupKey).toString('hex')}`);
    await post(s.svc.url, `/v1/records/${marker}!/ops`, JSON.stringify({ message: toBase64url(sent[0]!) }));
    const lines = s.logs.slice(before);
    expect(lines.length).toBeGreaterThanOrEqual(10);
    const planted = [
      marker,
      toBase64url(id),
      Buffer.from(id).toString('hex'),
      Buffer.from(id).toString('base64'),
      password,
      Buffer.from(backupKey).toString('hex'),
      toBase64url(backupKey),
      Buffer.from(backupKey).toString('base64'),
      ...sent.flatMap((m) => [toBase64url(m).slice(0, 24), Buffer.from(m).toString('hex').slice(0, 32), Buffer.from(m).toString('base64').slice(0, 24)]),
      ...received.map((m) => toBase64url(m).slice(0, 24)),
    ];
    for (const line of lines) {
      for (const secret of planted) expect(line.includes(secret), `log line leaks a planted secret: ${line}`).toBe(false);
      const obj = JSON.parse(line) as Record<string, unknown>;
      if (obj.msg !== 'request') continue;
      expect(obj.route === 'unparsed' || String(obj.route).startsWith('/')).toBe(true);
      expect(String(obj.route)).not.toMatch(/records\/[^{]/);
      expect(Object.keys(obj).filter((k) => !['level', 'time', 'pid', 'hostname', 'service', 'msg', 'method', 'route', 'status', 'ms', 'partition', 'record', 'sealed', 'limiter', 'code', 'errName', 'errCode'].includes(k))).toEqual([]);
    }
    const opLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o.route === '/v1/records/{recordId}/ops' && o.status === 200);
    const hashes = new Set(opLines.map((o) => o.record));
    expect(hashes.size).toBe(1); // one record, one keyed hash
    expect(String([...hashes][0])).toMatch(/^[0-9a-f]{16}$/);
    expect(opLines[0]).toMatchObject({ method: 'POST', partition: s.svc.vault.partitionOf(id) });
  });
});

interface Registered {
  s: Svc;
  c: EscrowClient;
  id: Uint8Array;
  /** How many operations have reached the enclave. */
  batchOps: () => Promise<number>;
}

/**
 * A service whose record bucket holds `burst` tokens (one more a minute), without an address
 * limit, and a record `name` registered through the client with password 'pw' (two tokens spent).
 */
async function withRegistered(burst: number, name: string, attemptLimit: number, body: (r: Registered) => Promise<void>): Promise<void> {
  const s = await start({ rateLimits: { record: { perMinute: 1, burst }, address: false } });
  try {
    const c = client(s);
    const id = te.encode(name);
    await c.register(id, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit });
    const batchOps = async () => metricValue(await (await fetch(`${s.svc.url}/metrics`)).text(), 'bkv_batch_size_sum{partition="0"}');
    await body({ s, c, id, batchOps });
  } finally {
    await s.svc.close();
  }
}

describe('host rate limits', () => {
  it("the early issuer-token check: no token 401, another id's or a rogue issuer's 403, before the record's bucket; the user is still served", async () => {
    await withRegistered(3, 'early-victim', 5, async ({ s, c, id, batchOps }) => {
      const opsBefore = await batchOps();
      const rogue = await makeTestIssuer('rogue');
      for (let i = 0; i < 5; i++) {
        const m = await loginStartMessage(s.pk, id);
        expectError(await postOp(s.svc.url, id, m, undefined, false), 401, 'AUTH_TOKEN_REQUIRED');
        expectError(await postOp(s.svc.url, id, m, { 'content-type': 'application/json', [AUTH_TOKEN_HEADER]: await issuer.token('mallory') }), 403, 'AUTH_TOKEN_REFUSED');
        expectError(await postOp(s.svc.url, id, m, { 'content-type': 'application/json', [AUTH_TOKEN_HEADER]: await rogue.token(id) }), 403, 'AUTH_TOKEN_REFUSED');
      }
      // None of the 15 reached the enclave or took the record's last token: the user is served.
      expect(await batchOps()).toBe(opsBefore);
      expect(await c.status(id)).toMatchObject({ type: 'StatusResult', attemptsRemaining: 5 });
    });
  });

  it('per record: 429 with Retry-After, and rate-limited operations never reach the enclave', async () => {
    await withRegistered(4, 'victim', 10, async ({ s, c, id, batchOps }) => {
      const opsBefore = await batchOps();
      // A stranger fires 8 login starts at once: 2 tokens are left, so 2 reach the enclave.
      const results = await Promise.all(Array.from({ length: 8 }, async () => postOp(s.svc.url, id, await loginStartMessage(s.pk, id))));
      const passed = results.filter((r) => r.status === 200);
      const limited = results.filter((r) => r.status === 429);
      expect(passed).toHaveLength(2);
      expect(limited).toHaveLength(6);
      for (const r of limited) {
        expectError(r, 429, 'RATE_LIMITED');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(Number(r.headers.get('retry-after'))).toBeLessThanOrEqual(60);
      }
      expect((await batchOps()) - opsBefore).toBe(2);
      expect(await attempts(s, id)).toBe(8); // exactly the two that passed were charged
      // The next attempt through the client relay: a typed error with the wait exposed.
      const e = await c.recover(id, te.encode('pw')).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(VaultHttpError);
      expect((e as VaultHttpError).rateLimited).toBe(true);
      expect((e as VaultHttpError).num).toBe(6008);
      expect((e as VaultHttpError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(await attempts(s, id)).toBe(8);
      // Another record is not affected.
      expect((await client(s).status(te.encode('someone-else'))).type).toBe('NotRegistered');
      const m = await (await fetch(`${s.svc.url}/metrics`)).text();
      expect(metricValue(m, 'bkv_ops_total{outcome="rate-limited"}')).toBe(7);
      expect(s.logs.filter((l) => l.includes('"limiter":"record"'))).toHaveLength(7);
    });
  });

  it('per address, and the bearer token: 401 before any bucket is touched', async () => {
    const s = await start({ token: 'let-me-in', rateLimits: { record: false, address: { perMinute: 1, burst: 5 } } });
    try {
      const noToken = await postOp(s.svc.url, te.encode('x'), new Uint8Array(60));
      expectError(noToken, 401, 'UNAUTHORIZED');
      expect(noToken.headers.get('www-authenticate')).toBe('Bearer');
      expectError(await postOp(s.svc.url, te.encode('x'), new Uint8Array(60), { 'content-type': 'application/json', authorization: 'Bearer let-me-out' }), 401, 'UNAUTHORIZED');
      expect((await fetch(`${s.svc.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${s.svc.url}/health`)).status).toBe(200);
      const info = await fetchVaultInfo(s.svc.url, { token: 'let-me-in' }); // 1 token of 5
      expect(info.partitions).toBe(1);
      const c = client(s, { token: 'let-me-in' });
      const ids = Array.from({ length: 6 }, (_, i) => te.encode(`user-${i}`));
      const out = await Promise.all(ids.map((id) => c.status(id).then(() => 'ok', (e: unknown) => e)));
      expect(out.filter((o) => o === 'ok')).toHaveLength(4);
      const errs = out.filter((o): o is VaultHttpError => o instanceof VaultHttpError);
      expect(errs).toHaveLength(2);
      for (const e of errs) {
        expect(e.status).toBe(429);
        expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      }
      const e = await fetchVaultInfo(s.svc.url, { token: 'let-me-in' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(VaultHttpError);
      expect((e as VaultHttpError).code).toBe('RATE_LIMITED');
      expect(s.logs.filter((l) => l.includes('"limiter":"address"'))).toHaveLength(3);
    } finally {
      await s.svc.close();
    }
  });
});

describe('without the host replay guard', () => {
  it('the enclave still makes a replayed operation gain nothing (at most the one guess any login start costs)', async () => {
    const s = await start({ replayWindowMs: 0, rateLimits: { record: false, address: false } });
    try {
      const sent: Uint8Array[] = [];
      const c = client(s, { wrap: (r) => (rid, m, meta) => (sent.push(m), r(rid, m, meta)) });
      const id = te.encode('replay-no-guard');
      const key = new Uint8Array(32).fill(5);
      await c.register(id, te.encode('pw'), key, { attemptLimit: 6 });
      expect((await c.recover(id, te.encode('pw'))).ok).toBe(true);
      const [, registerFinish, loginStart, loginFinish] = sent;
      const rf = await postOp(s.svc.url, id, registerFinish!);
      expect(rf.status).toBe(200); // sealed to the original sender's key; the stage was already used
      const lf = await postOp(s.svc.url, id, loginFinish!);
      expect(lf.status).toBe(200);
      expect(await attempts(s, id)).toBe(6);
      const ls = await postOp(s.svc.url, id, loginStart!);
      expect(ls.status).toBe(200);
      expect(await attempts(s, id)).toBeGreaterThanOrEqual(5);
      const again = await c.recover(id, te.encode('pw'));
      expect(again.ok && Buffer.from(again.backupKey).equals(Buffer.from(key))).toBe(true);
    } finally {
      await s.svc.close();
    }
  });
});

describe('graceful shutdown (child process)', () => {
  function spawnService(dataDir: string, env: Record<string, string> = {}) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/fixtures/service-entry.ts')], {
      cwd: root,
      env: { ...process.env, BKV_DATA_DIR: dataDir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, any>[] = [];
    let stderr = '';
    const waiters: { pred: (l: Record<string, any>) => boolean; resolve: (l: Record<string, any>) => void }[] = [];
    onJsonLines(child.stdout, (l) => {
      lines.push(l);
      for (const w of waiters.splice(0)) {
        if (w.pred(l)) w.resolve(l);
        else waiters.push(w);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
    const waitFor = (pred: (l: Record<string, any>) => boolean) =>
      new Promise<Record<string, any>>((res, rej) => {
        const found = lines.find(pred);
        if (found) return res(found);
        waiters.push({ pred, resolve: res });
        void exited.then(() => rej(new Error(`service exited early: ${stderr}`)));
      });
    return { child, lines, exited, waitFor, stderr: () => stderr };
  }

  it('SIGTERM with requests in flight: every acknowledged request completes, then exit 0', async () => {
    const dataDir = tempDir();
    const svc = spawnService(dataDir);
    const { url } = await svc.waitFor((l) => l.msg === 'listening');
    const info = await fetchVaultInfo(url);
    // The service runs in development mode (as `bkv serve` without --auth-issuer): its issuer key is in the data folder.
    const dev = readIssuerPrivate(join(dataDir, 'auth', 'issuer.key'));
    const devToken = (rid: Uint8Array) => mintToken(dev, { subject: new TextDecoder().decode(rid) });
    const c = new EscrowClient({ relay: httpRelay({ baseUrl: url }), enclavePublicKey: info.enclavePublicKey, suite, rng: (n) => new Uint8Array(randomBytes(n)), context: CONTEXT, ...fastKsf, auth: devToken });
    // 360 login starts over 24 records: 15 each, within one record's quota of open sessions (16),
    // so every one is charged; enough batches that the queue is seen non-empty between two polls
    // of /metrics even when the machine is fast or the polls slow (with 120 over 8 records a busy CI
    // machine once answered them all between two polls).
    const ids = Array.from({ length: 24 }, (_, i) => te.encode(`busy-${i}`));
    for (const id of ids) await c.register(id, te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 200 });
    const tokens = await Promise.all(ids.map(async (id) => te.encode(await devToken(id))));
    const messages = await Promise.all(Array.from({ length: 15 * ids.length }, (_, i) => loginStartMessage(info.enclavePublicKey, ids[i % ids.length]!, tokens[i % ids.length]!)));
    const results = messages.map((m, i) =>
      postOp(url, ids[i % ids.length]!, m, { 'content-type': 'application/json', [AUTH_TOKEN_HEADER]: new TextDecoder().decode(tokens[i % ids.length]!) }).then(
        (r) => r.status,
        () => 'network' as const,
      ),
    );
    // The signal comes while operations wait in the engine's queue for the next batch (so they
    // were accepted and are in flight), seen on /metrics; not at the first answer, which can be
    // the last one when every request landed in one batch.
    const t0 = Date.now();
    for (;;) {
      const m = await (await fetch(`${url}/metrics`)).text();
      // Any partition's queue.
      const depth = [...m.matchAll(/^bkv_enclave_queue_depth\{partition="\d+"\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
      if (depth > 0) break;
      if (Date.now() - t0 > 10_000) throw new Error('no operation ever waited in the queue');
    }
    svc.child.kill('SIGTERM');
    const statuses = await Promise.all(results);
    const exit = await svc.exited;
    expect(exit, svc.stderr()).toEqual({ code: 0, signal: null });
    const shutdown = svc.lines.find((l) => l.msg === 'shutting down')!;
    expect(shutdown.inFlight).toBeGreaterThan(0); // the signal came while requests were being handled
    expect(svc.lines.find((l) => l.msg === 'stopped')).toMatchObject({ unfinished: 0 });
    const ok = statuses.filter((x) => x === 200).length;
    expect(ok).toBeGreaterThanOrEqual(shutdown.inFlight as number);
    for (const x of statuses) expect([200, 503, 'network']).toContain(x);
    // Durable and exact: the guesses charged are those of the answered login starts.
    const host = await VaultHost.open({ dataDir, auth: readStoredAuth(dataDir)!.config });
    try {
      const direct = new EscrowClient({ relay: (r, m) => host.submit(r, m), enclavePublicKey: info.enclavePublicKey, suite, rng: (n) => new Uint8Array(randomBytes(n)), context: CONTEXT, ...fastKsf, auth: devToken });
      let charged = 0;
      for (const id of ids) {
        const st = expectResponse(await direct.status(id), 'StatusResult', 'Status');
        charged += 200 - st.attemptsRemaining;
      }
      expect(charged).toBe(ok);
    } finally {
      await host.close();
    }
  });

  it('a second signal exits at once', async () => {
    const dataDir = tempDir();
    const svc = spawnService(dataDir, { BKV_BODY_TIMEOUT_MS: '20000' });
    const { url } = await svc.waitFor((l) => l.msg === 'listening');
    // A request whose body never finishes keeps the graceful shutdown waiting.
    const { hostname, port } = new URL(url);
    const sock = connect(Number(port), hostname);
    sock.on('error', () => undefined);
    sock.write(`POST /v1/records/YWJj/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mess`);
    await new Promise((r) => setTimeout(r, 200));
    svc.child.kill('SIGTERM');
    await svc.waitFor((l) => l.msg === 'shutting down');
    const t0 = performance.now();
    svc.child.kill('SIGINT');
    const exit = await svc.exited;
    sock.destroy();
    expect(exit.code).toBe(130);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});
