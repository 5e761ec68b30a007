/**
 * The vault's seat in the fleet (docs/fleet-vault.md): the fleet core of this member's device
 * (enclave/fleet/member.ts) and what the batch protocol (batch.ts) asks of it. With a seat, the
 * vault's rule "a guess is charged durably before KE2 leaves" reads "durably" as "in the logs of
 * a majority of members":
 *
 *   leader     a batch is computed only when this member leads a normal view, its log is all
 *              committed and its vault has applied every batch the log carries (`mayPropose`);
 *              when the batch becomes pending, its changes and sealed writes go to the log as one
 *              entry (`propose`: the entry's payload, covered by the entry hash and the message
 *              MACs); `Commit(e)` answers only once that very entry is committed (`fate`).
 *   follower   `Apply(e)` is taken only when it is the committed entry of the log that carries
 *              batch e, byte for byte (`committedBatch`): a host can not replay a batch the log
 *              does not hold, reorder batches, or hand a follower an entry a minority holds.
 *   both       the log keeps every entry whose batch this vault has not yet applied (`applied`
 *              tells the member's core), so a committed batch is never folded away
 *              before this member stored it.
 *
 * A batch's number (its epoch, the epoch of the blobs it seals) is its place among the log's
 * vault batches: a leader proposes batch e only after applying e - 1, so every member applies the
 * same batches in the same order and stores the same blobs. The payload: the vault epoch, the
 * changes (Prepared's `ops`) and the writes (record id, sealed blob), in enclave/api/codec.ts's
 * canonical encoding; its ids name records in the fleet's rules as the hex of SHA-256(record id).
 *
 * The fleet's messages reach the seat through the device's host (`receive`, `tick`); what the
 * member sends is collected in `outbox`. This slice runs the seat in the vault's own thread
 * (VaultOptions.fleet); the host requests that carry fleet messages into a device are the next.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytes, decodeFields, encodeFields, fixed, list, u53, u8 } from '../api/codec.ts';
import { EnclaveFault, Handling } from '../api/codes.ts';
import { MAX_BATCH_OPS, MAX_RECORD_ID, MAX_SEALED_RECORD } from '../api/messages.ts';
import { fleetFaultName, type FleetCodeValue } from '../fleet/faults.ts';
import { recordsAt, tipOf } from '../fleet/log.ts';
import type { Member, Output } from '../fleet/member.ts';
import type { Intent } from '../fleet/rules.ts';
import { sameBytes, type Entry } from '../fleet/wire.ts';
import { ctEqual, toHex } from '../opaque/bytes.ts';
import { CHANGE_TAGS, type ChangeOp } from './fleet-change.ts';

/** A vault batch as the log carries it. */
export interface LoggedBatch {
  readonly epoch: number;
  /** The record index after the batch (its count of live records and AdHash sum, as the leader's NVRAM intent holds them): what a member that loads stored rows to catch up checks them against. */
  readonly count: number;
  readonly sum: Uint8Array;
  readonly ops: readonly ChangeOp[];
  readonly writes: readonly { readonly recordId: Uint8Array; readonly blob: Uint8Array }[];
}

const PAYLOAD_SCHEMA = [
  ['epoch', u53],
  ['count', u53],
  ['sum', fixed(32)],
  ['ops', list([['recordId', bytes(1, MAX_RECORD_ID)], ['change', u8], ['base', u53], ['limit', u8]] as const, MAX_BATCH_OPS)],
  ['writes', list([['recordId', bytes(1, MAX_RECORD_ID)], ['blob', bytes(0, MAX_SEALED_RECORD)]] as const, MAX_BATCH_OPS)],
] as const;

export function encodeBatchPayload(b: LoggedBatch): Uint8Array {
  return encodeFields(PAYLOAD_SCHEMA, { epoch: b.epoch, count: b.count, sum: b.sum, ops: b.ops.map((o) => ({ ...o })), writes: b.writes.map((w) => ({ ...w })) });
}

export function decodeBatchPayload(p: Uint8Array): LoggedBatch {
  return decodeFields(PAYLOAD_SCHEMA, p, 'fleet batch');
}

