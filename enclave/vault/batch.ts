/**
 * The batch commit protocol: where the vault's central rule is kept.
 *
 *   A guess is charged durably before KE2 leaves.
 *
 * LoginStart (ops.ts) charges its guess in the record it writes; this file makes that write
 * durable before any answer of its batch leaves the enclave. Invariant: an op's answer (`results`)
 * leaves only in `Committed`, from `commit()` below, and only after
 *   1. `Batch`/`Prepare` wrote the batch's intent to NVRAM (the index's count and sum once its
 *      writes are in) before answering `Prepared` (the writes and audit events, no answer), and
 *   2. `Commit` made that intent the committed state in NVRAM (the host sends it once it has
 *      persisted the writes).
 * From 1 on, a load accepts storage only at the committed state or at the intent (record-index.ts),
 * so storage without the charged record is refused as a rollback; after 2 only the charged state
 * loads. `Abort` drops the answers with the batch. Room for what a batch puts in the tables is
 * taken while it is computed (sessions.ts), so nothing fails once `Commit` has written NVRAM.
 * Pinned by test/enclave/vault/integrity.test.ts ("once a KE2 is out ...", "crash at every step of a
 * batch", "crash with a batch staged behind the pending one"), test/enclave/vault/capacity.test.ts (room
 * taken at compute, given back on Abort), test/enclave/vault/vault.test.ts (guesses charged, never more than the
 * limit under concurrent logins) and test/enclave/vault/audit.test.ts (what the host holds before Commit).
 *
 * Messages:
 *   Batch(e)   -> every op runs (compute.ts) against the record the enclave expects, its writes
 *                 sealed with epoch e; the intent goes to NVRAM; answer Prepared(e, writes, audit):
 *                 one write per record, its last version in the batch.
 *   Commit(e)  -> NVRAM: the intent committed; the index takes the batch; answer Committed(results).
 *   Abort(e)   -> the host could not persist: the batch is dropped (its stages and sessions die).
 * Overlap (the device works while the host persists): a Batch(e+1) that arrives while batch e is
 * prepared and not yet committed is run at once and held as staged (answer Staged(e+1)): nothing
 * goes to NVRAM and no answer leaves. It may not touch a record of batch e (the whole Batch is
 * refused), so every op sees exactly the state it would see after Commit(e): records batch e did
 * not change, and no session or stage batch e's commit would add for them. Commit(e) writes the
 * staged batch's intent in the same NVRAM write; Prepare(e+1) then answers Prepared(e+1) as Batch
 * would have, and Commit(e+1) goes as usual. Abort(e) drops the staged batch too.
 * A fleet member (a FleetSeat, fleet-seat.ts): "durably" also means "in the logs of a majority":
 * a batch becomes a log entry as it becomes pending, Commit(e) answers only once that entry is
 * committed (FleetNotCommitted before), only a member that leads and has applied the whole log
 * computes a batch (FleetRefused), and Apply(e) is taken only as the log's committed batch e.
 */
import { EnclaveFault, Handling } from '../api/codes.ts';
import type { HostResponse } from '../api/messages.ts';
import { ctEqual, toHex } from '../opaque/bytes.ts';
import { addInto, subInto } from './adhash.ts';
import type { TokenVerifier } from '../api/auth-verify.ts';
import type { NvramSlot, NvramState } from './nvram-state.ts';
import { admit, computeOp } from './compute.ts';
import { checkApply, type ApplyRequest } from './apply.ts';
import type { Admitted, BatchRequest, Effects, VaultParts } from './compute.ts';
import type { FleetSeat } from './fleet-seat.ts';

type Prepared = Extract<HostResponse, { type: 'Prepared' }>;

/** A computed batch: its effects, and its writes for the host. */
interface Computed {
  fx: Effects;
  writes: Prepared['writes'];
  /** A staged batch whose intent went to NVRAM with its predecessor's commit (one write for both). */
  intentWritten: boolean;
  /** A follower's Apply of a committed batch of the fleet's log (no proposal of its own to wait for). */
  applied?: boolean;
  /** A staged batch's intent, computed by its predecessor's commit (what its fleet entry carries). */
  intent?: NvramSlot;
}

