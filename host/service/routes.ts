/**
 * The vault service's routes (documented in openapi.yaml):
 *
 *   GET  /v1/vault                   what clients pin: enclave public key, OPAQUE server keys, partitions
 *   POST /v1/records/{recordId}/ops  one sealed client operation -> { sealed, response }
 *   GET  /health                     liveness and readiness (every partition booted and loaded)
 *   GET  /metrics                    Prometheus text
 *
 * An operation passes, in order: the bearer token (when configured), the per-address bucket, the
 * record id, the content type, the body (size and deadline), the JSON fields, the issuer token
 * (header `bkv-auth-token`, when the service checks it early), the replay guard, the per-record
 * bucket; only then is it queued for the enclave. The host sees ciphertext only. The early issuer
 * token check sheds a stranger's load before it takes the record's bucket (so a stranger can not
 * keep a user's bucket empty); the enclave checks the token inside the sealed request again, and
 * nothing depends on the early one.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_CLIENT_MESSAGE, MAX_RECORD_ID, SUITE_CODE } from '../../enclave/api/messages.ts';
import type { VaultHost } from '../vault/vault-host.ts';
import type { TokenVerifier } from '../../enclave/api/auth-verify.ts';
import { EnclaveFault } from '../../enclave/api/codes.ts';
import { AUTH_TOKEN_HEADER } from '../../enclave/api/http.ts';
import { ServiceError } from './error-codes.ts';
import { parseStringFields, readBody, requireJson, sendJson } from './http.ts';
import type { ServiceMetrics } from './metrics.ts';
import type { ReplayGuard } from './replay.ts';
import { addressKey } from './rate-limit.ts';
import type { TokenBuckets } from './rate-limit.ts';
import { HTTP_API_VERSION, ROUTE, fromBase64url, toBase64url } from '../../enclave/api/http.ts';
import type { OpResponseJson, VaultInfoJson } from '../../enclave/api/http.ts';

/** What the routes use of a vault: a VaultHost, or a fleet member's vault (host/fleet/vault-node.ts). */
export type RouteVault = Pick<VaultHost, 'info' | 'partitionOf' | 'submit' | 'partitionsReady'>;

export interface RouteContext {
  vault: RouteVault;
  metrics: ServiceMetrics;
  replay: ReplayGuard | null;
  recordLimiter: TokenBuckets | null;
  addressLimiter: TokenBuckets | null;
  tokenHash: Buffer | null;
  bodyLimit: number;
  bodyTimeoutMs: number;
  draining(): boolean;
  /** How client operations are authorized: the provisioned issuers, a development issuer, or none (every operation refused). */
  authMode: 'development' | 'issuers' | 'none';
  /** The early check of the issuer token (header `bkv-auth-token`) against the provisioned set; null: off. */
  earlyAuth: TokenVerifier | null;
}

/** What the request line records about the request (filled in by the handler). */
export interface RequestNote {
  route: string;
  partition?: number;
  recordId?: Uint8Array;
  limiter?: 'record' | 'address';
  sealed?: boolean;
}

type Handler = (ctx: RouteContext, req: IncomingMessage, res: ServerResponse, note: RequestNote, match: RegExpExecArray) => Promise<void> | void;

interface Route {
  template: string;
  pattern: RegExp;
  methods: Record<string, Handler>;
}

const SUITE_NAME = new Map<number, string>(Object.entries(SUITE_CODE).map(([name, code]) => [code, name]));
/** Longest base64url text of MAX_RECORD_ID bytes. */
const MAX_RECORD_ID_TEXT = Math.ceil((MAX_RECORD_ID * 4) / 3);

