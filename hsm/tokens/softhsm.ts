/**
 * SoftHSM2 2.6 (a PKCS#11 v2.40 module), the `softhsm` token backend (hsm/tokens/backends.ts): a
 * preset of the generic PKCS#11 module backend (pkcs11-module.ts; the same loader, module-loader.ts) with
 * SoftHSM2's module path, its configuration written into the vault's data folder, tokens the vault
 * creates itself (C_InitToken at first start, like the emulator), and two repairs:
 * - errors: pkcs11js throws a plain `Error('CKR_X:N')` from some calls (C_CreateObject,
 *   C_CopyObject, C_SetAttributeValue, C_FindObjects); every call here throws Pkcs11Error;
 * - durability: SoftHSM2 writes its object files without fsync; after every call that can change
 *   token objects or the token's PIN state the token folder's changed files and the folder are
 *   fsynced, so a returned C_CreateObject (an NVRAM write) survives a power cut.
 *
 * Tokens live in `<data>/softhsm/tokens`, configured by `<data>/softhsm/softhsm2.conf` (written
 * from softhsm-config/softhsm2.conf.template); SOFTHSM2_CONF is set before C_Initialize, and the
 * system's configuration and tokens are never used. SoftHSM2 is one library per process: every
 * thread of a process shares its state (one configuration, one login per token), so worker-
 * thread devices of one vault share it (C_Initialize with CKF_OS_LOCKING_OK, an "already
 * initialized" answer is fine) and one process serves one SoftHSM2 data folder at a time.
 * Slot ids change when a token is initialized: slots are found by their blank-padded label, and
 * a token created after C_Initialize is seen after C_Finalize + C_Initialize (the backend's
 * `rescan`, hsm/tokens/open.ts ensureToken).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { projectRoot } from '../../bin/bundle.mjs';
import * as P from '../../enclave/api/pkcs11.ts';
import { fsyncDir } from '../durable-file.ts';
import type { TokenBackend } from './backends.ts';
import { loadModule, pkcs11jsUnavailable, reinitializeModule } from './module-loader.ts';

export const SOFTHSM_DEFAULT_LIB = '/usr/lib/softhsm/libsofthsm2.so';
export const SOFTHSM_INSTALL_HINT =
  'SoftHSM2 is not installed: run `sudo apt-get install -y softhsm2 opensc` (or softhsm-config/ci-setup.sh); ' +
  'set BKV_SOFTHSM_LIB to use a module elsewhere';
/** softhsm-config/softhsm2.conf.template in the project (found from the bundle too). */
const templatePath = (): string => path.join(projectRoot(), 'softhsm-config', 'softhsm2.conf.template');

/** The module path: $BKV_SOFTHSM_LIB or Debian's. */
export function softhsmLibrary(): string {
  return process.env.BKV_SOFTHSM_LIB || SOFTHSM_DEFAULT_LIB;
}

/** Null when SoftHSM2 and pkcs11js are usable here, else why not. */
export function softhsmUnavailable(): string | null {
  const lib = softhsmLibrary();
  if (!fs.existsSync(lib)) return `${SOFTHSM_INSTALL_HINT} (no ${lib})`;
  return pkcs11jsUnavailable();
}

export interface SoftHsmPaths {
  dir: string;
  conf: string;
  tokenDir: string;
}

export function softhsmPaths(dataDir: string): SoftHsmPaths {
  const dir = path.join(path.resolve(dataDir), 'softhsm');
  return { dir, conf: path.join(dir, 'softhsm2.conf'), tokenDir: path.join(dir, 'tokens') };
}

