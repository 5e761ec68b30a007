/**
 * The audit chain: every event (registered, guess used, recovered, wrong password, locked,
 * deleted, password changed, unknown id) carries a sequence number, the enclave clock, and a
 * sealed part: the kind, a keyed hash of the record id (HMAC-SHA256 under the audit key, so a
 * small id space can not be enumerated from the log) and the attempts remaining. A MAC chains
 * each event to the previous one (encrypt-then-MAC):
 *   sealed_n = AES-256-CTR(seal key, nonce_n, kind || recordHash || attemptsRemaining)
 *   mac_n    = HMAC-SHA256(audit key, mac_{n-1} || seq_n || time_n || nonce_n || sealed_n)
 * The head (sequence, MAC) of the last committed event is in NVRAM, so a removed, reordered or
 * altered event, or a cut tail, fails `verify`. The host stores the events but can not read what
 * they say: the events of a batch it holds before Commit do not tell it which ops succeeded. The
 * enclave opens a run that verifies up to a committed point for the operator (AuditVerify with
 * the operator secret), never a batch that is not committed. The nonce is random per event
 * (from the platform), so an event computed again after an Abort does not reuse a keystream.
 */
import { createCipheriv } from 'node:crypto';
import type { Cipher } from 'node:crypto';
import { encodeFields, fixed, u53 } from '../api/codec.ts';
import { LABELS } from '../api/labels.ts';
import { AUDIT_EVENT_LEN, AUDIT_NONCE_LEN, AUDIT_SEALED_LEN } from '../api/messages.ts';
import type { AuditEntry, AuditEvent, StoredAuditEvent } from '../api/messages.ts';
import type { HashPrimitives, HmacKey } from '../opaque/hash.ts';
import { hmacKey } from '../opaque/hash.ts';
import { ctEqual, newBytes, putU64 } from '../opaque/bytes.ts';
import type { Alloc, RandomSource } from '../opaque/bytes.ts';
import { EnclaveFault, PlatformFault } from '../api/codes.ts';

/** The event as the MAC covers it (without the mac). */
export const AUDIT_BODY_SCHEMA = [
  ['seq', u53],
  ['time', u53],
  ['nonce', fixed(AUDIT_NONCE_LEN)],
  ['sealed', fixed(AUDIT_SEALED_LEN)],
] as const;

const te = new TextEncoder();
const RECORD_LABEL = te.encode(LABELS.auditRecord);
const ANCHOR_LABEL = te.encode(LABELS.auditAnchor);
const BODY_LEN = 8 + 8 + AUDIT_NONCE_LEN + AUDIT_SEALED_LEN;

