/**
 * The vault record and its sealed form: what the untrusted storage holds.
 *
 * Sealed blob = header || AES-256-GCM(ciphertext || tag), under the token's sealing key.
 *   header (35 bytes): magic "BKVR" | format (2) | kind (1 = record, 2 = tombstone) | suite code |
 *                      epoch (8, big-endian) | record version (8) | IV (12)
 *   AAD = header || len(record id) (1) || record id
 * Binding the record id, version, epoch and suite in the AAD means a blob moved to another id,
 * or with any header byte changed, fails to open. A tombstone has an empty plaintext: it proves
 * a deletion at an epoch without holding anything.
 *
 * Format 2 adds the record's guess pacing (enclave/api/pacing.ts: its schedule and the platform
 * time of its last charged guess) at the end of the plaintext; format 1 blobs (written before)
 * still open, as records with no pacing. Format 3 pads the plaintext with zeros to
 * RECORD_PADDED_LEN, so every record blob has one length whatever its suite or state (a locked
 * record, which holds no key, is no shorter): the host can not tell a lock from a charge by the
 * size of what it stores. Formats 1 and 2 are written back as format 3.
 *
 * Format 4 is format 3 sealed on the ctr-hmac token profile (enclave/token-profiles.ts): AES-256-CTR
 * then HMAC-SHA256/128 on two token keys (seal-ctr-hmac.ts) in place of AES-256-GCM, with the same
 * header, AAD and lengths. The format byte says which profile sealed a blob, and a vault opens only
 * the formats of its own profile: a blob of the other one is refused as not opening.
 */
import { bytes, encodeFields, fixed, u53, u8 } from '../api/codec.ts';
import { EnclaveFault, Integrity, PlatformFault } from '../api/codes.ts';
import { newBytes } from '../opaque/bytes.ts';
import type { Alloc } from '../opaque/bytes.ts';
import type { KeyHandle, Token } from '../token.ts';
import { TokenError } from '../token.ts';
import { ctrHmacDecrypt, ctrHmacEncrypt } from './seal-ctr-hmac.ts';
import type { CtrHmacKeys } from './seal-ctr-hmac.ts';

/** The key a record is sealed under: a token AES key (AES-GCM, gcm-ecdh profile) or the ctr-hmac profile's two keys. */
export type SealKey = KeyHandle | CtrHmacKeys;

export const SEALED_MAGIC = Uint8Array.of(0x42, 0x4b, 0x56, 0x52); // "BKVR"
export const SEALED_FORMAT = 3;
const SEALED_FORMAT_V1 = 1;
const SEALED_FORMAT_V2 = 2;
/** Format 3's plaintext, sealed on the ctr-hmac profile. */
export const SEALED_FORMAT_CTR_HMAC = 4;
export const KIND_RECORD = 1;
export const KIND_TOMBSTONE = 2;
export const HEADER_LEN = 4 + 1 + 1 + 1 + 8 + 8 + 12;

export const STATUS_ACTIVE = 1;
export const STATUS_LOCKED = 2;

export const RecordSchema = [
  ['status', u8],
  ['suite', u8],
  ['attemptLimit', u8],
  ['attemptsUsed', u8],
  ['registrationId', fixed(16)],
  ['ksf', bytes(0, 32)],
  ['opaqueRecord', bytes(0, 192)],
  ['backupKey', bytes(0, 32)],
  ['registeredAt', u53],
  ['pacing', u8],
  ['lastGuessAt', u53],
] as const;

export interface VaultRecord {
  status: number;
  suite: number;
  attemptLimit: number;
  attemptsUsed: number;
  registrationId: Uint8Array;
  ksf: Uint8Array;
  opaqueRecord: Uint8Array;
  backupKey: Uint8Array;
  registeredAt: number;
  /** The guess pacing schedule (enclave/api/pacing.ts), chosen at registration. */
  pacing: number;
  /** Platform time (ms) of the last charged guess; 0 before the first. */
  lastGuessAt: number;
}

export interface SealedHeader {
  kind: number;
  suite: number;
  epoch: number;
  version: number;
  iv: Uint8Array;
}

