/**
 * The vault's direct record codec (enclave/vault/record.ts encodeRecord / decodeRecord) against
 * the schema codec it stands in for (encodeFields / decodeFields of RecordSchema): the same bytes
 * for every valid record, the same typed fault for an invalid one, null exactly where decodeFields
 * throws, and copies that do not alias the (wiped) plaintext. Also: the codec's views option and
 * exact-size encoding, and the hex ids (toHex) against a per-byte reference. And sealing (seal / unseal on a
 * token): a sealed record opens only for the record id it was sealed for.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bytes, decodeFields, decodeMessage, encodeFields, encodeMessage } from '../../../enclave/api/codec.ts';
import { HostRequests } from '../../../enclave/api/messages.ts';
import { toHex } from '../../../enclave/opaque/bytes.ts';
import { EnclaveFault, Integrity, PlatformFault } from '../../../enclave/api/codes.ts';
import { HEADER_LEN, KIND_RECORD, KIND_TOMBSTONE, RECORD_PADDED_LEN, RecordSchema, SEALED_MAGIC, STATUS_LOCKED, decodeRecord, encodePaddedRecord, encodeRecord, parseHeader, seal, unpadRecord, unseal, zeroizeRecord } from '../../../enclave/vault/record.ts';
import type { Token, KeyHandle } from '../../../enclave/token.ts';
import { testPlatform } from '../../helpers/platform.ts';
import type { VaultRecord } from '../../../enclave/vault/record.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const int = (n: number) => Math.floor(Math.random() * n);

function randomRecord(): VaultRecord {
  return {
    status: int(256),
    suite: int(256),
    attemptLimit: int(256),
    attemptsUsed: int(256),
    registrationId: rnd(16),
    ksf: rnd(int(33)),
    opaqueRecord: rnd([0, 1, 96, 128, 160, 192][int(6)]!),
    backupKey: rnd([0, 32][int(2)]!),
    registeredAt: [0, 1, Date.now(), Number.MAX_SAFE_INTEGER, 2 ** 32, 2 ** 32 - 1][int(6)]!,
    pacing: int(256),
    lastGuessAt: [0, 1, Date.now(), Number.MAX_SAFE_INTEGER, 2 ** 32, 2 ** 32 - 1][int(6)]!,
  };
}

/** An emulator token, an AES key of `label`, and a record, header and IV to seal for 'alice'. */
function sealFixture(label: string) {
  const { token } = testPlatform({ tokenKind: 'emulator' });
  const rec: VaultRecord = { ...randomRecord(), status: 1, suite: 1, backupKey: rnd(32), opaqueRecord: rnd(192), ksf: rnd(20) };
  return { token, key: token.generateAesKey(label), id: new TextEncoder().encode('alice'), rec, header: { kind: KIND_RECORD, suite: 1, epoch: 2, version: 5 }, iv: rnd(12) };
}

function codeOf(fn: () => unknown): number | string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return (e as { code?: number }).code ?? String(e);
  }
}

