/**
 * Guess pacing (enclave/api/pacing.ts), enforced by the enclave with its platform clock: after the
 * free guesses, a LoginStart that comes before the record's next guess is due answers RetryLater
 * and charges nothing (no record write, no audit event); the schedule is chosen at registration,
 * no laxer than the vault's floor, kept in the sealed record (it survives a restart), and a
 * success starts it over.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Handling } from '../../../enclave/api/codes.ts';
import { PACING, pacingDelayMs } from '../../../enclave/api/pacing.ts';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import { ClientRequests, ClientResponses } from '../../../enclave/api/messages.ts';
import { openHarness, withAuth } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
let h: Harness;
afterEach(async () => h?.close());

async function snapshot(rid: Uint8Array) {
  const blob = (await h.store.getMany(0, [rid]))[0]!.blob;
  return { blob, audit: (await h.store.auditEvents(0, 0, 10_000)).length };
}

describe('guess pacing', () => {
  it('the schedule: 3 free, then 1 min, 5 min, 15 min, and 1 h thereafter', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 9].map((n) => pacingDelayMs(PACING.standard, n))).toEqual([0, 0, 0, 60_000, 300_000, 900_000, 3_600_000, 3_600_000]);
    expect(pacingDelayMs(PACING.none, 200)).toBe(0);
  });

  it('a guess before it is due answers RetryLater and charges nothing; at the due time it is charged; a success starts over', async () => {
    h = await openHarness();
    const c = await h.client('ristretto255-SHA512');
    const ann = te.encode('ann');
    await c.register(ann, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 10, pacing: 'standard' });
    for (let i = 0; i < 3; i++) expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 9 - i });
    const before = await snapshot(ann);
    expect(await c.recover(ann, te.encode('no'))).toEqual({ ok: false, outcome: 'paced', retryAfterSeconds: 60, attemptsRemaining: 7 });
    // The right password is paced too: pacing does not tell a right guess from a wrong one.
    expect(await c.recover(ann, te.encode('pw'))).toMatchObject({ outcome: 'paced' });
    expect(await snapshot(ann)).toEqual(before);
    expect(await c.status(ann)).toMatchObject({ attemptsRemaining: 7 });
    h.platform.clock.t += 59_500;
    expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'paced', retryAfterSeconds: 1 });
    h.platform.clock.t += 500;
    expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 6 });
    expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'paced', retryAfterSeconds: 300 });
    // The schedule is in the sealed record: a restart changes nothing.
    await h.restart();
    expect(await c.recover(ann, te.encode('pw'))).toMatchObject({ outcome: 'paced', retryAfterSeconds: 300 });
    h.platform.clock.t += 300_000;
    expect(await c.recover(ann, te.encode('pw'))).toMatchObject({ ok: true, attemptsRemaining: 10 });
    for (let i = 0; i < 3; i++) expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'wrong-password' });
    expect(await c.recover(ann, te.encode('no'))).toMatchObject({ outcome: 'paced', retryAfterSeconds: 60 });
  });

  it('a platform clock that went back waits the whole delay', async () => {
    h = await openHarness();
    const c = await h.client();
    const bo = te.encode('bo');
    await c.register(bo, te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 10, pacing: 'standard' });
    for (let i = 0; i < 3; i++) await c.recover(bo, te.encode('no'));
    h.platform.clock.t -= 3_600_000;
    expect(await c.recover(bo, te.encode('no'))).toMatchObject({ outcome: 'paced', retryAfterSeconds: 60 });
  });

  it('records without pacing are not paced; a registration picks no laxer pacing than the vault allows', async () => {
    h = await openHarness({ minPacing: PACING.standard });
    const c = await h.client();
    const cy = te.encode('cy');
    await expect(c.register(cy, te.encode('pw'), new Uint8Array(32).fill(3), { pacing: 'none' })).rejects.toMatchObject({ code: Handling.PacingBelowFloor });
    await c.register(cy, te.encode('pw'), new Uint8Array(32).fill(3), { attemptLimit: 6, pacing: 'standard' });
    await h.close();
    h = await openHarness();
    const d = await h.client();
    await d.register(cy, te.encode('pw'), new Uint8Array(32).fill(3), { attemptLimit: 6, pacing: 'none' });
    for (let i = 0; i < 6; i++) expect(await d.recover(cy, te.encode('no'))).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 5 - i });
  });

  it('an unknown schedule is refused at RegisterStart', async () => {
    h = await openHarness();
    const rid = te.encode('di');
    const op = { type: 'RegisterStart', suite: 1, request: new Uint8Array(32).fill(2), attemptLimit: 3, ksf: Uint8Array.of(0), pacing: 7 } as const;
    const { message, openResponse } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, await withAuth(h, rid, op)));
    const r = await h.engine.submit(rid, message);
    expect(decodeMessage(ClientResponses, await openResponse(r.response))).toMatchObject({ type: 'Fault', code: Handling.InvalidPacing });
  });
});
