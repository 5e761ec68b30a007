/**
 * The fleet's key ceremony, device side (docs/fleet.md, "Key ceremony"): the fleet secret, from
 * which every fleet key derives (the pairwise message keys of keys.ts, and with the device wiring
 * the record sealing, OPRF and OPAQUE server keys and the HPKE key clients pin), is drawn inside one
 * member's device (the founder) and reaches each other member only as a grant: HPKE (RFC 9180)
 * in Auth mode from the founder's device identity to that member's device identity. No host holds
 * the secret or can make a grant a member accepts.
 *
 *   identity      an X25519 key pair made in the device from 32 random bytes it keeps (§7.1.3
 *                 DeriveKeyPair); its public half leaves, with a fingerprint the operator reads
 *                 out on each member's console and confirms before approving the charter
 *   charter       version | fleetId (16) | founder (1) | identities (N x 32), N in {3, 5, 7}:
 *                 what the operator approves; every member checks the operator secret against
 *                 the hash provisioned in its NVRAM before it takes part
 *   grant         version | member (1) | enc (32) | sealed secret (32 + 16): 82 bytes, sealed with
 *                 info = label || SHA-256(charter) || member, so it opens only for that member of
 *                 that charter, and only if the founder named in the charter made it (Auth mode,
 *                 §5.1.3: the founder's static key enters the key schedule)
 *   secret check  HMAC-SHA256(secret, label || charter hash), first 16 bytes: members and operator
 *                 compare it to see that all hold the same secret, learning nothing of it
 *
 * HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (@hpke/core). Refusals are
 * thrown FleetFaults (faults.ts, BadCharter to BadGrant; WireVersion for an unknown version byte)
 * for what the ceremony checks, and EnclaveFault (Codec) for bytes that do not decode; nothing
 * is kept from a refused grant.
 */
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { decodeFields, encodeFields, fixed, list, u8 } from '../api/codec.ts';
import { FleetCode, FleetFault } from './faults.ts';
import { LABELS } from '../api/labels.ts';
import { concat, ctEqual, utf8 } from '../opaque/bytes.ts';
import type { CharterState } from './messages.ts';

export const CEREMONY_VERSION = 1;
export const FLEET_ID_BYTES = 16;
export const IDENTITY_BYTES = 32;
export const SECRET_BYTES = 32;
export const SECRET_CHECK_BYTES = 16;
export const GRANT_BYTES = 1 + 1 + 32 + SECRET_BYTES + 16;
/** Member counts a charter may have (host/fleet/config.ts FLEET_SIZES says the same to operators). */
export const CHARTER_SIZES: readonly number[] = [3, 5, 7];

const CHARTER = [
  ['version', u8],
  ['fleetId', fixed(FLEET_ID_BYTES)],
  ['founder', u8],
  ['identities', list([['key', fixed(IDENTITY_BYTES)]] as const, 7)],
] as const;
const GRANT = [
  ['version', u8],
  ['member', u8],
  ['enc', fixed(32)],
  ['sealed', fixed(SECRET_BYTES + 16)],
] as const;

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
const buf = (b: Uint8Array): ArrayBuffer => b.slice().buffer as ArrayBuffer;

/** A device's identity: the seed it keeps (in NVRAM or its token) and the public key that leaves. */
export interface DeviceIdentity {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface Charter {
  readonly fleetId: Uint8Array;
  readonly founder: number;
  readonly identities: readonly Uint8Array[];
}

async function keyPairOf(seed: Uint8Array): Promise<CryptoKeyPair> {
  return suite.kem.deriveKeyPair(buf(seed));
}

/** A new identity from 32 random bytes of the device's random source. */
export async function newIdentity(random: (n: number) => Uint8Array): Promise<DeviceIdentity> {
  return identityOf(random(32));
}

/** The identity a kept seed stands for. */
export async function identityOf(seed: Uint8Array): Promise<DeviceIdentity> {
  const kp = await keyPairOf(seed);
  return { seed: Uint8Array.from(seed), publicKey: new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey)) };
}

