/**
 * Model-based test (fast-check commands): random sequences of register, login with the right or
 * a wrong password, abandoned logins, password changes, deletes and restarts, checked after every
 * step against an oracle of attempts remaining and lock state. On every token under test.
 */
import { afterEach, expect, it } from 'vitest';
import fc from 'fast-check';
import { openHarness } from './helpers/vault-harness.ts';
import type { Harness } from './helpers/vault-harness.ts';
import type { EscrowClient } from '../host/client/escrow.ts';
import { Handling } from '../enclave/api/codes.ts';
import { clientLoginStart } from '../enclave/opaque/client.ts';
import { fastSuite } from '../enclave/opaque/suites-fast.ts';
import { encodeMessage, decodeMessage } from '../enclave/api/codec.ts';
import { ClientRequests, ClientResponses } from '../enclave/api/messages.ts';
import { sealRequest } from '../enclave/api/e2e.ts';
import { CONTEXT, authFor } from './helpers/vault-harness.ts';
import { randomBytes } from 'node:crypto';
import { describeTokens } from './helpers/tokens.ts';

const te = new TextEncoder();
const IDS = ['u0', 'u1'];

interface RecordModel {
  state: 'none' | 'active' | 'locked';
  limit: number;
  used: number;
  password: string;
  key: number;
  /**
   * Abandoned logins of this registration still in flight (they end only at a restart here: the
   * test clock stands still). While one is, a spent record is not locked yet: that session may
   * still prove the password with the guess it holds.
   */
  pending: number;
}
interface Model {
  r: Record<string, RecordModel>;
}
interface Real {
  h: Harness;
  c: EscrowClient;
}

const none = (): RecordModel => ({ state: 'none', limit: 0, used: 0, password: '', key: 0, pending: 0 });

async function check(m: Model, real: Real, id: string): Promise<void> {
  const st = await real.c.status(te.encode(id));
  const rm = m.r[id]!;
  if (rm.state === 'none') expect(st).toEqual({ type: 'NotRegistered' });
  else expect(st).toMatchObject({ type: 'StatusResult', locked: rm.state === 'locked' ? 1 : 0, attemptsRemaining: rm.state === 'locked' ? 0 : rm.limit - rm.used, attemptLimit: rm.limit });
}

class Register implements fc.AsyncCommand<Model, Real> {
  constructor(readonly id: string, readonly pw: string, readonly limit: number, readonly key: number) {}
  check = () => true;
  async run(m: Model, real: Real) {
    const rm = m.r[this.id]!;
    const p = real.c.register(te.encode(this.id), te.encode(this.pw), new Uint8Array(32).fill(this.key), { attemptLimit: this.limit });
    if (rm.state === 'active') {
      await expect(p).rejects.toMatchObject({ code: Handling.NotAuthorized });
    } else {
      await p;
      m.r[this.id] = { state: 'active', limit: this.limit, used: 0, password: this.pw, key: this.key, pending: 0 };
    }
    await check(m, real, this.id);
  }
  toString = () => `Register(${this.id}, ${this.pw}, ${this.limit})`;
}

class Login implements fc.AsyncCommand<Model, Real> {
  constructor(readonly id: string, readonly right: boolean) {}
  check = () => true;
  async run(m: Model, real: Real) {
    const rm = m.r[this.id]!;
    const pw = this.right ? rm.password : 'wrong-' + rm.password;
    const r = await real.c.recover(te.encode(this.id), te.encode(pw));
    if (rm.state === 'none') {
      expect(r).toMatchObject({ ok: false, outcome: 'wrong-password' });
    } else if (rm.state === 'locked' || rm.used >= rm.limit) {
      expect(r).toEqual({ ok: false, outcome: 'locked' });
      if (rm.pending === 0) rm.state = 'locked';
    } else if (this.right) {
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.backupKey[0]).toBe(rm.key);
      rm.used = 0;
    } else {
      rm.used++;
      const locked = rm.used >= rm.limit && rm.pending === 0;
      expect(r).toEqual({ ok: false, outcome: 'wrong-password', attemptsRemaining: rm.limit - rm.used, locked });
      if (locked) rm.state = 'locked';
    }
    await check(m, real, this.id);
  }
  toString = () => `Login(${this.id}, ${this.right ? 'right' : 'wrong'})`;
}

