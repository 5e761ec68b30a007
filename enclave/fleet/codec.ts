/**
 * The fleet's message bodies as schemas of the project's strict codec (enclave/api/codec.ts): one
 * schema per message type, one per op kind, their canonical encoding (what the MAC and the entry
 * hash cover) and their strict decoding. The byte layout and the bounds: docs/fleet.md, "Messages".
 *
 * Decoding refuses, with a `FleetFault` naming the field, before any member reads the body: a
 * truncated field, a count or length above its bound (checked before anything is read for it),
 * an unknown op kind or record status, a number out of its range, a record id that is not UTF-8,
 * snapshot records not in strictly ascending id order, and any byte after the last field. The
 * envelope (header, MAC) is wire.ts: a body is decoded only after its MAC verifies.
 */
import { bytes, decodeFields, encodeFields, fixed, list, opt, u53, u8, type Decoded, type Schema } from '../api/codec.ts';
import { Codec, EnclaveFault } from '../api/codes.ts';
import { FleetCode, FleetFault, type FleetCodeValue } from './faults.ts';
import { MAX_LIMIT, type Intent, type Op, type RecordState, type RecordStatus } from './rules.ts';
import { HASH_BYTES, INCARNATION_BYTES, type Body, type CharterState, type Config, type Entry, type MessageType, type Snapshot } from './messages.ts';

/** Member ids a message may name (the fleet has 3 or 5; a member also checks its own N). */
export const MAX_MEMBERS = 7;
/** Bytes of a record id (the vault's ids are 32-byte hashes). */
export const MAX_RECORD_ID_BYTES = 64;
/** Ops in one log entry: a batch (a member's `maxBatch` may not exceed it). */
export const MAX_OPS_PER_ENTRY = 64;
/** Entries in one catch-up (the uncommitted suffix and the committed entries kept behind the commit point). */
export const MAX_CATCHUP_ENTRIES = 64;
/** Records in one snapshot (a snapshot is one message in this slice). */
export const MAX_SNAPSHOT_RECORDS = 4096;
/**
 * Bytes of an entry's payload: what the entry carries besides its ops, opaque to the replication
 * rule and covered by the entry's hash (a vault batch's sealed writes, docs/fleet-vault.md; empty
 * for the replication layer's own intents). A vault batch of 64 writes is about 27 KB.
 */
export const MAX_PAYLOAD_BYTES = 32_768;
/** Payloads a member holds after a re-form folded them (log.ts DurableState.held): the oldest beyond it are dropped, and the member catches up by stored rows. */
export const MAX_HELD_PAYLOADS = 64;

const INC = fixed(INCARNATION_BYTES);
const HASH = fixed(HASH_BYTES);
/** A device identity (ceremony.ts IDENTITY_BYTES): an X25519 public key. */
const IDENTITY = fixed(32);
/** Per member id, its identity or none (a removed id). */
const IDENTITIES = list([['key', opt(IDENTITY)]] as const, MAX_MEMBERS);
const RECORD_ID = bytes(1, MAX_RECORD_ID_BYTES);

/** One schema per op kind; an op on the wire is `kind (u8) || fields`, inside a length-prefixed field. */
const OP_SCHEMAS = {
  register: [['id', RECORD_ID], ['base', u53], ['limit', u8]],
  charge: [['id', RECORD_ID], ['base', u53], ['guess', u53], ['session', u53]],
  reset: [['id', RECORD_ID], ['base', u53], ['session', u53]],
  lock: [['id', RECORD_ID], ['base', u53]],
  delete: [['id', RECORD_ID], ['base', u53]],
  admit: [['member', u8], ['incarnation', INC]],
  replace: [['id', RECORD_ID], ['base', u53], ['limit', u8]],
  touch: [['id', RECORD_ID], ['base', u53]],
  charter: [['serial', u53], ['identities', IDENTITIES]],
} as const satisfies Record<Op['kind'], Schema>;

export const OP_TAGS: Record<Op['kind'], number> = { register: 1, charge: 2, reset: 3, lock: 4, delete: 5, admit: 6, replace: 7, touch: 8, charter: 9 };
const OP_KINDS = new Map(Object.entries(OP_TAGS).map(([k, t]) => [t, k as Op['kind']]));
/** The longest op: its kind byte and its longest schema (a charter change naming every id, longer than a charge with the longest id). */
export const MAX_OP_BYTES = Math.max(1 + 2 + MAX_RECORD_ID_BYTES + 3 * 8, 1 + 8 + 2 + MAX_MEMBERS * (1 + 32));

const STATUS_TAGS: Record<RecordStatus, number> = { registered: 1, locked: 2, deleted: 3 };
const STATUSES = new Map(Object.entries(STATUS_TAGS).map(([k, t]) => [t, k as RecordStatus]));

