/**
 * Backup file format v1 (backup encryption: key = HKDF-SHA256 of the
 * 32-byte backup key, AES-256-GCM in authenticated chunks). Browser-safe core: @noble/hashes,
 * WebCrypto and Web Streams only, no node: imports (client/backup-file-node.ts adds Node
 * streams, files and a faster node:crypto AES-GCM that produces the same bytes).
 *
 * Keys (client/backup-key.ts): HKDF-SHA256 with IKM = the backup key, salt = the file id,
 * info "bkv/backup/v1/file-key" (32 bytes, AES-256-GCM), "bkv/backup/v1/header-key" (32 bytes,
 * HMAC-SHA256), "bkv/backup/v1/key-check" (16 bytes). A fresh random file id per file gives each
 * file its own AES key, so the per-chunk nonces below never repeat under one key.
 *
 * Header, 78 bytes, integers big-endian:
 *
 *   offset  size  field
 *   0       8     magic "BKVBAK\r\n" (42 4b 56 42 41 4b 0d 0a)
 *   8       2     format version = 1
 *   10      4     chunk size: plaintext bytes per chunk, 1 .. 16 MiB (default 64 KiB)
 *   14      32    file id: random; the HKDF salt
 *   46      16    key check = HKDF(key, file id, "bkv/backup/v1/key-check", 16)
 *   62      16    header tag = HMAC-SHA256(header key, bytes 0..61), first 16 bytes
 *
 * Then chunks i = 0, 1, 2, ..., each a record:
 *
 *   frame      4 bytes: bit 31 = final flag, bits 0..30 = plaintext length of this chunk
 *   sealed     AES-256-GCM(file key, nonce_i, aad_i, plaintext_i) = ciphertext || 16-byte tag
 *   nonce_i    = file id[0..4] || i as 8 bytes                                    (12 bytes)
 *   aad_i      = SHA-256(header, all 78 bytes) || i as 8 bytes || final flag (0 or 1)  (41 bytes)
 *
 * Every chunk but the final one holds exactly `chunk size` bytes; the final one holds 1 .. chunk
 * size (0 only for an empty file, whose only chunk is final). Nothing follows the final chunk.
 * A plaintext of n bytes encrypts to 78 + n + 20 * max(1, ceil(n / chunk size)) bytes.
 *
 * What is detected, each as a `BackupFileError` with a stable code (5000-5049; 5050-5099 are
 * the backup key's, client/backup-key.ts): not a backup, unknown version, a wrong key (the
 * key check), header tampering (the tag; the header hash in every chunk's AAD binds it again),
 * truncation (the file ends inside the header or a record, after a non-final chunk, or a
 * non-final chunk was marked final: the flag is in the AAD), a tampered chunk or one from another
 * file, reordered, dropped or duplicated chunks (a chunk that fails at its position is tried at
 * the positions around it to say which), and trailing bytes after the final chunk.
 *
 * Decryption releases each chunk's plaintext only after its tag verifies, and holds back the
 * final chunk's until the end of the input is seen, so a stream of plaintext that ends without
 * an error is the whole backup. Memory is bounded by one chunk whatever the file size.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { CodedError, type CodeOf } from '../enclave/api/codes.ts';
import { concatAll, putU64 } from '../enclave/opaque/bytes.ts';
import type { RandomSource } from '../enclave/opaque/bytes.ts';
import { deriveBackupSubkey } from './backup-key.ts';

export const BACKUP_MAGIC = new Uint8Array([0x42, 0x4b, 0x56, 0x42, 0x41, 0x4b, 0x0d, 0x0a]);
export const BACKUP_FORMAT_VERSION = 1;
export const HEADER_BYTES = 78;
export const FRAME_BYTES = 4;
export const TAG_BYTES = 16;
export const FILE_ID_BYTES = 32;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 1;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
const FINAL = 0x8000_0000;
/** A chunk that fails at its position is tried this many positions either side of it. */
const SEARCH_WINDOW = 1024;

