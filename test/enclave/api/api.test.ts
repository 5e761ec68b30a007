/**
 * The enclave message boundary under malformed, truncated, oversized and replayed input: every
 * answer is a typed Fault, nothing is charged or released by it, and the enclave keeps serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import type { Family, Schema } from '../../../enclave/api/codec.ts';
import { Codec, Handling, Integrity } from '../../../enclave/api/codes.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { openHarness } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';
import { sampleFields } from '../../helpers/samples.ts';
import { EscrowClient } from '../../../client/escrow.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { CONTEXT, authFor, clientExtras } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
let h: Harness;
afterEach(async () => h?.close());

async function raw(bytes: Uint8Array) {
  return decodeMessage(HostResponses, await h.enclave.request(bytes));
}
async function stillServes() {
  expect(await raw(encodeMessage(HostRequests, { type: 'Info' }))).toMatchObject({ type: 'InfoResult', state: 0 });
}

const hostFamily = HostRequests as unknown as Family<Record<string, Schema>>;

describe('host request decoding', () => {
  it('refuses every malformed form of every request type with a typed fault', async () => {
    h = await openHarness();
    for (const type of Object.keys(HostRequests.schemas)) {
      const good = encodeMessage(hostFamily, { type, ...sampleFields(hostFamily.schemas[type]!) } as never);
      // Every truncation.
      for (let n = 0; n < good.length; n++) {
        const r = await raw(good.slice(0, n));
        expect(r.type, `${type} truncated to ${n}`).toBe('Fault');
        expect([Codec.Truncated, Codec.FieldTooShort, Codec.FieldTooLong, Codec.TooManyItems, Codec.InvalidValue]).toContain((r as { code: number }).code);
      }
      // One trailing byte.
      expect(await raw(Uint8Array.of(...good, 0))).toMatchObject({ type: 'Fault', code: Codec.TrailingBytes });
      // Wrong version, unknown tag.
      expect(await raw(Uint8Array.of(2, ...good.slice(1)))).toMatchObject({ type: 'Fault', code: Codec.UnsupportedVersion });
      expect(await raw(Uint8Array.of(1, 0x7f, ...good.slice(2)))).toMatchObject({ type: 'Fault', code: Codec.UnknownTag });
    }
    // Oversized.
    expect(await raw(new Uint8Array(HostRequests.maxSize + 1))).toMatchObject({ type: 'Fault', code: Codec.MessageTooLarge });
    expect(await raw(new Uint8Array(0))).toMatchObject({ type: 'Fault', code: Codec.Truncated });
    await stillServes();
  });

  it('answers arbitrary and mutated bytes with a response, never an exception', async () => {
    h = await openHarness();
    const seeds = Object.keys(HostRequests.schemas)
      .filter((t) => t !== 'Zeroize')
      .map((type) => encodeMessage(hostFamily, { type, ...sampleFields(hostFamily.schemas[type]!) } as never));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          fc.tuple(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, i, b]) => {
            const m = Uint8Array.from(s);
            if (m.length) m[i % m.length] = b;
            return m;
          }),
        ),
        async (bytes) => {
          if (bytes[1] === HostRequests.tags.Zeroize) return;
          const out = await h.enclave.request(bytes);
          expect(() => decodeMessage(HostResponses, out)).not.toThrow();
        },
      ),
      { numRuns: 300 },
    );
    // The batch protocol may now be mid-way; restart to a clean state and check service.
    await h.restart();
    await stillServes();
  });

  it('refuses out-of-order and replayed batch control messages', async () => {
    h = await openHarness();
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: 1 }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(encodeMessage(HostRequests, { type: 'Batch', epoch: 5, ops: [] }))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(encodeMessage(HostRequests, { type: 'Batch', epoch: 1, ops: [] }))).toMatchObject({ type: 'Prepared' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Batch', epoch: 1, ops: [] }))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: 1 }))).toMatchObject({ type: 'Committed' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: 1 }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(encodeMessage(HostRequests, { type: 'LoadEnd' }))).toMatchObject({ type: 'Fault' });
    await stillServes();
  });

  it('stages a batch sent while one is pending, prepares it only after that Commit, and refuses every other order', async () => {
    h = await openHarness();
    const { c } = await capturingClientFor();
    const a = te.encode('staged-a');
    const b = te.encode('staged-b');
    await c.register(a, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    await c.register(b, te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 5 });
    const e = (await raw(encodeMessage(HostRequests, { type: 'Info' })) as { epoch: number }).epoch + 1;
    const op = async (rid: Uint8Array, opId = 0) => {
      const stored = (await h.store.getMany(0, [rid]))[0]!.blob;
      const { message } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, rid) }));
      return { opId, recordId: rid, stored, request: message };
    };
    const batch = async (epoch: number, ...ids: Uint8Array[]) => encodeMessage(HostRequests, { type: 'Batch', epoch, ops: await Promise.all(ids.map((id, i) => op(id, i))) });
    // Nothing pending: Prepare has nothing to prepare.
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(await batch(e, a))).toMatchObject({ type: 'Prepared', epoch: e });
    // Behind a pending batch: not a record of that batch, not the wrong epoch.
    expect(await raw(await batch(e + 1, b, a))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(await batch(e + 2, b))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(await batch(e + 1, b))).toMatchObject({ type: 'Staged', epoch: e + 1 });
    // Only one staged batch; not prepared before the pending one is committed.
    expect(await raw(await batch(e + 2, b))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e + 1 }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: e }))).toMatchObject({ type: 'Committed', epoch: e });
    // A Batch now would jump the staged one.
    expect(await raw(await batch(e + 1, b))).toMatchObject({ code: Handling.BatchOutOfOrder });
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e + 2 }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e + 1 }))).toMatchObject({ type: 'Prepared', epoch: e + 1 });
    // Replayed: nothing staged any more.
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e + 1 }))).toMatchObject({ code: Handling.NoBatchPending });
    const committed = await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: e + 1 }));
    expect(committed).toMatchObject({ type: 'Committed', epoch: e + 1 });
    const res = (committed as { results: { sealed: number }[] }).results;
    expect(res.map((r) => r.sealed)).toEqual([1]);
    // Abort of the pending batch drops the one staged behind it.
    expect(await raw(await batch(e + 2, a))).toMatchObject({ type: 'Prepared' });
    expect(await raw(await batch(e + 3, b))).toMatchObject({ type: 'Staged' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Abort', epoch: e + 2 }))).toMatchObject({ type: 'Aborted' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Prepare', epoch: e + 3 }))).toMatchObject({ code: Handling.NoBatchPending });
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: e + 2 }))).toMatchObject({ code: Handling.NoBatchPending });
    // Abort of the staged one alone keeps the pending one.
    expect(await raw(await batch(e + 2, a))).toMatchObject({ type: 'Prepared' });
    expect(await raw(await batch(e + 3, b))).toMatchObject({ type: 'Staged' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Abort', epoch: e + 3 }))).toMatchObject({ type: 'Aborted' });
    expect(await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: e + 2 }))).toMatchObject({ type: 'Committed' });
    // The host's rows never saw these raw batches; a reload puts it back on its committed state.
    await h.restart();
    await stillServes();
  });
});

async function capturingClientFor() {
  const c = new EscrowClient({
    relay: (recordId, message) => h.engine.submit(recordId, message),
    enclavePublicKey: h.hpkePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...clientExtras(h),
  });
  return { c };
}

describe('client requests through the enclave', () => {
  async function capturingClient() {
    const sent: { recordId: Uint8Array; message: Uint8Array }[] = [];
    const c = new EscrowClient({
      relay: (recordId, message) => {
        sent.push({ recordId, message });
        return h.engine.submit(recordId, message);
      },
      enclavePublicKey: h.hpkePublicKey,
      suite: await fastSuite('ristretto255-SHA512'),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ...clientExtras(h),
    });
    return { c, sent };
  }

  async function sendSealed(recordId: Uint8Array, body: Uint8Array) {
    const { message, openResponse } = await sealRequest(h.hpkePublicKey, recordId, body);
    const r = await h.engine.submit(recordId, message);
    return decodeMessage(ClientResponses, r.sealed ? await openResponse(r.response) : r.response);
  }

  it('refuses malformed client requests inside a valid envelope, for every type', async () => {
    h = await openHarness();
    const fam = ClientRequests as unknown as Family<Record<string, Schema>>;
    for (const type of Object.keys(fam.schemas)) {
      const good = encodeMessage(fam, { type, ...sampleFields(fam.schemas[type]!) } as never);
      for (const bad of [good.slice(0, good.length - 1), Uint8Array.of(...good, 9), Uint8Array.of(9, ...good.slice(1))]) {
        if (bad.length === 0) continue;
        const r = await sendSealed(te.encode('x'), bad);
        expect(r.type, type).toBe('Fault');
      }
      // The sample itself is well-formed but meaningless: a typed fault or an outcome, never a crash.
      const r = await sendSealed(te.encode('x'), good);
      expect(typeof r.type).toBe('string');
    }
    await stillServes();
  });

  it('refuses a ciphertext that does not open, or one moved to another record', async () => {
    h = await openHarness();
    const r1 = await h.engine.submit(te.encode('a'), new Uint8Array(80));
    expect(r1.sealed).toBe(false);
    expect(decodeMessage(ClientResponses, r1.response)).toMatchObject({ type: 'Fault', code: Handling.BadPayload });
    const { message } = await sealRequest(h.hpkePublicKey, te.encode('a'), encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, te.encode('a')) }));
    const r2 = await h.engine.submit(te.encode('b'), message);
    expect(r2.sealed).toBe(false);
    expect(decodeMessage(ClientResponses, r2.response)).toMatchObject({ type: 'Fault', code: Handling.BadPayload });
  });

  it('replayed registration finish, login finish and login start gain nothing', async () => {
    h = await openHarness();
    const { c, sent } = await capturingClient();
    const rid = te.encode('replay');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const registerFinish = sent[1]!;
    // Replaying the finish: the stage was used once.
    const rr = await h.engine.submit(registerFinish.recordId, registerFinish.message);
    expect(rr.sealed).toBe(true); // sealed to the replayer, who can not read it; the enclave refused it:
    expect(await c.status(rid)).toMatchObject({ attemptsRemaining: 5 });
    sent.length = 0;
    const ok = await c.recover(rid, te.encode('pw'));
    expect(ok.ok).toBe(true);
    const [loginStart, loginFinish] = sent;
    // Replaying KE3: the session is gone; nothing is released, the count is unchanged.
    await h.engine.submit(loginFinish!.recordId, loginFinish!.message);
    expect(await c.status(rid)).toMatchObject({ attemptsRemaining: 5 });
    // Replaying KE1 charges a guess (anyone may start a login) but its KE2 is useless without the password.
    const again = await h.engine.submit(loginStart!.recordId, loginStart!.message);
    expect(await c.status(rid)).toMatchObject({ attemptsRemaining: 4 });
    // The replay opens to the same HPKE context (the same response key): its answer must not reuse
    // the nonce of any other answer under that key.
    const third = await h.engine.submit(loginStart!.recordId, loginStart!.message);
    expect(again.sealed && third.sealed).toBe(true);
    expect(Buffer.from(again.response.subarray(0, 12)).equals(Buffer.from(third.response.subarray(0, 12)))).toBe(false);
  });

  it('a stored blob from before the last write is refused, not used', async () => {
    h = await openHarness();
    const { c } = await capturingClient();
    const rid = te.encode('r');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const before = (await h.store.getMany(0, [rid]))[0]!.blob;
    await c.recover(rid, te.encode('wrong'));
    const info = await raw(encodeMessage(HostRequests, { type: 'Info' }));
    const epoch = (info as { epoch: number }).epoch + 1;
    const { message, openResponse } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, rid) }));
    const batch = encodeMessage(HostRequests, { type: 'Batch', epoch, ops: [{ opId: 0, recordId: rid, stored: before, request: message }] });
    const prepared = await raw(batch);
    expect(prepared).toMatchObject({ type: 'Prepared', writes: [] });
    const committed = await raw(encodeMessage(HostRequests, { type: 'Commit', epoch }));
    expect(committed.type).toBe('Committed');
    const res = (committed as { results: { sealed: number; response: Uint8Array }[] }).results[0]!;
    // The envelope opened, so even the fault is sealed to the client.
    expect(res.sealed).toBe(1);
    expect(decodeMessage(ClientResponses, await openResponse(res.response))).toMatchObject({ type: 'Fault', code: Integrity.RollbackDetected });
    expect(await c.status(rid)).toMatchObject({ attemptsRemaining: 4 });
    expect(SUITE_CODE['ristretto255-SHA512']).toBe(1);

    // One batch: the stale blob with a request that does not open either, a request that does not
    // open on a current record, a stale blob with a good request, and a good request. The enclave
    // opens every request of a batch before running its ops; a request that does not open is
    // refused before its stored record is read (BadPayload, plain), a good one with a stale blob
    // is refused for the blob (RollbackDetected, sealed: its envelope opened); the good op is
    // answered sealed.
    const current = (await h.store.getMany(0, [rid]))[0]!.blob;
    const good = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, rid) }));
    const stale = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'Status', auth: await authFor(h, rid) }));
    const e2 = ((await raw(encodeMessage(HostRequests, { type: 'Info' }))) as { epoch: number }).epoch + 1;
    const mixed = encodeMessage(HostRequests, {
      type: 'Batch',
      epoch: e2,
      ops: [
        { opId: 0, recordId: rid, stored: before, request: new Uint8Array(80) },
        { opId: 1, recordId: rid, stored: current, request: new Uint8Array(80) },
        { opId: 2, recordId: rid, stored: before, request: stale.message },
        { opId: 3, recordId: rid, stored: current, request: good.message },
      ],
    });
    expect(await raw(mixed)).toMatchObject({ type: 'Prepared', writes: [] });
    const out = (await raw(encodeMessage(HostRequests, { type: 'Commit', epoch: e2 }))) as { results: { opId: number; sealed: number; response: Uint8Array }[] };
    expect(out.results.map((r) => [r.opId, r.sealed])).toEqual([[0, 0], [1, 0], [2, 1], [3, 1]]);
    expect(decodeMessage(ClientResponses, out.results[0]!.response)).toMatchObject({ type: 'Fault', code: Handling.BadPayload });
    expect(decodeMessage(ClientResponses, out.results[1]!.response)).toMatchObject({ type: 'Fault', code: Handling.BadPayload });
    expect(decodeMessage(ClientResponses, await stale.openResponse(out.results[2]!.response))).toMatchObject({ type: 'Fault', code: Integrity.RollbackDetected });
    expect(decodeMessage(ClientResponses, await good.openResponse(out.results[3]!.response))).toMatchObject({ type: 'StatusResult', attemptsRemaining: 4 });
  });
});
