/**
 * Watches every write a harness's vault persists and checks it is a change the fleet's rules
 * allow (enclave/vault/fleet-change.ts, enclave/fleet/rules.ts), on a mirror of abstract records
 * kept from the writes alone, and that the mirror agrees with each record written (status,
 * limit, attempts used). Assumes one op per record per batch (commands run one at a time): a
 * write that folds two ops into one is reported, not guessed at.
 */
import { toHex } from '../../enclave/opaque/bytes.ts';
import { opOf, transition, type Intent, type RecordState } from '../../enclave/fleet/rules.ts';
import { fleetChangeOf } from '../../enclave/vault/fleet-change.ts';
import { findSealKey } from '../../enclave/vault/keys.ts';
import { STATUS_LOCKED, unseal } from '../../enclave/vault/record.ts';
import type { VaultRecord } from '../../enclave/vault/record.ts';
import type { RecordStore } from '../../host/storage/types.ts';
import type { Harness } from './vault-harness.ts';

export interface FleetWatch {
  /** Writes mapped to an allowed change, by kind. */
  readonly counts: Map<string, number>;
  /** Every write that is no allowed change, or disagrees with the mirror: empty when the rules agree. */
  readonly problems: string[];
}

/** A stored write as the harness's vault persisted it: the record before and after, opened. */
export interface SeenWrite {
  epoch: number;
  recordId: Uint8Array;
  /** The stored blob it replaced (empty: none). */
  stored: Uint8Array;
  blob: Uint8Array;
  before: VaultRecord | null;
  after: VaultRecord | null;
}

/**
 * Calls `seen` with each batch the harness's vault persists (its epoch, and every write with the
 * record before and after, opened with the provisioned sealing key), before the store takes it.
 */
export function tapWrites(h: Harness, seen: (epoch: number, writes: SeenWrite[]) => void): void {
  const inner = h.store;
  const open = (recordId: Uint8Array, blob: Uint8Array): VaultRecord | null => {
    if (blob.length === 0) return null;
    const key = findSealKey(h.platform.token);
    if (key === null) throw new Error('the token holds no sealing key');
    return unseal(h.platform.token, key, recordId, blob).record;
  };
  const applyBatch: RecordStore['applyBatch'] = async (partition, epoch, writes, audit) => {
    const stored = await inner.getMany(partition, writes.map((w) => w.recordId));
    seen(
      epoch,
      writes.map((w, i) => {
        const prev = stored[i]?.blob ?? new Uint8Array(0);
        return { epoch, recordId: w.recordId, stored: prev, blob: w.blob, before: open(w.recordId, prev), after: open(w.recordId, w.blob) };
      }),
    );
    return inner.applyBatch(partition, epoch, writes, audit);
  };
  h.store = new Proxy(inner, {
    get: (t, k) => {
      if (k === 'applyBatch') return applyBatch;
      const v = (t as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

export function watchFleetChanges(h: Harness): FleetWatch {
  const watch: FleetWatch = { counts: new Map(), problems: [] };
  const mirror = new Map<string, RecordState>();
  tapWrites(h, (epoch, writes) => {
    for (const { recordId, before: prev, after: next } of writes) {
      const id = toHex(recordId);
      const change = fleetChangeOf(prev, next);
      if (change === null) {
        watch.problems.push(`epoch ${epoch} record ${id}: no fleet change from ${describe(prev)} to ${describe(next)}`);
        continue;
      }
      const rec = mirror.get(id);
      const intent = (change.kind === 'charge' || change.kind === 'reset' ? { ...change, id, session: 1 } : { ...change, id }) as Intent;
      const after = transition(rec, opOf(intent, rec));
      if (typeof after === 'number') {
        watch.problems.push(`epoch ${epoch} record ${id}: ${change.kind} refused by the fleet's rules (code ${after}) on ${JSON.stringify(rec)}`);
        continue;
      }
      const agrees = next === null ? after.status === 'deleted' : after.status === (next.status === STATUS_LOCKED ? 'locked' : 'registered') && after.limit === next.attemptLimit && after.used === next.attemptsUsed;
      if (!agrees) watch.problems.push(`epoch ${epoch} record ${id}: after ${change.kind} the fleet's record ${JSON.stringify(after)} is not the vault's ${describe(next)}`);
      mirror.set(id, after);
      watch.counts.set(change.kind, (watch.counts.get(change.kind) ?? 0) + 1);
    }
  });
  return watch;
}

function describe(r: VaultRecord | null): string {
  if (r === null) return 'no record';
  return `{status ${r.status}, limit ${r.attemptLimit}, used ${r.attemptsUsed}, registration ${toHex(r.registrationId).slice(0, 8)}}`;
}