const OFF_VERSION = 8;
const OFF_CHUNK = 10;
const OFF_FILE_ID = 14;
const OFF_KEY_CHECK = 46;
const OFF_TAG = 62;

export const BackupFileErrorCode = {
  /** The input does not start with the backup magic. */
  NotABackup: 5001,
  /** A format version this code does not read. */
  UnsupportedVersion: 5002,
  /** A header field out of range (chunk size). */
  InvalidHeader: 5003,
  /** The key check does not match: another key made this file (or the header is damaged). */
  WrongKey: 5004,
  /** The header tag does not verify under this key. */
  HeaderTampered: 5005,
  /** The file ends early: inside the header or a chunk, or after a chunk that is not the final one. */
  Truncated: 5006,
  /** A chunk does not authenticate at its position nor near it: altered, damaged or from another file. */
  ChunkTampered: 5007,
  /** A chunk authenticates at a later position: chunks were dropped or reordered. */
  ChunkOutOfOrder: 5008,
  /** A chunk is a copy of an earlier one. */
  ChunkDuplicated: 5009,
  /** Bytes follow the final chunk. */
  TrailingData: 5010,
  /** A record's frame is impossible (length above the chunk size, a short non-final chunk). */
  InvalidFrame: 5011,
  /** A bad argument: key length, chunk size, random source. */
  InvalidArgument: 5012,
  /** The output file exists and overwriting was not asked for. */
  OutputExists: 5013,
  /** Stopped through an AbortSignal. */
  Aborted: 5014,
  /** The encryptor or decryptor was used after it finished or failed. */
  InvalidState: 5015,
} as const;
export type BackupFileErrorCode = CodeOf<typeof BackupFileErrorCode>;

export class BackupFileError extends CodedError<BackupFileErrorCode> {
  override readonly name = 'BackupFileError';
  constructor(
    code: BackupFileErrorCode,
    message: string,
    /** The chunk concerned, if any. */
    readonly chunk?: number,
    /** Byte offset in the encrypted file where the problem was found, if known. */
    readonly offset?: number,
  ) {
    super(code, message);
  }
}

/** AES-256-GCM with a 12-byte nonce and a 16-byte tag, under one key. */
export interface ChunkAead {
  /** ciphertext || tag, in one piece or in pieces to be written in order (saves a copy). */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array | Uint8Array[]> | Uint8Array | Uint8Array[];
  /** The plaintext, or null when the tag does not verify. */
  open(nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Promise<Uint8Array | null> | Uint8Array | null;
}
export type ChunkAeadFactory = (key: Uint8Array) => Promise<ChunkAead> | ChunkAead;

/** WebCrypto's types want ArrayBuffer-backed views; these buffers are never shared memory. */
const bs = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;

/** AES-256-GCM through WebCrypto (browsers, Node). */
export const webCryptoAead: ChunkAeadFactory = async (rawKey) => {
  const key = await crypto.subtle.importKey('raw', rawKey.slice(), 'AES-GCM', false, ['encrypt', 'decrypt']);
  return {
    async seal(nonce, aad, plaintext) {
      return new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 }, key, bs(plaintext)));
    },
    async open(nonce, aad, sealed) {
      try {
        return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: 128 }, key, bs(sealed)));
      } catch {
        return null;
      }
    },
  };
};

export interface BackupProgress {
  /** Bytes consumed so far: plaintext when encrypting, the encrypted file when decrypting. */
  bytesDone: number;
  /** The total, when the caller said it (`totalBytes`). */
  totalBytes: number | undefined;
  /** Chunks processed so far. */
  chunks: number;
}

export interface BackupCommonOptions {
  /** AES-GCM implementation (default WebCrypto; Node: `nodeAead` from backup-file-node.ts). */
  aead?: ChunkAeadFactory;
  /** Called after every chunk. */
  onProgress?: (p: BackupProgress) => void;
  /** The size of the input, for progress reports. */
  totalBytes?: number;
  /** Stops the work with an `Aborted` error at the next chunk. */
  signal?: AbortSignal;
}

