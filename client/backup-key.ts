/**
 * The backup key (the first step of a backup, README introduction): 32 random bytes, shown to
 * the user and typed back as 64 hex digits, and the keys derived from it for backup files (HKDF-SHA256,
 * RFC 5869). Browser-safe: @noble/hashes and WebCrypto's getRandomValues only, no node: imports.
 *
 * Display form: 16 groups of 4 lower-case hex digits, `8a58 c29b 0f3e ...`. Parsing accepts upper
 * and lower case and ignores spaces, tabs, dashes (also the Unicode hyphens and dashes a word
 * processor substitutes), line breaks and zero-width characters that copy and paste leaves.
 *
 * Checked form: 64 bare hex digits carry no redundancy, so a mistyped digit yields another valid
 * key. The checked form appends a 17th group of 4 hex digits:
 *
 *   check = first 2 bytes of SHA-256("bkv/backup-key/check/v1" || key), as 4 hex digits
 *
 * `parseBackupKey` verifies it when present (68 digits): a single mistyped digit, a swapped pair
 * or any other mistake goes unnoticed with probability 2^-16. The check reveals 16 bits of a hash
 * of the key: no help to an attacker facing the other 240.
 *
 * Derived keys (HKDF-SHA256, RFC 5869; IKM = the 32-byte backup key, salt = the 32-byte file id
 * of the backup file, info = the ASCII label):
 *
 *   purpose      info                         length  use
 *   file-key     "bkv/backup/v1/file-key"     32      AES-256-GCM key of the file's chunks
 *   header-key   "bkv/backup/v1/header-key"   32      HMAC-SHA256 key of the file header's tag
 *   key-check    "bkv/backup/v1/key-check"    16      stored in the header: tells a wrong key apart
 *
 * Typing mistakes are `BackupKeyError`s with stable codes (5050-5099; 5000-5049 belong to
 * backup files, client/backup-file.ts) and a message meant for the person typing.
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { RandomSource } from '../enclave/opaque/bytes.ts';
import { toHex } from '../enclave/opaque/bytes.ts';
import { CodedError, type CodeOf } from '../enclave/api/codes.ts';
import { LABELS } from '../enclave/api/labels.ts';

export const BACKUP_KEY_BYTES = 32;
export const BACKUP_KEY_DIGITS = 64;
export const CHECK_DIGITS = 4;
export const CHECKED_KEY_DIGITS = BACKUP_KEY_DIGITS + CHECK_DIGITS;
const GROUP = 4;

export const BackupKeyErrorCode = {
  /** Not 64 (or 68 with the check group) hex digits. */
  WrongDigitCount: 5050,
  /** A character that is neither a hex digit nor a separator. */
  NotAHexDigit: 5051,
  /** The check group does not match the 64 digits: a digit is mistyped. */
  CheckMismatch: 5052,
  /** The caller asked for the checked form and the check group is missing. */
  CheckRequired: 5053,
  /** A key (or file id) given to a function is not 32 bytes. */
  InvalidKey: 5054,
  /** An unknown derivation purpose. */
  InvalidPurpose: 5055,
} as const;
export type BackupKeyErrorCode = CodeOf<typeof BackupKeyErrorCode>;

export interface BadCharacter {
  /** The character as typed. */
  char: string;
  /** 1-based position in the typed text, counted in characters (code points). */
  position: number;
  line: number;
  column: number;
  /** 1-based position among the digits (the slot the character took). */
  digit: number;
  /** What was probably meant, if anything. */
  suggestion?: string;
}

export class BackupKeyError extends CodedError<BackupKeyErrorCode> {
  override readonly name = 'BackupKeyError';
  constructor(
    code: BackupKeyErrorCode,
    message: string,
    readonly details: { digits?: number; bad?: BadCharacter[] } = {},
  ) {
    super(code, message);
  }
}

/** A new backup key: 32 bytes from `random` (default: WebCrypto's getRandomValues). */
export function generateBackupKey(random?: RandomSource): Uint8Array {
  const key = random ? random(BACKUP_KEY_BYTES) : crypto.getRandomValues(new Uint8Array(BACKUP_KEY_BYTES));
  if (!(key instanceof Uint8Array) || key.length !== BACKUP_KEY_BYTES) {
    throw new BackupKeyError(BackupKeyErrorCode.InvalidKey, `the random source returned ${key?.length} bytes, not ${BACKUP_KEY_BYTES}`);
  }
  return key;
}

const HEX = '0123456789abcdef';

function checkKey(key: Uint8Array, what = 'backup key'): void {
  if (!(key instanceof Uint8Array) || key.length !== BACKUP_KEY_BYTES) {
    const got = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
    throw new BackupKeyError(BackupKeyErrorCode.InvalidKey, `a ${what} is ${BACKUP_KEY_BYTES} bytes, got ${got}`);
  }
}

