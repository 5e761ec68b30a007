/**
 * Fuzz target: the sealed record format (enclave/vault/record.ts), what untrusted storage hands
 * back to the enclave: `parseHeader` and `unseal` under the (planted) sealing key, and the record
 * body decoder behind the seal.
 * Input: one mode byte, then the bytes.
 *   mode bit 0 = 0: the bytes are a stored blob: parseHeader, then unseal for a fixed record id;
 *   mode bit 0 = 1: the bytes are a record plaintext: sealed properly (kind from bit 1: record or
 *                   tombstone), then unsealed, so the body decoder sees them.
 * Oracle: only EnclaveFault SealedRecordInvalid escapes; a blob opens only if it is exactly one
 * of the seeds (no tampered, truncated, extended or re-headed blob opens); an opened body
 * re-encodes to exactly its plaintext; a tombstone has no body; the planted key never appears.
 * Seeds: test/fuzz/seeds/sealed-record/ (a sealed record of each suite, a tombstone, a body).
 */
import { encodeFields } from '../../../enclave/api/codec.ts';
import { EnclaveFault, Integrity } from '../../../enclave/api/codes.ts';
import { KIND_RECORD, KIND_TOMBSTONE, RecordSchema, parseHeader, seal, unseal } from '../../../enclave/vault/record.ts';
import { LABEL_SEAL } from '../../../enclave/vault/keys.ts';
import { CanaryToken, drbg, PLANTED_KEYS } from '../lib/canary.ts';
import { loadCorpus } from '../lib/engine.ts';
import { equalBytes, hex, SecretScanner, typed, violation } from '../lib/oracle.ts';

export const name = 'sealed-record';
export const maxInputLength = 1 + 2048;

const te = new TextEncoder();
export const SEALED_RECORD_ID = te.encode('fuzz-sealed');

let token: CanaryToken | null = null;
let key = 0;
const valid = new Set<string>();
const scanner = new SecretScanner([{ name: 'the planted sealing key', bytes: PLANTED_KEYS[LABEL_SEAL]! }]);
let last: string | undefined;

/** The token the seeds were sealed with (planted key, deterministic IVs). */
export function sealingToken(): { token: CanaryToken; key: number } {
  const t = new CanaryToken(drbg('sealed-record', 0));
  return { token: t, key: t.generateAesKey(LABEL_SEAL) };
}

export async function setup(): Promise<void> {
  ({ token, key } = sealingToken());
  valid.clear();
  for (const s of loadCorpus(name)) {
    if ((s[0] ?? 0) & 1) continue;
    try {
      unseal(token, key, SEALED_RECORD_ID, s.subarray(1));
      valid.add(hex(s.subarray(1)));
    } catch {
      // not a valid blob
    }
  }
}

export function outcome(): string | undefined {
  return last;
}

const isInvalid = (e: Error) => e instanceof EnclaveFault && e.code === Integrity.SealedRecordInvalid;

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!token) await setup();
  const input = new Uint8Array(data);
  const mode = input[0] ?? 0;
  const bytes = input.subarray(1);
  if (mode & 1) {
    const kind = mode & 2 ? KIND_TOMBSTONE : KIND_RECORD;
    const blob = seal(token!, key, SEALED_RECORD_ID, { kind, suite: 1, epoch: 1, version: 1 }, null);
    // Re-seal the fuzzed plaintext under the header just made (same IV is fine: a test key).
    const header = blob.subarray(0, 35);
    const aad = Uint8Array.of(...header, SEALED_RECORD_ID.length, ...SEALED_RECORD_ID);
    const ct = token!.encryptGcm(key, header.subarray(23, 35), aad, bytes);
    const full = Uint8Array.of(...header, ...ct);
    scanner.scan('a sealed blob', full);
    const r = typed('unseal (fuzzed body)', () => unseal(token!, key, SEALED_RECORD_ID, full));
    if (!r.ok) {
      if (!isInvalid(r.error)) violation('wrong-error', `unseal failed with ${r.error.message}, not SealedRecordInvalid`);
      last = `body:refused:${kind}`;
      return;
    }
    if (kind === KIND_TOMBSTONE) {
      if (r.value.record !== null || bytes.length !== 0) violation('oracle', 'a tombstone opened with a body');
      last = 'body:tombstone';
      return;
    }
    if (!r.value.record) violation('oracle', 'a record blob opened as a tombstone');
    const re = typed('encodeFields(RecordSchema)', () => encodeFields(RecordSchema, r.value.record as never));
    if (!re.ok || !equalBytes(re.value, bytes)) violation('round-trip', 'an opened record body does not re-encode to its plaintext');
    last = 'body:ok';
    return;
  }
  const h = typed('parseHeader', () => parseHeader(bytes));
  if (!h.ok && !isInvalid(h.error)) violation('wrong-error', `parseHeader failed with ${h.error.message}`);
  const r = typed('unseal', () => unseal(token!, key, SEALED_RECORD_ID, bytes));
  if (!r.ok) {
    if (!isInvalid(r.error)) violation('wrong-error', `unseal failed with ${r.error.message}, not SealedRecordInvalid`);
    last = `blob:refused:${h.ok ? 'header-ok' : 'header-bad'}`;
    return;
  }
  if (!h.ok) violation('oracle', 'unseal opened a blob whose header does not parse');
  if (!valid.has(hex(bytes))) violation('seal-integrity', `a blob that is not one of the seeds opened (${bytes.length} bytes)`);
  last = `blob:opened:${r.value.header.kind}`;
}
