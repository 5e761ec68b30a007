/**
 * The audit chain: every event (registered, guess used, recovered, locked, deleted, password
 * changed, zeroized) carries a sequence number, the enclave clock, the kind, a keyed hash of the
 * record id (HMAC-SHA256 under the audit key, so a small id space can not be enumerated from the
 * log), the attempts remaining, and a MAC chaining it to the previous event:
 *   mac_n = HMAC-SHA256(audit key, mac_{n-1} || encode(event_n without mac))
 * The head (sequence, MAC) of the last committed event is in NVRAM, so a removed, reordered or
 * altered event, or a cut tail, fails `verifyAuditChain`. No event holds a secret.
 */
import { encodeFields, fixed, u53, u8 } from '../api/codec.ts';
import type { AuditEvent } from '../api/messages.ts';
import type { HashPrimitives } from '../opaque/hash.ts';
import { ctEqual, putU64 } from '../opaque/bytes.ts';

/** The event body as the MAC covers it (without the mac). */
export const AUDIT_BODY_SCHEMA = [
  ['seq', u53],
  ['time', u53],
  ['kind', u8],
  ['recordHash', fixed(32)],
  ['attemptsRemaining', u8],
] as const;

const te = new TextEncoder();
const RECORD_LABEL = te.encode('bkv/audit/record');
const BODY_LEN = 8 + 8 + 1 + 32 + 1;

/**
 * encodeFields(AUDIT_BODY_SCHEMA, body) written directly (the hot path: one event per charged guess);
 * the schema's checks are kept: integers in range, a 32-byte record hash.
 */
function ok(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

export function encodeAuditBody(seq: number, time: number, kind: number, recordHash: Uint8Array, attemptsRemaining: number): Uint8Array {
  if (!ok(seq, Number.MAX_SAFE_INTEGER) || !ok(time, Number.MAX_SAFE_INTEGER) || !ok(kind, 0xff) || !ok(attemptsRemaining, 0xff) || !(recordHash instanceof Uint8Array) || recordHash.length !== 32) {
    return encodeFields(AUDIT_BODY_SCHEMA, { seq, time, kind, recordHash, attemptsRemaining }); // throws the codec's typed fault
  }
  const out = new Uint8Array(BODY_LEN);
  putU64(out, 0, seq);
  putU64(out, 8, time);
  out[16] = kind;
  out.set(recordHash, 17);
  out[49] = attemptsRemaining;
  return out;
}

export class AuditLog {
  constructor(
    private readonly key: Uint8Array,
    private readonly h: HashPrimitives,
  ) {}

  recordHash(recordId: Uint8Array): Uint8Array {
    return this.h.hmac(this.key, RECORD_LABEL, recordId);
  }

  /** Appends after (seq, head); returns the event (its mac is the new head). */
  next(prevSeq: number, prevHead: Uint8Array, time: number, kind: number, recordHash: Uint8Array, attemptsRemaining: number): AuditEvent {
    const seq = prevSeq + 1;
    const mac = this.h.hmac(this.key, prevHead, encodeAuditBody(seq, time, kind, recordHash, attemptsRemaining));
    return { seq, time, kind, recordHash, attemptsRemaining, mac };
  }

  /**
   * Checks a run of events that starts after (fromSeq, fromHead) and must end at (toSeq, toHead).
   * Returns the index of the first bad event, or -1 when the whole run verifies.
   */
  verify(events: AuditEvent[], fromSeq: number, fromHead: Uint8Array, toSeq: number, toHead: Uint8Array): number {
    let seq = fromSeq;
    let head = fromHead;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const { mac, ...body } = e;
      if (body.seq !== seq + 1) return i;
      const expect = this.h.hmac(this.key, head, encodeAuditBody(body.seq, body.time, body.kind, body.recordHash, body.attemptsRemaining));
      if (!ctEqual(expect, mac)) return i;
      seq = body.seq;
      head = mac;
    }
    if (seq !== toSeq || !ctEqual(head, toHead)) return events.length;
    return -1;
  }
}
