/**
 * The enclave's tables of in-flight state (stages, login sessions, recovered sessions) when they
 * fill up (enclave/vault/sessions.ts): room is taken while a batch is computed, so an operation
 * that finds none is refused with TooManySessions before it charges anything, its Commit can not
 * fail on it, and the partition keeps serving with every live session; one record id holds at
 * most its quota of login sessions and of stages (its recovered sessions beyond their quota
 * replace the oldest); an aborted or dropped batch gives its room back. Small maxima
 * (createEnclave's tableLimits) stand in for a partition's 100,000; test/enclave/vault/hotpath.test.ts
 * fills the tables at that size.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { Handling, PlatformFault } from '../../../enclave/api/codes.ts';
import { sealRequest } from '../../../client/e2e-seal.ts';
import type { ClientRequest, ClientResponse, HostRequest, HostResponse } from '../../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, HostRequests, HostResponses, SUITE_CODE } from '../../../enclave/api/messages.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import type { ClientLoginState } from '../../../enclave/opaque/client.ts';
import { identityKsf, ksfFromParams } from '../../../enclave/opaque/ksf.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { MAX_AUTH_SESSIONS_PER_ID, MAX_LOGIN_SESSIONS_PER_ID, MAX_STAGES_PER_ID, STAGE_TTL_MS } from '../../../enclave/vault/sessions.ts';
import type { OpResult } from '../../../host/vault/engine.ts';
import { CONTEXT, openHarness, withAuth } from '../../helpers/vault-harness.ts';
import type { ClientOp } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
const id = (s: string) => te.encode(s);
const rng = (n: number) => new Uint8Array(randomBytes(n));
const key = (b: number) => new Uint8Array(32).fill(b);
const TOO_MANY = { type: 'Fault', code: Handling.TooManySessions };

let h: Harness | undefined;
let suite: Suite;
beforeAll(async () => {
  suite = await fastSuite('ristretto255-SHA512');
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const copts = (ksf = identityKsf) => ({ suite, context: CONTEXT, rng, ksf });

interface Sealed {
  rid: Uint8Array;
  message: Uint8Array;
  open(r: OpResult): Promise<ClientResponse>;
}

async function seal(rid: Uint8Array, req: ClientOp): Promise<Sealed> {
  const { message, openResponse } = await sealRequest(h!.hpkePublicKey, rid, encodeMessage(ClientRequests, await withAuth(h!, rid, req)));
  return { rid, message, open: async (r) => decodeMessage(ClientResponses, r.sealed ? await openResponse(r.response) : r.response) };
}

/** Sends the operations as one batch (submitted in one turn, the engine batches them together) and opens the answers. */
async function batch(...ops: Sealed[]): Promise<ClientResponse[]> {
  const before = h!.engine.stats.batches;
  const results = await Promise.all(ops.map((o) => h!.engine.submit(o.rid, o.message)));
  expect(h!.engine.stats.batches - before).toBe(1);
  return Promise.all(ops.map((o, i) => o.open(results[i]!)));
}

interface Login {
  rid: Uint8Array;
  op: Sealed;
  state: ClientLoginState;
  password: string;
}

async function loginStart(rid: Uint8Array, password = 'wrong'): Promise<Login> {
  const { ke1, state } = clientLoginStart(copts(), te.encode(password));
  return { rid, op: await seal(rid, { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 }), state, password };
}

/** The LoginFinish of a started login (a KE3 that can not verify when the password was wrong). */
async function loginFinish(l: Login, started: ClientResponse): Promise<Sealed> {
  if (started.type !== 'LoginStarted') throw new Error(`expected LoginStarted, got ${started.type}`);
  const fin = await clientLoginFinish(copts(ksfFromParams(started.ksf)), l.state, te.encode(l.password), started.ke2);
  return seal(l.rid, { type: 'LoginFinish', sessionId: started.sessionId, ke3: fin.ok ? fin.ke3 : new Uint8Array(suite.Nm) });
}