export interface EncryptOptions extends BackupCommonOptions {
  /** Plaintext bytes per chunk (default 64 KiB). */
  chunkSize?: number;
  /** Source of the file id (default WebCrypto's getRandomValues). Tests inject a fixed one. */
  random?: RandomSource;
}

export type DecryptOptions = BackupCommonOptions;

/** Size of the encrypted file for `plaintextBytes` of input. */
export function encryptedSize(plaintextBytes: number, chunkSize = DEFAULT_CHUNK_SIZE): number {
  const chunks = Math.max(1, Math.ceil(plaintextBytes / chunkSize));
  return HEADER_BYTES + plaintextBytes + chunks * (FRAME_BYTES + TAG_BYTES);
}

function u32(out: Uint8Array, off: number, v: number): void {
  out[off] = v >>> 24;
  out[off + 1] = (v >>> 16) & 0xff;
  out[off + 2] = (v >>> 8) & 0xff;
  out[off + 3] = v & 0xff;
}

function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

function equalCt(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

function checkChunkSize(n: number): void {
  if (!Number.isInteger(n) || n < MIN_CHUNK_SIZE || n > MAX_CHUNK_SIZE) {
    throw new BackupFileError(BackupFileErrorCode.InvalidArgument, `chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, got ${n}`);
  }
}

function checkRootKey(k: Uint8Array): void {
  if (!(k instanceof Uint8Array) || k.length !== 32) {
    throw new BackupFileError(BackupFileErrorCode.InvalidArgument, 'the backup key must be 32 bytes');
  }
}

/** The per-file keys and the chunk nonce and AAD construction shared by both directions. */
class FileKeys {
  private constructor(
    readonly header: Uint8Array,
    private readonly headerHash: Uint8Array,
    private readonly fileId: Uint8Array,
    readonly aead: ChunkAead,
  ) {}

  static async create(rootKey: Uint8Array, header: Uint8Array, factory: ChunkAeadFactory): Promise<FileKeys> {
    const fileId = header.slice(OFF_FILE_ID, OFF_FILE_ID + FILE_ID_BYTES);
    const fileKey = deriveBackupSubkey(rootKey, 'file-key', fileId);
    try {
      const aead = await factory(fileKey);
      return new FileKeys(header, sha256(header), fileId, aead);
    } finally {
      fileKey.fill(0);
    }
  }

  nonce(index: number): Uint8Array {
    const n = new Uint8Array(12);
    n.set(this.fileId.subarray(0, 4), 0);
    putU64(n, 4, index);
    return n;
  }

  aad(index: number, final: boolean): Uint8Array {
    const a = new Uint8Array(41);
    a.set(this.headerHash, 0);
    putU64(a, 32, index);
    a[40] = final ? 1 : 0;
    return a;
  }
}

/** The header's key check and tag for `header` bytes 0..45 already filled in. */
function headerSecrets(rootKey: Uint8Array, header: Uint8Array): { keyCheck: Uint8Array; tag: Uint8Array } {
  const fileId = header.subarray(OFF_FILE_ID, OFF_FILE_ID + FILE_ID_BYTES);
  const keyCheck = deriveBackupSubkey(rootKey, 'key-check', fileId);
  const headerKey = deriveBackupSubkey(rootKey, 'header-key', fileId);
  const mac = hmac.create(sha256, headerKey);
  mac.update(header.subarray(0, OFF_KEY_CHECK));
  mac.update(keyCheck);
  const tag = mac.digest().subarray(0, 16);
  headerKey.fill(0);
  return { keyCheck, tag };
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BackupFileError(BackupFileErrorCode.Aborted, 'stopped on request');
}

/**
 * Streaming encryption: feed plaintext with `update`, end with `finish`. Each call returns the
 * encrypted pieces ready so far (the header comes first). Holds at most one chunk.
 */
export class BackupEncryptor {
  private readonly buf: Uint8Array;
  private fill = 0;
  private index = 0;
  private headerSent = false;
  private state: 'open' | 'finished' | 'failed' = 'open';
  private consumed = 0;

  private constructor(
    private readonly keys: FileKeys,
    private readonly chunkSize: number,
    private readonly opts: EncryptOptions,
  ) {
    this.buf = new Uint8Array(chunkSize);
  }

  static async create(rootKey: Uint8Array, opts: EncryptOptions = {}): Promise<BackupEncryptor> {
    checkRootKey(rootKey);
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    checkChunkSize(chunkSize);
    const fileId = opts.random ? opts.random(FILE_ID_BYTES) : crypto.getRandomValues(new Uint8Array(FILE_ID_BYTES));
    if (!(fileId instanceof Uint8Array) || fileId.length !== FILE_ID_BYTES) {
      throw new BackupFileError(BackupFileErrorCode.InvalidArgument, `the random source must return ${FILE_ID_BYTES} bytes`);
    }
    const header = new Uint8Array(HEADER_BYTES);
    header.set(BACKUP_MAGIC, 0);
    header[OFF_VERSION] = BACKUP_FORMAT_VERSION >> 8;
    header[OFF_VERSION + 1] = BACKUP_FORMAT_VERSION & 0xff;
    u32(header, OFF_CHUNK, chunkSize);
    header.set(fileId, OFF_FILE_ID);
    const { keyCheck, tag } = headerSecrets(rootKey, header);
    header.set(keyCheck, OFF_KEY_CHECK);
    header.set(tag, OFF_TAG);
    const keys = await FileKeys.create(rootKey, header, opts.aead ?? webCryptoAead);
    return new BackupEncryptor(keys, chunkSize, opts);
  }

  /** The 78-byte header (also emitted as the first output piece). */
  get header(): Uint8Array {
    return this.keys.header.slice();
  }

  private guard(): void {
    if (this.state !== 'open') throw new BackupFileError(BackupFileErrorCode.InvalidState, `the encryptor has ${this.state}`);
  }

  private async seal(final: boolean, out: Uint8Array[]): Promise<void> {
    aborted(this.opts.signal);
    const i = this.index;
    const plain = this.buf.subarray(0, this.fill);
    const sealed = await this.keys.aead.seal(this.keys.nonce(i), this.keys.aad(i, final), plain);
    const parts = Array.isArray(sealed) ? sealed : [sealed];
    if (parts.reduce((n, p) => n + p.length, 0) !== this.fill + TAG_BYTES) throw new Error('AES-GCM returned an unexpected length');
    const frame = new Uint8Array(FRAME_BYTES);
    u32(frame, 0, (final ? FINAL : 0) | this.fill);
    out.push(frame, ...parts.filter((p) => p.length > 0));
    this.index++;
    this.fill = 0;
    this.opts.onProgress?.({ bytesDone: this.consumed, totalBytes: this.opts.totalBytes, chunks: this.index });
  }

  private start(out: Uint8Array[]): void {
    if (!this.headerSent) {
      out.push(this.keys.header.slice());
      this.headerSent = true;
    }
  }

  /** Encrypts more plaintext; returns the pieces of encrypted file it completes. */
  async update(data: Uint8Array): Promise<Uint8Array[]> {
    this.guard();
    const out: Uint8Array[] = [];
    try {
      this.start(out);
      let off = 0;
      while (off < data.length) {
        // A full buffer is sealed as non-final only once more data is known to follow it.
        if (this.fill === this.chunkSize) await this.seal(false, out);
        const n = Math.min(data.length - off, this.chunkSize - this.fill);
        this.buf.set(data.subarray(off, off + n), this.fill);
        this.fill += n;
        off += n;
        this.consumed += n;
      }
    } catch (e) {
      this.fail();
      throw e;
    }
    return out;
  }

  /** Seals the final chunk; returns the last pieces of the file. */
  async finish(): Promise<Uint8Array[]> {
    this.guard();
    const out: Uint8Array[] = [];
    try {
      this.start(out);
      await this.seal(true, out);
    } catch (e) {
      this.fail();
      throw e;
    }
    this.state = 'finished';
    this.buf.fill(0);
    return out;
  }

  private fail(): void {
    this.state = 'failed';
    this.buf.fill(0);
  }
}

/**
 * Streaming decryption: feed the encrypted file with `update` in pieces of any size, end with
 * `finish`. Returns authenticated plaintext; the final chunk's comes out of `finish` only.
 */
export class BackupDecryptor {
  private phase: 'header' | 'frame' | 'body' | 'done' = 'header';
  private keys: FileKeys | undefined;
  private chunkSize = 0;
  /** Collects the bytes of the current header, frame or record body. */
  private pending = new Uint8Array(HEADER_BYTES);
  private need = HEADER_BYTES;
  private have = 0;
  private frameFinal = false;
  private frameLen = 0;
  private index = 0;
  /** Offset in the file of the current record. */
  private recordOffset = 0;
  private consumed = 0;
  private heldFinal: Uint8Array | undefined;
  private error: BackupFileError | undefined;
  private finished = false;

  constructor(
    private readonly rootKey: Uint8Array,
    private readonly opts: DecryptOptions = {},
  ) {
    checkRootKey(rootKey);
  }

  /** Chunk size read from the header (0 until the header is read). */
  get chunkSizeOfFile(): number {
    return this.chunkSize;
  }

  private fail(e: BackupFileError): never {
    this.error = e;
    this.heldFinal?.fill(0);
    this.heldFinal = undefined;
    throw e;
  }

  private guard(): void {
    if (this.error) throw this.error;
    if (this.finished) throw new BackupFileError(BackupFileErrorCode.InvalidState, 'the decryptor has finished');
  }

  async update(data: Uint8Array): Promise<Uint8Array[]> {
    this.guard();
    const out: Uint8Array[] = [];
    let off = 0;
    try {
      while (off < data.length) {
        if (this.phase === 'done') {
          this.fail(
            new BackupFileError(
              BackupFileErrorCode.TrailingData,
              `bytes follow the final chunk (chunk ${this.index - 1}) at offset ${this.consumed}`,
              this.index - 1,
              this.consumed,
            ),
          );
        }
        const n = Math.min(data.length - off, this.need - this.have);
        this.pending.set(data.subarray(off, off + n), this.have);
        // The magic and version are checked as soon as they arrive, so a wrong file fails fast.
        if (this.phase === 'header') this.checkEarlyHeader(this.have + n);
        this.have += n;
        off += n;
        this.consumed += n;
        if (this.have === this.need) await this.step(out);
      }
    } catch (e) {
      if (e instanceof BackupFileError) {
        if (!this.error) this.fail(e);
        throw e;
      }
      throw e;
    }
    return out;
  }

  async finish(): Promise<Uint8Array[]> {
    this.guard();
    if (this.phase !== 'done') {
      if (this.phase === 'header') {
        if (this.consumed === 0) this.fail(new BackupFileError(BackupFileErrorCode.Truncated, 'the file is empty', undefined, 0));
        this.fail(new BackupFileError(BackupFileErrorCode.Truncated, `the file ends inside its header (${this.consumed} of ${HEADER_BYTES} bytes)`, undefined, this.consumed));
      }
      if (this.phase === 'body' || this.have > 0) {
        this.fail(
          new BackupFileError(BackupFileErrorCode.Truncated, `the file ends inside chunk ${this.index} (at offset ${this.consumed})`, this.index, this.recordOffset),
        );
      }
      this.fail(
        new BackupFileError(
          BackupFileErrorCode.Truncated,
          this.index === 0
            ? 'the file ends after its header: its chunks are missing'
            : `the file ends after chunk ${this.index - 1}, which is not the final chunk: chunks are missing from the end`,
          this.index,
          this.consumed,
        ),
      );
    }
    this.finished = true;
    const last = this.heldFinal;
    this.heldFinal = undefined;
    return last && last.length > 0 ? [last] : [];
  }

  private checkEarlyHeader(filled: number): void {
    const m = Math.min(filled, BACKUP_MAGIC.length);
    for (let i = 0; i < m; i++) {
      if (this.pending[i] !== BACKUP_MAGIC[i]) {
        this.fail(new BackupFileError(BackupFileErrorCode.NotABackup, 'not a backup file (its first bytes are not the backup magic)', undefined, 0));
      }
    }
    if (filled >= OFF_VERSION + 2) {
      const v = (this.pending[OFF_VERSION]! << 8) | this.pending[OFF_VERSION + 1]!;
      if (v !== BACKUP_FORMAT_VERSION) {
        this.fail(
          new BackupFileError(BackupFileErrorCode.UnsupportedVersion, `backup format version ${v} is not supported (this reader knows version ${BACKUP_FORMAT_VERSION})`, undefined, OFF_VERSION),
        );
      }
    }
  }

  private async step(out: Uint8Array[]): Promise<void> {
    if (this.phase === 'header') await this.readHeader();
    else if (this.phase === 'frame') this.readFrame();
    else if (this.phase === 'body') await this.readBody(out);
  }

  private async readHeader(): Promise<void> {
    const header = this.pending.slice(0, HEADER_BYTES);
    const chunkSize = readU32(header, OFF_CHUNK);
    if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
      this.fail(new BackupFileError(BackupFileErrorCode.InvalidHeader, `the header's chunk size ${chunkSize} is out of range`, undefined, OFF_CHUNK));
    }
    const { keyCheck, tag } = headerSecrets(this.rootKey, header);
    if (!equalCt(keyCheck, header.subarray(OFF_KEY_CHECK, OFF_KEY_CHECK + 16))) {
      this.fail(new BackupFileError(BackupFileErrorCode.WrongKey, 'this backup was not encrypted with this key (the key check differs)', undefined, OFF_KEY_CHECK));
    }
    if (!equalCt(tag, header.subarray(OFF_TAG, OFF_TAG + 16))) {
      this.fail(new BackupFileError(BackupFileErrorCode.HeaderTampered, 'the header was altered (its tag does not verify)', undefined, 0));
    }
    this.keys = await FileKeys.create(this.rootKey, header, this.opts.aead ?? webCryptoAead);
    this.chunkSize = chunkSize;
    this.pending = new Uint8Array(chunkSize + TAG_BYTES);
    this.expect('frame', FRAME_BYTES);
    this.recordOffset = HEADER_BYTES;
  }

  private expect(phase: 'frame' | 'body', need: number): void {
    this.phase = phase;
    this.need = need;
    this.have = 0;
  }

  private readFrame(): void {
    const v = readU32(this.pending, 0);
    this.frameFinal = (v & FINAL) !== 0;
    this.frameLen = v & ~FINAL;
    if (this.frameLen > this.chunkSize) {
      this.fail(
        new BackupFileError(
          BackupFileErrorCode.InvalidFrame,
          `chunk ${this.index} claims ${this.frameLen} bytes, more than the chunk size ${this.chunkSize}`,
          this.index,
          this.recordOffset,
        ),
      );
    }
    this.expect('body', this.frameLen + TAG_BYTES);
  }

  private async readBody(out: Uint8Array[]): Promise<void> {
    aborted(this.opts.signal);
    const keys = this.keys!;
    const i = this.index;
    const final = this.frameFinal;
    const sealed = this.pending.subarray(0, this.need);
    const plain = await keys.aead.open(keys.nonce(i), keys.aad(i, final), sealed);
    if (!plain) this.fail(await this.diagnose(sealed));
    // Frame rules. Only the holder of the key could produce a chunk that breaks them.
    if ((!final && this.frameLen !== this.chunkSize) || (final && this.frameLen === 0 && i !== 0)) {
      this.fail(new BackupFileError(BackupFileErrorCode.InvalidFrame, `chunk ${i} has an impossible length ${this.frameLen}`, i, this.recordOffset));
    }
    this.index++;
    this.recordOffset = this.consumed;
    if (final) {
      this.heldFinal = plain;
      this.phase = 'done';
    } else {
      out.push(plain);
      this.expect('frame', FRAME_BYTES);
    }
    this.opts.onProgress?.({ bytesDone: this.consumed, totalBytes: this.opts.totalBytes, chunks: this.index });
  }

  /** Why chunk `index` does not open: a moved, copied, cut or extended chunk, or plain tampering. */
  private async diagnose(sealed: Uint8Array): Promise<BackupFileError> {
    const keys = this.keys!;
    const i = this.index;
    const final = this.frameFinal;
    const at = this.recordOffset;
    if (await keys.aead.open(keys.nonce(i), keys.aad(i, !final), sealed)) {
      return final
        ? new BackupFileError(BackupFileErrorCode.Truncated, `chunk ${i} was marked final but is not: the file was cut after it`, i, at)
        : new BackupFileError(BackupFileErrorCode.TrailingData, `chunk ${i} is the final chunk but was marked as one that more chunks follow: data was appended after it`, i, at);
    }
    // A moved record carries its frame, so its final flag is the one it was sealed with. Chunks
    // beyond the end of the file need no try when the file size is known.
    const total = this.opts.totalBytes;
    const chunks = total !== undefined ? Math.ceil((total - HEADER_BYTES) / (this.chunkSize + FRAME_BYTES + TAG_BYTES)) : Infinity;
    for (let d = 1; d <= SEARCH_WINDOW; d++) {
      const before = i - d;
      const after = i + d;
      if (before < 0 && after >= chunks) break;
      for (const j of [before, after]) {
        if (j < 0 || j >= chunks) continue;
        if (await keys.aead.open(keys.nonce(j), keys.aad(j, final), sealed)) {
          return j < i
            ? new BackupFileError(BackupFileErrorCode.ChunkDuplicated, `position ${i} holds a copy of chunk ${j}: chunks were duplicated`, i, at)
            : new BackupFileError(BackupFileErrorCode.ChunkOutOfOrder, `position ${i} holds chunk ${j}: chunks were dropped or reordered`, i, at);
        }
      }
    }
    return new BackupFileError(
      BackupFileErrorCode.ChunkTampered,
      `chunk ${i} (at offset ${at}) does not authenticate: it was altered or damaged, or comes from another backup`,
      i,
      at,
    );
  }
}

