/**
 * `backup-key-vault/vault`: a vault opened in-process, for a service that embeds it as a backend
 * without our HTTP layer (`backup-key-vault/service` is that layer).
 *
 * `VaultHost.open(options)` creates or opens the data folder and boots one simulated enclave
 * device per partition (worker threads, or child processes with `mode: 'process'`), each with
 * its PKCS#11 token and NVRAM, and the record store (SQLite in the data folder by default,
 * PostgreSQL by URL). Then:
 *
 * - `submit(recordId, message)`: relays one operation sealed by a client
 *   (`EscrowClient` in `backup-key-vault/client`) and resolves with the enclave's sealed answer
 *   once its batch is durable; the host never sees a password, a key or a guess count.
 * - `info`: the enclave's public key (clients pin it), the OPAQUE server public keys, partitions,
 *   records.
 * - `partitionsReady()` (health), `queueDepth()`; `onBatch` in the options is the metrics hook
 *   (size and duration of every committed batch).
 * - `close()`: stops the devices and closes the store.
 *
 * The vault serves client operations only under an issuer set (`auth`): every operation carries
 * a short-lived token (EdDSA JWT) for its record id, which the enclave checks. `newIssuer` and
 * `mintToken` make one in memory; `resolveServeAuth(dataDir, { issuerFiles: [] })` is the
 * development mode of `bkv serve` (an issuer key kept in the data folder).
 *
 * @example
 * ```ts
 * import { VaultHost, newIssuer, mintToken } from 'backup-key-vault/vault';
 * const issuer = await newIssuer('my-service');
 * const vault = await VaultHost.open({
 *   dataDir: '/var/lib/my-vault', partitions: 2, tokenPins: { operatorDir: '/etc/my-vault/operator' },
 *   auth: { audience: 'backup-key-vault', issuers: [{ name: issuer.name, publicKey: issuer.publicKey }] },
 * });
 * const { sealed, response } = await vault.submit(recordId, sealedMessageFromClient);
 * await vault.close();
 * ```
 * @module backup-key-vault/vault
 */
export { VaultHost, operatorKeyHash, type VaultHostOptions, type VaultInfo } from './vault-host.ts';
export type { OpResult } from './engine.ts';
export type { AuditReadOptions, AuditReport } from './audit-read.ts';
export type { ChannelMode } from '../channel/pool.ts';
export type { TokenPinSource } from '../../enclave/api/device.ts';
export type { TokenKind } from '../../hsm/tokens/backends.ts';
export { type AuthConfig, DEFAULT_AUDIENCE } from '../../enclave/api/auth.ts';
export {
  AuthSetupError, type IssuerPublic, type IssuerPrivate, newIssuer, generateIssuer, readIssuerPublic, readIssuerPrivate, mintToken,
  resolveServeAuth, type StoredAuth,
} from '../auth/issuer.ts';