async function registerStart(rid: Uint8Array): Promise<Sealed> {
  const { request } = clientRegistrationStart(copts(), te.encode('pw'));
  return seal(rid, { type: 'RegisterStart', suite: SUITE_CODE[suite.id], request, attemptLimit: 0, ksf: identityKsf.params, pacing: 0 });
}

describe('full tables', () => {
  it('a full stage table refuses the next RegisterStart; the login beside it is charged and answered; every session lives on', async () => {
    h = await openHarness({ tableLimits: { stages: 4 } });
    const c = await h.client();
    await c.register(id('victim'), te.encode('pw'), key(1), { attemptLimit: 3 });
    await c.register(id('other'), te.encode('pw'), key(2), { attemptLimit: 3 });
    const other = await loginStart(id('other'), 'pw');
    const [otherStarted] = await batch(other.op);
    const fill = await batch(...(await Promise.all([0, 1, 2, 3].map((i) => registerStart(id(`filler-${i}`))))));
    expect(fill.map((r) => r.type)).toEqual(['RegisterStarted', 'RegisterStarted', 'RegisterStarted', 'RegisterStarted']);

    const victim = await loginStart(id('victim'), 'pw');
    const [started, refused] = await batch(victim.op, await registerStart(id('filler-4')));
    expect(started).toMatchObject({ type: 'LoginStarted', attemptsRemaining: 2 });
    expect(refused).toMatchObject(TOO_MANY);
    expect(h.engine.failed).toBeNull();
    // The guess was charged with its KE2 delivered; both sessions finish.
    expect(await batch(await loginFinish(victim, started!))).toMatchObject([{ type: 'Recovered', attemptsRemaining: 3 }]);
    expect(await batch(await loginFinish(other, otherStarted!))).toMatchObject([{ type: 'Recovered' }]);
    // A stage is room again once it expires.
    h.platform.clock.t += STAGE_TTL_MS + 1;
    expect(await batch(await registerStart(id('filler-4')))).toMatchObject([{ type: 'RegisterStarted' }]);
  });

  it('a full login session table refuses a login cleanly (nothing charged); the one that fits is served; every session lives on', async () => {
    h = await openHarness({ tableLimits: { loginSessions: 4 } });
    const c = await h.client();
    await c.register(id('victim'), te.encode('pw'), key(1), { attemptLimit: 3 });
    await c.register(id('late'), te.encode('pw'), key(2), { attemptLimit: 3 });
    await c.register(id('other'), te.encode('pw'), key(3), { attemptLimit: 3 });
    const other = await loginStart(id('other'), 'pw');
    const fakes = await Promise.all([0, 1, 2].map((i) => loginStart(id(`nobody-${i}`))));
    const [otherStarted, ...fakeStarted] = await batch(other.op, fakes[0]!.op, fakes[1]!.op);
    expect(fakeStarted.map((r) => r.type)).toEqual(['LoginStarted', 'LoginStarted']);

    // One slot left: the victim's login takes it, the fake behind it in the batch is refused.
    const victim = await loginStart(id('victim'), 'pw');
    const [started, refused] = await batch(victim.op, fakes[2]!.op);
    expect(started).toMatchObject({ type: 'LoginStarted', attemptsRemaining: 2 });
    expect(refused).toMatchObject(TOO_MANY);
    // Full: a login is refused and charges nothing.
    expect(await batch((await loginStart(id('late'), 'pw')).op)).toMatchObject([TOO_MANY]);
    expect(await c.status(id('late'))).toMatchObject({ attemptsRemaining: 3 });
    expect(h.engine.failed).toBeNull();

    expect(await batch(await loginFinish(victim, started!))).toMatchObject([{ type: 'Recovered', attemptsRemaining: 3 }]);
    expect(await batch(await loginFinish(other, otherStarted!))).toMatchObject([{ type: 'Recovered' }]);
    expect(await c.recover(id('late'), te.encode('pw'))).toMatchObject({ ok: true, attemptsRemaining: 3 });
  });

  it('a full recovered-session table refuses a valid KE3 before it takes the session, which finishes once there is room', async () => {
    h = await openHarness({ tableLimits: { authSessions: 2 } });
    const c = await h.client();
    for (const [i, name] of ['a', 'b', 'victim'].entries()) await c.register(id(name), te.encode('pw'), key(i + 1), { attemptLimit: 3 });
    const a = await c.recover(id('a'), te.encode('pw'));
    if (!a.ok) throw new Error('recovery failed');
    const b = await loginStart(id('b'), 'pw');
    const victim = await loginStart(id('victim'), 'pw');
    const [bStarted, victimStarted] = await batch(b.op, victim.op);
    const victimFinish = await loginFinish(victim, victimStarted!);
    const [bDone, refused] = await batch(await loginFinish(b, bStarted!), victimFinish);
    expect(bDone).toMatchObject({ type: 'Recovered' });
    expect(refused).toMatchObject(TOO_MANY);
    expect(h.engine.failed).toBeNull();
    // Charged once, with its KE2 delivered; not reset, since the KE3 was refused unread.
    expect(await c.status(id('victim'))).toMatchObject({ attemptsRemaining: 2 });
    // `a` spends its recovered session on a password change: one slot frees, the same KE3 recovers.
    await c.register(id('a'), te.encode('pw2'), undefined, { authorization: { sessionId: a.sessionId, sessionKey: a.sessionKey } });
    expect(await batch(victimFinish)).toMatchObject([{ type: 'Recovered', attemptsRemaining: 3 }]);
  });
});

