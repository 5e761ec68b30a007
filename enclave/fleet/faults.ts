/**
 * The fleet's typed faults: why a member refused a message from another member or a change.
 * Stable codes in 2500-2599 (the range the fleet takes in enclave/api/codes.ts `CODE_RANGES`);
 * never renumber, add at the end. A refusal is a value in the member's output, never a throw:
 * the member keeps serving (docs/fleet.md, "Refusals").
 */
import { CodedError, type CodeOf } from '../api/codes.ts';

export const FleetCode = {
  /** The MAC under the key of (sender, receiver) does not verify: forged, altered on the way, or made by another member in the sender's name (keys.ts). */
  BadMac: 2501,
  /** The sender or receiver is not a member id of this fleet, or the message names me as sender. */
  UnknownMember: 2502,
  /** Addressed to another incarnation of this member (sent to a process that no longer runs). */
  WrongIncarnation: 2503,
  /** A sequence number already seen from that sender's incarnation: a replay or a duplicate. */
  Replay: 2504,
  /** The sender's incarnation is not the one the configuration admits for its id (retired, or booted and not yet admitted). */
  NotAdmitted: 2505,
  /** A view older than this member's (a deposed leader, a delayed message). */
  StaleView: 2506,
  /** An epoch other than this member's configuration (before a re-form, or a re-form this member is not part of). */
  StaleEpoch: 2507,
  /** The sender is not the leader of the message's view. */
  NotLeader: 2508,
  /** A log entry whose index is not this member's tip + 1. */
  WrongIndex: 2509,
  /** A log entry whose previous hash is not this member's tip hash, or whose own hash does not match its content. */
  WrongPrevHash: 2510,
  /** An operation whose base version is not this member's version of the record. */
  BaseVersion: 2511,
  /** A transition the vault rules do not allow (a charge past the limit, a reset with nothing charged, ...). */
  TransitionNotAllowed: 2512,
  /** A log or snapshot older than what this member already holds (it never goes back). */
  StaleCatchup: 2513,
  /** The message does not fit this member's state (not awaited, wrong status). */
  Unexpected: 2514,
  /** This incarnation was retired by an Admit of another incarnation of its id: it serves nothing. */
  Retired: 2515,
  // the decoder (codec.ts, wire.ts): a message that is not one well-formed message of this wire format
  /** The message or a field ends before its length says. */
  Truncated: 2516,
  /** Bytes after the last field of a body. */
  TrailingBytes: 2517,
  /** A message type tag this format does not have. */
  UnknownType: 2518,
  /** An op kind this format does not have. */
  UnknownOp: 2519,
  /** A wire version other than this member's. */
  WireVersion: 2520,
  /** A message longer than the longest the bounds allow. */
  TooLarge: 2521,
  /** A count above its bound (ops per entry, entries per catch-up, records per snapshot, admitted members): refused before any item is read. */
  TooMany: 2522,
  /** A length above its bound (a record id, an op). */
  TooLong: 2523,
  /** A length below its minimum (an empty record id or op). */
  TooShort: 2524,
  /** A value out of its range: a number above 2^53 - 1 or its field's limit, a presence byte, a record status, a record id not UTF-8, snapshot records out of order. */
  BadValue: 2525,
  // the key ceremony (ceremony.ts): thrown to the operator's call, never a member's message output
  /** The charter's member count is not 3, 5 or 7, its founder is not one of them, or an identity appears twice. */
  BadCharter: 2526,
  /** No operator secret is provisioned in this device: a fleet can not be formed without one. */
  NoOperatorSecret: 2527,
  /** The operator secret given does not hash to the one provisioned in this device. */
  WrongOperatorSecret: 2528,
  /** This device's identity is not the charter's identity for the member it is asked to be. */
  NotInCharter: 2529,
  /** The grant is addressed to another member (or the founder was handed one). */
  GrantWrongMember: 2530,
  /** The grant does not open: not made by the charter's founder for this member of this charter, or altered. */
  BadGrant: 2531,
  /** A batch proposed as one entry while another entry is outstanding or intents are queued: the leader takes one at a time (member.ts submitBatch). */
  Busy: 2532,
  /** A charter change this member's device was not given the operator's approval for: as leader it does not propose it (member.ts approveCharter). */
  CharterNotApproved: 2533,
} as const;

export type FleetCodeValue = CodeOf<typeof FleetCode>;

/** A refusal, carried as a value in a member's output. Its message is fixed text: never a secret. */
export class FleetFault extends CodedError<FleetCodeValue> {
  override readonly name = 'FleetFault';
  constructor(
    code: FleetCodeValue,
    message: string,
    readonly from?: number,
  ) {
    super(code, message);
  }
}

const NAMES = new Map<number, string>(Object.entries(FleetCode).map(([k, v]) => [v, `Fleet.${k}`]));
/** A readable name for a fleet code (`Fleet.BadMac`). */
export function fleetFaultName(code: number): string {
  return NAMES.get(code) ?? `Fleet.${code}`;
}
