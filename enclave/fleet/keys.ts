/**
 * The fleet's key hierarchy below the ceremony (ceremony.ts): the pairwise message keys that MAC
 * every message between two members (wire.ts `seal`, `verifyMac`). docs/fleet.md, "Key hierarchy".
 *
 *   identity key   the X25519 private key of a device's identity seed: RFC 9180 §7.1.3
 *                  DeriveKeyPair for DHKEM(X25519, HKDF-SHA256), the same key the ceremony's HPKE
 *                  grants use (@hpke/core); its public key is the charter's identity
 *   message key    for the ordered pair (sender s, receiver r):
 *                  HKDF-SHA256 (RFC 5869 §2) with IKM = X25519(identity key of s, identity of r)
 *                  (= X25519(identity key of r, identity of s), RFC 7748 §6.1), salt = the fleet
 *                  secret, info = label || SHA-256(charter) || s || r, 32 bytes
 *
 * Only s and r can compute the key of (s, r): the DH needs the identity private key of one of them
 * (a third member has neither), and the salt needs the fleet secret (a host has it no more than
 * it has an identity key). So a member can MAC a message only in its own name, and a key a member
 * holds (one it sends with, or one it checks another's messages with) names that member. The order
 * in the info gives each direction its own key. The charter hash binds the keys to one fleet and
 * one set of identities. An all-zero DH output (a low-order identity) is refused (RFC 7748 §6.1).
 *
 * Cost: one X25519 per other member, once when a member boots (its configuration); none per
 * message. JavaScript can not promise constant time or the erasure of these keys from memory.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { expand, extract, hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { LABELS } from '../api/labels.ts';
import { concat, utf8 } from '../opaque/bytes.ts';
import { charterHash, type Charter } from './ceremony.ts';
import type { CharterState } from './messages.ts';
import { FleetCode, FleetFault } from './faults.ts';

export const MESSAGE_KEY_BYTES = 32;

/**
 * What a member's device keeps across restarts besides its log, in NVRAM: which member of which
 * charter it is, its identity seed (made before the ceremony) and the fleet secret (drawn, as the
 * founder, or opened from its grant). A restore of the log from an old image keeps these; a clone
 * of the device holds the same.
 */
export interface MemberSecrets {
  readonly member: number;
  /** The founding charter: its hash roots every message key and vault key for the fleet's life. */
  readonly charter: Charter;
  readonly identitySeed: Uint8Array;
  readonly fleetSecret: Uint8Array;
  /** A member added by a charter change: the charter it was granted the secret under (ceremony.ts `grantJoiner`), which names it. */
  readonly joined?: CharterState;
}

/** A member's message keys, by the other member's id (null at its own id). */
export interface MessageKeys {
  /** `send[r]`: the key of (this member, r), which MACs what this member sends to r. */
  readonly send: readonly (Uint8Array | null)[];
  /** `receive[s]`: the key of (s, this member), which checks what s sends to this member. */
  readonly receive: readonly (Uint8Array | null)[];
}

// RFC 9180 §4 and §7.1.3: suite_id = "KEM" || I2OSP(0x0020, 2) for DHKEM(X25519, HKDF-SHA256)
const KEM_SUITE = concat(utf8('HPKE-v1'), utf8('KEM'), Uint8Array.of(0x00, 0x20));

/** The X25519 private key of an identity seed: RFC 9180 §7.1.3 DeriveKeyPair (the ceremony's HPKE key). */
export function identityPrivateKey(seed: Uint8Array): Uint8Array {
  // LabeledExtract("", "dkp_prk", ikm), then LabeledExpand(dkp_prk, "sk", "", Nsk = 32) (§4)
  const prk = extract(sha256, concat(KEM_SUITE, utf8('dkp_prk'), seed), new Uint8Array(0));
  return expand(sha256, prk, concat(Uint8Array.of(0, 32), KEM_SUITE, utf8('sk')), 32);
}

/** The identity (public key) of a seed, as the ceremony's `identityOf` makes it, without HPKE. */
export function identityPublicKey(seed: Uint8Array): Uint8Array {
  return x25519.getPublicKey(identityPrivateKey(seed));
}

function pairInfo(hash: Uint8Array, sender: number, receiver: number): Uint8Array {
  return concat(utf8(LABELS.fleetMessageKey), hash, Uint8Array.of(sender, receiver));
}

/**
 * The two keys between this member and member `other` whose identity is `identity`: one X25519.
 * The info names the founding charter's hash and the two ids, so a key stays the same across
 * charter changes (ids are never reused: an id names one device for the fleet's life).
 */
export function pairKeys(s: MemberSecrets, other: number, identity: Uint8Array, hash: Uint8Array = charterHash(s.charter)): { send: Uint8Array; receive: Uint8Array } {
  const sk = identityPrivateKey(s.identitySeed);
  let z: Uint8Array;
  try {
    z = x25519.getSharedSecret(sk, identity);
  } catch {
    throw new FleetFault(FleetCode.BadValue, `fleet: the identity of member ${other} gives no shared secret (RFC 7748 §6.1)`);
  } finally {
    sk.fill(0);
  }
  if (z.every((x) => x === 0)) throw new FleetFault(FleetCode.BadValue, `fleet: the identity of member ${other} gives no shared secret (RFC 7748 §6.1)`);
  const out = { send: hkdf(sha256, z, s.fleetSecret, pairInfo(hash, s.member, other), MESSAGE_KEY_BYTES), receive: hkdf(sha256, z, s.fleetSecret, pairInfo(hash, other, s.member), MESSAGE_KEY_BYTES) };
  z.fill(0);
  return out;
}

/** Every message key of one member with the founding charter's members, from what its device keeps: one X25519 per other member. */
export function messageKeys(s: MemberSecrets): MessageKeys {
  const { charter, member } = s;
  const n = charter.identities.length;
  const hash = charterHash(charter);
  const send: (Uint8Array | null)[] = new Array(n).fill(null);
  const receive: (Uint8Array | null)[] = new Array(n).fill(null);
  for (let other = 0; other < n; other++) {
    if (other === member) continue;
    const k = pairKeys(s, other, charter.identities[other]!, hash);
    send[other] = k.send;
    receive[other] = k.receive;
  }
  return { send, receive };
}

/**
 * The positive control `shared-key` only: one key for every pair, HKDF-SHA256 of the fleet secret
 * alone (info `bkv/fleet/replication/v1`), so any member can MAC a message in any member's name.
 * The simulation must catch a member that forges with it.
 */
export function sharedKeysForControl(s: MemberSecrets): MessageKeys {
  const key = hkdf(sha256, s.fleetSecret, undefined, utf8(LABELS.fleetReplicationKey), MESSAGE_KEY_BYTES);
  const all = s.charter.identities.map((_, i) => (i === s.member ? null : key));
  return { send: all, receive: all };
}