const OPS = list([['op', bytes(2, MAX_OP_BYTES)]] as const, MAX_OPS_PER_ENTRY);
export const PAYLOAD = bytes(0, MAX_PAYLOAD_BYTES);
export const ENTRY = [['index', u53], ['view', u53], ['prevHash', HASH], ['hash', HASH], ['ops', OPS], ['payload', PAYLOAD]] as const;
/** A configuration: epoch, per member id its admitted incarnation or none, then its charter: serial and per member id its identity or none. */
export const ADMITTED = list([['inc', opt(INC)]] as const, MAX_MEMBERS);

const RECORD = [['id', RECORD_ID], ['version', u53], ['status', u8], ['limit', u8], ['used', u8], ['total', u53]] as const;
export const SNAPSHOT = [['index', u53], ['hash', HASH], ['epoch', u53], ['admitted', ADMITTED], ['serial', u53], ['identities', IDENTITIES], ['records', list(RECORD, MAX_SNAPSHOT_RECORDS)], ['lastPayload', PAYLOAD]] as const;

/** The body schema of each message type (its tag is in the header). */
export const BODY_SCHEMAS = {
  prepare: [['epoch', u53], ['view', u53], ['commit', u53], ['index', u53], ['entryView', u53], ['prevHash', HASH], ['hash', HASH], ['ops', OPS], ['payload', PAYLOAD]],
  prepareOk: [['epoch', u53], ['view', u53], ['index', u53], ['hash', HASH]],
  commit: [['epoch', u53], ['view', u53], ['commit', u53]],
  doViewChange: [['epoch', u53], ['view', u53], ['normalView', u53], ['tip', u53], ['tipHash', HASH], ['configEpoch', u53], ['admitted', ADMITTED], ['serial', u53], ['identities', IDENTITIES]],
  startView: [['epoch', u53], ['view', u53], ['tip', u53], ['tipHash', HASH]],
  rejoin: [['commit', u53], ['commitHash', HASH]],
  catchupRequest: [['commit', u53], ['commitHash', HASH]],
  catchup: [['epoch', u53], ['view', u53], ['normalView', u53], ['commit', u53], ['snapshot', list(SNAPSHOT, 1)], ['entries', list(ENTRY, MAX_CATCHUP_ENTRIES)]],
  reformVote: [['epoch', u53], ['view', u53], ['normalView', u53], ['tip', u53], ['tipHash', HASH]],
  reformAccept: [['epoch', u53], ['setHash', HASH], ['tip', u53], ['tipHash', HASH]],
  preVote: [['epoch', u53], ['view', u53]],
  preVoteGrant: [['epoch', u53], ['view', u53]],
} as const satisfies Record<MessageType, Schema>;

type Flat<T extends MessageType> = Decoded<(typeof BODY_SCHEMAS)[T]>;
type FlatEntry = Decoded<typeof ENTRY>;
type FlatAdmitted = { inc: Uint8Array | undefined }[];
type FlatCharter = { serial: number; identities: { key: Uint8Array | undefined }[] };

// ---- the codec's faults as the fleet's ----------------------------------------------------------

const FROM_CODEC: Record<number, FleetCodeValue> = {
  [Codec.Truncated]: FleetCode.Truncated,
  [Codec.TrailingBytes]: FleetCode.TrailingBytes,
  [Codec.FieldTooLong]: FleetCode.TooLong,
  [Codec.FieldTooShort]: FleetCode.TooShort,
  [Codec.InvalidValue]: FleetCode.BadValue,
  [Codec.TooManyItems]: FleetCode.TooMany,
  [Codec.MessageTooLarge]: FleetCode.TooLarge,
  [Codec.UnsupportedVersion]: FleetCode.WireVersion,
  [Codec.UnknownTag]: FleetCode.UnknownType,
};

/** Runs a codec call; its typed fault comes out as the fleet's, naming the field. Anything else is a bug and is thrown as is. */
export function asFleet<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof EnclaveFault && FROM_CODEC[e.code] !== undefined) {
      throw new FleetFault(FROM_CODEC[e.code]!, `fleet: ${what}${e.field ? `.${e.field}` : ''}: ${e.message}`);
    }
    throw e;
  }
}

/** The codec's calls on a schema chosen at run time (by tag): the fields as a plain record. */
const encodeAny = encodeFields as (schema: Schema, value: Record<string, unknown>) => Uint8Array;
const decodeAny = decodeFields as (schema: Schema, b: Uint8Array, what?: string) => Record<string, unknown>;

function bad(code: FleetCodeValue, what: string): never {
  throw new FleetFault(code, `fleet: ${what}`);
}

