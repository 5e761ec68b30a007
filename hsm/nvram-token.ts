/**
 * TokenNvram: the device's NVRAM region of one partition (enclave/platform.ts `Nvram`) kept in
 * the token as PKCS#11 v2.40 data objects (CKO_DATA, §4.5), so that the vault's attempt
 * counters and rollback state live, and survive restarts, where its keys do.
 *
 * SoftHSM2 does not let CKA_VALUE of a data object change, so a write is destroy + create. Two
 * objects alternate (labels `<label>/0` and `<label>/1`), each value
 *   magic "BKVN" (4) || sequence u64 BE (8) || length u32 BE (4) || data || SHA-256 of the above (32);
 * a write replaces the object that does not hold the current contents, with sequence + 1, and a
 * read takes the valid object with the highest sequence. A crash between the destroy and the
 * create, or a torn object, leaves the other object: the previous contents, never nothing.
 * When neither object verifies (outside damage), `read()` throws PlatformFault.NvramCorrupt.
 * One device owns a partition's region at a time; nothing here locks it.
 */
import { createHash } from 'node:crypto';
import { CodedError, PlatformFault } from '../enclave/api/codes.ts';
import type { Nvram } from '../enclave/platform.ts';

const MAGIC = Buffer.from('BKVN', 'latin1');
const HEADER = 16;
const DIGEST = 32;

/** The data-object side of the token this needs (enclave/token-pkcs11.ts Pkcs11Token has it). */
export interface DataObjects {
  readData(label: string): Uint8Array[];
  writeData(label: string, value: Uint8Array): void;
}

/** Its code is one of PlatformFault (enclave/api/codes.ts). */
export class NvramTokenError extends CodedError {
  override readonly name = 'NvramTokenError';
}

export const nvramLabel = (partition: number) => `bkv-nvram-${partition}`;

export class TokenNvram implements Nvram {
  private current: { slot: number; seq: number; data: Uint8Array } | null | undefined;

  constructor(
    private readonly token: DataObjects,
    readonly label: string,
    readonly size: number,
  ) {}

  read(): Uint8Array {
    const cur = this.load();
    return cur ? cur.data.slice() : new Uint8Array(0);
  }

  write(data: Uint8Array): void {
    if (data.length > this.size) throw new NvramTokenError(PlatformFault.NvramFull, `NVRAM write of ${data.length} bytes exceeds its ${this.size} bytes`);
    const cur = this.load();
    const seq = cur ? cur.seq + 1 : 1;
    const slot = cur ? 1 - cur.slot : 0;
    try {
      this.token.writeData(`${this.label}/${slot}`, encode(seq, data));
    } catch (e) {
      throw new NvramTokenError(PlatformFault.NvramError, `NVRAM write to token object ${this.label}/${slot} failed: ${(e as Error).message}`, { cause: e });
    }
    this.current = { slot, seq, data: data.slice() };
  }

  private load(): { slot: number; seq: number; data: Uint8Array } | null {
    if (this.current !== undefined) return this.current;
    let best: { slot: number; seq: number; data: Uint8Array } | null = null;
    let seen = 0;
    for (const slot of [0, 1]) {
      let values: Uint8Array[];
      try {
        values = this.token.readData(`${this.label}/${slot}`);
      } catch (e) {
        throw new NvramTokenError(PlatformFault.NvramError, `NVRAM read of token object ${this.label}/${slot} failed: ${(e as Error).message}`, { cause: e });
      }
      for (const v of values) {
        seen++;
        const d = decode(v);
        if (d && (!best || d.seq > best.seq)) best = { slot, ...d };
      }
    }
    if (!best && seen > 0) throw new NvramTokenError(PlatformFault.NvramCorrupt, `NVRAM token objects ${this.label} are corrupt: none verifies`);
    return (this.current = best);
  }
}

function encode(seq: number, data: Uint8Array): Uint8Array {
  const b = Buffer.alloc(HEADER + data.length + DIGEST);
  MAGIC.copy(b, 0);
  b.writeBigUInt64BE(BigInt(seq), 4);
  b.writeUInt32BE(data.length, 12);
  b.set(data, HEADER);
  createHash('sha256').update(b.subarray(0, HEADER + data.length)).digest().copy(b, HEADER + data.length);
  return b;
}

function decode(v: Uint8Array): { seq: number; data: Uint8Array } | null {
  const b = Buffer.from(v.buffer, v.byteOffset, v.length);
  if (b.length < HEADER + DIGEST || !b.subarray(0, 4).equals(MAGIC)) return null;
  const len = b.readUInt32BE(12);
  if (b.length !== HEADER + len + DIGEST) return null;
  const digest = createHash('sha256').update(b.subarray(0, HEADER + len)).digest();
  if (!digest.equals(b.subarray(HEADER + len))) return null;
  return { seq: Number(b.readBigUInt64BE(4)), data: new Uint8Array(b.subarray(HEADER, HEADER + len)) };
}
