/**
 * The key ceremony a simulated fleet runs before it starts (enclave/fleet/ceremony.ts,
 * docs/fleet.md "Key ceremony"): each device makes its identity, the operator approves the
 * charter (the operator secret's hash provisioned in every device), the founder's device draws
 * the fleet secret and seals a grant to each other member, and each member's device opens its
 * own. What each device keeps is its `MemberSecrets` (enclave/fleet/keys.ts): nobody hands a
 * member the fleet secret. Randomness comes from the seed (its own stream), so a schedule is the
 * same run every time; the grants' HPKE ephemeral keys are not, and nothing depends on them.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { acceptGrant, found, newIdentity, type Charter } from '../../enclave/fleet/ceremony.ts';
import type { MemberSecrets } from '../../enclave/fleet/keys.ts';
import { ctEqual } from '../../enclave/opaque/bytes.ts';
import { Rng } from './rng.ts';

export async function ceremony(n: number, seed: number): Promise<MemberSecrets[]> {
  const rng = new Rng(seed ^ 0xce7e);
  const random = (k: number): Uint8Array => rng.bytes(k);
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await newIdentity(random));
  const operator = random(32);
  const provisioned = sha256(operator);
  const charter: Charter = { fleetId: random(16), founder: rng.int(n), identities: ids.map((x) => x.publicKey) };
  const founding = await found(charter, ids[charter.founder]!, operator, provisioned, random);
  const out: MemberSecrets[] = [];
  for (let i = 0; i < n; i++) {
    const opened = i === charter.founder ? founding : await acceptGrant(charter, i, ids[i]!, operator, provisioned, founding.grants[i]!);
    if (!ctEqual(opened.check, founding.check)) throw new Error(`ceremony: member ${i} holds another secret`);
    out.push({ member: i, charter, identitySeed: ids[i]!.seed, fleetSecret: opened.secret });
  }
  return out;
}