function retryAfter(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function checkToken(ctx: RouteContext, req: IncomingMessage): void {
  if (!ctx.tokenHash) return;
  const m = /^Bearer ([\x21-\x7e]+)$/.exec(req.headers.authorization ?? '');
  const given = createHash('sha256').update(m?.[1] ?? '').digest();
  if (!m || !timingSafeEqual(given, ctx.tokenHash)) throw new ServiceError('UNAUTHORIZED');
}

/** The early issuer token check (the enclave checks it again): 401 without the header, 403 when it is not valid for the record. */
async function checkIssuerToken(v: TokenVerifier, req: IncomingMessage, recordId: Uint8Array): Promise<void> {
  const h = req.headers[AUTH_TOKEN_HEADER];
  if (typeof h !== 'string' || h.length === 0) throw new ServiceError('AUTH_TOKEN_REQUIRED');
  try {
    await v.check(new TextEncoder().encode(h), recordId, Date.now());
  } catch (e) {
    if (e instanceof EnclaveFault) throw new ServiceError('AUTH_TOKEN_REFUSED');
    throw e;
  }
}

function takeAddress(ctx: RouteContext, req: IncomingMessage, note: RequestNote): void {
  if (!ctx.addressLimiter) return;
  const r = ctx.addressLimiter.take(addressKey(req.socket.remoteAddress));
  if (!r.ok) {
    note.limiter = 'address';
    throw new ServiceError('RATE_LIMITED', { retryAfterSeconds: retryAfter(r.retryAfterMs) });
  }
}

function vaultInfo(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, note: RequestNote): void {
  checkToken(ctx, req);
  takeAddress(ctx, req, note);
  const info = ctx.vault.info;
  const serverPublicKeys: Record<string, string> = {};
  for (const [code, key] of info.serverPublicKeys) serverPublicKeys[SUITE_NAME.get(code) ?? String(code)] = toBase64url(key);
  const body: VaultInfoJson = {
    enclavePublicKey: toBase64url(info.enclavePublicKey),
    serverPublicKeys,
    partitions: info.partitions,
    apiVersion: HTTP_API_VERSION,
  };
  sendJson(res, 200, body);
}

async function submitOp(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, note: RequestNote, match: RegExpExecArray): Promise<void> {
  checkToken(ctx, req);
  takeAddress(ctx, req, note);
  const idText = match[1]!;
  const recordId = idText.length <= MAX_RECORD_ID_TEXT ? fromBase64url(idText) : null;
  if (!recordId || recordId.length < 1 || recordId.length > MAX_RECORD_ID) throw new ServiceError('BAD_RECORD_ID', { field: 'recordId' });
  note.recordId = recordId;
  note.partition = ctx.vault.partitionOf(recordId); // once per op: passed down to submit
  requireJson(req);
  const body = await readBody(req, ctx.bodyLimit, ctx.bodyTimeoutMs);
  const { message: text } = parseStringFields(body, ['message'] as const);
  const message = text.length <= Math.ceil((MAX_CLIENT_MESSAGE * 4) / 3) ? fromBase64url(text) : null;
  if (!message || message.length < 1 || message.length > MAX_CLIENT_MESSAGE) throw new ServiceError('BAD_MESSAGE', { field: 'message' });
  if (ctx.earlyAuth) await checkIssuerToken(ctx.earlyAuth, req, recordId);
  // From here to `remember` nothing awaits: two copies of one message can not both pass.
  const replayKey = ctx.replay?.key(recordId, message);
  if (replayKey !== undefined && ctx.replay!.has(replayKey)) throw new ServiceError('REPLAYED', { field: 'message' });
  if (ctx.recordLimiter) {
    // The id's text from the path is its canonical base64url (fromBase64url refuses any other): the bucket's key as it is.
    const r = ctx.recordLimiter.take(idText);
    if (!r.ok) {
      note.limiter = 'record';
      throw new ServiceError('RATE_LIMITED', { retryAfterSeconds: retryAfter(r.retryAfterMs) });
    }
  }
  if (replayKey !== undefined) ctx.replay!.remember(replayKey);
  const result = await ctx.vault.submit(recordId, message, note.partition);
  note.sealed = result.sealed;
  const out: OpResponseJson = { sealed: result.sealed, response: toBase64url(result.response) };
  sendJson(res, 200, out);
}

function health(ctx: RouteContext, _req: IncomingMessage, res: ServerResponse): void {
  const ready = ctx.vault.partitionsReady();
  const ok = !ctx.draining() && ready.length > 0 && ready.every(Boolean);
  const body = { status: ok ? 'ok' : 'unavailable', draining: ctx.draining(), auth: ctx.authMode, partitions: ready.map((r, p) => ({ partition: p, ready: r })) };
  if (ok) sendJson(res, 200, body);
  else sendJson(res, 503, { ...body, error: new ServiceError('NOT_READY').toJSON().error });
}

async function metrics(ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkToken(ctx, req);
  const text = await ctx.metrics.registry.metrics();
  res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export const ROUTES: Route[] = [
  { template: ROUTE.info, pattern: /^\/v1\/vault$/, methods: { GET: vaultInfo } },
  { template: ROUTE.ops, pattern: /^\/v1\/records\/([^/]*)\/ops$/, methods: { POST: submitOp } },
  { template: ROUTE.health, pattern: /^\/health$/, methods: { GET: health } },
  { template: ROUTE.metrics, pattern: /^\/metrics$/, methods: { GET: metrics } },
];

/** The route of a path (query ignored) and the handler for the method, or a 404 / 405 error. */
export function resolveRoute(method: string, url: string): { route: Route; handler: Handler; match: RegExpExecArray } | { route: Route | null; error: ServiceError } {
  const path = url.split('?', 1)[0]!;
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    const handler = route.methods[method];
    if (!handler) return { route, error: new ServiceError('METHOD_NOT_ALLOWED', { allow: Object.keys(route.methods).join(', ') }) };
    return { route, handler, match };
  }
  return { route: null, error: new ServiceError('NOT_FOUND') };
}