describe('per-record quotas', () => {
  it('one id holds at most its quota of login sessions and stages, another id still served; its recovered sessions replace the oldest', async () => {
    h = await openHarness();
    const c = await h.client();
    await c.register(id('many'), te.encode('pw'), key(1), { attemptLimit: 255 });
    const Q = MAX_LOGIN_SESSIONS_PER_ID;
    // Logins on a registered id: the quota's worth charged and answered, the next refused uncharged.
    const logins = await Promise.all(Array.from({ length: Q + 1 }, () => loginStart(id('many'))));
    const res = await batch(...logins.map((l) => l.op), (await loginStart(id('someone-else'))).op);
    expect(res.slice(0, Q).every((r) => r.type === 'LoginStarted')).toBe(true);
    expect(res[Q]).toMatchObject(TOO_MANY);
    expect(res[Q + 1]).toMatchObject({ type: 'LoginStarted' });
    expect(await c.status(id('many'))).toMatchObject({ attemptsRemaining: 255 - Q });
    // Fake sessions of an unknown id: the same quota.
    const fakes = await Promise.all(Array.from({ length: Q + 1 }, () => loginStart(id('nobody'))));
    const fr = await batch(...fakes.map((l) => l.op));
    expect(fr.slice(0, Q).every((r) => r.type === 'LoginStarted')).toBe(true);
    expect(fr[Q]).toMatchObject(TOO_MANY);
    // Stages.
    const S = MAX_STAGES_PER_ID;
    const stages = await Promise.all(Array.from({ length: S + 1 }, () => registerStart(id('staged'))));
    const sr = await batch(...stages, await registerStart(id('staged-too')));
    expect(sr.slice(0, S).every((r) => r.type === 'RegisterStarted')).toBe(true);
    expect(sr[S]).toMatchObject(TOO_MANY);
    expect(sr[S + 1]).toMatchObject({ type: 'RegisterStarted' });
    // Recovered sessions: one more recovery than the quota is served, and replaces the oldest.
    await c.register(id('often'), te.encode('pw'), key(2), { attemptLimit: 255 });
    const recoveries: { sessionId: Uint8Array; sessionKey: Uint8Array }[] = [];
    for (let i = 0; i <= MAX_AUTH_SESSIONS_PER_ID; i++) {
      const r = await c.recover(id('often'), te.encode('pw'));
      if (!r.ok) throw new Error('recovery failed');
      recoveries.push(r);
    }
    const change = (r: { sessionId: Uint8Array; sessionKey: Uint8Array }, pw: string) =>
      c.register(id('often'), te.encode(pw), undefined, { authorization: { sessionId: r.sessionId, sessionKey: r.sessionKey } });
    await expect(change(recoveries[0]!, 'pw1')).rejects.toMatchObject({ code: Handling.NotAuthorized });
    expect(await change(recoveries[1]!, 'pw2')).toMatchObject({ attemptsRemaining: 255 });
    expect(h.engine.failed).toBeNull();
  });
});

