/**
 * FileToken: a minimal interim `Token` (enclave/token.ts) on node:crypto, for the simulated
 * device until the PKCS#11 emulator token replaces it. Key objects (label -> kind, value) live
 * in one checksummed file in the data folder, shared by every partition's thread or process.
 *
 * File: "BKVTOKN1" || count u32 || objects || SHA-256 of everything before it, where an object
 * is id (16) || kind u8 (1 AES-256, 2 generic secret for HMAC) || label u16-prefixed UTF-8 ||
 * value u16-prefixed. Every change is written whole: temp file, fsync, rename, fsync of folder.
 *
 * Concurrency, by an exclusive lock file (`<file>.lock`, `fs.openSync(path, 'wx')`): key
 * generation and destruction take the lock, re-read the file, then write. Labels are unique:
 * generating a label that exists (another partition just made it) returns that object when kind
 * and length match, so partitions racing to provision a key all end up with the same one. A
 * lock whose owner process is dead, or older than `lockStaleMs`, is broken.
 *
 * Handles are per instance and name one object (by id): a key destroyed and generated again
 * under the same label gets a new handle. Another process's changes (a key generated, all keys
 * destroyed) are seen on the next findKey/generate, and by key use at most `revalidateMs` later
 * (a stat of the file). Secret values never leave the instance: there is no getter; destroyed
 * values are overwritten in memory (JavaScript can not promise no other copy exists) and the
 * file is overwritten with zeros, synced and deleted.
 *
 * Behaviour chosen to match SoftHSM2 (see FACTS.md): HMAC with a key shorter than the digest
 * output is refused (CKR_KEY_SIZE_RANGE); a bad GCM tag is CKR_ENCRYPTED_DATA_INVALID.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import { TokenError } from '../enclave/token.ts';
import type { KeyHandle, Token } from '../enclave/token.ts';
import { fsyncDir, writeFileDurably } from './nvram-file.ts';

const MAGIC = Buffer.from('BKVTOKN1', 'latin1');
const KIND = { aes: 1, hmac: 2 } as const;
type Kind = keyof typeof KIND;
const MAX_LABEL = 255;
const GCM_IV = 12;
const GCM_TAG = 16;

interface KeyObject {
  id: string; // 32 hex digits
  label: string;
  kind: Kind;
  value: Buffer;
}

export interface FileTokenOptions {
  /** How long key use trusts the in-memory copy before checking the file again (default 100 ms; 0 = every use). */
  revalidateMs?: number;
  /** Give up waiting for the lock after this long (default 10 s): TokenError('CKR_DEVICE_ERROR'). */
  lockTimeoutMs?: number;
  /** A lock older than this is taken as left by a crash and broken (default 10 s). */
  lockStaleMs?: number;
}

/** A token fault with the reason in `detail` (TokenError's message is only the CKR name). */
function tokenError(ckr: string, detail?: string, cause?: unknown): TokenError {
  const e = new TokenError(ckr);
  if (detail !== undefined) Object.assign(e, { detail });
  if (cause !== undefined) Object.assign(e, { cause });
  return e;
}

export class FileToken implements Token {
  private readonly lockFile: string;
  private readonly revalidateMs: number;
  private readonly lockTimeoutMs: number;
  private readonly lockStaleMs: number;
  private objects = new Map<string, KeyObject>(); // by id
  private readonly handles = new Map<KeyHandle, string>(); // handle -> id
  private readonly handleOf = new Map<string, KeyHandle>(); // id -> handle
  private nextHandle = 1;
  private stamp = ''; // identity of the file last loaded ('' = absent)
  private checkedAt = -Infinity;

  constructor(
    readonly file: string,
    opts: FileTokenOptions = {},
  ) {
    this.lockFile = `${file}.lock`;
    this.revalidateMs = opts.revalidateMs ?? 100;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
    this.lockStaleMs = opts.lockStaleMs ?? 10_000;
    this.refresh(true);
  }

  findKey(label: string): KeyHandle | null {
    this.refresh(true);
    for (const o of this.objects.values()) if (o.label === label) return this.handleFor(o.id);
    return null;
  }

  generateAesKey(label: string): KeyHandle {
    return this.generate(label, 'aes', 32);
  }

