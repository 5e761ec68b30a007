/**
 * A follower's side of a replicated batch (docs/fleet-vault.md, "A follower's device"): the
 * writes a fleet leader's device made for one batch, checked against this member's own records
 * and turned into the same effects a computed batch has, so that batch.ts makes them durable by
 * its one rule (intent in NVRAM, the host persists, Commit) and the index takes them.
 *
 * What is checked, per written record, before anything is kept:
 * - the stored blob the host hands over is this member's current version (its leaf in the index:
 *   an older version is refused as a rollback, as for a batch);
 * - the ops naming it, in order, each on the version the one before left (`base`), each a
 *   transition the fleet's rules allow (enclave/fleet/rules.ts) on the record's status, limit
 *   and attempts used;
 * - the new blob opens under this vault's sealing key (a fleet key: every member holds it), for
 *   this record id, sealed at this batch's epoch with the version the ops end at, and what it
 *   holds agrees with the rules' record after the ops (status, limit, attempts used); a record
 *   named by one op changed exactly as that op says (enclave/vault/fleet-change.ts).
 * A host can not forge a blob (it holds no sealing key) nor pass off an old one (epoch and version
 * are in the sealed header, the leaf pins what is stored); what the fleet core adds in the device
 * is which entries count (a majority's, docs/fleet.md). The leader's audit events stay on the
 * leader in this slice: a follower's audit chain does not move with replicated batches.
 */
import { EnclaveFault, Handling, Integrity } from '../api/codes.ts';
import type { HostRequest } from '../api/messages.ts';
import { toHex } from '../opaque/bytes.ts';
import { opOf, transition, type Intent, type RecordState } from '../fleet/rules.ts';
import { currentRecord, partitionOfHash, type Effects, type VaultParts } from './compute.ts';
import { digestOf } from './digest.ts';
import { CHANGE_TAGS, fleetChangeOf, type FleetChange } from './fleet-change.ts';
import { KIND_RECORD, STATUS_LOCKED, unseal } from './record.ts';
import type { VaultRecord } from './record.ts';

export type ApplyRequest = Extract<HostRequest, { type: 'Apply' }>;

const CHANGES = new Map<number, FleetChange['kind']>(Object.entries(CHANGE_TAGS).map(([k, t]) => [t, k as FleetChange['kind']]));

const refused = (why: string, field = 'ops'): EnclaveFault => new EnclaveFault(Handling.ApplyRefused, `replicated batch refused: ${why}`, field);

/**
 * The rules' view of a stored record: what rules.ts checks (guesses charged since registration are
 * not stored: counted from 0 here, and a charge's number is not checked). No live record: a
 * tombstone's version (deleted), or none.
 */
function stateOf(r: VaultRecord | null, version: number): RecordState | undefined {
  if (r === null) return version > 0 ? { version, status: 'deleted', limit: 1, used: 0, total: 0 } : undefined;
  return { version, status: r.status === STATUS_LOCKED ? 'locked' : 'registered', limit: r.attemptLimit, used: r.attemptsUsed, total: 0 };
}

function intentOf(c: FleetChange, id: string): Intent {
  switch (c.kind) {
    case 'register':
    case 'replace':
      return { kind: c.kind, id, limit: c.limit };
    case 'charge':
    case 'reset':
      return { kind: c.kind, id, session: 0 };
    default:
      return { kind: c.kind, id };
  }
}

/** Checks a replicated batch against this member's records; its effects, for batch.ts to make durable. */
export function checkApply(v: VaultParts, req: ApplyRequest, auditSeq: number, auditHead: Uint8Array): Effects {
  const fx: Effects = { epoch: req.epoch, overlay: new Map(), touched: new Set(), audit: [], auditSeq, auditHead, results: [] };
  // the ops by record, in order: each names the version the op before it on the record left
  const ops = new Map<string, { change: FleetChange; base: number }[]>();
  for (const [i, op] of req.ops.entries()) {
    const kind = CHANGES.get(op.change) ?? null;
    if (kind === null) throw refused(`op ${i}: unknown change ${op.change}`);
    const change = (kind === 'register' || kind === 'replace' ? { kind, limit: op.limit } : { kind }) as FleetChange;
    const id = toHex(op.recordId);
    const list = ops.get(id) ?? [];
    if (list.length === 0) ops.set(id, list);
    list.push({ change, base: op.base });
  }
  if (req.writes.length !== ops.size) throw refused('the writes are not one per record the ops name', 'writes');
  for (const w of req.writes) {
    const idHex = toHex(w.recordId);
    const mine = ops.get(idHex);
    if (!mine) throw refused(`a write for record ${idHex.slice(0, 16)} that no op names`, 'writes');
    if (fx.touched.has(idHex)) throw refused(`record ${idHex.slice(0, 16)} written twice`, 'writes');
    fx.touched.add(idHex);
    const idHash = digestOf(v.sha256, w.recordId);
    if (partitionOfHash(idHash, v.p.partitions) !== v.p.partition) throw new EnclaveFault(Integrity.IndexMismatch, 'record belongs to another partition', 'recordId');
    const key = idHash.subarray(0, 16);
    // this member's current version, checked against its index (an old one is a rollback)
    const { record: before, version } = currentRecord(v, fx.overlay, w.recordId, key, idHex, w.stored);
    let rec = stateOf(before, version);
    for (const [k, op] of mine.entries()) {
      if (op.base !== (rec?.version ?? 0)) throw refused(`record ${idHex.slice(0, 16)} op ${k}: base version ${op.base}, this member holds ${rec?.version ?? 0}`);
      const next = transition(rec, opOf(intentOf(op.change, idHex), rec));
      if (typeof next === 'number') throw refused(`record ${idHex.slice(0, 16)} op ${k}: ${op.change.kind} is not allowed on this member's record`);
      rec = next;
    }
    const final = rec!;
    let opened: ReturnType<typeof unseal>;
    try {
      opened = unseal(v.p.token, v.keys.seal, w.recordId, w.blob);
    } catch {
      throw refused(`record ${idHex.slice(0, 16)}: the new blob does not open`, 'writes');
    }
    const { header, record: after } = opened;
    if (header.epoch !== req.epoch || header.version !== final.version) throw refused(`record ${idHex.slice(0, 16)}: the new blob is of epoch ${header.epoch} version ${header.version}, not ${req.epoch} and ${final.version}`, 'writes');
    const agrees =
      after === null
        ? final.status === 'deleted' && header.kind !== KIND_RECORD
        : final.status === (after.status === STATUS_LOCKED ? 'locked' : 'registered') && final.limit === after.attemptLimit && final.used === after.attemptsUsed;
    if (!agrees) throw refused(`record ${idHex.slice(0, 16)}: the new blob does not hold what the ops make`, 'writes');
    if (mine.length === 1) {
      const c = fleetChangeOf(before, after);
      const said = mine[0]!.change;
      const same = c !== null && c.kind === said.kind && (!('limit' in c) || ('limit' in said && c.limit === said.limit));
      if (!same) throw refused(`record ${idHex.slice(0, 16)}: the new blob is a ${c?.kind ?? 'change no rule allows'}, the op says ${said.kind}`, 'writes');
    }
    fx.overlay.set(idHex, { recordId: w.recordId, key, record: after, version: header.version, leaf: after ? v.index.leafOf(w.recordId, w.blob) : null, blob: w.blob });
  }
  return fx;
}
