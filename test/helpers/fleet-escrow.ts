/**
 * The vault client's side of the member-process tests (test/host/fleet/vault-serve.test.ts,
 * vault-pg.test.ts): `bkv escrow VERB ... --vault url0,url1,url2 --json` against a ProcFleet,
 * asked again while no member takes it, the wait until every running member applied the
 * leader's batches, and the leader's SIGKILL and its restart with the catch-up it must make.
 */
import { expect } from 'vitest';
import { VAULT_KEY_FILE } from '../../host/fleet/member-host.ts';
import { runBkvAsync } from './cli.ts';
import type { MemberStatus, ProcFleet } from './fleet-procs.ts';

export interface EscrowRun {
  readonly code: number | null;
  /** The command's JSON answer ({} when stdout held none: the assertion on it shows the streams). */
  readonly json: Record<string, any>;
  /** stdout and stderr, for assertion messages. */
  readonly err: string;
}

/** Every member's client URL. */
export const memberUrls = (f: ProcFleet): string[] => f.apiPorts.map((p) => `http://127.0.0.1:${p}`);

/** A VaultMembersError whose every member answered 421 NOT_LEADER, 503 NOT_READY or UNAVAILABLE, or could not be reached. */
export function leaderless(json: Record<string, any>): boolean {
  if (json.error?.name !== 'VaultMembersError') return false;
  const parts = String(json.error.message).replace(/^no member of the vault took the request: /, '').split(/; (?=http)/);
  return parts.every((p) => / 421 NOT_LEADER| 503 NOT_READY| 503 UNAVAILABLE|could not be reached/.test(p));
}

/**
 * `bkv escrow VERB ... --json` for `id` (token alice.tok-style file `tokenFile` and the fleet's
 * vault-key.pub in the fleet folder) against `vault` (default every member). Every member refused
 * before its device saw the operation (no leader for a moment: a view change; one catching up):
 * nothing was charged, so it asks again after a pause, at most 20 times.
 */
export async function escrowCli(f: ProcFleet, id: string, tokenFile: string, verb: string, args: string[], vault = memberUrls(f)): Promise<EscrowRun> {
  for (let tries = 0; ; tries++) {
    const r = await runBkvAsync(f.root, ['escrow', verb, '--vault', vault.join(','), '--vault-key', VAULT_KEY_FILE, '--id', id, '--auth-token', tokenFile, '--json', ...args]);
    let json: Record<string, any> = {};
    try {
      json = JSON.parse(r.out.trim()) as Record<string, any>;
    } catch {
      // no JSON: the assertion on it shows the streams
    }
    if (tries < 20 && leaderless(json)) {
      f.note(`${verb}: no member took it (${json.error.message}); asking again`);
      await new Promise((done) => setTimeout(done, 500));
      continue;
    }
    return { code: r.code, json, err: `${r.out}\n${r.err}` };
  }
}

/** Every running member normal under one leader, each having applied the leader's last batch. */
export function settled(f: ProcFleet): Promise<MemberStatus[]> {
  return f.waitFor(
    'every running member to apply the leader\'s batches',
    async () => {
      const all = (await Promise.all(f.procs.map((p) => (p ? f.status(p.api) : null)))).filter((s): s is MemberStatus => s !== null);
      const running = f.procs.filter(Boolean).length;
      if (all.length !== running || all.some((s) => s.status !== 'normal')) return null;
      const leader = all.find((s) => s.leader?.id === s.member);
      if (!leader || all.some((s) => s.leader?.id !== leader.member || s.appliedBatch !== leader.appliedBatch)) return null;
      return all;
    },
    60_000,
  );
}

/** The leader SIGKILLed; resolves once the others have a leader and settled. Returns the killed member. */
export async function killLeader(f: ProcFleet): Promise<number> {
  const leader = await f.waitFor('a leader', () => f.leader());
  await f.kill(f.procs[leader]!);
  await f.waitFor('a new leader', () => f.leader());
  await settled(f);
  return leader;
}

/**
 * Member `m` restarted; it must catch up: every member settled at one applied batch, and the
 * record's blob (`blobOf(i)`: member i's stored blob, null if none) there and the same in each.
 */
export async function expectCaughtUp(f: ProcFleet, m: number, blobOf: (i: number) => Buffer | null | Promise<Buffer | null>): Promise<void> {
  await f.start(m);
  const all = await settled(f);
  expect(all).toHaveLength(f.n);
  expect(new Set(all.map((s) => s.appliedBatch)).size).toBe(1);
  const blobs = await Promise.all(Array.from({ length: f.n }, (_, i) => blobOf(i)));
  expect(blobs[0]).not.toBeNull();
  expect(blobs[0]!.length).toBeGreaterThan(0);
  for (const b of blobs) expect(b!.equals(blobs[0]!)).toBe(true);
}
