/**
 * Model-based test (fast-check commands): random sequences of register, login with the right or
 * a wrong password, abandoned logins, password changes, deletes and restarts, checked after every
 * step against an oracle of attempts remaining and lock state. On every token under test.
 *
 * What the oracle catches: a guess not charged at LoginStart, or refunded by a dropped session or
 * a restart; a count not reset by a recovery or a password change; a record locked while a
 * session of its registration still holds a guess, or not locked once every guess is spent and
 * none is held; a live record replaced without proof; a deleted or locked record that answers as
 * anything else.
 *
 * The sequences come from a pinned seed, printed at the start, so a run reproduces; BKV_MODEL_SEED
 * picks another and BKV_MODEL_RUNS the number of sequences (a long exploring run sets both).
 * Scenarios the random runs reach only now and then are also played as fixed examples below.
 */
import { afterEach, expect, it } from 'vitest';
import fc from 'fast-check';
import { holdLogin, openHarness } from './helpers/vault-harness.ts';
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

function envInt(name: string, fallback: number, min: number, max: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}, not ${v}`);
  return n;
}
const SEED = envInt('BKV_MODEL_SEED', 7, -(2 ** 31), 2 ** 31 - 1);
const RUNS = envInt('BKV_MODEL_RUNS', 30, 1, 1_000_000);

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
    console.log(`vault model [${kind}]: seed ${SEED}, ${RUNS} runs (BKV_MODEL_SEED, BKV_MODEL_RUNS)`);
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
      { numRuns: RUNS, seed: SEED },
    );
  }, Math.max(120_000, RUNS * 4_000));

  /** One fixed command sequence, checked against the oracle after every step as the random runs are. */
  async function play(commands: fc.AsyncCommand<Model, Real>[]): Promise<void> {
    h = await openHarness({ tokenKind: kind });
    const real: Real = { h, c: await h.client() };
    const model: Model = { r: Object.fromEntries(IDS.map((i) => [i, none()])) };
    await fc.asyncModelRun(() => ({ model, real }), commands);
  }

  it('example: every guess spent while a session still holds one, then a restart ends it', async () => {
    // At the limit with a session pending, a login answers locked but the record is not locked
    // (that session may still prove the password); once no session holds a guess, the next login
    // locks it for good; only a new registration revives the id.
    await play([
      new Register('u0', 'alpha', 2, 7),
      new Abandon('u0'),
      new Abandon('u1'),
      new Login('u0', false),
      new Login('u0', true),
      new Abandon('u0'),
      new Restart(),
      new Login('u0', true),
      new Login('u0', true),
      new Register('u0', 'beta', 3, 9),
      new Login('u0', true),
    ]);
  });

  it('example: several sessions open on one record, their outcomes interleaved', async () => {
    h = await openHarness({ tokenKind: kind });
    const c = await h.client();
    const rid = te.encode('u0');
    const key = new Uint8Array(32).fill(0x33);
    await c.register(rid, te.encode('alpha'), key, { attemptLimit: 2 });
    // Two sessions hold both guesses: a third login answers locked, the record is not locked.
    const right = await holdLogin(h, rid, te.encode('alpha'));
    const wrong = await holdLogin(h, rid, te.encode('nope'));
    expect(await c.recover(rid, te.encode('alpha'))).toEqual({ ok: false, outcome: 'locked' });
    expect(await c.status(rid)).toMatchObject({ locked: 0, attemptsRemaining: 0 });
    // The wrong one finishes first: no lock, the other session still holds a guess.
    expect(await wrong.finish()).toEqual({ ok: false, outcome: 'wrong-password', attemptsRemaining: 0, locked: false });
    // The right one then recovers the key and resets the count.
    const r = await right.finish();
    expect(r).toMatchObject({ ok: true, attemptsRemaining: 2 });
    expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
    expect(await c.status(rid)).toMatchObject({ locked: 0, attemptsRemaining: 2 });
    // Two wrong sessions: the first to finish leaves the record open, the last one locks it.
    const w1 = await holdLogin(h, rid, te.encode('nope'));
    const w2 = await holdLogin(h, rid, te.encode('nope2'));
    expect(await w2.finish()).toEqual({ ok: false, outcome: 'wrong-password', attemptsRemaining: 0, locked: false });
    expect(await w1.finish()).toEqual({ ok: false, outcome: 'wrong-password', attemptsRemaining: 0, locked: true });
    expect(await c.status(rid)).toMatchObject({ locked: 1, attemptsRemaining: 0 });
    expect(await c.recover(rid, te.encode('alpha'))).toEqual({ ok: false, outcome: 'locked' });
  });
});
