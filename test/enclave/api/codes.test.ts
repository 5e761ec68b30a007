/**
 * enclave/api/codes.ts `CODE_RANGES` is the one table of the project's error code ranges: every
 * code table lies inside the range listed for it, in the file listed, ranges do not overlap, no
 * number is used twice, and the coded errors share `CodedError` with their names and codes as before.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CODE_RANGES, CodedError, Codec, EnclaveFault, Handling, Integrity, Lifecycle, PlatformFault, faultName } from '../../../enclave/api/codes.ts';
import { OpaqueError, OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import { ChannelError, ChannelErrorCode } from '../../../host/channel/channel.ts';
import { TokenPinError, TokenPinErrorCode } from '../../../hsm/tokens/token-pins.ts';
import { P11KitErrorCode } from '../../../hsm/tokens/p11kit/errors.ts';
import { StorageCode, StorageError } from '../../../host/storage/types.ts';
import { BackupFileError, BackupFileErrorCode } from '../../../client/backup-file.ts';
import { BackupKeyError, BackupKeyErrorCode } from '../../../client/backup-key.ts';
import { ErrorCode } from '../../../host/service/error-codes.ts';
import { NvramFileError } from '../../../hsm/nvram-file.ts';
import { NvramTokenError } from '../../../hsm/nvram-token.ts';
import { FleetCode } from '../../../enclave/fleet/faults.ts';
import { TokenCheckCode } from '../../../hsm/tokens/requirements.ts';

const root = resolve(import.meta.dirname, '../../..');
const numbers = (t: Record<string, number | { num: number }>): number[] => Object.values(t).map((v) => (typeof v === 'number' ? v : v.num));

const TABLES: Record<(typeof CODE_RANGES)[number]['table'], number[]> = {
  OpaqueErrorCode: numbers(OpaqueErrorCode),
  Codec: numbers(Codec),
  Handling: numbers(Handling),
  Integrity: numbers(Integrity),
  PlatformFault: numbers(PlatformFault),
  Lifecycle: numbers(Lifecycle),
  ChannelErrorCode: numbers(ChannelErrorCode),
  TokenPinErrorCode: numbers(TokenPinErrorCode),
  P11KitErrorCode: numbers(P11KitErrorCode),
  StorageCode: numbers(StorageCode),
  BackupFileErrorCode: numbers(BackupFileErrorCode),
  BackupKeyErrorCode: numbers(BackupKeyErrorCode),
  ErrorCode: numbers(ErrorCode),
  FleetCode: numbers(FleetCode),
  TokenCheckCode: numbers(TokenCheckCode),
};

describe('error code ranges (enclave/api/codes.ts CODE_RANGES)', () => {
  it('every table lies inside its range, and its file defines it and its error class', () => {
    for (const r of CODE_RANGES) {
      const codes = TABLES[r.table];
      expect(codes.length, r.table).toBeGreaterThan(0);
      for (const c of codes) expect(c >= r.from && c <= r.to, `${r.table} ${c} outside ${r.from}-${r.to}`).toBe(true);
      const src = readFileSync(resolve(root, r.file), 'utf8');
      expect(src, `${r.file} defines ${r.table}`).toMatch(new RegExp(`export const ${r.table} = \\{`));
      expect(src, `${r.file} has or names ${r.owner}`).toContain(r.owner);
    }
  });

  it('ranges do not overlap, and no number is used twice', () => {
    const sorted = [...CODE_RANGES].sort((a, b) => a.from - b.from);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.from, `${sorted[i]!.table} after ${sorted[i - 1]!.table}`).toBeGreaterThan(sorted[i - 1]!.to);
    const all = Object.values(TABLES).flat();
    expect(new Set(all).size).toBe(all.length);
  });

  it('codedErrorClass: a CodedError and an Error with its fixed name and its code', async () => {
    const { TokenPinError, TokenPinErrorCode } = await import('../../../hsm/tokens/token-pins.ts');
    const e = new TokenPinError(TokenPinErrorCode.PinLocked, 'locked');
    expect(e).toBeInstanceOf(TokenPinError);
    expect(e).toBeInstanceOf(CodedError);
    expect(e).toBeInstanceOf(Error);
    expect([e.name, e.code, e.message]).toEqual(['TokenPinError', TokenPinErrorCode.PinLocked, 'locked']);
    expect(new ChannelError(ChannelErrorCode.BootFailed, 'x')).not.toBeInstanceOf(TokenPinError);
  });

  it('a planted code outside its range is caught (positive control)', () => {
    const r = CODE_RANGES.find((x) => x.table === 'StorageCode')!;
    expect([...TABLES.StorageCode, 4100].every((c) => c >= r.from && c <= r.to)).toBe(false);
  });

  it('the coded errors share CodedError and keep their names, codes and messages', () => {
    const cases: [CodedError, string, number][] = [
      [new EnclaveFault(PlatformFault.TokenError, 'token: CKR_X', 'f'), 'EnclaveFault', 2301],
      [new OpaqueError(OpaqueErrorCode.InvalidLength, 'm', 'field'), 'OpaqueError', 1001],
      [new StorageError(StorageCode.Full, 'm', 'ENOSPC', { cause: 1 }), 'StorageError', 4002],
      [new TokenPinError(TokenPinErrorCode.PinLocked, 'm'), 'TokenPinError', 3107],
      [new NvramFileError(PlatformFault.NvramFull, 'm'), 'NvramFileError', 2304],
      [new NvramTokenError(PlatformFault.NvramCorrupt, 'm'), 'NvramTokenError', 2303],
      [new BackupFileError(BackupFileErrorCode.WrongKey, 'm', 3, 40), 'BackupFileError', 5004],
      [new BackupKeyError(BackupKeyErrorCode.CheckMismatch, 'm', { digits: 68 }), 'BackupKeyError', 5052],
      [new ChannelError(ChannelErrorCode.Crashed, 'm', { cause: 1 }), 'ChannelError', 3004],
    ];
    for (const [e, name, code] of cases) {
      expect(e).toBeInstanceOf(CodedError);
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe(name);
      expect(e.code).toBe(code);
      expect(String(e)).toMatch(new RegExp(`^${name}: `));
    }
    expect((cases[0]![0] as EnclaveFault).field).toBe('f');
    expect((cases[2]![0] as StorageError).detail).toBe('ENOSPC');
    expect((cases[2]![0] as StorageError).cause).toBe(1);
    expect((cases[6]![0] as BackupFileError).offset).toBe(40);
    expect(faultName(PlatformFault.NvramError)).toBe('Platform.NvramError');
  });
});