/** KE1 sent, KE2 received, then the client goes away: the guess stays spent. */
class Abandon implements fc.AsyncCommand<Model, Real> {
  constructor(readonly id: string) {}
  check = () => true;
  async run(m: Model, real: Real) {
    const rm = m.r[this.id]!;
    const suite = await fastSuite('ristretto255-SHA512');
    const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng: (n) => new Uint8Array(randomBytes(n)) }, te.encode('x'));
    const rid = te.encode(this.id);
    const { message, openResponse } = await sealRequest(real.h.hpkePublicKey, rid, encodeMessage(ClientRequests, { type: 'LoginStart', auth: await authFor(real.h, rid), suite: 1, ke1 }));
    const res = await real.h.engine.submit(rid, message);
    const out = decodeMessage(ClientResponses, await openResponse(res.response));
    if (rm.state === 'active' && rm.used < rm.limit) {
      rm.used++;
      rm.pending++;
      expect(out).toMatchObject({ type: 'LoginStarted', attemptsRemaining: rm.limit - rm.used });
    } else if (rm.state === 'none') {
      expect(out.type).toBe('LoginStarted');
    } else {
      expect(out.type).toBe('Locked');
      if (rm.pending === 0) rm.state = 'locked';
    }
    await check(m, real, this.id);
  }
  toString = () => `Abandon(${this.id})`;
}

class ChangePassword implements fc.AsyncCommand<Model, Real> {
  constructor(readonly id: string, readonly pw: string) {}
  check = (m: Readonly<Model>) => m.r[this.id]!.state === 'active' && m.r[this.id]!.used < m.r[this.id]!.limit;
  async run(m: Model, real: Real) {
    const rm = m.r[this.id]!;
    const r = await real.c.changePassword(te.encode(this.id), te.encode(rm.password), te.encode(this.pw), { attemptLimit: rm.limit });
    expect(r.ok).toBe(true);
    rm.password = this.pw;
    rm.used = 0;
    rm.pending = 0; // a new registration: older sessions belong to the old one
    await check(m, real, this.id);
  }
  toString = () => `ChangePassword(${this.id}, ${this.pw})`;
}

class Delete implements fc.AsyncCommand<Model, Real> {
  constructor(readonly id: string) {}
  check = () => true;
  async run(m: Model, real: Real) {
    const r = await real.c.delete(te.encode(this.id), { backupKey: new Uint8Array(32).fill(m.r[this.id]!.key) });
    expect(r.type).toBe(m.r[this.id]!.state === 'none' ? 'NotRegistered' : 'Deleted');
    m.r[this.id] = none();
    await check(m, real, this.id);
  }
  toString = () => `Delete(${this.id})`;
}

class Restart implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, real: Real) {
    await real.h.restart();
    real.c = await real.h.client();
    for (const id of IDS) m.r[id]!.pending = 0;
    for (const id of IDS) {
      await check(m, real, id);
    }
  }
  toString = () => 'Restart';
}

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describeTokens('vault model', (kind) => {
  it('agrees with the attempts oracle over random command sequences', async () => {
    const id = fc.constantFrom(...IDS);
    const pw = fc.constantFrom('alpha', 'beta', 'gamma');
    const cmds = [
      fc.tuple(id, pw, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 250 })).map(([i, p, l, k]) => new Register(i, p, l, k)),
      fc.tuple(id, fc.boolean()).map(([i, r]) => new Login(i, r)),
      id.map((i) => new Abandon(i)),
      fc.tuple(id, pw).map(([i, p]) => new ChangePassword(i, p)),
      id.map((i) => new Delete(i)),
      fc.constant(new Restart()),
    ];
    await fc.assert(
      fc.asyncProperty(fc.commands(cmds, { maxCommands: 18 }), async (commands) => {
        await h?.close();
        h = await openHarness({ tokenKind: kind });
        const real: Real = { h, c: await h.client() };
        const model: Model = { r: Object.fromEntries(IDS.map((i) => [i, none()])) };
        await fc.asyncModelRun(() => ({ model, real }), commands);
      }),
      { numRuns: 30 },
    );
  }, 120_000);
});
