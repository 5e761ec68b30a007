/**
 * The fleet's vault keys (docs/fleet-vault.md, "One set of vault keys per fleet"): every member
 * must open every other member's sealed records, answer with the same OPAQUE server keys and be
 * pinned by one HPKE key, so the token keys those derive from (enclave/vault/keys.ts) are the same
 * in every member's token. Their root is the fleet secret of the key ceremony (ceremony.ts):
 *
 *   value(name) = HKDF-SHA256 (RFC 5869 §2) with IKM = the fleet secret, salt = empty,
 *                 info = "bkv/fleet/vault-key/v1" || SHA-256 charter hash (ceremony.ts
 *                 charterHash, 32 bytes) || name, L = the key's length
 *
 * `name` is the key's token label (ASCII: bkv-derive, bkv-oprf, bkv-seal or bkv-seal-ctr and
 * bkv-seal-mac); the fixed-length hash before it keeps the info unambiguous. The values are
 * imported into the member's token as sensitive, never extractable objects (Token.importAesKey,
 * importHmacKey) and wiped; a token's key is this fleet's when the token's output under it equals
 * the same computation on the value (`tokenKeyIs`): HMAC-SHA256 over "bkv/fleet/vault-key-check/v1"
 * for a generic secret, AES-256-ECB of a fresh random block for a counter-mode key, and the
 * AES-256-GCM tag over that label (empty plaintext, fresh random IV) for a GCM key. Compared in
 * constant time; JavaScript can not promise the values leave no copy in memory beyond the wiped one.
 */
import { createCipheriv } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { LABELS } from '../api/labels.ts';
import { concat, ctEqual, utf8 } from '../opaque/bytes.ts';
import type { KeyHandle, Token } from '../token.ts';
import { charterHash, type Charter } from './ceremony.ts';
import { FleetCode, FleetFault } from './faults.ts';

/** What the fleet's vault keys derive from: the fleet secret and the hash of the charter it was drawn for. */
export interface FleetVaultKeyRoot {
  readonly fleetSecret: Uint8Array;
  readonly charterHash: Uint8Array;
}

/** How a vault key is used in the token: an AES-256 key (GCM), an encrypt-only AES-256 key (counter mode), or a generic secret (HMAC). */
export type FleetKeyKind = 'aes' | 'aes-encrypt' | 'hmac';

/** The root of a member's vault keys, from its fleet secret and its charter. */
export function vaultKeyRoot(fleetSecret: Uint8Array, charter: Charter): FleetVaultKeyRoot {
  return { fleetSecret, charterHash: charterHash(charter) };
}

/** value(name) above: `length` bytes the caller imports, then wipes. */
export function fleetVaultKeyValue(root: FleetVaultKeyRoot, name: string, length: number): Uint8Array {
  if (root.fleetSecret.length !== 32) throw new FleetFault(FleetCode.BadValue, 'fleet: a fleet secret is 32 bytes');
  if (root.charterHash.length !== 32) throw new FleetFault(FleetCode.BadValue, 'fleet: a charter hash is 32 bytes');
  return hkdf(sha256, root.fleetSecret, new Uint8Array(0), concat(utf8(LABELS.fleetVaultKey), root.charterHash, utf8(name)), length);
}

const CHECK = utf8(LABELS.fleetVaultKeyCheck);

/** Whether the token's key `key` holds `value`, by one operation under each (see above). */
export function tokenKeyIs(token: Token, key: KeyHandle, kind: FleetKeyKind, value: Uint8Array): boolean {
  let fromToken: Uint8Array;
  let fromValue: Uint8Array;
  if (kind === 'hmac') {
    fromToken = token.hmac(key, 'SHA-256', CHECK);
    fromValue = hmac(sha256, value, CHECK);
  } else if (kind === 'aes-encrypt') {
    if (!token.encryptEcb) return false;
    const block = token.random(16);
    fromToken = token.encryptEcb(key, block);
    fromValue = createCipheriv('aes-256-ecb', value, null).setAutoPadding(false).update(block);
  } else {
    const iv = token.random(12);
    fromToken = token.encryptGcm(key, iv, CHECK, new Uint8Array(0));
    const c = createCipheriv('aes-256-gcm', value, iv).setAAD(CHECK);
    c.final();
    fromValue = c.getAuthTag();
  }
  return fromToken.length === fromValue.length && ctEqual(fromToken, fromValue);
}
