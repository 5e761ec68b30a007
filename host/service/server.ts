/**
 * The vault service: an HTTP API (node:http, JSON, base64url bytes; see openapi.yaml and
 * routes.ts) over a VaultHost. `startService` opens the vault (enclave devices, store), then
 * listens; `close()` shuts down gracefully:
 *
 *   1. stop accepting connections; idle keep-alive connections are closed, and a request that
 *      arrives on a busy one is answered 503 SHUTTING_DOWN (with `Connection: close`);
 *   2. wait for every request already being handled (those inside the engine complete and get
 *      their responses), up to `drainTimeoutMs`;
 *   3. close the remaining connections, then the VaultHost (devices and store).
 *
 * Timeouts: `headersTimeoutMs` (node:http answers 408 and closes), `bodyTimeoutMs` (JSON 408),
 * `requestTimeoutMs` (node:http's cap on receiving a whole request).
 */
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { TokenVerifier } from '../../enclave/api/auth-verify.ts';
import { createHash } from 'node:crypto';
import { STATUS_CODES, createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ChannelMode } from '../channel/pool.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import type { TokenKind } from '../../hsm/tokens/backends.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { ServiceError, errorKind, toServiceError } from './error-codes.ts';
import { DEFAULT_BODY_LIMIT, corsPolicy, sendError } from './http.ts';
import { defaultLogger, recordHasher } from './logging.ts';
import type { Logger } from './logging.ts';
import { ServiceMetrics, assertRegistryFree } from './metrics.ts';
import type { Registry } from 'prom-client';
import type { OpOutcome } from './metrics.ts';
import { DEFAULT_RATE_LIMITS, TokenBuckets } from './rate-limit.ts';
import type { RateLimits } from './rate-limit.ts';
import { ReplayGuard } from './replay.ts';
import { resolveRoute } from './routes.ts';
import type { RequestNote, RouteContext } from './routes.ts';
import { ROUTE } from '../../enclave/api/http.ts';

/** What `createVaultHandler` opens and how it answers (everything but the listening socket). */
export interface VaultHandlerOptions {
  /** The vault's data folder (NVRAM, token, pool.json, and the SQLite file by default). */
  dataDir: string;
  /** Storage URL (see host/storage/index.ts); default SQLite in the data folder. */
  store?: string;
  /** Isolation of the enclave devices (default worker threads). */
  mode?: ChannelMode;
  partitions?: number;
  /** The vault's PKCS#11 token backend (hsm/tokens/backends.ts; default 'emulator'). */
  hsmToken?: TokenKind;
  /** Where the devices find the token's PINs (hsm/tokens/token-pins.ts); default: the operator folder `<dataDir>.operator`. */
  tokenPins?: TokenPinSource;
  /** When set, /v1/* and /metrics need `Authorization: Bearer <token>`. */
  token?: string;
  rateLimits?: RateLimits;
  logger?: Logger;
  /**
   * A prom-client `Registry` of the integrator's, where the service's `bkv_*` metrics are
   * registered (metrics.ts; not prom-client's default process metrics, which are the
   * integrator's to collect). It must not hold them yet: two services need two registries.
   * `close()` removes them again. Default: a registry of the service's own (`handler.metrics.registry`).
   */
  metricsRegistry?: Registry;
  /**
   * Browser origins (`https://app.example`, scheme://host[:port]) allowed to call the API across
   * origins (CORS, http.ts `corsPolicy`): their preflights are answered and their answers carry
   * `Access-Control-Allow-Origin`. Unset or empty: no CORS header (same-origin pages only).
   */
  corsOrigins?: readonly string[];
  /** Told while the vault loads its stored records at start: records loaded and their total (VaultHost `onLoadProgress`). */
  onLoadProgress?: (loaded: number, total: number) => void;
  /** The devices print their start note (the token profile) to stderr (VaultHost `deviceNotes`; `bkv serve` sets it). */
  deviceNotes?: boolean;
  /** Key of the record-id hash in log lines (default random per start). */
  logHashKey?: Uint8Array;
  /** Refuse byte-identical resubmissions within this window (default 10 min; 0 turns it off). */
  replayWindowMs?: number;
  /** Body size limit in bytes (default 16 KiB). */
  bodyLimit?: number;
  /** How long a request body may take to arrive (default 10 s; answered 408 REQUEST_TIMEOUT). */
  bodyTimeoutMs?: number;
  /** The operator secret's SHA-256 (enables zeroization), passed to the VaultHost. */
  operatorKeyHash?: Uint8Array;
  /** The issuer set whose tokens authorize client operations (passed to the VaultHost; its enclaves check every token). */
  auth?: AuthConfig;
  /** Reported by /health: 'development' when the issuer key sits in the data folder (`bkv serve` without `--auth-issuer`). */
  authMode?: 'development' | 'issuers';
  /**
   * Check each operation's issuer token (header `bkv-auth-token`) before it takes the record's
   * rate-limit bucket (default: on when `auth` is given). The enclave checks the sealed copy
   * whatever this says; off plays a host that skips its own checks.
   */
  earlyAuth?: boolean;
}

