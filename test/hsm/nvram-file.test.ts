/**
 * hsm/nvram-file.ts: round trip, the size limit, and torn or damaged writes: a slot cut short or
 * corrupted reads back as the previous contents, and damage to both slots is a clear error. The
 * file stays open between writes: a descriptor closed underneath or reused for another file is
 * refused without writing, and a write that fails part way (ENOSPC, a failed fdatasync) keeps the
 * previous contents and leaves the next write to open the file again.
 */
import * as fs from 'node:fs';
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { PlatformFault } from '../../enclave/api/codes.ts';
import { FileNvram, NvramFileError } from '../../hsm/nvram-file.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-nvram-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `nvram-${n++}.bin`);
const bytes = (s: string) => new TextEncoder().encode(s);
const SLOT = (size: number) => 24 + size + 32;

/** A fresh NVRAM file of region `size` after `contents` were written in order, and its raw bytes. */
function written(size: number, ...contents: Uint8Array[]): { file: string; raw: Buffer } {
  const file = fresh();
  const nv = new FileNvram(file, { size });
  for (const c of contents) nv.write(c);
  return { file, raw: fs.readFileSync(file) };
}

describe('FileNvram', () => {
  it('reads empty before any write, then what was written, across instances', () => {
    const file = fresh();
    const a = new FileNvram(file);
    expect(a.size).toBe(4096);
    expect(a.read()).toEqual(new Uint8Array(0));
    a.write(bytes('first'));
    expect(a.read()).toEqual(bytes('first'));
    a.write(bytes('second, longer'));
    a.write(new Uint8Array(0));
    a.write(bytes('fourth'));
    expect(new FileNvram(file).read()).toEqual(bytes('fourth'));
    expect(fs.statSync(file).size).toBe(2 * SLOT(4096));
  });

  it('returns copies: changing a read or written array does not change the contents', () => {
    const nv = new FileNvram(fresh(), { size: 64 });
    const data = bytes('abc');
    nv.write(data);
    data[0] = 0;
    const got = nv.read();
    got[1] = 0;
    expect(nv.read()).toEqual(bytes('abc'));
  });

  it('accepts exactly its size and refuses one byte more, keeping the old contents', () => {
    const file = fresh();
    const nv = new FileNvram(file, { size: 100 });
    nv.write(new Uint8Array(100).fill(7));
    const err = (() => {
      try {
        nv.write(new Uint8Array(101));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NvramFileError);
    expect((err as NvramFileError).code).toBe(PlatformFault.NvramFull);
    expect(new FileNvram(file, { size: 100 }).read()).toEqual(new Uint8Array(100).fill(7));
  });

  it('refuses to open a file with a different region size', () => {
    const file = fresh();
    new FileNvram(file, { size: 64 }).write(bytes('x'));
    expect(() => new FileNvram(file, { size: 128 }).read()).toThrow(/64-byte region, opened as 128/);
  });

  it('a write cut short (file truncated inside the new slot) reads back the previous contents', () => {
    const file = fresh();
    const nv = new FileNvram(file, { size: 256 });
    nv.write(bytes('v1')); // slot 0
    nv.write(bytes('v2')); // slot 1
    fs.truncateSync(file, SLOT(256) + 40);
    expect(new FileNvram(file, { size: 256 }).read()).toEqual(bytes('v1'));
    // The next write goes to the damaged slot's place and is whole again.
    const again = new FileNvram(file, { size: 256 });
    again.write(bytes('v3'));
    expect(new FileNvram(file, { size: 256 }).read()).toEqual(bytes('v3'));
  });

  it('a torn newer slot (bytes of the new data, old checksum) reads back the previous contents', () => {
    const { file, raw } = written(256, bytes('older'), bytes('newer'), bytes('newest')); // newest: slot 0 again, seq 3
    raw.write('XX', 24); // half of a new write landed in slot 0
    fs.writeFileSync(file, raw);
    expect(new FileNvram(file, { size: 256 }).read()).toEqual(bytes('newer'));
  });

  it('damage to both slots is a clear NvramCorrupt error, and writes are refused', () => {
    const { file, raw } = written(64, bytes('a'), bytes('b'));
    raw[30] = raw[30]! ^ 1;
    raw[SLOT(64) + 30] = raw[SLOT(64) + 30]! ^ 1;
    fs.writeFileSync(file, raw);
    const broken = new FileNvram(file, { size: 64 });
    expect(() => broken.read()).toThrow(/corrupt: neither slot verifies/);
    try {
      broken.write(bytes('c'));
      expect.unreachable();
    } catch (e) {
      expect((e as NvramFileError).code).toBe(PlatformFault.NvramCorrupt);
    }
    fs.writeFileSync(file, 'garbage');
    expect(() => new FileNvram(file, { size: 64 }).read()).toThrow(NvramFileError);
  });

  it('leaves no partial file when the first write never completed (temp files are ignored)', () => {
    const file = fresh();
    fs.writeFileSync(`${file}.deadbeef.tmp`, 'half of a first write');
    expect(new FileNvram(file).read()).toEqual(new Uint8Array(0));
  });

  it('property: any damage confined to one slot reads back that slot or the other, never anything else', () => {
    const size = 48;
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: size }),
        fc.uint8Array({ maxLength: size }),
        fc.array(fc.tuple(fc.nat(SLOT(size) - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (older, newer, flips, truncate) => {
          const { file, raw } = written(size, older, newer); // slot 0, then slot 1: the newest
          let damaged: Buffer = raw;
          if (truncate) damaged = raw.subarray(0, SLOT(size) + flips[0]![0]);
          else for (const [at, x] of flips) raw[SLOT(size) + at] = raw[SLOT(size) + at]! ^ x;
          fs.writeFileSync(file, damaged);
          const got = new FileNvram(file, { size }).read();
          fs.rmSync(file);
          return Buffer.from(got).equals(Buffer.from(older)) || Buffer.from(got).equals(Buffer.from(newer));
        },
      ),
      { numRuns: 100 },
    );
  });

  describe('the descriptor kept open between writes', () => {
    /** The descriptors of this process open on `file` (Linux: /proc/self/fd). */
    const fdsOf = (file: string): number[] =>
      fs.readdirSync('/proc/self/fd').map(Number).filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
        } catch {
          return false;
        }
      });
    const codeOf = (f: () => unknown): number | undefined => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(NvramFileError);
        return (e as NvramFileError).code;
      }
      return undefined;
    };
    /** Replaces fs.`name` for the code under test (node:fs's ESM bindings follow its default export after syncBuiltinESMExports). */
    function swap<K extends 'writeSync' | 'fdatasyncSync'>(name: K, fake: (typeof fsModule)[K]): () => void {
      const orig = fsModule[name];
      fsModule[name] = fake;
      syncBuiltinESMExports();
      return () => {
        fsModule[name] = orig;
        syncBuiltinESMExports();
      };
    }

    it('writes through one descriptor (no open per write) and close() releases it', () => {
      const file = fresh();
      const nv = new FileNvram(file, { size: 64 });
      nv.write(bytes('a')); // created whole, durably
      nv.write(bytes('b'));
      const fds = fdsOf(file);
      expect(fds).toHaveLength(1);
      nv.write(bytes('c'));
      expect(fdsOf(file)).toEqual(fds);
      nv.close();
      expect(fdsOf(file)).toEqual([]);
      nv.write(bytes('d')); // opens it again
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('d'));
      nv.close();
    });

    it('a descriptor closed underneath: the write is refused (NvramError), nothing changes, the next write opens the file again', () => {
      const file = fresh();
      const nv = new FileNvram(file, { size: 64 });
      nv.write(bytes('one'));
      nv.write(bytes('two'));
      const raw = fs.readFileSync(file);
      for (const fd of fdsOf(file)) fs.closeSync(fd);
      expect(codeOf(() => nv.write(bytes('three')))).toBe(PlatformFault.NvramError);
      expect(fs.readFileSync(file).equals(raw)).toBe(true);
      expect(nv.read()).toEqual(bytes('two'));
      nv.write(bytes('four'));
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('four'));
      nv.close();
    });

    it('a descriptor number reused for another file: refused without writing to it or closing it', () => {
      const file = fresh();
      const nv = new FileNvram(file, { size: 64 });
      nv.write(bytes('one'));
      nv.write(bytes('two'));
      const [fd] = fdsOf(file);
      fs.closeSync(fd!);
      const other = fresh();
      fs.writeFileSync(other, 'someone else');
      const otherFd = fs.openSync(other, 'r+'); // the lowest free number: the one just closed
      try {
        expect(otherFd).toBe(fd);
        expect(codeOf(() => nv.write(bytes('three')))).toBe(PlatformFault.NvramError);
        expect(fs.readFileSync(other, 'utf8')).toBe('someone else');
        expect(fs.fstatSync(otherFd).size).toBe(12); // still open: not ours to close
        nv.write(bytes('four'));
        expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('four'));
      } finally {
        fs.closeSync(otherFd);
        nv.close();
      }
    });

    it('ENOSPC part way through a slot: NvramError, the previous contents read back, the next write is whole', () => {
      const file = fresh();
      const nv = new FileNvram(file, { size: 64 });
      nv.write(bytes('kept')); // slot 0
      nv.write(bytes('newer')); // slot 1: the next goes to slot 0
      const real = fsModule.writeSync;
      const restore = swap('writeSync', ((fd: number, buf: Uint8Array, off: number, _len: number, pos: number) => {
        real(fd, buf, off, 20, pos); // a torn slot: its front only
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }) as unknown as typeof fsModule.writeSync);
      try {
        expect(codeOf(() => nv.write(bytes('lost')))).toBe(PlatformFault.NvramError);
      } finally {
        restore();
      }
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('newer'));
      expect(nv.read()).toEqual(bytes('newer'));
      expect(fdsOf(file)).toEqual([]); // dropped: the next write opens afresh
      nv.write(bytes('after'));
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('after'));
      nv.write(bytes('and again')); // slot 1, over 'newer'
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('and again'));
      nv.close();
    });

    it('a short write and a failed fdatasync are NvramError too, and the previous contents stay readable', () => {
      const file = fresh();
      const nv = new FileNvram(file, { size: 64 });
      nv.write(bytes('v1'));
      nv.write(bytes('v2'));
      let restore = swap('writeSync', (() => 7) as unknown as typeof fsModule.writeSync);
      try {
        expect(codeOf(() => nv.write(bytes('v3')))).toBe(PlatformFault.NvramError);
      } finally {
        restore();
      }
      restore = swap('fdatasyncSync', () => {
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      });
      try {
        expect(codeOf(() => nv.write(bytes('v4')))).toBe(PlatformFault.NvramError);
      } finally {
        restore();
      }
      expect(nv.read()).toEqual(bytes('v2'));
      nv.write(bytes('v5'));
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('v5'));
      nv.close();
    });

    it('a shorter write after a longer one leaves no stale padding in its slot', () => {
      const { file, raw } = written(64, new Uint8Array(64).fill(9), new Uint8Array(64).fill(8), bytes('s'));
      // slot 0 held 64 bytes of 9s; it now holds 's' and zeros up to its capacity
      expect(raw.subarray(24 + 1, 24 + 64).every((x) => x === 0)).toBe(true);
      expect(new FileNvram(file, { size: 64 }).read()).toEqual(bytes('s'));
    });
  });
});
