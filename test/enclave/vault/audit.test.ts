/**
 * What the host holds of a batch before it commits, and the audit chain it stores:
 * - a LoginFinish writes its record and makes one audit event whatever its outcome (right KE3,
 *   wrong KE3, the guess that locks), every record blob has one length, and an unknown id's
 *   logins make the same audit events as a registered one's: the writes and events of a batch do
 *   not tell the host which ops succeeded;
 * - audit events are sealed: their stored bytes carry neither kind, nor record hash, nor attempts;
 *   only the enclave opens them, for the operator secret, and only once committed;
 * - the chain is checked back from the committed head in runs the enclave anchors; a removed,
 *   altered, missing or cut event, a forged anchor and a wrong secret are refused.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { AuditLog } from '../../../enclave/vault/audit.ts';
import { nodeHash } from '../../../enclave/opaque/hash-node.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFields, decodeMessage, encodeFields, encodeMessage } from '../../../enclave/api/codec.ts';
import { Integrity, Lifecycle } from '../../../enclave/api/codes.ts';
import { AUDIT_KIND, AuditEventSchema, HostRequests, HostResponses } from '../../../enclave/api/messages.ts';
import type { AuditEvent, HostRequest } from '../../../enclave/api/messages.ts';
import type { BatchWrite, RecordStore } from '../../../host/storage/types.ts';
import { readAuditChain } from '../../../host/vault/audit-read.ts';
import { openHarness } from '../../helpers/vault-harness.ts';
import type { Harness } from '../../helpers/vault-harness.ts';

const te = new TextEncoder();
const id = (s: string) => te.encode(s);
const SECRET = new Uint8Array(randomBytes(32));
const SECRET_HASH = new Uint8Array(createHash('sha256').update(SECRET).digest());
const ZERO = new Uint8Array(32);

async function hostCall(h: Harness, req: HostRequest) {
  return decodeMessage(HostResponses, await h.enclave.request(encodeMessage(HostRequests, req)));
}

/** What the engine hands the store for each batch, in order: the host's whole view before Commit. */
interface Seen {
  writes: BatchWrite[];
  /** The events as applyBatch took them (their bytes), decoded here to be looked at. */
  audit: AuditEvent[];
}

