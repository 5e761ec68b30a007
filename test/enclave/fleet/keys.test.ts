/**
 * The fleet's pairwise message keys (enclave/fleet/keys.ts): the identity key is the ceremony's
 * (RFC 9180 §7.1.3 DeriveKeyPair, checked against @hpke/core); the key of (s, r) is the same on
 * both members and held by no third; each direction, charter and fleet secret has its own keys;
 * an identity that gives an all-zero X25519 output (RFC 7748 §6.1) is refused.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { identityOf } from '../../../enclave/fleet/ceremony.ts';
import { FleetCode, FleetFault } from '../../../enclave/fleet/faults.ts';
import { identityPublicKey, messageKeys, sharedKeysForControl, type MemberSecrets } from '../../../enclave/fleet/keys.ts';
import { thrownBy } from '../../helpers/errors.ts';

const seeds = [1, 2, 3, 4, 5].map((b) => new Uint8Array(32).fill(b));
const charter = { fleetId: new Uint8Array(16).fill(9), founder: 0, identities: seeds.map(identityPublicKey) };
const SECRET = new Uint8Array(32).fill(0x42);
const secretsOf = (member: number, over: Partial<MemberSecrets> = {}): MemberSecrets => ({ member, charter, identitySeed: seeds[member]!, fleetSecret: SECRET, ...over });
const all = seeds.map((_, i) => messageKeys(secretsOf(i)));

describe('fleet message keys', () => {
  it("the identity key is the ceremony's: the same public key as HPKE's DeriveKeyPair", async () => {
    for (const seed of [...seeds, Uint8Array.from({ length: 32 }, (_, i) => i * 7)]) {
      expect(bytesToHex(identityPublicKey(seed))).toBe(bytesToHex((await identityOf(seed)).publicKey));
    }
  });

  it('the key of (s, r) is the same at s and r, and no other member holds it', () => {
    const held = (m: number) => new Set([...all[m]!.send, ...all[m]!.receive].filter((k) => k !== null).map((k) => bytesToHex(k!)));
    const keys = new Set<string>();
    for (let s = 0; s < 5; s++) {
      expect(all[s]!.send[s]).toBeNull();
      for (let r = 0; r < 5; r++) {
        if (r === s) continue;
        const k = bytesToHex(all[s]!.send[r]!);
        expect(bytesToHex(all[r]!.receive[s]!)).toBe(k);
        keys.add(k);
        for (let third = 0; third < 5; third++) if (third !== s && third !== r) expect(held(third).has(k), `${s}->${r} at ${third}`).toBe(false);
      }
    }
    // every ordered pair its own key: 5 x 4
    expect(keys.size).toBe(20);
  });

  it('another fleet secret, another charter, another member index: other keys', () => {
    const k = bytesToHex(all[0]!.send[1]!);
    expect(bytesToHex(messageKeys(secretsOf(0, { fleetSecret: new Uint8Array(32).fill(0x43) })).send[1]!)).not.toBe(k);
    expect(bytesToHex(messageKeys(secretsOf(0, { charter: { ...charter, fleetId: new Uint8Array(16) } })).send[1]!)).not.toBe(k);
    expect(bytesToHex(messageKeys(secretsOf(0, { charter: { ...charter, founder: 1 } })).send[1]!)).not.toBe(k);
  });

  it('an identity that gives no shared secret (a low-order point) is refused', () => {
    const bad = { ...charter, identities: [charter.identities[0]!, new Uint8Array(32), charter.identities[2]!] };
    const e = thrownBy(() => messageKeys(secretsOf(0, { charter: bad })));
    expect(e).toBeInstanceOf(FleetFault);
    expect((e as FleetFault).code).toBe(FleetCode.BadValue);
  });

  it('the positive control shared-key: one key for every pair, the same at every member', () => {
    const shared = seeds.map((_, i) => sharedKeysForControl(secretsOf(i)));
    expect(new Set(shared.flatMap((k) => [...k.send, ...k.receive]).filter((k) => k !== null).map((k) => bytesToHex(k!))).size).toBe(1);
  });
});
