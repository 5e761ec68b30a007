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
 * The module is loaded by module-loader.ts (one instance per path per process). A preset of this backend
 * (SoftHSM2, softhsm.ts) loads its module here too and adds only its own steps around it.
 */
import type { TokenBackend } from './backends.ts';
import { readTokenConfig } from './config.ts';
import { loadModule, pkcs11jsUnavailable } from './module-loader.ts';

export { loadModule, reinitializeModule } from './module-loader.ts';

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
