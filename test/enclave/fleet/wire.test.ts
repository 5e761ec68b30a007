/**
 * The fleet's wire format (enclave/fleet/wire.ts, codec.ts): every message type round-trips
 * (decode(encode(m)) = m, fast-check), and the strict decoder refuses each kind of malformed input
 * with its own FleetCode: a short or oversized message, an unknown version or type, a forged MAC
 * (before the body is read), and, behind a valid MAC, a truncated field, a trailing byte, a count
 * or length above its bound (before any item is read), an unknown op kind or record status, and a
 * number out of its range.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBody, encodeBody, MAX_CATCHUP_ENTRIES, MAX_MEMBERS, MAX_OPS_PER_ENTRY, MAX_PAYLOAD_BYTES, MAX_RECORD_ID_BYTES, MAX_SNAPSHOT_RECORDS } from '../../../enclave/fleet/codec.ts';
import { FleetCode, FleetFault } from '../../../enclave/fleet/faults.ts';
import type { Op, RecordState } from '../../../enclave/fleet/rules.ts';
import {
  HEADER_BYTES,
  MAC_BYTES,
  MAX_MESSAGE_BYTES,
  MESSAGE_TAGS,
  open,
  readHeader,
  seal,
  sealBody,
  type Body,
  type Config,
  type Entry,
  type Envelope,
  type Header,
  type MessageType,
  type Snapshot,
} from '../../../enclave/fleet/wire.ts';
import { MemberCore } from '../../../enclave/fleet/core.ts';
import { genesis } from '../../../enclave/fleet/log.ts';
import { FUZZ_FLEET_KEY, fuzz, fuzzSecrets, sampleBodies, seeds, setup } from '../../fuzz/targets/fleet-wire.ts';

const KEY = new Uint8Array(32).fill(3);
const TYPES = Object.keys(MESSAGE_TAGS) as MessageType[];

// ---- arbitraries ------------------------------------------------------------------------------

const nat = fc.maxSafeNat();
const inc = fc.uint8Array({ minLength: 16, maxLength: 16 });
const hash = fc.uint8Array({ minLength: 32, maxLength: 32 });
const id = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => new TextEncoder().encode(s).length <= MAX_RECORD_ID_BYTES);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('register' as const), id, base: nat, limit: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('replace' as const), id, base: nat, limit: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('touch' as const), id, base: nat }),
  fc.record({ kind: fc.constant('charge' as const), id, base: nat, guess: nat, session: nat }),
  fc.record({ kind: fc.constant('reset' as const), id, base: nat, session: nat }),
  fc.record({ kind: fc.constant('lock' as const), id, base: nat }),
  fc.record({ kind: fc.constant('delete' as const), id, base: nat }),
  fc.record({ kind: fc.constant('admit' as const), member: fc.integer({ min: 0, max: 255 }), incarnation: inc }),
  fc.record({ kind: fc.constant('charter' as const), serial: nat, identities: fc.array(fc.option(hash, { nil: null }), { minLength: 1, maxLength: MAX_MEMBERS }) }),
);
const entry: fc.Arbitrary<Entry> = fc.record({ index: nat, view: nat, prevHash: hash, hash, ops: fc.array(op, { maxLength: 6 }), payload: fc.uint8Array({ maxLength: 64 }) });
const config: fc.Arbitrary<Config> = fc
  .record({ epoch: nat, serial: nat, slots: fc.array(fc.tuple(fc.option(inc, { nil: null }), fc.option(hash, { nil: null })), { minLength: 1, maxLength: MAX_MEMBERS }) })
  .filter((x) => x.slots.some(([, k]) => k !== null))
  .map((x) => ({ epoch: x.epoch, admitted: x.slots.map(([a]) => a), charter: { serial: x.serial, identities: x.slots.map(([, k]) => k) } }));
const record: fc.Arbitrary<RecordState> = fc
  .record({ version: nat, status: fc.constantFrom('registered' as const, 'locked' as const, 'deleted' as const), limit: fc.integer({ min: 1, max: 255 }), total: nat, used: fc.nat(255) })
  .map((r) => ({ ...r, used: r.used % (r.limit + 1) }));
const snapshot: fc.Arbitrary<Snapshot> = fc.record({
  index: nat,
  hash,
  config,
  records: fc.uniqueArray(fc.tuple(id, record), { selector: ([k]) => k, maxLength: 5 }).map((xs) => new Map(xs)),
  lastPayload: fc.uint8Array({ maxLength: 32 }),
});
const body: fc.Arbitrary<Body> = fc.oneof(
  fc.record({ type: fc.constant('prepare' as const), epoch: nat, view: nat, commit: nat, entry }),
  fc.record({ type: fc.constant('prepareOk' as const), epoch: nat, view: nat, index: nat, hash }),
  fc.record({ type: fc.constant('commit' as const), epoch: nat, view: nat, commit: nat }),
  fc.record({ type: fc.constant('doViewChange' as const), epoch: nat, view: nat, normalView: nat, tip: nat, tipHash: hash, config }),
  fc.record({ type: fc.constant('startView' as const), epoch: nat, view: nat, tip: nat, tipHash: hash }),
  fc.record({ type: fc.constant('rejoin' as const), commit: nat, commitHash: hash }),
  fc.record({ type: fc.constant('catchupRequest' as const), commit: nat, commitHash: hash }),
  fc.record({ type: fc.constant('catchup' as const), epoch: nat, view: nat, normalView: nat, commit: nat, snapshot: fc.option(snapshot, { nil: null }), entries: fc.array(entry, { maxLength: 3 }) }),
  fc.record({ type: fc.constant('reformVote' as const), epoch: nat, view: nat, normalView: nat, tip: nat, tipHash: hash }),
  fc.record({ type: fc.constant('reformAccept' as const), epoch: nat, setHash: hash, tip: nat, tipHash: hash }),
  fc.record({ type: fc.constant('preVote' as const), epoch: nat, view: nat }),
  fc.record({ type: fc.constant('preVoteGrant' as const), epoch: nat, view: nat }),
);
const envelope: fc.Arbitrary<Envelope> = fc.record({ from: fc.nat(MAX_MEMBERS - 1), to: fc.nat(MAX_MEMBERS - 1), fromInc: inc, toInc: inc, seq: nat, body });

describe('fleet wire: round trip', () => {
  it('decode(encode(m)) = m for every message type, body and whole message', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(envelope, (e) => {
        seen.add(e.body.type);
        expect(decodeBody(e.body.type, encodeBody(e.body))).toEqual(e.body);
        const msg = seal(KEY, e);
        expect(open(KEY, msg)).toEqual(e);
        expect(seal(KEY, open(KEY, msg))).toEqual(msg);
      }),
      { numRuns: 400, seed: 1 },
    );
    expect([...seen].sort()).toEqual([...TYPES].sort());
  });
});

// ---- refusals ------------------------------------------------------------------------------------

const u16 = (n: number) => [n >> 8, n & 0xff];
/** Eight bytes big-endian, for n below 2^32. */
const u64 = (n: number) => [0, 0, 0, 0, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const header = (type: MessageType): Header => ({ type, from: 0, to: 1, fromInc: new Uint8Array(16).fill(1), toInc: new Uint8Array(16), seq: 5 });

/** The code a decode throws (it must throw a FleetFault). */
function codeOf(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetFault);
    return (e as FleetFault).code;
  }
  throw new Error('decoded: expected a refusal');
}

