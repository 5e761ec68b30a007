/**
 * `bkv fleet up`, `bkv fleet status` and `bkv serve --fleet` on the real command (node
 * bin/bkv.mjs), keeping the CLI contract: `fleet init` writes a development operator secret
 * (mode 0600) unless given one; `fleet status` exits 1 (failure) while no majority is normal
 * under one leader and 0 once one is, with its `--json` shape; `fleet up` prints where each member
 * listens, and SIGTERM stops every member and itself with exit 0; usage errors exit 2, a missing
 * fleet file exits 1.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarize } from '../../../host/cli/cmd-fleet.ts';
import { readFleetConfig } from '../../../host/fleet/config.ts';
import type { MemberStatusJson } from '../../../host/fleet/member-host.ts';
import { bin, runBkv, runBkvAsync } from '../../helpers/cli.ts';
import { freePort } from '../../helpers/tcp-proxy.ts';

const dir = mkdtempSync(join(tmpdir(), 'bkv-fleet-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A base port with 6 free ports after it (member i: base+2i, base+2i+1). */
async function freeBase(): Promise<number> {
  for (;;) {
    const base = await freePort();
    if (base + 6 > 65535) continue;
    const net = await import('node:net');
    const ok = await Promise.all(
      [1, 2, 3, 4, 5].map(
        (k) =>
          new Promise<boolean>((res) => {
            const s = net.createServer();
            s.once('error', () => res(false));
            s.listen(base + k, '127.0.0.1', () => s.close(() => res(true)));
          }),
      ),
    );
    if (ok.every(Boolean)) return base;
  }
}

const json = (out: string) => JSON.parse(out.trim()) as Record<string, any>;

