/**
 * `backup-key-vault/service`: the vault's HTTP API (JSON, base64url bytes; the OpenAPI
 * description ships as `backup-key-vault/openapi.yaml`) to mount on an existing `node:http`
 * server, or to run on its own.
 *
 * - `createVaultHandler(options)` opens the vault (as `backup-key-vault/vault` does) and returns a
 *   `VaultHandler`: its `listener(req, res)` answers `POST /v1/records/{id}/ops`, `GET /v1/vault`,
 *   `GET /health` and `GET /metrics`; `drain()` and `close()` shut it down gracefully. The options
 *   carry the issuer set (`auth`), a bearer token for the routes (`token`), rate limits
 *   (`rateLimits`), body limits and timeouts, a pino-compatible `logger`, and a prom-client
 *   `metricsRegistry` of the integrator's where the `bkv_*` metrics land (default a registry of
 *   the handler's own; either way `handler.metrics.registry`).
 * - `startService(options)`: the same on a server of its own, with node:http's timeouts and a
 *   graceful `close()` (what `bkv serve` runs).
 * - Issuers: `newIssuer` and `mintToken` (tokens for record ids, which the client sends with every
 *   operation), `resolveServeAuth(dataDir, { issuerFiles: [] })` for the development mode (an
 *   issuer key kept in the data folder, as `bkv serve` without `--auth-issuer`).
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { createVaultHandler, resolveServeAuth, readIssuerPrivate, mintToken } from 'backup-key-vault/service';
 * const auth = await resolveServeAuth(dataDir, { issuerFiles: [] }); // development mode
 * const handler = await createVaultHandler({ dataDir, partitions: 1, tokenPins: { operatorDir }, auth: auth.config, authMode: 'development' });
 * const server = createServer(handler.listener).listen(8080);
 * const issuer = readIssuerPrivate(auth.devKeyFile!);
 * const token = await mintToken(issuer, { subject: 'alice@example' }); // the client's `auth` for that record id
 * ```
 * @module backup-key-vault/service
 */
export {
  createVaultHandler, startService, type VaultHandler, type VaultHandlerOptions, type ServiceOptions, type RunningService,
} from './server.ts';
export { runUntilSignal } from './signals.ts';
export { ServiceError, ErrorCode, type ErrorCodeName } from './error-codes.ts';
export { ServiceMetrics, METRIC_NAMES, type OpOutcome } from './metrics.ts';
export { DEFAULT_RATE_LIMITS, type RateLimits, type BucketConfig } from './rate-limit.ts';
export { defaultLogger, type Logger } from './logging.ts';
export { ROUTES } from './routes.ts';
export { ROUTE, AUTH_TOKEN_HEADER, HTTP_API_VERSION } from '../../enclave/api/http.ts';
export * from '../vault/index.ts';
