/**
 * Backup file format v1 (client/backup-file.ts, client/backup-file-node.ts): round
 * trips at every chunk boundary and for random sizes and chunk sizes (fast-check), WebCrypto and
 * node:crypto giving the same bytes, every attack refused with its code (and, through files, no
 * output and no temporary file left), progress and abort, a 256 MiB stream in bounded memory,
 * and the golden bytes of a small file (test/golden/backup-file.v1.hex; regenerate with
 * `UPDATE_GOLDEN=1` and review, as test/enclave/api/golden.test.ts does).
 */
import { createDecipheriv, createHash, createHmac, hkdfSync } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKUP_MAGIC,
  BackupDecryptor,
  BackupEncryptor,
  BackupFileError,
  BackupFileErrorCode,
  DEFAULT_CHUNK_SIZE,
  FRAME_BYTES,
  HEADER_BYTES,
  TAG_BYTES,
  decryptBackup,
  decryptStream,
  encryptBackup,
  encryptStream,
  encryptedSize,
  webCryptoAead,
} from '../../client/backup-file.ts';
import type { BackupProgress, ChunkAeadFactory, EncryptOptions } from '../../client/backup-file.ts';
import { createDecryptTransform, createEncryptTransform, decryptFile, encryptFile, nodeAead } from '../../client/backup-file-node.ts';
import { deriveBackupSubkey } from '../../client/backup-key.ts';
import { rejectionOf } from '../helpers/errors.ts';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);
const OTHER_KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
const C = BackupFileErrorCode;
const aeads: [string, ChunkAeadFactory][] = [
  ['WebCrypto', webCryptoAead],
  ['node:crypto', nodeAead],
];

function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const fixedId = (b: number) => () => new Uint8Array(32).fill(b);

function cat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** Splits an encrypted file into header and records (frame || sealed). */
function records(file: Uint8Array): { header: Uint8Array; recs: Uint8Array[] } {
  const header = file.subarray(0, HEADER_BYTES);
  const recs: Uint8Array[] = [];
  let off = HEADER_BYTES;
  while (off < file.length) {
    const len = new DataView(file.buffer, file.byteOffset + off).getUint32(0) & 0x7fffffff;
    const end = off + FRAME_BYTES + len + TAG_BYTES;
    recs.push(file.subarray(off, end));
    off = end;
  }
  return { header, recs };
}

async function feedInPieces(consumer: { update(b: Uint8Array): Promise<Uint8Array[]>; finish(): Promise<Uint8Array[]> }, data: Uint8Array, cuts: number[]) {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts.filter((c) => c <= data.length).sort((a, b) => a - b), data.length]) {
    out.push(...(await consumer.update(data.subarray(prev, c))));
    prev = c;
  }
  out.push(...(await consumer.finish()));
  return cat(...out);
}

/** Byte equality without vitest's element-by-element diff (slow on megabytes). */
function expectBytes(got: Uint8Array, want: Uint8Array, what = 'bytes'): void {
  if (Buffer.from(got.buffer, got.byteOffset, got.length).equals(Buffer.from(want.buffer, want.byteOffset, want.length))) return;
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  expect.fail(`${what} differ: lengths ${got.length} and ${want.length}, first difference at ${i}`);
}