/** Encrypts a whole backup held in memory (small files; use the streams for large ones). */
export async function encryptBackup(rootKey: Uint8Array, plaintext: Uint8Array, opts: EncryptOptions = {}): Promise<Uint8Array> {
  const enc = await BackupEncryptor.create(rootKey, { totalBytes: plaintext.length, ...opts });
  return concatAll([...(await enc.update(plaintext)), ...(await enc.finish())]);
}

/** Decrypts a whole backup held in memory. */
export async function decryptBackup(rootKey: Uint8Array, file: Uint8Array, opts: DecryptOptions = {}): Promise<Uint8Array> {
  const dec = new BackupDecryptor(rootKey, { totalBytes: file.length, ...opts });
  return concatAll([...(await dec.update(file)), ...(await dec.finish())]);
}

/** A Web Streams transform: plaintext in, encrypted file out (back-pressure from the reader). */
export function encryptStream(rootKey: Uint8Array, opts: EncryptOptions = {}): TransformStream<Uint8Array, Uint8Array> {
  let enc: BackupEncryptor;
  return new TransformStream<Uint8Array, Uint8Array>({
    async start() {
      enc = await BackupEncryptor.create(rootKey, opts);
    },
    async transform(piece, ctl) {
      for (const p of await enc.update(piece)) ctl.enqueue(p);
    },
    async flush(ctl) {
      for (const p of await enc.finish()) ctl.enqueue(p);
    },
  });
}

/** A Web Streams transform: encrypted file in, authenticated plaintext out; errors the stream on any fault. */
export function decryptStream(rootKey: Uint8Array, opts: DecryptOptions = {}): TransformStream<Uint8Array, Uint8Array> {
  const dec = new BackupDecryptor(rootKey, opts);
  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(piece, ctl) {
      for (const p of await dec.update(piece)) ctl.enqueue(p);
    },
    async flush(ctl) {
      for (const p of await dec.finish()) ctl.enqueue(p);
    },
  });
}
