/**
 * A fleet member's device, in this slice: the member's `Member` state machine (enclave/fleet/) in
 * the member's process, and its data folder as its NVRAM and storage (docs/fleet.md, "The member
 * process"). The host (host/fleet/member-host.ts) hands it bytes from the network, client intents
 * and ticks, and gets back sealed messages with their receiver, answers by ticket, and counted
 * refusals; it never reads the fleet secret, an identity seed or a message key. Moving this
 * behind a real device boundary (a token, a process of its own) is the next slice.
 *
 * The files in a member's folder (`DIR/member-<i>/`):
 *   identity.seed    32 bytes, mode 0600: the seed of the device's identity (ceremony.ts)
 *   identity.pub     JSON: member, public key (hex), fingerprint: what the operator compares
 *   operator.sha256  SHA-256 of the operator secret, provisioned at the first start
 *   grant.bin        the founder's grant to this member (written by the founder's device)
 *   secret-check     the founder's secret check (hex), in the founder's folder only
 *   secrets.bin      MemberSecrets (durable.ts), written once the ceremony is done
 *   state.bin        DurableState (durable.ts), written before every acknowledgement
 *   history.jsonl    the entries this member learned committed, one JSON line each (an audit
 *                    trail the tests compare across members; not read back by the device)
 *   token.json, emulator-token.bin (or softhsm/)
 *                    the member's vault token, opened as `bkv serve` opens a vault's
 *                    (hsm/tokens/open.ts), its PINs outside the folder (hsm/tokens/token-pins.ts)
 * Whole files are written atomically and durably (hsm/durable-file.ts).
 *
 * The fleet's vault keys (`memberVaultKey`, docs/fleet-vault.md "One set of vault keys per fleet"):
 * once the ceremony is done, the device opens the member's vault token, imports the keys derived
 * from the fleet secret (or checks that the token's are this fleet's: enclave/vault/keys.ts fleet
 * mode) and hands the host only the public keys clients pin. The fleet secret stays in this file.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { acceptGrant, charterHash, checkOperatorSecret, found, identityFingerprint, identityOf, newIdentity, SECRET_BYTES, secretCheck, type Charter, type DeviceIdentity } from '../../enclave/fleet/ceremony.ts';
import { decodeDurable, encodeDurable, encodeSecrets } from '../../enclave/fleet/durable.ts';
import { fleetFaultName, type FleetFault } from '../../enclave/fleet/faults.ts';
import type { CharterState } from '../../enclave/fleet/messages.ts';
import { genesis, tipOf, type DurableState } from '../../enclave/fleet/log.ts';
import { BROKEN_RULES, Member, type BrokenRule, type Output } from '../../enclave/fleet/member.ts';
import { MAX_LIMIT, type Intent, type Op } from '../../enclave/fleet/rules.ts';
import { MAX_MESSAGE_BYTES, readHeader, type MessageType } from '../../enclave/fleet/wire.ts';
import { ctEqual } from '../../enclave/opaque/bytes.ts';
import { EnclaveFault, faultName } from '../../enclave/api/codes.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { DEFAULT_OPAQUE_CONTEXT } from '../../enclave/api/messages.ts';
import { vaultKeyRoot } from '../../enclave/fleet/vault-keys.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { SUITE_IDS, type Suite, type SuiteId } from '../../enclave/opaque/suite.ts';
import { Pkcs11Token } from '../../enclave/token-pkcs11.ts';
import type { TokenProfile } from '../../enclave/token-profiles.ts';
import { deriveEnclaveKeys, ensureTokenKeys, zeroizeEnclaveKeys } from '../../enclave/vault/keys.ts';
import { createFileDurably, writeFileDurably } from '../durable-file.ts';
import { DEFAULT_TOKEN_KIND, type TokenKind } from '../tokens/backends.ts';
import { openVaultToken } from '../tokens/open.ts';
import { pinRefusal, pinSourceOrDefault } from '../tokens/token-pins.ts';
import { readMemberSecrets, SECRETS_FILE } from './member-secrets.ts';
import { CharterDesk, joinStep, type CharterStatus, type JoinFile, type JoinStep } from './charters.ts';
export { ChangeFormatError, changeJson, charterApproval, JOIN_FILE, keptJson, parseChange, parseReformWithout, reformApproval, type ChangeJson, type CharterStatus, type JoinFile } from './charters.ts';
export type { CharterState } from '../../enclave/fleet/messages.ts';
/** The device's typed refusals, for its host to answer with (names and numbers only). */
export { FleetFault, fleetFaultName } from '../../enclave/fleet/faults.ts';

