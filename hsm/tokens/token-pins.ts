/**
 * Where the vault token's PINs live (PKCS#11 v2.40 §2.5: a Security Officer PIN and a user PIN).
 * Never in the data folder: a copy of the data folder alone must not open the token. The device
 * (hsm/runner.ts, through hsm/tokens/open.ts) reads them from one of three sources, the host
 * says which in the device configuration (`tokenPins`):
 *
 * - `{ pinFile }`: the operator's pin file (`bkv serve --token-pin-file F`), outside the data
 *   folder. UTF-8 text: line 1 the user PIN; line 2, optional, the SO PIN. The SO PIN is read
 *   only when the token has to be created (the data folder's first start, or after the token was
 *   zeroized) or when an older data folder's token.json still holds PINs (migration); otherwise
 *   it is ignored, and it can be left out. Each PIN is 4 to 255 bytes, no control characters;
 *   a trailing newline (LF or CRLF) ends a line.
 * - `{ userPin, soPin? }`: given directly (the environment `BKV_TOKEN_PIN` / `BKV_TOKEN_SO_PIN`,
 *   or a program embedding the vault); the same rules for the SO PIN.
 * - `{ operatorDir }`: development mode (the default: no pin file, no environment): the device
 *   generates both PINs (128 random bits each, hex) at the token's creation and keeps them in
 *   `<operatorDir>/token-<label>.json` (the folder mode 0700, the file 0600). The default folder
 *   is the data folder's sibling `<data>.operator/`: copying the data folder does not copy it.
 *
 * A pin file or operator folder inside the data folder is refused. A data folder whose token
 * exists but whose PINs are not where the source says (a copy of the folder without its operator
 * folder or pin file) fails with TokenPinError PinsMissing; a wrong PIN with PinIncorrect.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TOKEN_CONFIG_FILE, checkTokenKind, newTokenConfig, readTokenConfig, writeTokenConfig } from './config.ts';
import type { TokenKind } from './backends.ts';
import { codedErrorClass, type CodeOf } from '../../enclave/api/codes.ts';
import { createFileDurably, fsyncDir } from '../durable-file.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';

/** Environment variables the command line reads the PINs from (no pin file given). */
export const TOKEN_PIN_ENV = 'BKV_TOKEN_PIN';
export const TOKEN_SO_PIN_ENV = 'BKV_TOKEN_SO_PIN';
export const OPERATOR_DIR_SUFFIX = '.operator';
export const MIN_TOKEN_PIN_BYTES = 4;
export const MAX_TOKEN_PIN_BYTES = 255;

export interface TokenPins {
  userPin: string;
  /** Needed only to create the token (C_InitToken, C_InitPIN). */
  soPin?: string;
}

/** Stable codes (3100-3199: the device's token PINs; never renumbered). */
export const TokenPinErrorCode = {
  /** The token exists but its PINs are not where the source says (no operator folder, no pin file entry). */
  PinsMissing: 3101,
  /** A pin file or operator folder inside the data folder. */
  InsideDataFolder: 3102,
  /** A pin file (or a PIN) that is unreadable, empty or malformed. */
  BadPinFile: 3103,
  /** The token has to be created (or its PINs moved) and no SO PIN was given. */
  SoPinNeeded: 3104,
  /** The PINs given do not match those an older token.json holds, or those of the operator folder. */
  PinMismatch: 3105,
  /** The token refused the user PIN. */
  PinIncorrect: 3106,
  /** The token's user PIN is locked (too many wrong ones): the SO must set a new one. */
  PinLocked: 3107,
  /** The operator folder is open to other users (group or world permissions). */
  OperatorDirOpen: 3108,
} as const;
export type TokenPinErrorCode = CodeOf<typeof TokenPinErrorCode>;

export const TokenPinError = codedErrorClass('TokenPinError', TokenPinErrorCode);
export type TokenPinError = InstanceType<typeof TokenPinError>;

/** The development-mode operator folder of a data folder: its sibling `<data>.operator`. */
export function defaultOperatorDir(dataDir: string): string {
  return `${path.resolve(dataDir)}${OPERATOR_DIR_SUFFIX}`;
}

/** The source the device uses when the host names none. */
export function pinSourceOrDefault(dataDir: string, source: TokenPinSource | undefined): TokenPinSource {
  return source ?? { operatorDir: defaultOperatorDir(dataDir) };
}

/** A path with every existing leading part resolved through symbolic links. */
function realish(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest);
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.unshift(path.basename(cur));
      cur = parent;
    }
  }
}