/** The id the fleet's rules know a vault record by: hex of SHA-256(record id), 64 characters. */
export function fleetIdOf(recordId: Uint8Array): string {
  return toHex(sha256(recordId));
}

const KINDS = new Map<number, Intent['kind']>(Object.entries(CHANGE_TAGS).map(([k, t]) => [t, k as Intent['kind']]));

/** A change as the fleet's intent (the leader's core fills in base and guess from its own records, and they must agree). */
function intentOf(op: ChangeOp): Intent {
  const id = fleetIdOf(op.recordId);
  const kind = KINDS.get(op.change);
  switch (kind) {
    case 'register':
    case 'replace':
      return { kind, id, limit: op.limit };
    case 'charge':
    case 'reset':
      return { kind, id, session: 0 };
    case 'touch':
    case 'lock':
    case 'delete':
      return { kind, id };
    default:
      throw refused(`unknown change ${op.change}`);
  }
}

const refused = (why: string): EnclaveFault => new EnclaveFault(Handling.FleetRefused, `the fleet does not take this batch: ${why}`, 'epoch');

export type Fate = 'committed' | 'pending' | 'lost';

export class FleetSeat {
  /** Messages the member sends, sealed; the host takes them (`takeOutbox`). */
  private outbox: Uint8Array[] = [];
  /** Refusals and events the member reported, for the host's counters and tests. */
  readonly faults: { code: FleetCodeValue; name: string; from?: number }[] = [];
  /** This vault's batches proposed and not yet applied: vault epoch → the entry that carries it. */
  private readonly proposed = new Map<number, { index: number; hash: Uint8Array }>();
  /** The vault's committed epoch, as the vault last told (`applied`). */
  private vaultEpoch = 0;
  private readonly decoded = new WeakMap<Entry, LoggedBatch>();
  private readonly decodedHeld = new WeakMap<Uint8Array, LoggedBatch>();

  constructor(
    readonly member: Member,
    private readonly clock: () => number,
  ) {
    // the log keeps what this vault has not applied (compaction, a re-form's held payloads)
    member.setApplied((p) => this.payloadEpoch(p) <= this.vaultEpoch);
  }

  private readonly epochs = new WeakMap<Uint8Array, number>();
  private payloadEpoch(p: Uint8Array): number {
    let e = this.epochs.get(p);
    if (e === undefined) {
      e = decodeBatchPayload(p).epoch;
      this.epochs.set(p, e);
    }
    return e;
  }

  // ---- the host side: the fleet's messages in and out ----------------------------------------

