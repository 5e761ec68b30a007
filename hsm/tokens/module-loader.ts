/**
 * Loading a PKCS#11 module with pkcs11js, shared by the generic module backend (pkcs11-module.ts)
 * and its SoftHSM2 preset (softhsm.ts): one instance per module path per process (a library is
 * loaded once; every thread of the process shares its state, so C_Initialize runs with
 * CKF_OS_LOCKING_OK and an "already initialized" answer is fine); every call's failure a
 * Pkcs11Error. Imports no backend (backends.ts imports both users).
 */
import { createRequire } from 'node:module';
import * as P from '../../enclave/api/pkcs11.ts';

type RawModule = P.Pkcs11 & { load(lib: string): void };

const loaded = new Map<string, { lib: RawModule; module: P.Pkcs11 }>();

/** Null when pkcs11js loads here, else why not. */
export function pkcs11jsUnavailable(): string | null {
  try {
    createRequire(import.meta.url)('pkcs11js');
    return null;
  } catch (e) {
    return `pkcs11js does not load (${(e as Error).message}); run npm ci`;
  }
}

function initialize(lib: RawModule): void {
  try {
    lib.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  } catch (e) {
    const n = P.normalizePkcs11Error(e, 'C_Initialize');
    if (!(n instanceof P.Pkcs11Error && n.code === P.CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw n;
  }
}

/** The module at `path`, loaded and initialized once per process, its failures as Pkcs11Error. */
export function loadModule(path: string): P.Pkcs11 {
  const have = loaded.get(path);
  if (have) return have.module;
  const { PKCS11 } = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => RawModule };
  const lib = new PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw new Error(`the PKCS#11 module ${path} does not load: ${(e as Error).message}`);
  }
  initialize(lib);
  const module = P.normalizedModule(lib) as P.Pkcs11;
  loaded.set(path, { lib, module });
  return module;
}

/**
 * C_Finalize + C_Initialize of the process's instance of `path` (loaded first if need be): the
 * module reads its configuration again and sees tokens created since (every session ends).
 */
export function reinitializeModule(path: string): void {
  loadModule(path);
  const { lib } = loaded.get(path)!;
  try {
    lib.C_Finalize();
  } catch {
    // not initialized
  }
  initialize(lib);
}

