/**
 * A member's durable state (its NVRAM and storage in a real device) and the pure functions on it:
 * the log tip, the records and configuration at an index, the check of an entry against the
 * member's own state (docs/fleet.md, "What a member checks"), and compaction of the committed
 * prefix into a snapshot. Nothing here is in RAM only: the incarnation is not part of it.
 */
import { FleetCode, type FleetCodeValue } from './faults.ts';
import { transition, type CharterOp, type Op, type RecordState } from './rules.ts';
import { MAX_MEMBERS } from './codec.ts';
import { entryHash, GENESIS_HASH, INCARNATION_BYTES, NO_PAYLOAD, sameBytes, type Config, type Entry, type Snapshot } from './wire.ts';

/**
 * Members a charter may have after a change, at least (a founding charter has 3, 5 or 7:
 * ceremony.ts CHARTER_SIZES). Two is the step that replaces a member of a 3-member fleet that is
 * gone for good (remove it, then add its replacement: `bkv fleet replace`): the two left need
 * each other, as the three did with one gone, and any majority of 3 and of 2 meet.
 */
export const MIN_MEMBERS = 2;

export interface ReformRecord {
  /** The epoch of the re-form this member took part in. */
  readonly epoch: number;
  /** The incarnation it took part with. */
  readonly voter: Uint8Array;
  /** The incarnation set it accepted for that epoch (once set, it accepts no other for that epoch). */
  readonly setHash: Uint8Array | null;
}

export interface DurableState {
  readonly member: number;
  readonly view: number;
  /** The last view in which this member's status was normal (VR Revisited §4.2). */
  readonly normalView: number;
  readonly commit: number;
  readonly base: Snapshot;
  /** Entries base.index + 1 .. tip. */
  readonly entries: readonly Entry[];
  readonly reform: ReformRecord | null;
  /**
   * Payloads of committed entries a re-form folded into the snapshot before this member applied
   * them (member.ts setApplied), oldest first, until the member
   * releases them (member.ts releaseHeld): what a member's vault still has to apply from the log.
   */
  readonly held: readonly Uint8Array[];
}

/**
 * The state of a member of a fleet before any entry: epoch 0, nobody admitted, the founding
 * charter (serial 0, `identities`: the ceremony's charter's identities, ceremony.ts).
 */
export function genesis(member: number, identities: readonly Uint8Array[]): DurableState {
  return {
    member,
    view: 0,
    normalView: 0,
    commit: 0,
    base: { index: 0, hash: GENESIS_HASH, config: { epoch: 0, admitted: new Array<null>(identities.length).fill(null), charter: { serial: 0, identities: [...identities] } }, records: new Map(), lastPayload: NO_PAYLOAD },
    entries: [],
    reform: null,
    held: [],
  };
}

export interface Tip {
  readonly index: number;
  readonly hash: Uint8Array;
}

export function tipOf(d: DurableState): Tip {
  const last = d.entries[d.entries.length - 1];
  return last ? { index: last.index, hash: last.hash } : { index: d.base.index, hash: d.base.hash };
}

/** The chain hash at `index`, if this member's log still holds that point. */
export function hashAt(d: DurableState, index: number): Uint8Array | undefined {
  if (index === d.base.index) return d.base.hash;
  if (index < d.base.index) return undefined;
  return d.entries[index - d.base.index - 1]?.hash;
}

export function entriesAfter(d: DurableState, index: number): Entry[] {
  return d.entries.filter((e) => e.index > index);
}

function applyConfig(c: Config, op: Op): Config {
  if (op.kind === 'charter') {
    // a removed id admits nobody; an added one nobody yet (its member is admitted by an Admit)
    const admitted = op.identities.map((k, i) => (k ? (c.admitted[i] ?? null) : null));
    return { epoch: c.epoch, admitted, charter: { serial: op.serial, identities: op.identities } };
  }
  if (op.kind !== 'admit') return c;
  const admitted = [...c.admitted];
  admitted[op.member] = op.incarnation;
  return { ...c, admitted };
}

/** The member ids of a configuration's charter, ascending. */
export function membersOf(c: Config): number[] {
  const out: number[] = [];
  c.charter.identities.forEach((k, i) => {
    if (k) out.push(i);
  });
  return out;
}

/** Whether `m` is a member id of the configuration's charter. */
export function isMemberOf(c: Config, m: number): boolean {
  return Number.isInteger(m) && m >= 0 && c.charter.identities[m] != null;
}

/**
 * Why a charter change can not follow configuration `c`, or null (docs/fleet.md, "Membership
 * changes"): the next serial; ids never reused (a removed id stays empty, an added member takes
 * the next id); every member kept keeps its identity; exactly one member added or removed, so any
 * majority of the old charter and any of the new share a member; 2 (MIN_MEMBERS) to 7 members
 * after it; no identity twice.
 */