describe('vault record codec', () => {
  it('encodeRecord writes the bytes of encodeFields(RecordSchema), decodeRecord reads them back', () => {
    for (let i = 0; i < 500; i++) {
      const r = randomRecord();
      const a = encodeRecord(r);
      expect(a).toEqual(encodeFields(RecordSchema, r));
      expect(decodeRecord(a)).toEqual(decodeFields(RecordSchema, a));
      expect(decodeRecord(a)).toEqual(r);
    }
  });

  it('encodePaddedRecord writes encodeFields(RecordSchema) followed by zeros up to RECORD_PADDED_LEN', () => {
    for (let i = 0; i < 500; i++) {
      const r = randomRecord();
      const want = new Uint8Array(RECORD_PADDED_LEN);
      want.set(encodeFields(RecordSchema, r), 0);
      expect(encodePaddedRecord(r)).toEqual(want);
    }
  });

  it('an invalid record gets the same typed fault as encodeFields', () => {
    const bad: Partial<VaultRecord>[] = [
      { status: 256 },
      { attemptsUsed: -1 },
      { suite: 1.5 },
      { registrationId: rnd(15) },
      { ksf: rnd(33) },
      { opaqueRecord: rnd(193) },
      { backupKey: rnd(33) },
      { registeredAt: 2 ** 53 , pacing: 0, lastGuessAt: 0},
      { backupKey: 'x' as never },
    ];
    for (const b of bad) {
      const r = { ...randomRecord(), ...b };
      const want = codeOf(() => encodeFields(RecordSchema, r));
      expect(want).not.toBe('ok');
      expect(codeOf(() => encodeRecord(r))).toBe(want);
    }
  });

  it('decodeRecord is null exactly where decodeFields throws (truncations, extensions, mutations)', () => {
    for (let i = 0; i < 300; i++) {
      const good = encodeRecord(randomRecord());
      const variants: Uint8Array[] = [good.subarray(0, int(good.length)), new Uint8Array([...good, int(256)])];
      for (let j = 0; j < 6; j++) {
        const m = Uint8Array.from(good);
        m[int(m.length)] = int(256);
        variants.push(m);
      }
      for (const v of variants) {
        let want: unknown = null;
        try {
          want = decodeFields(RecordSchema, v);
        } catch {
          want = null;
        }
        expect(decodeRecord(v)).toEqual(want);
      }
    }
  });

  it('a format-1 plaintext (before pacing: it ends at registeredAt) reads as a record with no pacing, and only as format 1', () => {
    for (let i = 0; i < 50; i++) {
      const r = randomRecord();
      if (r.status === 0) continue;
      const v2 = encodeRecord(r);
      const v1 = v2.subarray(0, v2.length - 9);
      expect(decodeRecord(v1, 1)).toEqual({ ...r, pacing: 0, lastGuessAt: 0 });
      expect(decodeRecord(v1, 2)).toBeNull();
      expect(decodeRecord(v2, 1)).toBeNull();
    }
  });

  it('decoded fields are copies: wiping the plaintext leaves them; zeroizing a record leaves its ksf', () => {
    const r = { ...randomRecord(), ksf: rnd(20), opaqueRecord: rnd(192), backupKey: rnd(32) };
    const pt = encodeRecord(r);
    const d = decodeRecord(pt)!;
    pt.fill(0);
    expect(d).toEqual(r);
    zeroizeRecord(d);
    expect(d.ksf).toEqual(r.ksf);
    expect(d.registrationId).toEqual(r.registrationId);
    expect(d.opaqueRecord.every((x) => x === 0) && d.backupKey.every((x) => x === 0)).toBe(true);
  });
});

describe('codec: views and exact sizes', () => {
  const batch = {
    type: 'Batch' as const,
    epoch: 7,
    ops: [
      { opId: 1, recordId: rnd(9), stored: rnd(120), request: rnd(150) },
      { opId: 2, recordId: rnd(3), stored: new Uint8Array(0), request: rnd(60) },
    ],
  };

  it('views only the named fields; everything else is a copy', () => {
    const enc = encodeMessage(HostRequests, batch);
    const views = new Set(['ops.stored', 'ops.request']);
    const d = decodeMessage(HostRequests, enc, { views });
    expect(d).toEqual(decodeMessage(HostRequests, enc));
    if (d.type !== 'Batch') throw new Error('type');
    for (const op of d.ops) {
      expect(op.request.buffer).toBe(enc.buffer);
      expect(op.stored.buffer).toBe(enc.buffer);
      expect(op.recordId.buffer).not.toBe(enc.buffer);
    }
    const copied = decodeMessage(HostRequests, enc);
    if (copied.type !== 'Batch') throw new Error('type');
    for (const op of copied.ops) expect(op.request.buffer).not.toBe(enc.buffer);
  });

  it('encodes into one buffer of the exact size, and still refuses what it refused', () => {
    const enc = encodeMessage(HostRequests, batch);
    expect(enc.byteLength).toBe(enc.buffer.byteLength);
    const schema = [['b', bytes(0, 4)]] as const;
    expect(codeOf(() => encodeFields(schema, { b: rnd(5) }))).toBe(codeOf(() => encodeFields(schema, { b: rnd(6) })));
    expect(encodeFields(schema, { b: Uint8Array.of(1, 2) })).toEqual(Uint8Array.of(0, 2, 1, 2));
  });

  it('toHex writes lower-case hex of exactly the view it is given', () => {
    const slow = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    for (const n of [0, 1, 16, 33]) {
      const b = rnd(n);
      expect(toHex(b)).toBe(slow(b));
      const big = rnd(n + 10);
      expect(toHex(big.subarray(3, 3 + n))).toBe(slow(big.subarray(3, 3 + n)));
    }
  });
});

