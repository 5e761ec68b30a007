/**
 * The hand-written hot paths of the vault against their reference forms: the audit event body
 * (enclave/vault/audit.ts encodeAuditBody vs the codec's encodeFields), the expiring session
 * tables (enclave/vault/sessions.ts: insertion-ordered sweep, room and per-id quotas, entries
 * pending per batch, the index by record id; filled at a partition's full size too), and the
 * record index by key.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeFields, encodeFields } from '../../../enclave/api/codec.ts';
import { AuditEventSchema } from '../../../enclave/api/messages.ts';
import { EnclaveFault, Handling } from '../../../enclave/api/codes.ts';
import { nodeHash } from '../../../enclave/opaque/hash-node.ts';
import { createSodiumSha256 } from '../../../enclave/opaque/hash-sodium.ts';
import { AUDIT_BODY_SCHEMA, AuditLog, encodeAuditBody } from '../../../enclave/vault/audit.ts';
import { RecordIndex } from '../../../enclave/vault/record-index.ts';
import { DEFAULT_TABLE_LIMITS, ExpiringTable, LoginSessionTable, MAX_LOGIN_SESSIONS_PER_ID, MAX_STAGES_PER_ID } from '../../../enclave/vault/sessions.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const sha256 = nodeHash('SHA-256');

describe('audit event body', () => {
  it('is byte for byte the codec encoding, and the chain verifies', () => {
    const cases = [
      [1, 0],
      [2 ** 32 + 5, 1_700_000_000_123],
      [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    ] as const;
    for (const [seq, time] of cases) {
      const nonce = rnd(16);
      const sealed = rnd(34);
      expect(encodeAuditBody(seq, time, nonce, sealed)).toEqual(encodeFields(AUDIT_BODY_SCHEMA, { seq, time, nonce, sealed }));
    }
    const key = rnd(32);
    const log = new AuditLog(key, rnd(32), sha256);
    const head0 = new Uint8Array(32);
    const rh = log.recordHash(rnd(8));
    const nonceA = rnd(16);
    const sa = log.next(0, head0, 1000, nonceA, 2, rh, 9);
    const sb = log.next(sa.seq, sa.mac, 1001, rnd(16), 3, log.recordHash(rnd(8)), 10);
    // What the host stores is the codec's encoding of the whole event, made once by next().
    const a = decodeFields(AuditEventSchema, sa.bytes);
    const b = decodeFields(AuditEventSchema, sb.bytes);
    expect(sa.bytes).toEqual(encodeFields(AuditEventSchema, a));
    expect(a).toMatchObject({ seq: 1, time: 1000, nonce: nonceA, mac: sa.mac });
    expect(sb.seq).toBe(2);
    expect(a.mac).toEqual(sha256.hmac(key, head0, encodeFields(AUDIT_BODY_SCHEMA, { seq: 1, time: 1000, nonce: a.nonce, sealed: a.sealed })));
    expect(log.verify([a, b], 0, head0, 2, b.mac)).toBe(-1);
    const flipped = Uint8Array.from(b.sealed);
    flipped[33]! ^= 1;
    expect(log.verify([a, { ...b, sealed: flipped }], 0, head0, 2, b.mac)).toBe(1);
    expect(log.open(a)).toEqual({ seq: 1, time: 1000, kind: 2, recordHash: rh, attemptsRemaining: 9 });
  });

  it('on the enclave\'s SHA-256 (its HMAC keyed once) the chain has the same bytes as plain HMACs, and dispose ends the log', async () => {
    const key = rnd(32);
    const sealKey = rnd(32);
    const keyed = new AuditLog(key, sealKey, await createSodiumSha256());
    const plain = new AuditLog(key, sealKey, sha256);
    const id = rnd(8);
    expect(keyed.recordHash(id)).toEqual(plain.recordHash(id));
    let head: Uint8Array = new Uint8Array(32);
    for (let seq = 0; seq < 20; seq++) {
      const nonce = rnd(16);
      const a = keyed.next(seq, head, 1000 + seq, nonce, 2, keyed.recordHash(id), 9);
      const b = plain.next(seq, head, 1000 + seq, nonce, 2, plain.recordHash(id), 9);
      expect(a.bytes).toEqual(b.bytes);
      expect(keyed.anchor(a.seq, a.mac)).toEqual(plain.anchor(b.seq, b.mac));
      head = a.mac;
    }
    keyed.dispose();
    expect(() => keyed.recordHash(id)).toThrow();
  });

  it('seals what an event says: neither the kind, the record hash nor the attempts are in its bytes', () => {
    const log = new AuditLog(rnd(32), rnd(32), sha256);
    const rh = log.recordHash(rnd(8));
    const nonce = rnd(16);
    const next = (...args: Parameters<AuditLog['next']>) => decodeFields(AuditEventSchema, log.next(...args).bytes);
    const a = next(0, new Uint8Array(32), 5, nonce, 3, rh, 7);
    const b = next(0, new Uint8Array(32), 5, nonce, 9, rh, 7);
    // The same nonce and record: only the first byte of the keystream-masked body differs.
    expect(a.sealed.subarray(1)).toEqual(b.sealed.subarray(1));
    expect(a.sealed[0]).not.toBe(b.sealed[0]);
    expect(Buffer.from(a.sealed).includes(Buffer.from(rh.subarray(0, 8)))).toBe(false);
    // Fresh nonces: two events with equal contents share no sealed bytes pattern.
    const c = next(0, new Uint8Array(32), 5, rnd(16), 3, rh, 7);
    expect(c.sealed).not.toEqual(a.sealed);
    expect(log.open(c)).toEqual(log.open(a));
  });

  it('nonces drawn ahead (drawNonce): the same event bytes as the nonce given, each nonce once, a wrong-length random source refused', () => {
    const key = rnd(32);
    const sealKey = rnd(32);
    const pooled = new AuditLog(key, sealKey, sha256);
    const plain = new AuditLog(key, sealKey, sha256);
    const rh = pooled.recordHash(rnd(8));
    let calls = 0;
    const random = (n: number) => (calls++, rnd(n));
    const seen = new Set<string>();
    let head: Uint8Array = new Uint8Array(32);
    // 150 events: across two refills of the pool (64 at a time), each checked against the one-off keystream.
    for (let seq = 0; seq < 150; seq++) {
      const nonce = pooled.drawNonce(random);
      expect(nonce.length).toBe(16);
      seen.add(Buffer.from(nonce).toString('hex'));
      const a = pooled.next(seq, head, 1000 + seq, nonce, 2, rh, 9);
      const b = plain.next(seq, head, 1000 + seq, Uint8Array.from(nonce), 2, rh, 9);
      expect(a.bytes).toEqual(b.bytes);
      expect(pooled.open(decodeFields(AuditEventSchema, a.bytes))).toMatchObject({ kind: 2, recordHash: rh, attemptsRemaining: 9 });
      head = a.mac;
    }
    expect(seen.size).toBe(150);
    expect(calls).toBe(3);
    // A drawn nonce not used, then an event with another nonce: that event gets its own keystream;
    // the drawn one's keystream is not used for it (the bytes match the one-off path).
    pooled.drawNonce(random);
    const other = rnd(16);
    expect(pooled.next(0, head, 5, other, 3, rh, 1).bytes).toEqual(plain.next(0, head, 5, other, 3, rh, 1).bytes);
    // The same nonce given twice after one draw: the second gets the one-off keystream, the same bytes.
    const n2 = pooled.drawNonce(random);
    const first = pooled.next(0, head, 6, n2, 4, rh, 2).bytes;
    expect(pooled.next(0, head, 6, n2, 4, rh, 2).bytes).toEqual(first);
    expect(plain.next(0, head, 6, n2, 4, rh, 2).bytes).toEqual(first);
    const bad = new AuditLog(key, sealKey, sha256);
    expect(() => bad.drawNonce((n) => rnd(n - 1))).toThrow(EnclaveFault);
  });

  it('refuses out-of-range values with the codec fault', () => {
    expect(() => encodeAuditBody(1, 0, rnd(15), rnd(34))).toThrow(EnclaveFault);
    expect(() => encodeAuditBody(-1, 0, rnd(16), rnd(34))).toThrow(EnclaveFault);
    expect(() => encodeAuditBody(1, 0, rnd(16), rnd(33))).toThrow(EnclaveFault);
  });
});

describe('ExpiringTable', () => {
  it('sweeps expired entries in insertion order and keeps live ones', () => {
    const dropped: number[] = [];
    const t = new ExpiringTable<number>(100, 1000, 1000, (v) => dropped.push(v));
    for (let i = 0; i < 10; i++) t.put(`k${i}`, 'id', i, i * 10); // expire at 100..190
    t.sweep(150);
    expect(dropped).toEqual([0, 1, 2, 3, 4, 5]);
    expect(t.size).toBe(4);
    expect(t.take('k6', 150)).toBe(6);
    expect(t.take('k5', 150)).toBe('missing');
    expect(t.take('k7', 170)).toBe('expired');
  });

  it('an entry put with an earlier clock (a clock that went back) still expires; a full table sweeps everything', () => {
    const t = new ExpiringTable<number>(100, 3, 3);
    t.put('a', 'id', 1, 1000); // expires 1100
    t.put('b', 'id', 2, 500); // the clock went back: expires 600, behind a live entry
    t.sweep(700); // stops at 'a'
    expect(t.take('b', 700)).toBe('expired'); // still refused
    t.put('c', 'id', 3, 500);
    t.put('d', 'id', 4, 500);
    expect(t.size).toBe(3);
    t.put('e', 'id', 5, 700); // full: the full sweep finds 'c' and 'd' expired behind 'a'
    expect(t.size).toBe(2);
    expect(t.take('e', 700)).toBe(5);
  });

  it('refuses a new entry when full of live ones', () => {
    const t = new ExpiringTable<number>(100, 2, 2);
    t.put('a', 'x', 1, 0);
    t.put('b', 'y', 2, 0);
    expect(() => t.room('z', 50)).toThrow(EnclaveFault);
    expect(() => t.put('c', 'z', 3, 50)).toThrow(EnclaveFault);
  });

  it('with evictOldest, an id at its quota gives up its oldest entry, and fits a full table', () => {
    const dropped: number[] = [];
    const t = new ExpiringTable<number>(100, 3, 2, (v) => dropped.push(v), true);
    t.put('a1', 'a', 1, 0);
    t.put('a2', 'a', 2, 1);
    t.room('a', 2);
    t.put('a3', 'a', 3, 2);
    expect(dropped).toEqual([1]);
    expect(t.countOf('a')).toBe(2);
    expect(t.take('a1', 2)).toBe('missing');
    t.put('b1', 'b', 4, 2); // full now
    expect(() => t.room('c', 2)).toThrow(EnclaveFault);
    t.room('a', 2); // at its quota: its own oldest makes the room
    t.put('a4', 'a', 5, 3);
    expect(dropped).toEqual([1, 2]);
    expect([t.take('a3', 3), t.take('a4', 3), t.take('b1', 3)]).toEqual([3, 5, 4]);
    expect(t.size).toBe(0);
  });

  it('an id holds its quota; entries are pending until their batch commits, and an abort or a failed op releases them', () => {
    const dropped: number[] = [];
    const t = new ExpiringTable<number>(100, 10, 2, (v) => dropped.push(v));
    t.begin(1, 0);
    t.put('a1', 'a', 1, 0);
    t.opStart();
    t.put('b1', 'b', 2, 0);
    t.opFailed(); // the op failed after its handler: what it put goes
    expect(dropped).toEqual([2]);
    expect(t.take('a1', 0)).toBe('missing'); // pending
    t.begin(2, 0); // staged behind batch 1
    t.put('a2', 'a', 3, 0);
    expect(() => t.room('a', 0)).toThrow(expect.objectContaining({ code: Handling.TooManySessions }));
    t.room('b', 0);
    t.commit(1);
    t.abort(2);
    expect(dropped).toEqual([2, 3]);
    expect(t.countOf('a')).toBe(1);
    expect(t.take('a1', 0)).toBe(1);
    expect(t.size).toBe(0);
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
    const { fastSuite } = await import('../../../enclave/opaque/suites-fast.ts');
    const { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } = await import('../../../enclave/opaque/client.ts');
    const { generateServerKeys, serverLoginFinish, serverLoginStart, serverRegistrationResponse } = await import('../../../enclave/opaque/server.ts');
    const { identityKsf } = await import('../../../enclave/opaque/ksf.ts');
    const { LoginSessionTable } = await import('../../../enclave/vault/sessions.ts');
    const te = new TextEncoder();
    const suites = new Map([
      ['ristretto255-SHA512', await fastSuite('ristretto255-SHA512')],
      ['P256-SHA256', await fastSuite('P256-SHA256')],
    ] as const);
    const table = new LoginSessionTable(1000, 10, 10, suites);
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
      expect(table.hasLive('aa', regId, 10)).toBe(true);
      expect(table.hasLive('aa', rnd(16), 10)).toBe(false);
      expect(table.hasLive('bb', regId, 10)).toBe(false); // a fake session has no registration
      expect(table.hasLive('cc', regId, 10)).toBe(false);
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
    const { LoginSessionTable } = await import('../../../enclave/vault/sessions.ts');
    const table = new LoginSessionTable(100, 3, 3, new Map());
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

  it('indexes sessions by record id: quota, live sessions of a registration, dropId; pending until commit, released by abort and failed ops', () => {
    const table = new LoginSessionTable(100, 8, 2, new Map());
    const reg = rnd(16);
    const sess = (id: string) => ({ idHex: id, suite: 'ristretto255-SHA512' as const, registrationId: reg, state: null });
    table.begin(1, 0);
    table.put('a1', sess('a'), 0);
    table.put('b1', sess('b'), 0);
    table.opStart();
    table.put('b2', sess('b'), 0);
    table.opFailed();
    expect(table.size).toBe(2);
    expect(table.take('a1', 0)).toBe('missing'); // pending
    expect(table.hasLive('a', reg, 0)).toBe(false);
    table.begin(2, 0); // staged behind batch 1
    table.put('c1', sess('c'), 0);
    table.put('c2', sess('c'), 0);
    expect(() => table.room('c', 0)).toThrow(expect.objectContaining({ code: Handling.TooManySessions }));
    table.commit(1);
    expect(table.hasLive('a', reg, 0)).toBe(true);
    expect(table.hasLive('a', reg, 100)).toBe(false); // expired
    expect(table.take('c1', 0)).toBe('missing');
    table.abort(2);
    expect(table.size).toBe(2);
    table.room('c', 0);
    table.put('a2', sess('a'), 0); // no batch in flight: live at once
    expect(() => table.room('a', 0)).toThrow(EnclaveFault);
    table.begin(3, 0);
    table.put('d1', sess('d'), 0);
    table.put('d2', sess('d'), 0);
    table.dropId('d'); // pending ones too
    table.dropId('a');
    table.commit(3);
    expect(table.size).toBe(1);
    expect(table.take('a2', 0)).toBe('missing');
    table.room('a', 0);
    table.room('d', 0);
    expect(typeof table.take('b1', 0)).toBe('object');
    expect((table as unknown as { data: Uint8Array }).data.every((b) => b === 0)).toBe(true);
  });

  it(`at a partition's full size (${DEFAULT_TABLE_LIMITS.loginSessions}): refuses one more, and an id past its quota, while the others are served`, () => {
    const max = DEFAULT_TABLE_LIMITS.loginSessions;
    const table = new LoginSessionTable(120_000, max, MAX_LOGIN_SESSIONS_PER_ID, new Map());
    const stages = new ExpiringTable<number>(300_000, DEFAULT_TABLE_LIMITS.stages, MAX_STAGES_PER_ID);
    const reg = rnd(16);
    const idOf = (i: number) => `id${Math.floor(i / 8)}`; // 8 entries per id
    table.begin(1, 0);
    stages.begin(1, 0);
    for (let i = 0; i < max; i++) {
      table.room(idOf(i), 0);
      table.put(`s${i}`, { idHex: idOf(i), suite: 'ristretto255-SHA512', registrationId: reg, state: null }, 0);
      stages.room(idOf(i), 0);
      stages.put(`t${i}`, idOf(i), i, 0);
    }
    const full = expect.objectContaining({ code: Handling.TooManySessions, message: 'too many sessions in flight' });
    expect(() => table.room('fresh', 1)).toThrow(full);
    expect(() => stages.room('fresh', 1)).toThrow(full);
    table.commit(1);
    stages.commit(1);
    expect(table.size).toBe(max);
    expect(table.hasLive(idOf(0), reg, 1)).toBe(true);
    expect(typeof table.take('s0', 1)).toBe('object');
    expect(stages.take('t0', 1)).toBe(0);
    table.room('fresh', 1);
    stages.room('fresh', 1);
    // With room in the table, an id at its quota is still refused.
    for (let i = 1; i < 9; i++) table.take(`s${i}`, 1);
    const id = idOf(20 * 8);
    for (let n = 8; n < MAX_LOGIN_SESSIONS_PER_ID; n++) table.put(`q${n}`, { idHex: id, suite: 'ristretto255-SHA512', registrationId: reg, state: null }, 1);
    expect(table.size).toBe(max - 1);
    expect(() => table.room(id, 1)).toThrow(expect.objectContaining({ code: Handling.TooManySessions, field: 'recordId' }));
    table.room(idOf(0), 1);
    // Everything expires: one ordered sweep empties the table.
    table.sweep(120_001);
    stages.sweep(300_001);
    expect(table.size).toBe(0);
    expect(stages.size).toBe(0);
  });
});

describe('unseal under a failing token', () => {
  it('a token fault stays a token fault; a blob that does not authenticate is SealedRecordInvalid', async () => {
    const { TokenError } = await import('../../../enclave/token.ts');
    const { Integrity } = await import('../../../enclave/api/codes.ts');
    const { KIND_RECORD, seal, unseal } = await import('../../../enclave/vault/record.ts');
    const { toFault } = await import('../../../enclave/vault/compute.ts');
    const { PlatformFault } = await import('../../../enclave/api/codes.ts');
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
      expect(toFault(err).code).toBe(PlatformFault.TokenError);
    }
    for (const ckr of ['CKR_GENERAL_ERROR', 'CKR_ENCRYPTED_DATA_INVALID']) {
      fail = ckr;
      expect(() => unseal(token, 1 as never, id, blob)).toThrow(expect.objectContaining({ code: Integrity.SealedRecordInvalid }));
    }
  });
});