/** `store` with some of its methods replaced (the others bound to it). */
function overriding(store: RecordStore, over: Partial<RecordStore>): RecordStore {
  return new Proxy(store, {
    get: (t, k) => {
      if (k in over) return over[k as keyof RecordStore];
      const v = (t as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

function watchBatches(h: Harness, onBatch?: (s: Seen) => Promise<void>): Seen[] {
  const seen: Seen[] = [];
  const inner = h.store;
  h.store = overriding(inner, {
    applyBatch: async (p, epoch, writes, audit) => {
      const s = { writes: [...writes], audit: audit.map((e) => decodeFields(AuditEventSchema, e.bytes)) };
      seen.push(s);
      await onBatch?.(s);
      return inner.applyBatch(p, epoch, writes, audit);
    },
  });
  return seen;
}

/** A batch's shape as the host sees it: per write its blob length, per event its encoded length. */
const shape = (s: Seen) => ({ writes: s.writes.map((w) => w.blob.length), audit: s.audit.map((e) => encodeFields(AuditEventSchema, e).length) });

/** The partition's typed call, as VaultHost.auditVerify hands it to readAuditChain. */
const call = (h: Harness) => (req: Extract<HostRequest, { type: 'AuditVerify' }>) => h.engine.call(req);

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('what the host holds before Commit', () => {
  it('a right KE3, a wrong one and the one that locks write the same: one blob of one length, one sealed event', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    const rid = id('alice');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
    const seen = watchBatches(h);
    expect((await c.recover(rid, te.encode('pw'))).ok).toBe(true);
    expect(await c.recover(rid, te.encode('no'))).toMatchObject({ outcome: 'wrong-password' });
    expect(await c.recover(rid, te.encode('no'))).toMatchObject({ outcome: 'wrong-password' });
    const last = await c.recover(rid, te.encode('no'));
    expect(last).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 0 });
    expect(seen).toHaveLength(8); // LoginStart, LoginFinish, four times
    const finishes = [1, 3, 5, 7].map((i) => shape(seen[i]!));
    const starts = [0, 2, 4, 6].map((i) => shape(seen[i]!));
    expect(finishes[0]!.writes).toHaveLength(1);
    expect(finishes[0]!.audit).toHaveLength(1);
    for (const f of finishes) expect(f).toEqual(finishes[0]);
    // A charged LoginStart looks like a LoginFinish: one record blob, one event.
    for (const s of starts) expect(s).toEqual(finishes[0]);
    // What they said differs, and only the enclave says it (with the operator secret).
    const report = await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET });
    expect(report.broken).toBeNull();
    expect(report.entries.slice(-8).map((e) => e.kind)).toEqual([
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.recovered,
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.wrongPassword,
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.wrongPassword,
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.locked,
    ]);
  });

  it('an unknown id makes the same audit events as a registered one (its logins leave one sealed event each)', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    await c.register(id('alice'), te.encode('pw'), new Uint8Array(32).fill(1));
    const seen = watchBatches(h);
    await c.recover(id('alice'), te.encode('no'));
    await c.recover(id('nobody'), te.encode('no'));
    expect(seen.map((s) => s.audit.length)).toEqual([1, 1, 1, 1]);
    const events = seen.flatMap((s) => s.audit).map((e) => encodeFields(AuditEventSchema, e).length);
    expect(new Set(events).size).toBe(1);
    const report = await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET });
    expect(report.entries.slice(-4).map((e) => e.kind)).toEqual([AUDIT_KIND.guessUsed, AUDIT_KIND.wrongPassword, AUDIT_KIND.unknownId, AUDIT_KIND.unknownId]);
  });

  it('an unknown id\'s logins do the token work of a registered one\'s (a record opened and sealed per op), and write nothing', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    await c.register(id('alice'), te.encode('pw'), new Uint8Array(32).fill(1));
    const token = h.platform.token;
    // Every token mechanism the sealing uses: AES-GCM (gcm-ecdh profile) or AES-ECB and HMAC (ctr-hmac).
    const calls = { encryptGcm: 0, decryptGcm: 0, encryptEcb: 0, hmac: 0 };
    for (const m of Object.keys(calls) as (keyof typeof calls)[]) {
      const f = token[m]!.bind(token);
      (token as unknown as Record<string, unknown>)[m] = (...a: Parameters<typeof f>) => {
        calls[m]++;
        return (f as (...x: unknown[]) => Uint8Array)(...a);
      };
    }
    const seen = watchBatches(h);
    const count = async (rid: string) => {
      for (const k of Object.keys(calls) as (keyof typeof calls)[]) calls[k] = 0;
      await c.recover(id(rid), te.encode('no'));
      return { ...calls };
    };
    const registered = await count('alice');
    const unknown = await count('nobody');
    const ctr = token.profiles()[0] === 'ctr-hmac';
    expect(registered).toEqual(ctr ? { encryptGcm: 0, decryptGcm: 0, encryptEcb: 4, hmac: 4 } : { encryptGcm: 2, decryptGcm: 2, encryptEcb: 0, hmac: 0 });
    expect(unknown).toEqual(registered);
    expect(seen.slice(2).map((b) => b.writes.length)).toEqual([0, 0]);
  });

  it('the events of a batch not yet committed do not open, even for the operator secret', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    await c.register(id('alice'), te.encode('pw'), new Uint8Array(32).fill(1));
    const tries: { firstBad: number; entries: number; anchor: number }[] = [];
    watchBatches(h, async (s) => {
      const stored = await h.store.auditEvents(0, 1, 1000);
      const prev = stored[stored.length - 1]!;
      const r = await hostCall(h, { type: 'AuditVerify', fromSeq: prev.seq, fromHead: prev.mac, events: s.audit, toSeq: 0, toHead: ZERO, anchor: new Uint8Array(0), auth: SECRET });
      if (r.type !== 'AuditResult') throw new Error(r.type);
      tries.push({ firstBad: r.firstBad, entries: r.entries.length, anchor: r.anchor.length });
    });
    expect((await c.recover(id('alice'), te.encode('pw'))).ok).toBe(true);
    // Each pending batch's event chains on from the head but is past it: not verified, not opened.
    expect(tries).toEqual([
      { firstBad: 1, entries: 0, anchor: 0 },
      { firstBad: 1, entries: 0, anchor: 0 },
    ]);
    // Once committed, the same events open.
    const report = await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET });
    expect(report.entries.slice(-2).map((e) => e.kind)).toEqual([AUDIT_KIND.guessUsed, AUDIT_KIND.recovered]);
  });
});