describe('sealed records', () => {
  it('open only for the record id they were sealed for: another id, a longer or a shorter one is SealedRecordInvalid', () => {
    const { token } = testPlatform({ tokenKind: 'emulator' });
    const key = token.generateAesKey('record-seal-test');
    const te = new TextEncoder();
    const a = te.encode('alice');
    const rec: VaultRecord = { ...randomRecord(), status: 1, suite: 1, backupKey: rnd(32), opaqueRecord: rnd(192), ksf: rnd(20) };
    const header = { kind: KIND_RECORD, suite: 1, epoch: 7, version: 3 };
    const blob = seal(token, key, a, header, rec);
    expect(unseal(token, key, a, blob)).toMatchObject({ header, record: rec });
    for (const other of [te.encode('bob'), te.encode('alicf'), te.encode('alice\0'), te.encode('alic'), new Uint8Array(0)]) {
      let err: unknown;
      try {
        unseal(token, key, other, blob);
      } catch (e) {
        err = e;
      }
      expect(err, `unsealed under ${JSON.stringify(new TextDecoder().decode(other))}`).toBeInstanceOf(EnclaveFault);
      expect((err as EnclaveFault).code).toBe(Integrity.SealedRecordInvalid);
    }
    // A tombstone is bound to its id the same way.
    const tomb = seal(token, key, a, { ...header, kind: KIND_TOMBSTONE }, null);
    expect(unseal(token, key, a, tomb).record).toBeNull();
    expect(() => unseal(token, key, te.encode('bob'), tomb)).toThrow(expect.objectContaining({ code: Integrity.SealedRecordInvalid }));
  });

  it('draws the IV from the random source it is given (the platform\'s) instead of the token, and refuses one of the wrong length', () => {
    const { token, key, id, rec, header, iv } = sealFixture('record-iv-test');
    let tokenDraws = 0;
    const counting = new Proxy(token, { get: (t, k) => (k === 'random' ? (n: number) => (tokenDraws++, t.random(n)) : Reflect.get(t, k)) });
    const blob = seal(counting, key, id, header, rec, (n) => (expect(n).toBe(12), Uint8Array.from(iv)));
    expect(tokenDraws).toBe(0);
    expect(parseHeader(blob).iv).toEqual(iv);
    expect(unseal(token, key, id, blob)).toMatchObject({ header, record: rec });
    // Without one, the token draws it.
    const fromToken = seal(counting, key, id, header, rec);
    expect(tokenDraws).toBe(1);
    expect(unseal(token, key, id, fromToken).record).toEqual(rec);
    for (const bad of [rnd(11), rnd(13), new Uint8Array(0)]) {
      expect(() => seal(token, key, id, header, rec, () => bad)).toThrow(expect.objectContaining({ code: PlatformFault.RandomError }));
    }
  });

  it('the token writes into the blob and the plaintext into scratch it is lent; seal and unseal leave no plaintext in either, and a token that ignores `out` gives the same blob', () => {
    const { token, key, id, rec, header, iv } = sealFixture('record-into-test');
    const lent: { enc: Uint8Array[]; dec: Uint8Array[]; pts: Uint8Array[] } = { enc: [], dec: [], pts: [] };
    const spying = new Proxy(token, {
      get: (t, k) =>
        k === 'encryptGcm'
          ? (kh: KeyHandle, n: Uint8Array, aad: Uint8Array, pt: Uint8Array, out?: Uint8Array) => (lent.pts.push(pt), out && lent.enc.push(out), t.encryptGcm(kh, n, aad, pt, out))
          : k === 'decryptGcm'
            ? (kh: KeyHandle, n: Uint8Array, aad: Uint8Array, ct: Uint8Array, out?: Uint8Array) => (out && lent.dec.push(out), t.decryptGcm(kh, n, aad, ct, out))
            : Reflect.get(t, k),
    });
    const blob = seal(spying, key, id, header, rec, () => Uint8Array.from(iv));
    expect(lent.enc).toHaveLength(1);
    expect(lent.enc[0]!.buffer).toBe(blob.buffer); // written in place, after the header
    expect(lent.enc[0]!.byteOffset).toBe(blob.byteOffset + HEADER_LEN);
    expect(lent.pts[0]!.every((b) => b === 0)).toBe(true); // the plaintext scratch wiped
    // A token that writes elsewhere (ignores `out`): the same bytes.
    const ignoring = new Proxy(token, { get: (t, k) => (k === 'encryptGcm' ? (kh: KeyHandle, n: Uint8Array, aad: Uint8Array, pt: Uint8Array) => t.encryptGcm(kh, n, aad, pt) : Reflect.get(t, k)) });
    expect(seal(ignoring, key, id, header, rec, () => Uint8Array.from(iv))).toEqual(blob);
    expect(unseal(spying, key, id, blob)).toMatchObject({ header, record: rec });
    expect(lent.dec).toHaveLength(1);
    expect(lent.dec[0]!.every((b) => b === 0)).toBe(true); // the record's plaintext is not left in the scratch
    // Also when the blob does not open, and for a tombstone.
    const bad = Uint8Array.from(blob);
    bad[bad.length - 1]! ^= 1;
    expect(() => unseal(spying, key, id, bad)).toThrow(expect.objectContaining({ code: Integrity.SealedRecordInvalid }));
    expect(unseal(spying, key, id, seal(token, key, id, { ...header, kind: KIND_TOMBSTONE }, null)).record).toBeNull();
    for (const s of lent.dec) expect(s.every((b) => b === 0)).toBe(true);
  });

  it('every record blob has one length, whatever its suite, KSF or state (a locked record holds no key and is no shorter)', () => {
    const { token } = testPlatform({ tokenKind: 'emulator' });
    const key = token.generateAesKey('record-pad-test');
    const id = new TextEncoder().encode('alice');
    const lengths = new Set<number>();
    for (const [ksf, or, bk] of [[0, 0, 0], [20, 129, 32], [32, 192, 32], [1, 192, 0], [32, 0, 0]] as const) {
      for (const status of [1, STATUS_LOCKED]) {
        const rec: VaultRecord = { ...randomRecord(), status, ksf: rnd(ksf), opaqueRecord: rnd(or), backupKey: rnd(bk) };
        const blob = seal(token, key, id, { kind: KIND_RECORD, suite: 1 + (or & 1), epoch: 1, version: 1 }, rec);
        expect(unseal(token, key, id, blob).record).toEqual(rec);
        lengths.add(blob.length);
      }
    }
    expect([...lengths]).toEqual([HEADER_LEN + RECORD_PADDED_LEN + 16]);
  });

  it('format 3 pads with zeros only: a plaintext of another length or with a non-zero pad byte does not open; format 2 blobs still do', () => {
    const { token } = testPlatform({ tokenKind: 'emulator' });
    const key = token.generateAesKey('record-format-test');
    const id = new TextEncoder().encode('alice');
    const rec: VaultRecord = { ...randomRecord(), status: 1, ksf: rnd(10), opaqueRecord: rnd(129), backupKey: rnd(32) };
    const padded = encodePaddedRecord(rec);
    expect(unpadRecord(padded)).toEqual(encodeRecord(rec));
    expect(unseal(token, key, id, sealRaw(token, key, id, 3, padded)).record).toEqual(rec);
    const dirty = Uint8Array.from(padded);
    dirty[dirty.length - 1] = 1;
    expect(unpadRecord(dirty)).toBeNull();
    const invalid = expect.objectContaining({ code: Integrity.SealedRecordInvalid });
    expect(() => unseal(token, key, id, sealRaw(token, key, id, 3, dirty))).toThrow(invalid);
    expect(() => unseal(token, key, id, sealRaw(token, key, id, 3, padded.subarray(0, padded.length - 1)))).toThrow(invalid);
    expect(() => unseal(token, key, id, sealRaw(token, key, id, 3, encodeRecord(rec)))).toThrow(invalid); // format 3 must be padded
    // Format 2 (written before padding): the exact encoding opens; a padded one does not.
    expect(unseal(token, key, id, sealRaw(token, key, id, 2, encodeRecord(rec))).record).toEqual(rec);
    expect(() => unseal(token, key, id, sealRaw(token, key, id, 2, padded))).toThrow(invalid);
  });
});

/** A record blob of any format around `pt`, laid out as record.ts describes (what older releases wrote). */
function sealRaw(token: Token, key: KeyHandle, id: Uint8Array, format: number, pt: Uint8Array): Uint8Array {
  const header = new Uint8Array(HEADER_LEN);
  header.set(SEALED_MAGIC, 0);
  header[4] = format;
  header[5] = KIND_RECORD;
  header[6] = 1;
  header[14] = 1; // epoch 1
  header[22] = 1; // version 1
  const iv = rnd(12);
  header.set(iv, 23);
  const aad = Buffer.concat([header, Uint8Array.of(id.length), id]);
  const ct = token.encryptGcm(key, Buffer.from(iv), aad, pt);
  return Buffer.concat([header, ct]);
}
