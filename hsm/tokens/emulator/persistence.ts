/**
 * The emulator's token store (PKCS#11 v2.40 §2.4 token objects persist across sessions and
 * processes): every token (label, serial, PIN verifiers, failure counters) and every token
 * object, in one checksummed file in the vault's data folder, or in memory for tests.
 *
 * File: "BKVP11E1" || body length u32 || body || SHA-256(everything before it).
 *   body = u16 token count, then per token:
 *     serial (str8) | label (str8) | SO salt, SO-wrapped token key | user salt, user-wrapped
 *     token key (bytes16; empty while the user PIN is not initialized) | SO failures u32 |
 *     user failures u32 | u32 object count | objects: uid (16) | private u8 | body (bytes32)
 *   An object body is its attribute list (attributes.ts encodeAttrs), AES-256-GCM-encrypted
 *   under the token key when the object is private (the token key itself is stored only
 *   wrapped under keys derived from the SO and user PINs, as SoftHSM2 does).
 *
 * Writes are whole-file: temp file, fsync, rename, fsync of the folder; a reader sees the old
 * file or the new one. A file that fails its checksum is a CKR_DEVICE_ERROR with the reason,
 * never an empty token. Several processes (one per vault partition) share one file: every
 * change takes an exclusive lock file (`<file>.lock`, O_EXCL; a lock whose owner process is
 * gone, or older than lockStaleMs, is broken), re-reads the file if it changed, applies the
 * change and writes; readers notice another process's write by the file's identity (stat).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CKR, Pkcs11Error } from '../../../enclave/api/pkcs11.ts';
import { FileLockTimeout, fsyncDir, withFileLock, writeFileDurably } from '../../durable-file.ts';

const MAGIC = Buffer.from('BKVP11E1', 'latin1');

export interface StoredObject {
  uid: string; // 32 hex digits
  private: boolean;
  body: Buffer;
}

export interface StoredToken {
  serial: string;
  label: string;
  soSalt: Buffer;
  soKey: Buffer;
  userSalt: Buffer;
  userKey: Buffer;
  soFailures: number;
  userFailures: number;
  objects: StoredObject[];
}

export interface StoreState {
  tokens: StoredToken[];
}

export interface StoreOptions {
  /** Give up waiting for the lock after this long (default 10 s): CKR_DEVICE_ERROR. */
  lockTimeoutMs?: number;
  /** A lock older than this is taken as left by a crash and broken (default 10 s). */
  lockStaleMs?: number;
}

export function deviceError(detail: string, cause?: unknown): Pkcs11Error {
  const e = new Pkcs11Error(CKR.CKR_DEVICE_ERROR);
  Object.assign(e, { detail });
  if (cause !== undefined) Object.assign(e, { cause });
  return e;
}

export function cloneState(s: StoreState): StoreState {
  return { tokens: s.tokens.map((t) => ({ ...t, objects: t.objects.slice() })) };
}

/** The store: a file shared by processes, or memory. */
export class TokenStore {
  private state: StoreState = { tokens: [] };
  private stamp = '';
  private readonly lockFile: string;
  private readonly lockTimeoutMs: number;
  private readonly lockStaleMs: number;

  constructor(
    readonly file: string | null,
    opts: StoreOptions = {},
  ) {
    this.lockFile = `${file}.lock`;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
    this.lockStaleMs = opts.lockStaleMs ?? 10_000;
    if (file) fs.mkdirSync(path.dirname(file), { recursive: true });
    this.refresh();
  }

  /** The current state (re-read first if another process wrote the file). Do not mutate. */
  read(): StoreState {
    this.refresh();
    return this.state;
  }

  /** The state as last read, without looking at the file. */
  cached(): StoreState {
    return this.state;
  }

  /** Applies `fn` to a copy of the current state under the lock and makes the result durable. */
  update<T>(fn: (s: StoreState) => T): T {
    if (!this.file) {
      const next = cloneState(this.state);
      const r = fn(next);
      this.state = next;
      return r;
    }
    return this.withLock(() => {
      this.refresh();
      const next = cloneState(this.state);
      const r = fn(next);
      const bytes = encodeStore(next);
      try {
        writeFileDurably(this.file!, bytes);
      } catch (e) {
        throw deviceError(`token store write failed: ${(e as Error).message}`, e);
      }
      this.state = next;
      this.stamp = fileStamp(this.file!);
      return r;
    });
  }