const CHECK_LABEL = new TextEncoder().encode(LABELS.backupKeyCheck);

/** The 4-hex-digit check group of `key` (see the header). */
export function backupKeyCheck(key: Uint8Array): string {
  checkKey(key);
  const h = sha256.create();
  h.update(CHECK_LABEL);
  h.update(key);
  return toHex(h.digest().subarray(0, CHECK_DIGITS / 2));
}

export interface FormatOptions {
  /** Append the check group (a 17th group). Default false. */
  checked?: boolean;
  /** Put a line break after every this many groups (e.g. 4 for four lines on paper). Default: one line. */
  groupsPerLine?: number;
}

/** `8a58 c29b ...`: 16 groups of 4 lower-case hex digits, plus the check group when asked. */
export function formatBackupKey(key: Uint8Array, opts: FormatOptions = {}): string {
  checkKey(key);
  let digits = toHex(key);
  if (opts.checked) digits += backupKeyCheck(key);
  const groups: string[] = [];
  for (let i = 0; i < digits.length; i += GROUP) groups.push(digits.slice(i, i + GROUP));
  const per = opts.groupsPerLine;
  if (!per || per <= 0) return groups.join(' ');
  const lines: string[] = [];
  for (let i = 0; i < groups.length; i += per) lines.push(groups.slice(i, i + per).join(' '));
  return lines.join('\n');
}

/** Spaces, tabs, line breaks, hyphens and dashes, zero-width characters: ignored between digits. */
const SEPARATOR = /^[\s\-\u2010-\u2015\u2212\u00ad\u200b-\u200d\u2060\ufeff]$/u;
const LINE_BREAK = /^[\n\u2028\u2029]$/u;

/** Look-alikes of hex digits. */
const SUGGEST: Record<string, string> = {
  O: '0', o: '0', Q: '0', '°': '0',
  l: '1', I: '1', i: '1', L: '1', '|': '1', '!': '1',
  Z: '2', z: '2',
  S: '5', s: '5', $: '5',
  G: '6',
  T: '7',
  g: '9', q: '9',
};

function suggestionFor(ch: string): string | undefined {
  if (SUGGEST[ch]) return SUGGEST[ch];
  const cp = ch.codePointAt(0)!;
  // Full-width digits and letters (an East Asian input method): their ASCII twins.
  if (cp >= 0xff10 && cp <= 0xff19) return String.fromCharCode(cp - 0xff10 + 0x30);
  if (cp >= 0xff21 && cp <= 0xff26) return String.fromCharCode(cp - 0xff21 + 0x61);
  if (cp >= 0xff41 && cp <= 0xff46) return String.fromCharCode(cp - 0xff41 + 0x61);
  return undefined;
}

function show(ch: string): string {
  const cp = ch.codePointAt(0)!;
  const printable = cp > 0x20 && cp !== 0x7f && !(cp >= 0x80 && cp < 0xa0);
  const code = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return printable ? `"${ch}"` : `the invisible character ${code}`;
}

function describeBad(b: BadCharacter, multiline: boolean): string {
  const where = multiline ? `line ${b.line}, column ${b.column}` : `character ${b.position}`;
  let s = `${show(b.char)} at ${where} (digit ${b.digit}, group ${Math.ceil(b.digit / GROUP)}) is not a hex digit`;
  if (b.suggestion) s += `; did you mean "${b.suggestion}"?`;
  else if ('.,:;_/'.includes(b.char)) s += '; separate the groups with spaces or dashes';
  else s += '; hex digits are 0-9 and a-f';
  return s;
}

