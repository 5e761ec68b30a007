/**
 * FileNvram: the simulated device's NVRAM, one fixed-size region per partition in its own file.
 *
 * Layout: two slots (double buffering), each
 *   magic "BKVNVRM1" (8) || seq u64 BE (8) || capacity u32 BE (4) || length u32 BE (4)
 *   || data (capacity bytes, zero padded) || SHA-256 of everything before it in the slot (32).
 * A write goes to the slot that does not hold the current contents, with seq + 1, then
 * fdatasync. A read takes the valid slot with the highest seq. A torn or lost write therefore
 * leaves the other slot, the previous contents, readable; a slot is never trusted without its
 * checksum. The file is first created whole (temp file, fsync, rename, fsync of the folder), so
 * a crash during the very first write leaves "never written". When neither slot verifies,
 * `read()` throws `NvramFileError` (code PlatformFault.NvramCorrupt): that is damage from outside,
 * never a result of a crash, and writes are refused until the operator restores or deletes it.
 *
 * The file stays open between writes (one `pwrite` + `fdatasync` per write, no open or close);
 * before each write `fstat` checks that the descriptor is still this file (same device and
 * inode): a descriptor closed underneath, or its number reused for another file, is refused
 * (NvramError) without writing, and the next write opens the file again. Any failed write drops
 * the descriptor, so the next one starts from a fresh open: after a failed `fdatasync` the page
 * cache's state is unknown, and the slot written may be torn (the other slot, the previous
 * contents, is untouched, and the next write goes to the same slot again).
 *
 * One process (or thread) owns a partition's file at a time; nothing here locks it. A worker
 * thread's descriptors are closed when the thread ends; `close()` releases it earlier.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { CodedError, PlatformFault } from '../enclave/api/codes.ts';
import type { Nvram } from '../enclave/platform.ts';
import { writeFileDurably } from './durable-file.ts';

export const NVRAM_DEFAULT_SIZE = 4096;
const MAGIC = Buffer.from('BKVNVRM1', 'latin1');
const HEADER = 24;
const DIGEST = 32;

/** Its code is PlatformFault.NvramCorrupt, PlatformFault.NvramFull or PlatformFault.NvramError (enclave/api/codes.ts). */
export class NvramFileError extends CodedError {
  override readonly name = 'NvramFileError';
}

interface Slot {
  seq: number;
  data: Uint8Array;
}

export interface FileNvramOptions {
  /** Capacity in bytes; fixed when the file is created (default 4096). */
  size?: number;
}

export class FileNvram implements Nvram {
  readonly size: number;
  private readonly slotSize: number;
  /** Loaded state: undefined = not read yet; null = never written. */
  private current: { slot: number; seq: number; data: Uint8Array } | null | undefined;
  /** The open file and its identity (device, inode), or undefined until the next write opens it. */
  private fd: { fd: number; dev: number; ino: number } | undefined;
  /** One slot's bytes, reused by every write (written whole: its checksum covers its capacity). */
  private slotBuf: Buffer | undefined;

  constructor(
    readonly file: string,
    opts: FileNvramOptions = {},
  ) {
    const size = opts.size ?? NVRAM_DEFAULT_SIZE;
    if (!Number.isSafeInteger(size) || size < 1 || size > 1 << 24) {
      throw new NvramFileError(PlatformFault.NvramError, `NVRAM size must be an integer in 1..16777216, got ${size}`);
    }
    this.size = size;
    this.slotSize = HEADER + size + DIGEST;
  }

  read(): Uint8Array {
    const cur = this.load();
    return cur ? cur.data.slice() : new Uint8Array(0);
  }

  write(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new NvramFileError(PlatformFault.NvramError, 'NVRAM write: expected bytes');
    if (data.length > this.size) {
      throw new NvramFileError(PlatformFault.NvramFull, `NVRAM write of ${data.length} bytes exceeds its ${this.size} bytes`);
    }
    const cur = this.load();
    const seq = cur ? cur.seq + 1 : 1;
    if (!Number.isSafeInteger(seq)) throw new NvramFileError(PlatformFault.NvramError, 'NVRAM sequence number exhausted');
    const target = cur ? 1 - cur.slot : 0;
    const slot = this.encodeSlot(seq, data);
    try {
      if (cur) {
        const fd = this.openFd();
        const n = fs.writeSync(fd, slot, 0, slot.length, target * this.slotSize);
        if (n !== slot.length) throw new Error(`short write: ${n} of ${slot.length} bytes`);
        fs.fdatasyncSync(fd);
      } else {
        // First write: the file appears whole or not at all.
        const whole = Buffer.alloc(2 * this.slotSize);
        slot.copy(whole, 0);
        writeFileDurably(this.file, whole);
      }
    } catch (e) {
      this.dropFd();
      if (e instanceof NvramFileError) throw e;
      throw new NvramFileError(PlatformFault.NvramError, `NVRAM write to ${this.file} failed: ${(e as Error).message}`, { cause: e });
    }
    this.current = { slot: target, seq, data: data.slice() };
  }