async function codeOf(p: Promise<unknown>): Promise<number> {
  const e = await rejectionOf(p);
  expect(e).toBeInstanceOf(BackupFileError);
  return (e as BackupFileError).code;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bkv-backup-file-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

// First, so that it runs on a fresh process whose allocator has not been grown by the rest.
describe('backup file: bounded memory', () => {
  it('streams 256 MiB through encryption and decryption with RSS growth under 64 MiB', async () => {
    const total = 256 * 1024 * 1024;
    const piece = 64 * 1024;
    const block = pattern(1024 * 1024, 5);
    const hashIn = createHash('sha256');
    const hashOut = createHash('sha256');
    async function* source() {
      for (let off = 0; off < total; off += piece) {
        const b = Buffer.from(block.subarray(off % block.length, (off % block.length) + piece));
        b.writeUInt32BE(off / piece, 0);
        hashIn.update(b);
        yield b;
      }
    }
    const sink = () =>
      new Writable({
        write(c: Buffer, _e, cb) {
          hashOut.update(c);
          cb();
        },
      });

    // RSS is sampled after every chunk (a pipeline that never waits for I/O would starve a
    // timer) and by a timer. V8 frees dead Buffers lazily: left alone, 30-60 MiB of them pile up
    // between its own collections here (more when the machine is busy), and the allocator keeps
    // that high-water mark. So that the bound measures what the code holds rather than the
    // collector's timing, a full collection runs after every 64 chunks (4 MiB; `--expose-gc` is
    // switched on here). Retaining chunks would still show: the growth would follow the data.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const base = process.memoryUsage.rss();
    let peak = base;
    let peakAfterGc = base;
    let peakBuffers = 0;
    let sinceGc = 0;
    const sample = (p?: BackupProgress) => {
      peak = Math.max(peak, process.memoryUsage.rss());
      if (p && ++sinceGc >= 64) {
        sinceGc = 0;
        gc();
        peakAfterGc = Math.max(peakAfterGc, process.memoryUsage.rss());
      }
    };
    const timer = setInterval(() => {
      sample();
      peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers);
    }, 20);
    const encPath = join(dir, 'stream.bkv');
    try {
      let t = performance.now();
      await pipeline(Readable.from(source()), createEncryptTransform(KEY, { onProgress: sample }), createWriteStream(encPath));
      const encSec = (performance.now() - t) / 1000;
      t = performance.now();
      await pipeline(createReadStream(encPath), createDecryptTransform(KEY, { onProgress: sample }), sink());
      const decSec = (performance.now() - t) / 1000;
      sample();
      const mib = (n: number) => (n / 1048576).toFixed(1);
      console.log(
        `backup stream 256 MiB (64 KiB chunks, node:crypto, SHA-256 of both ends, through a file): ` +
          `encrypt ${(256 / encSec).toFixed(0)} MB/s, decrypt ${(256 / decSec).toFixed(0)} MB/s; ` +
          `RSS ${mib(base)} MiB -> peak ${mib(peak)} MiB (+${mib(peak - base)} MiB), after collections at most +${mib(peakAfterGc - base)} MiB, ` +
          `Buffers peak ${mib(peakBuffers)} MiB`,
      );
    } finally {
      clearInterval(timer);
      rmSync(encPath, { force: true });
    }
    expect(hashOut.digest('hex')).toBe(hashIn.digest('hex'));
    expect(peak - base).toBeLessThan(64 * 1024 * 1024);
    expect(peakAfterGc - base).toBeLessThan(32 * 1024 * 1024);
  }, 180_000);
});

