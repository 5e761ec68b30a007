/**
 * The backup key's display and typing rules and its HKDF-SHA256 (RFC 5869) derivations, as
 * specified in client/backup-key.ts: round trips of every display form (fast-check), each
 * class of typing mistake with its message, the checked form, and the derivations checked
 * against node:crypto's HKDF.
 */
import { createHash, hkdfSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BACKUP_KDF_PURPOSES,
  BackupKeyError,
  BackupKeyErrorCode,
  backupKeyCheck,
  deriveBackupSubkey,
  formatBackupKey,
  generateBackupKey,
  parseBackupKey,
} from '../../client/backup-key.ts';
import type { BackupKdfPurpose } from '../../client/backup-key.ts';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const KEY_TEXT = '0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f';

function parseError(text: string, opts?: { requireCheck?: boolean }): BackupKeyError {
  try {
    parseBackupKey(text, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(BackupKeyError);
    return e as BackupKeyError;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
}

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

/** Re-types a formatted key the ways people do: case, separators, line breaks. */
const retyped = (formatted: string) =>
  fc
    .record({
      upper: fc.array(fc.boolean(), { minLength: formatted.length, maxLength: formatted.length }),
      seps: fc.array(fc.constantFrom(' ', '', '-', '  ', '\n', '\r\n', ' - ', '\t', '\u2013', '\u200b'), {
        minLength: formatted.length,
        maxLength: formatted.length,
      }),
      lead: fc.constantFrom('', ' ', '\n', '  '),
      trail: fc.constantFrom('', ' ', '\n', '\r\n'),
    })
    .map(({ upper, seps, lead, trail }) => {
      let out = lead;
      let i = 0;
      for (const ch of formatted) {
        if (ch === ' ') out += seps[i]!;
        else out += upper[i] ? ch.toUpperCase() : ch;
        i++;
      }
      return out + trail;
    });

describe('backup key: display and parse', () => {
  it('a known key formats as 16 groups of 4 lower-case hex digits', () => {
    expect(formatBackupKey(KEY)).toBe(KEY_TEXT);
    expect(formatBackupKey(KEY, { groupsPerLine: 4 }).split('\n')).toEqual([
      '0001 0203 0405 0607',
      '0809 0a0b 0c0d 0e0f',
      '1011 1213 1415 1617',
      '1819 1a1b 1c1d 1e1f',
    ]);
    expect(parseBackupKey(KEY_TEXT)).toEqual(KEY);
  });

  it('the check group is the first 2 bytes of SHA-256("bkv/backup-key/check/v1" || key)', () => {
    const expected = createHash('sha256').update('bkv/backup-key/check/v1').update(KEY).digest('hex').slice(0, 4);
    expect(backupKeyCheck(KEY)).toBe(expected);
    expect(formatBackupKey(KEY, { checked: true })).toBe(`${KEY_TEXT} ${expected}`);
  });

  it('generates 32 random bytes, or takes them from an injected source', () => {
    const a = generateBackupKey();
    const b = generateBackupKey();
    expect(a.length).toBe(32);
    expect(a).not.toEqual(b);
    expect(generateBackupKey(() => KEY.slice())).toEqual(KEY);
    expect(() => generateBackupKey(() => new Uint8Array(31))).toThrow(BackupKeyError);
  });

  it('round trips every key, plain and checked, however it is re-typed', () => {
    fc.assert(
      fc.property(
        key32.chain((k) => fc.tuple(fc.constant(k), fc.boolean()).chain(([k2, checked]) => fc.tuple(fc.constant(k2), retyped(formatBackupKey(k2, { checked }))))),
        ([k, text]) => {
          expect(parseBackupKey(text)).toEqual(k);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('round trips the paper layout (four lines of four groups)', () => {
    fc.assert(
      fc.property(key32, fc.boolean(), fc.integer({ min: 1, max: 17 }), (k, checked, per) => {
        expect(parseBackupKey(formatBackupKey(k, { checked, groupsPerLine: per }))).toEqual(k);
      }),
    );
  });
});

describe('backup key: typing mistakes', () => {
  it('too few digits: says how many were typed, that 64 are needed, and which group is short', () => {
    const e = parseError(KEY_TEXT.replace('0a0b', '0a0'));
    expect(e.code).toBe(BackupKeyErrorCode.WrongDigitCount);
    expect(e.message).toContain('typed 63 hex digits');
    expect(e.message).toContain('64');
    expect(e.message).toContain('1 missing');
    expect(e.message).toContain('group 6 ("0a0", 3 digits)');
    expect(e.details.digits).toBe(63);
  });

  it('too many digits: 65 to 67 and beyond 68', () => {
    const e = parseError(KEY_TEXT + '5');
    expect(e.code).toBe(BackupKeyErrorCode.WrongDigitCount);
    expect(e.message).toContain('typed 65 hex digits');
    expect(e.message).toContain('or 68 with its 4-digit check group');
    const f = parseError(KEY_TEXT + ' 0000 0');
    expect(f.message).toContain('typed 69 hex digits');
    expect(f.message).toContain('1 too many');
  });

  it('nothing typed', () => {
    for (const t of ['', '   ', '\n - \n']) {
      const e = parseError(t);
      expect(e.code).toBe(BackupKeyErrorCode.WrongDigitCount);
      expect(e.message).toContain('no hex digits typed');
    }
  });

  it('a whole group left out', () => {
    const e = parseError(KEY_TEXT.replace('0c0d ', ''));
    expect(e.message).toContain('typed 60 hex digits');
    expect(e.message).toContain('4 missing');
  });

  const lookalikes: [string, string][] = [
    ['O', '0'],
    ['o', '0'],
    ['l', '1'],
    ['I', '1'],
    ['i', '1'],
    ['S', '5'],
    ['s', '5'],
    ['Z', '2'],
    ['G', '6'],
    ['g', '9'],
    ['q', '9'],
    ['\uff10', '0'],
    ['\uff41', 'a'],
  ];
  for (const [typo, meant] of lookalikes) {
    it(`a look-alike "${typo}" gets the suggestion "${meant}" and its position`, () => {
      // Replace the 11th digit (group 3, first digit: "0" of "0405").
      const text = KEY_TEXT.replace('0405', `${typo}405`);
      const e = parseError(text);
      expect(e.code).toBe(BackupKeyErrorCode.NotAHexDigit);
      expect(e.message).toContain(`"${typo}" at character 11`);
      expect(e.message).toContain('digit 9, group 3');
      expect(e.message).toContain(`did you mean "${meant}"?`);
      expect(e.details.bad?.[0]).toMatchObject({ char: typo, position: 11, digit: 9, suggestion: meant });
    });
  }

  it('other characters: no suggestion but the hex alphabet; punctuation is told to use spaces or dashes', () => {
    const e = parseError(KEY_TEXT.replace('0e0f', '0x0f'));
    expect(e.code).toBe(BackupKeyErrorCode.NotAHexDigit);
    expect(e.message).toContain('"x" at character 37');
    expect(e.message).toContain('hex digits are 0-9 and a-f');
    const dot = parseError(KEY_TEXT.replaceAll(' ', '.'));
    expect(dot.message).toContain('"." at character 5');
    expect(dot.message).toContain('separate the groups with spaces or dashes');
    expect(dot.message).toContain('and 14 more');
  });

  it('invisible characters are named by code point', () => {
    const e = parseError(KEY_TEXT.replace('0809', '08\u000709'));
    expect(e.message).toContain('the invisible character U+0007');
  });

  it('on several lines the position is a line and column', () => {
    const text = formatBackupKey(KEY, { groupsPerLine: 4 }).replace('1415', '14l5');
    const e = parseError(text);
    expect(e.message).toContain('"l" at line 3, column 13');
    expect(e.message).toContain('digit 43, group 11');
    expect(e.message).toContain('did you mean "1"?');
  });

  it('characters outside the Basic Multilingual Plane count as one character', () => {
    const e = parseError(`\u{1F511} ${KEY_TEXT}`);
    expect(e.message).toContain('"\u{1F511}" at character 1');
  });

  it('bad characters are reported before the digit count', () => {
    const e = parseError('12O4');
    expect(e.code).toBe(BackupKeyErrorCode.NotAHexDigit);
  });
});

describe('backup key: the checked form', () => {
  const checked = formatBackupKey(KEY, { checked: true });

  it('verifies the check group and returns the key', () => {
    expect(parseBackupKey(checked)).toEqual(KEY);
    expect(parseBackupKey(checked.toUpperCase().replaceAll(' ', '-'))).toEqual(KEY);
    expect(parseBackupKey(checked, { requireCheck: true })).toEqual(KEY);
  });

  it('a mistyped digit in the key or the check group: "a digit is mistyped"', () => {
    const inKey = checked.replace('0a0b', '0a0c');
    const inCheck = checked.slice(0, -1) + (checked.endsWith('0') ? '1' : '0');
    for (const t of [inKey, inCheck]) {
      const e = parseError(t);
      expect(e.code).toBe(BackupKeyErrorCode.CheckMismatch);
      expect(e.message).toContain('a digit is mistyped');
    }
  });

  it('catches every single-digit substitution and every swap of neighbouring digits of a fixed key', () => {
    const digits = checked.replaceAll(' ', '');
    const missed: string[] = [];
    for (let i = 0; i < digits.length; i++) {
      for (const d of '0123456789abcdef') {
        if (d === digits[i]) continue;
        const t = digits.slice(0, i) + d + digits.slice(i + 1);
        try {
          parseBackupKey(t);
          missed.push(t);
        } catch (e) {
          expect((e as BackupKeyError).code).toBe(BackupKeyErrorCode.CheckMismatch);
        }
      }
      if (i + 1 < digits.length && digits[i] !== digits[i + 1]) {
        const t = digits.slice(0, i) + digits[i + 1] + digits[i] + digits.slice(i + 2);
        try {
          parseBackupKey(t);
          missed.push(t);
        } catch {
          // detected
        }
      }
    }
    expect(missed).toEqual([]);
  });

  it('a random key with one random digit changed is caught (a 2^-16 miss rate; fixed seed)', () => {
    fc.assert(
      fc.property(key32, fc.nat(67), fc.integer({ min: 1, max: 15 }), (k, pos, delta) => {
        const digits = formatBackupKey(k, { checked: true }).replaceAll(' ', '');
        const d = ((parseInt(digits[pos]!, 16) + delta) % 16).toString(16);
        expect(() => parseBackupKey(digits.slice(0, pos) + d + digits.slice(pos + 1))).toThrow(/a digit is mistyped/);
      }),
      { seed: 5052, numRuns: 500 },
    );
  });

  it('requireCheck refuses the bare 64 digits', () => {
    const e = parseError(KEY_TEXT, { requireCheck: true });
    expect(e.code).toBe(BackupKeyErrorCode.CheckRequired);
    expect(e.message).toContain('68 digits');
  });
});

describe('backup key: HKDF-SHA256 derivations', () => {
  const fileId = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 ^ i);

  it('each purpose is HKDF-SHA256(IKM = key, salt = file id, info = its label)', () => {
    expect(Object.keys(BACKUP_KDF_PURPOSES).sort()).toEqual(['file-key', 'header-key', 'key-check']);
    for (const [purpose, { info, length }] of Object.entries(BACKUP_KDF_PURPOSES)) {
      expect(info).toBe(`bkv/backup/v1/${purpose}`);
      const expected = new Uint8Array(hkdfSync('sha256', KEY, fileId, info, length));
      expect(deriveBackupSubkey(KEY, purpose as BackupKdfPurpose, fileId)).toEqual(expected);
    }
  });

  it('purposes and files give unrelated keys', () => {
    const a = deriveBackupSubkey(KEY, 'file-key', fileId);
    const b = deriveBackupSubkey(KEY, 'header-key', fileId);
    const c = deriveBackupSubkey(KEY, 'file-key', fileId.map((x) => x ^ 1));
    expect(a).not.toEqual(b);
    expect(a).not.toEqual(c);
    expect(deriveBackupSubkey(KEY, 'key-check', fileId).length).toBe(16);
  });

  it('refuses keys and file ids that are not 32 bytes, and unknown purposes', () => {
    for (const [k, f] of [
      [new Uint8Array(31), fileId],
      [KEY, new Uint8Array(16)],
    ] as const) {
      try {
        deriveBackupSubkey(k, 'file-key', f);
        throw new Error('accepted');
      } catch (e) {
        expect((e as BackupKeyError).code).toBe(BackupKeyErrorCode.InvalidKey);
      }
    }
    expect(() => deriveBackupSubkey(KEY, 'nope' as BackupKdfPurpose, fileId)).toThrow(/unknown key derivation purpose/);
    expect(() => formatBackupKey(new Uint8Array(16))).toThrow(BackupKeyError);
  });
});