/** What an operator reads out and compares: SHA-256 of the label and the public key, 8 groups of 4 hex digits. */
export function identityFingerprint(publicKey: Uint8Array): string {
  const h = bytesToHex(sha256(concat(utf8(LABELS.fleetIdentity), publicKey))).slice(0, 32);
  return h.match(/.{4}/g)!.join('-');
}

/** Checks a charter's shape: member count, founder, distinct 32-byte identities. */
export function checkCharter(c: Charter): Charter {
  if (!(c.fleetId instanceof Uint8Array) || c.fleetId.length !== FLEET_ID_BYTES) throw new FleetFault(FleetCode.BadCharter, `the fleet id must be ${FLEET_ID_BYTES} bytes`);
  if (!CHARTER_SIZES.includes(c.identities.length)) throw new FleetFault(FleetCode.BadCharter, `a charter lists ${CHARTER_SIZES.join(', ')} members`);
  if (!Number.isInteger(c.founder) || c.founder < 0 || c.founder >= c.identities.length) throw new FleetFault(FleetCode.BadCharter, 'the founder is not a member of the charter');
  const seen = new Set<string>();
  for (const k of c.identities) {
    if (!(k instanceof Uint8Array) || k.length !== IDENTITY_BYTES) throw new FleetFault(FleetCode.BadCharter, `an identity is ${IDENTITY_BYTES} bytes`);
    const hex = bytesToHex(k);
    if (seen.has(hex)) throw new FleetFault(FleetCode.BadCharter, 'an identity appears twice in the charter');
    seen.add(hex);
  }
  return c;
}

export function encodeCharter(c: Charter): Uint8Array {
  checkCharter(c);
  return encodeFields(CHARTER, { version: CEREMONY_VERSION, fleetId: c.fleetId, founder: c.founder, identities: c.identities.map((key) => ({ key })) });
}

/** Strict: Codec faults for bytes that do not decode, FleetFault for a charter that is not one. */
export function decodeCharter(b: Uint8Array): Charter {
  const d = decodeFields(CHARTER, b, 'charter');
  if (d.version !== CEREMONY_VERSION) throw new FleetFault(FleetCode.WireVersion, `charter version ${d.version}`);
  return checkCharter({ fleetId: d.fleetId, founder: d.founder, identities: d.identities.map((x) => x.key) });
}

export function charterHash(c: Charter): Uint8Array {
  return sha256(concat(utf8(LABELS.fleetCharter), encodeCharter(c)));
}

/**
 * The operator's approval, checked by each device: SHA-256 of the operator secret equals the hash
 * provisioned in its NVRAM (all zeros: none provisioned, and no fleet).
 */
export function checkOperatorSecret(operatorSecret: Uint8Array, provisionedHash: Uint8Array): void {
  if (provisionedHash.length !== 32 || provisionedHash.every((x) => x === 0)) throw new FleetFault(FleetCode.NoOperatorSecret, 'no operator secret is provisioned in this device');
  if (!ctEqual(sha256(operatorSecret), provisionedHash)) throw new FleetFault(FleetCode.WrongOperatorSecret, 'the operator secret does not match the one provisioned');
}

function memberOf(c: Charter, me: DeviceIdentity, member: number): void {
  if (!Number.isInteger(member) || member < 0 || member >= c.identities.length || !ctEqual(c.identities[member]!, me.publicKey)) {
    throw new FleetFault(FleetCode.NotInCharter, `this device is not member ${member} of the charter`);
  }
}

