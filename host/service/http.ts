/**
 * Small, strict HTTP helpers for the vault service on node:http: the JSON content-type check, a
 * body reader with a size limit (413) and a deadline (408), JSON / error answers, and CORS for
 * listed origins. An answer that refuses a body it did not read closes the connection, so unread
 * bytes never become the next request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AUTH_TOKEN_HEADER } from '../../enclave/api/http.ts';
import { ServiceError } from './error-codes.ts';

export const DEFAULT_BODY_LIMIT = 16 * 1024;

/** application/json, optionally with `charset=utf-8`; nothing else. */
export function requireJson(req: IncomingMessage): void {
  const ct = req.headers['content-type'];
  if (!ct) throw new ServiceError('UNSUPPORTED_MEDIA_TYPE');
  const [type, ...params] = ct.split(';').map((s) => s.trim().toLowerCase());
  if (type !== 'application/json') throw new ServiceError('UNSUPPORTED_MEDIA_TYPE');
  for (const p of params) {
    if (p !== 'charset=utf-8' && p !== 'charset="utf-8"') throw new ServiceError('UNSUPPORTED_MEDIA_TYPE');
  }
}

/** Reads the whole body, at most `limit` bytes, within `timeoutMs`. */
export function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new ServiceError('PAYLOAD_TOO_LARGE'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: ServiceError | null) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) done(new ServiceError('PAYLOAD_TOO_LARGE'));
      else chunks.push(c);
    };
    const onEnd = () => done(null);
    const onError = () => done(new ServiceError('BAD_REQUEST'));
    const onAborted = () => done(new ServiceError('BAD_REQUEST'));
    const timer = setTimeout(() => done(new ServiceError('REQUEST_TIMEOUT')), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** Parses a JSON object whose keys are exactly `fields`, each a string. */
export function parseStringFields<K extends string>(body: Buffer, fields: readonly K[]): Record<K, string> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    throw new ServiceError('MALFORMED_JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ServiceError('BAD_REQUEST');
  const keys = Object.keys(value);
  for (const k of keys) if (!(fields as readonly string[]).includes(k)) throw new ServiceError('BAD_REQUEST', { field: k.slice(0, 64) });
  const out = {} as Record<K, string>;
  for (const f of fields) {
    const v = (value as Record<string, unknown>)[f];
    if (typeof v !== 'string') throw new ServiceError('BAD_REQUEST', { field: f });
    out[f] = v;
  }
  return out;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ServiceError, closeConnection = false): void {
  const headers: Record<string, string> = {};
  if (err.extra.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.extra.retryAfterSeconds);
  if (err.extra.allow) headers.allow = err.extra.allow;
  if (err.code === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer';
  if (closeConnection) headers.connection = 'close';
  sendJson(res, err.status, err.toJSON(), headers);
}

/**
 * A serialized origin (RFC 6454 §6.2, the Fetch standard's `Origin` header): `http` or `https`,
 * a host, an optional port; no path, query, credentials or trailing slash. `*` and `null` are
 * not origins here: the service names each browser origin it answers.
 */
export function parseCorsOrigin(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`CORS origin ${JSON.stringify(text)} is not a URL origin (scheme://host[:port])`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.origin !== text) {
    throw new Error(`CORS origin ${JSON.stringify(text)} is not a serialized origin (scheme://host[:port], nothing after it; did you mean ${JSON.stringify(u.origin)}?)`);
  }
  return u.origin;
}

/** How long a browser may cache a preflight answer (seconds). */
const CORS_MAX_AGE_S = 600;

/**
 * CORS (the Fetch standard, "CORS protocol") for the listed origins, or null when none is listed
 * (no CORS header then, ever). The returned function runs before routing: for a request whose
 * `Origin` is listed it sets `Access-Control-Allow-Origin` to that origin (never `*`, and never
 * `Access-Control-Allow-Credentials`: the API uses no cookies) and exposes `Retry-After`; it
 * answers a listed origin's preflight (`OPTIONS` with `Access-Control-Request-Method`) itself
 * with 204 and returns true. Any other origin gets no CORS header, so its browser withholds the
 * answer; its preflight goes on to routing (405, no CORS header). `Vary: Origin` on every answer,
 * since answers differ by origin.
 */
export function corsPolicy(origins: readonly string[] | undefined): ((req: IncomingMessage, res: ServerResponse) => boolean) | null {
  if (!origins || origins.length === 0) return null;
  const allowed = new Set(origins.map(parseCorsOrigin));
  return (req, res) => {
    res.setHeader('vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !allowed.has(origin)) return false;
    res.setHeader('access-control-allow-origin', origin);
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST',
        'access-control-allow-headers': `content-type, authorization, ${AUTH_TOKEN_HEADER}`,
        'access-control-max-age': String(CORS_MAX_AGE_S),
        'content-length': '0',
      });
      res.end();
      return true;
    }
    res.setHeader('access-control-expose-headers', 'retry-after');
    return false;
  };
}