const invalid = () => new EnclaveFault(Integrity.SealedRecordInvalid, 'stored record does not open');

/**
 * What CKM_AES_GCM decryption answers for a blob that does not authenticate: SoftHSM2 (and so the
 * emulator) CKR_GENERAL_ERROR for a bad tag; PKCS#11 v2.40 allows CKR_ENCRYPTED_DATA_INVALID and
 * CKR_ENCRYPTED_DATA_LEN_RANGE. Any other token error is the token's fault, not the blob's.
 */
const BLOB_DOES_NOT_OPEN = new Set(['CKR_GENERAL_ERROR', 'CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE']);

const TWO32 = 2 ** 32;

/** A u53 stored as 8 bytes big-endian at `off` (the header's epoch and version). */
function readU64(b: Uint8Array, off: number): number {
  const hi = ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
  const lo = ((b[off + 4]! << 24) | (b[off + 5]! << 16) | (b[off + 6]! << 8) | b[off + 7]!) >>> 0;
  return hi * TWO32 + lo;
}

function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/** The header's checks, without building it: kind, or throws the invalid-record fault. */
function checkHeader(blob: Uint8Array): number {
  if (blob.length < HEADER_LEN + 16) throw invalid();
  for (let i = 0; i < 4; i++) if (blob[i] !== SEALED_MAGIC[i]) throw invalid();
  const f = blob[4];
  if (f !== SEALED_FORMAT && f !== SEALED_FORMAT_V2 && f !== SEALED_FORMAT_V1 && f !== SEALED_FORMAT_CTR_HMAC) throw invalid();
  const kind = blob[5]!;
  if (kind !== KIND_RECORD && kind !== KIND_TOMBSTONE) throw invalid();
  return kind;
}

/** Reads the header without decrypting (the header is authenticated when the blob is opened). */
export function parseHeader(blob: Uint8Array): SealedHeader {
  return headerWithIv(blob, blob.slice(23, 35));
}

function headerWithIv(blob: Uint8Array, iv: Uint8Array): SealedHeader {
  const kind = checkHeader(blob);
  return { kind, suite: blob[6]!, epoch: readU64(blob, 7), version: readU64(blob, 15), iv };
}

/**
 * header || len(record id) || record id in one buffer: the AAD is all of it, the header its first
 * HEADER_LEN bytes (see the file's header for the layout).
 */
function headerAndAad(h: Omit<SealedHeader, 'iv'>, iv: Uint8Array, recordId: Uint8Array, format: number): Buffer {
  // A Buffer: the token hands it (and the IV in it) to the PKCS#11 module without another view.
  // From Node's shared pool (allocUnsafe: every byte is written below), so that views of it
  // (the IV, the header) make no ArrayBuffer of their own: Buffer.alloc keeps 64 bytes or less
  // inside the array, and a view of that first moves it out (three native allocations).
  const out = Buffer.allocUnsafe(HEADER_LEN + 1 + recordId.length);
  out.set(SEALED_MAGIC, 0);
  out[4] = format;
  out[5] = h.kind;
  out[6] = h.suite;
  writeU32(out, 7, Math.floor(h.epoch / TWO32));
  writeU32(out, 11, h.epoch >>> 0);
  writeU32(out, 15, Math.floor(h.version / TWO32));
  writeU32(out, 19, h.version >>> 0);
  out.set(iv, 23);
  out[HEADER_LEN] = recordId.length;
  out.set(recordId, HEADER_LEN + 1);
  return out;
}

/** The AAD of a stored blob: its header || len(record id) || record id (a Buffer, as headerAndAad). */
function aadOf(blob: Uint8Array, recordId: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LEN + 1 + recordId.length); // every byte written, as in headerAndAad
  out.set(blob.subarray(0, HEADER_LEN), 0);
  out[HEADER_LEN] = recordId.length;
  out.set(recordId, HEADER_LEN + 1);
  return out;
}

