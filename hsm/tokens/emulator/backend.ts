/**
 * The emulator as a token backend (hsm/tokens/backends.ts): pure TypeScript, always available,
 * its store one file in the data folder that it locks and fsyncs itself.
 */
import * as path from 'node:path';
import * as P from '../../../enclave/api/pkcs11.ts';
import type { BackendOptions, TokenBackend } from '../backends.ts';
import { EmulatorModule } from './module.ts';

export const EMULATOR_STORE_FILE = 'emulator-token.bin';

function initialized(m: EmulatorModule): P.Pkcs11 {
  const module = P.normalizedModule(m);
  module.C_Initialize();
  return module;
}

export const emulatorBackend: TokenBackend = {
  title: 'the emulator token',
  unavailable: () => null,
  hostEnv: () => ({}),
  lockObjectStore: false,
  createsTokens: true,
  load: (dataDir: string, opts: BackendOptions) => ({ module: initialized(new EmulatorModule({ ...opts.emulator, storeFile: path.join(dataDir, EMULATOR_STORE_FILE) })) }),
  // In memory: gone with the module.
  scratch: (opts: BackendOptions) => ({ module: initialized(new EmulatorModule({ ...opts.emulator })), dispose: () => {} }),
};