// ---- ops ------------------------------------------------------------------------------------------

// ignoreBOM: a leading U+FEFF is part of the id (stripping it would make two encodings of one id)
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Enc = new TextEncoder();

function idBytes(id: string): Uint8Array {
  return utf8Enc.encode(id);
}
function idOf(b: Uint8Array, what: string): string {
  try {
    return utf8Strict.decode(b);
  } catch {
    return bad(FleetCode.BadValue, `${what}: record id is not UTF-8`);
  }
}

export function encodeOp(op: Op): Uint8Array {
  const fields = op.kind === 'admit' ? op : op.kind === 'charter' ? { serial: op.serial, identities: op.identities.map((key) => ({ key: key ?? undefined })) } : { ...op, id: idBytes(op.id) };
  const body = encodeAny(OP_SCHEMAS[op.kind], fields as unknown as Record<string, unknown>);
  const out = new Uint8Array(1 + body.length);
  out[0] = OP_TAGS[op.kind];
  out.set(body, 1);
  return out;
}

export function decodeOp(b: Uint8Array, what = 'op'): Op {
  const kind = OP_KINDS.get(b[0]!);
  if (kind === undefined) return bad(FleetCode.UnknownOp, `${what}: unknown op kind ${b[0]}`);
  const f = asFleet(what, () => decodeAny(OP_SCHEMAS[kind], b.subarray(1), what));
  if (kind === 'admit') return { kind, member: f.member as number, incarnation: f.incarnation as Uint8Array };
  if (kind === 'charter') return { kind, serial: f.serial as number, identities: (f.identities as { key: Uint8Array | undefined }[]).map((x) => x.key ?? null) };
  const op = { kind, ...f, id: idOf(f.id as Uint8Array, what) } as Op;
  if ((op.kind === 'register' || op.kind === 'replace') && (op.limit < 1 || op.limit > MAX_LIMIT)) bad(FleetCode.BadValue, `${what}: limit out of 1..${MAX_LIMIT}`);
  return op;
}

// ---- entries, configurations, snapshots ---------------------------------------------------------

export function flatEntry(e: Entry): FlatEntry {
  return { index: e.index, view: e.view, prevHash: e.prevHash, hash: e.hash, ops: e.ops.map((op) => ({ op: encodeOp(op) })), payload: e.payload };
}
export function entryOf(f: FlatEntry, what: string): Entry {
  return { index: f.index, view: f.view, prevHash: f.prevHash, hash: f.hash, ops: f.ops.map((o, i) => decodeOp(o.op, `${what}.ops[${i}]`)), payload: f.payload };
}

