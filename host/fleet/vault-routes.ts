/**
 * The single vault's client API (host/service/routes.ts: GET /v1/vault, POST
 * /v1/records/{id}/ops, GET /health, GET /metrics) on a fleet member's api address, over its
 * FleetVaultNode. The same edge checks in the same order (bearer token none, address and record
 * buckets, body bounds, the early issuer token check, the replay guard); one more before them for
 * an operation: a member that takes no operation now answers at once (421 NOT_LEADER naming the
 * leader, 503 NOT_READY), before the replay guard remembers the message, so the client can send
 * the very same sealed message to the leader.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { TokenVerifier } from '../../enclave/api/auth-verify.ts';
import { ROUTE } from '../../enclave/api/http.ts';
import { toServiceError } from '../service/error-codes.ts';
import { DEFAULT_BODY_LIMIT, sendError } from '../service/http.ts';
import { ServiceMetrics } from '../service/metrics.ts';
import { DEFAULT_RATE_LIMITS, TokenBuckets, type RateLimits } from '../service/rate-limit.ts';
import { ReplayGuard } from '../service/replay.ts';
import { resolveRoute, type RequestNote, type RouteContext } from '../service/routes.ts';
import type { FleetVaultNode } from './vault-node.ts';

export interface FleetVaultRoutesOptions {
  readonly auth: AuthConfig;
  readonly rateLimits?: RateLimits;
  readonly log: (line: string) => void;
}

export interface FleetVaultRoutes {
  /** Answers a request under /v1/, /health or /metrics; never throws. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void;
  close(): void;
}

export async function fleetVaultRoutes(node: FleetVaultNode, o: FleetVaultRoutesOptions): Promise<FleetVaultRoutes> {
  const limits = o.rateLimits ?? {};
  const maxKeys = limits.maxKeys ?? DEFAULT_RATE_LIMITS.maxKeys;
  const recordCfg = limits.record === undefined ? DEFAULT_RATE_LIMITS.record : limits.record;
  const addressCfg = limits.address === undefined ? DEFAULT_RATE_LIMITS.address : limits.address;
  const recordLimiter = recordCfg ? new TokenBuckets(recordCfg, maxKeys) : null;
  const addressLimiter = addressCfg ? new TokenBuckets(addressCfg, maxKeys) : null;
  const metrics = new ServiceMetrics({
    queueDepth: () => [0],
    partitionsReady: () => node.partitionsReady(),
    limiterSizes: () => ({ record: recordLimiter?.size ?? 0, address: addressLimiter?.size ?? 0 }),
  });
  const ctx: RouteContext = {
    vault: node,
    metrics,
    replay: new ReplayGuard({ windowMs: 10 * 60_000, maxEntries: maxKeys }),
    recordLimiter,
    addressLimiter,
    tokenHash: null,
    bodyLimit: DEFAULT_BODY_LIMIT,
    bodyTimeoutMs: 10_000,
    draining: () => false,
    authMode: 'issuers',
    earlyAuth: await TokenVerifier.create(o.auth),
  };
  const sweeper = setInterval(() => {
    recordLimiter?.sweep();
    addressLimiter?.sweep();
  }, limits.sweepIntervalMs ?? DEFAULT_RATE_LIMITS.sweepIntervalMs);
  sweeper.unref();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const found = resolveRoute(method, req.url ?? '/');
    const note: RequestNote = { route: found.route?.template ?? 'unmatched' };
    const t0 = performance.now();
    let status = 500;
    try {
      if ('error' in found) throw found.error;
      if (note.route === ROUTE.ops) {
        const refused = node.refusal();
        if (refused) throw refused;
      }
      await found.handler(ctx, req, res, note, found.match);
      status = res.statusCode;
    } catch (e) {
      const err = toServiceError(e);
      status = err.status;
      if (err.status >= 500 && err.code !== 'NOT_READY' && err.code !== 'UNAVAILABLE') o.log(`vault: ${method} ${note.route}: ${err.code}: ${e instanceof Error ? e.message : String(e)}`);
      if (!res.headersSent) sendError(res, err, !req.complete);
      else res.destroy();
    }
    metrics.request(method, note.route, status, (performance.now() - t0) / 1000);
    if (note.route === ROUTE.ops) metrics.op(status === 429 ? 'rate-limited' : status >= 500 ? 'server-error' : status >= 400 || note.sealed === false ? 'client-fault' : 'ok');
  }

  return {
    listener: (req, res) => void handle(req, res).catch(() => undefined),
    close: () => {
      clearInterval(sweeper);
      metrics.unregister();
    },
  };
}
