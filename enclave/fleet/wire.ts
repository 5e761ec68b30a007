/**
 * The messages members send each other, their canonical encoding (what the MAC covers and what
 * docs/fleet.md counts in bytes), the log entry hash chain and the replication MAC.
 *
 * Every message is `header || body`, MACed with HMAC-SHA256 under the fleet replication key
 * (HKDF-SHA256 of the fleet secret, info `bkv/fleet/replication/v1`, RFC 5869 §2). The header
 * binds the type, sender id, receiver id, sender incarnation, receiver incarnation (zeros: any
 * incarnation of the receiver) and a sequence number that only grows per sender incarnation.
 * Hosts may drop, delay, duplicate, reorder and replay envelopes; any other change fails the MAC.
 */
import { LABELS } from '../api/labels.ts';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ctEqual, utf8 } from '../opaque/bytes.ts';
import type { Op, RecordState } from './rules.ts';

export const INCARNATION_BYTES = 16;
export const HASH_BYTES = 32;
export const MAC_BYTES = 32;
/** The receiver incarnation of a message that any incarnation of the receiver may take. */
export const ANY_INCARNATION = new Uint8Array(INCARNATION_BYTES);
export const GENESIS_HASH = new Uint8Array(HASH_BYTES);

/** The fleet's labels, from the project's one table (enclave/api/labels.ts). */
export const FLEET_LABELS = {
  replicationKey: LABELS.fleetReplicationKey,
  message: LABELS.fleetMessage,
  entry: LABELS.fleetEntry,
  config: LABELS.fleetConfig,
} as const;

/** Member id → admitted incarnation (null: none admitted for that id). */
export interface Config {
  readonly epoch: number;
  readonly admitted: readonly (Uint8Array | null)[];
}

export interface Entry {
  readonly index: number;
  /** The view in which the entry was proposed (part of its hash; never rewritten). */
  readonly view: number;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
  readonly ops: readonly Op[];
}

/** The committed prefix folded: records and configuration after entry `index`, whose chain hash is `hash`. */
export interface Snapshot {
  readonly index: number;
  readonly hash: Uint8Array;
  readonly config: Config;
  readonly records: ReadonlyMap<string, RecordState>;
}

export type Body =
  | { readonly type: 'prepare'; readonly epoch: number; readonly view: number; readonly commit: number; readonly entry: Entry }
  | { readonly type: 'prepareOk'; readonly epoch: number; readonly view: number; readonly index: number; readonly hash: Uint8Array }
  | { readonly type: 'commit'; readonly epoch: number; readonly view: number; readonly commit: number }
  | {
      readonly type: 'doViewChange';
      readonly epoch: number;
      readonly view: number;
      readonly normalView: number;
      readonly tip: number;
      readonly tipHash: Uint8Array;
      /** The configuration at the sender's tip (latest in its log, committed or not). */
      readonly config: Config;
    }
  | { readonly type: 'startView'; readonly epoch: number; readonly view: number; readonly tip: number; readonly tipHash: Uint8Array }
  | { readonly type: 'rejoin'; readonly commit: number; readonly commitHash: Uint8Array }
  | { readonly type: 'catchupRequest'; readonly commit: number; readonly commitHash: Uint8Array }
  | {
      readonly type: 'catchup';
      readonly epoch: number;
      readonly view: number;
      readonly normalView: number;
      readonly commit: number;
      /** Present when the requester's commit point is not in the sender's log. */
      readonly snapshot: Snapshot | null;
      readonly entries: readonly Entry[];
    }
  | {
      readonly type: 'reformVote';
      readonly epoch: number;
      readonly view: number;
      readonly normalView: number;
      readonly tip: number;
      readonly tipHash: Uint8Array;
    }
  | { readonly type: 'reformAccept'; readonly epoch: number; readonly setHash: Uint8Array; readonly tip: number; readonly tipHash: Uint8Array };

export type MessageType = Body['type'];

export const MESSAGE_TAGS: Record<MessageType, number> = {
  prepare: 1,
  prepareOk: 2,
  commit: 3,
  doViewChange: 4,
  startView: 5,
  rejoin: 6,
  catchupRequest: 7,
  catchup: 8,
  reformVote: 9,
  reformAccept: 10,
};

export interface Envelope {
  readonly from: number;
  readonly to: number;
  readonly fromInc: Uint8Array;
  readonly toInc: Uint8Array;
  readonly seq: number;
  readonly body: Body;
  readonly mac: Uint8Array;
}

