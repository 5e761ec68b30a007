/**
 * Opens the vault's token for a device (PKCS#11 v2.40 §5.4-5.6: C_Initialize, the token found
 * by label, created with C_InitToken + C_InitPIN at first start): the emulator token, whose
 * store is `<data>/emulator-token.bin`, or SoftHSM2 with its tokens in `<data>/softhsm/`. The
 * label comes from `<data>/token.json` (config.ts); the PINs from the source the host names
 * (token-pins.ts: the operator's pin file, PINs given directly, or in development mode the
 * operator folder, by default `<data>.operator/`), never from the data folder. Settling the
 * label and PINs and creating the token run under the data folder's token lock, so the devices
 * of several partitions starting at once create one token (and migrate an older token.json
 * once); the same lock is handed to the firmware's token (Pkcs11Token `exclusive`) for key
 * creation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as P from '../../enclave/api/pkcs11.ts';
import { TOKEN_LOCK_FILE, withFileLock } from './config.ts';
import type { TokenKind } from './config.ts';
import { EmulatorModule } from './emulator/module.ts';
import type { EmulatorOptions } from './emulator/module.ts';
import { ensureSoftHsmToken, loadSoftHsm } from './softhsm.ts';
import { pinSourceOrDefault, settleTokenPins, soPinNeeded } from './token-pins.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';

export const EMULATOR_STORE_FILE = 'emulator-token.bin';

export interface OpenedToken {
  kind: TokenKind;
  module: P.Pkcs11;
  label: string;
  userPin: string;
  /** The data folder's token lock (for find-or-create of keys across processes). */
  exclusive: <T>(fn: () => T) => T;
}

export interface OpenTokenOptions {
  /** Emulator options (the store file is fixed to the data folder's). */
  emulator?: Omit<EmulatorOptions, 'storeFile'>;
  /** Where the PINs come from (default: development mode, the operator folder `<data>.operator`). */
  pins?: TokenPinSource;
  /** One line for the operator when something changed on disk (an older token.json's PINs moved out). */
  log?: (line: string) => void;
}


/** Creates the emulator token `label` if its store lacks it (C_InitToken on the free slot, then C_InitPIN). */
export function ensureEmulatorToken(m: P.Pkcs11, label: string, soPin: string | undefined, userPin: string): void {
  const slots = m.C_GetSlotList(true);
  if (slots.some((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === label)) return;
  if (soPin === undefined) throw soPinNeeded(label);
  const free = slots.find((s) => (m.C_GetTokenInfo(s).flags & P.CKF_TOKEN_INITIALIZED) === 0)!;
  m.C_InitToken(free, soPin, P.padLabel(label));
  const slot = m.C_GetSlotList(true).find((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === label)!;
  const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  try {
    m.C_Login(s, P.CKU_SO, soPin);
    m.C_InitPIN(s, userPin);
    m.C_Logout(s);
  } finally {
    m.C_CloseSession(s);
  }
}

export function openVaultToken(dataDir: string, kind: TokenKind, opts: OpenTokenOptions = {}): OpenedToken {
  fs.mkdirSync(dataDir, { recursive: true });
  const source = pinSourceOrDefault(dataDir, opts.pins);
  const lockFile = path.join(dataDir, TOKEN_LOCK_FILE);
  const exclusive = <T>(fn: () => T): T => withFileLock(lockFile, fn);
  return exclusive((): OpenedToken => {
    const { label, pins } = settleTokenPins(dataDir, kind, source, opts.log);
    let module: P.Pkcs11;
    if (kind === 'softhsm') {
      const m = loadSoftHsm(dataDir);
      ensureSoftHsmToken(m, label, pins.soPin, pins.userPin);
      module = m;
    } else {
      module = P.normalizedModule(new EmulatorModule({ ...opts.emulator, storeFile: path.join(dataDir, EMULATOR_STORE_FILE) }));
      module.C_Initialize();
      ensureEmulatorToken(module, label, pins.soPin, pins.userPin);
    }
    return { kind, module, label, userPin: pins.userPin, exclusive };
  });
}