describe('audit events are sealed', () => {
  it('their stored bytes carry neither the record id, its hash, nor the kind and attempts in the clear', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    const rid = id('audit-record-a');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
    await c.recover(rid, te.encode('bad'));
    await c.recover(rid, te.encode('bad'));
    const stored = await h.store.auditEvents(0, 1, 100);
    expect(stored).toHaveLength(5);
    const report = await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET });
    expect(report.entries).toHaveLength(stored.length);
    for (let i = 0; i < stored.length; i++) {
      const bytes = Buffer.from(encodeFields(AuditEventSchema, stored[i]!));
      expect(bytes.includes(Buffer.from(rid))).toBe(false);
      expect(bytes.includes(Buffer.from(report.entries[i]!.recordHash.subarray(0, 8)))).toBe(false);
    }
    // A fresh nonce for every event.
    expect(new Set(stored.map((e) => Buffer.from(e.nonce).toString('hex'))).size).toBe(stored.length);
    expect(report.entries[1]!.recordHash).toEqual(report.entries[3]!.recordHash);
  });

  it('open only for the operator secret: a wrong one is refused, none verifies only, and no secret provisioned refuses all', async () => {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    await c.register(id('alice'), te.encode('pw'), new Uint8Array(32).fill(1));
    await expect(readAuditChain(call(h), h.store, 0, { operatorSecret: new Uint8Array(32).fill(9) })).rejects.toMatchObject({ name: 'EnclaveCallError', code: Lifecycle.OperatorAuthFailed });
    const events = await h.store.auditEvents(0, 1, 100);
    const req = { type: 'AuditVerify' as const, fromSeq: 0, fromHead: ZERO, events, toSeq: 0, toHead: ZERO, anchor: new Uint8Array(0) };
    expect(await hostCall(h, { ...req, auth: new Uint8Array(32).fill(9) })).toMatchObject({ type: 'Fault', code: Lifecycle.OperatorAuthFailed });
    expect(await hostCall(h, { ...req, auth: new Uint8Array(0) })).toMatchObject({ type: 'AuditResult', firstBad: 0xffffffff, entries: [] });
    expect(await hostCall(h, { ...req, auth: SECRET })).toMatchObject({ type: 'AuditResult', firstBad: 0xffffffff, entries: [{ kind: AUDIT_KIND.registered }] });
    await h.close();
    h = await openHarness();
    await (await h.client()).register(id('alice'), te.encode('pw'), new Uint8Array(32).fill(1));
    const evs = await h.store.auditEvents(0, 1, 100);
    expect(await hostCall(h, { ...req, events: evs, auth: SECRET })).toMatchObject({ type: 'Fault', code: Lifecycle.OperatorAuthFailed });
    expect(await hostCall(h, { ...req, events: evs, auth: new Uint8Array(0) })).toMatchObject({ type: 'AuditResult', firstBad: 0xffffffff });
  });
});

