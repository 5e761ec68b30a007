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
import { acceptGrant, acceptJoinerGrant, found, grantJoiner, identityOf, newIdentity, type Charter } from '../../enclave/fleet/ceremony.ts';
import type { MemberSecrets } from '../../enclave/fleet/keys.ts';
import type { CharterState } from '../../enclave/fleet/messages.ts';
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

/** The operator secret `ceremony` drew for an `n`-member fleet (its hash is provisioned in every device). */
function operatorSecret(seed: number, n: number): Uint8Array {
  const rng = new Rng(seed ^ 0xce7e);
  for (let i = 0; i < n; i++) rng.bytes(32); // the identities' seeds (newIdentity)
  return rng.bytes(32);
}

/** One charter change of a run: the change, and the member it adds (with what its device keeps once its grant is opened) or removes. */
export interface CharterStep {
  readonly change: CharterState;
  /** Members it adds, with what each one's device keeps once it opened its grant. */
  readonly joined: readonly MemberSecrets[];
  readonly removed: number | null;
}

/**
 * `k` charter changes by turns, an addition then a removal (a replacement), or with `shrinkFirst` a
 * removal then an addition (the replacement of a member that is gone: 3 -> 2 -> 3): each added member's device makes its identity, and a member of the new charter
 * (the lowest id it keeps) seals it the fleet secret (ceremony.ts grantJoiner), which its device
 * opens (acceptJoinerGrant) and checks against the founding fleet's secret check. The removed
 * member is drawn from the members at that point. `two`: the positive control `charter-two` only,
 * one change that adds two members at once.
 */
export async function charterPlan(founding: readonly MemberSecrets[], seed: number, k: number, two = false, shrinkFirst = false): Promise<CharterStep[]> {
  const rng = new Rng(seed ^ 0x91a2);
  const charter: Charter = founding[0]!.charter;
  const operator = operatorSecret(seed, founding.length);
  const provisioned = sha256(operator);
  const seeds = new Map<number, Uint8Array>(founding.map((s) => [s.member, s.identitySeed]));
  let identities: (Uint8Array | null)[] = [...charter.identities];
  const steps: CharterStep[] = [];
  for (let serial = 1; serial <= k; serial++) {
    if (serial % 2 === (shrinkFirst ? 0 : 1)) {
      const first = identities.length;
      const mine = [];
      for (let j = 0; j < (two ? 2 : 1); j++) mine.push(await newIdentity((n) => rng.bytes(n)));
      identities = [...identities, ...mine.map((m) => m.publicKey)];
      const change: CharterState = { serial, identities };
      const granter = identities.findIndex((x, i) => x !== null && i < first);
      const granterId = await identityOf(seeds.get(granter)!);
      const joined: MemberSecrets[] = [];
      for (const [j, me] of mine.entries()) {
        const joiner = first + j;
        const grant = await grantJoiner(charter, change, granter, granterId, founding[0]!.fleetSecret, joiner, operator, provisioned);
        const opened = await acceptJoinerGrant(charter, change, granter, joiner, me, operator, provisioned, grant);
        seeds.set(joiner, me.seed);
        joined.push({ member: joiner, charter, identitySeed: me.seed, fleetSecret: opened.secret, joined: change });
      }
      steps.push({ change, joined, removed: null });
      if (two) break;
    } else {
      const members = identities.flatMap((x, i) => (x ? [i] : []));
      const removed = members[rng.int(members.length)]!;
      identities = identities.map((x, i) => (i === removed ? null : x));
      steps.push({ change: { serial, identities }, joined: [], removed });
    }
  }
  return steps;
}