const RECORD_FIXED_LEN = 4 + 16 + 2 + 2 + 2 + 8 + 1 + 8;
/** What format 2 added after registeredAt: pacing (1) and lastGuessAt (8). */
const PACING_LEN = 9;
/** A format-3 record plaintext: the longest encoding (ksf 32, OPAQUE record 192, key 32), zero-padded. */
export const RECORD_PADDED_LEN = RECORD_FIXED_LEN + 32 + 192 + 32;
const okUint = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const okBytes = (v: unknown, min: number, max: number): v is Uint8Array => v instanceof Uint8Array && v.length >= min && v.length <= max;

/**
 * encodeFields(RecordSchema, rec) written directly into one buffer (one record per charged
 * guess): of the exact size, or `padTo` bytes with zeros after the encoding; any value the schema
 * would refuse goes through encodeFields, which throws the codec's typed fault.
 */
export function encodeRecord(rec: VaultRecord, padTo = 0, into?: Uint8Array): Uint8Array {
  const { registrationId: rid, ksf, opaqueRecord: or, backupKey: bk } = rec;
  if (
    !okUint(rec.status, 0xff) ||
    !okUint(rec.suite, 0xff) ||
    !okUint(rec.attemptLimit, 0xff) ||
    !okUint(rec.attemptsUsed, 0xff) ||
    !okBytes(rid, 16, 16) ||
    !okBytes(ksf, 0, 32) ||
    !okBytes(or, 0, 192) ||
    !okBytes(bk, 0, 32) ||
    !okUint(rec.registeredAt, Number.MAX_SAFE_INTEGER) ||
    !okUint(rec.pacing, 0xff) ||
    !okUint(rec.lastGuessAt, Number.MAX_SAFE_INTEGER)
  ) {
    return encodeFields(RecordSchema, rec);
  }
  const n = Math.max(padTo, RECORD_FIXED_LEN + ksf.length + or.length + bk.length);
  const out = into !== undefined && into.length === n ? into : new Uint8Array(n);
  out[0] = rec.status;
  out[1] = rec.suite;
  out[2] = rec.attemptLimit;
  out[3] = rec.attemptsUsed;
  out.set(rid, 4);
  let o = 20;
  for (const b of [ksf, or, bk]) {
    out[o] = b.length >>> 8;
    out[o + 1] = b.length & 0xff;
    out.set(b, o + 2);
    o += 2 + b.length;
  }
  writeU32(out, o, Math.floor(rec.registeredAt / TWO32));
  writeU32(out, o + 4, rec.registeredAt >>> 0);
  out[o + 8] = rec.pacing;
  writeU32(out, o + 9, Math.floor(rec.lastGuessAt / TWO32));
  writeU32(out, o + 13, rec.lastGuessAt >>> 0);
  return out;
}

/**
 * decodeFields(RecordSchema, pt) for the record plaintext, or null where decodeFields would throw.
 * The fields are copies (the caller wipes `pt`): the registration id on its own (login sessions
 * keep it), the other three sharing one array, from `alloc`. `format` 1: the plaintext ends at
 * registeredAt (no pacing).
 */
export function decodeRecord(pt: Uint8Array, format: number = SEALED_FORMAT_V2, alloc: Alloc = newBytes): VaultRecord | null {
  const tail = format === SEALED_FORMAT_V1 ? 0 : PACING_LEN;
  if (pt.length < RECORD_FIXED_LEN - PACING_LEN + tail) return null;
  const kl = (pt[20]! << 8) | pt[21]!;
  if (kl > 32 || 24 + kl > pt.length) return null;
  const ol = (pt[22 + kl]! << 8) | pt[23 + kl]!;
  if (ol > 192 || 26 + kl + ol > pt.length) return null;
  const bl = (pt[24 + kl + ol]! << 8) | pt[25 + kl + ol]!;
  const o = 26 + kl + ol + bl;
  if (bl > 32 || o + 8 + tail !== pt.length) return null; // truncated or trailing bytes
  if (pt[o]! !== 0 || pt[o + 1]! > 0x1f) return null; // above 2^53-1
  if (tail && (pt[o + 9]! !== 0 || pt[o + 10]! > 0x1f)) return null;
  const body = alloc(kl + ol + bl);
  // Copies of the three fields (set from views: one native copy each, where a byte loop cost 1.5 us per record).
  body.set(pt.subarray(22, 22 + kl), 0);
  body.set(pt.subarray(24 + kl, 24 + kl + ol), kl);
  body.set(pt.subarray(26 + kl + ol, 26 + kl + ol + bl), kl + ol);
  return {
    status: pt[0]!,
    suite: pt[1]!,
    attemptLimit: pt[2]!,
    attemptsUsed: pt[3]!,
    registrationId: pt.slice(4, 20),
    ksf: body.subarray(0, kl),
    opaqueRecord: body.subarray(kl, kl + ol),
    backupKey: body.subarray(kl + ol),
    registeredAt: readU64(pt, o),
    pacing: tail ? pt[o + 8]! : 0,
    lastGuessAt: tail ? readU64(pt, o + 9) : 0,
  };
}