/** A grant: the fleet secret sealed to `identity` (member `member`) with HPKE Auth from `senderKey`, under `info`. */
async function sealGrant(secret: Uint8Array, member: number, identity: Uint8Array, senderKey: CryptoKeyPair, info: ArrayBuffer): Promise<Uint8Array> {
  const recipientPublicKey = await suite.kem.deserializePublicKey(buf(identity));
  const ctx = await suite.createSenderContext({ recipientPublicKey, senderKey, info });
  const sealed = new Uint8Array(await ctx.seal(buf(secret)));
  return encodeFields(GRANT, { version: CEREMONY_VERSION, member, enc: new Uint8Array(ctx.enc), sealed });
}

/** Opens a grant for member `member` as sealed by the holder of `sender` under `info`: the fleet secret, or the grant's refusal. */
async function openGrant(grant: Uint8Array, member: number, me: DeviceIdentity, sender: Uint8Array, info: ArrayBuffer, refusal: string): Promise<Uint8Array> {
  const g = decodeFields(GRANT, grant, 'grant');
  if (g.version !== CEREMONY_VERSION) throw new FleetFault(FleetCode.WireVersion, `grant version ${g.version}`);
  if (g.member !== member) throw new FleetFault(FleetCode.GrantWrongMember, `the grant is for member ${g.member}`);
  let secret: Uint8Array;
  try {
    const senderPublicKey = await suite.kem.deserializePublicKey(buf(sender));
    const ctx = await suite.createRecipientContext({ recipientKey: await keyPairOf(me.seed), enc: buf(g.enc), senderPublicKey, info });
    secret = new Uint8Array(await ctx.open(buf(g.sealed)));
  } catch {
    throw new FleetFault(FleetCode.BadGrant, refusal);
  }
  if (secret.length !== SECRET_BYTES) throw new FleetFault(FleetCode.BadGrant, 'the grant does not hold a fleet secret');
  return secret;
}

const grantInfo = (hash: Uint8Array, member: number): ArrayBuffer => buf(concat(utf8(LABELS.fleetGrant), hash, Uint8Array.of(member)));

/** The 16-byte check of a fleet secret under a charter (equal on every member that holds it). */
export function secretCheck(secret: Uint8Array, hash: Uint8Array): Uint8Array {
  return hmac(sha256, secret, concat(utf8(LABELS.fleetSecretCheck), hash)).subarray(0, SECRET_CHECK_BYTES);
}

export interface Founding {
  /** The fleet secret (stays in the founder's device). */
  readonly secret: Uint8Array;
  /** Grant bytes for every other member, by member id (undefined at the founder's own id). */
  readonly grants: readonly (Uint8Array | undefined)[];
  readonly check: Uint8Array;
}

/**
 * The founder's step, in its device: checks the operator secret and that this device is the
 * charter's founder, draws the fleet secret and seals a grant to each other member.
 */
export async function found(
  charter: Charter,
  me: DeviceIdentity,
  operatorSecret: Uint8Array,
  provisionedHash: Uint8Array,
  random: (n: number) => Uint8Array,
): Promise<Founding> {
  checkCharter(charter);
  checkOperatorSecret(operatorSecret, provisionedHash);
  memberOf(charter, me, charter.founder);
  const hash = charterHash(charter);
  const secret = random(SECRET_BYTES);
  const senderKey = await keyPairOf(me.seed);
  const grants: (Uint8Array | undefined)[] = [];
  for (let i = 0; i < charter.identities.length; i++) {
    if (i === charter.founder) {
      grants.push(undefined);
      continue;
    }
    grants.push(await sealGrant(secret, i, charter.identities[i]!, senderKey, grantInfo(hash, i)));
  }
  return { secret, grants, check: secretCheck(secret, hash) };
}

/**
 * A member's step, in its device: checks the operator secret, that it is `member` of the charter,
 * and opens the grant as coming from the charter's founder. Returns the fleet secret and its check.
 */
