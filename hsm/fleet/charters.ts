/**
 * Charter changes in the member processes (docs/fleet.md, "Membership changes in the processes"):
 *
 * - The operator's approval of one change reaches each member's device as a MAC (`charterApproval`:
 *   HMAC-SHA256 under a key derived from the operator secret, over the changed charter's hash,
 *   ceremony.ts `changedCharterHash`), sent by `bkv fleet add|remove` to every member
 *   (POST /fleet/charter). The host carries it and can not make one: it never holds the operator
 *   secret's key. A replayed approval approves the same change again, nothing else.
 * - The device whose member leads proposes the change it holds an approval for (`CharterDesk.propose`,
 *   Member.proposeCharter: one change at a time, after an entry of its view committed).
 * - Once the change is committed, a member of the changed charter grants an added member the fleet
 *   secret (`CharterDesk.grant`, ceremony.ts `grantJoiner`), which its host writes to the new
 *   member's folder as `join.json`; the new member's device opens it (`joinStep`,
 *   ceremony.ts `acceptJoinerGrant`) and keeps its secrets (durable.ts version 2).
 *
 * The device keeps the operator secret in RAM while it runs (its host reads the file at start, as
 * for the key ceremony): both the approval and a grant check it against the hash the device
 * provisioned at its first start.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acceptJoinerGrant, changedCharterHash, charterHash, checkOperatorSecret, grantJoiner, identityOf, secretCheck, type Charter } from '../../enclave/fleet/ceremony.ts';
import { encodeSecrets } from '../../enclave/fleet/durable.ts';
import { FleetCode, FleetFault, fleetFaultName } from '../../enclave/fleet/faults.ts';
import type { MemberSecrets } from '../../enclave/fleet/keys.ts';
import { configAt, tipOf } from '../../enclave/fleet/log.ts';
import type { CharterState } from '../../enclave/fleet/messages.ts';
import type { Member, Output } from '../../enclave/fleet/member.ts';
import { ctEqual } from '../../enclave/opaque/bytes.ts';
import { writeFileDurably } from '../durable-file.ts';
import { readMemberSecrets, SECRETS_FILE } from './member-secrets.ts';

/** The label of the approval key (HMAC-SHA256 of it under the operator secret). */
export const APPROVAL_KEY_LABEL = 'bkv/fleet/charter-approval-key/v1';
/** The file a granter's host writes into an added member's folder. */
export const JOIN_FILE = 'join.json';
/** Member ids a charter names at most (enclave/fleet: ids 0..6). */
const MAX_IDS = 7;

const te = new TextEncoder();

export function approvalKey(operatorSecret: Uint8Array): Uint8Array {
  return hmac(sha256, operatorSecret, te.encode(APPROVAL_KEY_LABEL));
}

/** The operator's approval of `change` to the fleet founded under `founding`: what `bkv fleet add|remove` sends each member. */
export function charterApproval(operatorSecret: Uint8Array, founding: Charter, change: CharterState): Uint8Array {
  return hmac(sha256, approvalKey(operatorSecret), changedCharterHash(charterHash(founding), change));
}

/** The label that starts the message an approval of a re-form without some members MACs. */
export const REFORM_APPROVAL_LABEL = 'bkv/fleet/reform-without/v1';

/** The incarnation bytes of a kept member (16: enclave/fleet/messages.ts INCARNATION_BYTES). */
const INCARNATION_LEN = 16;

/**
 * What the operator's approval of a re-form without the member ids `without`, out of the
 * configuration of epoch `fromEpoch`, with the kept members' incarnations `kept` (this boot of
 * each, as their status reports it), MACs: the label, the founding charter's hash, the epoch
 * (8 bytes, big-endian), the ids left out as one byte of bits (bit i: id i), then each kept id in
 * ascending order (1 byte) with its incarnation (16 bytes). The order of the inputs does not
 * matter; never the same bytes as a charter approval's message (a 32-byte hash).
 */
export function reformApprovalMessage(founding: Charter, fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>): Uint8Array {
  const label = te.encode(REFORM_APPROVAL_LABEL);
  const ids = [...kept.keys()].sort((a, b) => a - b);
  const head = label.length + 32 + 8 + 1;
  const out = new Uint8Array(head + ids.length * (1 + INCARNATION_LEN));
  out.set(label, 0);
  out.set(charterHash(founding), label.length);
  new DataView(out.buffer).setBigUint64(label.length + 32, BigInt(fromEpoch));
  out[head - 1] = without.reduce((bits, m) => bits | (1 << m), 0);
  ids.forEach((m, i) => {
    out[head + i * (1 + INCARNATION_LEN)] = m;
    out.set(kept.get(m)!, head + i * (1 + INCARNATION_LEN) + 1);
  });
  return out;
}