/** Writes the data folder's softhsm2.conf (once) and creates its token folder. */
export function writeSoftHsmConfig(dataDir: string): SoftHsmPaths {
  const p = softhsmPaths(dataDir);
  fs.mkdirSync(p.tokenDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(p.conf)) {
    const text = fs.readFileSync(templatePath(), 'utf8').replaceAll('@TOKENDIR@', p.tokenDir);
    const tmp = `${p.conf}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, p.conf);
  }
  return p;
}

/** The configuration the process's SoftHSM2 was last initialized with. */
let rawConf = '';

/** Calls that can change token objects or the token's state on disk. */
const WRITES = new Set([
  'C_CreateObject',
  'C_CopyObject',
  'C_DestroyObject',
  'C_SetAttributeValue',
  'C_GenerateKey',
  'C_GenerateKeyPair',
  'C_UnwrapKey',
  'C_InitToken',
  'C_InitPIN',
  'C_SetPIN',
  'C_Login',
]);

/** fsyncs every file under `dir` changed since `since` (ms), then the folders. */
function syncTree(dir: string, since: number): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) syncTree(p, since);
    else if (e.isFile() && !e.name.endsWith('.lock')) {
      let changed: boolean;
      try {
        changed = fs.statSync(p).mtimeMs + 5 >= since;
      } catch {
        continue; // removed meanwhile
      }
      if (changed) fsyncIfThere(p);
    }
  }
  fsyncIfThere(dir);
}

/** fsyncs a file or folder; one removed meanwhile is passed over. */
function fsyncIfThere(p: string): void {
  try {
    fsyncDir(p);
  } catch {
    // removed meanwhile
  }
}

/**
 * The process's SoftHSM2 module for a data folder: writes the configuration, sets SOFTHSM2_CONF,
 * loads the library through the generic loader (pkcs11-module.ts) and initializes it (again, if
 * it was initialized for another folder).
 */
export function loadSoftHsm(dataDir: string): P.Pkcs11 & { reinitialize(): void; paths: SoftHsmPaths } {
  const why = softhsmUnavailable();
  if (why) throw new Error(why);
  const paths = writeSoftHsmConfig(dataDir);
  process.env.SOFTHSM2_CONF = paths.conf;
  const libPath = softhsmLibrary();
  const reinitialize = () => {
    process.env.SOFTHSM2_CONF = paths.conf;
    reinitializeModule(libPath);
    rawConf = paths.conf;
  };
  if (rawConf !== '' && rawConf !== paths.conf) reinitialize();
  const lib = loadModule(libPath);
  rawConf = paths.conf;
  const derived = new Set<number>();
  const wrapped = new Proxy(lib, {
    get(target, prop, receiver) {
      if (prop === 'reinitialize') return reinitialize;
      if (prop === 'paths') return paths;
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string' || !prop.startsWith('C_')) return v;
      return (...args: unknown[]) => {
        const started = Date.now();
        let result: unknown;
        try {
          result = (v as (...a: unknown[]) => unknown).apply(target, args);
        } catch (e) {
          if (prop === 'C_Login') syncTree(paths.tokenDir, started); // a failed login counts
          throw e; // a Pkcs11Error already (the generic loader's)
        }
        if (prop === 'C_DeriveKey') derived.add(P.handleNumber(result as P.Handle));
        else if (prop === 'C_DestroyObject' && derived.delete(P.handleNumber(args[1] as P.Handle))) return result;
        if (WRITES.has(prop)) syncTree(paths.tokenDir, started);
        return result;
      };
    },
  });
  return wrapped as unknown as P.Pkcs11 & { reinitialize(): void; paths: SoftHsmPaths };
}

export const softhsmBackend: TokenBackend = {
  title: 'SoftHSM2',
  unavailable: softhsmUnavailable,
  // Read by the library with getenv: a worker-thread device can not set it for its process.
  hostEnv: (dataDir: string) => ({ SOFTHSM2_CONF: softhsmPaths(dataDir).conf }),
  // Its file object store can fail a write when another thread of the process rescans the token.
  lockObjectStore: true,
  createsTokens: true,
  load: (dataDir: string) => {
    const m = loadSoftHsm(dataDir);
    return { module: m, rescan: () => m.reinitialize() };
  },
  // Its own token folder in a temporary directory. SoftHSM2 is one library per process: loading
  // another folder re-initializes it and ends the sessions of the previous one.
  scratch: () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-softhsm-'));
    const m = loadSoftHsm(dir);
    return { module: m, rescan: () => m.reinitialize(), dispose: () => fs.rmSync(dir, { recursive: true, force: true }) };
  },
};