/**
 * encodeRecord(rec) zero-padded to RECORD_PADDED_LEN (format 3). `into`: an all-zero array of
 * RECORD_PADDED_LEN bytes to write it in (seal's scratch), else a new one.
 */
export function encodePaddedRecord(rec: VaultRecord, into?: Uint8Array): Uint8Array {
  const enc = encodeRecord(rec, RECORD_PADDED_LEN, into); // written in place: no unpadded copy to wipe
  if (enc.length === RECORD_PADDED_LEN) return enc;
  // Only through encodeFields (which refuses what does not fit): padded as before.
  const out = new Uint8Array(RECORD_PADDED_LEN);
  out.set(enc, 0);
  enc.fill(0);
  return out;
}

/**
 * The encoded record inside a format-3 plaintext (a view of `pt`), or null when the plaintext is
 * not RECORD_PADDED_LEN long, its length prefixes run past it, or the padding is not all zeros.
 */
export function unpadRecord(pt: Uint8Array): Uint8Array | null {
  if (pt.length !== RECORD_PADDED_LEN) return null;
  const kl = (pt[20]! << 8) | pt[21]!;
  if (kl > 32) return null;
  const ol = (pt[22 + kl]! << 8) | pt[23 + kl]!;
  if (ol > 192) return null;
  const bl = (pt[24 + kl + ol]! << 8) | pt[25 + kl + ol]!;
  if (bl > 32) return null;
  const end = 26 + kl + ol + bl + 8 + PACING_LEN;
  let pad = 0;
  for (let i = end; i < pt.length; i++) pad |= pt[i]!;
  return pad === 0 ? pt.subarray(0, end) : null;
}

/** seal's plaintext scratch (RECORD_PADDED_LEN), all zeros between calls. */
const SEAL_SCRATCH = new Uint8Array(RECORD_PADDED_LEN);
/** unseal's plaintext scratch: a format-3 ciphertext's length (the plaintext and room for the tag), all zeros between calls. */
const UNSEAL_SCRATCH = new Uint8Array(RECORD_PADDED_LEN + 16);

/**
 * Seals `rec` (null: a tombstone) for `recordId` under `key`. The 96-bit IV is a nonce, not a
 * key: it must never repeat under one key and need not be secret (RFC 5116 §3.2). It is drawn at
 * random (NIST SP 800-38D §8.2.2, the RBG-based construction), which keeps the chance of a repeat
 * negligible far below 2^32 seals under one key (§8.3). `random` is where it is drawn: the
 * platform's random source (the vault passes it; cheaper than a round trip to the token) or, when
 * omitted, the token's. Both profiles (gcm-ecdh, ctr-hmac) take the nonce as an input to the
 * token's encryption, so either source meets them. `alloc`: where the blob is put.
 */
