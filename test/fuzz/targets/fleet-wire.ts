/**
 * Fuzz target: the fleet's wire decoder (enclave/fleet/wire.ts, codec.ts), what the network hands
 * a member from another member.
 * Input: one mode byte, then the bytes.
 *   mode bit 0 = 0: the bytes are a whole message: `open` under the fuzz fleet's message key of
 *                   the pair (member 0, member 1) (header, MAC, then body);
 *   mode bit 0 = 1: the bytes are a body of the message type whose tag is (mode >> 1) % 12 + 1 (the
 *                   tags of messages.ts MESSAGE_TAGS), decoded as if its MAC had verified
 *                   (`decodeBody`), so the body decoder sees them.
 * Oracle: only FleetFault escapes (a codec fault that is not mapped to a FleetCode, or any other
 * exception, is a violation); a message opens only if it is exactly one of the seeds (no flipped,
 * cut, extended or re-addressed message opens); a decoded body re-encodes to exactly its bytes.
 * Seeds: test/fuzz/seeds/fleet-wire/ (one sealed message and one body of each type).
 */
import { decodeBody, encodeBody } from '../../../enclave/fleet/codec.ts';
import { FleetFault } from '../../../enclave/fleet/faults.ts';
import { identityPublicKey, messageKeys, type MemberSecrets } from '../../../enclave/fleet/keys.ts';
import { ANY_INCARNATION, entryHash, GENESIS_HASH, MESSAGE_TAGS, open, seal, type Body, type MessageType } from '../../../enclave/fleet/wire.ts';
import type { Op } from '../../../enclave/fleet/rules.ts';
import { loadCorpus } from '../lib/engine.ts';
import { equalBytes, hex, violation } from '../lib/oracle.ts';

export const name = 'fleet-wire';
export const maxInputLength = 1 + 4096;

/** What member `member` of the 3-member fuzz fleet keeps (fixed seeds and secret: nothing here is a real fleet's). */
export function fuzzSecrets(member: number): MemberSecrets {
  const seeds = [1, 2, 3].map((b) => new Uint8Array(32).fill(b));
  const charter = { fleetId: new Uint8Array(16).fill(0xf1), founder: 0, identities: seeds.map(identityPublicKey) };
  return { member, charter, identitySeed: seeds[member]!, fleetSecret: new Uint8Array(32).fill(0x5a) };
}

/** The fuzz fleet's message key of the pair (member 0, member 1): the seeds are sent from 0 to 1. */
export const FUZZ_FLEET_KEY = messageKeys(fuzzSecrets(0)).send[1]!;

const TYPES = (Object.keys(MESSAGE_TAGS) as MessageType[]).sort((a, b) => MESSAGE_TAGS[a] - MESSAGE_TAGS[b]);
const inc = (b: number) => new Uint8Array(16).fill(b);
const hash = (b: number) => new Uint8Array(32).fill(b);

/** One body of each message type, with every op kind and a snapshot with records. */
export function sampleBodies(): Body[] {
  const ops: Op[] = [
    { kind: 'register', id: 'r0', base: 0, limit: 10 },
    { kind: 'charge', id: 'r0', base: 1, guess: 1, session: 7 },
    { kind: 'reset', id: 'r0', base: 2, session: 7 },
    { kind: 'lock', id: 'r1', base: 4 },
    { kind: 'delete', id: 'r2', base: 9 },
  ];
  const payload = Uint8Array.from({ length: 40 }, (_, i) => i);
  const entry = { index: 3, view: 2, prevHash: GENESIS_HASH, hash: entryHash(GENESIS_HASH, 3, 2, ops, payload), ops, payload };
  const admit: Op[] = [{ kind: 'admit', member: 1, incarnation: inc(2) }];
  const entry2 = { index: 4, view: 2, prevHash: entry.hash, hash: entryHash(entry.hash, 4, 2, admit), ops: admit, payload: new Uint8Array(0) };
  const ids = fuzzSecrets(0).charter.identities;
  const change: Op[] = [{ kind: 'charter', serial: 1, identities: [ids[0]!, ids[1]!, ids[2]!, hash(7)] }];
  const entry3 = { index: 5, view: 2, prevHash: entry2.hash, hash: entryHash(entry2.hash, 5, 2, change), ops: change, payload: new Uint8Array(0) };
  const config = { epoch: 1, admitted: [inc(1), inc(2), null, null], charter: { serial: 1, identities: [ids[0]!, ids[1]!, null, hash(7)] } };
  const records = new Map([
    ['r0', { version: 3, status: 'registered' as const, limit: 10, used: 1, total: 1 }],
    ['r1', { version: 5, status: 'locked' as const, limit: 3, used: 3, total: 3 }],
  ]);
  return [
    { type: 'prepare', epoch: 1, view: 2, commit: 2, entry },
    { type: 'prepareOk', epoch: 1, view: 2, index: 3, hash: entry.hash },
    { type: 'commit', epoch: 1, view: 2, commit: 3 },
    { type: 'doViewChange', epoch: 1, view: 3, normalView: 2, tip: 3, tipHash: entry.hash, config },
    { type: 'startView', epoch: 1, view: 3, tip: 3, tipHash: entry.hash },
    { type: 'rejoin', commit: 2, commitHash: hash(4) },
    { type: 'catchupRequest', commit: 2, commitHash: hash(4) },
    { type: 'catchup', epoch: 1, view: 2, normalView: 2, commit: 3, snapshot: { index: 2, hash: GENESIS_HASH, config, records, lastPayload: payload }, entries: [entry, entry2, entry3] },
    { type: 'reformVote', epoch: 2, view: 3, normalView: 2, tip: 3, tipHash: entry.hash },
    { type: 'reformAccept', epoch: 2, setHash: hash(9), tip: 3, tipHash: entry.hash },
    { type: 'preVote', epoch: 1, view: 3 },
    { type: 'preVoteGrant', epoch: 1, view: 3 },
  ];
}

