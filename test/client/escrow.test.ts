/**
 * What the client SDK believes (client/escrow.ts): only answers the enclave sealed to its
 * request. A relay that forges any response type unsealed, answers with bytes that do not open,
 * or replays another request's sealed answer gets an EscrowTransportError, and the vault's state
 * is what the enclave says it is. KSF parameters outside the client's bounds are refused.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../enclave/api/codec.ts';
import { ClientResponses } from '../../enclave/api/messages.ts';
import type { ClientResponse } from '../../enclave/api/messages.ts';
import { argon2idKsf, identityKsf } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient, EscrowKsfError, EscrowTransportError, checkKsfBounds } from '../../client/escrow.ts';
import type { Relay } from '../../client/escrow.ts';
import { CONTEXT, clientExtras, openHarness } from '../helpers/vault-harness.ts';
import type { Harness } from '../helpers/vault-harness.ts';
import { randomBytes } from 'node:crypto';

const te = new TextEncoder();
let h: Harness;
afterEach(async () => h?.close());

/** A relay that passes the first `pass` operations through and answers the next one itself, unsealed. */
function forging(forged: ClientResponse, pass: number): Relay {
  let n = 0;
  return async (rid, m) => (n++ < pass ? h.engine.submit(rid, m) : { sealed: false, response: encodeMessage(ClientResponses, forged) });
}

async function clientWith(relay: Relay): Promise<EscrowClient> {
  return new EscrowClient({ relay, enclavePublicKey: h.hpkePublicKey, suite: await fastSuite('ristretto255-SHA512'), rng: (n) => new Uint8Array(randomBytes(n)), context: CONTEXT, ...clientExtras(h) });
}

describe('the client takes only sealed answers as outcomes', () => {
  it('forged unsealed Registered, Deleted, Locked, StatusResult and LoginStarted are transport faults', async () => {
    h = await openHarness();
    const honest = await h.client();
    const bob = te.encode('bob');
    // RegisterFinish answered by the relay: the client does not report a registration.
    const reg = await clientWith(forging({ type: 'Registered', attemptsRemaining: 10, attemptLimit: 10 }, 1));
    await expect(reg.register(bob, te.encode('pw'), new Uint8Array(32).fill(1))).rejects.toBeInstanceOf(EscrowTransportError);
    expect(await honest.status(bob)).toMatchObject({ type: 'NotRegistered' });

    await honest.register(bob, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const del = await clientWith(forging({ type: 'Deleted' }, 1));
    await expect(del.delete(bob, { backupKey: new Uint8Array(32).fill(1) })).rejects.toBeInstanceOf(EscrowTransportError);
    const locked = await clientWith(forging({ type: 'Locked' }, 0));
    await expect(locked.recover(bob, te.encode('pw'))).rejects.toBeInstanceOf(EscrowTransportError);
    const status = await clientWith(forging({ type: 'StatusResult', registered: 1, locked: 1, attemptsRemaining: 0, attemptLimit: 5, suite: 1, registrationId: new Uint8Array(16) }, 0));
    await expect(status.status(bob)).rejects.toBeInstanceOf(EscrowTransportError);
    const hostileKsf = new Uint8Array(13);
    hostileKsf[0] = 1;
    new DataView(hostileKsf.buffer).setUint32(1, 64);
    new DataView(hostileKsf.buffer).setUint32(5, 1 << 21);
    new DataView(hostileKsf.buffer).setUint32(9, 1);
    const ls = await clientWith(forging({ type: 'LoginStarted', sessionId: new Uint8Array(16), ke2: new Uint8Array(320), ksf: hostileKsf, attemptsRemaining: 9 }, 0));
    await expect(ls.recover(bob, te.encode('pw'))).rejects.toBeInstanceOf(EscrowTransportError);
    // The record is as the enclave says: live, with the one guess the forged LoginStart never charged.
    expect(await honest.status(bob)).toMatchObject({ type: 'StatusResult', locked: 0, attemptsRemaining: 5 });
  });

  it('an answer that does not open, or another request\'s sealed answer, is a transport fault', async () => {
    h = await openHarness();
    const honest = await h.client();
    const bob = te.encode('bob');
    await honest.register(bob, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 5 });
    const junk = await clientWith(async () => ({ sealed: true, response: new Uint8Array(64) }));
    await expect(junk.status(bob)).rejects.toBeInstanceOf(EscrowTransportError);
    let saved: Uint8Array | undefined;
    const recorder = await clientWith(async (rid, m) => {
      const r = await h.engine.submit(rid, m);
      saved ??= r.response;
      return r;
    });
    await recorder.status(bob);
    const replayer = await clientWith(async () => ({ sealed: true, response: saved! }));
    await expect(replayer.status(bob)).rejects.toBeInstanceOf(EscrowTransportError);
  });
});

