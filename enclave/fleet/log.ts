/**
 * A member's durable state (its NVRAM and storage in a real device) and the pure functions on it:
 * the log tip, the records and configuration at an index, the check of an entry against the
 * member's own state (docs/fleet.md, "What a member checks"), and compaction of the committed
 * prefix into a snapshot. Nothing here is in RAM only: the incarnation is not part of it.
 */
import { FleetCode, type FleetCodeValue } from './faults.ts';
import { transition, type Op, type RecordState } from './rules.ts';
import { entryHash, GENESIS_HASH, INCARNATION_BYTES, NO_PAYLOAD, sameBytes, type Config, type Entry, type Snapshot } from './wire.ts';

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

/** The state of a member of an `n`-member fleet before any entry: epoch 0, nobody admitted. */
export function genesis(member: number, n: number): DurableState {
  return {
    member,
    view: 0,
    normalView: 0,
    commit: 0,
    base: { index: 0, hash: GENESIS_HASH, config: { epoch: 0, admitted: new Array<null>(n).fill(null) }, records: new Map(), lastPayload: NO_PAYLOAD },
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
  if (op.kind !== 'admit') return c;
  const admitted = [...c.admitted];
  admitted[op.member] = op.incarnation;
  return { epoch: c.epoch, admitted };
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
    for (const op of e.ops) if (op.kind !== 'admit') recs.set(op.id, transition(recs.get(op.id), op) as RecordState);
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

/** Checks `ops` in order against `recs` (updated in place); the first broken rule's code, or null. */
export function checkOps(recs: Map<string, RecordState>, n: number, ops: readonly Op[]): FleetCodeValue | null {
  for (const op of ops) {
    if (op.kind === 'admit') {
      if (!Number.isInteger(op.member) || op.member < 0 || op.member >= n || op.incarnation.length !== INCARNATION_BYTES) return FleetCode.TransitionNotAllowed;
      if (ops.length !== 1) return FleetCode.TransitionNotAllowed; // an Admit is alone in its entry
      continue;
    }
    const next = transition(recs.get(op.id), op);
    if (typeof next === 'number') return next;
    recs.set(op.id, next);
  }
  return null;
}

/** Why `e` can not be appended at this member's tip, or null: index, chain, own hash, every op against own records. */
export function checkAppend(d: DurableState, e: Entry): FleetCodeValue | null {
  const tip = tipOf(d);
  if (e.index !== tip.index + 1) return FleetCode.WrongIndex;
  if (!sameBytes(e.prevHash, tip.hash)) return FleetCode.WrongPrevHash;
  if (!sameBytes(e.hash, entryHash(e.prevHash, e.index, e.view, e.ops, e.payload))) return FleetCode.WrongPrevHash;
  return checkOps(recordsAt(d, tip.index), d.base.config.admitted.length, e.ops);
}

/** Checks a chain of entries starting right after `from` (hash `fromHash`), each against the state it follows. */
export function checkChain(d: DurableState, entries: readonly Entry[]): FleetCodeValue | null {
  let cur = d;
  for (const e of entries) {
    const why = checkAppend(cur, e);
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
