/**
 * Fuzz target: every endpoint of the HTTP vault service (host/service/, `startService` on port 0
 * with enclave devices in worker threads, host rate limits off so inputs reach the enclave).
 * Skipped when host/service/server.ts does not exist. A canary record is registered through the
 * service (known backup key and password) before the run.
 *
 * Input: one selector byte, then the payload.
 *   bits 0-1  route: 0 ops of the canary record, 1 ops of a record id taken from the payload (a
 *             length byte, the id, then the body), 2 /v1/vault, 3 a GET of /health, /metrics or
 *             an odd path (bits 2-3)
 *   bits 2-3  method: GET, POST, PUT, DELETE (for route 3: which path)
 *   bit 4     a wrong Content-Type
 *   bit 5     the body is the payload as is (otherwise {"message": base64url(payload)})
 *   bit 6     the payload is a ClientRequest body: seal it end to end to the enclave first, so it
 *             reaches the handlers (with bit 5 clear); its `auth` field is the code of a token
 *             kind (lib/auth.ts: one byte, replaced with a token of that kind for the record at
 *             the wall clock; empty stays empty; longer is sent as is)
 *   bit 7     raw mode: the payload goes as raw bytes on a fresh TCP connection
 * The service is provisioned with the fuzz issuer set (lib/auth.ts), its early token check off
 * (a host that skips its own checks: every operation reaches the enclave); the driver's own operations
 * carry that issuer's valid tokens.
 * Oracle: every request is answered (within the per-input bound), with a status from the API's
 * table; an error answer is the JSON envelope with a known code and number and no internal detail
 * (stack, path); no 5xx; no byte of the canary backup key or password in any answer or log line;
 * /health stays 200; the canary's attempts never increase (Status through the vault); a sealed
 * operation on the canary whose token the driver chose bad is answered with the sealed fault for
 * that kind, and charges no guess.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { ClientRequests, ClientResponses } from '../../../enclave/api/messages.ts';
import type { ClientRequest } from '../../../enclave/api/messages.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../../../client/escrow.ts';
import type { Relay } from '../../../client/escrow.ts';
import { authFor, EXPECTED_FAULT, FUZZ_AUTH, TokenBook } from '../lib/auth.ts';
import type { TokenKind } from '../lib/auth.ts';
import { CANARY_A, CANARY_B } from '../lib/canary.ts';
import { SecretScanner, expectAnswer, violation } from '../lib/oracle.ts';
import { CONTEXT } from '../lib/vault.ts';
import { rawExchange } from '../../helpers/streams.ts';

export const name = 'http';
export const weight = 2;
export const maxInputLength = 1 + 8192;
export const timeoutMs = 5000;

const SERVER = resolve(import.meta.dirname, '../../../host/service/server.ts');
const ERRORS = resolve(import.meta.dirname, '../../../host/service/error-codes.ts');
const WIRE = resolve(import.meta.dirname, '../../../enclave/api/http.ts');

/** What this target uses of the service (typed here, so the target compiles without it). */
interface Service {
  url: string;
  vault: { submit(recordId: Uint8Array, message: Uint8Array): Promise<{ sealed: boolean; response: Uint8Array }>; info: { enclavePublicKey: Uint8Array } };
  close(): Promise<void>;
}

interface Ctx {
  svc: Service;
  dir: string;
  logs: string[];
  pk: Uint8Array;
  codes: Map<string, { num: number; status: number }>;
  toBase64url: (b: Uint8Array) => string;
  attempts: number;
}

let ctx: Ctx | null = null;
const scanner = new SecretScanner([
  { name: 'backup-key/canary-a', bytes: CANARY_A.backupKey },
  { name: 'password/canary-a', bytes: CANARY_A.password },
]);
let last: string | undefined;
/** The issuer's valid token per record id, at the wall clock (the service's devices use it). */
const tokens = new TokenBook(() => Date.now());
const td = new TextDecoder();

export function outcome(): string | undefined {
  return last;
}

/** The canary's attempts remaining, through the vault (not HTTP); null when an input deleted it. */
async function directStatus(c: Ctx): Promise<number | null> {
  const { message, openResponse } = await sealRequest(c.pk, CANARY_A.recordId, encodeMessage(ClientRequests, { type: 'Status', auth: tokens.bytes(CANARY_A.recordId) }));
  const r = await c.svc.vault.submit(CANARY_A.recordId, message);
  const st = decodeMessage(ClientResponses, r.sealed ? await openResponse(r.response) : r.response);
  scanner.scan('a Status answer', r.response);
  if (st.type === 'NotRegistered') return null;
  expectAnswer('not-serving', st, 'StatusResult', 'Status of the canary through the vault');
  return st.locked ? 0 : st.attemptsRemaining;
}