export function seal(
  token: Token,
  key: SealKey,
  recordId: Uint8Array,
  h: Omit<SealedHeader, 'iv'>,
  rec: VaultRecord | null,
  random?: (n: number) => Uint8Array,
  alloc: Alloc = newBytes,
): Uint8Array {
  const iv = random ? random(12) : token.random(12);
  if (!(iv instanceof Uint8Array) || iv.length !== 12) throw new EnclaveFault(PlatformFault.RandomError, 'random source returned the wrong length');
  const gcm = typeof key === 'number';
  const aad = headerAndAad(h, iv, recordId, gcm ? SEALED_FORMAT : SEALED_FORMAT_CTR_HMAC);
  // The plaintext in this thread's scratch (zero again after every seal: no fresh array per charged guess).
  const pt = rec ? encodePaddedRecord(rec, SEAL_SCRATCH) : new Uint8Array(0);
  const nonce = aad.subarray(23, HEADER_LEN);
  if (gcm) {
    // AES-GCM: ciphertext || tag written by the token straight after the header (Token.encryptGcm `out`).
    const out = alloc(HEADER_LEN + pt.length + 16);
    let ct: Uint8Array;
    try {
      ct = token.encryptGcm(key, nonce, aad, pt, out.subarray(HEADER_LEN));
    } finally {
      pt.fill(0);
    }
    if (ct.length !== pt.length + 16) throw new TokenError('CKR_GENERAL_ERROR'); // not AES-GCM's length
    if (ct.buffer !== out.buffer || ct.byteOffset !== out.byteOffset + HEADER_LEN) out.set(ct, HEADER_LEN);
    out.set(aad.subarray(0, HEADER_LEN), 0);
    return out;
  }
  let ct: Uint8Array;
  try {
    ct = ctrHmacEncrypt(token, key, nonce, aad, pt);
  } finally {
    pt.fill(0);
  }
  const out = alloc(HEADER_LEN + ct.length);
  out.set(aad.subarray(0, HEADER_LEN), 0);
  out.set(ct, HEADER_LEN);
  return out;
}

/** Opens a sealed blob for `recordId`: the record (its secret fields from `alloc`), or null for a tombstone. */
export function unseal(token: Token, key: SealKey, recordId: Uint8Array, blob: Uint8Array, alloc: Alloc = newBytes): { header: SealedHeader; record: VaultRecord | null } {
  checkHeader(blob);
  // A blob opens only under its own profile's key (format 4: ctr-hmac; 1-3: AES-GCM).
  const gcm = typeof key === 'number';
  if (gcm === (blob[4] === SEALED_FORMAT_CTR_HMAC)) throw invalid();
  const aad = aadOf(blob, recordId);
  const h = headerWithIv(blob, aad.subarray(23, HEADER_LEN)); // the IV as the AAD holds it
  let pt: Uint8Array;
  if (gcm) {
    try {
      // Into this thread's scratch (wiped below, as every plaintext is): no fresh array per login.
      pt = token.decryptGcm(key, h.iv, aad, blob.subarray(HEADER_LEN), UNSEAL_SCRATCH);
    } catch (e) {
      // A token that fails (CKR_DEVICE_ERROR, a lost session, ...) says nothing about the blob: that
      // is a token fault, not a record that does not open (which must not be claimed on no evidence).
      if (e instanceof TokenError && !BLOB_DOES_NOT_OPEN.has(e.ckr)) throw e;
      throw invalid();
    }
  } else {
    // Here the tag is compared in the firmware: every token error is the token's.
    const opened = ctrHmacDecrypt(token, key, h.iv, aad, blob.subarray(HEADER_LEN));
    if (!opened) throw invalid();
    pt = opened;
  }
  try {
    if (h.kind === KIND_TOMBSTONE) {
      if (pt.length !== 0) throw invalid();
      return { header: h, record: null };
    }
    const format = blob[4]!;
    const padded = format === SEALED_FORMAT || format === SEALED_FORMAT_CTR_HMAC;
    const body = padded ? unpadRecord(pt) : pt;
    const rec = body && decodeRecord(body, padded ? SEALED_FORMAT_V2 : format, alloc);
    if (!rec) throw invalid();
    return { header: h, record: rec };
  } finally {
    pt.fill(0);
    UNSEAL_SCRATCH.fill(0); // the token may have written past the plaintext (the tag's room)
  }
}

export function zeroizeRecord(r: VaultRecord): void {
  r.opaqueRecord.fill(0);
  r.backupKey.fill(0);
}
