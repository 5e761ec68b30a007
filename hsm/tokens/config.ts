/**
 * The vault token's configuration in the data folder (`token.json`) and the name of the
 * cross-process lock its users share (`token.lock`, hsm/durable-file.ts). The file names the token kind and the token's label, nothing secret:
 *
 *   { "format": "backup-key-vault token", "version": 2, "kind": "emulator" | "softhsm",
 *     "label": "bkv-<12 hex>" }
 *   { ..., "kind": "pkcs11", "module": "/abs/path/module.so", "label": "<the token's label>" | "slot": N }
 *
 * (`kind`: a backend's name, hsm/tokens/backends.ts.) A `pkcs11` vault uses a token the operator
 * made in their module (`bkv serve --token pkcs11 --module PATH --token-label L | --slot N`,
 * `provisionModuleToken`); given a slot, the first device to open it writes the label it found
 * there, so that later opens find the token by label (slot ids may change).
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
  /** The token's label; empty for a `pkcs11` vault given a slot, until a device has opened it. */
  label: string;
  /** `pkcs11`: the module's absolute path. */
  module?: string;
  /** `pkcs11`: the slot id the operator named, while the label is not yet known. */
  slot?: number;
}

/** A PKCS#11 token label: 1 to 32 bytes of UTF-8 (CK_TOKEN_INFO.label, v2.40 §3.2). */
export function checkTokenLabel(label: unknown, what: string): string {
  if (typeof label !== 'string' || label.length === 0 || Buffer.byteLength(label) > 32 || label !== label.trim()) {
    throw new Error(`${what}: a token label is 1 to 32 bytes, without leading or trailing spaces`);
  }
  return label;
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
  if (v.kind === 'pkcs11') return { config: parseModuleConfig(v, file) };
  if ('module' in v || 'slot' in v) throw new Error(`${file}: only a pkcs11 token names a module or a slot`);
  const config: VaultTokenConfig = { format: TOKEN_CONFIG_FORMAT, version: 2, kind: v.kind, label: field(v, 'label', file) };
  if (v.version === 2) {
    if ('soPin' in v || 'userPin' in v) throw new Error(`${file}: a version 2 token configuration holds no PINs`);
    return { config };
  }
  return { config, legacyPins: { soPin: field(v, 'soPin', file, 255), userPin: field(v, 'userPin', file, 255) } };
}

function parseModuleConfig(v: Record<string, unknown>, file: string): VaultTokenConfig {
  if (v.version !== 2 || 'soPin' in v || 'userPin' in v) throw new Error(`${file}: a pkcs11 token configuration is version 2 and holds no PINs`);
  if (typeof v.module !== 'string' || !path.isAbsolute(v.module)) throw new Error(`${file}: "module" must be the module's absolute path`);
  const cfg: VaultTokenConfig = { format: TOKEN_CONFIG_FORMAT, version: 2, kind: 'pkcs11', module: v.module, label: '' };
  if (v.label !== undefined && v.label !== '') cfg.label = checkTokenLabel(v.label, `${file} label`);
  if (v.slot !== undefined) {
    if (!Number.isSafeInteger(v.slot) || (v.slot as number) < 0) throw new Error(`${file}: "slot" must be a slot id`);
    cfg.slot = v.slot as number;
  }
  if (cfg.label === '' && cfg.slot === undefined) throw new Error(`${file}: a pkcs11 token configuration names its token's label or slot`);
  return cfg;
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

/** Where a `pkcs11` vault's token is: its module, and its label or slot (exactly one). */
export interface ModuleToken {
  module: string;
  label?: string;
  slot?: number;
}

/**
 * Names a PKCS#11 module's token for a `pkcs11` vault (bkv serve --token pkcs11): writes
 * token.json for a new data folder; for an existing one, checks that it names the same module
 * and token (a vault's keys live in one token: another one would hold none of them).
 */
export function provisionModuleToken(dataDir: string, t: ModuleToken): VaultTokenConfig {
  if (!path.isAbsolute(t.module)) throw new Error(`the module must be an absolute path, not ${t.module}`);
  if ((t.label === undefined) === (t.slot === undefined)) throw new Error('name the token by its label or by its slot (one of them)');
  if (t.label !== undefined) checkTokenLabel(t.label, 'the token label');
  const stored = readTokenConfig(dataDir);
  if (stored) {
    const c = stored.config;
    const same = c.kind === 'pkcs11' && c.module === t.module && (t.label !== undefined ? c.label === t.label : c.slot === t.slot || (c.slot === undefined && c.label !== ''));
    if (!same) {
      const was = c.kind === 'pkcs11' ? `the module ${c.module}, token ${c.label ? `"${c.label}"` : `in slot ${c.slot}`}` : `the ${c.kind} token`;
      throw new Error(`${dataDir} was created with ${was}; it can not be opened with another token`);
    }
    return c;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const cfg: VaultTokenConfig = { format: TOKEN_CONFIG_FORMAT, version: 2, kind: 'pkcs11', module: t.module, label: t.label ?? '', ...(t.slot !== undefined && { slot: t.slot }) };
  writeTokenConfig(dataDir, cfg);
  return cfg;
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