  receive(msg: Uint8Array): void {
    this.take(this.member.receive(msg, this.clock()));
  }
  tick(): void {
    this.take(this.member.tick(this.clock()));
    // a vault that is behind neither applies nor computes a batch: as leader it would hold the
    // fleet up until it copied rows, so it hands the lead on (docs/fleet-vault.md)
    if (this.member.isLeader() && this.behind()) this.take(this.member.stepDown(this.clock()));
  }
  /** The output of a call the device made on the member itself (a charter change it proposed: hsm/fleet/charters.ts). */
  takeOutput(out: Output): void {
    this.take(out);
  }
  takeOutbox(): Uint8Array[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** The next committed batch this vault has to apply (a follower's Apply), if the log holds one. */
  nextToApply(): LoggedBatch | null {
    const next = this.vaultEpoch + 1;
    if (this.proposed.has(next)) return null; // its own pending batch: Commit, not Apply
    const f = this.find(next);
    if (f) return f.committed ? f.batch : null;
    // behind: the first committed batch the log still holds; the vault takes it only if its
    // records are the state the folded batches left (batch.ts catchUpInPlace), else it refuses
    if (!this.behind()) return null;
    const d = this.member.durable;
    for (const x of d.entries) {
      const b = this.batchOf(x);
      if (b && b.epoch > next && x.index <= d.commit) return b;
    }
    return null;
  }

  // ---- what batch.ts asks ---------------------------------------------------------------------

  /** Why this member may not compute batch `epoch` now, or null (see the header: leader rule). */
  whyNotPropose(epoch: number): string | null {
    if (!this.member.isLeader()) return 'this member does not lead the fleet';
    const d = this.member.durable;
    if (tipOf(d).index !== d.commit) return 'an entry of the log is not committed yet';
    if (this.vaultEpoch !== epoch - 1) return `the vault is at batch ${this.vaultEpoch}, not ${epoch - 1}`;
    const logged = this.loggedEpoch();
    if (logged >= epoch) return `the log carries batch ${logged}, which this vault has not applied`;
    return null;
  }

  /**
   * The batches the fleet committed that this member's log still names, latest first (its
   * committed entries, then the last one folded into its snapshot): the states a member that is
   * behind may adopt by loading stored rows that match one's count and sum (vault.ts loadEnd).
   */
  committedAnchors(): LoggedBatch[] {
    const d = this.member.durable;
    const out: LoggedBatch[] = [];
    for (let i = d.entries.length - 1; i >= 0; i--) {
      const e = d.entries[i]!;
      if (e.index > d.commit) continue;
      const b = this.batchOf(e);
      if (b) out.push(b);
    }
    for (const b of this.held().reverse()) out.push(b);
    if (d.base.lastPayload.length > 0) out.push(decodeBatchPayload(d.base.lastPayload));
    return out;
  }

  /**
   * Whether batch `epoch` is one of `committedAnchors()` in the state this member has written
   * (its commit point written too): what a device booted again from that state checks a copy of
   * stored rows at that batch against. A follower learns a commit after the member it copies
   * from did, and writes it later still, so a copy taken the moment it arrives is often one batch
   * past the written log (vault-node.ts waits for this first).
   */
  namesCommitted(epoch: number): boolean {
    if (this.committedBatch(epoch)) return true; // find() writes the commit point that covers it
    const d = this.member.durable;
    if (d.base.lastPayload.length === 0 || decodeBatchPayload(d.base.lastPayload).epoch !== epoch) return false;
    this.member.persistCommit(d.commit);
    return true;
  }

  /** The last batch number the log holds: in its entries, or folded into its snapshot. */
  loggedEpoch(): number {
    const d = this.member.durable;
    for (let i = d.entries.length - 1; i >= 0; i--) {
      const b = this.batchOf(d.entries[i]!);
      if (b) return b.epoch;
    }
    const held = this.held();
    if (held.length > 0) return held[held.length - 1]!.epoch;
    return d.base.lastPayload.length > 0 ? decodeBatchPayload(d.base.lastPayload).epoch : 0;
  }

  /**
   * Whether the log folded batches this vault has not applied into its snapshot (a catch-up by
   * snapshot, or a whole fleet's re-form): the vault can not apply them from the log, so it
   * neither applies nor leads until it catches up by stored rows (docs/fleet-vault.md).
   */
  behind(): boolean {
    const next = this.vaultEpoch + 1;
    return this.loggedEpoch() >= next && this.find(next) === null;
  }

  /** The batch becomes the next entry of the log (its prepares go out); an EnclaveFault when the fleet refuses it. */
  propose(b: LoggedBatch): void {
    const why = this.whyNotPropose(b.epoch);
    if (why !== null) throw refused(why);
    // the core turns each change into its op against its own records: the versions must be the vault's
    const d = this.member.durable;
    const recs = recordsAt(d, tipOf(d).index);
    const version = new Map<string, number>();
    for (const op of b.ops) {
      const id = fleetIdOf(op.recordId);
      const v = version.get(id) ?? recs.get(id)?.version ?? 0;
      if (op.base !== v) throw new EnclaveFault(Handling.FleetRefused, `the fleet log holds version ${v} of a record the vault read at ${op.base}`, 'ops');
      version.set(id, v + 1);
    }
    const { out, index } = this.member.submitBatch(b.ops.map(intentOf), encodeBatchPayload(b), this.clock());
    this.take(out);
    if (typeof index !== 'number') throw refused(fleetFaultName(index.code));
    const tip = tipOf(this.member.durable);
    if (tip.index !== index) throw refused('the entry is not at the tip of the log');
    this.proposed.set(b.epoch, { index, hash: tip.hash });
  }

  /** What became of this vault's proposed batch `epoch`: committed (a majority holds that very entry), still pending, or lost to a view change. */
  fate(epoch: number): Fate {
    const p = this.proposed.get(epoch);
    if (!p) return 'lost';
    const d = this.member.durable;
    const e = d.entries.find((x) => x.index === p.index);
    // not in the log's entries: folded into its snapshot (committed, if the chain hash there is this entry's), or cut by a view change
    if (!e) return p.index === d.base.index && sameBytes(d.base.hash, p.hash) ? this.durablyCommitted(p.index) : 'lost';
    if (!sameBytes(e.hash, p.hash)) return 'lost';
    return e.index <= d.commit ? this.durablyCommitted(e.index) : 'pending';
  }

  /** 'committed', once the member's written state says so (Member.persistCommit): the host persists what it hears committed. */
  private durablyCommitted(index: number): 'committed' {
    this.member.persistCommit(index);
    return 'committed';
  }

  /** The committed entry carrying batch `epoch`, or null: what an Apply must be, byte for byte. */
  committedBatch(epoch: number): LoggedBatch | null {
    const f = this.find(epoch);
    return f?.committed ? f.batch : null;
  }

  /** Whether an Apply request is exactly the committed batch `epoch` of the log. */
  matchesCommitted(epoch: number, ops: readonly ChangeOp[], writes: readonly { recordId: Uint8Array; blob: Uint8Array }[]): boolean {
    const b = this.committedBatch(epoch);
    if (!b || b.ops.length !== ops.length || b.writes.length !== writes.length) return false;
    const sameOp = (x: ChangeOp, y: ChangeOp) => ctEqual(x.recordId, y.recordId) && x.change === y.change && x.base === y.base && x.limit === y.limit;
    return b.ops.every((o, i) => sameOp(o, ops[i]!)) && b.writes.every((w, i) => ctEqual(w.recordId, writes[i]!.recordId) && ctEqual(w.blob, writes[i]!.blob));
  }

  /** The vault's committed epoch (at load, and after each Commit): later batches stay in the log until applied. */
  applied(epoch: number, loaded = false): void {
    this.vaultEpoch = epoch;
    if (loaded) this.proposed.clear();
    else this.proposed.delete(epoch);
    this.member.releaseHeld((p) => this.payloadEpoch(p) > epoch);
  }

  get appliedEpoch(): number {
    return this.vaultEpoch;
  }

  // ---- the log's vault batches ----------------------------------------------------------------

  private batchOf(e: Entry): LoggedBatch | null {
    if (e.payload.length === 0) return null;
    let b = this.decoded.get(e);
    if (!b) {
      b = decodeBatchPayload(e.payload);
      this.decoded.set(e, b);
    }
    return b;
  }

  /** Batch `epoch` where this member's log holds it: an entry (committed when at or below the commit point), or a payload a re-form folded before the vault applied it (committed). */
  private find(epoch: number): { batch: LoggedBatch; committed: boolean } | null {
    const e = this.entryOf(epoch);
    if (e) {
      const committed = e.entry.index <= this.member.durable.commit;
      // a committed batch is handed to the host (Apply, then its store) only once the written state holds its commit
      if (committed) this.member.persistCommit(e.entry.index);
      return { batch: e.batch, committed };
    }
    const h = this.held().find((b) => b.epoch === epoch);
    return h ? { batch: h, committed: true } : null;
  }

  private held(): LoggedBatch[] {
    return this.member.durable.held.map((p) => {
      let b = this.decodedHeld.get(p);
      if (!b) {
        b = decodeBatchPayload(p);
        this.decodedHeld.set(p, b);
      }
      return b;
    });
  }

  /** The entry of this member's log that carries batch `epoch` (the last one, after a view change replaced a suffix). */
  private entryOf(epoch: number): { entry: Entry; batch: LoggedBatch } | null {
    const entries = this.member.durable.entries;
    for (let i = entries.length - 1; i >= 0; i--) {
      const b = this.batchOf(entries[i]!);
      if (b && b.epoch === epoch) return { entry: entries[i]!, batch: b };
    }
    return null;
  }

  private take(out: Output): void {
    for (const m of out.send) this.outbox.push(m);
    for (const f of out.faults) this.faults.push({ code: f.code, name: fleetFaultName(f.code), ...(f.from !== undefined && { from: f.from }) });
  }
}

