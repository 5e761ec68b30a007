/**
 * Golden files for every wire and sealed format: each message type of the four API families,
 * the sealed record (and tombstone) and the NVRAM state, encoded from deterministic samples and
 * compared byte for byte with test/golden/*.hex. A format change is a visible diff: regenerate
 * with `UPDATE_GOLDEN=1 npx vitest run test/enclave/api/golden.test.ts` and review it. A missing file fails
 * (it is never created silently in CI).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses } from '../../../enclave/api/messages.ts';
import { KIND_RECORD, KIND_TOMBSTONE, STATUS_ACTIVE, seal, unseal } from '../../../enclave/vault/record.ts';
import { encodeNvramState, decodeNvramState, NVRAM_REGION_BYTES, NVRAM_STATE_SIZE, MAX_PARTITIONS, NVRAM_TOTAL_BYTES } from '../../../enclave/vault/nvram-state.ts';
import type { Token } from '../../../enclave/token.ts';
import { sampleFields } from '../../helpers/samples.ts';

const dir = resolve(import.meta.dirname, '../../golden');
const update = process.env.UPDATE_GOLDEN === '1';

function golden(name: string, bytes: Uint8Array): void {
  const file = join(dir, `${name}.hex`);
  const hex = Buffer.from(bytes).toString('hex');
  if (update) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, hex + '\n');
  }
  expect(existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1 and review`).toBe(true);
  expect(hex).toBe(readFileSync(file, 'utf8').trim());
}

/** A token with fixed keys and a counter IV source, so sealed bytes are reproducible. */
function fixedToken(): Token {
  const key = createHash('sha256').update('golden seal key').digest();
  const macKey = createHash('sha256').update('golden mac key').digest();
  let ctr = 0;
  return {
    findKey: () => 1,
    generateAesKey: () => 1,
    generateHmacKey: () => 2,
    encryptGcm(_k, iv, aad, pt) {
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(aad);
      return new Uint8Array(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
    },
    decryptGcm(_k, iv, aad, ct) {
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAAD(aad);
      d.setAuthTag(ct.subarray(ct.length - 16));
      return new Uint8Array(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]));
    },
    encryptEcb(_k, blocks) {
      const c = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
      return new Uint8Array(Buffer.concat([c.update(blocks), c.final()]));
    },
    hmac: (_k, _hash, data) => new Uint8Array(createHmac('sha256', macKey).update(data).digest()),
    random: (n) => Uint8Array.from({ length: n }, () => ++ctr & 0xff),
    destroyAllKeys: () => undefined,
  };
}

const families: [string, Family<Record<string, Schema>>][] = [
  ['host-request', HostRequests as unknown as Family<Record<string, Schema>>],
  ['host-response', HostResponses as unknown as Family<Record<string, Schema>>],
  ['client-request', ClientRequests as unknown as Family<Record<string, Schema>>],
  ['client-response', ClientResponses as unknown as Family<Record<string, Schema>>],
];