function within(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel));
}

/** True when `p` (or what it resolves to) lies in the data folder or is it. */
export function insideDataDir(p: string, dataDir: string): boolean {
  const data = realish(dataDir);
  return within(path.resolve(p), path.resolve(dataDir)) || within(realish(p), data);
}

/** Refuses a pin file or operator folder inside the data folder. */
export function assertOutsideDataDir(p: string, dataDir: string, what: string): void {
  if (insideDataDir(p, dataDir)) {
    throw new TokenPinError(
      TokenPinErrorCode.InsideDataFolder,
      `${what} ${path.resolve(p)} lies inside the data folder ${path.resolve(dataDir)}: whoever copies the data folder would get the token PINs; keep it outside`,
    );
  }
}

/** Checks one PIN's form; `what` names it in the error. */
export function checkPin(pin: unknown, what: string): string {
  if (typeof pin !== 'string') throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${what}: not a string`);
  const n = Buffer.byteLength(pin);
  if (n < MIN_TOKEN_PIN_BYTES || n > MAX_TOKEN_PIN_BYTES) {
    throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${what}: a PIN is ${MIN_TOKEN_PIN_BYTES} to ${MAX_TOKEN_PIN_BYTES} bytes, this one ${n}`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(pin)) throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${what}: control characters in a PIN`);
  return pin;
}

/** Parses a pin file's text: line 1 the user PIN, line 2 (optional) the SO PIN, nothing after. */
export function parsePinFile(text: string, file: string): TokenPins {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  if (lines.length === 0) throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${file}: the pin file is empty (line 1: the user PIN; line 2, optional: the SO PIN)`);
  if (lines.length > 2) throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${file}: more than two lines (line 1: the user PIN; line 2, optional: the SO PIN)`);
  const userPin = checkPin(lines[0], `${file} line 1 (user PIN)`);
  if (lines.length === 1 || lines[1] === '') return { userPin };
  return { userPin, soPin: checkPin(lines[1], `${file} line 2 (SO PIN)`) };
}

export function readPinFile(file: string, dataDir: string): TokenPins {
  assertOutsideDataDir(file, dataDir, 'the token pin file');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TokenPinError(TokenPinErrorCode.BadPinFile, `token pin file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  return parsePinFile(text, file);
}

/** The PINs from the environment (BKV_TOKEN_PIN, BKV_TOKEN_SO_PIN), or undefined when the user PIN is not set. */
export function pinsFromEnv(env: NodeJS.ProcessEnv = process.env): TokenPins | undefined {
  const user = env[TOKEN_PIN_ENV];
  if (user === undefined || user === '') return undefined;
  const so = env[TOKEN_SO_PIN_ENV];
  return { userPin: checkPin(user, TOKEN_PIN_ENV), ...(so !== undefined && so !== '' && { soPin: checkPin(so, TOKEN_SO_PIN_ENV) }) };
}

/** Checks a source's shape (it crosses to the device as JSON or a structured clone). */
export function checkPinSource(s: unknown): TokenPinSource {
  const o = s as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') throw new Error('device config: tokenPins must be an object');
  const keys = Object.keys(o).sort().join(',');
  if (keys === 'pinFile' && typeof o.pinFile === 'string' && o.pinFile !== '') return o as TokenPinSource;
  if (keys === 'operatorDir' && typeof o.operatorDir === 'string' && o.operatorDir !== '') return o as TokenPinSource;
  if ((keys === 'userPin' || keys === 'soPin,userPin') && typeof o.userPin === 'string' && (o.soPin === undefined || typeof o.soPin === 'string')) return o as TokenPinSource;
  throw new Error('device config: tokenPins must be { pinFile } | { operatorDir } | { userPin, soPin? }');
}

/** How a source reads in a log line (never a PIN). */
export function describePinSource(s: TokenPinSource): string {
  if ('pinFile' in s) return `the pin file ${s.pinFile}`;
  if ('operatorDir' in s) return `the operator folder ${s.operatorDir}`;
  return 'the PINs given to the device';
}

// ---- the operator folder (development mode) ----

export const OPERATOR_PINS_FORMAT = 'backup-key-vault token pins';

export function operatorPinsFile(operatorDir: string, label: string): string {
  return path.join(operatorDir, `token-${label}.json`);
}