/** `startService`'s options: the handler's, and the listening socket's. */
export interface ServiceOptions extends VaultHandlerOptions {
  /** TCP port; 0 picks a free one (default 0). */
  port?: number;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** node:http's limits on receiving headers and a whole request. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** How long close() waits for requests in flight (default 30 s). */
  drainTimeoutMs?: number;
}

/**
 * The vault service as a request listener, to mount on a `node:http` server (or any framework
 * that hands over Node's request and response): `createServer(handler.listener)`, or call
 * `handler.listener(req, res)` for the paths under `/v1/`, `/health` and `/metrics`.
 */
export interface VaultHandler {
  /** Answers one request (routes.ts; JSON errors in the service's shape). Never throws. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void;
  readonly vault: VaultHost;
  /** The service's Prometheus metrics (`metrics.registry`, prom-client; merge it into yours with `Registry.merge`). */
  readonly metrics: ServiceMetrics;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Whether drain() was called: new requests are answered 503 SHUTTING_DOWN. */
  readonly draining: boolean;
  /**
   * Starts draining: new requests are answered 503 SHUTTING_DOWN, responses in progress ask for
   * their connection to close. Resolves with the number of requests still unfinished when they
   * all finished or `timeoutMs` passed.
   */
  drain(timeoutMs?: number): Promise<number>;
  /** Drains (if not yet), then closes the vault and removes the service's metrics from their registry. */
  close(): Promise<void>;
}

export interface RunningService {
  /** http://host:port */
  readonly url: string;
  readonly vault: VaultHost;
  /** Requests being handled right now. */
  readonly inFlight: number;
  close(): Promise<void>;
}

function outcomeOf(status: number, sealed: boolean | undefined): OpOutcome {
  if (status === 429) return 'rate-limited';
  if (status >= 500) return 'server-error';
  if (status >= 400 || sealed === false) return 'client-fault';
  return 'ok';
}