export { FleetVaultDevice, MAX_OPS_PER_BATCH, VAULT_LOG_KEEP, VAULT_NVRAM_FILE, type BatchToApply, type Fate, type VaultDeviceOptions, type VaultDeviceStatus } from './vault-device.ts';

/** The longest fleet message: a frame above it is refused by the transport before it is read. */
export const MAX_FLEET_MESSAGE_BYTES = MAX_MESSAGE_BYTES;
/** The founder of a charter made by a fleet folder (its first member). */
export const FOUNDER = 0;

export const FILES = {
  seed: 'identity.seed',
  pub: 'identity.pub',
  operator: 'operator.sha256',
  grant: 'grant.bin',
  check: 'secret-check',
  secrets: SECRETS_FILE,
  state: 'state.bin',
  history: 'history.jsonl',
} as const;

export class FleetDeviceError extends Error {
  override readonly name: string = 'FleetDeviceError';
}

/** The receiver id a message's header names (to route it), or null when the header does not read. Nothing else of it is trusted. */
export function receiverOf(msg: Uint8Array): number | null {
  return routeOf(msg)?.to ?? null;
}

/** The receiver id and the type a message's header names (to route and count it), or null when the header does not read. */
export function routeOf(msg: Uint8Array): { to: number; type: MessageType } | null {
  try {
    const h = readHeader(msg);
    return { to: h.to, type: h.type };
  } catch {
    return null;
  }
}

// ---- the key ceremony over the members' folders ---------------------------------------------------

export interface IdentityFile {
  readonly member: number;
  readonly publicKey: string;
  readonly fingerprint: string;
}

/**
 * The device's identity, made at its first start (seed kept in the folder, public key and
 * fingerprint written to identity.pub), and the operator secret's hash provisioned then.
 */
export async function ensureIdentity(dir: string, member: number, operatorSecret: Uint8Array): Promise<IdentityFile> {
  const seedFile = join(dir, FILES.seed);
  let id: DeviceIdentity;
  if (existsSync(seedFile)) {
    const seed = new Uint8Array(readFileSync(seedFile));
    if (seed.length !== 32) throw new FleetDeviceError(`${seedFile}: not a 32-byte identity seed`);
    id = await identityOf(seed);
  } else {
    id = await newIdentity((n) => new Uint8Array(randomBytes(n)));
    writeFileDurably(seedFile, id.seed);
  }
  const opFile = join(dir, FILES.operator);
  if (!existsSync(opFile)) createFileDurably(opFile, sha256(operatorSecret));
  const pub: IdentityFile = { member, publicKey: bytesToHex(id.publicKey), fingerprint: identityFingerprint(id.publicKey) };
  const pubFile = join(dir, FILES.pub);
  const text = JSON.stringify(pub) + '\n';
  if (!existsSync(pubFile) || readFileSync(pubFile, 'utf8') !== text) writeFileDurably(pubFile, text);
  return pub;
}

/** Member `member`'s identity.pub in `dir`, strictly; null while it is not there. */
export function readIdentityFile(dir: string, member: number): Uint8Array | null {
  const file = join(dir, FILES.pub);
  if (!existsSync(file)) return null;
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new FleetDeviceError(`${file}: not JSON`);
  }
  const o = v as Partial<IdentityFile>;
  if (typeof v !== 'object' || v === null || o.member !== member || typeof o.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(o.publicKey)) {
    throw new FleetDeviceError(`${file}: not member ${member}'s identity (member, publicKey of 64 hex digits)`);
  }
  const key = Uint8Array.from(Buffer.from(o.publicKey, 'hex'));
  if (o.fingerprint !== identityFingerprint(key)) throw new FleetDeviceError(`${file}: the fingerprint is not the public key's`);
  return key;
}

export interface CeremonyInput {
  /** Every member's data folder, by id. */
  readonly dirs: readonly string[];
  readonly member: number;
  /** The fleet id of fleet.json (16 bytes). */
  readonly fleetId: Uint8Array;
  readonly operatorSecret: Uint8Array;
}