/** Creates the operator folder (0700) if missing; refuses one open to other users. */
export function ensureOperatorDir(operatorDir: string, dataDir: string): void {
  assertOutsideDataDir(operatorDir, dataDir, 'the operator folder');
  if (!fs.existsSync(operatorDir)) {
    fs.mkdirSync(path.dirname(operatorDir), { recursive: true });
    try {
      fs.mkdirSync(operatorDir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    fs.chmodSync(operatorDir, 0o700);
    fsyncDir(path.dirname(operatorDir));
  }
  checkOperatorDirMode(operatorDir);
}

function checkOperatorDirMode(operatorDir: string): void {
  const st = fs.statSync(operatorDir);
  if (!st.isDirectory()) throw new TokenPinError(TokenPinErrorCode.BadPinFile, `the operator folder ${operatorDir} is not a folder`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new TokenPinError(
      TokenPinErrorCode.OperatorDirOpen,
      `the operator folder ${operatorDir} is open to other users (mode ${(st.mode & 0o777).toString(8)}): chmod 700 it`,
    );
  }
}

/** The PINs the operator folder holds for the token `label`, or null when it holds none. */
export function readOperatorPins(operatorDir: string, label: string): (TokenPins & { soPin: string }) | null {
  const file = operatorPinsFile(operatorDir, label);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  checkOperatorDirMode(operatorDir);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${file}: not JSON`);
  }
  if (v.format !== OPERATOR_PINS_FORMAT || v.version !== 1 || v.label !== label) throw new TokenPinError(TokenPinErrorCode.BadPinFile, `${file}: not the PINs of token ${label}`);
  return { userPin: checkPin(v.userPin, `${file} userPin`), soPin: checkPin(v.soPin, `${file} soPin`) };
}

/** Writes the operator folder's PINs for `label` (0600, durably); an existing file stands. */
export function writeOperatorPins(operatorDir: string, label: string, pins: { userPin: string; soPin: string }): void {
  const file = operatorPinsFile(operatorDir, label);
  const body = { format: OPERATOR_PINS_FORMAT, version: 1, label, soPin: pins.soPin, userPin: pins.userPin };
  createFileDurably(file, `${JSON.stringify(body, null, 2)}\n`); // never replaces PINs already there
}

/** The PINs a source gives (reading the pin file), before any token is looked at. */
export function suppliedPins(source: TokenPinSource, dataDir: string): TokenPins {
  if ('pinFile' in source) return readPinFile(source.pinFile, dataDir);
  if ('userPin' in source) {
    return { userPin: checkPin(source.userPin, 'user PIN'), ...(source.soPin !== undefined && { soPin: checkPin(source.soPin, 'SO PIN') }) };
  }
  throw new Error('unreachable');
}

const SO_PIN_WHERE = `line 2 of the pin file, or ${TOKEN_SO_PIN_ENV}`;

/**
 * The data folder's token label and the token's PINs from `source` (callers hold the data
 * folder's token lock): creates token.json (and, in development mode, the operator folder's
 * PINs) for a new data folder; moves the PINs of a version 1 token.json out of the data folder
 * (to the operator folder, or checked against those the operator gives) and rewrites it without
 * them, saying so through `log` once.
 */
export function settleTokenPins(
  dataDir: string,
  kind: TokenKind,
  source: TokenPinSource,
  log: (line: string) => void = () => {},
): { label: string; pins: TokenPins } {
  const dev = 'operatorDir' in source ? source.operatorDir : null;
  if (dev !== null) assertOutsideDataDir(dev, dataDir, 'the operator folder');
  const given = dev === null ? suppliedPins(source, dataDir) : null;
  const stored = readTokenConfig(dataDir);
  const configFile = path.join(dataDir, TOKEN_CONFIG_FILE);

  if (!stored) {
    const cfg = newTokenConfig(kind);
    let pins: TokenPins;
    if (dev !== null) {
      const fresh = generatePins();
      ensureOperatorDir(dev, dataDir);
      writeOperatorPins(dev, cfg.label, fresh); // before token.json: a token.json never names a token whose PINs are nowhere
      pins = fresh;
    } else {
      if (given!.soPin === undefined) {
        throw new TokenPinError(TokenPinErrorCode.SoPinNeeded, `creating the token of ${dataDir} needs the SO PIN too (${SO_PIN_WHERE})`);
      }
      pins = given!;
    }
    writeTokenConfig(dataDir, cfg);
    return { label: cfg.label, pins };
  }

  checkTokenKind(dataDir, stored.config, kind);
  const label = stored.config.label;
  const legacy = stored.legacyPins;
  if (legacy) {
    if (dev !== null) {
      const there = readOperatorPins(dev, label);
      if (there && (there.userPin !== legacy.userPin || there.soPin !== legacy.soPin)) {
        throw new TokenPinError(
          TokenPinErrorCode.PinMismatch,
          `${configFile} still holds PINs, and ${operatorPinsFile(dev, label)} holds other ones for token ${label}: remove the one that is wrong`,
        );
      }
      if (!there) {
        ensureOperatorDir(dev, dataDir);
        writeOperatorPins(dev, label, legacy);
      }
      writeTokenConfig(dataDir, stored.config);
      log(`token PINs moved out of the data folder: from ${configFile} to ${operatorPinsFile(dev, label)} (development mode: keep ${dev} apart from the data folder)`);
    } else {
      if (given!.userPin !== legacy.userPin) {
        throw new TokenPinError(
          TokenPinErrorCode.PinMismatch,
          `${configFile} still holds the token's PINs (an older data folder) and the user PIN given is not the one it holds: ` +
            `put its "userPin" on line 1 of the pin file and its "soPin" on line 2 (or start once without a pin file to move them to the operator folder)`,
        );
      }
      if (given!.soPin !== legacy.soPin) {
        throw new TokenPinError(
          given!.soPin === undefined ? TokenPinErrorCode.SoPinNeeded : TokenPinErrorCode.PinMismatch,
          `${configFile} still holds the token's SO PIN (an older data folder); before it is removed from there, give the same SO PIN (${SO_PIN_WHERE}) so that it is not lost`,
        );
      }
      writeTokenConfig(dataDir, stored.config);
      log(`token PINs removed from ${configFile}: the token now opens only with the PINs from ${describePinSource(source)}`);
    }
    return { label, pins: legacy };
  }

  if (dev !== null) {
    const pins = readOperatorPins(dev, label);
    if (!pins) {
      throw new TokenPinError(
        TokenPinErrorCode.PinsMissing,
        `the token ${label} of ${dataDir} exists, but its PINs are not in ${operatorPinsFile(dev, label)} ` +
          `(a copy of a data folder without its operator folder?): give the operator folder (--operator-dir) or the PINs (--token-pin-file, ${TOKEN_PIN_ENV})`,
      );
    }
    return { label, pins };
  }
  return { label, pins: given! };
}