function flatAdmitted(c: Config): FlatAdmitted {
  return c.admitted.map((inc) => ({ inc: inc ?? undefined }));
}
function flatCharter(c: Config): FlatCharter {
  return { serial: c.charter.serial, identities: c.charter.identities.map((key) => ({ key: key ?? undefined })) };
}
/** A configuration as decoded: as many admitted slots as charter ids, and at least one member. */
function configOf(epoch: number, a: FlatAdmitted, ch: FlatCharter, what: string): Config {
  if (a.length !== ch.identities.length) bad(FleetCode.BadValue, `${what}: ${a.length} admitted slots for ${ch.identities.length} charter ids`);
  if (ch.identities.every((k) => k.key === undefined)) bad(FleetCode.BadValue, `${what}: a charter with no member`);
  const charter: CharterState = { serial: ch.serial, identities: ch.identities.map((k) => k.key ?? null) };
  return { epoch, admitted: a.map((x) => x.inc ?? null), charter };
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function flatSnapshot(s: Snapshot): Decoded<typeof SNAPSHOT> {
  const records = [...s.records].sort(([a], [b]) => byId(a, b)).map(([id, r]) => ({ id: idBytes(id), version: r.version, status: STATUS_TAGS[r.status], limit: r.limit, used: r.used, total: r.total }));
  return { index: s.index, hash: s.hash, epoch: s.config.epoch, admitted: flatAdmitted(s.config), ...flatCharter(s.config), records, lastPayload: s.lastPayload };
}
export function snapshotOf(f: Decoded<typeof SNAPSHOT>): Snapshot {
  const records = new Map<string, RecordState>();
  let prev: string | null = null;
  f.records.forEach((r, i) => {
    const what = `catchup.snapshot.records[${i}]`;
    const id = idOf(r.id, what);
    if (prev !== null && byId(prev, id) >= 0) bad(FleetCode.BadValue, `${what}: ids not in strictly ascending order`);
    prev = id;
    const status = STATUSES.get(r.status) ?? bad(FleetCode.BadValue, `${what}: unknown status ${r.status}`);
    if (r.limit < 1 || r.limit > MAX_LIMIT || r.used > r.limit) bad(FleetCode.BadValue, `${what}: limit or attempts used out of range`);
    records.set(id, { version: r.version, status, limit: r.limit, used: r.used, total: r.total });
  });
  return { index: f.index, hash: f.hash, config: configOf(f.epoch, f.admitted, f, 'snapshot'), records, lastPayload: f.lastPayload };
}

// ---- bodies ---------------------------------------------------------------------------------------

function flatBody(b: Body): Record<string, unknown> {
  switch (b.type) {
    case 'prepare': {
      const { index, view, ...e } = flatEntry(b.entry);
      return { epoch: b.epoch, view: b.view, commit: b.commit, index, entryView: view, ...e };
    }
    case 'doViewChange':
      return { ...b, configEpoch: b.config.epoch, admitted: flatAdmitted(b.config), ...flatCharter(b.config) };
    case 'catchup':
      return { ...b, snapshot: b.snapshot ? [flatSnapshot(b.snapshot)] : [], entries: b.entries.map(flatEntry) };
    default:
      return b;
  }
}

/** The canonical encoding of a body (no tag: the header carries it); a body over a bound throws its FleetFault (it is never sent). */
export function encodeBody(b: Body): Uint8Array {
  return asFleet(b.type, () => encodeAny(BODY_SCHEMAS[b.type], flatBody(b)));
}

/** Whether a client intent fits the wire format (a record id of 1..64 bytes of UTF-8, a session within 0..2^53 - 1): a leader refuses one that does not. */
export function intentFits(intent: Intent): boolean {
  const n = typeof intent.id === 'string' ? idBytes(intent.id).length : 0;
  const session = 'session' in intent ? intent.session : 0;
  return n >= 1 && n <= MAX_RECORD_ID_BYTES && Number.isSafeInteger(session) && session >= 0;
}

/** Decodes the body of a message of type `type`, exactly: a `FleetFault` for anything else. */
export function decodeBody(type: MessageType, b: Uint8Array): Body {
  const f = asFleet(type, () => decodeAny(BODY_SCHEMAS[type], b, type));
  switch (type) {
    case 'prepare': {
      const { epoch, view, commit, entryView, ...e } = f as Flat<'prepare'>;
      return { type, epoch, view, commit, entry: entryOf({ ...e, view: entryView }, 'prepare.entry') };
    }
    case 'doViewChange': {
      const { configEpoch, admitted, serial, identities, ...rest } = f as Flat<'doViewChange'>;
      return { type, ...rest, config: configOf(configEpoch, admitted, { serial, identities }, 'doViewChange.config') };
    }
    case 'catchup': {
      const { snapshot, entries, ...rest } = f as Flat<'catchup'>;
      return { type, ...rest, snapshot: snapshot[0] ? snapshotOf(snapshot[0]) : null, entries: entries.map((e, i) => entryOf(e, `catchup.entries[${i}]`)) };
    }
    default:
      return { type, ...f } as Body;
  }
}

/** The canonical encoding of a configuration (what a re-form's set hash covers). */
export function encodeConfig(c: Config): Uint8Array {
  return encodeFields([['epoch', u53], ['admitted', ADMITTED], ['serial', u53], ['identities', IDENTITIES]] as const, { epoch: c.epoch, admitted: flatAdmitted(c), ...flatCharter(c) });
}

/** The canonical encoding of an entry's content (what its chain hash covers, after the label). */
export function encodeEntryContent(prevHash: Uint8Array, index: number, view: number, ops: readonly Op[], payload: Uint8Array): Uint8Array {
  return encodeFields([['prevHash', HASH], ['index', u53], ['view', u53], ['ops', OPS], ['payload', PAYLOAD]] as const, { prevHash, index, view, ops: ops.map((op) => ({ op: encodeOp(op) })), payload });
}

/** The largest body of any type under the bounds above (a catch-up with a full snapshot and the most entries). */
export const MAX_BODY_BYTES = (() => {
  const admitted = 2 + MAX_MEMBERS * (1 + INCARNATION_BYTES) + 8 + 2 + MAX_MEMBERS * (1 + 32);
  const entry = 8 + 8 + 2 * HASH_BYTES + 2 + MAX_OPS_PER_ENTRY * (2 + MAX_OP_BYTES) + 2 + MAX_PAYLOAD_BYTES;
  const record = 2 + MAX_RECORD_ID_BYTES + 8 + 3 + 8;
  const snapshot = 8 + HASH_BYTES + 8 + admitted + 2 + MAX_SNAPSHOT_RECORDS * record + 2 + MAX_PAYLOAD_BYTES;
  return 4 * 8 + 2 + snapshot + 2 + MAX_CATCHUP_ENTRIES * entry;
})();
