/**
 * The messages fleet members send each other, as values: the log entry, the configuration, the
 * snapshot of a committed prefix, and one body per message type (docs/fleet.md, "Messages").
 * Their bytes: codec.ts (bodies) and wire.ts (the envelope: header, MAC).
 */
import type { Op, RecordState } from './rules.ts';

export const INCARNATION_BYTES = 16;
export const HASH_BYTES = 32;
export const MAC_BYTES = 32;
/** The receiver incarnation of a message that any incarnation of the receiver may take. */
export const ANY_INCARNATION = new Uint8Array(INCARNATION_BYTES);
export const GENESIS_HASH = new Uint8Array(HASH_BYTES);

/**
 * The members of a charter (docs/fleet.md, "Membership changes"): its serial number (the founding
 * charter's is 0) and the device identity at each member id, null where the id was removed. Ids
 * are never reused: an added member takes the next id.
 */
export interface CharterState {
  readonly serial: number;
  readonly identities: readonly (Uint8Array | null)[];
}

/**
 * Member id → admitted incarnation (null: none admitted for that id; as long as the charter's
 * identities), and the charter in force (the founding one, serial 0, from the key ceremony).
 */
export interface Config {
  readonly epoch: number;
  readonly admitted: readonly (Uint8Array | null)[];
  readonly charter: CharterState;
}

export interface Entry {
  readonly index: number;
  /** The view in which the entry was proposed (part of its hash; never rewritten). */
  readonly view: number;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
  readonly ops: readonly Op[];
  /** Opaque to the replication rule, covered by the hash (codec.ts MAX_PAYLOAD_BYTES): a vault batch's writes; empty otherwise. */
  readonly payload: Uint8Array;
}

/** The committed prefix folded: records and configuration after entry `index`, whose chain hash is `hash`. */
export interface Snapshot {
  readonly index: number;
  readonly hash: Uint8Array;
  readonly config: Config;
  readonly records: ReadonlyMap<string, RecordState>;
  /** The payload of the last folded entry that carried one (empty if none): a vault's seat reads the last batch number the snapshot holds from it (enclave/vault/fleet-seat.ts). */
  readonly lastPayload: Uint8Array;
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
  | { readonly type: 'reformAccept'; readonly epoch: number; readonly setHash: Uint8Array; readonly tip: number; readonly tipHash: Uint8Array }
  /** Before moving to `view`: "have you heard no leader either?" (view-change.ts `seekView`). */
  | { readonly type: 'preVote'; readonly epoch: number; readonly view: number }
  /** The answer of a member that heard no leader: the sender may count it towards moving to `view`. */
  | { readonly type: 'preVoteGrant'; readonly epoch: number; readonly view: number };

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
  preVote: 11,
  preVoteGrant: 12,
};

/** What the header of a message says: its type, sender and receiver (ids and incarnations), sequence number. */
export interface Header {
  readonly type: MessageType;
  readonly from: number;
  readonly to: number;
  readonly fromInc: Uint8Array;
  readonly toInc: Uint8Array;
  /** Grows per sender incarnation (a receiver takes each once). */
  readonly seq: number;
}

/** A message as a member reads it, once its MAC verified and its body decoded. */
export interface Envelope extends Omit<Header, 'type'> {
  readonly body: Body;
}