/** The operator's approval of a re-form without `without` out of epoch `fromEpoch`, for the kept members' boots `kept`: what `bkv fleet reform` sends each of them. */
export function reformApproval(operatorSecret: Uint8Array, founding: Charter, fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>): Uint8Array {
  return hmac(sha256, approvalKey(operatorSecret), reformApprovalMessage(founding, fromEpoch, without, kept));
}

/** The kept members' incarnations as JSON: `[{"member", "incarnation": 32 hex digits}, ...]`. */
export function keptJson(kept: ReadonlyMap<number, Uint8Array>): { member: number; incarnation: string }[] {
  return [...kept].sort(([a], [b]) => a - b).map(([member, inc]) => ({ member, incarnation: bytesToHex(inc) }));
}

/**
 * A re-form approval's fields, strictly: an epoch 0..2^53-1, 1..6 distinct member ids 0..6 to go
 * without, and 1..7 kept members, each a member id not among those and its incarnation (32
 * lower-case hex digits), no id twice.
 */
export function parseReformWithout(fromEpoch: unknown, without: unknown, kept: unknown): { fromEpoch: number; without: number[]; kept: Map<number, Uint8Array> } {
  if (!Number.isSafeInteger(fromEpoch) || (fromEpoch as number) < 0) throw new ChangeFormatError('"fromEpoch" must be an integer from 0');
  if (!Array.isArray(without) || without.length < 1 || without.length >= MAX_IDS) throw new ChangeFormatError(`"without" must list 1..${MAX_IDS - 1} member ids`);
  if (without.some((m) => !Number.isInteger(m) || m < 0 || m >= MAX_IDS) || new Set(without).size !== without.length) throw new ChangeFormatError(`"without" must list distinct member ids 0..${MAX_IDS - 1}`);
  if (!Array.isArray(kept) || kept.length < 1 || kept.length > MAX_IDS) throw new ChangeFormatError(`"kept" must list 1..${MAX_IDS} members`);
  const out = new Map<number, Uint8Array>();
  for (const k of kept as unknown[]) {
    const o = k as { member?: unknown; incarnation?: unknown };
    if (typeof k !== 'object' || k === null || Array.isArray(k) || Object.keys(k).some((x) => x !== 'member' && x !== 'incarnation')) throw new ChangeFormatError('a kept member is {"member", "incarnation"}');
    if (!Number.isInteger(o.member) || (o.member as number) < 0 || (o.member as number) >= MAX_IDS || out.has(o.member as number) || (without as number[]).includes(o.member as number)) throw new ChangeFormatError('a kept member\'s "member" must be a member id not listed twice and not in "without"');
    if (typeof o.incarnation !== 'string' || !/^[0-9a-f]{32}$/.test(o.incarnation)) throw new ChangeFormatError('a kept member\'s "incarnation" must be 32 lower-case hex digits');
    out.set(o.member as number, Uint8Array.from(Buffer.from(o.incarnation, 'hex')));
  }
  return { fromEpoch: fromEpoch as number, without: [...(without as number[])].sort((a, b) => a - b), kept: out };
}

/** A change as JSON: its serial and the identity (hex) at each id, null where none. */
export interface ChangeJson {
  readonly serial: number;
  readonly identities: readonly (string | null)[];
}

export function changeJson(c: CharterState): ChangeJson {
  return { serial: c.serial, identities: c.identities.map((k) => (k ? bytesToHex(k) : null)) };
}

export class ChangeFormatError extends Error {
  override readonly name = 'ChangeFormatError';
}

/** A change from JSON, strictly: a serial 1..2^32-1 and 1..7 identities, each 64 lower-case hex digits or null. */
export function parseChange(v: unknown): CharterState {
  const o = v as Partial<ChangeJson>;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ChangeFormatError('a change is an object {serial, identities}');
  if (!Number.isInteger(o.serial) || o.serial! < 1 || o.serial! > 0xffffffff) throw new ChangeFormatError('"serial" must be an integer from 1');
  if (!Array.isArray(o.identities) || o.identities.length < 1 || o.identities.length > MAX_IDS) throw new ChangeFormatError(`"identities" must list 1..${MAX_IDS} entries`);
  const identities = o.identities.map((k) => {
    if (k === null) return null;
    if (typeof k !== 'string' || !/^[0-9a-f]{64}$/.test(k)) throw new ChangeFormatError('an identity is 64 lower-case hex digits or null');
    return Uint8Array.from(Buffer.from(k, 'hex'));
  });
  return { serial: o.serial!, identities };
}

const sameChange = (a: CharterState, b: CharterState): boolean =>
  a.serial === b.serial && a.identities.length === b.identities.length && a.identities.every((k, i) => (k === null ? b.identities[i] === null : b.identities[i] !== null && ctEqual(k, b.identities[i]!)));