/** (Re-)registers the canary through the vault: a fresh record, not a refund. */
async function plant(c: Ctx, viaHttp: boolean): Promise<void> {
  const relay: Relay = viaHttp
    ? async (recordId, message) => {
        const res = await fetch(`${c.svc.url}/v1/records/${c.toBase64url(recordId)}/ops`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: c.toBase64url(message) }) });
        const body = (await res.json()) as { sealed: boolean; response: string };
        return { sealed: body.sealed, response: new Uint8Array(Buffer.from(body.response, 'base64url')) };
      }
    : (r, m) => c.svc.vault.submit(r, m);
  const del = await sealRequest(c.pk, CANARY_A.recordId, encodeMessage(ClientRequests, { type: 'Delete', auth: tokens.bytes(CANARY_A.recordId), authorization: undefined }));
  await c.svc.vault.submit(CANARY_A.recordId, del.message);
  const client = new EscrowClient({
    relay,
    enclavePublicKey: c.pk,
    suite: await fastSuite(CANARY_A.suite),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    auth: (id) => td.decode(tokens.bytes(id)),
    ksf: identityKsf,
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
  });
  await client.register(CANARY_A.recordId, CANARY_A.password, CANARY_A.backupKey, { attemptLimit: 200 });
  const now = await directStatus(c);
  if (now === null) violation('not-serving', 'the canary could not be registered');
  c.attempts = now;
}

export async function setup(): Promise<void> {
  const { startService } = (await import(pathToFileURL(SERVER).href)) as { startService(o: Record<string, unknown>): Promise<Service> };
  const { ErrorCode } = (await import(pathToFileURL(ERRORS).href)) as { ErrorCode: Record<string, { num: number; status: number }> };
  const { toBase64url } = (await import(pathToFileURL(WIRE).href)) as { toBase64url(b: Uint8Array): string };
  const dir = mkdtempSync(join(tmpdir(), 'bkv-fuzz-http-'));
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (logs.length < 10_000) logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const svc = await startService({ dataDir: dir, port: 0, partitions: 1, logger: pino({ level: 'info' }, sink), rateLimits: { record: false, address: false }, auth: FUZZ_AUTH, earlyAuth: false });
  ctx = { svc, dir, logs, pk: svc.vault.info.enclavePublicKey, codes: new Map(Object.entries(ErrorCode)), toBase64url, attempts: 0 };
  await plant(ctx, true);
}

export async function teardown(): Promise<void> {
  if (!ctx) return;
  await ctx.svc.close();
  for (const x of [ctx.dir, `${ctx.dir}.operator`]) rmSync(x, { recursive: true, force: true }); // and the token PINs' operator folder
  ctx = null;
}

export async function reset(): Promise<void> {
  await teardown();
  await setup();
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
const OTHER_PATHS = ['/health', '/metrics', '/v1/records//ops', '/v1/../v1/vault?x=%00'];
const STATUSES = new Set([200, 400, 401, 404, 405, 408, 409, 413, 415, 429, 431, 503]);

function checkAnswer(c: Ctx, where: string, status: number, text: string, contentType: string | null): void {
  scanner.scan(`the answer to ${where}`, text);
  if (!STATUSES.has(status)) violation(status >= 500 ? 'server-error' : 'http-status', `${where} was answered ${status}: ${text.slice(0, 300)}`);
  if (/\bat .*\.ts:\d+|node_modules|\/work\/|Error: /.test(text)) violation('detail-leak', `${where}: the answer carries internal detail: ${text.slice(0, 300)}`);
  if (status >= 400) {
    let err: { code?: string; num?: number; message?: string } | undefined;
    try {
      err = (JSON.parse(text) as { error?: typeof err }).error;
    } catch {
      violation('http-envelope', `${where}: error answer ${status} is not JSON: ${text.slice(0, 200)}`);
    }
    const known = err?.code ? c.codes.get(err.code) : undefined;
    if (!known || known.num !== err!.num || known.status !== status) violation('http-envelope', `${where}: error answer ${status} has an unknown code: ${text.slice(0, 200)}`);
    if (contentType !== null && !contentType.startsWith('application/json')) violation('http-envelope', `${where}: error answer with content-type ${contentType}`);
  }
}

/** The payload of a chunked body (HTTP/1.1 §7.1), as far as it is well-formed. */
function dechunk(body: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', i);
    if (eol < 0) return out;
    const n = parseInt(body.slice(i, eol), 16);
    if (!Number.isFinite(n) || n <= 0) return out;
    out += body.slice(eol + 2, eol + 2 + n);
    i = eol + 2 + n + 2;
  }
}


