/**
 * `backup-key-vault/client`: what an app on the user's device needs to escrow a backup key with
 * a vault and get it back, and to encrypt its backups under that key. Browser-safe: no `node:`
 * import is reachable from here (test/client/browser.test.ts bundles it for Chromium); Node's file and
 * stream helpers are in `backup-key-vault/client/node`.
 *
 * - `EscrowClient`: register a backup key under a password (OPAQUE, RFC 9807), recover it,
 *   change the password, delete; every operation sealed to the enclave's public key.
 * - `httpRelay` and `fetchVaultInfo`: carry sealed operations to a vault service over HTTP and
 *   read the keys a client pins; one URL or a fleet's members, asked in turn by a rule that never
 *   costs a guess (client/vault-members.ts; `parseVaultUrls`, typed `Vault*Error`s).
 * - `generateBackupKey`, `formatBackupKey`, `parseBackupKey`: the 64-digit backup key with
 *   check digits that a user writes down.
 * - `encryptBackup`, `decryptBackup`: the backup file format (v1, chunked AES-256-GCM) on
 *   WebCrypto and Web Streams.
 * - `portableSuite`, `DEFAULT_OPAQUE_CONTEXT`, `argon2idKsf`: what an `EscrowClient` is built with.
 *
 * @example
 * ```ts
 * import { EscrowClient, httpRelay, fetchVaultInfo, portableSuite, DEFAULT_OPAQUE_CONTEXT } from 'backup-key-vault/client';
 * const info = await fetchVaultInfo(url); // compare info.enclavePublicKey with the pinned key
 * const client = new EscrowClient({
 *   relay: httpRelay({ baseUrl: url }), enclavePublicKey: info.enclavePublicKey,
 *   suite: portableSuite('ristretto255-SHA512'), context: DEFAULT_OPAQUE_CONTEXT,
 *   rng: (n) => crypto.getRandomValues(new Uint8Array(n)), auth: (recordId) => tokenFor(recordId),
 * });
 * await client.register(recordId, password, backupKey, { attemptLimit: 10 });
 * const r = await client.recover(recordId, password); // r.ok ? r.backupKey : r.outcome
 * ```
 * @module backup-key-vault/client
 */
export {
  EscrowClient, EscrowError, EscrowTransportError, EscrowKsfError, DEFAULT_KSF_BOUNDS, checkKsfBounds,
  type Relay, type KsfBounds, type AuthTokenSource, type RecoverResult, type EscrowClientOptions, type ClientOp,
} from './escrow.ts';
export * from './http-relay.ts';
export * from './backup-key.ts';
export * from './backup-file.ts';
export { portableSuite } from '../enclave/opaque/suites-portable.ts';
export { SUITE_IDS, DEFAULT_SUITE, type Suite, type SuiteId } from '../enclave/opaque/suite.ts';
export { type RandomSource } from '../enclave/opaque/bytes.ts';
export { type Ksf, type Argon2idParams, argon2idKsf, identityKsf, DEFAULT_ARGON2ID } from '../enclave/opaque/ksf.ts';
export { DEFAULT_OPAQUE_CONTEXT } from '../enclave/api/messages.ts';
export { PACING, type PacingName } from '../enclave/api/pacing.ts';
export { faultName } from '../enclave/api/codes.ts';