/** A body behind a valid MAC: what a member with the key could send, so the body decoder is reached. */
const sealed = (type: MessageType, bytes: number[]) => () => open(KEY, sealBody(KEY, header(type), Uint8Array.from(bytes)));

describe('fleet wire: the decoder refuses malformed messages with their own code', () => {
  const samples = sampleBodies();
  const good = seal(KEY, { ...header('commit'), body: samples.find((b) => b.type === 'commit')! });

  it('the header: too short, too long, unknown version or type, member id out of range, sequence number above 2^53 - 1', () => {
    expect(codeOf(() => open(KEY, good.subarray(0, HEADER_BYTES + MAC_BYTES - 1)))).toBe(FleetCode.Truncated);
    expect(codeOf(() => open(KEY, new Uint8Array(MAX_MESSAGE_BYTES + 1)))).toBe(FleetCode.TooLarge);
    const edit = (at: number, v: number) => Uint8Array.from(good, (x, i) => (i === at ? v : x));
    expect(codeOf(() => readHeader(edit(0, 2)))).toBe(FleetCode.WireVersion);
    for (const tag of [0, 13, 255]) expect(codeOf(() => readHeader(edit(1, tag)))).toBe(FleetCode.UnknownType);
    expect(codeOf(() => readHeader(edit(2, MAX_MEMBERS)))).toBe(FleetCode.UnknownMember);
    expect(codeOf(() => readHeader(edit(3, 200)))).toBe(FleetCode.UnknownMember);
    expect(codeOf(() => readHeader(edit(36, 0x20)))).toBe(FleetCode.BadValue);
    expect(readHeader(good)).toEqual(header('commit'));
  });

  it('a body under a forged MAC is never decoded: BadMac, even when the body is malformed', () => {
    const junk = new Uint8Array(HEADER_BYTES + 3 + MAC_BYTES);
    junk.set(good.subarray(0, HEADER_BYTES));
    junk.set([0xff, 0xff, 0xff], HEADER_BYTES);
    expect(codeOf(() => open(KEY, junk))).toBe(FleetCode.BadMac);
    expect(codeOf(() => open(new Uint8Array(32), good))).toBe(FleetCode.BadMac);
  });

  it('behind a valid MAC, every truncation of every body and a trailing byte are refused', () => {
    for (const b of samples) {
      const bytes = [...encodeBody(b)];
      for (let n = 0; n < bytes.length; n++) {
        expect(codeOf(sealed(b.type, bytes.slice(0, n))), `${b.type} cut to ${n}`).toBe(FleetCode.Truncated);
      }
      expect(codeOf(sealed(b.type, [...bytes, 0])), b.type).toBe(FleetCode.TrailingBytes);
      expect(open(KEY, sealBody(KEY, header(b.type), Uint8Array.from(bytes))).body).toEqual(b);
    }
  });

  it('counts above their bound are refused before any item is read (a count alone, no items, is TooMany, not Truncated)', () => {
    const hash32 = new Array<number>(32).fill(0);
    const entryHead = [...u64(1), ...u64(1), ...hash32, ...hash32];
    // prepare: epoch, view, commit, entry index, entry view, prev hash, hash, then the op count
    expect(codeOf(sealed('prepare', [...u64(1), ...u64(1), ...u64(0), ...entryHead, ...u16(MAX_OPS_PER_ENTRY + 1)]))).toBe(FleetCode.TooMany);
    expect(codeOf(sealed('prepare', [...u64(1), ...u64(1), ...u64(0), ...entryHead, ...u16(0xffff)]))).toBe(FleetCode.TooMany);
    // catchup: epoch, view, normal view, commit, snapshots (at most 1), entries
    const catchupHead = [...u64(1), ...u64(1), ...u64(1), ...u64(0)];
    expect(codeOf(sealed('catchup', [...catchupHead, ...u16(2)]))).toBe(FleetCode.TooMany);
    expect(codeOf(sealed('catchup', [...catchupHead, ...u16(0), ...u16(MAX_CATCHUP_ENTRIES + 1)]))).toBe(FleetCode.TooMany);
    // a snapshot: index, hash, epoch, admitted (count), charter serial, identities (count), records (count)
    const snap = [...u64(0), ...hash32, ...u64(1)];
    expect(codeOf(sealed('catchup', [...catchupHead, ...u16(1), ...snap, ...u16(MAX_MEMBERS + 1)]))).toBe(FleetCode.TooMany);
    expect(codeOf(sealed('catchup', [...catchupHead, ...u16(1), ...snap, ...u16(0), ...u64(0), ...u16(MAX_MEMBERS + 1)]))).toBe(FleetCode.TooMany);
    expect(codeOf(sealed('catchup', [...catchupHead, ...u16(1), ...snap, ...u16(0), ...u64(0), ...u16(0), ...u16(MAX_SNAPSHOT_RECORDS + 1)]))).toBe(FleetCode.TooMany);
    // doViewChange: epoch, view, normal view, tip, tip hash, config epoch, admitted count
    expect(codeOf(sealed('doViewChange', [...u64(1), ...u64(1), ...u64(1), ...u64(1), ...hash32, ...u64(1), ...u16(0xffff)]))).toBe(FleetCode.TooMany);
  });

  it('lengths, kinds and values out of range', () => {
    const hash32 = new Array<number>(32).fill(0);
    const prepareOf = (op: number[], payload: number[] = []) => sealed('prepare', [...u64(1), ...u64(1), ...u64(0), ...u64(1), ...u64(1), ...hash32, ...hash32, ...u16(1), ...u16(op.length), ...op, ...u16(payload.length), ...payload]);
    const lock = (idBytes: number[]) => [4, ...u16(idBytes.length), ...idBytes, ...u64(0)];
    expect(() => prepareOf(lock([0x61]))()).not.toThrow();
    expect(() => prepareOf(lock([0x61]), [1, 2, 3])()).not.toThrow();
    // the payload: its length within MAX_PAYLOAD_BYTES, all of it there, nothing after it
    expect(codeOf(prepareOf(lock([0x61]), new Array<number>(MAX_PAYLOAD_BYTES + 1).fill(7)))).toBe(FleetCode.TooLong);
    expect(codeOf(sealed('prepare', [...u64(1), ...u64(1), ...u64(0), ...u64(1), ...u64(1), ...hash32, ...hash32, ...u16(1), ...u16(lock([0x61]).length), ...lock([0x61]), ...u16(5), 1, 2]))).toBe(FleetCode.Truncated);
    expect(codeOf(sealed('prepare', [...u64(1), ...u64(1), ...u64(0), ...u64(1), ...u64(1), ...hash32, ...hash32, ...u16(1), ...u16(lock([0x61]).length), ...lock([0x61])]))).toBe(FleetCode.Truncated);
    expect(codeOf(prepareOf(lock(new Array<number>(MAX_RECORD_ID_BYTES + 1).fill(0x61))))).toBe(FleetCode.TooLong);
    expect(codeOf(prepareOf([4, ...u16(0xffff)]))).toBe(FleetCode.TooLong);
    expect(codeOf(prepareOf(lock([])))).toBe(FleetCode.TooShort);
    expect(codeOf(prepareOf([10, 0, 0]))).toBe(FleetCode.UnknownOp);
    expect(codeOf(prepareOf([0, 0, 0]))).toBe(FleetCode.UnknownOp);
    expect(codeOf(prepareOf(lock([0xc3, 0x28])))).toBe(FleetCode.BadValue); // not UTF-8
    expect(codeOf(prepareOf([1, ...u16(1), 0x61, ...u64(0), 0]))).toBe(FleetCode.BadValue); // register with limit 0
    expect(codeOf(prepareOf([4, ...u16(1), 0x61, 0x00, 0x20, 0, 0, 0, 0, 0, 0]))).toBe(FleetCode.BadValue); // base above 2^53 - 1
    // an admitted incarnation's presence byte other than 0 or 1
    expect(codeOf(sealed('doViewChange', [...u64(1), ...u64(1), ...u64(1), ...u64(1), ...hash32, ...u64(1), ...u16(1), 2]))).toBe(FleetCode.BadValue);
    // snapshot records: an unknown status, attempts used above the limit, ids out of order
    const rec = (idByte: number, status: number, limit: number, used: number) => [...u16(1), idByte, ...u64(1), status, limit, used, ...u64(0)];
    // a snapshot of one member id (no incarnation admitted, an identity), its records, no payload, no entries
    const oneMember = [...u16(1), 0, ...u64(0), ...u16(1), 1, ...hash32];
    const snapOf = (...recs: number[][]) => sealed('catchup', [...u64(1), ...u64(1), ...u64(1), ...u64(0), ...u16(1), ...u64(0), ...hash32, ...u64(1), ...oneMember, ...u16(recs.length), ...recs.flat(), ...u16(0), ...u16(0)]);
    // a configuration whose admitted slots and charter ids differ in number, or whose charter has no member
    const withConfig = (config: number[]) => sealed('catchup', [...u64(1), ...u64(1), ...u64(1), ...u64(0), ...u16(1), ...u64(0), ...hash32, ...u64(1), ...config, ...u16(0), ...u16(0), ...u16(0)]);
    expect(() => withConfig(oneMember)()).not.toThrow();
    expect(codeOf(withConfig([...u16(2), 0, 0, ...u64(0), ...u16(1), 1, ...hash32]))).toBe(FleetCode.BadValue);
    expect(codeOf(withConfig([...u16(1), 0, ...u64(0), ...u16(1), 0]))).toBe(FleetCode.BadValue);
    // a charter op whose identity's presence byte is neither 0 nor 1
    expect(codeOf(prepareOf([9, ...u64(1), ...u16(1), 2]))).toBe(FleetCode.BadValue);
    expect(() => snapOf(rec(0x61, 1, 3, 1), rec(0x62, 2, 3, 3))()).not.toThrow();
    expect(codeOf(snapOf(rec(0x61, 4, 3, 1)))).toBe(FleetCode.BadValue);
    expect(codeOf(snapOf(rec(0x61, 1, 3, 4)))).toBe(FleetCode.BadValue);
    expect(codeOf(snapOf(rec(0x62, 1, 3, 1), rec(0x61, 1, 3, 1)))).toBe(FleetCode.BadValue);
    expect(codeOf(snapOf(rec(0x61, 1, 3, 1), rec(0x61, 1, 3, 1)))).toBe(FleetCode.BadValue);
  });

  it('the encoder refuses what the decoder would, and a member does not send it: the fault is in its output', () => {
    const ops: Op[] = Array.from({ length: MAX_OPS_PER_ENTRY + 1 }, () => ({ kind: 'lock', id: 'a', base: 0 }));
    const entry = { index: 1, view: 1, prevHash: new Uint8Array(32), hash: new Uint8Array(32), ops, payload: new Uint8Array(0) };
    expect(codeOf(() => encodeBody({ type: 'prepare', epoch: 1, view: 1, commit: 0, entry }))).toBe(FleetCode.TooMany);
    expect(codeOf(() => encodeBody({ type: 'commit', epoch: 2 ** 53, view: 1, commit: 0 }))).toBe(FleetCode.BadValue);
    const core = new MemberCore(genesis(0, fuzzSecrets(0).charter.identities), { random: (n) => new Uint8Array(n).fill(1), persist: () => {} }, { n: 3, secrets: fuzzSecrets(0) }, 0);
    const entries = Array.from({ length: MAX_CATCHUP_ENTRIES + 1 }, (_, i) => ({ ...entry, index: i + 1, ops: [] }));
    core.begin(0);
    core.send(1, { type: 'catchup', epoch: 1, view: 1, normalView: 1, commit: 0, snapshot: null, entries });
    core.send(1, { type: 'commit', epoch: 1, view: 1, commit: 0 });
    const out = core.end();
    expect(out.faults.map((f) => f.code)).toEqual([FleetCode.TooMany]);
    expect(out.send.map((m) => readHeader(m).type)).toEqual(['commit']);
  });
});

describe('fleet wire: the fuzz target (test/fuzz/targets/fleet-wire.ts) finds what it looks for', () => {
  it('a seed opens, its altered copies are refused, and a genuine message outside the seeds is reported', async () => {
    await setup();
    const [, seed] = seeds().find(([n]) => n === 'message-commit')!;
    await expect(fuzz(seed)).resolves.toBeUndefined();
    const flipped = seed.slice();
    flipped[HEADER_BYTES + 3]! ^= 1;
    await expect(fuzz(flipped)).resolves.toBeUndefined();
    const other = seal(FUZZ_FLEET_KEY, { ...header('commit'), seq: 99, body: { type: 'commit', epoch: 1, view: 1, commit: 1 } });
    await expect(fuzz(Uint8Array.of(0, ...other))).rejects.toThrow(/forgery/);
  });
});
