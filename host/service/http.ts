/**
 * Small, strict HTTP helpers for the vault service on node:http: the JSON content-type check, a
 * body reader with a size limit (413) and a deadline (408), and JSON / error answers. An answer
 * that refuses a body it did not read closes the connection, so unread bytes never become the
 * next request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
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
