/**
 * CORS for the browser client (host/service/http.ts `corsPolicy`, the `corsOrigins` option of
 * createVaultHandler and `bkv serve --cors-origin`): a listed origin gets
 * `Access-Control-Allow-Origin` (its own origin, never `*`, never credentials) and its preflight
 * answered; another origin gets no CORS header and its preflight is refused as before; unset, no
 * CORS header at all. Origins that are not serialized origins are refused before a vault opens.
 * Chromium honouring it end to end: test/package/browser.mjs (page and service on two origins).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVaultHandler, type VaultHandler } from '../../../host/service/server.ts';
import { parseCorsOrigin } from '../../../host/service/http.ts';
import { AUTH_TOKEN_HEADER, opsPath } from '../../../enclave/api/http.ts';
import { testIssuer } from '../../helpers/auth.ts';

const APP = 'https://app.example';
const OTHER = 'https://evil.example';
const scratch = mkdtempSync(join(tmpdir(), 'bkv-cors-'));
const served: { handler: VaultHandler; server: Server; url: string }[] = [];

async function serve(name: string, corsOrigins?: string[]): Promise<string> {
  const dataDir = join(scratch, name);
  const handler = await createVaultHandler({
    dataDir, partitions: 1, tokenPins: { operatorDir: `${dataDir}.operator` }, auth: (await testIssuer()).config, logger: pino({ level: 'silent' }),
    ...(corsOrigins && { corsOrigins }),
  });
  const server = createServer(handler.listener);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  served.push({ handler, server, url });
  return url;
}

/** One request with the headers a browser would send (fetch forbids setting Origin). */
function send(url: string, method: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((ok, fail) => {
    const req = request(url, { method, headers }, (res) => {
      res.resume();
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers }));
    });
    req.on('error', fail);
    req.end();
  });
}

const preflight = (origin: string) => ({ origin, 'access-control-request-method': 'POST', 'access-control-request-headers': `content-type,${AUTH_TOKEN_HEADER}` });
const corsHeaders = (h: IncomingHttpHeaders) => Object.keys(h).filter((k) => k.startsWith('access-control-'));
const ops = opsPath(new TextEncoder().encode('alice@example'));

let withCors: string;
let without: string;
beforeAll(async () => {
  withCors = await serve('cors', [APP, 'http://localhost:8000']);
  without = await serve('plain');
}, 60_000);
afterAll(async () => {
  for (const s of served) {
    await new Promise<void>((ok) => s.server.close(() => ok()));
    await s.handler.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

describe('CORS', () => {
  it('a listed origin: its own origin allowed (not *, no credentials), Retry-After exposed, Vary: Origin, on success and on errors', async () => {
    for (const path of ['/v1/vault', '/health', '/no-such-route']) {
      const r = await send(`${withCors}${path}`, 'GET', { origin: APP });
      expect(r.status, path).toBe(path === '/no-such-route' ? 404 : 200);
      expect(r.headers['access-control-allow-origin'], path).toBe(APP);
      expect(r.headers['access-control-expose-headers']).toBe('retry-after');
      expect(r.headers['access-control-allow-credentials']).toBeUndefined();
      expect(r.headers.vary).toBe('Origin');
    }
    expect((await send(`${withCors}/v1/vault`, 'GET', { origin: 'http://localhost:8000' })).headers['access-control-allow-origin']).toBe('http://localhost:8000');
  });

  it('a listed origin\'s preflight is answered 204 with the methods and headers the client sends', async () => {
    const r = await send(`${withCors}${ops}`, 'OPTIONS', preflight(APP));
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe(APP);
    expect(r.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(r.headers['access-control-allow-headers']!.split(', ')).toEqual(expect.arrayContaining(['content-type', 'authorization', AUTH_TOKEN_HEADER]));
    expect(Number(r.headers['access-control-max-age'])).toBeGreaterThan(0);
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('another origin: no CORS header, its preflight refused (405) as without CORS', async () => {
    for (const origin of [OTHER, 'https://app.example:8443', 'http://app.example', 'null']) {
      const get = await send(`${withCors}/v1/vault`, 'GET', { origin });
      expect(get.status).toBe(200);
      expect(corsHeaders(get.headers), origin).toEqual([]);
      expect(get.headers.vary).toBe('Origin');
      const pre = await send(`${withCors}${ops}`, 'OPTIONS', preflight(origin));
      expect(pre.status, origin).toBe(405);
      expect(corsHeaders(pre.headers), origin).toEqual([]);
    }
    // an OPTIONS that is not a preflight (no Access-Control-Request-Method) is routed as before
    expect((await send(`${withCors}${ops}`, 'OPTIONS', { origin: APP })).status).toBe(405);
  });

  it('unset: no CORS header and no Vary, for any origin, and preflights refused', async () => {
    const get = await send(`${without}/v1/vault`, 'GET', { origin: APP });
    expect(get.status).toBe(200);
    expect(corsHeaders(get.headers)).toEqual([]);
    expect(get.headers.vary).toBeUndefined();
    const pre = await send(`${without}${ops}`, 'OPTIONS', preflight(APP));
    expect(pre.status).toBe(405);
    expect(corsHeaders(pre.headers)).toEqual([]);
  });

  it('refuses what is not a serialized origin, before a vault opens', async () => {
    for (const bad of ['*', 'null', '', 'app.example', 'https://app.example/', 'https://app.example/path', 'https://user@app.example', 'ftp://app.example', 'https://APP.example']) {
      expect(() => parseCorsOrigin(bad), bad).toThrow(/origin/);
    }
    expect(parseCorsOrigin('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080');
    await expect(serve('refused', [APP, 'https://app.example/'])).rejects.toThrow(/did you mean "https:\/\/app.example"/);
    expect(existsSync(join(scratch, 'refused'))).toBe(false);
  });
});
