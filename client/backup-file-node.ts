/**
 * Backup files on Node: format v1 of client/backup-file.ts (backup encryption) with
 * node:crypto AES-256-GCM (the same bytes as WebCrypto, and faster), Node stream transforms, and
 * whole-file encryption and decryption.
 *
 * Files: the output is written to a temporary file next to the target (".<name>.<random>.partial",
 * mode 0600), flushed to disk, and renamed onto the target only after the final chunk has
 * authenticated and the end of the input was seen; on any error the temporary file is removed.
 * So a decrypted file that exists is the whole backup, never a prefix of it. Without
 * `overwrite`, an existing target is refused (`OutputExists`), checked before any work and again,
 * atomically, when the file is put in place.
 *
 * Memory: input is read in pieces of `readSize` bytes (64 KiB by default) and each piece is
 * processed and written before the next is read, so memory stays at about one chunk whatever
 * the file size.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import {
  BackupDecryptor,
  BackupEncryptor,
  BackupFileError,
  BackupFileErrorCode,
  TAG_BYTES,
} from './backup-file.ts';
import type { ChunkAeadFactory, DecryptOptions, EncryptOptions } from './backup-file.ts';

/** AES-256-GCM through node:crypto. */
export const nodeAead: ChunkAeadFactory = (rawKey) => {
  const key = Buffer.from(rawKey);
  return {
    seal(nonce, aad, plaintext) {
      const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      c.setAAD(aad);
      const body = c.update(plaintext);
      const rest = c.final();
      return [body, rest, c.getAuthTag()];
    },
    open(nonce, aad, sealed) {
      if (sealed.length < TAG_BYTES) return null;
      const n = sealed.length - TAG_BYTES;
      const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      d.setAAD(aad);
      d.setAuthTag(sealed.subarray(n));
      const body = d.update(sealed.subarray(0, n));
      try {
        const rest = d.final();
        if (rest.length === 0) return body;
        return new Uint8Array(Buffer.concat([body, rest]));
      } catch {
        body.fill(0);
        return null;
      }
    },
  };
};

const withNode = <T extends { aead?: ChunkAeadFactory }>(o: T): T => ({ aead: nodeAead, ...o });

/** A Node stream transform: plaintext in, encrypted backup out. */
export function createEncryptTransform(rootKey: Uint8Array, opts: EncryptOptions = {}): Transform {
  let enc: Promise<BackupEncryptor> | undefined;
  const get = () => (enc ??= BackupEncryptor.create(rootKey, withNode(opts)));
  return new Transform({
    transform(piece: Buffer, _enc, cb) {
      get()
        .then((e) => e.update(piece))
        .then((parts) => {
          for (const p of parts) this.push(p);
          cb();
        }, cb);
    },
    flush(cb) {
      get()
        .then((e) => e.finish())
        .then((parts) => {
          for (const p of parts) this.push(p);
          cb();
        }, cb);
    },
  });
}

/** A Node stream transform: encrypted backup in, authenticated plaintext out; errors on any fault. */
export function createDecryptTransform(rootKey: Uint8Array, opts: DecryptOptions = {}): Transform {
  const dec = new BackupDecryptor(rootKey, withNode(opts));
  return new Transform({
    transform(piece: Buffer, _enc, cb) {
      dec.update(piece).then((parts) => {
        for (const p of parts) this.push(p);
        cb();
      }, cb);
    },
    flush(cb) {
      dec.finish().then((parts) => {
        for (const p of parts) this.push(p);
        cb();
      }, cb);
    },
  });
}

export interface FileOptions {
  /** Replace an existing target (default false: `OutputExists`). */
  overwrite?: boolean;
  /** Bytes per read from the source (default 64 KiB). */
  readSize?: number;
}

export interface FileResult {
  bytesIn: number;
  bytesOut: number;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

const outputExists = (dst: string) => new BackupFileError(BackupFileErrorCode.OutputExists, `${dst} exists (pass overwrite to replace it)`);

/** Temporary file names that `decryptToFile` and `encryptToFile` may leave only if the process dies. */
export const PARTIAL_SUFFIX = '.partial';

/** Puts `tmp` at `dst`: rename when overwriting, else a hard link that fails if `dst` exists. */
async function publish(tmp: string, dst: string, overwrite: boolean): Promise<void> {
  if (overwrite) {
    await rename(tmp, dst);
    return;
  }
  try {
    await link(tmp, dst);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw outputExists(dst);
    // File systems without hard links: check, then rename (a small window).
    if (await exists(dst)) throw outputExists(dst);
    await rename(tmp, dst);
    return;
  }
  await unlink(tmp);
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Not every platform lets a directory be opened or synced; the rename is still atomic.
  }
}

