/**
 * The escrow client's transport over the vault service's HTTP API (host/service/openapi.yaml):
 * a `Relay` that POSTs each sealed operation to /v1/records/{recordId}/ops, and
 * `fetchVaultInfo` for the keys a client pins. Browser-safe: `fetch` only, no Node APIs.
 *
 * Failures are typed: `VaultHttpError` for an HTTP error answer (its stable `code` and `num`,
 * the status, and `retryAfterSeconds` from `Retry-After` on 429 and 503), `VaultTransportError`
 * when no usable answer arrived (network failure, timeout, a body that is not the API's JSON).
 * Nothing is retried here: a 429 means the vault is protecting the record's guesses, so the
 * caller decides when to come back (and an operation must be sealed anew for each attempt).
 */
import type { Relay } from './escrow.ts';
import { AUTH_TOKEN_HEADER, fromBase64url, opsPath, toBase64url, ROUTE } from '../enclave/api/http.ts';
import type { ErrorJson, OpRequestJson, OpResponseJson, VaultInfoJson } from '../enclave/api/http.ts';

export interface HttpRelayOptions {
  /** The service's base URL, e.g. `https://vault.example` (a path prefix is kept). */
  baseUrl: string;
  /** Bearer token, when the service wants one. */
  token?: string;
  /** Per-request deadline (default 30 s). */
  timeoutMs?: number;
  /** A fetch implementation (default the global one). */
  fetch?: typeof fetch;
}

/** An HTTP error answer from the vault service. */
export class VaultHttpError extends Error {
  override readonly name = 'VaultHttpError';
  constructor(
    readonly status: number,
    /** The stable error code (`RATE_LIMITED`), or `HTTP_<status>` when the body had none. */
    readonly code: string,
    /** The stable error number (6000-6099), or 0 when the body had none. */
    readonly num: number,
    /** Seconds to wait, from `Retry-After` (429, 503), when given. */
    readonly retryAfterSeconds: number | undefined,
    message: string,
  ) {
    super(`vault service ${status} ${code}: ${message}`);
  }

  get rateLimited(): boolean {
    return this.status === 429;
  }
}

/** No usable answer: the network failed, the deadline passed, or the body was not the API's JSON. */
export class VaultTransportError extends Error {
  override readonly name = 'VaultTransportError';
}

interface FetchOpts {
  token?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

function join(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
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
    throw new VaultTransportError(timedOut ? 'the vault service did not answer in time' : 'the vault service could not be reached', { cause: e });
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch (e) {
    if (!res.ok) throw new VaultHttpError(res.status, `HTTP_${res.status}`, 0, retryAfter(res.headers.get('retry-after')), 'no error body');
    throw new VaultTransportError('the vault service answered something that is not JSON', { cause: e });
  }
  if (!res.ok) {
    const err = (body as Partial<ErrorJson> | null)?.error;
    const code = typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`;
    const num = typeof err?.num === 'number' ? err.num : 0;
    const text = typeof err?.message === 'string' ? err.message : 'no error body';
    throw new VaultHttpError(res.status, code, num, retryAfter(res.headers.get('retry-after')), text);
  }
  return body;
}

function bytesField(obj: unknown, name: string): Uint8Array {
  const v = (obj as Record<string, unknown> | null)?.[name];
  const b = typeof v === 'string' ? fromBase64url(v) : null;
  if (!b) throw new VaultTransportError(`the vault service's answer has no valid ${name}`);
  return b;
}

/** A Relay for EscrowClient over the vault service. */
export function httpRelay(opts: HttpRelayOptions): Relay {
  return async (recordId, message, meta) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    // A JWT is printable ASCII; anything else can not be a header value (the service then asks for one).
    if (meta?.authToken && /^[\x21-\x7e]{1,1024}$/.test(meta.authToken)) headers[AUTH_TOKEN_HEADER] = meta.authToken;
    const body = (await call(
      join(opts.baseUrl, opsPath(recordId)),
      { method: 'POST', headers, body: JSON.stringify({ message: toBase64url(message) } satisfies OpRequestJson) },
      opts,
    )) as Partial<OpResponseJson> | null;
    if (typeof body?.sealed !== 'boolean') throw new VaultTransportError("the vault service's answer has no valid sealed flag");
    return { sealed: body.sealed, response: bytesField(body, 'response') };
  };
}

export interface VaultInfo {
  enclavePublicKey: Uint8Array;
  /** OPAQUE server public keys by suite name. */
  serverPublicKeys: Map<string, Uint8Array>;
  partitions: number;
  apiVersion: number;
}

/** GET /v1/vault: the keys a client pins (compare them with the pinned ones before use). */
export async function fetchVaultInfo(baseUrl: string, opts: FetchOpts = {}): Promise<VaultInfo> {
  const body = (await call(join(baseUrl, ROUTE.info), { method: 'GET' }, opts)) as Partial<VaultInfoJson> | null;
  const keys = body?.serverPublicKeys;
  if (typeof keys !== 'object' || keys === null || typeof body?.partitions !== 'number' || typeof body.apiVersion !== 'number') {
    throw new VaultTransportError("the vault service's info answer is malformed");
  }
  const serverPublicKeys = new Map<string, Uint8Array>();
  for (const suite of Object.keys(keys)) serverPublicKeys.set(suite, bytesField(keys, suite));
  return { enclavePublicKey: bytesField(body, 'enclavePublicKey'), serverPublicKeys, partitions: body.partitions, apiVersion: body.apiVersion };
}