describe('backup file: round trips', () => {
  const cs = 100;
  const sizes = [0, 1, cs - 1, cs, cs + 1, 2 * cs, 3 * cs + 7, 10 * cs];
  for (const [name, aead] of aeads) {
    it(`${name}: sizes 0, 1, chunk-1, chunk, chunk+1 and several chunks`, async () => {
      for (const n of sizes) {
        const pt = pattern(n, n + 1);
        const file = await encryptBackup(KEY, pt, { chunkSize: cs, aead });
        expect(file.length).toBe(encryptedSize(n, cs));
        expect(Math.max(1, Math.ceil(n / cs))).toBe(records(file).recs.length);
        expectBytes(await decryptBackup(KEY, file, { aead }), pt);
      }
    });
  }

  it('the default chunk size (64 KiB) at its boundaries', async () => {
    const cs64 = DEFAULT_CHUNK_SIZE;
    for (const n of [0, 1, cs64 - 1, cs64, cs64 + 1, 3 * cs64 + 5]) {
      const pt = pattern(n, 7);
      const file = await encryptBackup(KEY, pt, { aead: nodeAead });
      expect(file.length).toBe(encryptedSize(n));
      expectBytes(await decryptBackup(KEY, file), pt);
    }
  });

  it('the header carries magic, version 1, chunk size and the file id', async () => {
    const file = await encryptBackup(KEY, pattern(10), { chunkSize: 4096, random: fixedId(0x5a) });
    expect(file.subarray(0, 8)).toEqual(BACKUP_MAGIC);
    expect(Buffer.from(file.subarray(0, 8)).toString('latin1')).toBe('BKVBAK\r\n');
    expect(Buffer.from(file.subarray(8, 10)).readUInt16BE()).toBe(1);
    expect(Buffer.from(file.subarray(10, 14)).readUInt32BE()).toBe(4096);
    expect(file.subarray(14, 46)).toEqual(new Uint8Array(32).fill(0x5a));
    expect(file.subarray(46, 62)).toEqual(deriveBackupSubkey(KEY, 'key-check', new Uint8Array(32).fill(0x5a)));
  });

  it('random sizes, chunk sizes and input splits (fast-check), both AES-GCM implementations agree', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 1, max: 400 }),
        fc.array(fc.nat(3200), { maxLength: 6 }),
        fc.array(fc.nat(3800), { maxLength: 6 }),
        fc.integer(),
        async (n, cs, cutsIn, cutsOut, seed) => {
          const pt = pattern(n, seed);
          const opts: EncryptOptions = { chunkSize: cs, random: fixedId(seed & 0xff) };
          const whole = await encryptBackup(KEY, pt, { ...opts, aead: webCryptoAead });
          const pieces = await feedInPieces(await BackupEncryptor.create(KEY, { ...opts, aead: nodeAead }), pt, cutsIn);
          expect(pieces).toEqual(whole);
          expect(whole.length).toBe(encryptedSize(n, cs));
          expect(await feedInPieces(new BackupDecryptor(KEY, { aead: nodeAead }), whole, cutsOut)).toEqual(pt);
          expect(await decryptBackup(KEY, whole)).toEqual(pt);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('two encryptions of the same data differ (a fresh file id), and both decrypt', async () => {
    const pt = pattern(500);
    const a = await encryptBackup(KEY, pt);
    const b = await encryptBackup(KEY, pt);
    expect(a).not.toEqual(b);
    expect(await decryptBackup(KEY, b)).toEqual(pt);
  });

  it('Web Streams transforms round trip', async () => {
    const pt = pattern(300_000, 3);
    const source = new ReadableStream<Uint8Array>({
      start(ctl) {
        for (let o = 0; o < pt.length; o += 10_000) ctl.enqueue(pt.slice(o, o + 10_000));
        ctl.close();
      },
    });
    const out: Uint8Array[] = [];
    await source
      .pipeThrough(encryptStream(KEY, { chunkSize: 4096 }))
      .pipeThrough(decryptStream(KEY))
      .pipeTo(new WritableStream({ write: (c) => void out.push(c) }));
    expectBytes(cat(...out), pt);
  });

  it('refuses bad arguments', async () => {
    expect(await codeOf(encryptBackup(new Uint8Array(31), pattern(1)))).toBe(C.InvalidArgument);
    expect(await codeOf(encryptBackup(KEY, pattern(1), { chunkSize: 0 }))).toBe(C.InvalidArgument);
    expect(await codeOf(encryptBackup(KEY, pattern(1), { chunkSize: 16 * 1024 * 1024 + 1 }))).toBe(C.InvalidArgument);
    expect(await codeOf(encryptBackup(KEY, pattern(1), { random: () => new Uint8Array(8) }))).toBe(C.InvalidArgument);
    const enc = await BackupEncryptor.create(KEY);
    await enc.finish();
    expect(await codeOf(enc.update(pattern(1)))).toBe(C.InvalidState);
  });
});