  generateHmacKey(label: string, len: number): KeyHandle {
    if (!Number.isSafeInteger(len) || len < 16 || len > 512) throw tokenError('CKR_KEY_SIZE_RANGE', `HMAC key length ${len}`);
    return this.generate(label, 'hmac', len);
  }

  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const k = this.use(key, 'aes');
    if (iv.length !== GCM_IV) throw tokenError('CKR_MECHANISM_PARAM_INVALID', `GCM IV of ${iv.length} bytes`);
    const c = createCipheriv('aes-256-gcm', k.value, iv, { authTagLength: GCM_TAG });
    c.setAAD(aad);
    const head = c.update(plaintext);
    const tail = c.final();
    const out = new Uint8Array(head.length + tail.length + GCM_TAG);
    out.set(head, 0);
    out.set(tail, head.length);
    out.set(c.getAuthTag(), head.length + tail.length);
    return out;
  }

  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const k = this.use(key, 'aes');
    if (iv.length !== GCM_IV) throw tokenError('CKR_MECHANISM_PARAM_INVALID', `GCM IV of ${iv.length} bytes`);
    if (ciphertext.length < GCM_TAG) throw tokenError('CKR_ENCRYPTED_DATA_LEN_RANGE');
    const split = ciphertext.length - GCM_TAG;
    const d = createDecipheriv('aes-256-gcm', k.value, iv, { authTagLength: GCM_TAG });
    d.setAAD(aad);
    d.setAuthTag(ciphertext.subarray(split));
    const head = d.update(ciphertext.subarray(0, split));
    let tail: Buffer;
    try {
      tail = d.final();
    } catch {
      head.fill(0);
      throw tokenError('CKR_ENCRYPTED_DATA_INVALID', 'GCM tag mismatch');
    }
    const out = new Uint8Array(head.length + tail.length);
    out.set(head, 0);
    out.set(tail, head.length);
    head.fill(0);
    return out;
  }

  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
    const k = this.use(key, 'hmac');
    const [alg, len] = hash === 'SHA-256' ? ['sha256', 32] : hash === 'SHA-512' ? ['sha512', 64] : [undefined, 0];
    if (!alg) throw tokenError('CKR_MECHANISM_INVALID', `hash ${String(hash)}`);
    if (k.value.length < len) throw tokenError('CKR_KEY_SIZE_RANGE', `HMAC-${hash} with a ${k.value.length}-byte key`);
    return new Uint8Array(createHmac(alg, k.value).update(data).digest());
  }

  random(n: number): Uint8Array {
    if (!Number.isSafeInteger(n) || n < 0 || n > 1 << 20) throw tokenError('CKR_ARGUMENTS_BAD', `random(${n})`);
    return randomFillSync(new Uint8Array(n));
  }

  destroyAllKeys(): void {
    this.withLock(() => {
      const st = fs.statSync(this.file, { throwIfNoEntry: false });
      if (st) {
        const fd = fs.openSync(this.file, 'r+');
        try {
          fs.writeSync(fd, Buffer.alloc(st.size), 0, st.size, 0);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        fs.unlinkSync(this.file);
        fsyncDir(path.dirname(this.file));
      }
      this.replace(new Map(), '');
    });
  }

  // ---- internals ----

  private generate(label: string, kind: Kind, len: number): KeyHandle {
    checkLabel(label);
    return this.withLock(() => {
      this.refresh(true);
      for (const o of this.objects.values()) {
        if (o.label !== label) continue;
        if (o.kind !== kind || o.value.length !== len) {
          throw tokenError('CKR_TEMPLATE_INCONSISTENT', `label "${label}" names a different key`);
        }
        return this.handleFor(o.id);
      }
      const obj: KeyObject = { id: randomBytes(16).toString('hex'), label, kind, value: randomFillSync(Buffer.alloc(len)) };
      const next = new Map(this.objects);
      next.set(obj.id, obj);
      const bytes = encodeFile([...next.values()]);
      try {
        writeFileDurably(this.file, bytes);
      } catch (e) {
        throw tokenError('CKR_DEVICE_ERROR', `token write failed: ${(e as Error).message}`, e);
      } finally {
        bytes.fill(0);
      }
      this.objects = next;
      this.stamp = fileStamp(this.file);
      return this.handleFor(obj.id);
    });
  }

  private use(handle: KeyHandle, kind: Kind): KeyObject {
    this.refresh(false);
    const id = this.handles.get(handle);
    const o = id === undefined ? undefined : this.objects.get(id);
    if (!o) throw tokenError('CKR_KEY_HANDLE_INVALID', `handle ${handle}`);
    if (o.kind !== kind) throw tokenError('CKR_KEY_TYPE_INCONSISTENT', `handle ${handle} is not an ${kind} key`);
    return o;
  }

  private handleFor(id: string): KeyHandle {
    let h = this.handleOf.get(id);
    if (h === undefined) {
      h = this.nextHandle++;
      this.handleOf.set(id, h);
      this.handles.set(h, id);
    }
    return h;
  }

  /** Reloads the file if it changed since it was loaded (checked now, or if `revalidateMs` passed). */
  private refresh(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.checkedAt < this.revalidateMs) return;
    this.checkedAt = now;
    const stamp = fileStamp(this.file);
    if (stamp === this.stamp) return;
    let objects = new Map<string, KeyObject>();
    if (stamp !== '') {
      let raw: Buffer;
      try {
        raw = fs.readFileSync(this.file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw tokenError('CKR_DEVICE_ERROR', `token read failed: ${(e as Error).message}`, e);
        raw = Buffer.alloc(0);
      }
      if (raw.length > 0) objects = decodeFile(raw, this.file);
      raw.fill(0);
    }
    this.replace(objects, stamp);
  }

  /** Installs a new object set; values of objects that are gone or replaced are overwritten. */
  private replace(objects: Map<string, KeyObject>, stamp: string): void {
    for (const [id, o] of this.objects) {
      const kept = objects.get(id);
      if (kept) {
        kept.value.fill(0);
        kept.value = o.value; // keep one copy per object
      } else {
        o.value.fill(0);
        const h = this.handleOf.get(id);
        if (h !== undefined) this.handles.delete(h);
        this.handleOf.delete(id);
      }
    }
    this.objects = objects;
    this.stamp = stamp;
  }

  private withLock<T>(fn: () => T): T {
    const deadline = performance.now() + this.lockTimeoutMs;
    const me = `${process.pid} ${threadId} ${randomBytes(8).toString('hex')}`;
    let fd: number | undefined;
    while (fd === undefined) {
      try {
        fd = fs.openSync(this.lockFile, 'wx', 0o600);
        fs.writeSync(fd, me);
        fs.closeSync(fd);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw tokenError('CKR_DEVICE_ERROR', `token lock: ${(e as Error).message}`, e);
        if (this.breakIfStale()) continue;
        if (performance.now() > deadline) throw tokenError('CKR_DEVICE_ERROR', `token lock ${this.lockFile} held too long`);
        sleepMs(2);
      }
    }
    try {
      return fn();
    } finally {
      try {
        if (fs.readFileSync(this.lockFile, 'utf8') === me) fs.unlinkSync(this.lockFile);
      } catch {
        // already broken by another holder's stale check; nothing to release
      }
    }
  }

  /** Removes the lock file if its owner process is gone or it is older than lockStaleMs. */
  private breakIfStale(): boolean {
    let owner: string;
    let st: fs.Stats | undefined;
    try {
      owner = fs.readFileSync(this.lockFile, 'utf8');
      st = fs.statSync(this.lockFile);
    } catch {
      return true; // released meanwhile: try again
    }
    const pid = Number(owner.split(' ')[0]);
    const dead = Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid);
    const old = Date.now() - st.mtimeMs > this.lockStaleMs;
    if (!dead && !old) return false;
    try {
      // Re-check the owner just before removing, to narrow the race with another breaker.
      if (fs.readFileSync(this.lockFile, 'utf8') === owner) fs.unlinkSync(this.lockFile);
    } catch {
      // gone already
    }
    return true;
  }
}

