/**
 * The vault's emulator token served over p11-kit's RPC protocol (server.ts), so that any PKCS#11
 * application loading p11-kit-client.so uses it. The command line's `bkv token serve` and tests
 * import this file only.
 */
export { serveModules, serveToken, serverAddress } from './server.ts';
export type { P11KitLogEvent, RunningTokenServer, RunningVaultTokenServer, ServeModulesOptions, ServeTokenOptions } from './server.ts';
export { P11KitError, P11KitErrorCode } from './errors.ts';
export { SUPPORTED_CALLS } from './dispatch.ts';
export { RPC_CALLS, RPC_HANDSHAKE, RPC_PROTOCOL_VERSION } from './calls.ts';
export { P11KIT_CLIENT_REFUSES, p11kitRefuses } from './client-limits.ts';