/** What a member's status says of its charters. */
export interface CharterStatus {
  /** The serial of the charter at the tip of its log, and the ids it names. */
  readonly serial: number;
  readonly members: readonly number[];
  /** How many ids that charter has given (removed ones included: an id is never given again): a change lists an identity or none at each, and an addition takes the next. */
  readonly ids: number;
  /** The serial of the charter at its commit point. */
  readonly committed: number;
  /** The serial of the change its device holds an approval for and has not seen committed, if any. */
  readonly approved?: number;
  /** The last refusal of that change's proposal (a fault name), while it lasts. */
  readonly refused?: string;
}

const ids = (c: CharterState): number[] => c.identities.flatMap((k, i) => (k ? [i] : []));

/** A member device's side of charter changes: approvals, proposals, grants. */
export class CharterDesk {
  private approved: CharterState | null = null;
  private refused: string | undefined;
  private readonly key: Uint8Array | null;

  constructor(
    private readonly member: Member,
    private readonly secrets: MemberSecrets,
    /** The operator secret (checked against `provisioned`), or null: this device then approves and grants nothing. */
    private readonly operatorSecret: Uint8Array | null,
    private readonly provisioned: Uint8Array,
  ) {
    if (operatorSecret) checkOperatorSecret(operatorSecret, provisioned);
    this.key = operatorSecret && approvalKey(operatorSecret);
  }

  /** The charter at this member's commit point. */
  committed(): CharterState {
    return this.charters().committed;
  }

  private tip(): CharterState {
    return this.charters().tip;
  }

  /**
   * Both charters, folded from the log again only when it changed (its snapshot, its last entry,
   * its length or its commit point): the host asks for the status after every message.
   */
  private charters(): { committed: CharterState; tip: CharterState } {
    const d = this.member.durable;
    const last = d.entries.at(-1);
    const m = this.memo;
    if (m && m.base === d.base && m.last === last && m.length === d.entries.length && m.commit === d.commit) return m;
    const memo = { base: d.base, last, length: d.entries.length, commit: d.commit, committed: configAt(d, d.commit).charter, tip: configAt(d, tipOf(d).index).charter };
    this.memo = memo;
    return memo;
  }
  private memo: { base: unknown; last: unknown; length: number; commit: number; committed: CharterState; tip: CharterState } | null = null;

  /**
   * The operator's approval of `change` (`charterApproval`), checked; a FleetFault otherwise
   * (NoOperatorSecret: this device was started without it; CharterNotApproved: not the operator's
   * MAC for this change). The device then holds it for this change (a later approval replaces it).
   */
  approve(change: CharterState, mac: Uint8Array): void {
    if (!this.key) throw new FleetFault(FleetCode.NoOperatorSecret, 'this member was started without the operator secret: it approves no change');
    const want = hmac(sha256, this.key, changedCharterHash(charterHash(this.secrets.charter), change));
    if (mac.length !== want.length || !ctEqual(mac, want)) throw new FleetFault(FleetCode.CharterNotApproved, 'the approval is not the operator\'s for this change');
    this.member.approveCharter(change);
    if (!this.approved || !sameChange(this.approved, change)) this.refused = undefined;
    this.approved = change;
  }

  /**
   * The operator's approval of a re-form without the member ids `without` out of epoch
   * `fromEpoch`, for the kept members' boots `kept` (`reformApproval`), checked; a FleetFault
   * otherwise (NoOperatorSecret; CharterNotApproved: not the operator's MAC for these fields;
   * BadValue: ids or incarnations out of range). The device then holds it (member.ts
   * approveReform): the messages its re-form sends now.
   */
  approveReform(fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>, mac: Uint8Array, now: number): Output {
    if (!this.key) throw new FleetFault(FleetCode.NoOperatorSecret, 'this member was started without the operator secret: it approves no re-form');
    const want = hmac(sha256, this.key, reformApprovalMessage(this.secrets.charter, fromEpoch, without, kept));
    if (mac.length !== want.length || !ctEqual(mac, want)) throw new FleetFault(FleetCode.CharterNotApproved, 'the approval is not the operator\'s for this re-form');
    return this.member.approveReform(fromEpoch, without, kept, now);
  }

  /**
   * The approved change proposed, if this member leads and its log does not hold that serial yet;
   * null when there is nothing to do. A refusal (Busy until the last entry commits, ...) is kept
   * for the status and tried again on the next call.
   */
  propose(now: number): Output | null {
    const a = this.pending();
    if (!a || !this.member.isLeader() || this.tip().serial >= a.serial) return null;
    const { out, index } = this.member.proposeCharter(a, now);
    this.refused = typeof index === 'number' ? undefined : fleetFaultName(index.code);
    return out;
  }

  /** The approved change while this member's commit point does not hold its serial (then it is dropped). */
  private pending(): CharterState | null {
    if (this.approved && this.committed().serial >= this.approved.serial) {
      this.approved = null;
      this.refused = undefined;
    }
    return this.approved;
  }