function checkLabel(label: string): void {
  if (typeof label !== 'string' || label.length === 0 || Buffer.byteLength(label, 'utf8') > MAX_LABEL) {
    throw tokenError('CKR_ATTRIBUTE_VALUE_INVALID', 'label must be 1..255 bytes of UTF-8');
  }
}

function fileStamp(file: string): string {
  const st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
  return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : '';
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function encodeFile(objects: KeyObject[]): Buffer {
  const parts: Buffer[] = [MAGIC, u32(objects.length)];
  for (const o of objects) {
    const label = Buffer.from(o.label, 'utf8');
    parts.push(Buffer.from(o.id, 'hex'), Buffer.from([KIND[o.kind]]), u16(label.length), label, u16(o.value.length), o.value);
  }
  const body = Buffer.concat(parts);
  const out = Buffer.concat([body, createHash('sha256').update(body).digest()]);
  body.fill(0);
  return out;
}

function decodeFile(raw: Buffer, file: string): Map<string, KeyObject> {
  const bad = (why: string) => tokenError('CKR_DEVICE_ERROR', `token file ${file} is corrupt: ${why}`);
  if (raw.length < MAGIC.length + 4 + 32 || !raw.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('bad header');
  const body = raw.subarray(0, raw.length - 32);
  if (!createHash('sha256').update(body).digest().equals(raw.subarray(raw.length - 32))) throw bad('checksum mismatch');
  const out = new Map<string, KeyObject>();
  let off = MAGIC.length;
  const need = (n: number) => {
    if (off + n > body.length) throw bad('truncated object');
  };
  const count = body.readUInt32BE(off);
  off += 4;
  for (let i = 0; i < count; i++) {
    need(16 + 1 + 2);
    const id = body.subarray(off, off + 16).toString('hex');
    const kindByte = body[off + 16];
    off += 17;
    const labelLen = body.readUInt16BE(off);
    off += 2;
    need(labelLen + 2);
    const label = body.subarray(off, off + labelLen).toString('utf8');
    off += labelLen;
    const valueLen = body.readUInt16BE(off);
    off += 2;
    need(valueLen);
    const value = Buffer.from(body.subarray(off, off + valueLen)); // own copy, not a view of `raw`
    off += valueLen;
    const kind: Kind | undefined = kindByte === KIND.aes ? 'aes' : kindByte === KIND.hmac ? 'hmac' : undefined;
    if (!kind) throw bad(`unknown kind ${kindByte}`);
    out.set(id, { id, label, kind, value });
  }
  if (off !== body.length) throw bad('trailing bytes');
  return out;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