describe('bkv fleet up, status; bkv serve --fleet', () => {
  it('fleet init writes a development operator secret, mode 0600, unless given one', () => {
    const r = runBkv(dir, ['fleet', 'init', '--members', '3', '--dir', 'a', '--json']);
    expect(r.code, r.err).toBe(0);
    const file = join(dir, 'a', 'auth', 'operator.secret');
    expect(json(r.out).devOperatorSecret).toBe(file);
    expect(readFileSync(file, 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeFileSync(join(dir, 'op.key'), 'ab'.repeat(32) + '\n');
    const given = runBkv(dir, ['fleet', 'init', '--members', '3', '--dir', 'b', '--operator-key-file', 'op.key', '--json']);
    expect(given.code, given.err).toBe(0);
    expect(json(given.out).devOperatorSecret).toBeUndefined();
    expect(existsSync(join(dir, 'b', 'auth', 'operator.secret'))).toBe(false);
    writeFileSync(join(dir, 'bad.key'), 'not hex\n');
    expect(runBkv(dir, ['fleet', 'init', '--members', '3', '--dir', 'c', '--operator-key-file', 'bad.key']).code).toBe(2);
  });

  it('usage errors exit 2; a fleet folder without fleet.json exits 1', () => {
    expect(runBkv(dir, ['fleet', 'up']).code).toBe(2);
    expect(runBkv(dir, ['fleet', 'status', 'a', 'extra']).code).toBe(2);
    expect(runBkv(dir, ['fleet', 'status', 'a', '--members', '3']).code).toBe(2);
    expect(runBkv(dir, ['serve', '--fleet', 'a/fleet.json', '--member', '9']).code).toBe(2);
    expect(runBkv(dir, ['serve', '--fleet', 'a/fleet.json', '--member', '0', '--peer-via', '0=127.0.0.1:1']).code).toBe(2);
    expect(runBkv(dir, ['serve', '--fleet', 'a/fleet.json', '--member', '0', '--data', 'x']).code).toBe(2);
    const missing = runBkv(dir, ['fleet', 'status', 'nowhere', '--json']);
    expect(missing.code).toBe(1);
    expect(json(missing.out)).toMatchObject({ ok: false, exitCode: 1, command: 'fleet status', error: { code: 'failure', name: 'FleetConfigError' } });
  });

  it('fleet add, remove, replace: usage errors exit 2; with no member up, exit 1 and nothing written', () => {
    const before = readFileSync(join(dir, 'a', 'fleet.json'), 'utf8');
    for (const args of [
      ['fleet', 'add'],
      ['fleet', 'add', 'a', 'extra'],
      ['fleet', 'add', 'a', '--members', '3'],
      ['fleet', 'add', 'a', '--member', '1'],
      ['fleet', 'add', 'a', '--timeout', '0'],
      ['fleet', 'add', 'a', '--api-port', '70000'],
      ['fleet', 'add', 'a', '--operator-key-file', 'nowhere.key'],
      ['fleet', 'remove', 'a'],
      ['fleet', 'remove', 'a', '--member', '7'],
      ['fleet', 'remove', 'a', '--member', 'x'],
      ['fleet', 'remove', 'a', '--member', '1', '--host', '127.0.0.1'],
      ['fleet', 'replace', 'a'],
      ['fleet', 'replace', 'a', '--member', '3'],
    ]) {
      const r = runBkv(dir, [...args, '--json']);
      expect(r.code, `${args.join(' ')}: ${r.out}`).toBe(2);
      expect(json(r.out)).toMatchObject({ ok: false, exitCode: 2 });
    }
    for (const args of [['fleet', 'add', 'a'], ['fleet', 'remove', 'a', '--member', '1'], ['fleet', 'replace', 'a', '--member', '1']]) {
      const r = runBkv(dir, [...args, '--json', '--timeout', '1']);
      expect(r.code, `${args.join(' ')}: ${r.out}`).toBe(1);
      expect(json(r.out)).toMatchObject({ ok: false, exitCode: 1, command: `fleet ${args[1]}`, error: { message: expect.stringMatching(/does not answer/) } });
    }
    expect(readFileSync(join(dir, 'a', 'fleet.json'), 'utf8')).toBe(before);
    expect(existsSync(join(dir, 'a', 'member-3'))).toBe(false);
  });

  it('fleet up starts every member; fleet status exits 1 with none running and 0 once a majority is normal under one leader; SIGTERM stops them all', async () => {
    const base = await freeBase();
    expect(runBkv(dir, ['fleet', 'init', '--members', '3', '--dir', 'up', '--base-port', String(base)]).code).toBe(0);
    const down = runBkv(dir, ['fleet', 'status', 'up', '--json']);
    expect(down.code).toBe(1);
    expect(json(down.out)).toMatchObject({ ok: false, exitCode: 1, command: 'fleet status', healthy: false, leader: null });
    expect(json(down.out).members.map((m: any) => m.health)).toEqual(['unreachable', 'unreachable', 'unreachable']);

    const up = spawn(process.execPath, [bin, 'fleet', 'up', 'up', '--json'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    up.stdout.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => up.on('exit', (c) => r(c)));
    try {
      const deadline = Date.now() + 60_000;
      let st: { code: number | null; out: string; err: string } | null = null;
      while (Date.now() < deadline) {
        st = await runBkvAsync(dir, ['fleet', 'status', 'up', '--json']);
        if (st.code === 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(st?.code, `${st?.err}\n${err}`).toBe(0);
      const started = json(out);
      expect(started).toMatchObject({ ok: true, command: 'fleet up', status: 'started' });
      expect(started.members.map((m: any) => m.api)).toEqual([0, 1, 2].map((i) => `http://127.0.0.1:${base + 2 * i}`));
      const s = json(st!.out);
      expect(s).toMatchObject({ ok: true, exitCode: 0, command: 'fleet status', healthy: true });
      expect(s.members).toHaveLength(3);
      for (const m of s.members) expect(m).toMatchObject({ reachable: true, status: 'normal', leader: s.leader, epoch: 1, lag: 0, health: 'ok', behind: false });
      for (const m of s.members) expect(typeof m.appliedBatch).toBe('number');
      const human = runBkv(dir, ['fleet', 'status', 'up']);
      expect(human.out).toMatch(/^member\tstatus\tepoch\tview\tleader\tcommit\tlag\tapplied\tcharter\thealth\tapi\n0\tnormal\t1\t/);
      // each member's charter: the founding one, serial 0, members 0, 1, 2
      expect(human.out.split('\n')[1]!.split('\t')[8]).toBe('0:0,1,2');
    } finally {
      up.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(err).toMatch(/stopping every member/);
    for (const pid of json(out).members.map((m: any) => m.pid as number)) expect(() => process.kill(pid, 0)).toThrow();
  }, 120_000);

  it('status rows: a member whose vault is behind its log is not ok, whatever its lag; each row carries the applied batch', () => {
    expect(runBkv(dir, ['fleet', 'init', '--members', '3', '--dir', 'rows']).code).toBe(0);
    const fleet = readFleetConfig(join(dir, 'rows', 'fleet.json'));
    const base = { fleetId: fleet.fleetId, status: 'normal', peers: [], refused: {}, sent: {}, serving: 'vault' as const, epoch: 1, view: 3, commit: 9, leader: { id: 0, api: 'http://127.0.0.1:1' } };
    const answers: (MemberStatusJson | null)[] = [
      { ...base, member: 0, appliedBatch: 5, behind: false },
      { ...base, member: 1, appliedBatch: 2, behind: true },
      null,
    ];
    const { rows, leader, healthy } = summarize(fleet, answers);
    expect({ leader, healthy }).toEqual({ leader: 0, healthy: true });
    expect(rows.map((r) => r.health)).toEqual(['ok', 'behind', 'unreachable']);
    expect(rows.map((r) => [r.appliedBatch, r.behind])).toEqual([[5, false], [2, true], [null, null]]);
    // positive control: the same member not behind, at the leader's commit, is ok
    expect(summarize(fleet, [answers[0]!, { ...base, member: 1, appliedBatch: 5, behind: false }, null]).rows[1]!.health).toBe('ok');
    // the charter at each member's commit point; none from a member that does not answer
    const charter = { serial: 1, members: [0, 1, 2, 3], ids: 4, committed: 1 };
    expect(summarize(fleet, [{ ...answers[0]!, charter }, answers[1]!, null]).rows.map((r) => r.charter)).toEqual([{ serial: 1, members: [0, 1, 2, 3] }, null, null]);
    // a leader that hears no majority (cut off) is not ok, and the fleet is not healthy under it
    const cut = summarize(fleet, [{ ...answers[0]!, cutOff: true }, { ...base, member: 1, appliedBatch: 5, behind: false }, null]);
    expect({ health: cut.rows.map((r) => r.health), healthy: cut.healthy }).toEqual({ health: ['cut-off', 'ok', 'unreachable'], healthy: false });
  });

  it('status over a changed fleet: removed members are not listed and count in no majority', () => {
    const fleet = readFleetConfig(join(dir, 'rows', 'fleet.json'));
    const changed = { ...fleet, members: [{ ...fleet.members[0]!, removed: 2 }, ...fleet.members.slice(1), { ...fleet.members[2]!, id: 3, api: { host: '127.0.0.1', port: 7490 }, peer: { host: '127.0.0.1', port: 7491 }, data: 'member-3', joined: 1 }] };
    const base = { fleetId: fleet.fleetId, status: 'normal', peers: [], refused: {}, sent: {}, serving: 'vault' as const, epoch: 1, view: 3, commit: 9, leader: { id: 1, api: 'http://127.0.0.1:1' } };
    // answers for the members not removed (1, 2, 3), as bkv fleet status asks them
    const two = summarize(changed, [{ ...base, member: 1 }, { ...base, member: 2 }, null]);
    expect(two.rows.map((r) => r.member)).toEqual([1, 2, 3]);
    expect(two.healthy).toBe(true);
    // one of three: no majority of the members kept (member 0, removed, is not one of them)
    expect(summarize(changed, [{ ...base, member: 1 }, null, null]).healthy).toBe(false);
  });
});
