/**
 * A member's durable state and its `MemberSecrets` as bytes, for a member whose device keeps them
 * in files (the member process, host/fleet/member-host.ts). The same strict codec as the
 * messages (codec.ts: the entry and snapshot schemas are the wire's), behind a version byte:
 *
 *   state    version u8 (1) | member u8 | view u53 | normal view u53 | commit u53 | snapshot |
 *            entries list(entry, 4096) | reform list(≤ 1: epoch u53, voter fixed(16), set hash list(≤ 1: fixed(32)))
 *   secrets  version u8 (1) | member u8 | charter bytes (ceremony.ts) | identity seed fixed(32) | fleet secret fixed(32)
 *            version 2 (a member a charter change added) adds: joined (serial u53, identities list(opt(fixed(32)), 7)),
 *            the changed charter it was granted under, which names its identity at its id
 *
 * Decoding refuses, with a `FleetFault` (faults.ts) naming the field: a truncated field, a count
 * above its bound, a trailing byte, an unknown version, a value out of range (a record status, a
 * limit, snapshot records out of order), and a state that does not hold together (entries that do
 * not follow the snapshot, a commit beyond the tip). A damaged file is never read as a shorter log.
 */
import { bytes, decodeFields, encodeFields, fixed, list, opt, u53, u8 } from '../api/codec.ts';
import { decodeCharter, encodeCharter, SECRET_BYTES } from './ceremony.ts';
import { asFleet, ENTRY, entryOf, flatEntry, flatSnapshot, MAX_HELD_PAYLOADS, MAX_MEMBERS, PAYLOAD, SNAPSHOT, snapshotOf } from './codec.ts';
import { FleetCode, FleetFault } from './faults.ts';
import { identityPublicKey, type MemberSecrets } from './keys.ts';
import { tipOf, type DurableState } from './log.ts';
import { HASH_BYTES, INCARNATION_BYTES, sameBytes, type CharterState } from './wire.ts';

export const DURABLE_VERSION = 1;
/** Entries after the snapshot a durable state may hold (the committed ones kept and the uncommitted suffix). */
export const MAX_DURABLE_ENTRIES = 4096;

const REFORM = [['epoch', u53], ['voter', fixed(INCARNATION_BYTES)], ['setHash', list([['h', fixed(HASH_BYTES)]] as const, 1)]] as const;
const STATE = [
  ['version', u8],
  ['member', u8],
  ['view', u53],
  ['normalView', u53],
  ['commit', u53],
  ['base', list(SNAPSHOT, 1)],
  ['entries', list(ENTRY, MAX_DURABLE_ENTRIES)],
  ['reform', list(REFORM, 1)],
  ['held', list([['payload', PAYLOAD]] as const, MAX_HELD_PAYLOADS)],
] as const;
const SECRETS = [
  ['version', u8],
  ['member', u8],
  ['charter', bytes(1, 1024)],
  ['identitySeed', fixed(32)],
  ['fleetSecret', fixed(SECRET_BYTES)],
] as const;
const JOINED_SECRETS = [...SECRETS, ['serial', u53], ['identities', list([['key', opt(fixed(32))]] as const, MAX_MEMBERS)]] as const;
/** The secrets of a member a charter change added. */
export const JOINED_SECRETS_VERSION = 2;

function bad(what: string): never {
  throw new FleetFault(FleetCode.BadValue, `fleet: durable state: ${what}`);
}

export function encodeDurable(d: DurableState): Uint8Array {
  return asFleet('durable', () =>
    encodeFields(STATE, {
      version: DURABLE_VERSION,
      member: d.member,
      view: d.view,
      normalView: d.normalView,
      commit: d.commit,
      base: [flatSnapshot(d.base)],
      entries: d.entries.map(flatEntry),
      reform: d.reform ? [{ epoch: d.reform.epoch, voter: d.reform.voter, setHash: d.reform.setHash ? [{ h: d.reform.setHash }] : [] }] : [],
      held: d.held.map((payload) => ({ payload })),
    }),
  );
}