function ok(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

/**
 * encodeFields(AUDIT_BODY_SCHEMA, body) written directly (the hot path: one event per charged
 * guess); the schema's checks are kept: integers in range, fields of their fixed lengths.
 */
export function encodeAuditBody(seq: number, time: number, nonce: Uint8Array, sealed: Uint8Array): Uint8Array {
  return writeAuditBody(new Uint8Array(BODY_LEN), seq, time, nonce, sealed);
}

/** encodeAuditBody into the first BODY_LEN bytes of `out` (an event's own array); returns that view. */
function writeAuditBody(out: Uint8Array, seq: number, time: number, nonce: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (!ok(seq, Number.MAX_SAFE_INTEGER) || !ok(time, Number.MAX_SAFE_INTEGER) || !(nonce instanceof Uint8Array) || nonce.length !== AUDIT_NONCE_LEN || !(sealed instanceof Uint8Array) || sealed.length !== AUDIT_SEALED_LEN) {
    return encodeFields(AUDIT_BODY_SCHEMA, { seq, time, nonce, sealed }); // throws the codec's typed fault
  }
  putU64(out, 0, seq);
  putU64(out, 8, time);
  out.set(nonce, 16);
  out.set(sealed, 16 + AUDIT_NONCE_LEN);
  return out.subarray(0, BODY_LEN);
}

/** Blocks of keystream an event needs: AUDIT_SEALED_LEN bytes, rounded up to whole AES blocks. */
const CTR_BLOCKS = Math.ceil(AUDIT_SEALED_LEN / 16);
const CTR_BYTES = CTR_BLOCKS * 16;
/** Nonces drawn (and their keystreams made) at a time by `drawNonce`. */
const NONCE_POOL = 64;

/** Writes the CTR_BLOCKS counter blocks of `nonce` (nonce + b as a 128-bit big-endian integer) at `at`. */
function counterBlocks(c: Uint8Array, at: number, nonce: Uint8Array): void {
  for (let b = 0; b < CTR_BLOCKS; b++) {
    const o = at + b * 16;
    c.set(nonce, o);
    let carry = b;
    for (let i = o + 15; i >= o && carry > 0; i--) {
      const v = c[i]! + carry;
      c[i] = v & 0xff;
      carry = v >> 8;
    }
  }
}

/**
 * AES-256-CTR under the seal key (NIST SP 800-38A §6.5; the same call seals and opens), as OpenSSL's
 * aes-256-ctr computes it: the nonce is the first counter block, incremented as one 128-bit
 * big-endian integer. The keystream is the counter blocks encrypted by one AES-256-ECB context
 * made once per log (no padding, no state between calls), where a CTR context per event cost a key
 * schedule and a native object each time (bench/breakdown.ts "audit event"). The context holds the
 * key schedule as node:crypto keeps it: it can not be wiped, only dropped with the log.
 *
 * `drawNonce` draws NONCE_POOL nonces at once and makes their keystreams in one ECB call, so an
 * event whose nonce was drawn that way costs no call into node:crypto and none of the two buffers
 * each call returns (its output, then a trimmed copy). The `xor` that follows a draw, with the
 * nonce drawn, uses that keystream once and wipes it; any other nonce gets a keystream of its
 * own, as before. A nonce is never drawn twice, so no keystream serves two events (an event made
 * again after an Abort draws a new one). `dispose` wipes the keystreams drawn ahead.
 */
class CtrStream {
  private readonly ecb: Cipher;
  private readonly counters = Buffer.alloc(CTR_BYTES);
  private readonly nonces = new Uint8Array(NONCE_POOL * 16);
  private readonly poolCounters = Buffer.alloc(NONCE_POOL * CTR_BYTES);
  /** The pool's keystreams (entry i at i * CTR_BYTES); null before the first draw. */
  private ks: Buffer | null = null;
  /** Entries drawn from the pool; entry `drawn - 1`'s keystream is unused while `ready`. */
  private drawn = NONCE_POOL;
  private ready = false;

  constructor(key: Uint8Array) {
    this.ecb = createCipheriv('aes-256-ecb', key, null);
    this.ecb.setAutoPadding(false);
  }

  drawNonce(random: RandomSource): Uint8Array {
    if (this.drawn === NONCE_POOL) {
      const r = random(NONCE_POOL * 16);
      if (!(r instanceof Uint8Array) || r.length !== NONCE_POOL * 16) throw new EnclaveFault(PlatformFault.RandomError, 'random source returned the wrong length');
      this.nonces.set(r);
      for (let e = 0; e < NONCE_POOL; e++) counterBlocks(this.poolCounters, e * CTR_BYTES, this.nonces.subarray(e * 16, e * 16 + 16));
      this.ks?.fill(0);
      this.ks = this.ecb.update(this.poolCounters);
      this.poolCounters.fill(0);
      this.drawn = 0;
      this.ready = false;
    }
    // The entry drawn before this one is spent, used or not.
    if (this.ready) this.ks!.fill(0, (this.drawn - 1) * CTR_BYTES, this.drawn * CTR_BYTES);
    const i = this.drawn++;
    this.ready = true;
    return this.nonces.slice(i * 16, i * 16 + 16);
  }

  xor(nonce: Uint8Array, data: Uint8Array): Uint8Array {
    if (nonce.length !== 16 || data.length > CTR_BYTES) throw new RangeError('audit CTR: a 16-byte nonce and at most one event');
    const i = this.drawn - 1;
    let ks: Uint8Array;
    let at = 0;
    if (this.ready && ctEqual(nonce, this.nonces.subarray(i * 16, i * 16 + 16))) {
      ks = this.ks!;
      at = i * CTR_BYTES;
      this.ready = false; // used once
    } else {
      counterBlocks(this.counters, 0, nonce);
      ks = this.ecb.update(this.counters);
    }
    const out = new Uint8Array(data.length);
    for (let j = 0; j < data.length; j++) out[j] = data[j]! ^ ks[at + j]!;
    ks.fill(0, at, at + CTR_BYTES);
    return out;
  }

  /** Wipes the keystreams of nonces drawn and not used. */
  dispose(): void {
    this.ks?.fill(0);
    this.ready = false;
  }
}

export class AuditLog {
  /**
   * HMAC under the audit key, its pads hashed once (hash.ts `hmacKey`: two compressions fewer per
   * MAC, two MACs per event); `dispose` wipes it (the vault's zeroization).
   */
  private readonly mac: HmacKey;
  private readonly ctr: CtrStream;

  constructor(key: Uint8Array, sealKey: Uint8Array, h: HashPrimitives) {
    if (sealKey.length !== 32) throw new RangeError('the audit seal key is 32 bytes');
    this.mac = hmacKey(h, key);
    this.ctr = new CtrStream(sealKey);
  }

  /** Wipes the keyed HMAC state; the log is unusable afterwards. */
  dispose(): void {
    this.mac.dispose();
    this.ctr.dispose();
  }

  /**
   * A nonce for the next event (`next`), from `random`, drawn NONCE_POOL at a time with their
   * keystreams made together (CtrStream): the cheap way to make an event.
   */
  drawNonce(random: RandomSource): Uint8Array {
    return this.ctr.drawNonce(random);
  }

  recordHash(recordId: Uint8Array): Uint8Array {
    return this.mac.mac(RECORD_LABEL, recordId);
  }

  /**
   * Appends after (seq, head); returns the event as the host stores it (its encoding, made here
   * once: the MAC'd body, then the mac; its bytes from `alloc`) and its mac, the new head.
   * `nonce`: 16 random bytes.
   */
  next(prevSeq: number, prevHead: Uint8Array, time: number, nonce: Uint8Array, kind: number, recordHash: Uint8Array, attemptsRemaining: number, alloc: Alloc = newBytes): StoredAuditEvent & { mac: Uint8Array } {
    if (!ok(kind, 0xff) || !ok(attemptsRemaining, 0xff) || recordHash.length !== 32) throw new RangeError('audit event fields out of range');
    const pt = new Uint8Array(AUDIT_SEALED_LEN);
    pt[0] = kind;
    pt.set(recordHash, 1);
    pt[33] = attemptsRemaining;
    const sealed = this.ctr.xor(nonce, pt);
    const seq = prevSeq + 1;
    // encodeFields(AuditEventSchema, { seq, time, nonce, sealed, mac }): the MAC'd body, then the
    // mac, in one array: the body is written in place and MAC'd as a view of it.
    const bytes = alloc(AUDIT_EVENT_LEN);
    const mac = this.mac.mac(prevHead, writeAuditBody(bytes, seq, time, nonce, sealed));
    bytes.set(mac, BODY_LEN);
    return { seq, bytes, mac };
  }

  /** What an event says. Only for events `verify` accepted up to a committed point. */
  open(e: AuditEvent): AuditEntry {
    const pt = this.ctr.xor(e.nonce, e.sealed);
    return { seq: e.seq, time: e.time, kind: pt[0]!, recordHash: pt.slice(1, 33), attemptsRemaining: pt[33]! };
  }

  /** The enclave's word that (seq, mac) is a point of the committed chain: a later run may end there. */
  anchor(seq: number, mac: Uint8Array): Uint8Array {
    const s = new Uint8Array(8);
    putU64(s, 0, seq);
    return this.mac.mac(ANCHOR_LABEL, s, mac);
  }

  /**
   * Checks a run of events that starts after (fromSeq, fromHead) and must end at (toSeq, toHead).
   * Returns the index of the first bad event, or -1 when the whole run verifies.
   */
  verify(events: AuditEvent[], fromSeq: number, fromHead: Uint8Array, toSeq: number, toHead: Uint8Array): number {
    let seq = fromSeq;
    let head = fromHead;
    const body = new Uint8Array(BODY_LEN); // each event's body in turn (the MAC keeps none of it)
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      if (e.seq !== seq + 1) return i;
      const expect = this.mac.mac(head, writeAuditBody(body, e.seq, e.time, e.nonce, e.sealed));
      if (!ctEqual(expect, e.mac)) return i;
      seq = e.seq;
      head = e.mac;
    }
    if (seq !== toSeq || !ctEqual(head, toHead)) return events.length;
    return -1;
  }
}
