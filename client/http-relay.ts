/**
 * The escrow client's transport over the vault service's HTTP API (host/service/openapi.yaml):
 * a `Relay` that POSTs each sealed operation to /v1/records/{recordId}/ops, and
 * `fetchVaultInfo` for the keys a client pins. Browser-safe: `fetch` only, no Node APIs.
 *
 * A vault may be several members (a fleet, docs/fleet.md): give every member's URL and the relay
 * moves between them by the rule of client/vault-members.ts, which never costs the user a guess;
 * with the pinned `enclavePublicKey` it checks each member's key before the member gets anything.
 *
 * Failures are typed (client/vault-errors.ts): `VaultHttpError` for an HTTP error answer (its
 * stable `code` and `num`, the status, `retryAfterSeconds` from `Retry-After` on 429 and 503),
 * `VaultTransportError` when no usable answer arrived (network failure, timeout, a body that is
 * not the API's JSON), `VaultKeyMismatchError`, `VaultMembersError` when no member took it.
 * Nothing is retried on the same member: a 429 means the vault is protecting the record's
 * guesses, so the caller decides when to come back (and an operation must be sealed anew for each
 * attempt).
 */
import type { Relay } from './escrow.ts';
import { AUTH_TOKEN_HEADER, fromBase64url, opsPath, toBase64url, ROUTE } from '../enclave/api/http.ts';
import type { ErrorJson, OpRequestJson, OpResponseJson, VaultInfoJson } from '../enclave/api/http.ts';
import { VaultHttpError, VaultKeyMismatchError, VaultTransportError } from './vault-errors.ts';
import { VaultMembers } from './vault-members.ts';

export * from './vault-errors.ts';
export { MAX_VAULT_URLS, parseVaultUrls } from './vault-members.ts';

export interface HttpRelayOptions {
  /**
   * The service's base URL, e.g. `https://vault.example` (a path prefix is kept), or every
   * member's (1 to 16 absolute http(s) URLs, client/vault-members.ts), asked in turn.
   */
  baseUrl: string | readonly string[];
  /** Bearer token, when the service wants one. */
  token?: string;
  /** Per-request deadline (default 30 s). */
  timeoutMs?: number;
  /** A fetch implementation (default the global one). */
  fetch?: typeof fetch;
  /**
   * The enclave public key the client pins. Given, each member's GET /v1/vault must show it
   * before the member gets an operation; a member with another key is refused with
   * VaultKeyMismatchError (never skipped).
   */
  enclavePublicKey?: Uint8Array;
}

interface FetchOpts {
  token?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Error codes of a connection that was never made (Node's fetch puts them on the error's `cause`,
 * or on each error of an AggregateError when every address refused); a browser's fetch says
 * nothing this precise, so there a network failure counts as possibly sent.
 */
const UNSENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT',
]);

/** Whether a fetch failure certainly happened before the request left: every code in its causes is a connect failure. */
function unsent(e: unknown): boolean {
  const codes: unknown[] = [];
  const walk = (x: unknown, depth: number) => {
    if (typeof x !== 'object' || x === null || depth > 4) return;
    const o = x as { code?: unknown; cause?: unknown; errors?: unknown };
    if (o.code !== undefined) codes.push(o.code);
    walk(o.cause, depth + 1);
    if (Array.isArray(o.errors)) for (const y of o.errors) walk(y, depth + 1);
  };
  walk(e, 0);
  return codes.length > 0 && codes.every((c) => typeof c === 'string' && UNSENT_CODES.has(c));
}