/** Strict: a `FleetFault` for bytes that are not one durable state of member `member` of a fleet founded with `n` members. */
export function decodeDurable(b: Uint8Array, member: number, n: number): DurableState {
  if (b.length < 1) throw new FleetFault(FleetCode.Truncated, 'fleet: durable state: empty');
  if (b[0] !== DURABLE_VERSION) throw new FleetFault(FleetCode.WireVersion, `fleet: durable state version ${b[0]}`);
  const f = asFleet('durable', () => decodeFields(STATE, b, 'durable'));
  if (f.member !== member) bad(`it is member ${f.member}'s, not member ${member}'s`);
  const snap = f.base[0] ?? bad('no snapshot');
  const base = snapshotOf(snap);
  if (base.config.charter.identities.length < n || (base.config.charter.serial === 0 && base.config.charter.identities.length !== n)) bad(`a configuration of ${base.config.charter.identities.length} member ids, not ${n}`);
  const entries = f.entries.map((e, i) => entryOf(e, `durable.entries[${i}]`));
  let prev = { index: base.index, hash: base.hash };
  for (const e of entries) {
    if (e.index !== prev.index + 1 || !sameBytes(e.prevHash, prev.hash)) bad(`entry ${e.index} does not follow entry ${prev.index}`);
    prev = e;
  }
  const r = f.reform[0];
  const d: DurableState = {
    member,
    view: f.view,
    normalView: f.normalView,
    commit: f.commit,
    base,
    entries,
    reform: r ? { epoch: r.epoch, voter: r.voter, setHash: r.setHash[0]?.h ?? null } : null,
    held: f.held.map((h) => h.payload),
  };
  if (d.normalView > d.view) bad('normal view after the view');
  if (d.commit < base.index || d.commit > tipOf(d).index) bad('commit outside the log');
  return d;
}

export function encodeSecrets(s: MemberSecrets): Uint8Array {
  const base = { member: s.member, charter: encodeCharter(s.charter), identitySeed: s.identitySeed, fleetSecret: s.fleetSecret };
  if (!s.joined) return asFleet('secrets', () => encodeFields(SECRETS, { version: DURABLE_VERSION, ...base }));
  const j = s.joined;
  return asFleet('secrets', () => encodeFields(JOINED_SECRETS, { version: JOINED_SECRETS_VERSION, ...base, serial: j.serial, identities: j.identities.map((key) => ({ key: key ?? undefined })) }));
}

/** Strict, as `decodeDurable`; the charter is checked as the ceremony checks it. */
export function decodeSecrets(b: Uint8Array, member: number): MemberSecrets {
  if (b.length < 1) throw new FleetFault(FleetCode.Truncated, 'fleet: secrets: empty');
  if (b[0] !== DURABLE_VERSION && b[0] !== JOINED_SECRETS_VERSION) throw new FleetFault(FleetCode.WireVersion, `fleet: secrets version ${b[0]}`);
  let f: { member: number; charter: Uint8Array; identitySeed: Uint8Array; fleetSecret: Uint8Array };
  let joined: CharterState | undefined;
  if (b[0] === DURABLE_VERSION) f = asFleet('secrets', () => decodeFields(SECRETS, b, 'secrets'));
  else {
    const g = asFleet('secrets', () => decodeFields(JOINED_SECRETS, b, 'secrets'));
    f = g;
    joined = { serial: g.serial, identities: g.identities.map((x) => x.key ?? null) };
  }
  const charter = asFleet('secrets.charter', () => decodeCharter(f.charter));
  const identities = joined?.identities ?? charter.identities;
  if (f.member !== member || member >= identities.length) throw new FleetFault(FleetCode.BadValue, `fleet: secrets: they are member ${f.member}'s, not member ${member}'s`);
  // a changed charter of this fleet keeps each founding identity at its id, or has removed it
  if (joined && (joined.serial < 1 || joined.identities.length < charter.identities.length || !charter.identities.every((k, i) => joined.identities[i] === null || sameBytes(joined.identities[i], k)))) {
    throw new FleetFault(FleetCode.BadValue, 'fleet: secrets: the changed charter is not one of this fleet\'s');
  }
  if (!sameBytes(identityPublicKey(f.identitySeed), identities[member])) throw new FleetFault(FleetCode.NotInCharter, 'fleet: secrets: the identity seed is not the charter\'s identity of this member');
  return { member, charter, identitySeed: f.identitySeed, fleetSecret: f.fleetSecret, ...(joined && { joined }) };
}
