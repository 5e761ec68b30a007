/**
 * Opens the vault's token for a device (PKCS#11 v2.40 §5.4-5.6: C_Initialize, the token found
 * by label, created with C_InitToken + C_InitPIN at first start): the emulator token, whose
 * store is `<data>/emulator-token.bin`, or SoftHSM2 with its tokens in `<data>/softhsm/`. The
 * label and PINs come from `<data>/token.json` (config.ts). Token creation runs under the data
 * folder's token lock, so the devices of several partitions starting at once create one token;
 * the same lock is handed to the firmware's token (Pkcs11Token `exclusive`) for key creation.
 */
import * as path from 'node:path';
import * as P from '../../enclave/api/pkcs11.ts';
import { TOKEN_LOCK_FILE, settleTokenConfig, withFileLock } from './config.ts';
import type { TokenKind } from './config.ts';
import { EmulatorModule } from './emulator/module.ts';
import type { EmulatorOptions } from './emulator/module.ts';
import { ensureSoftHsmToken, loadSoftHsm } from './softhsm.ts';

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
}

/** Creates the emulator token `label` if its store lacks it (C_InitToken on the free slot, then C_InitPIN). */
export function ensureEmulatorToken(m: P.Pkcs11, label: string, soPin: string, userPin: string): void {
  const slots = m.C_GetSlotList(true);
  if (slots.some((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === label)) return;
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
  const cfg = settleTokenConfig(dataDir, kind);
  const lockFile = path.join(dataDir, TOKEN_LOCK_FILE);
  const exclusive = <T>(fn: () => T): T => withFileLock(lockFile, fn);
  const module = exclusive((): P.Pkcs11 => {
    if (kind === 'softhsm') {
      const m = loadSoftHsm(dataDir);
      ensureSoftHsmToken(m, cfg.label, cfg.soPin, cfg.userPin);
      return m;
    }
    const m = P.normalizedModule(new EmulatorModule({ ...opts.emulator, storeFile: path.join(dataDir, EMULATOR_STORE_FILE) }));
    m.C_Initialize();
    ensureEmulatorToken(m, cfg.label, cfg.soPin, cfg.userPin);
    return m;
  });
  return { kind, module, label: cfg.label, userPin: cfg.userPin, exclusive };
}