/**
 * The user PIN of a token the operator made in their own module (the `pkcs11` backend): from the
 * pin file or the environment only. Development mode's operator folder holds PINs the vault made
 * for tokens it created; it has none for the operator's token.
 */
export function operatorTokenPins(source: TokenPinSource, dataDir: string, label: string): TokenPins {
  if ('operatorDir' in source) {
    throw new TokenPinError(
      TokenPinErrorCode.PinsMissing,
      `the token ${label || 'of ' + dataDir} is the operator's, in their PKCS#11 module: give its user PIN (--token-pin-file, ${TOKEN_PIN_ENV}); the vault keeps no PIN of it`,
    );
  }
  return suppliedPins(source, dataDir);
}

/** The error for a token that has to be created when no SO PIN was given. */
export function soPinNeeded(label: string): TokenPinError {
  return new TokenPinError(
    TokenPinErrorCode.SoPinNeeded,
    `the token ${label} has to be created (a new data folder, or the token was zeroized), which needs the SO PIN: ${SO_PIN_WHERE}`,
  );
}

/** Fresh development-mode PINs: 128 random bits each, hex. */
export function generatePins(): { userPin: string; soPin: string } {
  return { soPin: randomBytes(16).toString('hex'), userPin: randomBytes(16).toString('hex') };
}

/** A TokenPinError for a token's refusal of the user PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED), else null. */
export function pinRefusal(e: unknown, source: TokenPinSource): TokenPinError | null {
  // The firmware's TokenError (its `ckr`) or a Pkcs11Error: both carry the CKR_ name.
  const ckr = e instanceof Error ? String((e as { ckr?: unknown }).ckr ?? e.message) : '';
  if (ckr === 'CKR_PIN_INCORRECT' || ckr === 'CKR_PIN_LEN_RANGE') {
    return new TokenPinError(TokenPinErrorCode.PinIncorrect, `the token refused the user PIN from ${describePinSource(source)} (${ckr})`, { cause: e });
  }
  if (ckr === 'CKR_PIN_LOCKED') {
    return new TokenPinError(TokenPinErrorCode.PinLocked, 'the token\'s user PIN is locked after too many wrong ones: the SO must set a new one (C_InitPIN)', { cause: e });
  }
  return null;
}