describe('room of batches that do not commit', () => {
  async function host(req: HostRequest): Promise<HostResponse> {
    return decodeMessage(HostResponses, await h!.enclave.request(encodeMessage(HostRequests, req)));
  }
  const ops = (list: Sealed[]) => list.map((o, i) => ({ opId: i, recordId: o.rid, stored: new Uint8Array(0), request: o.message }));
  /** RegisterStarts for fresh ids, sent as one Batch. */
  async function stages(epoch: number, n: number, tag: string) {
    const list = await Promise.all(Array.from({ length: n }, (_, i) => registerStart(id(`${tag}-${i}`))));
    return { res: await host({ type: 'Batch', epoch, ops: ops(list) }), list };
  }
  /** Commit(epoch): the answers of `list`, opened. */
  async function commit(epoch: number, list: Sealed[]): Promise<string[]> {
    const r = await host({ type: 'Commit', epoch });
    if (r.type !== 'Committed') throw new Error(`Commit(${epoch}) answered ${r.type}`);
    return Promise.all(r.results.map(async (x) => {
      const out = await list[x.opId]!.open({ sealed: x.sealed === 1, response: x.response });
      return out.type === 'Fault' ? `Fault ${out.code}` : out.type;
    }));
  }
  const ok = 'RegisterStarted';
  const refused = `Fault ${Handling.TooManySessions}`;

  it('an aborted batch, pending or staged, and a batch dropped by a failed NVRAM write, give their room back', async () => {
    h = await openHarness({ tableLimits: { stages: 2 } });
    let e = ((await host({ type: 'Info' })) as { epoch: number }).epoch + 1;
    const later = () => (h!.platform.clock.t += STAGE_TTL_MS + 1); // every stage so far expires

    // Pending, aborted: its two stages' room comes back.
    expect((await stages(e, 2, 'a')).res).toMatchObject({ type: 'Prepared' });
    expect(await host({ type: 'Abort', epoch: e })).toMatchObject({ type: 'Aborted' });
    const b = await stages(e, 2, 'b');
    expect(await commit(e, b.list)).toEqual([ok, ok]);
    // Full now: refused at compute, and the Commit goes through.
    const c = await stages(++e, 1, 'c');
    expect(await commit(e, c.list)).toEqual([refused]);

    // Staged, aborted: its room comes back for the batch staged in its place.
    later();
    const d = await stages(++e, 1, 'd');
    expect((await stages(e + 1, 1, 'f')).res).toMatchObject({ type: 'Staged' });
    expect(await host({ type: 'Abort', epoch: e + 1 })).toMatchObject({ type: 'Aborted' });
    const g = await stages(e + 1, 1, 'g');
    expect(g.res).toMatchObject({ type: 'Staged' });
    expect(await commit(e, d.list)).toEqual([ok]);
    expect(await host({ type: 'Prepare', epoch: ++e })).toMatchObject({ type: 'Prepared' });
    expect(await commit(e, g.list)).toEqual([ok]);

    // Pending aborted with a batch staged behind it: both give their room back.
    later();
    expect((await stages(++e, 1, 'k')).res).toMatchObject({ type: 'Prepared' });
    expect((await stages(e + 1, 1, 'l')).res).toMatchObject({ type: 'Staged' });
    expect(await host({ type: 'Abort', epoch: e })).toMatchObject({ type: 'Aborted' });
    const m = await stages(e, 2, 'm');
    expect(await commit(e, m.list)).toEqual([ok, ok]);

    // The intent write fails: the batch is dropped with its room; after a reload it is there.
    later();
    h.platform.nvram.failWrites = true;
    expect((await stages(++e, 2, 'n')).res).toMatchObject({ type: 'Fault', code: PlatformFault.NvramError });
    h.platform.nvram.failWrites = false;
    await h.engine.start();
    const p = await stages(e, 2, 'p');
    expect(await commit(e, p.list)).toEqual([ok, ok]);
  });
});