export type CeremonyStep = { readonly done: true; readonly check: string } | { readonly done: false; readonly waiting: string };

/**
 * One step of the ceremony for this member's device, run again until it says done: its identity;
 * every member's identity; the charter (fleet id, founder 0, the identities in id order); the
 * founder draws the secret, keeps it, and writes each other member's grant into that member's
 * folder and its secret check into its own; a member opens its grant, compares the check with
 * the founder's and keeps its secrets. Refusals of the ceremony (enclave/fleet/ceremony.ts) are
 * thrown as they are (`FleetFault`).
 */
export async function ceremonyStep(o: CeremonyInput): Promise<CeremonyStep> {
  const dir = o.dirs[o.member]!;
  await ensureIdentity(dir, o.member, o.operatorSecret);
  const me = await identityOf(new Uint8Array(readFileSync(join(dir, FILES.seed))));
  const provisioned = new Uint8Array(readFileSync(join(dir, FILES.operator)));
  const kept = readMemberSecrets(dir, o.member);
  if (kept) {
    // done before: a restart, a restore or a clone needs no other member's file (only the founder's grants, if lost in a crash)
    if (o.member === FOUNDER) await writeGrants(o, kept.charter, me, provisioned, () => kept.fleetSecret);
    return { done: true, check: bytesToHex(secretCheck(kept.fleetSecret, charterHash(kept.charter))) };
  }
  const identities: Uint8Array[] = [];
  for (let j = 0; j < o.dirs.length; j++) {
    const key = readIdentityFile(o.dirs[j]!, j);
    if (!key) return { done: false, waiting: `the identity of member ${j} (${join(o.dirs[j]!, FILES.pub)})` };
    identities.push(key);
  }
  const charter: Charter = { fleetId: o.fleetId, founder: FOUNDER, identities };
  if (o.member === FOUNDER) {
    const check = await writeGrants(o, charter, me, provisioned, (n) => new Uint8Array(randomBytes(n)));
    return { done: true, check };
  }
  const checkFile = join(o.dirs[FOUNDER]!, FILES.check);
  const grantFile = join(dir, FILES.grant);
  if (!existsSync(grantFile) || !existsSync(checkFile)) return { done: false, waiting: `the founder's grant (${grantFile})` };
  const opened = await acceptGrant(charter, o.member, me, o.operatorSecret, provisioned, new Uint8Array(readFileSync(grantFile)));
  const founderCheck = readFileSync(checkFile, 'utf8').trim();
  if (!ctEqual(Buffer.from(bytesToHex(opened.check)), Buffer.from(founderCheck))) throw new FleetDeviceError(`the secret check of member ${o.member} is not the founder's: the members hold different secrets`);
  writeFileDurably(join(dir, FILES.secrets), encodeSecrets({ member: o.member, charter, identitySeed: me.seed, fleetSecret: opened.secret }));
  return { done: true, check: founderCheck };
}

/** The founding charter of fleet `fleetId` from the founding members' identity.pub files; null while one is missing. */
export function foundingCharter(dirs: readonly string[], fleetId: Uint8Array): Charter | null {
  const identities: Uint8Array[] = [];
  for (let j = 0; j < dirs.length; j++) {
    const key = readIdentityFile(dirs[j]!, j);
    if (!key) return null;
    identities.push(key);
  }
  return { fleetId, founder: FOUNDER, identities };
}

export interface JoinCeremonyInput {
  /** The founding members' data folders, by id. */
  readonly founders: readonly string[];
  /** This (added) member's folder and id. */
  readonly dir: string;
  readonly member: number;
  readonly fleetId: Uint8Array;
  readonly operatorSecret: Uint8Array;
}

/**
 * One step of an added member's ceremony (docs/fleet.md "Membership changes in the processes"),
 * run again until done: its identity (identity.pub, for the operator's change), then its grant
 * (join.json, written by a member once the change that adds it committed) opened by its device
 * (charters.ts joinStep) and its secrets kept.
 */