export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!ctx) await setup();
  if (!ctx) return;
  const c = ctx;
  const input = new Uint8Array(data);
  const sel = input[0] ?? 0;
  const payload = input.subarray(1);
  last = undefined;
  let reachedEnclave = false;
  let authLabel = '';
  /** A sealed operation on the canary with a token the driver chose bad: the canary's attempts before it. */
  let bad: { kind: Exclude<TokenKind, 'valid'>; type: string; attempts: number | null; open: ((b: Uint8Array) => Promise<Uint8Array>) | null } | null = null;

  if (sel & 0x80) {
    const text = await rawExchange(c.svc.url, payload, 1000, { end: true });
    scanner.scan('a raw exchange', text);
    if (text.length) {
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
      if (!m) violation('http-status', `a raw exchange was answered with no status line: ${JSON.stringify(text.slice(0, 120))}`);
      const status = Number(m[1]);
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let body = text.slice(head.length + 4);
      if (/\r\ntransfer-encoding: chunked/i.test(head)) body = dechunk(body);
      const ct = /\r\ncontent-type: ([^\r]*)/i.exec(text)?.[1] ?? null;
      if (status >= 400 || !STATUSES.has(status)) checkAnswer(c, 'a raw exchange', status, body, ct);
      last = `raw:${status}`;
    } else last = 'raw:closed';
  } else {
    const route = sel & 3;
    const method = route === 3 ? 'GET' : METHODS[(sel >> 2) & 3]!;
    // Route 1: the record id is in the payload (a length byte, then the id); the rest is the body.
    const idLen = route === 1 ? (payload[0] ?? 0) % 70 : 0;
    const recordId = route === 1 ? payload.subarray(1, 1 + idLen) : CANARY_A.recordId;
    const rest = route === 1 ? payload.subarray(1 + idLen) : payload;
    let path: string;
    if (route <= 1) path = `/v1/records/${c.toBase64url(recordId)}/ops`;
    else if (route === 2) path = '/v1/vault';
    else path = OTHER_PATHS[(sel >> 2) & 3]!;
    let body: Uint8Array | string | undefined;
    if (method !== 'GET') {
      if (sel & 0x20) body = rest;
      else {
        let msg: Uint8Array = rest;
        if (sel & 0x40) {
          // A client request: its token chosen by the code in its auth field (see the header).
          let plain: Uint8Array = rest;
          let req: ClientRequest | null = null;
          try {
            req = decodeMessage(ClientRequests, rest);
          } catch {
            req = null;
          }
          if (req) {
            const a = authFor(req.auth, recordId, CANARY_B.recordId, Date.now(), (id) => tokens.bytes(id));
            if (a.auth !== req.auth) plain = encodeMessage(ClientRequests, { ...req, auth: a.auth });
            if (route === 0 && a.kind && a.kind !== 'valid') {
              bad = { kind: a.kind, type: req.type, attempts: await directStatus(c), open: null };
            }
          }
          const sealed = await sealRequest(c.pk, recordId, plain);
          msg = sealed.message;
          if (bad) bad.open = sealed.openResponse;
        }
        body = JSON.stringify({ message: c.toBase64url(msg) });
      }
    }
    const headers: Record<string, string> = { 'content-type': sel & 0x10 ? 'text/plain' : 'application/json' };
    let res: Response;
    try {
      res = await fetch(c.svc.url + path, { method, headers, body: body as BodyInit | undefined, signal: AbortSignal.timeout(4000) });
    } catch (e) {
      violation('hang', `${method} ${path} got no answer: ${String(e)}`);
    }
    const text = await res.text();
    checkAnswer(c, `${method} ${path}`, res.status, text, res.headers.get('content-type'));
    reachedEnclave = res.status === 200 && route <= 1 && method === 'POST';
    if (bad && reachedEnclave) {
      const j = JSON.parse(text) as { sealed?: boolean; response?: string };
      const want = EXPECTED_FAULT[bad.kind];
      let got = 'an unsealed answer';
      if (j.sealed && j.response !== undefined) {
        try {
          const r = decodeMessage(ClientResponses, await bad.open!(new Uint8Array(Buffer.from(j.response, 'base64url'))));
          got = r.type === 'Fault' ? `Fault ${r.code}` : r.type;
        } catch (e) {
          got = `an answer that does not open (${String(e)})`;
        }
      }
      if (got !== `Fault ${want}`) violation('auth-bypass', `${bad.type} on the canary with a token of kind ${bad.kind} was answered ${got}, not the sealed Fault ${want}`);
      authLabel = `:${bad.kind}:${got}`;
    }
    last = `${route}:${method}:${res.status}:${res.status >= 400 ? ((JSON.parse(text) as { error: { code: string } }).error.code) : 'ok'}${authLabel}`;
  }

  for (const line of c.logs.splice(0)) scanner.scan('a log line', line);
  const health = await fetch(`${c.svc.url}/health`, { signal: AbortSignal.timeout(4000) });
  if (health.status !== 200) violation('not-serving', `/health answered ${health.status} after the input: ${await health.text()}`);
  else await health.text();
  if (reachedEnclave || sel & 0x80) {
    const now = await directStatus(c);
    if (now !== null && now > c.attempts) violation('guess-refunded', `the canary's attempts went from ${c.attempts} to ${now} without a valid KE3`);
    if (bad && reachedEnclave && now !== bad.attempts) violation('guess-without-token', `the canary's attempts went from ${bad.attempts} to ${now} after a ${bad.type} with a token of kind ${bad.kind}`);
    // Deleted by an input (Delete needs no proof), or few guesses left: plant it again.
    if (now === null || now < 20) await plant(c, false);
    else c.attempts = now;
  }
}