/** The seeds: mode 0 and a sealed message, mode 1 | type << 1 and a body, for each type. */
export function seeds(): [string, Uint8Array][] {
  return sampleBodies().flatMap((body, i): [string, Uint8Array][] => {
    const msg = seal(FUZZ_FLEET_KEY, { from: 0, to: 1, fromInc: inc(1), toInc: i % 2 ? inc(2) : ANY_INCARNATION, seq: i + 1, body });
    const t = TYPES.indexOf(body.type);
    return [
      [`message-${body.type}`, Uint8Array.of(0, ...msg)],
      [`body-${body.type}`, Uint8Array.of(1 | (t << 1), ...encodeBody(body))],
    ];
  });
}

const valid = new Set<string>();
let ready = false;
let last: string | undefined;

export async function setup(): Promise<void> {
  ready = true;
  valid.clear();
  for (const s of loadCorpus(name)) if (((s[0] ?? 0) & 1) === 0) valid.add(hex(s.subarray(1)));
}

export function outcome(): string | undefined {
  return last;
}

/** Runs `f`; a FleetFault is a refusal (its code returned), anything else thrown is a violation. */
function refusal<T>(what: string, f: () => T): { ok: true; value: T } | { ok: false; code: number } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof FleetFault) return { ok: false, code: e.code };
    violation('wrong-error', `${what} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}, not a FleetFault`);
  }
}

/** A body as if its MAC had verified: refused with a FleetFault, or decoded and re-encoded to exactly its bytes. */
function fuzzBody(typeNumber: number, bytes: Uint8Array): string {
  const type = TYPES[typeNumber % TYPES.length]!;
  const r = refusal(`decodeBody(${type})`, () => decodeBody(type, bytes));
  if (!r.ok) return `body:${type}:refused:${r.code}`;
  if (!equalBytes(encodeBody(r.value), bytes)) violation('round-trip', `a decoded ${type} body does not re-encode to its bytes`);
  return `body:${type}:ok`;
}

/** A whole message: refused with a FleetFault, or one of the seeds exactly (and it re-seals to its bytes). */
function fuzzMessage(bytes: Uint8Array): string {
  const r = refusal('open', () => open(FUZZ_FLEET_KEY, bytes));
  if (!r.ok) return `message:refused:${r.code}`;
  if (!valid.has(hex(bytes))) violation('forgery', `a message that is not one of the seeds opened (${bytes.length} bytes, ${r.value.body.type})`);
  if (!equalBytes(seal(FUZZ_FLEET_KEY, r.value), bytes)) violation('round-trip', 'an opened message does not re-seal to its bytes');
  return `message:opened:${r.value.body.type}`;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!ready) await setup();
  const input = new Uint8Array(data);
  last = input.length > 0 && input[0]! & 1 ? fuzzBody(input[0]! >> 1, input.subarray(1)) : fuzzMessage(input.subarray(1));
}
