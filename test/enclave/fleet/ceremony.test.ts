/**
 * The fleet's key ceremony (enclave/fleet/ceremony.ts): the founder's device draws the fleet
 * secret and every other member's device gets it only through a grant it can open; what a host
 * could try instead is refused: a grant for another member or another charter, a grant it made
 * itself (with its own key, or a member's public key), a substituted identity, altered or
 * truncated bytes, the wrong operator secret, a device with none provisioned. A member a charter
 * change adds gets the secret the same way (grantJoiner, acceptJoinerGrant) and the same refusals
 * hold.
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { Codec, EnclaveFault } from '../../../enclave/api/codes.ts';
import { LABELS } from '../../../enclave/api/labels.ts';
import { rejectionOf, thrownBy } from '../../helpers/errors.ts';
import { FleetCode, FleetFault } from '../../../enclave/fleet/faults.ts';
import { concat, utf8 } from '../../../enclave/opaque/bytes.ts';
import {
  GRANT_BYTES,
  acceptGrant,
  acceptJoinerGrant,
  grantJoiner,
  charterHash,
  decodeCharter,
  encodeCharter,
  found,
  identityFingerprint,
  identityOf,
  newIdentity,
  type Charter,
  type DeviceIdentity,
} from '../../../enclave/fleet/ceremony.ts';

const random = (n: number) => new Uint8Array(randomBytes(n));
const OPERATOR = random(32);
const HASH = sha256(OPERATOR);

async function fleetOf(n: number, founder = 0): Promise<{ ids: DeviceIdentity[]; charter: Charter }> {
  const ids = await Promise.all(Array.from({ length: n }, () => newIdentity(random)));
  return { ids, charter: { fleetId: random(16), founder, identities: ids.map((i) => i.publicKey) } };
}

async function expectCode(p: Promise<unknown>, code: number): Promise<void> {
  const e = await rejectionOf(p);
  expect(e).toBeInstanceOf(FleetFault);
  expect((e as FleetFault).code).toBe(code);
}

describe('key ceremony', () => {
  for (const [n, founder] of [
    [3, 0],
    [5, 2],
    [7, 6],
  ] as const) {
    it(`${n} members, founder ${founder}: every member ends with the founder's secret and the same check`, async () => {
      const { ids, charter } = await fleetOf(n, founder);
      const f = await found(charter, ids[founder]!, OPERATOR, HASH, random);
      expect(f.grants).toHaveLength(n);
      expect(f.grants[founder]).toBeUndefined();
      for (let i = 0; i < n; i++) {
        if (i === founder) continue;
        expect(f.grants[i]).toHaveLength(GRANT_BYTES);
        const got = await acceptGrant(charter, i, ids[i]!, OPERATOR, HASH, f.grants[i]!);
        expect(Buffer.from(got.secret).equals(Buffer.from(f.secret))).toBe(true);
        expect(Buffer.from(got.check).equals(Buffer.from(f.check))).toBe(true);
      }
      // A second founding draws another secret.
      const again = await found(charter, ids[founder]!, OPERATOR, HASH, random);
      expect(Buffer.from(again.secret).equals(Buffer.from(f.secret))).toBe(false);
    });
  }

  it('an identity is reproduced from its seed; fingerprints differ per key', async () => {
    const a = await newIdentity(random);
    const b = await identityOf(a.seed);
    expect(Buffer.from(b.publicKey).equals(Buffer.from(a.publicKey))).toBe(true);
    expect(identityFingerprint(a.publicKey)).toMatch(/^([0-9a-f]{4}-){7}[0-9a-f]{4}$/);
    expect(identityFingerprint((await newIdentity(random)).publicKey)).not.toBe(identityFingerprint(a.publicKey));
  });

  it('the operator secret: checked by the founder and by every member; none provisioned refuses', async () => {
    const { ids, charter } = await fleetOf(3);
    await expectCode(found(charter, ids[0]!, random(32), HASH, random), FleetCode.WrongOperatorSecret);
    await expectCode(found(charter, ids[0]!, OPERATOR, new Uint8Array(32), random), FleetCode.NoOperatorSecret);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    await expectCode(acceptGrant(charter, 1, ids[1]!, random(32), HASH, f.grants[1]!), FleetCode.WrongOperatorSecret);
    await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, new Uint8Array(32), f.grants[1]!), FleetCode.NoOperatorSecret);
  });

  it('a device found only where the charter says: not the founder, not that member, not the founder taking a grant', async () => {
    const { ids, charter } = await fleetOf(3);
    await expectCode(found(charter, ids[1]!, OPERATOR, HASH, random), FleetCode.NotInCharter);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    await expectCode(acceptGrant(charter, 1, ids[2]!, OPERATOR, HASH, f.grants[1]!), FleetCode.NotInCharter);
    await expectCode(acceptGrant(charter, 0, ids[0]!, OPERATOR, HASH, f.grants[1]!), FleetCode.GrantWrongMember);
    const stranger = await newIdentity(random);
    await expectCode(acceptGrant(charter, 1, stranger, OPERATOR, HASH, f.grants[1]!), FleetCode.NotInCharter);
  });

  it("member 2's grant handed to member 1 is refused, even with its member byte rewritten", async () => {
    const { ids, charter } = await fleetOf(3);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, f.grants[2]!), FleetCode.GrantWrongMember);
    const rewritten = f.grants[2]!.slice();
    rewritten[1] = 1;
    await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, rewritten), FleetCode.BadGrant);
  });

  it('a grant of another charter (another fleet id, or one identity substituted) does not open', async () => {
    const { ids, charter } = await fleetOf(3);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    const otherFleet: Charter = { ...charter, fleetId: random(16) };
    await expectCode(acceptGrant(otherFleet, 1, ids[1]!, OPERATOR, HASH, f.grants[1]!), FleetCode.BadGrant);
    // The host swapped member 2's identity for a key of its own before the founding: member 1's
    // charter (the true one) differs from the founder's, so member 1's grant does not open.
    const hostKey = await newIdentity(random);
    const forged: Charter = { ...charter, identities: [ids[0]!.publicKey, ids[1]!.publicKey, hostKey.publicKey] };
    const g = await found(forged, ids[0]!, OPERATOR, HASH, random);
    await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, g.grants[1]!), FleetCode.BadGrant);
  });

  it("a grant the host makes itself (HPKE to the member's public key, from its own key or claiming the founder's) is refused", async () => {
    const { ids, charter } = await fleetOf(3);
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
    const info = concat(utf8(LABELS.fleetGrant), charterHash(charter), Uint8Array.of(1)).slice().buffer as ArrayBuffer;
    const recipientPublicKey = await suite.kem.deserializePublicKey(ids[1]!.publicKey.slice().buffer as ArrayBuffer);
    const secret = random(32).buffer as ArrayBuffer;
    // Base mode (no sender key), and Auth mode with the host's own key.
    const base = await suite.createSenderContext({ recipientPublicKey, info });
    const auth = await suite.createSenderContext({ recipientPublicKey, info, senderKey: await suite.kem.generateKeyPair() });
    for (const ctx of [base, auth]) {
      const grant = concat(Uint8Array.of(1, 1), new Uint8Array(ctx.enc), new Uint8Array(await ctx.seal(secret)));
      expect(grant).toHaveLength(GRANT_BYTES);
      await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, grant), FleetCode.BadGrant);
    }
  });

  it('every single-bit flip of a grant is refused; truncated, extended and unknown-version grants too', async () => {
    const { ids, charter } = await fleetOf(3);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    const grant = f.grants[1]!;
    for (let bit = 0; bit < grant.length * 8; bit++) {
      const g = grant.slice();
      g[bit >> 3]! ^= 1 << (bit & 7);
      const e = await rejectionOf(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, g));
      expect(e instanceof FleetFault, `bit ${bit}: ${String(e)}`).toBe(true);
    }
    for (const len of [0, 1, 2, 33, GRANT_BYTES - 1]) {
      expect(await rejectionOf(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, grant.subarray(0, len))), `length ${len}`).toBeInstanceOf(EnclaveFault);
    }
    expect(await rejectionOf(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, concat(grant, Uint8Array.of(0))))).toBeInstanceOf(EnclaveFault);
    const v2 = grant.slice();
    v2[0] = 2;
    await expectCode(acceptGrant(charter, 1, ids[1]!, OPERATOR, HASH, v2), FleetCode.WireVersion);
  });
});

describe('charters', () => {
  it('round-trip through their bytes; bad shapes are refused', async () => {
    const { charter } = await fleetOf(5, 3);
    const d = decodeCharter(encodeCharter(charter));
    expect(d.founder).toBe(3);
    expect(d.identities.map((x) => Buffer.from(x).toString('hex'))).toEqual(charter.identities.map((x) => Buffer.from(x).toString('hex')));
    const bad: [string, Charter][] = [
      ['two members', { ...charter, identities: charter.identities.slice(0, 2) }],
      ['four members', { ...charter, identities: charter.identities.slice(0, 4) }],
      ['the founder out of range', { ...charter, founder: 5 }],
      ['an identity twice', { ...charter, identities: [...charter.identities.slice(0, 4), charter.identities[0]!] }],
      ['a short identity', { ...charter, identities: [...charter.identities.slice(0, 4), new Uint8Array(31)] }],
      ['a short fleet id', { ...charter, fleetId: new Uint8Array(15) }],
    ];
    for (const [what, c] of bad) {
      const err = thrownBy(() => encodeCharter(c));
      expect(err, what).toBeInstanceOf(FleetFault);
      expect((err as FleetFault).code, what).toBe(FleetCode.BadCharter);
    }
    const bytes = encodeCharter(charter);
    expect(() => decodeCharter(bytes.subarray(0, bytes.length - 1))).toThrow(EnclaveFault);
    expect(() => decodeCharter(concat(bytes, Uint8Array.of(0)))).toThrow(EnclaveFault);
    const v9 = bytes.slice();
    v9[0] = 9;
    expect(() => decodeCharter(v9)).toThrow(FleetFault);
    // A count (u16 after version, fleet id and founder) claiming 200 identities is refused by
    // the bound (7) before anything is read for them.
    const big = bytes.slice();
    big.set([0, 200], 1 + 16 + 1);
    const tooMany = thrownBy(() => decodeCharter(big));
    expect(tooMany).toBeInstanceOf(EnclaveFault);
    expect((tooMany as EnclaveFault).code).toBe(Codec.TooManyItems);
  });
});

describe('grant to a member a charter change adds', () => {
  /** A 3-member fleet, its secret, and the change that adds a fourth member at id 3. */
  async function added() {
    const { ids, charter } = await fleetOf(3, 0);
    const f = await found(charter, ids[0]!, OPERATOR, HASH, random);
    const joiner = await newIdentity(random);
    const change = { serial: 1, identities: [...charter.identities, joiner.publicKey] };
    return { ids, charter, secret: f.secret, check: f.check, joiner, change };
  }

  it('the new member opens the granter\'s grant and holds the fleet\'s secret (the same check as every member)', async () => {
    const { ids, charter, secret, check, joiner, change } = await added();
    const grant = await grantJoiner(charter, change, 1, ids[1]!, secret, 3, OPERATOR, HASH);
    expect(grant).toHaveLength(GRANT_BYTES);
    const got = await acceptJoinerGrant(charter, change, 1, 3, joiner, OPERATOR, HASH, grant);
    expect(got.secret).toEqual(secret);
    expect(got.check).toEqual(check);
  });

  it('refuses: the wrong operator secret, a granter or joiner not in the changed charter, a grant for another member, another change, altered bytes', async () => {
    const { ids, charter, secret, joiner, change } = await added();
    await expectCode(grantJoiner(charter, change, 1, ids[1]!, secret, 3, random(32), HASH), FleetCode.WrongOperatorSecret);
    await expectCode(grantJoiner(charter, change, 1, ids[2]!, secret, 3, OPERATOR, HASH), FleetCode.NotInCharter);
    await expectCode(grantJoiner(charter, change, 1, ids[1]!, secret, 4, OPERATOR, HASH), FleetCode.GrantWrongMember);
    const removed = { serial: 2, identities: [charter.identities[0]!, null, charter.identities[2]!, joiner.publicKey] };
    await expectCode(grantJoiner(charter, removed, 1, ids[1]!, secret, 3, OPERATOR, HASH), FleetCode.NotInCharter);
    const grant = await grantJoiner(charter, change, 1, ids[1]!, secret, 3, OPERATOR, HASH);
    await expectCode(acceptJoinerGrant(charter, change, 1, 3, joiner, random(32), HASH, grant), FleetCode.WrongOperatorSecret);
    // a device that is not the identity at id 3 (a founding member, another new device)
    await expectCode(acceptJoinerGrant(charter, change, 1, 3, ids[2]!, OPERATOR, HASH, grant), FleetCode.NotInCharter);
    await expectCode(acceptJoinerGrant(charter, change, 1, 3, await newIdentity(random), OPERATOR, HASH, grant), FleetCode.NotInCharter);
    // sealed by another member than the one named as granter (a host's substitution)
    await expectCode(acceptJoinerGrant(charter, change, 2, 3, joiner, OPERATOR, HASH, grant), FleetCode.BadGrant);
    // the same identities under another serial: another changed charter, the grant does not open
    const other = { ...change, serial: 5 };
    await expectCode(acceptJoinerGrant(charter, other, 1, 3, joiner, OPERATOR, HASH, grant), FleetCode.BadGrant);
    for (let i = 0; i < grant.length; i++) {
      const bad = Uint8Array.from(grant);
      bad[i]! ^= 0x01;
      const e = await rejectionOf(acceptJoinerGrant(charter, change, 1, 3, joiner, OPERATOR, HASH, bad));
      expect(e instanceof FleetFault || e instanceof EnclaveFault, `byte ${i}`).toBe(true);
    }
    expect(await rejectionOf(acceptJoinerGrant(charter, change, 1, 3, joiner, OPERATOR, HASH, grant.subarray(0, grant.length - 1)))).toBeInstanceOf(EnclaveFault);
  });
});