export async function joinCeremonyStep(o: JoinCeremonyInput): Promise<JoinStep> {
  await ensureIdentity(o.dir, o.member, o.operatorSecret);
  const founding = foundingCharter(o.founders, o.fleetId);
  if (!founding) return { done: false, waiting: 'the founding members\' identity.pub files' };
  const checkFile = join(o.founders[FOUNDER]!, FILES.check);
  const founderCheck = existsSync(checkFile) ? readFileSync(checkFile, 'utf8').trim() : null;
  return joinStep({ dir: o.dir, seedFile: join(o.dir, FILES.seed), member: o.member, founding, founderCheck, operatorSecret: o.operatorSecret, provisioned: provisionedHash(o.dir) });
}

/**
 * The founder's step: the secret drawn (or the kept one) and kept before any grant leaves, then a
 * grant into each other member's folder that has none, and the secret check into its own.
 */
async function writeGrants(o: CeremonyInput, charter: Charter, me: DeviceIdentity, provisioned: Uint8Array, random: (n: number) => Uint8Array): Promise<string> {
  const dir = o.dirs[o.member]!;
  const missing = o.dirs.some((d, j) => j !== FOUNDER && existsSync(d) && !existsSync(join(d, FILES.grant)));
  const secretsFile = join(dir, FILES.secrets);
  if (existsSync(secretsFile) && !missing) return bytesToHex(secretCheck(random(SECRET_BYTES), charterHash(charter)));
  const founding = await found(charter, me, o.operatorSecret, provisioned, random);
  if (!existsSync(secretsFile)) writeFileDurably(secretsFile, encodeSecrets({ member: o.member, charter, identitySeed: me.seed, fleetSecret: founding.secret }));
  for (let j = 0; j < o.dirs.length; j++) {
    const g = founding.grants[j];
    if (g && existsSync(o.dirs[j]!) && !existsSync(join(o.dirs[j]!, FILES.grant))) createFileDurably(join(o.dirs[j]!, FILES.grant), g);
  }
  createFileDurably(join(dir, FILES.check), bytesToHex(founding.check) + '\n');
  return bytesToHex(founding.check);
}

// ---- the fleet's vault keys in the member's token ---------------------------------------------------

/** A member's token refused its fleet's vault keys (`fault`: Lifecycle.FleetKeysMismatch, ...), or could not take them. */
export class FleetVaultKeyError extends FleetDeviceError {
  override readonly name = 'FleetVaultKeyError';
  constructor(
    readonly fault: number,
    message: string,
  ) {
    super(message);
  }
}

export interface MemberTokenOptions {
  /** The token backend (hsm/tokens/backends.ts); default the emulator, its store in the member's folder. */
  readonly token?: TokenKind;
  /** Where the token's PINs are (hsm/tokens/token-pins.ts); default development mode, the operator folder `<dir>.operator`. */
  readonly pins?: TokenPinSource;
  readonly log?: (line: string) => void;
}

/** What clients pin of a member's vault, the same on every member of a fleet: the single vault's vault-key.pub fields. */
export interface MemberVaultKey {
  /** The HPKE (RFC 9180) public key of the end-to-end envelope. */
  readonly enclavePublicKey: Uint8Array;
  readonly opaqueContext: Uint8Array;
  /** The OPAQUE server public key of each suite, by suite name. */
  readonly serverPublicKeys: Readonly<Record<SuiteId, Uint8Array>>;
  /** The firmware token profile of the keys (enclave/token-profiles.ts): every member must be on the same. */
  readonly profile: TokenProfile;
  /** Whether this call imported the keys (the token's first start as a member). */
  readonly imported: boolean;
}

let suites: Promise<Map<SuiteId, Suite>> | null = null;
const loadSuites = (): Promise<Map<SuiteId, Suite>> =>
  (suites ??= Promise.all(SUITE_IDS.map(async (id) => [id, await fastSuite(id)] as const)).then((l) => new Map(l)));

/**
 * The member's vault token with its fleet's vault keys: opened in `dir` (created there at its first
 * start), the keys imported from the fleet secret of secrets.bin, or the token's checked to be this
 * fleet's; returns the public keys derived from them (enclave/vault/keys.ts deriveEnclaveKeys).
 * The fleet secret and every derived private key are wiped before it returns. A token that holds
 * another fleet's or a single vault's keys: FleetVaultKeyError (Lifecycle.FleetKeysMismatch).
 */
