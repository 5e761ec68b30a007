/**
 * Any PKCS#11 v2.40 module as the vault's token (a hardware HSM's, SoftHSM2's, p11-kit's
 * client): the `pkcs11` token backend (backends.ts). The module's path and the token (by label,
 * or by slot until a device has found its label) come from the data folder's token.json
 * (config.ts `provisionModuleToken`, written by `bkv serve --token pkcs11 --module PATH ...`).
 *
 * The operator makes the token and sets its user PIN with the module's own tools; the vault never
 * initializes a token here, never needs the SO PIN, and refuses a token that lacks anything the
 * firmware needs (requirements.ts) with the list of it. A module reads its own configuration
 * from the environment the operator starts `bkv serve` in (SOFTHSM2_CONF, P11_KIT_SERVER_ADDRESS,
 * a vendor's variables): worker-thread and child-process devices see that environment.
 *
 * One pkcs11js instance per module path per process (a library is loaded once; every thread of
 * the process shares its state, so C_Initialize runs with CKF_OS_LOCKING_OK and an "already
 * initialized" answer is fine). Every call's failure is a Pkcs11Error.
 */
import { createRequire } from 'node:module';
import * as P from '../../enclave/api/pkcs11.ts';
import type { TokenBackend } from './backends.ts';
import { readTokenConfig } from './config.ts';

type RawModule = P.Pkcs11 & { load(lib: string): void };

const loaded = new Map<string, P.Pkcs11>();

function pkcs11jsUnavailable(): string | null {
  try {
    createRequire(import.meta.url)('pkcs11js');
    return null;
  } catch (e) {
    return `pkcs11js does not load (${(e as Error).message}); run npm ci`;
  }
}

/** The module at `path`, loaded and initialized once per process, its failures as Pkcs11Error. */
export function loadModule(path: string): P.Pkcs11 {
  const have = loaded.get(path);
  if (have) return have;
  const { PKCS11 } = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => RawModule };
  const lib = new PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw new Error(`the PKCS#11 module ${path} does not load: ${(e as Error).message}`);
  }
  try {
    lib.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  } catch (e) {
    const n = P.normalizePkcs11Error(e, 'C_Initialize');
    if (!(n instanceof P.Pkcs11Error && n.code === P.CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw n;
  }
  const wrapped = P.normalizedModule(lib) as P.Pkcs11;
  loaded.set(path, wrapped);
  return wrapped;
}

export const pkcs11Backend: TokenBackend = {
  title: 'PKCS#11 module',
  unavailable: pkcs11jsUnavailable,
  hostEnv: () => ({}),
  // A module whose store another thread may touch while it writes: the device serializes its own writes.
  lockObjectStore: true,
  createsTokens: false,
  load: (dataDir: string) => {
    const cfg = readTokenConfig(dataDir)?.config;
    if (cfg?.kind !== 'pkcs11' || !cfg.module) throw new Error(`${dataDir} names no PKCS#11 module (bkv serve --token pkcs11 --module PATH --token-label L)`);
    return { module: loadModule(cfg.module) };
  },
};