/** What the protocol needs of the vault around it (vault.ts): its NVRAM state and the issuer policy in force. */
export interface VaultLink {
  nv(): NvramState;
  /** Writes and adopts the NVRAM state; on failure the vault needs a reload and this Batches is dropped. */
  writeNvram(next: NvramState): Promise<void>;
  verifier(): TokenVerifier;
  /** The laxest guess pacing a registration may pick (AuthConfig.minPacing). */
  minPacing(): number;
  /** A fleet member: its batches name their changes (Prepared's `ops`; VaultOptions.fleet). */
  fleet(): boolean;
  /** A fleet member's seat in the fleet's log (fleet-seat.ts): what gates its batches; null without one. */
  seat(): FleetSeat | null;
}

export const noPendingBatch = (): EnclaveFault => new EnclaveFault(Handling.NoBatchPending, 'no pending batch with this epoch', 'epoch');

const preparedOf = (c: Computed): Prepared => ({ type: 'Prepared', epoch: c.fx.epoch, writes: c.writes, audit: c.fx.audit, ops: c.fx.changes ?? [] });

/** The batches of a loaded vault: the one pending (prepared, not committed) and the one staged behind it. */
export class Batches {
  private pending: Computed | null = null;
  /**
   * A batch computed while `pending` waits for its Commit: no NVRAM intent until that Commit writes
   * it together with the commit (`intentWritten`); its Prepare then makes it pending.
   */
  private staged: Computed | null = null;

  constructor(
    private readonly v: VaultParts,
    private readonly vault: VaultLink,
  ) {}

  async batch(req: BatchRequest): Promise<HostResponse> {
    if (this.staged) throw new EnclaveFault(Handling.BatchOutOfOrder, 'a batch is already staged', 'epoch');
    // Each op's record id as hex, once: the overlap check here and the batch's maps (compute.ts).
    const idHex = req.ops.map((op) => toHex(op.recordId));
    const base = this.pending;
    const seat = this.vault.seat();
    if (seat && !seat.member.isLeader()) throw new EnclaveFault(Handling.FleetRefused, 'this member does not lead the fleet', 'epoch');
    if (base) {
      // Overlap: run it now, hold it until the pending batch is committed (Prepare).
      if (req.epoch !== base.fx.epoch + 1) throw new EnclaveFault(Handling.BatchOutOfOrder, 'a batch is already pending', 'epoch');
      if (idHex.some((h) => base.fx.touched.has(h))) {
        throw new EnclaveFault(Handling.BatchOutOfOrder, 'a record of the pending batch can not be in the batch behind it', 'ops');
      }
      const admitted = await admit(this.v, this.vault.verifier(), req);
      const intent = this.vault.nv().intent!;
      this.staged = this.run(req, idHex, admitted, intent.auditSeq, intent.auditHead);
      return { type: 'Staged', epoch: req.epoch };
    }
    if (seat) await this.catchUpInPlace();
    const committed = this.vault.nv().committed;
    if (req.epoch !== committed.epoch + 1) throw new EnclaveFault(Handling.BatchOutOfOrder, `expected epoch ${committed.epoch + 1}`, 'epoch');
    const why = seat?.whyNotPropose(req.epoch) ?? null;
    if (why !== null) throw new EnclaveFault(Handling.FleetRefused, `the fleet does not take this batch: ${why}`, 'epoch');
    const admitted = await admit(this.v, this.vault.verifier(), req);
    return this.prepareComputed(this.run(req, idHex, admitted, committed.auditSeq, committed.auditHead));
  }

