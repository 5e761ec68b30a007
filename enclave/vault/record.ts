/**
 * The vault record and its sealed form: what the untrusted storage holds.
 *
 * Sealed blob = header || AES-256-GCM(ciphertext || tag), under the token's sealing key.
 *   header (35 bytes): magic "BKVR" | format (1) | kind (1 = record, 2 = tombstone) | suite code |
 *                      epoch (8, big-endian) | record version (8) | IV (12)
 *   AAD = header || len(record id) (1) || record id
 * Binding the record id, version, epoch and suite in the AAD means a blob moved to another id,
 * or with any header byte changed, fails to open. A tombstone has an empty plaintext: it proves
 * a deletion at an epoch without holding anything.
 */
import { bytes, decodeFields, encodeFields, fixed, u53, u8 } from '../api/codec.ts';
import { EnclaveFault, Integrity, Platform as PlatformCodes } from '../api/codes.ts';
import type { KeyHandle, Token } from '../token.ts';
import { TokenError } from '../token.ts';

export const SEALED_MAGIC = Uint8Array.of(0x42, 0x4b, 0x56, 0x52); // "BKVR"
export const SEALED_FORMAT = 1;
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

/** Reads the header without decrypting (the header is authenticated when the blob is opened). */
export function parseHeader(blob: Uint8Array): SealedHeader {
  if (blob.length < HEADER_LEN + 16) throw invalid();
  for (let i = 0; i < 4; i++) if (blob[i] !== SEALED_MAGIC[i]) throw invalid();
  if (blob[4] !== SEALED_FORMAT) throw invalid();
  const kind = blob[5]!;
  if (kind !== KIND_RECORD && kind !== KIND_TOMBSTONE) throw invalid();
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.length);
  const epoch = dv.getUint32(7) * 2 ** 32 + dv.getUint32(11);
  const version = dv.getUint32(15) * 2 ** 32 + dv.getUint32(19);
  return { kind, suite: blob[6]!, epoch, version, iv: blob.slice(23, 35) };
}

function header(h: SealedHeader): Uint8Array {
  const out = new Uint8Array(HEADER_LEN);
  out.set(SEALED_MAGIC, 0);
  out[4] = SEALED_FORMAT;
  out[5] = h.kind;
  out[6] = h.suite;
  const dv = new DataView(out.buffer);
  dv.setUint32(7, Math.floor(h.epoch / 2 ** 32));
  dv.setUint32(11, h.epoch >>> 0);
  dv.setUint32(15, Math.floor(h.version / 2 ** 32));
  dv.setUint32(19, h.version >>> 0);
  out.set(h.iv, 23);
  return out;
}

function aad(hdr: Uint8Array, recordId: Uint8Array): Uint8Array {
  const out = new Uint8Array(hdr.length + 1 + recordId.length);
  out.set(hdr, 0);
  out[hdr.length] = recordId.length;
  out.set(recordId, hdr.length + 1);
  return out;
}

export function seal(
  token: Token,
  key: KeyHandle,
  recordId: Uint8Array,
  h: Omit<SealedHeader, 'iv'>,
  rec: VaultRecord | null,
): Uint8Array {
  const iv = token.random(12);
  if (!(iv instanceof Uint8Array) || iv.length !== 12) throw new EnclaveFault(PlatformCodes.RandomError, 'token random returned the wrong length');
  const hdr = header({ ...h, iv });
  const pt = rec ? encodeFields(RecordSchema, rec) : new Uint8Array(0);
  const ct = token.encryptGcm(key, iv, aad(hdr, recordId), pt);
  pt.fill(0);
  const out = new Uint8Array(hdr.length + ct.length);
  out.set(hdr, 0);
  out.set(ct, hdr.length);
  return out;
}

/** Opens a sealed blob for `recordId`: the record, or null for a tombstone. */
export function unseal(token: Token, key: KeyHandle, recordId: Uint8Array, blob: Uint8Array): { header: SealedHeader; record: VaultRecord | null } {
  const h = parseHeader(blob);
  let pt: Uint8Array;
  try {
    pt = token.decryptGcm(key, h.iv, aad(blob.subarray(0, HEADER_LEN), recordId), blob.subarray(HEADER_LEN));
  } catch (e) {
    // A token that fails (CKR_DEVICE_ERROR, a lost session, ...) says nothing about the blob: that
    // is a token fault, not a record that does not open (which must not be claimed on no evidence).
    if (e instanceof TokenError && !BLOB_DOES_NOT_OPEN.has(e.ckr)) throw e;
    throw invalid();
  }
  if (h.kind === KIND_TOMBSTONE) {
    if (pt.length !== 0) throw invalid();
    return { header: h, record: null };
  }
  try {
    const rec = decodeFields(RecordSchema, pt, 'record');
    return { header: h, record: rec };
  } catch {
    throw invalid();
  } finally {
    pt.fill(0);
  }
}

export function zeroizeRecord(r: VaultRecord): void {
  r.opaqueRecord.fill(0);
  r.backupKey.fill(0);
}