export function checkCharterChange(c: Config, op: CharterOp, maxChanges = 1): boolean {
  const cur = c.charter.identities;
  const next = op.identities;
  if (op.serial !== c.charter.serial + 1) return false;
  if (next.length < cur.length || next.length > cur.length + maxChanges) return false;
  if (next.length > MAX_MEMBERS) return false;
  let changes = 0;
  for (let i = 0; i < next.length; i++) {
    const was = cur[i] ?? null;
    const now = next[i] ?? null;
    if (i >= cur.length) {
      if (!now) return false;
      changes++;
    } else if (!was) {
      if (now) return false; // a removed id is never given again
    } else if (!now) changes++;
    else if (!sameBytes(was, now)) return false;
  }
  const members = next.filter((k): k is Uint8Array => k !== null);
  if (changes < 1 || changes > maxChanges || members.length < MIN_MEMBERS) return false;
  const seen = new Set(members.map((k) => Array.from(k).join(',')));
  return seen.size === members.length;
}

/** The configuration after entry `upto` (the latest in the log when `upto` is the tip). */
export function configAt(d: DurableState, upto: number): Config {
  let c = d.base.config;
  for (const e of d.entries) {
    if (e.index > upto) break;
    for (const op of e.ops) c = applyConfig(c, op);
  }
  return c;
}

/** The records after entry `upto`. */
export function recordsAt(d: DurableState, upto: number): Map<string, RecordState> {
  const recs = new Map(d.base.records);
  for (const e of d.entries) {
    if (e.index > upto) break;
    for (const op of e.ops) if (op.kind !== 'admit' && op.kind !== 'charter') recs.set(op.id, transition(recs.get(op.id), op) as RecordState);
  }
  return recs;
}

/** The payload of the last entry up to `upto` that carried one (the snapshot's, when none of the entries did). */
export function lastPayloadAt(d: DurableState, upto: number): Uint8Array {
  let p = d.base.lastPayload;
  for (const e of d.entries) {
    if (e.index > upto) break;
    if (e.payload.length > 0) p = e.payload;
  }
  return p;
}

/** Checks `ops` in order against `recs` (updated in place) under configuration `cfg`; the first broken rule's code, or null. */
export function checkOps(recs: Map<string, RecordState>, cfg: Config, ops: readonly Op[], maxChanges = 1): FleetCodeValue | null {
  for (const op of ops) {
    if (op.kind === 'admit') {
      if (!isMemberOf(cfg, op.member) || op.incarnation.length !== INCARNATION_BYTES) return FleetCode.TransitionNotAllowed;
      if (ops.length !== 1) return FleetCode.TransitionNotAllowed; // an Admit is alone in its entry
      continue;
    }
    if (op.kind === 'charter') {
      // alone in its entry; a change that breaks the charter rules is refused
      if (ops.length !== 1 || !checkCharterChange(cfg, op, maxChanges)) return FleetCode.TransitionNotAllowed;
      continue;
    }
    const next = transition(recs.get(op.id), op);
    if (typeof next === 'number') return next;
    recs.set(op.id, next);
  }
  return null;
}

/** Why `e` can not be appended at this member's tip, or null: index, chain, own hash, every op against own records and configuration. */
export function checkAppend(d: DurableState, e: Entry, maxChanges = 1): FleetCodeValue | null {
  const tip = tipOf(d);
  if (e.index !== tip.index + 1) return FleetCode.WrongIndex;
  if (!sameBytes(e.prevHash, tip.hash)) return FleetCode.WrongPrevHash;
  if (!sameBytes(e.hash, entryHash(e.prevHash, e.index, e.view, e.ops, e.payload))) return FleetCode.WrongPrevHash;
  return checkOps(recordsAt(d, tip.index), configAt(d, tip.index), e.ops, maxChanges);
}

/** Checks a chain of entries starting right after `from` (hash `fromHash`), each against the state it follows. */
export function checkChain(d: DurableState, entries: readonly Entry[], maxChanges = 1): FleetCodeValue | null {
  let cur = d;
  for (const e of entries) {
    const why = checkAppend(cur, e, maxChanges);
    if (why !== null) return why;
    cur = { ...cur, entries: [...cur.entries, e] };
  }
  return null;
}

/**
 * Folds committed entries older than `keep` behind the commit point into the snapshot, never past
 * `floor` (the entries whose payload the member has not yet applied stay in the log).
 */
export function compact(d: DurableState, keep: number, floor = Number.MAX_SAFE_INTEGER): DurableState {
  const upto = Math.min(d.commit - keep, floor);
  if (upto <= d.base.index) return d;
  const hash = hashAt(d, upto)!;
  return {
    ...d,
    base: { index: upto, hash, config: configAt(d, upto), records: recordsAt(d, upto), lastPayload: lastPayloadAt(d, upto) },
    entries: d.entries.filter((e) => e.index > upto),
  };
}

/** (normalView, tip index) order: which of two logs is more up to date (VR Revisited §4.2). */
export function newer(a: { normalView: number; tip: number }, b: { normalView: number; tip: number }): boolean {
  return a.normalView !== b.normalView ? a.normalView > b.normalView : a.tip > b.tip;
}