  /**
   * Apply(e): a fleet leader's batch, checked against this member's records (apply.ts) instead of
   * computed, then made durable by the same rule: its intent to NVRAM, Prepared, the host persists,
   * Commit. Nothing to answer (no client op ran here). Not overlapped: nothing may be pending.
   */
  async apply(req: ApplyRequest): Promise<HostResponse> {
    if (this.pending || this.staged) throw new EnclaveFault(Handling.BatchOutOfOrder, 'a batch is pending', 'epoch');
    await this.catchUpInPlace();
    const committed = this.vault.nv().committed;
    if (req.epoch !== committed.epoch + 1) throw new EnclaveFault(Handling.BatchOutOfOrder, `expected epoch ${committed.epoch + 1}`, 'epoch');
    const seat = this.vault.seat();
    if (seat && !seat.matchesCommitted(req.epoch, req.ops, req.writes)) {
      throw new EnclaveFault(Handling.ApplyRefused, `replicated batch refused: not the committed batch ${req.epoch} of the fleet's log`, 'epoch');
    }
    const fx = checkApply(this.v, req, committed.auditSeq, committed.auditHead);
    this.v.tables.begin(req.epoch, this.v.p.now());
    const writes: Prepared['writes'] = [];
    for (const o of fx.overlay.values()) writes.push({ recordId: o.recordId, blob: o.blob });
    return this.prepareComputed({ fx, writes, intentWritten: false, applied: true });
  }

  /** Prepare(e): the staged batch e, its predecessor committed, gets its intent and is prepared. */
  async prepare(epoch: number): Promise<HostResponse> {
    const s = this.staged;
    if (!s || this.pending || s.fx.epoch !== epoch || this.vault.nv().committed.epoch + 1 !== epoch) {
      throw new EnclaveFault(Handling.NoBatchPending, 'no staged batch with this epoch behind the committed one', 'epoch');
    }
    this.staged = null;
    if (!s.intentWritten) return this.prepareComputed(s);
    // Its intent is durable already (written with the commit before it): nothing more to write.
    this.v.p.failpoint?.('batch:before-intent');
    this.propose(s, s.intent!);
    this.pending = s;
    this.v.p.failpoint?.('batch:prepared');
    return preparedOf(s);
  }

  async commit(epoch: number): Promise<HostResponse> {
    const p = this.pending;
    const nv = this.vault.nv();
    const intent = nv.intent;
    if (!p || p.fx.epoch !== epoch || !intent || intent.epoch !== epoch) throw noPendingBatch();
    const seat = this.vault.seat();
    if (seat && !p.applied && seat.fate(epoch) !== 'committed') {
      throw new EnclaveFault(Handling.FleetNotCommitted, `the fleet has not committed batch ${epoch}: ${seat.fate(epoch)}`, 'epoch');
    }
    // A batch staged behind this one gets its intent in the same NVRAM write (one fdatasync for
    // both; its Prepare then writes nothing). The state written is the one a separate Prepare
    // would have left, so a crash finds nothing new: the host has none of its writes yet, and a
    // reload drops its intent.
    const s = this.staged;
    const next = s ? this.intentOf(s, intent.indexSum, intent.count) : null;
    this.v.p.failpoint?.('commit:before-nvram');
    await this.vault.writeNvram({ ...nv, committed: intent, intent: next });
    if (s) {
      s.intentWritten = true;
      s.intent = next!;
    }
    this.v.p.failpoint?.('commit:after-nvram');
    const index = this.v.index;
    for (const o of p.fx.overlay.values()) index.setByKey(o.key, o.leaf);
    this.pending = null;
    this.v.tables.commit(epoch);
    seat?.applied(epoch);
    // The only place an op's answer leaves the enclave.
    return { type: 'Committed', epoch, results: p.fx.results };
  }

  abort(epoch: number): HostResponse {
    if (this.staged && this.staged.fx.epoch === epoch) {
      this.staged = null;
      this.v.tables.abort(epoch);
      return { type: 'Aborted', epoch };
    }
    const p = this.pending;
    if (!p || p.fx.epoch !== epoch) throw noPendingBatch();
    // A staged batch was computed on the assumption that this one commits: it goes too.
    this.pending = null;
    this.staged = null;
    this.v.tables.abort(epoch);
    return { type: 'Aborted', epoch };
  }