export async function memberVaultKey(dir: string, member: number, o: MemberTokenOptions = {}): Promise<MemberVaultKey> {
  const secrets = readMemberSecrets(dir, member);
  if (!secrets) throw new FleetDeviceError(`${join(dir, FILES.secrets)}: no secrets: the key ceremony has not finished`);
  const all = await loadSuites();
  const pins = pinSourceOrDefault(dir, o.pins);
  const opened = openVaultToken(dir, o.token ?? DEFAULT_TOKEN_KIND, { pins, ...(o.log && { log: o.log }) });
  try {
    let token: Pkcs11Token;
    try {
      token = new Pkcs11Token({ module: opened.module, label: opened.label, userPin: opened.userPin, exclusive: opened.exclusive, lockObjectStore: opened.lockObjectStore, profiles: opened.profiles });
    } catch (e) {
      throw pinRefusal(e, pins) ?? e;
    }
    try {
      const handles = ensureTokenKeys(token, true, vaultKeyRoot(secrets.fleetSecret, secrets.charter));
      const keys = await deriveEnclaveKeys(token, handles, all);
      const serverPublicKeys = Object.fromEntries([...keys.server].map(([id, k]) => [id, Uint8Array.from(k.serverPublicKey)])) as Record<SuiteId, Uint8Array>;
      const out: MemberVaultKey = { enclavePublicKey: Uint8Array.from(keys.e2e.publicKey), opaqueContext: DEFAULT_OPAQUE_CONTEXT, serverPublicKeys, profile: handles.profile, imported: handles.created };
      zeroizeEnclaveKeys(keys);
      return out;
    } catch (e) {
      if (e instanceof EnclaveFault) throw new FleetVaultKeyError(e.code, `${dir}: the member's vault token: ${faultName(e.code)}: ${e.message}`);
      throw e;
    } finally {
      token.close();
    }
  } finally {
    secrets.fleetSecret.fill(0);
    secrets.identitySeed.fill(0);
    try {
      opened.module.C_Finalize();
    } catch {
      // already finalized
    }
  }
}

// ---- intents and answers as JSON ------------------------------------------------------------------

export class IntentError extends Error {
  override readonly name = 'IntentError';
}

const KEYS: Record<Intent['kind'], readonly string[]> = {
  register: ['kind', 'id', 'limit'],
  replace: ['kind', 'id', 'limit'],
  touch: ['kind', 'id'],
  charge: ['kind', 'id', 'session'],
  reset: ['kind', 'id', 'session'],
  lock: ['kind', 'id'],
  delete: ['kind', 'id'],
};

/** A client intent from parsed JSON, strictly: known kind, exactly its keys, an id of 1..64 UTF-8 bytes, numbers in range. */
export function parseIntent(v: unknown): Intent {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new IntentError('an intent is a JSON object');
  const o = v as Record<string, unknown>;
  const kind = o.kind as Intent['kind'];
  const keys = KEYS[kind];
  if (typeof o.kind !== 'string' || !Object.hasOwn(KEYS, o.kind) || !keys) throw new IntentError(`kind must be one of ${Object.keys(KEYS).join(', ')}`);
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new IntentError(`unknown key "${k}" for ${kind}`);
  for (const k of keys) if (!(k in o)) throw new IntentError(`"${k}" is missing`);
  const len = typeof o.id === 'string' ? Buffer.byteLength(o.id) : 0;
  if (len < 1 || len > 64) throw new IntentError('id must be a string of 1..64 bytes');
  if ('limit' in o && !(Number.isInteger(o.limit) && (o.limit as number) >= 1 && (o.limit as number) <= MAX_LIMIT)) throw new IntentError(`limit must be an integer in 1..${MAX_LIMIT}`);
  if ('session' in o && !(Number.isSafeInteger(o.session) && (o.session as number) >= 0)) throw new IntentError('session must be an integer in 0..2^53-1');
  return o as unknown as Intent;
}

export type OpJson = Record<string, string | number>;

/** The operator secret's hash this device provisioned in `dir` at its first start (zeros: none). */
export function provisionedHash(dir: string): Uint8Array {
  const file = join(dir, FILES.operator);
  return existsSync(file) ? new Uint8Array(readFileSync(file)) : new Uint8Array(32);
}