export async function acceptGrant(
  charter: Charter,
  member: number,
  me: DeviceIdentity,
  operatorSecret: Uint8Array,
  provisionedHash: Uint8Array,
  grant: Uint8Array,
): Promise<{ secret: Uint8Array; check: Uint8Array }> {
  checkCharter(charter);
  checkOperatorSecret(operatorSecret, provisionedHash);
  memberOf(charter, me, member);
  if (member === charter.founder) throw new FleetFault(FleetCode.GrantWrongMember, 'the founder draws the secret; it takes no grant');
  const hash = charterHash(charter);
  const secret = await openGrant(grant, member, me, charter.identities[charter.founder]!, grantInfo(hash, member), 'the grant does not open as the founder\'s for this member of this charter');
  return { secret, check: secretCheck(secret, hash) };
}

// ---- a member added by a charter change (docs/fleet.md, "Membership changes") ---------------------

/**
 * The hash that names a changed charter: SHA-256 of the label, the founding charter's hash (the
 * fleet's root, which every key stays derived from), the serial, and each id's identity (a zero
 * byte for a removed id, else a one byte and the 32 bytes).
 */
export function changedCharterHash(root: Uint8Array, c: CharterState): Uint8Array {
  const serial = new Uint8Array(8);
  new DataView(serial.buffer).setBigUint64(0, BigInt(c.serial));
  return sha256(concat(utf8(LABELS.fleetCharterChange), root, serial, ...c.identities.map((k) => (k ? concat(Uint8Array.of(1), k) : Uint8Array.of(0)))));
}

const joinInfo = (hash: Uint8Array, member: number): ArrayBuffer => buf(concat(utf8(LABELS.fleetJoinGrant), hash, Uint8Array.of(member)));

/**
 * The granting member's step, in its device, once the change that adds `joiner` is committed:
 * the fleet secret it holds, sealed to the joiner's identity in `changed` (HPKE Auth from the
 * granter's identity, info naming the changed charter and the joiner). The granter must be a
 * member of `changed`; the operator secret is checked as in the ceremony.
 */
export async function grantJoiner(founding: Charter, changed: CharterState, granter: number, me: DeviceIdentity, fleetSecret: Uint8Array, joiner: number, operatorSecret: Uint8Array, provisionedHash: Uint8Array): Promise<Uint8Array> {
  checkOperatorSecret(operatorSecret, provisionedHash);
  const mine = changed.identities[granter];
  if (!mine || !ctEqual(mine, me.publicKey)) throw new FleetFault(FleetCode.NotInCharter, `this device is not member ${granter} of the changed charter`);
  const to = changed.identities[joiner];
  if (!to || joiner === granter) throw new FleetFault(FleetCode.GrantWrongMember, `member ${joiner} is not another member of the changed charter`);
  return sealGrant(fleetSecret, joiner, to, await keyPairOf(me.seed), joinInfo(changedCharterHash(charterHash(founding), changed), joiner));
}

/**
 * The added member's step, in its device: the operator secret checked, this device the
 * identity at `joiner` in `changed`, and the grant opened as the granter's for it. Returns the
 * fleet secret and its check under the founding charter (equal to every member's).
 */
export async function acceptJoinerGrant(founding: Charter, changed: CharterState, granter: number, joiner: number, me: DeviceIdentity, operatorSecret: Uint8Array, provisionedHash: Uint8Array, grant: Uint8Array): Promise<{ secret: Uint8Array; check: Uint8Array }> {
  checkCharter(founding);
  checkOperatorSecret(operatorSecret, provisionedHash);
  const mine = changed.identities[joiner];
  if (!mine || !ctEqual(mine, me.publicKey)) throw new FleetFault(FleetCode.NotInCharter, `this device is not member ${joiner} of the changed charter`);
  const from = changed.identities[granter];
  if (!from || granter === joiner) throw new FleetFault(FleetCode.GrantWrongMember, 'the granter is not another member of the changed charter');
  const root = charterHash(founding);
  const secret = await openGrant(grant, joiner, me, from, joinInfo(changedCharterHash(root, changed), joiner), 'the grant does not open as the granter\'s for this member of this changed charter');
  return { secret, check: secretCheck(secret, root) };
}