  /**
   * A fleet member whose log folded batches its vault never applied (fleet-seat.ts `behind`: a
   * re-form or a catch-up by snapshot) while its records are exactly the state one of those
   * batches left (they wrote nothing, as a Status batch, or nothing this member lacks): the
   * latest such batch becomes its committed epoch, with nothing to load. The sum is AdHash over
   * every record's leaf, so an equal count and sum is the same set of stored blobs.
   */
  async catchUpInPlace(): Promise<void> {
    const seat = this.vault.seat();
    if (!seat || this.pending || this.staged || !seat.behind()) return;
    const nv = this.vault.nv();
    const index = this.v.index;
    for (const a of seat.committedAnchors()) {
      if (a.epoch <= nv.committed.epoch) return;
      if (index.matches(a.count, a.sum)) {
        await this.vault.writeNvram({ ...nv, committed: { ...nv.committed, epoch: a.epoch }, intent: null });
        seat.applied(a.epoch, true);
        return;
      }
    }
  }

  /**
   * A fleet leader's batch becomes the next entry of the fleet's log as it becomes pending
   * (fleet-seat.ts); refused, the batch is dropped (its stages and sessions die) and the host gets
   * the fault. Before its NVRAM intent: an entry whose intent a crash lost is applied from the log
   * once committed, like any other member's.
   */
  private propose(c: Computed, intent: NvramSlot): void {
    const seat = this.vault.seat();
    if (!seat) return;
    if (c.applied) {
      // the leader's index after the batch is this member's too, or the two hold different records
      const b = seat.committedBatch(c.fx.epoch)!;
      if (b.count !== intent.count || !ctEqual(b.sum, intent.indexSum)) {
        this.v.tables.abort(c.fx.epoch);
        throw new EnclaveFault(Handling.ApplyRefused, "replicated batch refused: this member's record index after it is not the leader's", 'epoch');
      }
      return;
    }
    try {
      seat.propose({ epoch: c.fx.epoch, count: intent.count, sum: intent.indexSum, ops: c.fx.changes ?? [], writes: c.writes });
    } catch (e) {
      this.staged = null;
      this.v.tables.abort(c.fx.epoch);
      throw e;
    }
  }

  /** Writes a computed batch's intent to NVRAM and makes it the pending batch: Prepared. */
  private async prepareComputed(c: Computed): Promise<HostResponse> {
    const index = this.v.index;
    const intent = this.intentOf(c, index.sum, index.count);
    this.v.p.failpoint?.('batch:before-intent');
    this.propose(c, intent);
    await this.vault.writeNvram({ ...this.vault.nv(), intent });
    this.pending = c;
    this.v.p.failpoint?.('batch:prepared');
    return preparedOf(c);
  }

  /**
   * A computed batch's intent: the count and sum the index will have once the batch is durable,
   * from the index's count and sum before it (the committed index, or the pending batch's intent
   * for a staged batch, whose records are all outside the pending batch).
   */
  private intentOf(c: Computed, baseSum: Uint8Array, baseCount: number): NvramSlot {
    const index = this.v.index;
    const sum = Uint8Array.from(baseSum);
    let count = baseCount;
    for (const o of c.fx.overlay.values()) {
      const old = index.getByKey(o.key);
      if (old) {
        subInto(sum, old);
        count--;
      }
      if (o.leaf) {
        addInto(sum, o.leaf);
        count++;
      }
    }
    return { epoch: c.fx.epoch, count, indexSum: sum, auditSeq: c.fx.auditSeq, auditHead: c.fx.auditHead };
  }

  /** Runs every op of a batch against the committed index (and the batch's own earlier ops). */
  private run(req: BatchRequest, idHex: string[], admitted: Admitted[], auditSeq: number, auditHead: Uint8Array): Computed {
    const now = this.v.p.now();
    const minPacing = this.vault.minPacing();
    this.v.tables.begin(req.epoch, now);
    const fx: Effects = { epoch: req.epoch, overlay: new Map(), touched: new Set(), audit: [], auditSeq, auditHead, results: [], ...(this.vault.fleet() && { changes: [] }) };
    for (let i = 0; i < req.ops.length; i++) computeOp(this.v, fx, req.ops[i]!, idHex[i]!, admitted[i]!, now, minPacing);
    // One write per record, its last version (a record written twice kept its place of first write).
    const writes: Prepared['writes'] = [];
    for (const o of fx.overlay.values()) writes.push({ recordId: o.recordId, blob: o.blob });
    return { fx, writes, intentWritten: false };
  }
}