  /** Overwrites the store with zeros, syncs and removes it (device zeroization). */
  zeroize(): void {
    if (!this.file) {
      this.state = { tokens: [] };
      return;
    }
    this.withLock(() => {
      const st = fs.statSync(this.file!, { throwIfNoEntry: false });
      if (st) {
        const fd = fs.openSync(this.file!, 'r+');
        try {
          fs.writeSync(fd, Buffer.alloc(st.size), 0, st.size, 0);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        fs.unlinkSync(this.file!);
        fsyncDir(path.dirname(this.file!));
      }
      this.state = { tokens: [] };
      this.stamp = '';
    });
  }

  private refresh(): void {
    if (!this.file) return;
    const stamp = fileStamp(this.file);
    if (stamp === this.stamp) return;
    if (stamp === '') {
      this.state = { tokens: [] };
      this.stamp = '';
      return;
    }
    let raw: Buffer;
    try {
      raw = fs.readFileSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.state = { tokens: [] };
        this.stamp = '';
        return;
      }
      throw deviceError(`token store read failed: ${(e as Error).message}`, e);
    }
    this.state = decodeStore(raw, this.file);
    this.stamp = stamp;
  }

  private withLock<T>(fn: () => T): T {
    let held = false;
    try {
      return withFileLock(
        this.lockFile,
        () => {
          held = true;
          return fn();
        },
        { timeoutMs: this.lockTimeoutMs, staleMs: this.lockStaleMs, pollMs: 1 },
      );
    } catch (e) {
      if (held) throw e;
      if (e instanceof FileLockTimeout) throw deviceError(`token store lock ${this.lockFile} held too long`);
      throw deviceError(`token store lock: ${(e as Error).message}`, e);
    }
  }
}

// ---- codec ----
class Writer {
  private readonly parts: Buffer[] = [];
  u8(n: number): void {
    this.parts.push(Buffer.from([n]));
  }
  u16(n: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n);
    this.parts.push(b);
  }
  u32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    this.parts.push(b);
  }
  bytes(b: Buffer, width: 1 | 2 | 4): void {
    if (width === 1) this.u8(b.length);
    else if (width === 2) this.u16(b.length);
    else this.u32(b.length);
    this.parts.push(b);
  }
  raw(b: Buffer): void {
    this.parts.push(b);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

class Reader {
  private off = 0;
  constructor(
    private readonly b: Buffer,
    private readonly bad: (why: string) => Error,
  ) {}
  private need(n: number): void {
    if (this.off + n > this.b.length) throw this.bad('truncated');
  }
  u8(): number {
    this.need(1);
    return this.b[this.off++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  raw(n: number): Buffer {
    this.need(n);
    const v = Buffer.from(this.b.subarray(this.off, this.off + n));
    this.off += n;
    return v;
  }
  bytes(width: 1 | 2 | 4): Buffer {
    const n = width === 1 ? this.u8() : width === 2 ? this.u16() : this.u32();
    return this.raw(n);
  }
  end(): void {
    if (this.off !== this.b.length) throw this.bad('trailing bytes');
  }
}

export function encodeStore(s: StoreState): Buffer {
  const w = new Writer();
  w.u16(s.tokens.length);
  for (const t of s.tokens) {
    w.bytes(Buffer.from(t.serial, 'utf8'), 1);
    w.bytes(Buffer.from(t.label, 'utf8'), 1);
    w.bytes(t.soSalt, 2);
    w.bytes(t.soKey, 2);
    w.bytes(t.userSalt, 2);
    w.bytes(t.userKey, 2);
    w.u32(t.soFailures);
    w.u32(t.userFailures);
    w.u32(t.objects.length);
    for (const o of t.objects) {
      w.raw(Buffer.from(o.uid, 'hex'));
      w.u8(o.private ? 1 : 0);
      w.bytes(o.body, 4);
    }
  }
  const body = w.done();
  const head = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(body.length, MAGIC.length);
  const all = Buffer.concat([head, body]);
  return Buffer.concat([all, createHash('sha256').update(all).digest()]);
}

export function decodeStore(raw: Buffer, file: string): StoreState {
  const bad = (why: string) => deviceError(`token store ${file} is corrupt: ${why}`);
  if (raw.length < MAGIC.length + 4 + 32 || !raw.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('bad header');
  const all = raw.subarray(0, raw.length - 32);
  if (!createHash('sha256').update(all).digest().equals(raw.subarray(raw.length - 32))) throw bad('checksum mismatch');
  const len = all.readUInt32BE(MAGIC.length);
  if (len !== all.length - MAGIC.length - 4) throw bad('length mismatch');
  const r = new Reader(all.subarray(MAGIC.length + 4), bad);
  const tokens: StoredToken[] = [];
  const n = r.u16();
  for (let i = 0; i < n; i++) {
    const t: StoredToken = {
      serial: r.bytes(1).toString('utf8'),
      label: r.bytes(1).toString('utf8'),
      soSalt: r.bytes(2),
      soKey: r.bytes(2),
      userSalt: r.bytes(2),
      userKey: r.bytes(2),
      soFailures: r.u32(),
      userFailures: r.u32(),
      objects: [],
    };
    const count = r.u32();
    for (let j = 0; j < count; j++) {
      const uid = r.raw(16).toString('hex');
      const priv = r.u8() === 1;
      t.objects.push({ uid, private: priv, body: r.bytes(4) });
    }
    tokens.push(t);
  }
  r.end();
  return { tokens };
}

function fileStamp(file: string): string {
  const st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
  return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : '';
}