describe('backup file: attacks', () => {
  const cs = 64;
  const n = 10 * cs + 17; // 11 chunks, the last one short
  const pt = pattern(n, 99);
  let file: Uint8Array;
  let other: Uint8Array;
  beforeAll(async () => {
    file = await encryptBackup(KEY, pt, { chunkSize: cs, random: fixedId(1) });
    other = await encryptBackup(KEY, pt, { chunkSize: cs, random: fixedId(2) });
  });

  const flipFinal = (rec: Uint8Array) => {
    const r = rec.slice();
    r[0]! ^= 0x80;
    return r;
  };

  /** name, how to make the attacked file, expected code */
  const attacks: [string, (f: Uint8Array) => Uint8Array, number][] = [
    ['empty file', () => new Uint8Array(0), C.Truncated],
    ['cut inside the header', (f) => f.subarray(0, 40), C.Truncated],
    ['header only', (f) => f.subarray(0, HEADER_BYTES), C.Truncated],
    ['last chunk dropped', (f) => { const { header, recs } = records(f); return cat(header, ...recs.slice(0, -1)); }, C.Truncated],
    ['last three chunks dropped', (f) => { const { header, recs } = records(f); return cat(header, ...recs.slice(0, -3)); }, C.Truncated],
    ['cut inside the last chunk', (f) => f.subarray(0, f.length - 5), C.Truncated],
    ['cut inside a middle chunk', (f) => { const { header, recs } = records(f); return cat(header, ...recs.slice(0, 4), recs[4]!.subarray(0, 30)); }, C.Truncated],
    ['cut inside a frame', (f) => { const { header, recs } = records(f); return cat(header, ...recs.slice(0, 4), recs[4]!.subarray(0, 2)); }, C.Truncated],
    ['cut after a chunk that is then marked final', (f) => { const { header, recs } = records(f); return cat(header, ...recs.slice(0, 4), flipFinal(recs[4]!)); }, C.Truncated],
    ['two chunks swapped', (f) => { const { header, recs } = records(f); [recs[3], recs[4]] = [recs[4]!, recs[3]!]; return cat(header, ...recs); }, C.ChunkOutOfOrder],
    ['a middle chunk dropped', (f) => { const { header, recs } = records(f); recs.splice(5, 1); return cat(header, ...recs); }, C.ChunkOutOfOrder],
    ['first and last swapped', (f) => { const { header, recs } = records(f); const last = recs.pop()!; const first = recs.shift()!; return cat(header, last, ...recs, first); }, C.ChunkOutOfOrder],
    ['a chunk duplicated', (f) => { const { header, recs } = records(f); recs.splice(3, 0, recs[2]!); return cat(header, ...recs); }, C.ChunkDuplicated],
    ['a chunk replaced by an earlier one', (f) => { const { header, recs } = records(f); recs[6] = recs[1]!; return cat(header, ...recs); }, C.ChunkDuplicated],
    ['a chunk from another file (same key, same position)', (f) => { const a = records(f); const b = records(other); a.recs[4] = b.recs[4]!; return cat(a.header, ...a.recs); }, C.ChunkTampered],
    ['the header of another file (same key)', (f) => cat(records(other).header, ...records(f).recs), C.ChunkTampered],
    ['a ciphertext bit flipped', (f) => { const g = f.slice(); g[HEADER_BYTES + 3 * (FRAME_BYTES + cs + TAG_BYTES) + 10]! ^= 4; return g; }, C.ChunkTampered],
    ['a tag bit flipped', (f) => { const g = f.slice(); g[HEADER_BYTES + FRAME_BYTES + cs + 3]! ^= 1; return g; }, C.ChunkTampered],
    ['a frame length shortened', (f) => { const g = f.slice(); g[HEADER_BYTES + 3] = cs - 1; return g; }, C.ChunkTampered],
    ['a frame length above the chunk size', (f) => { const g = f.slice(); g[HEADER_BYTES + 2] = 1; return g; }, C.InvalidFrame],
    ['the final chunk marked non-final, data appended', (f) => { const { header, recs } = records(f); const last = flipFinal(recs.pop()!); return cat(header, ...recs, last, new Uint8Array(40)); }, C.TrailingData],
    ['trailing garbage', (f) => cat(f, new Uint8Array([0])), C.TrailingData],
    ['the final chunk repeated', (f) => cat(f, records(f).recs.at(-1)!), C.TrailingData],
    ['magic changed', (f) => { const g = f.slice(); g[0] = 0x43; return g; }, C.NotABackup],
    ['a text file', () => new TextEncoder().encode('SQLite format 3\0 ... not a backup'), C.NotABackup],
    ['version changed', (f) => { const g = f.slice(); g[9] = 2; return g; }, C.UnsupportedVersion],
    ['chunk size out of range', (f) => { const g = f.slice(); g[10] = 0xff; return g; }, C.InvalidHeader],
    ['chunk size changed', (f) => { const g = f.slice(); g[13] = cs + 1; return g; }, C.HeaderTampered],
    ['file id changed', (f) => { const g = f.slice(); g[20]! ^= 1; return g; }, C.WrongKey],
    ['header tag changed', (f) => { const g = f.slice(); g[70]! ^= 1; return g; }, C.HeaderTampered],
  ];

  for (const [name, make, code] of attacks) {
    it(`${name}: ${Object.entries(C).find(([, v]) => v === code)![0]} (${code})`, async () => {
      expect(await codeOf(decryptBackup(KEY, make(file)))).toBe(code);
    });
  }

  it('a wrong key: WrongKey', async () => {
    expect(await codeOf(decryptBackup(OTHER_KEY, file))).toBe(C.WrongKey);
  });

  it('through files, every attack leaves neither the output nor a temporary file', async () => {
    const sub = join(dir, 'attacks');
    mkdirSync(sub);
    const cases = [...attacks.map(([name, make, code]) => [name, make(file), KEY, code] as const), ['wrong key', file, OTHER_KEY, C.WrongKey] as const];
    for (const [name, bytes, key, code] of cases) {
      const src = join(sub, 'in.bkv');
      const dst = join(sub, 'chat.db');
      writeFileSync(src, bytes);
      // Small reads, so that plaintext has been written to the temporary file before the fault.
      const got = await codeOf(decryptFile(key, src, dst, { readSize: 50 }));
      expect(got, name).toBe(code);
      expect(readdirSync(sub), name).toEqual(['in.bkv']);
    }
  });

  it('no byte of a small file can be flipped unnoticed, and no output appears (every position, every bit)', async () => {
    const small = await encryptBackup(KEY, pattern(40), { chunkSize: 16, random: fixedId(3), aead: nodeAead });
    for (let i = 0; i < small.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const g = small.slice();
        g[i]! ^= 1 << bit;
        const dec = new BackupDecryptor(KEY, { aead: nodeAead, totalBytes: g.length });
        const out: Uint8Array[] = [];
        let failed = false;
        try {
          out.push(...(await dec.update(g)), ...(await dec.finish()));
        } catch (e) {
          expect(e).toBeInstanceOf(BackupFileError);
          failed = true;
        }
        expect(failed, `byte ${i} bit ${bit}`).toBe(true);
      }
    }
  });

  it('the final chunk is held back until the end of the input is seen', async () => {
    const dec = new BackupDecryptor(KEY);
    const out = await dec.update(file);
    expect(cat(...out)).toEqual(pt.subarray(0, 10 * cs));
    expect(await codeOf(dec.update(new Uint8Array([1])))).toBe(C.TrailingData);
    // A failed decryptor stays failed.
    expect(await codeOf(dec.finish())).toBe(C.TrailingData);
  });

  it('errors carry the chunk and its offset', async () => {
    const g = file.slice();
    g[HEADER_BYTES + 2 * (FRAME_BYTES + cs + TAG_BYTES) + 9]! ^= 1;
    try {
      await decryptBackup(KEY, g);
      throw new Error('accepted');
    } catch (e) {
      const err = e as BackupFileError;
      expect(err.code).toBe(C.ChunkTampered);
      expect(err.chunk).toBe(2);
      expect(err.offset).toBe(HEADER_BYTES + 2 * (FRAME_BYTES + cs + TAG_BYTES));
      expect(err.message).toContain('chunk 2');
    }
  });
});

