/**
 * The vault rules, end to end through the enclave firmware, the batch protocol and SQLite, on
 * every token under test (the emulator token and SoftHSM2; BKV_TOKEN picks).
 */
import { afterEach, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { holdLogin, openHarness, storedRecord } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';
import { EscrowError } from '../../../client/escrow.ts';
import { Handling, Integrity } from '../../../enclave/api/codes.ts';
import { describeTokens } from '../../helpers/tokens.ts';
import { STATUS_LOCKED } from '../../../enclave/vault/record.ts';
import { TokenBook, VaultClient } from '../../adversarial/lib/flows.ts';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import type { ClientRequest, ClientResponse, HostRequest } from '../../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { clientLoginFinish, clientLoginStart } from '../../../enclave/opaque/client.ts';
import type { ClientLoginState } from '../../../enclave/opaque/client.ts';
import { identityKsf } from '../../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { CONTEXT, withAuth } from '../../helpers/vault-harness.ts';
import type { ClientOp } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
const id = (s: string) => te.encode(s);
let h: Harness;
afterEach(async () => h?.close());

/** One client operation, sealed end to end and sent alone; the opened answer (a Fault too). */
async function send(rid: Uint8Array, req: ClientOp): Promise<ClientResponse> {
  const { message, openResponse } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, await withAuth(h, rid, req)));
  const r = await h.engine.submit(rid, message);
  return decodeMessage(ClientResponses, r.sealed ? await openResponse(r.response) : r.response);
}

/** Several client operations in one batch (submitted in one turn); the opened answers. */
async function sendBatch(ops: { rid: Uint8Array; req: ClientOp }[]): Promise<ClientResponse[]> {
  const sealed = await Promise.all(ops.map(async (o) => sealRequest(h.hpkePublicKey, o.rid, encodeMessage(ClientRequests, await withAuth(h, o.rid, o.req)))));
  const before = h.engine.stats.batches;
  const rs = await Promise.all(ops.map((o, i) => h.engine.submit(o.rid, sealed[i]!.message)));
  expect(h.engine.stats.batches - before).toBe(1);
  return Promise.all(rs.map(async (r, i) => decodeMessage(ClientResponses, r.sealed ? await sealed[i]!.openResponse(r.response) : r.response)));
}

async function loginStartReq(password: string): Promise<{ req: ClientOp; state: ClientLoginState }> {
  const suite = await fastSuite('ristretto255-SHA512');
  const { ke1, state } = clientLoginStart({ suite, context: CONTEXT, rng: (n) => new Uint8Array(randomBytes(n)) }, te.encode(password));
  return { req: { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 }, state };
}

/** An attacker's LoginStart with a wrong password: the KE2 kept, the session left open. */
async function openSession(rid: Uint8Array): Promise<ClientResponse> {
  return send(rid, (await loginStartReq('guess')).req);
}

/** Finishes an open session with a KE3 that can not verify (the wrong password's). */
async function finishSession(rid: Uint8Array, started: ClientResponse): Promise<ClientResponse> {
  if (started.type !== 'LoginStarted') throw new Error(`expected LoginStarted, got ${started.type}`);
  return send(rid, { type: 'LoginFinish', sessionId: started.sessionId, ke3: new Uint8Array(64) });
}