/** Opens the vault (`VaultHost.open`) and returns the service's request listener over it. */
export async function createVaultHandler(opts: VaultHandlerOptions): Promise<VaultHandler> {
  const log = opts.logger ?? defaultLogger();
  const hashRecord = recordHasher(opts.logHashKey);
  const limits = opts.rateLimits ?? {};
  const maxKeys = limits.maxKeys ?? DEFAULT_RATE_LIMITS.maxKeys;
  const recordCfg = limits.record === undefined ? DEFAULT_RATE_LIMITS.record : limits.record;
  const addressCfg = limits.address === undefined ? DEFAULT_RATE_LIMITS.address : limits.address;
  const recordLimiter = recordCfg ? new TokenBuckets(recordCfg, maxKeys) : null;
  const addressLimiter = addressCfg ? new TokenBuckets(addressCfg, maxKeys) : null;
  const replayWindowMs = opts.replayWindowMs ?? 10 * 60_000;
  const replay = replayWindowMs > 0 ? new ReplayGuard({ windowMs: replayWindowMs, maxEntries: maxKeys }) : null;

  // Refused before the vault opens: nothing to close when the registry is taken.
  if (opts.metricsRegistry) assertRegistryFree(opts.metricsRegistry);
  const cors = corsPolicy(opts.corsOrigins);
  let metrics: ServiceMetrics | undefined;
  const vault = await VaultHost.open({
    dataDir: opts.dataDir,
    mode: opts.mode,
    partitions: opts.partitions,
    store: opts.store,
    ...(opts.hsmToken !== undefined && { token: opts.hsmToken }),
    ...(opts.tokenPins !== undefined && { tokenPins: opts.tokenPins }),
    operatorKeyHash: opts.operatorKeyHash,
    ...(opts.auth !== undefined && { auth: opts.auth }),
    log: (msg) => log.warn({ event: 'vault' }, msg),
    onBatch: (p, size, ms) => metrics?.batch(p, size, ms),
    ...(opts.onLoadProgress && { onLoadProgress: opts.onLoadProgress }),
    ...(opts.deviceNotes === true && { deviceNotes: true }),
  });
  metrics = new ServiceMetrics(
    {
      queueDepth: () => vault.queueDepth(),
      partitionsReady: () => vault.partitionsReady(),
      limiterSizes: () => ({ record: recordLimiter?.size ?? 0, address: addressLimiter?.size ?? 0 }),
    },
    opts.metricsRegistry,
  );
  const m = metrics;

  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;
  /** Responses of the requests being handled (told to close their connection when draining starts). */
  const open = new Set<ServerResponse>();
  const ctx: RouteContext = {
    vault,
    metrics: m,
    replay,
    recordLimiter,
    addressLimiter,
    tokenHash: opts.token === undefined ? null : createHash('sha256').update(opts.token).digest(),
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    bodyTimeoutMs: opts.bodyTimeoutMs ?? 10_000,
    draining: () => draining,
    authMode: opts.authMode ?? (opts.auth ? 'issuers' : 'none'),
    earlyAuth: opts.auth && opts.earlyAuth !== false ? await TokenVerifier.create(opts.auth) : null,
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const start = performance.now();
    const method = req.method ?? 'GET';
    const found = resolveRoute(method, req.url ?? '/');
    const note: RequestNote = { route: found.route?.template ?? 'unmatched' };
    let status = 500;
    let failure: unknown;
    try {
      if (cors?.(req, res)) {
        // A listed origin's CORS preflight, answered by the policy (http.ts).
        note.route = 'preflight';
      } else {
        if (draining) throw new ServiceError('SHUTTING_DOWN', { retryAfterSeconds: 1 });
        // HTTP/1.1 requires Host (RFC 9112 §3.2); node:http's own check would answer without our JSON.
        if (req.httpVersion === '1.1' && req.headers.host === undefined) throw new ServiceError('BAD_REQUEST');
        if ('error' in found) throw found.error;
        await found.handler(ctx, req, res, note, found.match);
      }
      status = res.statusCode;
    } catch (e) {
      failure = e;
      const err = toServiceError(e);
      status = err.status;
      if (!res.headersSent) sendError(res, err, draining || !req.complete);
      else res.destroy();
    }
    const seconds = (performance.now() - start) / 1000;
    m.request(method, note.route, status, seconds);
    if (note.route === ROUTE.ops) m.op(outcomeOf(status, note.sealed));
    const line: Record<string, unknown> = { msg: 'request', method, route: note.route, status, ms: Math.round(seconds * 1e4) / 10 };
    if (note.partition !== undefined) line.partition = note.partition;
    if (note.recordId) line.record = hashRecord(note.recordId);
    if (note.sealed !== undefined) line.sealed = note.sealed;
    if (note.limiter) line.limiter = note.limiter;
    if (failure !== undefined) {
      const err = toServiceError(failure);
      line.code = err.code;
      if (err.status >= 500) Object.assign(line, errorKind(err.cause ?? failure));
    }
    if (status >= 500) log.error(line);
    else log.info(line);
  }

  const sweepMs = limits.sweepIntervalMs ?? DEFAULT_RATE_LIMITS.sweepIntervalMs;
  const sweeper = setInterval(() => {
    recordLimiter?.sweep();
    addressLimiter?.sweep();
  }, sweepMs);
  sweeper.unref();

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight++;
    open.add(res);
    if (draining) res.setHeader('connection', 'close');
    handle(req, res)
      .catch(() => undefined)
      .finally(() => {
        open.delete(res);
        inFlight--;
        if (inFlight === 0) idle?.();
      });
  };

  let drained: Promise<number> | undefined;
  const drain = (timeoutMs = 30_000): Promise<number> =>
    (drained ??= (async () => {
      draining = true;
      for (const res of open) if (!res.headersSent) res.setHeader('connection', 'close');
      log.info({ msg: 'shutting down', inFlight });
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          idle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return inFlight;
    })());
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await drain();
      clearInterval(sweeper);
      await vault.close();
      m.unregister();
    })());

  return {
    listener,
    vault,
    metrics: m,
    get inFlight() {
      return inFlight;
    },
    get draining() {
      return draining;
    },
    drain,
    close,
  };
}

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  const log = opts.logger ?? defaultLogger();
  const t0 = performance.now();
  const handler = await createVaultHandler({ ...opts, logger: log });
  const { vault, metrics: m } = handler;
  const headersTimeout = opts.headersTimeoutMs ?? 10_000;
  const server: Server = createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(opts.requestTimeoutMs ?? 30_000, headersTimeout + 1),
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      keepAliveTimeout: 5_000,
      maxHeaderSize: 8 * 1024,
      requireHostHeader: false,
    },
    handler.listener,
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A header or request timeout, oversized headers or an unparseable request: node:http has no
    // request object for these; answer in the same JSON shape and close.
    const busy = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
    if (!socket.writable || busy || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const e = new ServiceError(err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST');
    const text = JSON.stringify(e.toJSON());
    socket.end(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
    m.request('-', 'unparsed', e.status, 0);
    log.info({ msg: 'request', route: 'unparsed', status: e.status, code: e.code });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await handler.close();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  log.info({ msg: 'listening', url, partitions: vault.info.partitions, records: vault.info.records, startMs: Math.round(performance.now() - t0) });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const drained = handler.drain(opts.drainTimeoutMs ?? 30_000);
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const unfinished = await drained;
      server.closeAllConnections();
      await stopped;
      await handler.close();
      log.info({ msg: 'stopped', unfinished });
    })());

  return {
    url,
    vault,
    get inFlight() {
      return handler.inFlight;
    },
    close,
  };
}