/**
 * Runs `work` with a writer into a temporary file next to `dst`; puts the file in place only if
 * `work` resolves, removes it otherwise.
 */
async function throughTemp(dst: string, overwrite: boolean, work: (write: (b: Uint8Array) => Promise<void>) => Promise<void>): Promise<number> {
  if (!overwrite && (await exists(dst))) throw outputExists(dst);
  const tmp = join(dirname(dst), `.${basename(dst)}.${randomBytes(6).toString('hex')}${PARTIAL_SUFFIX}`);
  const fh = await open(tmp, 'wx', 0o600);
  let written = 0;
  let ok = false;
  try {
    await work(async (b) => {
      let off = 0;
      while (off < b.length) {
        const { bytesWritten } = await fh.write(b, off, b.length - off);
        off += bytesWritten;
      }
      written += b.length;
    });
    await fh.sync();
    ok = true;
  } finally {
    await fh.close().catch(() => undefined);
    if (!ok) await unlink(tmp).catch(() => undefined);
  }
  try {
    await publish(tmp, dst, overwrite);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(dirname(dst));
  return written;
}

/** Decrypts an encrypted backup read from `source` into the file `dst` (see the header). */
export async function decryptToFile(
  rootKey: Uint8Array,
  source: AsyncIterable<Uint8Array>,
  dst: string,
  opts: DecryptOptions & FileOptions = {},
): Promise<FileResult> {
  return pipeToFile(new BackupDecryptor(rootKey, withNode(opts)), source, dst, opts.overwrite ?? false);
}

/** Encrypts plaintext read from `source` into the file `dst`. */
export async function encryptToFile(
  rootKey: Uint8Array,
  source: AsyncIterable<Uint8Array>,
  dst: string,
  opts: EncryptOptions & FileOptions = {},
): Promise<FileResult> {
  return pipeToFile(await BackupEncryptor.create(rootKey, withNode(opts)), source, dst, opts.overwrite ?? false);
}

/** Runs `source` through an encryptor or decryptor into the file `dst`, by way of a temporary file. */
async function pipeToFile(
  t: { update(data: Uint8Array): Promise<Uint8Array[]>; finish(): Promise<Uint8Array[]> },
  source: AsyncIterable<Uint8Array>,
  dst: string,
  overwrite: boolean,
): Promise<FileResult> {
  let bytesIn = 0;
  const bytesOut = await throughTemp(dst, overwrite, async (write) => {
    for await (const piece of source) {
      bytesIn += piece.length;
      for (const p of await t.update(piece)) await write(p);
    }
    for (const p of await t.finish()) await write(p);
  });
  return { bytesIn, bytesOut };
}

/** Encrypts the file `src` into `dst` (progress totals from the file size). */
export async function encryptFile(rootKey: Uint8Array, src: string, dst: string, opts: EncryptOptions & FileOptions = {}): Promise<FileResult> {
  return fromFile(src, opts, (source, totalBytes) => encryptToFile(rootKey, source, dst, { totalBytes, ...opts }));
}

/** Decrypts the encrypted backup `src` into `dst`; `dst` appears only when all of it authenticated. */
export async function decryptFile(rootKey: Uint8Array, src: string, dst: string, opts: DecryptOptions & FileOptions = {}): Promise<FileResult> {
  return fromFile(src, opts, (source, totalBytes) => decryptToFile(rootKey, source, dst, { totalBytes, ...opts }));
}

/** Runs `fn` on a read stream of the file `src` and its size (the progress total). */
async function fromFile(src: string, opts: FileOptions, fn: (source: AsyncIterable<Uint8Array>, totalBytes: number) => Promise<FileResult>): Promise<FileResult> {
  const size = (await stat(src)).size;
  const source = createReadStream(src, { highWaterMark: opts.readSize ?? 64 * 1024 });
  try {
    return await fn(source, size);
  } finally {
    source.destroy();
  }
}