export function opJson(op: Op): OpJson {
  if (op.kind === 'admit') return { kind: 'admit', member: op.member, incarnation: bytesToHex(op.incarnation) };
  if (op.kind === 'charter') return { kind: 'charter', serial: op.serial, identities: op.identities.map((k) => (k ? bytesToHex(k) : '-')).join(',') };
  return { ...op };
}

export type DeviceAnswer =
  | { readonly ticket: number; readonly ok: true; readonly index: number; readonly hash: string; readonly op: OpJson }
  /** `code` a FleetCode (its name in `name`), or 0: the member left the lead before the operation committed (it may still commit). */
  | { readonly ticket: number; readonly ok: false; readonly code: number; readonly name: string };

export interface DeviceOutput {
  readonly send: { readonly to: number; readonly msg: Uint8Array }[];
  readonly answers: DeviceAnswer[];
  /** Refusals of messages from other members, by fault name. */
  readonly faults: string[];
}

export const UNANSWERED = { code: 0, name: 'Fleet.Unanswered' } as const;

// ---- the device -------------------------------------------------------------------------------------

export interface DeviceOptions {
  /** A positive control only: this member breaks one of the simulation's rules (enclave/fleet/core.ts BROKEN_RULES). */
  readonly broken?: string;
  readonly dir: string;
  readonly member: number;
  readonly n: number;
  readonly viewChangeTicks: number;
  readonly reformTicks: number;
  readonly resendTicks: number;
  /**
   * The operator secret, checked against the hash this device provisioned (a FleetFault
   * otherwise): with it the device takes the operator's approvals of charter changes and grants
   * added members the fleet secret (charters.ts); without it, neither. Kept in RAM while it runs.
   */
  readonly operatorSecret?: Uint8Array;
}

export interface DeviceStatus {
  readonly member: number;
  readonly status: string;
  readonly epoch: number;
  readonly view: number;
  /** The id of the view's leader while this member is normal in it; null otherwise. */
  readonly leader: number | null;
  /** Leading, it heard fewer than a majority of the members for its view-change wait (Member.cutOff): it takes no client operation. */
  readonly cutOff?: true;
  readonly commit: number;
  readonly tip: number;
  /** This boot's incarnation (32 hex digits: it is in every message's header, no secret; `bkv fleet reform` names the kept members' in its approval). */
  readonly incarnation: string;
  /** Its charters: at the tip and at the commit point, an approved change (charters.ts). */
  readonly charter: CharterStatus;
  /** The operator's approval of a re-form without some members its device holds, if any, and whether it applies to the configuration at its tip (member.ts approveReform). */
  readonly reformApproval?: { readonly fromEpoch: number; readonly without: readonly number[]; readonly kept: readonly number[]; readonly applies: boolean };
}

/** A member's device booted from its folder: the ceremony must be done (secrets.bin). */
/** What a member's status shows of its fleet core: ids, view, leader, log points, its incarnation. No secret. */
export function memberStatus(m: Member, desk: CharterDesk): DeviceStatus {
  return {
    member: m.id,
    status: m.status,
    epoch: m.epoch,
    view: m.view,
    leader: m.leader,
    ...(m.cutOff && { cutOff: true as const }),
    commit: m.durable.commit,
    tip: tipOf(m.durable).index,
    incarnation: bytesToHex(m.incarnation),
    charter: desk.status(),
    ...(m.reformApproval && { reformApproval: m.reformApproval }),
  };
}

export class FleetDevice {
  private readonly member: Member;
  private readonly desk: CharterDesk;
  private readonly pending = new Map<Intent, number>();
  private nextTicket = 1;
  private journaled: number;

  constructor(private readonly o: DeviceOptions, now: number) {
    const secrets = readMemberSecrets(o.dir, o.member);
    if (!secrets) throw new FleetDeviceError(`${join(o.dir, FILES.secrets)}: no secrets: the key ceremony has not finished`);
    const stateFile = join(o.dir, FILES.state);
    const state = existsSync(stateFile) ? decodeDurable(new Uint8Array(readFileSync(stateFile)), o.member, o.n) : genesis(o.member, secrets.charter.identities);
    this.journaled = state.commit;
    if (o.broken !== undefined && !BROKEN_RULES.includes(o.broken as BrokenRule)) throw new FleetDeviceError(`no broken rule ${o.broken} (${BROKEN_RULES.join(', ')})`);
    const platform = { random: (k: number) => new Uint8Array(randomBytes(k)), persist: (s: DurableState) => this.persist(s) };
    this.member = new Member(state, platform, { n: o.n, secrets, viewChangeTicks: o.viewChangeTicks, reformTicks: o.reformTicks, resendTicks: o.resendTicks, ...(o.broken !== undefined && { broken: o.broken as BrokenRule }) }, now);
    this.desk = new CharterDesk(this.member, secrets, o.operatorSecret ?? null, provisionedHash(o.dir));
  }