describe('KSF bounds', () => {
  it('the default bounds refuse the identity KSF, parameters below the floor and above the ceiling', () => {
    expect(() => checkKsfBounds(identityKsf.params, DEFAULT_KSF_BOUNDS)).toThrow(EscrowKsfError);
    expect(() => checkKsfBounds(argon2idKsf({ t: 1, m: 64, p: 1 }).params, DEFAULT_KSF_BOUNDS)).toThrow(EscrowKsfError);
    expect(() => checkKsfBounds(argon2idKsf({ t: 64, m: 1 << 21, p: 4 }).params, DEFAULT_KSF_BOUNDS)).toThrow(EscrowKsfError);
    expect(checkKsfBounds(argon2idKsf({ t: 3, m: 65536, p: 4 }).params, DEFAULT_KSF_BOUNDS).id).toBe('argon2id');
    expect(() => checkKsfBounds(Uint8Array.of(9), DEFAULT_KSF_BOUNDS)).toThrow();
  });

  it('a client refuses to register with a KSF outside its bounds, and to log in with one a server asks for', async () => {
    h = await openHarness();
    const base = { relay: (rid: Uint8Array, m: Uint8Array) => h.engine.submit(rid, m), enclavePublicKey: h.hpkePublicKey, suite: await fastSuite('ristretto255-SHA512'), rng: (n: number) => new Uint8Array(randomBytes(n)), context: CONTEXT, auth: clientExtras(h).auth };
    expect(() => new EscrowClient({ ...base, ksf: identityKsf })).toThrow(EscrowKsfError);
    // A record registered with a weak KSF (a client with wide bounds): a default client will not log in with it.
    const weak = argon2idKsf({ t: 1, m: 64, p: 1 });
    const wide = new EscrowClient({ ...base, ksf: weak, ksfBounds: { allowIdentity: false, min: { t: 1, m: 8, p: 1 }, max: DEFAULT_KSF_BOUNDS.max } });
    const eve = te.encode('eve');
    await wide.register(eve, te.encode('pw'), new Uint8Array(32).fill(3), { attemptLimit: 5 });
    await expect(new EscrowClient(base).recover(eve, te.encode('pw'))).rejects.toBeInstanceOf(EscrowKsfError);
    expect(await wide.recover(eve, te.encode('pw'))).toMatchObject({ ok: true });
  });

  it('the SDK registers with Argon2id by default', async () => {
    h = await openHarness();
    const base = { relay: (rid: Uint8Array, m: Uint8Array) => h.engine.submit(rid, m), enclavePublicKey: h.hpkePublicKey, suite: await fastSuite('ristretto255-SHA512'), rng: (n: number) => new Uint8Array(randomBytes(n)), context: CONTEXT, auth: clientExtras(h).auth };
    const frank = te.encode('frank');
    await new EscrowClient(base).register(frank, te.encode('pw'), new Uint8Array(32).fill(4), { attemptLimit: 5 });
    // A client that accepts at most 1 MiB of memory refuses the record's parameters: they are Argon2id's default (64 MiB).
    const small = new EscrowClient({ ...base, ksf: identityKsf, ksfBounds: { allowIdentity: true, min: { t: 1, m: 8, p: 1 }, max: { t: 10, m: 1024, p: 16 } } });
    await expect(small.recover(frank, te.encode('pw'))).rejects.toThrow(/m=65536/);
  });
});

describe('what the host sees of an answer', () => {
  it('every sealed answer has one length, whatever its outcome', async () => {
    h = await openHarness();
    const lengths = new Map<string, Set<number>>();
    let last = '';
    const c = await clientWith(async (rid, m) => {
      const r = await h.engine.submit(rid, m);
      expect(r.sealed).toBe(true);
      const set = lengths.get(last) ?? new Set<number>();
      set.add(r.response.length);
      lengths.set(last, set);
      return r;
    });
    const step = async <T>(name: string, f: () => Promise<T>) => {
      last = name;
      return f().catch((e: unknown) => e);
    };
    const ann = te.encode('ann');
    await step('NotRegistered', () => c.status(ann));
    await step('register', () => c.register(ann, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 1 }));
    await step('StatusResult', () => c.status(ann));
    await step('Recovered', () => c.recover(ann, te.encode('pw')));
    await step('WrongPassword+locked', () => c.recover(ann, te.encode('no')));
    await step('Locked', () => c.recover(ann, te.encode('pw')));
    await step('fake KE2', () => c.recover(te.encode('nobody'), te.encode('pw')));
    // A fault (no token) is sealed to the same length.
    const noToken = new EscrowClient({
      relay: async (rid, m) => {
        const r = await h.engine.submit(rid, m);
        lengths.set('Fault', new Set([...(lengths.get('Fault') ?? []), r.response.length]));
        return r;
      },
      enclavePublicKey: h.hpkePublicKey,
      suite: await fastSuite('ristretto255-SHA512'),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ...clientExtras(h),
      auth: '',
    });
    await expect(noToken.status(ann)).rejects.toThrow(/AuthRequired/);
    const all = new Set([...lengths.values()].flatMap((x) => [...x]));
    expect([...lengths.keys()].sort()).toEqual(['Fault', 'Locked', 'NotRegistered', 'Recovered', 'StatusResult', 'WrongPassword+locked', 'fake KE2', 'register'].sort());
    expect([...all]).toEqual([12 + 512 + 16]);
  });
});