function hexValue(ch: string): number {
  if (ch.length !== 1) return -1;
  const c = ch.charCodeAt(0);
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

export interface ParseOptions {
  /** Refuse the bare 64 digits: the check group must be present. Default false. */
  requireCheck?: boolean;
}

/**
 * Reads a typed backup key: 64 hex digits, or 68 with the check group (verified). Throws a
 * `BackupKeyError` whose message says what is wrong and where.
 */
export function parseBackupKey(text: string, opts: ParseOptions = {}): Uint8Array {
  const digits: number[] = [];
  const bad: BadCharacter[] = [];
  /** Runs of digit slots between separators: for "group 7 has 3 digits" hints. */
  const groups: string[] = [];
  let current = '';
  let position = 0;
  let line = 1;
  let column = 0;
  let multiline = false;
  for (const ch of text) {
    position++;
    column++;
    if (SEPARATOR.test(ch)) {
      if (current) groups.push(current);
      current = '';
      if (LINE_BREAK.test(ch)) {
        if (digits.length > 0) multiline = true;
        line++;
        column = 0;
      }
      continue;
    }
    current += ch;
    const v = hexValue(ch);
    if (v < 0) {
      const suggestion = suggestionFor(ch);
      bad.push({ char: ch, position, line, column, digit: digits.length + 1, ...(suggestion ? { suggestion } : {}) });
    }
    digits.push(v);
  }
  if (current) groups.push(current);
  // `digits` holds a slot per non-separator character; bad ones are -1.
  const n = digits.length;

  if (bad.length > 0) {
    const first = describeBad(bad[0]!, multiline);
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more: ${bad.slice(1, 4).map((b) => show(b.char)).join(', ')}${bad.length > 4 ? ', ...' : ''})` : '';
    throw new BackupKeyError(BackupKeyErrorCode.NotAHexDigit, first + more, { digits: n, bad });
  }

  if (n !== BACKUP_KEY_DIGITS && n !== CHECKED_KEY_DIGITS) {
    let msg: string;
    if (n === 0) msg = `no hex digits typed: a backup key has ${BACKUP_KEY_DIGITS} hex digits (16 groups of 4)`;
    else {
      msg = `typed ${n} hex digit${n === 1 ? '' : 's'}, but a backup key has ${BACKUP_KEY_DIGITS} (16 groups of 4)`;
      if (n < BACKUP_KEY_DIGITS) msg += `: ${BACKUP_KEY_DIGITS - n} missing`;
      else if (n < CHECKED_KEY_DIGITS) msg += `, or ${CHECKED_KEY_DIGITS} with its 4-digit check group: ${n - BACKUP_KEY_DIGITS} too many for one, ${CHECKED_KEY_DIGITS - n} too few for the other`;
      else msg += `, or ${CHECKED_KEY_DIGITS} with its 4-digit check group: ${n - CHECKED_KEY_DIGITS} too many`;
      if (groups.length > 1) {
        const odd = groups.map((g, i) => ({ g, i })).filter(({ g }) => g.length !== GROUP);
        if (odd.length > 0 && odd.length <= 3) {
          msg += `; look at ${odd.map(({ g, i }) => `group ${i + 1} ("${g}", ${g.length} digit${g.length === 1 ? '' : 's'})`).join(', ')}`;
        }
      }
    }
    throw new BackupKeyError(BackupKeyErrorCode.WrongDigitCount, msg, { digits: n });
  }

  const key = new Uint8Array(BACKUP_KEY_BYTES);
  for (let i = 0; i < BACKUP_KEY_BYTES; i++) key[i] = (digits[2 * i]! << 4) | digits[2 * i + 1]!;

  if (n === CHECKED_KEY_DIGITS) {
    const typed = digits
      .slice(BACKUP_KEY_DIGITS)
      .map((d) => HEX[d])
      .join('');
    if (typed !== backupKeyCheck(key)) {
      key.fill(0);
      throw new BackupKeyError(
        BackupKeyErrorCode.CheckMismatch,
        'the check group (the last 4 digits) does not match the key: a digit is mistyped (in the key or in the check group); compare each group with the written key',
        { digits: n },
      );
    }
  } else if (opts.requireCheck) {
    key.fill(0);
    throw new BackupKeyError(
      BackupKeyErrorCode.CheckRequired,
      `typed ${BACKUP_KEY_DIGITS} hex digits without the check group: type all 17 groups (68 digits)`,
      { digits: n },
    );
  }
  return key;
}

export const BACKUP_KDF_PURPOSES = {
  'file-key': { info: LABELS.backupFileKey, length: 32 },
  'header-key': { info: LABELS.backupHeaderKey, length: 32 },
  'key-check': { info: LABELS.backupKeyCheckValue, length: 16 },
} as const;
export type BackupKdfPurpose = keyof typeof BACKUP_KDF_PURPOSES;

const te = new TextEncoder();

/**
 * HKDF-SHA256 (RFC 5869) from the backup key for one purpose of one backup file (see the
 * header): IKM = `rootKey`, salt = `fileId` (32 bytes), info = the purpose's label.
 */
export function deriveBackupSubkey(rootKey: Uint8Array, purpose: BackupKdfPurpose, fileId: Uint8Array): Uint8Array {
  checkKey(rootKey);
  checkKey(fileId, 'file id');
  const p = BACKUP_KDF_PURPOSES[purpose];
  if (!p) throw new BackupKeyError(BackupKeyErrorCode.InvalidPurpose, `unknown key derivation purpose ${JSON.stringify(purpose)}`);
  return hkdf(sha256, rootKey, fileId, te.encode(p.info), p.length);
}