function join(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/**
 * The most of an answer's body read: an error answer (`{ error: { code, num, message, field?,
 * leader? } }`, a few hundred bytes; a 421's `leader` at most 2,048 characters) and a success
 * (an op's sealed response, the vault's keys: a few KB). A longer body is not read: an error
 * answer then counts as one without a body (its status only, no `leader` to follow), a success as
 * no usable answer. A member, or whoever sits between it and the client, can not make the client
 * buffer more.
 */
export const MAX_ERROR_BODY_BYTES = 8 * 1024;
export const MAX_ANSWER_BODY_BYTES = 64 * 1024;

/** The body as text, or null when it is longer than `limit` bytes (announced, or as it streams in). */
async function boundedText(res: Response, limit: number): Promise<string | null> {
  const announced = res.headers.get('content-length');
  if (announced !== null && /^\d+$/.test(announced.trim()) && Number(announced.trim()) > limit) {
    await res.body?.cancel().catch(() => {});
    return null;
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    parts.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return new TextDecoder('utf-8', { fatal: true }).decode(all);
}

function retryAfter(h: string | null): number | undefined {
  if (h === null || !/^\d+$/.test(h.trim())) return undefined;
  return Number(h.trim());
}

async function call(url: string, init: RequestInit, o: FetchOpts): Promise<unknown> {
  const f = o.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { accept: 'application/json', ...(init.headers as Record<string, string> | undefined) };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  let res: Response;
  try {
    res = await f(url, { ...init, headers, signal: AbortSignal.timeout(o.timeoutMs ?? 30_000) });
  } catch (e) {
    const timedOut = e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');
    throw new VaultTransportError(timedOut ? 'the vault service did not answer in time' : 'the vault service could not be reached', { cause: e, unsent: unsent(e) });
  }
  const limit = res.ok ? MAX_ANSWER_BODY_BYTES : MAX_ERROR_BODY_BYTES;
  let body: unknown;
  try {
    const text = await boundedText(res, limit);
    if (text === null) {
      if (!res.ok) throw new VaultHttpError(res.status, `HTTP_${res.status}`, 0, retryAfter(res.headers.get('retry-after')), `error body over ${limit} bytes (not read)`);
      throw new VaultTransportError(`the vault service's answer is over ${limit} bytes (not read)`);
    }
    body = JSON.parse(text);
  } catch (e) {
    if (e instanceof VaultHttpError || e instanceof VaultTransportError) throw e;
    if (!res.ok) throw new VaultHttpError(res.status, `HTTP_${res.status}`, 0, retryAfter(res.headers.get('retry-after')), 'no error body');
    throw new VaultTransportError('the vault service answered something that is not JSON', { cause: e });
  }
  if (!res.ok) {
    // `leader`: the field a 421 NOT_LEADER adds to the error body (host/service/openapi.yaml).
    const err = (body as { error?: Partial<Record<keyof ErrorJson['error'], unknown>> } | null)?.error;
    const code = typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`;
    const num = typeof err?.num === 'number' ? err.num : 0;
    const text = typeof err?.message === 'string' ? err.message : 'no error body';
    const leader = typeof err?.leader === 'string' && err.leader.length <= 2048 ? err.leader : undefined;
    throw new VaultHttpError(res.status, code, num, retryAfter(res.headers.get('retry-after')), text, leader);
  }
  return body;
}

function bytesField(obj: unknown, name: string): Uint8Array {
  const v = (obj as Record<string, unknown> | null)?.[name];
  const b = typeof v === 'string' ? fromBase64url(v) : null;
  if (!b) throw new VaultTransportError(`the vault service's answer has no valid ${name}`);
  return b;
}

/** A Relay over HTTP; `ready()` probes the member the next operation goes to (its key checked, when pinned). */
export type HttpRelay = Relay & { ready(): Promise<void> };

/** A Relay for EscrowClient over the vault service (one member, or several: client/vault-members.ts). */
export function httpRelay(opts: HttpRelayOptions): HttpRelay {
  const members = new VaultMembers(opts.baseUrl);
  const pinned = opts.enclavePublicKey;
  // A single member without a pinned key has nothing to check and nowhere else to go: no probe.
  const probe =
    pinned !== undefined || members.urls.length > 1
      ? async (base: string) => {
          const info = await infoAt(base, opts);
          if (pinned !== undefined && !sameBytes(info.enclavePublicKey, pinned)) throw new VaultKeyMismatchError(base);
        }
      : undefined;
  const relay: Relay = async (recordId, message, meta) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    // A JWT is printable ASCII; anything else can not be a header value (the service then asks for one).
    if (meta?.authToken && /^[\x21-\x7e]{1,1024}$/.test(meta.authToken)) headers[AUTH_TOKEN_HEADER] = meta.authToken;
    const init = { method: 'POST', headers, body: JSON.stringify({ message: toBase64url(message) } satisfies OpRequestJson) };
    const body = (await members.use(meta?.readOnly === true, (base) => call(join(base, opsPath(recordId)), init, opts), probe)) as Partial<OpResponseJson> | null;
    if (typeof body?.sealed !== 'boolean') throw new VaultTransportError("the vault service's answer has no valid sealed flag");
    return { sealed: body.sealed, response: bytesField(body, 'response') };
  };
  return Object.assign(relay, { ready: () => members.use(true, async () => {}, probe) });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export interface VaultInfo {
  enclavePublicKey: Uint8Array;
  /** OPAQUE server public keys by suite name. */
  serverPublicKeys: Map<string, Uint8Array>;
  partitions: number;
  apiVersion: number;
}

/**
 * GET /v1/vault: the keys a client pins (compare them with the pinned ones before use). Several
 * URLs: the first member that answers (a read-only request, so any failure moves on).
 */
export async function fetchVaultInfo(baseUrl: string | readonly string[], opts: FetchOpts = {}): Promise<VaultInfo> {
  return new VaultMembers(baseUrl).use(true, (base) => infoAt(base, opts));
}

async function infoAt(baseUrl: string, opts: FetchOpts): Promise<VaultInfo> {
  const body = (await call(join(baseUrl, ROUTE.info), { method: 'GET' }, opts)) as Partial<VaultInfoJson> | null;
  const keys = body?.serverPublicKeys;
  if (typeof keys !== 'object' || keys === null || typeof body?.partitions !== 'number' || typeof body.apiVersion !== 'number') {
    throw new VaultTransportError("the vault service's info answer is malformed");
  }
  const serverPublicKeys = new Map<string, Uint8Array>();
  for (const suite of Object.keys(keys)) serverPublicKeys.set(suite, bytesField(keys, suite));
  return { enclavePublicKey: bytesField(body, 'enclavePublicKey'), serverPublicKeys, partitions: body.partitions, apiVersion: body.apiVersion };
}