  /** Closes the file (if this object still holds it open); a later write opens it again. */
  close(): void {
    this.dropFd();
  }

  /**
   * The open descriptor, checked to still be this file: a descriptor closed by someone else
   * (EBADF) or reused for another file (another device or inode) is never written to.
   */
  private openFd(): number {
    if (this.fd) {
      let st: fs.Stats;
      try {
        st = fs.fstatSync(this.fd.fd);
      } catch (e) {
        this.fd = undefined; // not ours any more: nothing to close
        throw new NvramFileError(PlatformFault.NvramError, `NVRAM file ${this.file}: its descriptor was closed underneath (${(e as Error).message})`, { cause: e });
      }
      if (st.dev !== this.fd.dev || st.ino !== this.fd.ino) {
        this.fd = undefined; // another file's now: not ours to close
        throw new NvramFileError(PlatformFault.NvramError, `NVRAM file ${this.file}: its descriptor now refers to another file`);
      }
      return this.fd.fd;
    }
    const fd = fs.openSync(this.file, 'r+');
    try {
      const st = fs.fstatSync(fd);
      this.fd = { fd, dev: st.dev, ino: st.ino };
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return fd;
  }

  private dropFd(): void {
    const f = this.fd;
    this.fd = undefined;
    if (!f) return;
    try {
      // Only when the number still refers to the file opened (else it is someone else's now).
      const st = fs.fstatSync(f.fd);
      if (st.dev === f.dev && st.ino === f.ino) fs.closeSync(f.fd);
    } catch {
      // closed already
    }
  }

  private encodeSlot(seq: number, data: Uint8Array): Buffer {
    const b = (this.slotBuf ??= Buffer.alloc(this.slotSize));
    b.fill(0, HEADER + data.length, HEADER + this.size); // the padding of an earlier, longer write
    MAGIC.copy(b, 0);
    b.writeBigUInt64BE(BigInt(seq), 8);
    b.writeUInt32BE(this.size, 16);
    b.writeUInt32BE(data.length, 20);
    b.set(data, HEADER);
    createHash('sha256').update(b.subarray(0, HEADER + this.size)).digest().copy(b, HEADER + this.size);
    return b;
  }

  /** A slot if it is whole and its checksum verifies, else null. */
  private decodeSlot(file: Buffer, index: number): Slot | null {
    const b = file.subarray(index * this.slotSize, (index + 1) * this.slotSize);
    if (b.length < HEADER || !b.subarray(0, 8).equals(MAGIC)) return null;
    if (b.readUInt32BE(16) !== this.size) return null;
    if (b.length !== this.slotSize || !checksumOk(b, this.size)) return null;
    const len = b.readUInt32BE(20);
    if (len > this.size) return null;
    const seq = Number(b.readBigUInt64BE(8));
    return { seq, data: new Uint8Array(b.subarray(HEADER, HEADER + len)) };
  }

  private load(): { slot: number; seq: number; data: Uint8Array } | null {
    if (this.current !== undefined) return this.current;
    let file: Buffer;
    try {
      file = fs.readFileSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return (this.current = null);
      throw new NvramFileError(PlatformFault.NvramError, `NVRAM read of ${this.file} failed: ${(e as Error).message}`, { cause: e });
    }
    if (file.length >= HEADER && file.subarray(0, 8).equals(MAGIC)) {
      const capacity = file.readUInt32BE(16);
      if (capacity !== this.size && file.length === 2 * (HEADER + capacity + DIGEST)) {
        throw new NvramFileError(
          PlatformFault.NvramError,
          `NVRAM file ${this.file} holds a ${capacity}-byte region, opened as ${this.size} bytes`,
        );
      }
    }
    const slots = [this.decodeSlot(file, 0), this.decodeSlot(file, 1)];
    let best = -1;
    for (const i of [0, 1]) {
      const s = slots[i];
      if (s && (best < 0 || s.seq > slots[best]!.seq)) best = i;
    }
    if (best < 0) {
      throw new NvramFileError(
        PlatformFault.NvramCorrupt,
        `NVRAM file ${this.file} is corrupt: neither slot verifies (${file.length} bytes; expected ${2 * this.slotSize})`,
      );
    }
    const s = slots[best]!;
    return (this.current = { slot: best, seq: s.seq, data: s.data });
  }
}

function checksumOk(slot: Buffer, capacity: number): boolean {
  const digest = createHash('sha256').update(slot.subarray(0, HEADER + capacity)).digest();
  return digest.equals(slot.subarray(HEADER + capacity, HEADER + capacity + DIGEST));
}