  status(): CharterStatus {
    const tip = this.tip();
    const a = this.pending();
    return {
      serial: tip.serial,
      members: ids(tip),
      ids: tip.identities.length,
      committed: this.committed().serial,
      ...(a && { approved: a.serial }),
      ...(this.refused && { refused: this.refused }),
    };
  }

  /**
   * The grant of the fleet secret to member `joiner`, added by the committed charter (a founding
   * member never is); null while this member's commit point holds no charter that names it, or
   * names this member no more. For its host to write as `join.json` in the joiner's folder.
   */
  async grant(joiner: number): Promise<JoinFile | null> {
    const c = this.committed();
    const me = this.member.id;
    if (joiner < this.secrets.charter.identities.length || !c.identities[joiner] || !c.identities[me]) return null;
    if (!this.operatorSecret) throw new FleetFault(FleetCode.NoOperatorSecret, 'this member was started without the operator secret: it grants nothing');
    const identity = await identityOf(this.secrets.identitySeed);
    const grant = await grantJoiner(this.secrets.charter, c, me, identity, this.secrets.fleetSecret, joiner, this.operatorSecret, this.provisioned);
    return { granter: me, ...changeJson(c), grant: bytesToHex(grant) };
  }
}

/** `join.json`: the granter, the changed charter the grant was made under, the grant (hex). Nothing in it is secret. */
export interface JoinFile extends ChangeJson {
  readonly granter: number;
  readonly grant: string;
}

export function parseJoinFile(text: string, file: string): { granter: number; changed: CharterState; grant: Uint8Array } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ChangeFormatError(`${file}: not JSON`);
  }
  const o = v as Partial<JoinFile>;
  if (typeof v !== 'object' || v === null || !Number.isInteger(o.granter) || o.granter! < 0 || o.granter! >= MAX_IDS) throw new ChangeFormatError(`${file}: "granter" must be a member id`);
  if (typeof o.grant !== 'string' || !/^([0-9a-f]{2}){1,256}$/.test(o.grant)) throw new ChangeFormatError(`${file}: "grant" must be hex`);
  let changed: CharterState;
  try {
    changed = parseChange({ serial: o.serial, identities: o.identities });
  } catch (e) {
    throw new ChangeFormatError(`${file}: ${(e as Error).message}`);
  }
  return { granter: o.granter!, changed, grant: Uint8Array.from(Buffer.from(o.grant, 'hex')) };
}

export interface JoinInput {
  /** The new member's folder (its identity made: device.ts ensureIdentity). */
  readonly dir: string;
  /** Its identity seed's file there (device.ts FILES.seed). */
  readonly seedFile: string;
  readonly member: number;
  /** The founding charter (fleet id, founder 0, the founding members' identities). */
  readonly founding: Charter;
  /** The founder's secret check (hex), when its file is readable here: the opened secret must give it. */
  readonly founderCheck: string | null;
  readonly operatorSecret: Uint8Array;
  readonly provisioned: Uint8Array;
}

export type JoinStep = { readonly done: true; readonly check: string } | { readonly done: false; readonly waiting: string };

/**
 * The added member's ceremony, run again until done: its kept secrets; else the grant in its
 * folder (`join.json`) opened by its device as the granter's for this member of that changed
 * charter (HPKE Auth: a host can not make one), the secret check compared with the founder's,
 * and its secrets kept (version 2: with the changed charter). Refusals are FleetFaults or
 * ChangeFormatErrors.
 */
export async function joinStep(o: JoinInput): Promise<JoinStep> {
  const kept = readMemberSecrets(o.dir, o.member);
  const root = charterHash(o.founding);
  if (kept) return { done: true, check: bytesToHex(secretCheck(kept.fleetSecret, root)) };
  const file = join(o.dir, JOIN_FILE);
  if (!existsSync(file)) return { done: false, waiting: `its grant (${file}): written by a member once the change that adds it commits` };
  const j = parseJoinFile(readFileSync(file, 'utf8'), file);
  const me = await identityOf(new Uint8Array(readFileSync(o.seedFile)));
  const opened = await acceptJoinerGrant(o.founding, j.changed, j.granter, o.member, me, o.operatorSecret, o.provisioned, j.grant);
  const check = bytesToHex(opened.check);
  if (o.founderCheck !== null && !ctEqual(te.encode(check), te.encode(o.founderCheck))) throw new FleetFault(FleetCode.GrantWrongMember, 'the secret the grant holds is not the fleet\'s (its check is not the founder\'s)');
  const secrets: MemberSecrets = { member: o.member, charter: o.founding, identitySeed: me.seed, fleetSecret: opened.secret, joined: j.changed };
  writeFileDurably(join(o.dir, SECRETS_FILE), encodeSecrets(secrets));
  return { done: true, check };
}
