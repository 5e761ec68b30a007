/**
 * The device's token backends, one entry each: the PKCS#11 modules a vault's token can live in.
 * A backend's name is what `token.json` records (config.ts), `bkv serve --token` and
 * DeviceConfig.token (enclave/api/device.ts) name, and BKV_TOKEN picks in tests. The command
 * line, the service, the device runner, the host's channels, the test helpers and the benches
 * iterate over this table: adding a backend is its own file plus one line here.
 *
 * The host may import this file (test/boundary.test.ts HSM_PUBLIC): it learns the names and
 * the environment a device needs from its process (`hostEnv`); it never opens a token.
 */
import type * as P from '../../enclave/api/pkcs11.ts';
import { emulatorBackend } from './emulator/backend.ts';
import type { EmulatorOptions } from './emulator/module.ts';
import { softhsmBackend } from './softhsm.ts';
import { pkcs11Backend } from './pkcs11-module.ts';

/** A loaded module and how to make tokens created since C_Initialize visible, when it does not see them at once. */
export interface TokenModule {
  module: P.Pkcs11;
  rescan?(): void;
}

/** Options a backend may read (tests and benches tune the emulator). */
export interface BackendOptions {
  emulator?: Omit<EmulatorOptions, 'storeFile'>;
}

export interface TokenBackend {
  /** Its name in prose ("SoftHSM2"). */
  readonly title: string;
  /** Null when the backend works in this process, else why not (with an install hint). */
  unavailable(): string | null;
  /**
   * Variables the host process sets in its own environment before it starts a device on
   * `dataDir`: a worker-thread device shares the process's environment (a native library reads
   * it with getenv) and can not set it.
   */
  hostEnv(dataDir: string): Record<string, string>;
  /**
   * Whether the firmware's token holds the data folder's token lock around every object-store
   * call (Pkcs11Token `lockObjectStore`): for a module whose store another thread may rescan
   * while it writes.
   */
  readonly lockObjectStore: boolean;
  /**
   * Whether the vault makes its token in this module (C_InitToken at a data folder's first start,
   * with the SO PIN); false: the operator made it, and the vault only finds it (hsm/tokens/open.ts).
   */
  readonly createsTokens: boolean;
  /** The module for the vault's data folder, initialized (C_Initialize); the caller holds the folder's token lock. */
  load(dataDir: string, opts: BackendOptions): TokenModule;
  /**
   * A throwaway module for tests and benches (C_Initialize'd, no token yet); `dispose` removes what
   * it left on disk. Absent for a backend whose module is the operator's (`pkcs11`): its tests load
   * SoftHSM2's and p11-kit's modules through it in their own processes (test/hsm/tokens/pkcs11-module.test.ts).
   */
  scratch?(opts: BackendOptions): TokenModule & { dispose(): void };
}

export const TOKEN_BACKENDS = {
  emulator: emulatorBackend,
  softhsm: softhsmBackend,
  pkcs11: pkcs11Backend,
} as const satisfies Record<string, TokenBackend>;

export type TokenKind = keyof typeof TOKEN_BACKENDS;
export const TOKEN_KINDS = Object.keys(TOKEN_BACKENDS) as TokenKind[];
/** The token of a vault created without one named. */
export const DEFAULT_TOKEN_KIND: TokenKind = 'emulator';

export function isTokenKind(k: unknown): k is TokenKind {
  return typeof k === 'string' && Object.hasOwn(TOKEN_BACKENDS, k);
}

/** A kind by name (`undefined`: the default); throws for a name no backend has. */
export function parseTokenKind(name: string | undefined): TokenKind {
  const k = name ?? DEFAULT_TOKEN_KIND;
  if (!isTokenKind(k)) throw new Error(`token must be ${TOKEN_KINDS.join(' or ')}, not ${k}`);
  return k;
}

/** The kinds with a scratch module (every one but `pkcs11`): what token tests and benches iterate over. */
export const SCRATCH_TOKEN_KINDS = TOKEN_KINDS.filter((k) => (TOKEN_BACKENDS[k] as TokenBackend).scratch !== undefined);

/** The kinds a test or bench can open on its own here: with a scratch module, and available (SoftHSM2 only where it is installed). */
export function availableTokenKinds(): TokenKind[] {
  return SCRATCH_TOKEN_KINDS.filter((k) => TOKEN_BACKENDS[k].unavailable() === null);
}