describeTokens('vault', (kind) => {
  for (const suite of ['ristretto255-SHA512', 'P256-SHA256'] as const) {
    it(`registers and recovers the backup key (${suite})`, async () => {
      h = await openHarness({ tokenKind: kind });
      const c = await h.client(suite);
      const key = new Uint8Array(randomBytes(32));
      const reg = await c.register(id('alice'), te.encode('correct horse'), key, { attemptLimit: 5 });
      expect(reg).toMatchObject({ attemptsRemaining: 5, attemptLimit: 5 });
      const r = await c.recover(id('alice'), te.encode('correct horse'));
      expect(r.ok).toBe(true);
      if (r.ok) expect(Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
    });
  }

  it('charges a guess per login and resets on success', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('bob'), te.encode('pw'), new Uint8Array(32).fill(7), { attemptLimit: 3 });
    const w1 = await c.recover(id('bob'), te.encode('nope'));
    expect(w1).toEqual({ ok: false, outcome: 'wrong-password', attemptsRemaining: 2, locked: false });
    const w2 = await c.recover(id('bob'), te.encode('nope'));
    expect(w2).toMatchObject({ attemptsRemaining: 1 });
    const ok = await c.recover(id('bob'), te.encode('pw'));
    expect(ok).toMatchObject({ ok: true, attemptsRemaining: 3 });
    expect(await c.status(id('bob'))).toMatchObject({ type: 'StatusResult', attemptsRemaining: 3, locked: 0 });
  });

  it('locks and zeroizes at the limit; the right password no longer helps', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('carol'), te.encode('pw'), new Uint8Array(32).fill(9), { attemptLimit: 2 });
    expect(await c.recover(id('carol'), te.encode('x'))).toMatchObject({ attemptsRemaining: 1, locked: false });
    expect(await c.recover(id('carol'), te.encode('y'))).toMatchObject({ attemptsRemaining: 0, locked: true });
    expect(await c.recover(id('carol'), te.encode('pw'))).toEqual({ ok: false, outcome: 'locked' });
    expect(await c.status(id('carol'))).toMatchObject({ type: 'StatusResult', locked: 1, attemptsRemaining: 0 });
    // The stored blob no longer holds the key: a new registration is the only way back.
    await c.register(id('carol'), te.encode('new'), new Uint8Array(32).fill(1), { attemptLimit: 2 });
    expect(await c.recover(id('carol'), te.encode('new'))).toMatchObject({ ok: true });
  });

  it('never spends more guesses than the limit under concurrent logins', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('dave'), te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 4 });
    const results = await Promise.all(Array.from({ length: 12 }, () => c.recover(id('dave'), te.encode('wrong'))));
    const charged = results.filter((r) => !r.ok && r.outcome === 'wrong-password').length;
    expect(charged).toBeLessThanOrEqual(4);
    expect(await c.recover(id('dave'), te.encode('pw'))).toEqual({ ok: false, outcome: 'locked' });
  });

  it('a successful login ends the record\'s other sessions: at most the limit of wrong guesses until the next success', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const rid = id('kim');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(4), { attemptLimit: 3 });
    // The attacker opens sessions before the user recovers: limit - 1 of them (the user's login takes the last guess).
    const before = [await openSession(rid), await openSession(rid)];
    expect(before).toMatchObject([{ type: 'LoginStarted', attemptsRemaining: 2 }, { type: 'LoginStarted', attemptsRemaining: 1 }]);
    expect(await c.recover(rid, te.encode('pw'))).toMatchObject({ ok: true, attemptsRemaining: 3 });
    // Those sessions ended with the success: their KE3s are not evaluated.
    for (const s of before) expect(await finishSession(rid, s)).toMatchObject({ type: 'Fault', code: Handling.UnknownSession });
    // From here, 3 wrong guesses are evaluated and no more: the record locks.
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await openSession(rid);
      if (s.type !== 'LoginStarted') {
        answers.push(s.type);
        continue;
      }
      const f = await finishSession(rid, s);
      answers.push(f.type === 'WrongPassword' ? `wrong${f.locked ? ', locked' : ''}` : f.type);
    }
    expect(answers).toEqual(['wrong', 'wrong', 'wrong, locked', 'Locked', 'Locked']);
    expect(await c.recover(rid, te.encode('pw'))).toEqual({ ok: false, outcome: 'locked' });
  });

  it('a success ends the sessions of its record opened before it in the same batch, and is seen by the ops after it', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const rid = id('lee');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(5), { attemptLimit: 5 });
    const old = await openSession(rid);
    const user = await loginStartReq('pw');
    const started = (await sendBatch([{ rid, req: user.req }]))[0]!;
    if (started.type !== 'LoginStarted') throw new Error(started.type);
    const suite = await fastSuite('ristretto255-SHA512');
    const fin = await clientLoginFinish({ suite, context: CONTEXT, rng: (n) => new Uint8Array(randomBytes(n)), ksf: identityKsf }, user.state, te.encode('pw'), started.ke2);
    if (!fin.ok) throw new Error('client login failed');
    // One batch: an attacker's new login, the user's KE3, the attacker's older session, another new login.
    const [before, done, oldFinish, after] = await sendBatch([
      { rid, req: (await loginStartReq('guess')).req },
      { rid, req: { type: 'LoginFinish', sessionId: started.sessionId, ke3: fin.ke3 } },
      { rid, req: { type: 'LoginFinish', sessionId: (old as { sessionId: Uint8Array }).sessionId, ke3: new Uint8Array(64) } },
      { rid, req: (await loginStartReq('guess')).req },
    ]);
    expect(before).toMatchObject({ type: 'LoginStarted', attemptsRemaining: 2 });
    expect(done).toMatchObject({ type: 'Recovered', attemptsRemaining: 5 });
    expect(oldFinish).toMatchObject({ type: 'Fault', code: Handling.UnknownSession });
    expect(after).toMatchObject({ type: 'LoginStarted', attemptsRemaining: 4 });
    expect(await finishSession(rid, before!)).toMatchObject({ type: 'Fault', code: Handling.UnknownSession });
    expect(await finishSession(rid, after!)).toEqual({ type: 'WrongPassword', attemptsRemaining: 4, locked: 0 });
  });

  it('a batch hands the host one write per record, its last version, in the order the batch first wrote each', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const [a, b] = [id('pat'), id('quinn')];
    await c.register(a, te.encode('pw'), new Uint8Array(32).fill(6), { attemptLimit: 5 });
    await c.register(b, te.encode('pw'), new Uint8Array(32).fill(7), { attemptLimit: 5 });
    const stored = await h.store.getMany(0, [a, b]);
    const host = async (req: HostRequest) => decodeMessage(HostResponses, await h.enclave.request(encodeMessage(HostRequests, req)));
    const login = async (rid: Uint8Array, opId: number) => {
      const { message } = await sealRequest(h.hpkePublicKey, rid, encodeMessage(ClientRequests, await withAuth(h, rid, (await loginStartReq('guess')).req)));
      return { opId, recordId: rid, stored: stored[rid === a ? 0 : 1]!.blob, request: message };
    };
    const epoch = ((await host({ type: 'Info' })) as { epoch: number }).epoch + 1;
    const p = await host({ type: 'Batch', epoch, ops: [await login(a, 0), await login(b, 1), await login(a, 2)] });
    if (p.type !== 'Prepared') throw new Error(`expected Prepared, got ${p.type}`);
    expect(p.writes.map((w) => new TextDecoder().decode(w.recordId))).toEqual(['pat', 'quinn']);
    expect(p.audit).toHaveLength(3); // one event per charged guess
    await h.store.applyBatch(0, epoch, p.writes, p.audit);
    expect(await host({ type: 'Commit', epoch })).toMatchObject({ type: 'Committed', epoch });
    expect((await storedRecord(h, a))!.record).toMatchObject({ attemptsUsed: 2 });
    expect(await c.status(a)).toMatchObject({ attemptsRemaining: 3 });
    expect(await c.status(b)).toMatchObject({ attemptsRemaining: 4 });
  });

  it('keeps the backup key across a password change and refuses the old password', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const key = new Uint8Array(randomBytes(32));
    await c.register(id('erin'), te.encode('old'), key, { attemptLimit: 7 });
    await c.recover(id('erin'), te.encode('typo'));
    const ch = await c.changePassword(id('erin'), te.encode('old'), te.encode('new'));
    expect(ch).toMatchObject({ ok: true, attemptLimit: 7, attemptsRemaining: 7 }); // the limit is kept
    const r = await c.recover(id('erin'), te.encode('new'));
    expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
    expect(await c.recover(id('erin'), te.encode('old'))).toMatchObject({ ok: false, outcome: 'wrong-password' });
  });

  it('a LoginStart on a spent record with no session left locks it in storage: the key is gone from the stored blob', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const rid = id('lena');
    const key = new Uint8Array(32).fill(0x5a);
    await c.register(rid, te.encode('pw'), key, { attemptLimit: 1 });
    // The one guess goes to a session that never finishes; a restart ends every session.
    await holdLogin(h, rid, te.encode('pw'));
    await h.restart();
    const c2 = await h.client();
    expect(await c2.recover(rid, te.encode('pw'))).toEqual({ ok: false, outcome: 'locked' });
    expect(await c2.status(rid)).toMatchObject({ type: 'StatusResult', locked: 1, attemptsRemaining: 0 });
    // The lock is in the stored record itself: status locked, no OPAQUE record, no backup key.
    const stored = await storedRecord(h, rid);
    expect(stored?.record).toMatchObject({ status: STATUS_LOCKED, attemptsUsed: 1 });
    expect(stored!.record!.backupKey).toHaveLength(0);
    expect(stored!.record!.opaqueRecord).toHaveLength(0);
    // And it stays locked across a restart.
    await h.restart();
    expect(await (await h.client()).status(rid)).toMatchObject({ locked: 1, attemptsRemaining: 0 });
  });

  it('refuses to replace a live record without proof', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('frank'), te.encode('pw'), new Uint8Array(32).fill(3));
    await expect(c.register(id('frank'), te.encode('evil'), new Uint8Array(32).fill(4))).rejects.toMatchObject({
      code: Handling.NotAuthorized,
    });
    // With proof of the current backup key it is allowed.
    await c.register(id('frank'), te.encode('pw2'), new Uint8Array(32).fill(5), { authorization: { backupKey: new Uint8Array(32).fill(3) } });
    expect(await c.recover(id('frank'), te.encode('pw2'))).toMatchObject({ ok: true });
  });

  it('answers an unknown record with a fake KE2 and a wrong-password outcome', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    expect(await c.recover(id('nobody'), te.encode('pw'))).toMatchObject({ ok: false, outcome: 'wrong-password' });
    expect(await c.status(id('nobody'))).toEqual({ type: 'NotRegistered' });
  });

  it('deletes a record only with proof of its key or password; a locked one without', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('gina'), te.encode('pw'), new Uint8Array(32).fill(6));
    await expect(c.delete(id('gina'), null)).rejects.toMatchObject({ code: Handling.NotAuthorized });
    await expect(c.delete(id('gina'), { backupKey: new Uint8Array(32).fill(7) })).rejects.toMatchObject({ code: Handling.NotAuthorized });
    expect(await c.delete(id('gina'), { password: te.encode('typo') })).toMatchObject({ type: 'WrongPassword' });
    expect(await c.status(id('gina'))).toMatchObject({ type: 'StatusResult', attemptsRemaining: 9 });
    expect(await c.delete(id('gina'), { backupKey: new Uint8Array(32).fill(6) })).toEqual({ type: 'Deleted' });
    expect(await c.status(id('gina'))).toEqual({ type: 'NotRegistered' });
    expect(await c.recover(id('gina'), te.encode('pw'))).toMatchObject({ ok: false });
    // With the password (a recovery authorizes it, once).
    await c.register(id('gina'), te.encode('pw'), new Uint8Array(32).fill(6));
    expect(await c.delete(id('gina'), { password: te.encode('pw') })).toEqual({ type: 'Deleted' });
    // A locked record holds nothing: no proof needed.
    await c.register(id('hal'), te.encode('pw'), new Uint8Array(32).fill(6), { attemptLimit: 1 });
    await c.recover(id('hal'), te.encode('x'));
    expect(await c.delete(id('hal'), null)).toEqual({ type: 'Deleted' });
  });

  it('a replayed RegisterFinish finds its stage used (UnknownStage): right after it, and after a delete, it revives nothing', async () => {
    h = await openHarness({ tokenKind: kind });
    // The adversarial drivers' client: it keeps each sealed message and can read a replay's answer.
    const vc = new VaultClient((rid, m) => h.engine.submit(rid, m), h.hpkePublicKey, await fastSuite('ristretto255-SHA512'), new TokenBook(() => h.platform.clock.t));
    const c = await h.client();
    const rid = id('kim');
    const key = new Uint8Array(32).fill(0x4b);
    const reg = await vc.register(rid, te.encode('pw'), key, { attemptLimit: 3 });
    expect(reg.registered).toBe(true);
    const finish = reg.sent.find((s) => s.type === 'RegisterFinish')!;
    // A stage is single use: the replay is refused for that reason, and the count is untouched.
    expect(await vc.replay(finish)).toMatchObject({ ok: true, sealed: true, res: { type: 'Fault', code: Handling.UnknownStage } });
    expect(await c.status(rid)).toMatchObject({ type: 'StatusResult', attemptsRemaining: 3 });
    expect(await c.delete(rid, { backupKey: key })).toEqual({ type: 'Deleted' });
    expect(await vc.replay(finish)).toMatchObject({ ok: true, sealed: true, res: { type: 'Fault', code: Handling.UnknownStage } });
    expect(await c.status(rid)).toEqual({ type: 'NotRegistered' });
    expect(await c.recover(rid, te.encode('pw'))).toMatchObject({ ok: false, outcome: 'wrong-password' });
  });

  it('survives a restart with every record and count', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('hank'), te.encode('pw'), new Uint8Array(32).fill(8), { attemptLimit: 5 });
    await c.recover(id('hank'), te.encode('bad'));
    await h.restart();
    const c2 = await h.client();
    expect(await c2.status(id('hank'))).toMatchObject({ attemptsRemaining: 4 });
    expect(await c2.recover(id('hank'), te.encode('pw'))).toMatchObject({ ok: true });
  });

  it('detects a replayed older version of one record while running', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('ivy'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const before = (await h.store.getMany(0, [id('ivy')]))[0]!.blob;
    await c.recover(id('ivy'), te.encode('bad'));
    // The host puts the older blob back (refunding the guess, it hopes).
    await h.store.applyBatch(0, 999, [{ recordId: id('ivy'), blob: before }], []);
    await expect(c.recover(id('ivy'), te.encode('bad'))).rejects.toMatchObject({ code: Integrity.RollbackDetected });
  });

  it('detects a replayed older record at load', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    await c.register(id('jack'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const before = (await h.store.getMany(0, [id('jack')]))[0]!.blob;
    await c.recover(id('jack'), te.encode('bad'));
    await h.store.applyBatch(0, 999, [{ recordId: id('jack'), blob: before }], []);
    await expect(h.restart()).rejects.toMatchObject({ code: Integrity.RollbackDetected });
  });
}, { p11kit: true });