describe('the audit chain', () => {
  async function chain(): Promise<AuditEvent[]> {
    h = await openHarness({ operatorKeyHash: SECRET_HASH });
    const c = await h.client();
    const rid = id('audit-record-a');
    await c.register(rid, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
    await c.recover(rid, te.encode('bad'));
    await c.recover(rid, te.encode('pw'));
    await c.delete(rid, { backupKey: new Uint8Array(32).fill(1) });
    return h.store.auditEvents(0, 1, 100);
  }

  it('verifies from the committed head and finds a removed, altered or cut event', async () => {
    const events = await chain();
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    const verify = async (evs: AuditEvent[]) => {
      const r = await hostCall(h, { type: 'AuditVerify', fromSeq: 0, fromHead: ZERO, events: evs, toSeq: 0, toHead: ZERO, anchor: new Uint8Array(0), auth: new Uint8Array(0) });
      return (r as { firstBad: number }).firstBad;
    };
    expect(await verify(events)).toBe(0xffffffff);
    expect(await verify([events[0]!, ...events.slice(2)])).toBe(1);
    const altered = events.map((e) => ({ ...e, sealed: Uint8Array.from(e.sealed) }));
    altered[2]!.sealed[33]! ^= 1; // the attempts remaining, under the seal
    expect(await verify(altered)).toBe(2);
    const retimed = events.map((e) => ({ ...e }));
    retimed[4]!.time += 1;
    expect(await verify(retimed)).toBe(4);
    expect(await verify(events.slice(0, 4))).toBe(4);
  });

  it('reads back in anchored runs: any run size gives the same report; a forged or future anchor is refused', async () => {
    const events = await chain();
    const whole = await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET });
    expect(whole).toMatchObject({ headSeq: 6, verified: 6, broken: null });
    expect(whole.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(whole.entries.map((e) => e.kind)).toEqual([
      AUDIT_KIND.registered,
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.wrongPassword,
      AUDIT_KIND.guessUsed,
      AUDIT_KIND.recovered,
      AUDIT_KIND.deleted,
    ]);
    expect(whole.entries.map((e) => e.attemptsRemaining)).toEqual([3, 2, 2, 1, 3, 0]);
    for (const runSize of [1, 2, 4, 6]) {
      const progress: number[] = [];
      expect(await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET, runSize, onProgress: (v) => progress.push(v) })).toEqual(whole);
      expect(progress.at(-1)).toBe(6);
      expect(progress.length).toBe(Math.ceil(6 / runSize));
    }
    expect((await readAuditChain(call(h), h.store, 0, { operatorSecret: SECRET, keep: 2 })).entries.map((e) => e.seq)).toEqual([5, 6]);
    expect((await readAuditChain(call(h), h.store, 0, {})).entries).toEqual([]);
    // An anchor is the enclave's word for one point of the committed chain only.
    const run = events.slice(0, 3);
    const base = { type: 'AuditVerify' as const, fromSeq: 0, fromHead: ZERO, events: run, auth: new Uint8Array(0) };
    const r = await hostCall(h, { ...base, events: events.slice(3), fromSeq: 3, fromHead: events[2]!.mac, toSeq: 0, toHead: ZERO, anchor: new Uint8Array(0) });
    if (r.type !== 'AuditResult') throw new Error(r.type);
    expect(r.anchor).toHaveLength(32);
    expect(await hostCall(h, { ...base, toSeq: 3, toHead: events[2]!.mac, anchor: r.anchor })).toMatchObject({ type: 'AuditResult', firstBad: 0xffffffff });
    expect(await hostCall(h, { ...base, toSeq: 3, toHead: events[2]!.mac, anchor: new Uint8Array(randomBytes(32)) })).toMatchObject({ type: 'Fault', code: Integrity.AuditAnchorInvalid });
    expect(await hostCall(h, { ...base, toSeq: 3, toHead: events[1]!.mac, anchor: r.anchor })).toMatchObject({ type: 'Fault', code: Integrity.AuditAnchorInvalid });
    expect(await hostCall(h, { ...base, toSeq: 2, toHead: events[2]!.mac, anchor: r.anchor })).toMatchObject({ type: 'Fault', code: Integrity.AuditAnchorInvalid });
  });

  it('a stored event missing, altered or cut off the tail is reported at its sequence number', async () => {
    await chain();
    const tampered = (f: (evs: AuditEvent[]) => AuditEvent[]): RecordStore =>
      overriding(h.store, { auditEvents: async (p, from, n) => f(await h.store.auditEvents(p, from, n)) });
    const read = (s: RecordStore) => readAuditChain(call(h), s, 0, { runSize: 3 });
    expect((await read(tampered((evs) => evs.filter((e) => e.seq !== 2)))).broken).toEqual({ seq: 2, reason: 'missing from storage' });
    expect((await read(tampered((evs) => evs.map((e) => (e.seq === 5 ? { ...e, time: e.time + 1 } : e))))).broken).toEqual({ seq: 5, reason: 'does not verify' });
    expect(await read(tampered((evs) => evs.filter((e) => e.seq < 6)))).toMatchObject({ broken: { seq: 6, reason: 'missing from storage' }, verified: 0 });
    expect((await read(h.store)).broken).toBeNull();
  });
});

describe('the sealed part of an event', () => {
  it('is AES-256-CTR as OpenSSL computes it (the 128-bit counter carried across bytes), for any nonce, and opens back', () => {
    const seal = new Uint8Array(randomBytes(32));
    const log = new AuditLog(new Uint8Array(randomBytes(32)), seal, nodeHash('SHA-256'));
    const rh = new Uint8Array(randomBytes(32));
    const nonces = [new Uint8Array(16), new Uint8Array(16).fill(0xff), Uint8Array.from([...new Uint8Array(15).fill(0x12), 0xfe]), Uint8Array.from([...new Uint8Array(8), ...new Uint8Array(8).fill(0xff)])];
    for (let i = 0; i < 50; i++) nonces.push(new Uint8Array(randomBytes(16)));
    for (const [i, nonce] of nonces.entries()) {
      const ev = log.next(i, new Uint8Array(32), 1000 + i, nonce, 3, rh, 7);
      const decoded = decodeFields(AuditEventSchema, ev.bytes) as AuditEvent;
      const pt = Uint8Array.from([3, ...rh, 7]);
      const c = createCipheriv('aes-256-ctr', seal, nonce);
      const want = Buffer.concat([c.update(pt), c.final()]);
      expect(Buffer.from(decoded.sealed).toString('hex'), `nonce ${Buffer.from(nonce).toString('hex')}`).toBe(want.toString('hex'));
      const opened = log.open(decoded);
      expect([opened.kind, Buffer.from(opened.recordHash).toString('hex'), opened.attemptsRemaining]).toEqual([3, Buffer.from(rh).toString('hex'), 7]);
    }
    expect(() => log.next(0, new Uint8Array(32), 0, new Uint8Array(12), 3, rh, 7)).toThrow(RangeError);
  });
});
