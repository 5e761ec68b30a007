/**
 * The envelope of a message between fleet members, the replication MAC, the log entry hash chain
 * and the configuration hash. Byte layout and bounds: docs/fleet.md, "Messages".
 *
 * A message is `header || body || MAC`. The header (44 bytes) is the wire version, the type tag,
 * the sender id, the receiver id, the sender's incarnation, the receiver's incarnation (zeros: any
 * incarnation of the receiver) and a sequence number that only grows per sender incarnation. The
 * MAC is HMAC-SHA256 (RFC 2104) under the message key of the pair (sender, receiver) (keys.ts:
 * only those two members can compute it) over the message label, the header and the body: the
 * exact bytes received. A receiver reads the header, checks the MAC, and only then decodes the
 * body (codec.ts): a forged body is never parsed. Hosts may drop, delay, duplicate, reorder and
 * replay messages; any other change fails the MAC.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { decodeFields, encodeFields, fixed, u53, u8 } from '../api/codec.ts';
import { LABELS } from '../api/labels.ts';
import { ctEqual, utf8 } from '../opaque/bytes.ts';
import { asFleet, decodeBody, encodeBody, encodeConfig, encodeEntryContent, MAX_BODY_BYTES, MAX_MEMBERS } from './codec.ts';
import { FleetCode, FleetFault } from './faults.ts';
import { INCARNATION_BYTES, MAC_BYTES, MESSAGE_TAGS, type Config, type Envelope, type Header, type MessageType } from './messages.ts';
import type { Op } from './rules.ts';

export * from './messages.ts';

/** The fleet's labels, from the project's one table (enclave/api/labels.ts). */
export const FLEET_LABELS = {
  message: LABELS.fleetMessage,
  entry: LABELS.fleetEntry,
  config: LABELS.fleetConfig,
} as const;

/** The payload of an entry that carries none (the replication layer's own intents, an Admit). */
export const NO_PAYLOAD = new Uint8Array(0);

/** The version of this byte layout (the header's first byte). */
export const WIRE_VERSION = 1;

const HEADER_SCHEMA = [
  ['version', u8],
  ['tag', u8],
  ['from', u8],
  ['to', u8],
  ['fromInc', fixed(INCARNATION_BYTES)],
  ['toInc', fixed(INCARNATION_BYTES)],
  ['seq', u53],
] as const;

/** Header bytes: version, tag, sender, receiver, their incarnations, sequence number. */
export const HEADER_BYTES = 4 + 2 * INCARNATION_BYTES + 8;
/** The longest message under the decoder's bounds (codec.ts). */
export const MAX_MESSAGE_BYTES = HEADER_BYTES + MAX_BODY_BYTES + MAC_BYTES;

const TYPES = new Map(Object.entries(MESSAGE_TAGS).map(([k, t]) => [t, k as MessageType]));
const MESSAGE_LABEL = labelBytes(FLEET_LABELS.message);

function mac(key: Uint8Array, headerAndBody: Uint8Array): Uint8Array {
  return hmac.create(sha256, key).update(MESSAGE_LABEL).update(headerAndBody).digest();
}

/** The bytes of a message: header, body, MAC under `key` (the message key of the pair the header names). */
export function seal(key: Uint8Array, e: Envelope): Uint8Array {
  return sealBody(key, { ...e, type: e.body.type }, encodeBody(e.body));
}

/** The bytes of a message around a body already encoded (tests use it to MAC a malformed body). */
export function sealBody(key: Uint8Array, h: Header, body: Uint8Array): Uint8Array {
  const header = encodeFields(HEADER_SCHEMA, { version: WIRE_VERSION, tag: MESSAGE_TAGS[h.type], from: h.from, to: h.to, fromInc: h.fromInc, toInc: h.toInc, seq: h.seq });
  const out = new Uint8Array(HEADER_BYTES + body.length + MAC_BYTES);
  out.set(header);
  out.set(body, HEADER_BYTES);
  out.set(mac(key, out.subarray(0, HEADER_BYTES + body.length)), HEADER_BYTES + body.length);
  return out;
}

/**
 * Reads the header of a message, without the key: the length within bounds, the version and the
 * type known, the member ids below `MAX_MEMBERS`, the sequence number within 2^53 - 1. Nothing of
 * it is trusted until the MAC verifies.
 */
export function readHeader(msg: Uint8Array): Header {
  if (!(msg instanceof Uint8Array)) throw new FleetFault(FleetCode.BadValue, 'fleet: a message is bytes');
  if (msg.length > MAX_MESSAGE_BYTES) throw new FleetFault(FleetCode.TooLarge, `fleet: message of ${msg.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  if (msg.length < HEADER_BYTES + MAC_BYTES) throw new FleetFault(FleetCode.Truncated, 'fleet: message shorter than its header and MAC');
  const h = asFleet('header', () => decodeFields(HEADER_SCHEMA, msg.subarray(0, HEADER_BYTES), 'header'));
  if (h.version !== WIRE_VERSION) throw new FleetFault(FleetCode.WireVersion, `fleet: wire version ${h.version}`);
  const type = TYPES.get(h.tag);
  if (type === undefined) throw new FleetFault(FleetCode.UnknownType, `fleet: unknown message type ${h.tag}`);
  if (h.from >= MAX_MEMBERS || h.to >= MAX_MEMBERS) throw new FleetFault(FleetCode.UnknownMember, 'fleet: member id out of range');
  return { type, from: h.from, to: h.to, fromInc: h.fromInc, toInc: h.toInc, seq: h.seq };
}

/** Whether the MAC at the end of `msg` is the MAC of everything before it (constant-time comparison). */
export function verifyMac(key: Uint8Array, msg: Uint8Array): boolean {
  if (msg.length < HEADER_BYTES + MAC_BYTES) return false;
  const end = msg.length - MAC_BYTES;
  return ctEqual(mac(key, msg.subarray(0, end)), msg.subarray(end));
}

/** The body bytes of a message whose header was read. */
export function bodyBytes(msg: Uint8Array): Uint8Array {
  return msg.subarray(HEADER_BYTES, msg.length - MAC_BYTES);
}

/** Header, MAC, then body: the whole message as a value, or a `FleetFault` (the body is decoded only under a valid MAC). */
export function open(key: Uint8Array, msg: Uint8Array): Envelope {
  const { type, ...h } = readHeader(msg);
  if (!verifyMac(key, msg)) throw new FleetFault(FleetCode.BadMac, 'fleet: MAC does not verify');
  return { ...h, body: decodeBody(type, bodyBytes(msg)) };
}

/** The chain hash of an entry: SHA-256(label || prev hash || index || view || ops || payload). */
export function entryHash(prevHash: Uint8Array, index: number, view: number, ops: readonly Op[], payload: Uint8Array = NO_PAYLOAD): Uint8Array {
  return sha256.create().update(labelBytes(FLEET_LABELS.entry)).update(encodeEntryContent(prevHash, index, view, ops, payload)).digest();
}

/** The hash that names a configuration (a re-form's incarnation set). */
export function configHash(c: Config): Uint8Array {
  return sha256.create().update(labelBytes(FLEET_LABELS.config)).update(encodeConfig(c)).digest();
}

function labelBytes(label: string): Uint8Array {
  const b = utf8(label);
  const out = new Uint8Array(1 + b.length);
  out[0] = b.length;
  out.set(b, 1);
  return out;
}

export function sameBytes(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return a.length === b.length && ctEqual(a, b);
}
