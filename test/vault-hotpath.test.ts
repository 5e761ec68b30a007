/**
 * The hand-written hot paths of the vault against their reference forms: the audit event body
 * (enclave/vault/audit.ts encodeAuditBody vs the codec's encodeFields), the expiring session
 * tables (enclave/vault/sessions.ts: insertion-ordered sweep), and the record index by key.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeFields } from '../enclave/api/codec.ts';
import { EnclaveFault } from '../enclave/api/codes.ts';
import { nodeHash } from '../enclave/opaque/hash-node.ts';
import { AUDIT_BODY_SCHEMA, AuditLog, encodeAuditBody } from '../enclave/vault/audit.ts';
import { RecordIndex } from '../enclave/vault/record-index.ts';
import { ExpiringTable } from '../enclave/vault/sessions.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const sha256 = nodeHash('SHA-256');

describe('audit event body', () => {
  it('is byte for byte the codec encoding, and the chain verifies', () => {
    const cases = [
      [1, 0, 0, 0],
      [2 ** 32 + 5, 1_700_000_000_123, 6, 255],
      [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 255, 0],
    ] as const;
    for (const [seq, time, kind, attemptsRemaining] of cases) {
      const recordHash = rnd(32);
      expect(encodeAuditBody(seq, time, kind, recordHash, attemptsRemaining)).toEqual(encodeFields(AUDIT_BODY_SCHEMA, { seq, time, kind, recordHash, attemptsRemaining }));
    }
    const key = rnd(32);
    const log = new AuditLog(key, sha256);
    const head0 = new Uint8Array(32);
    const a = log.next(0, head0, 1000, 2, log.recordHash(rnd(8)), 9);
    const b = log.next(a.seq, a.mac, 1001, 3, log.recordHash(rnd(8)), 10);
    expect(a.mac).toEqual(sha256.hmac(key, head0, encodeFields(AUDIT_BODY_SCHEMA, { seq: 1, time: 1000, kind: 2, recordHash: a.recordHash, attemptsRemaining: 9 })));
    expect(log.verify([a, b], 0, head0, 2, b.mac)).toBe(-1);
    expect(log.verify([a, { ...b, attemptsRemaining: 9 }], 0, head0, 2, b.mac)).toBe(1);
  });

  it('refuses out-of-range values with the codec fault', () => {
    expect(() => encodeAuditBody(1, 0, 256, rnd(32), 0)).toThrow(EnclaveFault);
    expect(() => encodeAuditBody(-1, 0, 1, rnd(32), 0)).toThrow(EnclaveFault);
    expect(() => encodeAuditBody(1, 0, 1, rnd(31), 0)).toThrow(EnclaveFault);
  });
});

describe('ExpiringTable', () => {
  it('sweeps expired entries in insertion order and keeps live ones', () => {
    const dropped: number[] = [];
    const t = new ExpiringTable<number>(100, 1000, (v) => dropped.push(v));
    for (let i = 0; i < 10; i++) t.put(`k${i}`, i, i * 10); // expire at 100..190
    t.sweep(150);
    expect(dropped).toEqual([0, 1, 2, 3, 4, 5]);
    expect(t.size).toBe(4);
    expect(t.take('k6', 150)).toBe(6);
    expect(t.take('k5', 150)).toBe('missing');
    expect(t.take('k7', 170)).toBe('expired');
  });

  it('an entry put with an earlier clock (a clock that went back) still expires; a full table sweeps everything', () => {
    const t = new ExpiringTable<number>(100, 3);
    t.put('a', 1, 1000); // expires 1100
    t.put('b', 2, 500); // the clock went back: expires 600, behind a live entry
    t.sweep(700); // stops at 'a'
    expect(t.take('b', 700)).toBe('expired'); // still refused
    t.put('c', 3, 500);
    t.put('d', 4, 500);
    expect(t.size).toBe(3);
    t.put('e', 5, 700); // full: the full sweep finds 'c' and 'd' expired behind 'a'
    expect(t.size).toBe(2);
    expect(t.take('e', 700)).toBe(5);
  });

  it('refuses a new entry when full of live ones', () => {
    const t = new ExpiringTable<number>(100, 2);
    t.put('a', 1, 0);
    t.put('b', 2, 0);
    expect(() => t.put('c', 3, 50)).toThrow(EnclaveFault);
  });
});

describe('RecordIndex by key', () => {
  it('getByKey / setByKey agree with get / set', () => {
    const idx = new RecordIndex(rnd(32), sha256);
    const ids = Array.from({ length: 50 }, (_, i) => rnd(1 + (i % 40)));
    for (const id of ids) idx.setByKey(idx.keyOf(id), idx.leafOf(id, rnd(100)));
    expect(idx.count).toBe(50);
    for (const id of ids) expect(idx.getByKey(sha256.hash(id).subarray(0, 16))).toEqual(idx.get(id));
    for (const id of ids.slice(0, 10)) idx.set(id, null);
    expect(idx.count).toBe(40);
    expect(idx.getByKey(idx.keyOf(ids[0]!))).toBeUndefined();
  });
});

describe('LoginSessionTable', () => {
  it('keeps an OPAQUE login state between KE2 and KE3 (both suites), once, and wipes its slot', async () => {
    const { fastSuite } = await import('../enclave/opaque/suites-fast.ts');
    const { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } = await import('../enclave/opaque/client.ts');
    const { generateServerKeys, serverLoginFinish, serverLoginStart, serverRegistrationResponse } = await import('../enclave/opaque/server.ts');
    const { identityKsf } = await import('../enclave/opaque/ksf.ts');
    const { LoginSessionTable } = await import('../enclave/vault/sessions.ts');
    const te = new TextEncoder();
    const suites = new Map([
      ['ristretto255-SHA512', await fastSuite('ristretto255-SHA512')],
      ['P256-SHA256', await fastSuite('P256-SHA256')],
    ] as const);
    const table = new LoginSessionTable(1000, 10, suites);
    for (const suite of suites.values()) {
      const o = { suite, context: te.encode('ctx'), rng: rnd, ksf: identityKsf };
      const keys = generateServerKeys(suite, rnd);
      const id = te.encode('alice');
      const reg = clientRegistrationStart(o, te.encode('pw'));
      const { record } = await clientRegistrationFinish(o, reg.state, te.encode('pw'), serverRegistrationResponse(o, keys, reg.request, id));
      const c = clientLoginStart(o, te.encode('pw'));
      const { ke2, state } = serverLoginStart(o, keys, c.ke1, id, record);
      const regId = rnd(16);
      table.put('s1', { idHex: 'aa', suite: suite.id, registrationId: regId, state }, 0);
      table.put('s2', { idHex: 'bb', suite: suite.id, registrationId: null, state: null }, 0);
      expect(table.some(10, (s) => s.idHex === 'aa' && s.registrationId !== null && ctEq(s.registrationId, regId))).toBe(true);
      expect(table.some(10, (s) => s.idHex === 'cc')).toBe(false);
      const fin = await clientLoginFinish(o, c.state, te.encode('pw'), ke2);
      if (!fin.ok) throw new Error('client login failed');
      const s = table.take('s1', 10);
      if (typeof s === 'string') throw new Error(s);
      expect(s.idHex).toBe('aa');
      expect(s.suite).toBe(suite.id);
      expect(s.registrationId).toEqual(regId);
      const r = serverLoginFinish(o, s.state!, fin.ke3);
      expect(r.ok && r.sessionKey).toEqual(fin.sessionKey);
      expect(table.take('s1', 10)).toBe('missing');
      const fake = table.take('s2', 10);
      expect(typeof fake !== 'string' && fake.registrationId === null && fake.state === null).toBe(true);
      expect(table.size).toBe(0);
      expect((table as unknown as { data: Uint8Array }).data.every((b) => b === 0)).toBe(true);
    }
  });

  it('expires, sweeps in order, refuses when full, clears and wipes', async () => {
    const { LoginSessionTable } = await import('../enclave/vault/sessions.ts');
    const table = new LoginSessionTable(100, 3, new Map());
    const sess = (id: string) => ({ idHex: id, suite: 'ristretto255-SHA512' as const, registrationId: rnd(16), state: null });
    table.put('a', sess('a'), 0);
    table.put('b', sess('b'), 50);
    table.put('c', sess('c'), 60);
    expect(() => table.put('d', sess('d'), 70)).toThrow(EnclaveFault);
    expect(table.take('a', 100)).toBe('expired');
    table.sweep(155);
    expect(table.size).toBe(1);
    table.put('d', sess('d'), 160);
    table.put('d', sess('d2'), 170); // a re-used key replaces its session
    expect(table.size).toBe(2);
    const d = table.take('d', 180);
    expect(typeof d !== 'string' && d.idHex).toBe('d2');
    table.clear();
    expect(table.size).toBe(0);
    expect(table.take('c', 0)).toBe('missing');
    expect((table as unknown as { data: Uint8Array }).data.every((b) => b === 0)).toBe(true);
  });
});

function ctEq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

describe('unseal under a failing token', () => {
  it('a token fault stays a token fault; a blob that does not authenticate is SealedRecordInvalid', async () => {
    const { TokenError } = await import('../enclave/token.ts');
    const { Integrity } = await import('../enclave/api/codes.ts');
    const { KIND_RECORD, seal, unseal } = await import('../enclave/vault/record.ts');
    const { toFault } = await import('../enclave/vault/vault.ts');
    const { Platform: PlatformCodes } = await import('../enclave/api/codes.ts');
    let fail: string | null = null;
    const token = {
      random: (n: number) => rnd(n),
      encryptGcm: (_k: unknown, _iv: Uint8Array, _aad: Uint8Array, pt: Uint8Array) => Uint8Array.of(...pt, ...new Uint8Array(16)),
      decryptGcm: (_k: unknown, _iv: Uint8Array, _aad: Uint8Array, ct: Uint8Array) => {
        if (fail) throw new TokenError(fail);
        return ct.slice(0, ct.length - 16);
      },
    } as unknown as Parameters<typeof seal>[0];
    const id = rnd(8);
    const blob = seal(token, 1 as never, id, { kind: KIND_RECORD, suite: 1, epoch: 1, version: 1 }, null);
    for (const ckr of ['CKR_DEVICE_ERROR', 'CKR_SESSION_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID']) {
      fail = ckr;
      let err: unknown;
      try {
        unseal(token, 1 as never, id, blob);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TokenError);
      expect(toFault(err).code).toBe(PlatformCodes.TokenError);
    }
    for (const ckr of ['CKR_GENERAL_ERROR', 'CKR_ENCRYPTED_DATA_INVALID']) {
      fail = ckr;
      expect(() => unseal(token, 1 as never, id, blob)).toThrow(expect.objectContaining({ code: Integrity.SealedRecordInvalid }));
    }
  });
});
