/**
 * Opens the vault's token for a device (PKCS#11 v2.40 §5.4-5.6: C_Initialize, the token found
 * by label, created with C_InitToken + C_InitPIN at first start) in its backend's module
 * (backends.ts: the emulator token, whose store is `<data>/emulator-token.bin`, or SoftHSM2
 * with its tokens in `<data>/softhsm/`). The
 * label comes from `<data>/token.json` (config.ts); the PINs from the source the host names
 * (token-pins.ts: the operator's pin file, PINs given directly, or in development mode the
 * operator folder, by default `<data>.operator/`), never from the data folder. Settling the
 * label and PINs and creating the token run under the data folder's token lock, so the devices
 * of several partitions starting at once create one token (and migrate an older token.json
 * once); the same lock is handed to the firmware's token (Pkcs11Token `exclusive`) for key
 * creation. A token is opened with the firmware token profiles it meets (requirements.ts); one that
 * meets none is refused there with the list of what each lacks.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as P from '../../enclave/api/pkcs11.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { TOKEN_BACKENDS } from './backends.ts';
import type { BackendOptions, TokenKind } from './backends.ts';
import { TOKEN_LOCK_FILE, checkTokenKind, readTokenConfig, writeTokenConfig } from './config.ts';
import { withFileLock } from '../durable-file.ts';
import { operatorTokenPins, pinSourceOrDefault, settleTokenPins, soPinNeeded } from './token-pins.ts';
import { TokenCheckCode, TokenCheckError, checkTokenSupports } from './requirements.ts';
import type { TokenProfile } from './requirements.ts';

export interface OpenedToken {
  kind: TokenKind;
  module: P.Pkcs11;
  label: string;
  userPin: string;
  /** The data folder's token lock (for find-or-create of keys across processes). */
  exclusive: <T>(fn: () => T) => T;
  /** Pkcs11Token `lockObjectStore`: the backend's (backends.ts). */
  lockObjectStore: boolean;
  /** The firmware token profiles the token meets, strongest first (requirements.ts; Pkcs11Token `profiles`). */
  profiles: TokenProfile[];
}

export interface OpenTokenOptions extends BackendOptions {
  /** Where the PINs come from (default: development mode, the operator folder `<data>.operator`). */
  pins?: TokenPinSource;
  /** One line for the operator when something changed on disk (an older token.json's PINs moved out). */
  log?: (line: string) => void;
}

function findSlot(m: P.Pkcs11, label: string): P.Handle | null {
  for (const s of m.C_GetSlotList(true)) if (P.trimLabel(m.C_GetTokenInfo(s).label) === label) return s;
  return null;
}

/**
 * Makes sure the token `label` exists with these PINs: initializes it in a free slot when it is
 * missing (C_InitToken, then the SO sets the user PIN with C_InitPIN). `rescan` (the backend's)
 * makes a token created since C_Initialize visible: before looking for a free slot (another
 * thread may have created it) and after C_InitToken. Callers hold the data folder's token lock.
 */
export function ensureToken(m: P.Pkcs11, label: string, soPin: string | undefined, userPin: string, rescan?: () => void): void {
  if (findSlot(m, label)) return;
  if (rescan) {
    rescan();
    if (findSlot(m, label)) return;
  }
  if (soPin === undefined) throw soPinNeeded(label);
  const free = m.C_GetSlotList(true).find((s) => (m.C_GetTokenInfo(s).flags & P.CKF_TOKEN_INITIALIZED) === 0);
  if (!free) throw new P.Pkcs11Error(P.CKR.CKR_TOKEN_NOT_PRESENT, 'C_GetSlotList');
  m.C_InitToken(free, soPin, P.padLabel(label));
  rescan?.();
  const slot = findSlot(m, label);
  if (!slot) throw new P.Pkcs11Error(P.CKR.CKR_TOKEN_NOT_RECOGNIZED, 'C_InitToken');
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
    if (!TOKEN_BACKENDS[kind].createsTokens) return openOperatorToken(dataDir, kind, source, opts, exclusive);
    const { label, pins } = settleTokenPins(dataDir, kind, source, opts.log);
    const backend = TOKEN_BACKENDS[kind];
    const { module, rescan } = backend.load(dataDir, opts);
    ensureToken(module, label, pins.soPin, pins.userPin, rescan);
    const profiles = checkTokenSupports(module, findSlot(module, label)!, `the ${backend.title} token ${label}`);
    return { kind, module, label, userPin: pins.userPin, exclusive, lockObjectStore: backend.lockObjectStore, profiles };
  });
}

/**
 * A token the operator made in their module (`createsTokens` false: the `pkcs11` backend): found by
 * the label in token.json, or, the first time, by the slot there (its label is then written to
 * token.json, since slot ids may change); never created; refused when absent, when two tokens
 * carry the label, or when it lacks what the firmware needs. Callers hold the token lock.
 */
function openOperatorToken(dataDir: string, kind: TokenKind, source: TokenPinSource, opts: OpenTokenOptions, exclusive: OpenedToken['exclusive']): OpenedToken {
  const stored = readTokenConfig(dataDir);
  if (!stored) throw new Error(`${dataDir} names no token: start it with bkv serve --token pkcs11 --module PATH --token-label L (or --slot N)`);
  checkTokenKind(dataDir, stored.config, kind);
  let cfg = stored.config;
  const pins = operatorTokenPins(source, dataDir, cfg.label);
  const backend = TOKEN_BACKENDS[kind];
  const { module } = backend.load(dataDir, opts);
  const slots = module.C_GetSlotList(true);
  const labelOf = (s: P.Handle) => P.trimLabel(module.C_GetTokenInfo(s).label);
  const present = () => slots.map((s) => `slot ${P.handleNumber(s)}: "${labelOf(s)}"`).join(', ') || 'none';
  let slot: P.Handle;
  if (cfg.label) {
    const hits = slots.filter((s) => labelOf(s) === cfg.label);
    if (hits.length === 0) throw new TokenCheckError(TokenCheckCode.NotFound, `no token labelled "${cfg.label}" in ${cfg.module} (its tokens: ${present()})`);
    if (hits.length > 1) throw new TokenCheckError(TokenCheckCode.Ambiguous, `${hits.length} tokens of ${cfg.module} are labelled "${cfg.label}": give each token its own label`);
    slot = hits[0]!;
  } else {
    const s = slots.find((x) => P.handleNumber(x) === cfg.slot);
    if (s === undefined) throw new TokenCheckError(TokenCheckCode.NotFound, `no token in slot ${cfg.slot} of ${cfg.module} (its tokens: ${present()})`);
    const label = labelOf(s);
    if (!label || slots.filter((x) => labelOf(x) === label).length > 1) {
      throw new TokenCheckError(TokenCheckCode.Ambiguous, `the token in slot ${cfg.slot} of ${cfg.module} has no label of its own ("${label}"): give it one`);
    }
    slot = s;
    const { slot: _slot, ...rest } = cfg;
    cfg = { ...rest, label };
    writeTokenConfig(dataDir, cfg);
    opts.log?.(`the token in slot ${_slot} of ${cfg.module} is "${label}": token.json names it by its label from now on`);
  }
  const profiles = checkTokenSupports(module, slot, `the token "${cfg.label}" of ${cfg.module}`);
  return { kind, module, label: cfg.label, userPin: pins.userPin, exclusive, lockObjectStore: backend.lockObjectStore, profiles };
}