  /** The durable write that precedes every acknowledgement. */
  private persist(s: DurableState): void {
    writeFileDurably(join(this.o.dir, FILES.state), encodeDurable(s));
  }

  /** The audit trail: the entries this member learned committed (in RAM: the commit index is written with the next entry), those its log still holds. */
  private journal(s: DurableState): void {
    if (s.commit <= this.journaled) return;
    const lines = s.entries.filter((e) => e.index > this.journaled && e.index <= s.commit).map((e) => JSON.stringify({ index: e.index, hash: bytesToHex(e.hash), ops: e.ops.map(opJson) }) + '\n');
    if (lines.length) appendFileSync(join(this.o.dir, FILES.history), lines.join(''));
    this.journaled = s.commit;
  }

  submit(intent: Intent, now: number): { ticket: number; out: DeviceOutput } {
    const ticket = this.nextTicket++;
    this.pending.set(intent, ticket);
    return { ticket, out: this.output(this.member.submit(intent, now)) };
  }
  /** A message from the network; then, leading, the approved charter change proposed once its turn comes (charters.ts). */
  receive(msg: Uint8Array, now: number): DeviceOutput {
    return this.output(this.member.receive(msg, now), this.desk.propose(now));
  }
  tick(now: number): DeviceOutput {
    return this.output(this.member.tick(now), this.desk.propose(now));
  }

  status(): DeviceStatus {
    return memberStatus(this.member, this.desk);
  }

  /**
   * The operator's approval of a charter change (docs/fleet.md, "Membership changes in the
   * processes"): the MAC checked (charters.ts `charterApproval`; a FleetFault, CharterNotApproved
   * or NoOperatorSecret, otherwise), then held: leading, this device proposes the change.
   */
  approveCharter(change: CharterState, approval: Uint8Array): void {
    this.desk.approve(change, approval);
  }

  /** The operator's approval of a re-form without some members (charters.ts `reformApproval`), checked and held; a FleetFault when refused. */
  approveReform(fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>, approval: Uint8Array, now: number): DeviceOutput {
    return this.output(this.desk.approveReform(fromEpoch, without, kept, approval, now));
  }

  /** The grant to member `joiner` of the committed charter that added it, for its folder's join.json; null while there is none to make. */
  grantJoiner(joiner: number): Promise<JoinFile | null> {
    return this.desk.grant(joiner);
  }

  private output(out: Output, more: Output | null = null): DeviceOutput {
    if (more) out = { send: [...out.send, ...more.send], answers: [...out.answers, ...more.answers], faults: [...out.faults, ...more.faults], events: [...out.events, ...more.events] };
    this.journal(this.member.durable);
    const send: DeviceOutput['send'] = [];
    for (const msg of out.send) {
      const to = receiverOf(msg);
      if (to !== null) send.push({ to, msg });
    }
    const answers: DeviceAnswer[] = [];
    for (const a of out.answers) {
      const ticket = this.pending.get(a.intent);
      if (ticket === undefined) continue;
      this.pending.delete(a.intent);
      answers.push(a.ok ? { ticket, ok: true, index: a.index, hash: bytesToHex(a.hash), op: opJson(a.op) } : { ticket, ok: false, code: a.code, name: fleetFaultName(a.code) });
    }
    // a member that left the lead dropped what it had not committed (view-change.ts): those intents get no answer from it
    if (!this.member.isLeader()) {
      for (const [intent, ticket] of this.pending) {
        answers.push({ ticket, ok: false, ...UNANSWERED });
        this.pending.delete(intent);
      }
    }
    return { send, answers, faults: out.faults.map((f) => fleetFaultName(f.code)) };
  }
}