describe('backup file: files, progress, abort', () => {
  it('encrypts and decrypts files through a temporary file, with progress', async () => {
    const src = join(dir, 'chat.db');
    const pt = pattern(1_000_003, 11);
    writeFileSync(src, pt);
    const enc: BackupProgress[] = [];
    const r1 = await encryptFile(KEY, src, join(dir, 'chat.bkv'), { chunkSize: 65536, onProgress: (p) => enc.push(p) });
    expect(r1).toEqual({ bytesIn: pt.length, bytesOut: encryptedSize(pt.length) });
    expect(enc.at(-1)).toEqual({ bytesDone: pt.length, totalBytes: pt.length, chunks: 16 });
    for (let i = 1; i < enc.length; i++) expect(enc[i]!.bytesDone).toBeGreaterThanOrEqual(enc[i - 1]!.bytesDone);

    const dec: BackupProgress[] = [];
    const r2 = await decryptFile(KEY, join(dir, 'chat.bkv'), join(dir, 'chat.restored.db'), { onProgress: (p) => dec.push(p) });
    expect(r2).toEqual({ bytesIn: encryptedSize(pt.length), bytesOut: pt.length });
    expect(dec.at(-1)).toEqual({ bytesDone: encryptedSize(pt.length), totalBytes: encryptedSize(pt.length), chunks: 16 });
    expectBytes(readFileSync(join(dir, 'chat.restored.db')), pt);
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('refuses to overwrite unless asked; the existing file is left alone', async () => {
    const src = join(dir, 'o.bkv');
    writeFileSync(src, await encryptBackup(KEY, pattern(10)));
    const dst = join(dir, 'o.db');
    writeFileSync(dst, 'keep me');
    expect(await codeOf(decryptFile(KEY, src, dst))).toBe(C.OutputExists);
    expect(readFileSync(dst, 'utf8')).toBe('keep me');
    await decryptFile(KEY, src, dst, { overwrite: true });
    expect(new Uint8Array(readFileSync(dst))).toEqual(pattern(10));
    // A failed decryption never replaces an existing file, even with overwrite.
    writeFileSync(dst, 'keep me');
    expect(await codeOf(decryptFile(OTHER_KEY, src, dst, { overwrite: true }))).toBe(C.WrongKey);
    expect(readFileSync(dst, 'utf8')).toBe('keep me');
  });

  it('an AbortSignal stops the work and removes the temporary file', async () => {
    const sub = join(dir, 'abort');
    mkdirSync(sub);
    const src = join(sub, 'big.bkv');
    writeFileSync(src, await encryptBackup(KEY, pattern(2_000_000), { chunkSize: 4096, aead: nodeAead }));
    const ac = new AbortController();
    const p = decryptFile(KEY, src, join(sub, 'big.db'), {
      signal: ac.signal,
      onProgress: (x) => {
        if (x.chunks === 10) ac.abort();
      },
    });
    expect(await codeOf(p)).toBe(C.Aborted);
    expect(readdirSync(sub)).toEqual(['big.bkv']);
  });
});

describe('backup file: golden bytes', () => {
  const golden = resolve(import.meta.dirname, '../golden', 'backup-file.v1.hex');
  const key = new Uint8Array(createHash('sha256').update('golden backup key').digest());
  const fileId = () => Uint8Array.from({ length: 32 }, (_, i) => 0xf0 ^ i);
  const plaintext = new TextEncoder().encode('golden chat backup, format v1: three chunks of 32 bytes, the last one shorter than that.');

  it('a small file with a fixed key and file id encrypts to test/golden/backup-file.v1.hex', async () => {
    const bytes = await encryptBackup(key, plaintext, { chunkSize: 32, random: fileId });
    const hex = Buffer.from(bytes).toString('hex');
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, hex + '\n');
    expect(existsSync(golden), `${golden} is missing: run with UPDATE_GOLDEN=1 and review`).toBe(true);
    expect(hex).toBe(readFileSync(golden, 'utf8').trim());
    expect(await encryptBackup(key, plaintext, { chunkSize: 32, random: fileId, aead: nodeAead })).toEqual(bytes);
  });

  it('the golden file decrypts', async () => {
    const bytes = new Uint8Array(Buffer.from(readFileSync(golden, 'utf8').trim(), 'hex'));
    expect(await decryptBackup(key, bytes)).toEqual(plaintext);
  });

  it('the golden file opens with an independent reading of the documented format (node:crypto only)', () => {
    const f = Buffer.from(readFileSync(golden, 'utf8').trim(), 'hex');
    const header = f.subarray(0, 78);
    expect(header.subarray(0, 8).toString('latin1')).toBe('BKVBAK\r\n');
    expect(header.readUInt16BE(8)).toBe(1);
    const chunkSize = header.readUInt32BE(10);
    const fileId = header.subarray(14, 46);
    const kdf = (info: string, n: number) => Buffer.from(hkdfSync('sha256', key, fileId, info, n));
    expect(header.subarray(46, 62)).toEqual(kdf('bkv/backup/v1/key-check', 16));
    const tag = createHmac('sha256', kdf('bkv/backup/v1/header-key', 32)).update(header.subarray(0, 62)).digest().subarray(0, 16);
    expect(header.subarray(62, 78)).toEqual(tag);
    const fileKey = kdf('bkv/backup/v1/file-key', 32);
    const headerHash = createHash('sha256').update(header).digest();
    const parts: Buffer[] = [];
    let off = 78;
    for (let i = 0; ; i++) {
      const frame = f.readUInt32BE(off);
      const final = frame >>> 31;
      const len = frame & 0x7fffffff;
      const index = Buffer.alloc(8);
      index.writeBigUInt64BE(BigInt(i));
      const d = createDecipheriv('aes-256-gcm', fileKey, Buffer.concat([fileId.subarray(0, 4), index]));
      d.setAAD(Buffer.concat([headerHash, index, Buffer.from([final])]));
      d.setAuthTag(f.subarray(off + 4 + len, off + 4 + len + 16));
      parts.push(d.update(f.subarray(off + 4, off + 4 + len)), d.final());
      off += 4 + len + 16;
      if (final) break;
      expect(len).toBe(chunkSize);
    }
    expect(off).toBe(f.length);
    expect(new Uint8Array(Buffer.concat(parts))).toEqual(plaintext);
  });
});
