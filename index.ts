/**
 * `backup-key-vault`: the package's bare import. It loads nothing else (no vault, no native
 * module, nothing Node-only) and names the entry points, each imported by its own path so that
 * an app loads only what it uses and a browser bundle stays browser-safe. `ENTRY_POINTS` lists
 * them, as in the `exports` map of package.json (test/package.test.ts imports each one).
 *
 * @example
 * ```ts
 * import { ENTRY_POINTS } from 'backup-key-vault';
 * const { EscrowClient } = await import('backup-key-vault/client');
 * ```
 * @module backup-key-vault
 */

/** Every entry point of the package (its import path) and what it is for (docs/package.md). */
export const ENTRY_POINTS = {
  'backup-key-vault/opaque': 'the RFC 9807 OPAQUE-3DH byte API, both roles, with its suites (fastSuite, portableSuite)',
  'backup-key-vault/opaque/client': 'the client half of the OPAQUE byte API (browser-safe)',
  'backup-key-vault/opaque/server': 'the server half of the OPAQUE byte API',
  'backup-key-vault/client': 'the escrow client, the backup key format and backup files (browser-safe)',
  'backup-key-vault/client/node': 'backup files in Node: file and stream helpers',
  'backup-key-vault/vault': 'a vault opened in-process as a backend (VaultHost), with its issuers',
  'backup-key-vault/service': 'the HTTP API as a node:http request handler (createVaultHandler) or a server of its own',
  'backup-key-vault/pkcs11': 'the emulator token as a pkcs11js-shaped PKCS#11 module',
} as const;

/** An entry point's import path. */
export type EntryPoint = keyof typeof ENTRY_POINTS;