/** A growing byte buffer for the canonical encoding. */
class Writer {
  private buf = new Uint8Array(128);
  private len = 0;
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): this {
    this.room(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }
  u64(v: number): this {
    this.room(8);
    const hi = Math.floor(v / 2 ** 32);
    const lo = v >>> 0;
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 8);
    view.setUint32(0, hi);
    view.setUint32(4, lo);
    this.len += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }
  short(b: Uint8Array): this {
    return this.u8(b.length).bytes(b);
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const OP_TAGS = { register: 1, charge: 2, reset: 3, lock: 4, delete: 5, admit: 6 } as const;
const STATUS_TAGS = { registered: 1, locked: 2, deleted: 3 } as const;

function writeOp(w: Writer, op: Op): void {
  w.u8(OP_TAGS[op.kind]);
  if (op.kind === 'admit') {
    w.u8(op.member).bytes(op.incarnation);
    return;
  }
  w.short(utf8(op.id)).u64(op.base);
  if (op.kind === 'register') w.u8(op.limit);
  if (op.kind === 'charge') w.u64(op.guess).u64(op.session);
  if (op.kind === 'reset') w.u64(op.session);
}

function writeConfig(w: Writer, c: Config): void {
  w.u64(c.epoch).u8(c.admitted.length);
  for (const inc of c.admitted) w.bytes(inc ?? ANY_INCARNATION);
}

function writeEntry(w: Writer, e: Entry): void {
  w.u64(e.index).u64(e.view).bytes(e.prevHash).bytes(e.hash).u64(e.ops.length);
  for (const op of e.ops) writeOp(w, op);
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.u64(s.index).bytes(s.hash);
  writeConfig(w, s.config);
  w.u64(s.records.size);
  for (const [id, r] of [...s.records].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    w.short(utf8(id)).u64(r.version).u8(STATUS_TAGS[r.status]).u8(r.limit).u8(r.used).u64(r.total);
  }
}

/** The canonical encoding of a body (the MAC covers it; its length is what a member sends). */
export function encodeBody(b: Body): Uint8Array {
  return writeBody(new Writer(), b).done();
}

function writeBody(w: Writer, b: Body): Writer {
  w.u8(MESSAGE_TAGS[b.type]);
  switch (b.type) {
    case 'prepare':
      w.u64(b.epoch).u64(b.view).u64(b.commit);
      writeEntry(w, b.entry);
      break;
    case 'prepareOk':
      w.u64(b.epoch).u64(b.view).u64(b.index).bytes(b.hash);
      break;
    case 'commit':
      w.u64(b.epoch).u64(b.view).u64(b.commit);
      break;
    case 'doViewChange':
      w.u64(b.epoch).u64(b.view).u64(b.normalView).u64(b.tip).bytes(b.tipHash);
      writeConfig(w, b.config);
      break;
    case 'startView':
      w.u64(b.epoch).u64(b.view).u64(b.tip).bytes(b.tipHash);
      break;
    case 'rejoin':
    case 'catchupRequest':
      w.u64(b.commit).bytes(b.commitHash);
      break;
    case 'catchup':
      w.u64(b.epoch).u64(b.view).u64(b.normalView).u64(b.commit).u8(b.snapshot ? 1 : 0);
      if (b.snapshot) writeSnapshot(w, b.snapshot);
      w.u64(b.entries.length);
      for (const e of b.entries) writeEntry(w, e);
      break;
    case 'reformVote':
      w.u64(b.epoch).u64(b.view).u64(b.normalView).u64(b.tip).bytes(b.tipHash);
      break;
    case 'reformAccept':
      w.u64(b.epoch).bytes(b.setHash).u64(b.tip).bytes(b.tipHash);
      break;
  }
  return w;
}

/** Header bytes: tag, sender, receiver, their incarnations, sequence number. */
export const HEADER_BYTES = 1 + 1 + 1 + 2 * INCARNATION_BYTES + 8;

const MESSAGE_LABEL = utf8(FLEET_LABELS.message);

function macInput(e: Omit<Envelope, 'mac'>): Uint8Array {
  const w = new Writer().short(MESSAGE_LABEL).u8(MESSAGE_TAGS[e.body.type]).u8(e.from).u8(e.to).bytes(e.fromInc).bytes(e.toInc).u64(e.seq);
  return writeBody(w, e.body).done();
}

/** The replication key of a fleet secret (HKDF-SHA256, RFC 5869). */
export function replicationKey(fleetSecret: Uint8Array): Uint8Array {
  return hkdf(sha256, fleetSecret, undefined, utf8(FLEET_LABELS.replicationKey), 32);
}

export function seal(key: Uint8Array, e: Omit<Envelope, 'mac'>): Envelope {
  return { ...e, mac: hmac(sha256, key, macInput(e)) };
}

/** Whether the envelope's MAC verifies (constant-time comparison). */
export function verify(key: Uint8Array, e: Envelope): boolean {
  if (e.mac.length !== MAC_BYTES || e.fromInc.length !== INCARNATION_BYTES || e.toInc.length !== INCARNATION_BYTES) return false;
  return ctEqual(hmac(sha256, key, macInput(e)), e.mac);
}

/** Bytes an envelope takes on the wire: header, body, MAC. */
export function wireBytes(e: Envelope): number {
  return HEADER_BYTES + encodeBody(e.body).length + MAC_BYTES;
}

/** The chain hash of an entry: SHA-256(label || prev hash || index || view || ops). */
export function entryHash(prevHash: Uint8Array, index: number, view: number, ops: readonly Op[]): Uint8Array {
  const w = new Writer().short(utf8(FLEET_LABELS.entry)).bytes(prevHash).u64(index).u64(view).u64(ops.length);
  for (const op of ops) writeOp(w, op);
  return sha256(w.done());
}

/** The hash that names a configuration (a re-form's incarnation set). */
export function configHash(c: Config): Uint8Array {
  const w = new Writer().short(utf8(FLEET_LABELS.config));
  writeConfig(w, c);
  return sha256(w.done());
}

export function sameBytes(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return a.length === b.length && ctEqual(a, b);
}
