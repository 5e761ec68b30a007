/**
 * Structured JSON logs of the vault service (pino). One line per request:
 *
 *   { msg: 'request', method, route, status, ms, partition?, record?, code?, limiter?, errName?, errCode? }
 *
 * `route` is the template (`/v1/records/{recordId}/ops`), never the path; `record` is a keyed
 * hash of the record id (HMAC-SHA256 under a per-service key, 16 hex digits): lines of one
 * record can be correlated, the id can not be read back or confirmed without the key. No body,
 * message, response, key, header or raw id is ever passed to the logger; the redaction paths
 * below are a second line of defence for anything added later. Errors are logged by class and
 * code only (no message text, no stack).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/** Paths pino censors if they ever appear in a log object. */
export const REDACT_PATHS = [
  'message',
  'response',
  'body',
  'recordId',
  'backupKey',
  'password',
  'token',
  'authorization',
  'headers',
  'req.headers',
  'req.body',
  'res.body',
  '*.message',
  '*.response',
  '*.recordId',
  '*.backupKey',
];

/** The service's default logger: JSON lines on stdout, synchronous (nothing lost at exit). */
export function defaultLogger(level = 'info'): Logger {
  return pino({ level, base: { service: 'backup-key-vault' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, pino.destination({ dest: 1, sync: true }));
}

/** Keyed hash of record ids for log lines. */
export function recordHasher(key: Uint8Array = new Uint8Array(randomBytes(32))): (recordId: Uint8Array) => string {
  const k = Uint8Array.from(key);
  return (recordId) => createHmac('sha256', k).update(recordId).digest('hex').slice(0, 16);
}