describe('golden encodings', () => {
  for (const [fname, fam] of families) {
    for (const type of Object.keys(fam.schemas)) {
      it(`${fname} ${type}`, () => {
        const msg = { type, ...sampleFields(fam.schemas[type]!) } as never;
        const bytes = encodeMessage(fam, msg);
        golden(`${fname}.${type}`, bytes);
        expect(decodeMessage(fam, bytes)).toEqual(msg);
      });
    }
  }

  it('sealed record and tombstone', () => {
    const token = fixedToken();
    const rid = new TextEncoder().encode('record-1');
    const rec = {
      status: STATUS_ACTIVE,
      suite: 1,
      attemptLimit: 10,
      attemptsUsed: 2,
      registrationId: new Uint8Array(16).fill(4),
      ksf: Uint8Array.of(0),
      opaqueRecord: new Uint8Array(192).fill(5),
      backupKey: new Uint8Array(32).fill(6),
      registeredAt: 1_700_000_000_000, pacing: 1, lastGuessAt: 1_700_000_060_000,
    };
    const blob = seal(token, 1, rid, { kind: KIND_RECORD, suite: 1, epoch: 7, version: 3 }, rec);
    golden('sealed.record', blob);
    expect(unseal(token, 1, rid, blob).record).toEqual(rec);
    const tomb = seal(token, 1, rid, { kind: KIND_TOMBSTONE, suite: 1, epoch: 8, version: 4 }, null);
    golden('sealed.tombstone', tomb);
    expect(unseal(token, 1, rid, tomb).record).toBeNull();
    // Stored bytes per record: the sealed blob of the larger suite.
    expect(blob.length).toBeLessThan(600);
    // The ctr-hmac token profile's format 4 (enclave/vault/seal-ctr-hmac.ts): the same length.
    const ctrKeys = { enc: 3, mac: 4 };
    const ctrBlob = seal(token, ctrKeys, rid, { kind: KIND_RECORD, suite: 1, epoch: 7, version: 3 }, rec);
    golden('sealed.record-ctr-hmac', ctrBlob);
    expect(ctrBlob.length).toBe(blob.length);
    expect(unseal(token, ctrKeys, rid, ctrBlob).record).toEqual(rec);
    const ctrTomb = seal(token, ctrKeys, rid, { kind: KIND_TOMBSTONE, suite: 1, epoch: 8, version: 4 }, null);
    golden('sealed.tombstone-ctr-hmac', ctrTomb);
    expect(unseal(token, ctrKeys, rid, ctrTomb).record).toBeNull();
  });

  it('NVRAM state, and the worst case fits the budget', () => {
    const slot = (n: number) => ({ epoch: 2 ** 53 - 1 - n, count: 0xffffffff, indexSum: new Uint8Array(32).fill(0xff), auditSeq: 2 ** 53 - 1, auditHead: new Uint8Array(32).fill(0xee) });
    const worst = { flags: 3, committed: slot(1), intent: slot(0), operatorKeyHash: new Uint8Array(32).fill(1), keyCheck: new Uint8Array(16).fill(2), authHash: new Uint8Array(16).fill(3) };
    const enc = encodeNvramState(worst);
    golden('nvram.state', enc);
    expect(enc.length).toBe(NVRAM_STATE_SIZE);
    expect(NVRAM_STATE_SIZE).toBeLessThanOrEqual(NVRAM_REGION_BYTES);
    expect(MAX_PARTITIONS * NVRAM_REGION_BYTES).toBeLessThanOrEqual(NVRAM_TOTAL_BYTES);
    expect(NVRAM_TOTAL_BYTES).toBe(4096);
    const padded = new Uint8Array(NVRAM_REGION_BYTES);
    padded.set(enc);
    expect(decodeNvramState(padded)).toEqual(worst);
    expect(decodeNvramState(encodeNvramState({ ...worst, intent: null }))).toEqual({ ...worst, intent: null });
  });

  it('NVRAM layout 2 (before the issuer set) reads as layout 3 with no issuer set', () => {
    // nvram.state.layout2.hex: the worst case above as layout 2 wrote it (no auth hash).
    const v2 = Uint8Array.from(Buffer.from(readFileSync(join(dir, 'nvram.state.layout2.hex'), 'utf8').trim(), 'hex'));
    expect(v2[4]).toBe(2);
    const padded = new Uint8Array(NVRAM_REGION_BYTES);
    padded.set(v2);
    const slot = (n: number) => ({ epoch: 2 ** 53 - 1 - n, count: 0xffffffff, indexSum: new Uint8Array(32).fill(0xff), auditSeq: 2 ** 53 - 1, auditHead: new Uint8Array(32).fill(0xee) });
    expect(decodeNvramState(padded)).toEqual({ flags: 3, committed: slot(1), intent: slot(0), operatorKeyHash: new Uint8Array(32).fill(1), keyCheck: new Uint8Array(16).fill(2), authHash: new Uint8Array(16) });
  });
});
