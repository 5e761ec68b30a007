/**
 * Fuzz target: raw host request bytes into the live enclave's one entry (`enclave.request`),
 * mutated from one seed per HostRequests type, including Batch envelopes that carry client
 * operations sealed correctly to the enclave's (planted, so fixed) key for the canary records,
 * and LoadChunk rows (the seeds' client operations carry the planted issuer's tokens, lib/auth.ts,
 * valid at the vault's fixed clock; one seed batch carries bad ones). The fuzzer plays a
 * malicious host: it can replay, reorder, drop and corrupt what clients sealed, never mint a token.
 *
 * The first input byte holds flags, the rest is the request:
 *   bit 0  set the epoch (bytes 2..9 of Batch, Commit, Abort, Prepare) to the one the enclave
 *          expects, so that mutated batches get past the epoch check (a Batch behind a pending
 *          one gets the epoch after it, to be staged);
 *   bit 1  replace each Batch op's `stored` blob with the honest current one (past the rollback
 *          check, into the handlers);
 *   bit 2  commit a Prepared batch at once (an honest host persisting it);
 *   bit 3  restart the enclave first, before it is loaded (LoadChunk/LoadEnd reach the loader);
 *          the driver then completes the load honestly;
 *   bit 4  first prepare an empty honest batch and leave it pending, so that the request lands
 *          behind it (a Batch is staged; with bit 2 the driver then commits the pending batch,
 *          prepares the staged one with Prepare and commits it, as the host's engine does).
 * A batch left pending by an input is aborted by the driver after two more inputs.
 *
 * Oracle, per input (besides lib/vault.ts's checks on every response: it decodes, carries no
 * planted secret, no untyped exception inside, unsealed results are Faults): the enclave still
 * answers Info with state ready and the same public key; whenever the input may have changed
 * state, a Status of both canaries (through an honest batch) shows attempts that never increased
 * and locks that never lifted, because no host can produce a valid KE3 or authorization.
 */
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { ClientRequests, HostRequests } from '../../../enclave/api/messages.ts';
import { createEnclave } from '../../../enclave/main.ts';
import { CANARIES } from '../lib/canary.ts';
import { equalBytes, expectAnswer, hex, violation } from '../lib/oracle.ts';
import { VaultSlot } from '../lib/vault.ts';

export const name = 'enclave-host';
export const weight = 4;
export const maxInputLength = 1 + 64 * 1024;
export const timeoutMs = 4000;

const slot = new VaultSlot();
let pendingAge = 0;
let last: string | undefined;

export async function setup(o: { seed?: number } = {}): Promise<void> {
  await slot.open(o.seed);
  pendingAge = 0;
}

export async function reset(): Promise<void> {
  await slot.reopen();
  pendingAge = 0;
}

export async function teardown(): Promise<void> {
  slot.close();
}

export function outcome(): string | undefined {
  return last;
}

const TAG = HostRequests.tags;

function writeU64(b: Uint8Array, off: number, value: number): void {
  let x = BigInt(value);
  for (let i = 7; i >= 0; i--, x >>= 8n) b[off + i] = Number(x & 0xffn);
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!slot.vault) pendingAge = 0;
  const vault = await slot.current();
  const input = new Uint8Array(data);
  const flags = input[0] ?? 0;
  let req: Uint8Array = input.slice(1);
  const pkBefore = vault.hpkePublicKey;
  let changed = false;
  last = undefined;

  if (flags & 8) {
    vault.enclave = await createEnclave(vault.platform);
    vault.pending = null;
    vault.staged = null;
    pendingAge = 0;
    changed = true;
  }
  if (flags & 16 && !(flags & 8) && !vault.pending && !vault.staged) {
    const held = await vault.call({ type: 'Batch', epoch: vault.epoch + 1, ops: [] }, 'the driver\'s held batch');
    expectAnswer('protocol', held, 'Prepared', 'an empty honest batch');
    changed = true;
  }
  const tag = req[1];
  if (flags & 1 && req.length >= 10 && (tag === TAG.Batch || tag === TAG.Commit || tag === TAG.Abort || tag === TAG.Prepare)) {
    // A Batch gets the next epoch: behind the pending batch (to be staged) when there is one.
    const next = (vault.pending?.epoch ?? vault.epoch) + 1;
    writeU64(req, 2, tag === TAG.Batch ? next : tag === TAG.Prepare ? (vault.staged?.epoch ?? next) : (vault.pending?.epoch ?? vault.staged?.epoch ?? next));
  }
  if (flags & 2 && tag === TAG.Batch) {
    try {
      const m = decodeMessage(HostRequests, req);
      if (m.type === 'Batch') {
        for (const op of m.ops) op.stored = vault.store.get(hex(op.recordId))?.blob ?? new Uint8Array(0);
        req = encodeMessage(HostRequests, m);
      }
    } catch {
      // not a decodable batch: send it as it is
    }
  }

  const { res } = await vault.raw(req, 'the fuzzed host request');
  last = `${flags & 31}/${res.type === 'Fault' ? `F${res.code}` : res.type}`;
  if (res.type === 'Prepared' || res.type === 'Committed' || res.type === 'Loaded' || res.type === 'ZeroizeDone') changed = true;
  if (res.type === 'Prepared' && flags & 4) {
    const c = await vault.call({ type: 'Commit', epoch: res.epoch }, 'the driver\'s Commit');
    expectAnswer('protocol', c, 'Committed', 'Commit of a freshly prepared batch');
    last += '/C';
  }
  if (res.type === 'Staged' && flags & 4 && vault.pending) {
    // The honest host's path: persist and commit the pending batch, then prepare and commit the staged one.
    const c = await vault.call({ type: 'Commit', epoch: vault.pending.epoch }, 'the driver\'s Commit of the pending batch');
    expectAnswer('protocol', c, 'Committed', 'Commit of the batch pending before a staged one');
    const p = await vault.call({ type: 'Prepare', epoch: res.epoch }, 'the driver\'s Prepare');
    expectAnswer('protocol', p, 'Prepared', "Prepare of a staged batch after its predecessor's Commit");
    const c2 = await vault.call({ type: 'Commit', epoch: res.epoch }, 'the driver\'s Commit of the staged batch');
    expectAnswer('protocol', c2, 'Committed', 'Commit of a prepared staged batch');
    last += '/SPC';
    changed = true;
  }

  if (flags & 8) {
    const info = await vault.info();
    if (info.state === 3) await vault.load();
  }
  if ((vault.pending || vault.staged) && ++pendingAge > 2) {
    await vault.abortPending();
    pendingAge = 0;
  }
  if (!vault.pending && !vault.staged) pendingAge = 0;

  await vault.checkServing('the fuzzed host request');
  const info = await vault.info();
  if (!equalBytes(info.hpkePublicKey, pkBefore)) violation('key-changed', 'the enclave\'s public key changed across the input');

  if (changed) {
    // Attempts of both canaries, through one honest batch (it aborts a pending batch first).
    const status = (id: Uint8Array) => encodeMessage(ClientRequests, vault.withAuth(id, { type: 'Status' }));
    const results = await vault.clientBatch(CANARIES.map((c) => ({ recordId: c.recordId, body: status(c.recordId), where: `the driver's Status of ${c.label}` })));
    CANARIES.forEach((c, i) => vault.applyStatus(c.recordId, results[i]!.res, false, 'a fuzzed host request'));
    pendingAge = 0;
    await vault.replant();
  }
  await vault.endInput('the fuzzed host request');
}
