/**
 * The vault token's configuration in the data folder (`token.json`) and the name of the
 * cross-process lock its users share (`token.lock`, hsm/durable-file.ts). The file names the token kind and the token's label, nothing secret:
 *
 *   { "format": "backup-key-vault token", "version": 2, "kind": "emulator" | "softhsm",
 *     "label": "bkv-<12 hex>" }
 *
 * (`kind`: a backend's name, hsm/tokens/backends.ts.)
 *
 * The token's PINs (PKCS#11 v2.40 §2.5: SO and user) never sit in the data folder: the operator
 * supplies them, or development mode keeps them in an operator folder beside it
 * (hsm/tokens/token-pins.ts). Version 1 files, written before that, also held "soPin" and
 * "userPin"; `readTokenConfig` returns those as `legacyPins` and the device moves them out
 * (token-pins.ts `settleTokenPins`) and rewrites the file as version 2.
 *
 * The file is created once and rewritten only by that migration, both under the data folder's
 * token lock (temp file, fsync, rename, fsync of the folder); opening a data folder with
 * another token kind is an error.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileDurably } from '../durable-file.ts';
import { isTokenKind } from './backends.ts';
import type { TokenKind } from './backends.ts';

export const TOKEN_CONFIG_FILE = 'token.json';
export const TOKEN_LOCK_FILE = 'token.lock';
export const TOKEN_CONFIG_FORMAT = 'backup-key-vault token';

export interface VaultTokenConfig {
  format: typeof TOKEN_CONFIG_FORMAT;
  version: 2;
  kind: TokenKind;
  label: string;
}

export interface StoredTokenConfig {
  config: VaultTokenConfig;
  /** The PINs a version 1 file still holds (to be moved out of the data folder). */
  legacyPins?: { soPin: string; userPin: string };
}

const field = (v: Record<string, unknown>, k: string, file: string, max = 32): string => {
  const x = v[k];
  if (typeof x !== 'string' || x.length < 4 || Buffer.byteLength(x) > max) throw new Error(`${file}: bad ${k}`);
  return x;
};

function parse(text: string, file: string): StoredTokenConfig {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${file}: not JSON`);
  }
  if (!v || v.format !== TOKEN_CONFIG_FORMAT || (v.version !== 1 && v.version !== 2) || !isTokenKind(v.kind)) throw new Error(`${file}: not a token configuration`);
  const config: VaultTokenConfig = { format: TOKEN_CONFIG_FORMAT, version: 2, kind: v.kind, label: field(v, 'label', file) };
  if (v.version === 2) {
    if ('soPin' in v || 'userPin' in v) throw new Error(`${file}: a version 2 token configuration holds no PINs`);
    return { config };
  }
  return { config, legacyPins: { soPin: field(v, 'soPin', file, 255), userPin: field(v, 'userPin', file, 255) } };
}

/** The data folder's token configuration, or null when it has none yet. */
export function readTokenConfig(dataDir: string): StoredTokenConfig | null {
  const file = path.join(dataDir, TOKEN_CONFIG_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return parse(text, file);
}

/** Writes (or replaces) the data folder's token configuration durably. */
export function writeTokenConfig(dataDir: string, cfg: VaultTokenConfig): void {
  writeFileDurably(path.join(dataDir, TOKEN_CONFIG_FILE), `${JSON.stringify(cfg, null, 2)}\n`);
}

export function checkTokenKind(dataDir: string, cfg: VaultTokenConfig, kind: TokenKind): void {
  if (cfg.kind !== kind) throw new Error(`${dataDir} was created with the ${cfg.kind} token; it can not be opened with the ${kind} token`);
}

/** A new token configuration for `kind` with a fresh label (not yet written). */
export function newTokenConfig(kind: TokenKind): VaultTokenConfig {
  return { format: TOKEN_CONFIG_FORMAT, version: 2, kind, label: `bkv-${randomBytes(6).toString('hex')}` };
}

/**
 * Reads the data folder's token configuration, creating it for `kind` on first use (callers
 * that may race hold the token lock). Its PINs are hsm/tokens/token-pins.ts's business.
 */
export function settleTokenConfig(dataDir: string, kind: TokenKind): VaultTokenConfig {
  const stored = readTokenConfig(dataDir);
  if (stored) {
    checkTokenKind(dataDir, stored.config, kind);
    return stored.config;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const cfg = newTokenConfig(kind);
  writeTokenConfig(dataDir, cfg);
  return cfg;
}
