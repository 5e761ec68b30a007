/**
 * The member's device in its folder (hsm/fleet/device.ts): the key ceremony over the members'
 * folders ends with every member holding the same secret (equal checks, working message keys),
 * without a host ever handling it; it refuses a wrong operator secret, another member's grant, an
 * altered grant and an identity file whose fingerprint is not its key; a founder that crashed after
 * keeping its secret seals the missing grants again from it; the device boots from its folder and
 * keeps its state across a restart; client intents are read strictly; a charter change is
 * approved only with the operator secret whose hash the device provisioned.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ceremonyStep, FILES, FleetDevice, FleetDeviceError, IntentError, parseIntent, type DeviceOutput } from '../../hsm/fleet/device.ts';
import { FleetCode, FleetFault } from '../../enclave/fleet/faults.ts';
import { decodeSecrets } from '../../enclave/fleet/durable.ts';
import { newIdentity } from '../../enclave/fleet/ceremony.ts';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

const OPERATOR = new Uint8Array(32).fill(9);
const FLEET_ID = new Uint8Array(16).fill(4);

function folders(n = 3): string[] {
  const root = mkdtempSync(join(tmpdir(), 'bkv-fleet-dev-'));
  roots.push(root);
  return Array.from({ length: n }, (_, i) => {
    const d = join(root, `member-${i}`);
    mkdirSync(d);
    return d;
  });
}

const step = (dirs: string[], member: number, operatorSecret = OPERATOR) => ceremonyStep({ dirs, member, fleetId: FLEET_ID, operatorSecret });

/** Every member's steps until each is done (as the processes do, in turn). */
async function ceremony(dirs: string[]): Promise<string[]> {
  const checks: (string | null)[] = dirs.map(() => null);
  for (let round = 0; round < 4 && checks.includes(null); round++) {
    for (let i = 0; i < dirs.length; i++) {
      const s = await step(dirs, i);
      if (s.done) checks[i] = s.check;
    }
  }
  return checks as string[];
}

async function refusedWith(p: Promise<unknown>, code: number): Promise<void> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(FleetFault);
  expect((e as FleetFault).code).toBe(code);
}

const TIMING = { viewChangeTicks: 10, reformTicks: 60, resendTicks: 2 };

/** Delivers every message between the devices, ticking, until `until` holds (or gives up). */
const clock = { now: 0 };
function run(devs: FleetDevice[], until: () => boolean, onAnswer: (o: DeviceOutput) => void = () => undefined): number {
  const end = clock.now + 400;
  const queue: { to: number; msg: Uint8Array }[] = [];
  const take = (o: DeviceOutput) => {
    queue.push(...o.send);
    onAnswer(o);
  };
  while (!until() && clock.now < end) {
    const now = ++clock.now;
    for (const d of devs) take(d.tick(now));
    while (queue.length) {
      const { to, msg } = queue.shift()!;
      const d = devs[to];
      if (d) take(d.receive(msg, now)); // a member id with no device here (one a charter change added): dropped
    }
  }
  return clock.now;
}

describe('the key ceremony over the members\' folders', () => {
  it('ends with one secret in every member (equal checks), written only in the devices\' files', async () => {
    const dirs = folders();
    expect(await step(dirs, 1)).toMatchObject({ done: false, waiting: expect.stringMatching(/identity of member 0/) });
    const checks = await ceremony(dirs);
    expect(new Set(checks).size).toBe(1);
    expect(checks[0]).toMatch(/^[0-9a-f]{32}$/);
    const secrets = dirs.map((d, i) => decodeSecrets(new Uint8Array(readFileSync(join(d, FILES.secrets))), i));
    for (const s of secrets) expect(s.fleetSecret).toEqual(secrets[0]!.fleetSecret);
    const pub = JSON.parse(readFileSync(join(dirs[1]!, FILES.pub), 'utf8'));
    expect(pub).toMatchObject({ member: 1, publicKey: expect.stringMatching(/^[0-9a-f]{64}$/), fingerprint: expect.stringMatching(/^([0-9a-f]{4}-){7}[0-9a-f]{4}$/) });
    // a restart needs no other member's file
    rmSync(join(dirs[1]!, FILES.grant));
    expect(await step(dirs, 1)).toEqual({ done: true, check: checks[0] });
  });

  it('refuses a wrong operator secret, another member\'s grant, an altered grant, an identity file that lies', async () => {
    const dirs = folders();
    for (let i = 0; i < 3; i++) await step(dirs, i);
    await step(dirs, 0); // the founder writes the grants
    // member 1 provisioned OPERATOR at its first start: another secret is refused
    await refusedWith(step(dirs, 1, new Uint8Array(32).fill(1)), FleetCode.WrongOperatorSecret);
    const g1 = readFileSync(join(dirs[1]!, FILES.grant));
    const g2 = readFileSync(join(dirs[2]!, FILES.grant));
    writeFileSync(join(dirs[1]!, FILES.grant), g2);
    await refusedWith(step(dirs, 1), FleetCode.GrantWrongMember);
    const bad = Buffer.from(g1);
    bad[40]! ^= 1;
    writeFileSync(join(dirs[1]!, FILES.grant), bad);
    await refusedWith(step(dirs, 1), FleetCode.BadGrant);
    expect(existsSync(join(dirs[1]!, FILES.secrets))).toBe(false);
    writeFileSync(join(dirs[1]!, FILES.grant), g1);
    expect((await step(dirs, 1)).done).toBe(true);
    // an identity file whose fingerprint is not its key's: a member still in its ceremony refuses it
    const pub = JSON.parse(readFileSync(join(dirs[2]!, FILES.pub), 'utf8'));
    writeFileSync(join(dirs[2]!, FILES.pub), JSON.stringify({ ...pub, fingerprint: '0000-0000-0000-0000-0000-0000-0000-0000' }));
    const fresh = folders();
    await expect(step([dirs[0]!, fresh[1]!, dirs[2]!], 1)).rejects.toThrow(FleetDeviceError);
  });

  it('a founder that crashed after keeping its secret seals the missing grants again from it', async () => {
    const dirs = folders();
    for (let i = 0; i < 3; i++) await step(dirs, i);
    await step(dirs, 0);
    unlinkSync(join(dirs[2]!, FILES.grant));
    expect(await step(dirs, 2)).toMatchObject({ done: false });
    await step(dirs, 0);
    const checks = await ceremony(dirs);
    expect(new Set(checks).size).toBe(1);
  });
});

/** Three members' folders through the ceremony, their devices booted and run until one leads. */
async function formedDevices(): Promise<{ dirs: string[]; devs: FleetDevice[]; lead: number }> {
  const dirs = folders();
  await ceremony(dirs);
  const devs = dirs.map((dir, member) => new FleetDevice({ dir, member, n: 3, ...TIMING }, clock.now));
  const leaderOf = () => devs.map((d) => d.status()).find((s) => s.status === 'normal' && s.leader === s.member)?.member;
  run(devs, () => leaderOf() !== undefined);
  return { dirs, devs, lead: leaderOf()! };
}

describe('the device', () => {
  it('forms a fleet over its messages, commits, and keeps its state across a restart', async () => {
    const formed = await formedDevices();
    const { dirs, lead } = formed;
    let devs = formed.devs;
    const answers: DeviceOutput['answers'] = [];
    const { ticket, out } = devs[lead]!.submit(parseIntent({ kind: 'register', id: 'r', limit: 3 }), clock.now);
    answers.push(...out.answers);
    run(devs, () => answers.length > 0, (o) => answers.push(...o.answers));
    expect(answers).toEqual([expect.objectContaining({ ticket, ok: true, op: { kind: 'register', id: 'r', base: 0, limit: 3 } })]);
    const refused = devs[(lead + 1) % 3]!.submit(parseIntent({ kind: 'charge', id: 'r', session: 1 }), clock.now);
    expect(refused.out.answers).toEqual([{ ticket: refused.ticket, ok: false, code: FleetCode.NotLeader, name: 'Fleet.NotLeader' }]);
    const before = devs.map((d) => d.status().tip);
    // every device boots again from its folder: same log, a new incarnation
    devs = dirs.map((dir, member) => new FleetDevice({ dir, member, n: 3, ...TIMING }, clock.now));
    expect(devs.map((d) => d.status().tip)).toEqual(before);
    expect(devs.every((d) => d.status().status === 'recovering')).toBe(true);
    expect(readFileSync(join(dirs[lead]!, FILES.history), 'utf8')).toMatch(/"kind":"register","id":"r"/);
  });

  it('refuses to boot without its secrets, or from a state file of another member', async () => {
    const dirs = folders();
    expect(() => new FleetDevice({ dir: dirs[0]!, member: 0, n: 3, ...TIMING }, 0)).toThrow(FleetDeviceError);
    await ceremony(dirs);
    const d = new FleetDevice({ dir: dirs[0]!, member: 0, n: 3, ...TIMING }, clock.now);
    run([d, new FleetDevice({ dir: dirs[1]!, member: 1, n: 3, ...TIMING }, clock.now), new FleetDevice({ dir: dirs[2]!, member: 2, n: 3, ...TIMING }, clock.now)], () => d.status().status === 'normal');
    writeFileSync(join(dirs[1]!, FILES.state), readFileSync(join(dirs[0]!, FILES.state)));
    expect(() => new FleetDevice({ dir: dirs[1]!, member: 1, n: 3, ...TIMING }, 0)).toThrow(FleetFault);
  });

  it('reads intents strictly', () => {
    expect(parseIntent({ kind: 'charge', id: 'r', session: 3 })).toEqual({ kind: 'charge', id: 'r', session: 3 });
    expect(parseIntent({ kind: 'replace', id: 'r', limit: 3 })).toEqual({ kind: 'replace', id: 'r', limit: 3 });
    expect(parseIntent({ kind: 'touch', id: 'r' })).toEqual({ kind: 'touch', id: 'r' });
    for (const bad of [null, [], 'x', { kind: 'steal', id: 'r' }, { kind: 'lock' }, { kind: 'lock', id: '' }, { kind: 'lock', id: 'x'.repeat(65) }, { kind: 'lock', id: 'r', extra: 1 }, { kind: 'register', id: 'r', limit: 0 }, { kind: 'register', id: 'r', limit: 256 }, { kind: 'charge', id: 'r', session: -1 }, { kind: 'charge', id: 'r', session: 2 ** 53 }, { kind: 'reset', id: 'r' }, { kind: 'replace', id: 'r' }, { kind: 'touch', id: 'r', limit: 1 }, { kind: 'toString', id: 'r' }]) {
      expect(() => parseIntent(bad), JSON.stringify(bad)).toThrow(IntentError);
    }
  });

  it('a charter change: approved only with the operator secret the device provisioned, proposed by the leader, committed and journaled', async () => {
    const { dirs, devs, lead: l } = await formedDevices();
    const lead = devs[l]!;
    const keys = [0, 1, 2].map((m) => Uint8Array.from(Buffer.from(JSON.parse(readFileSync(join(dirs[m]!, FILES.pub), 'utf8')).publicKey, 'hex')));
    const joiner = await newIdentity((n) => new Uint8Array(n).fill(0x33));
    const change = { serial: 1, identities: [...keys, joiner.publicKey] };
    const code = (r: { index: number | FleetFault }) => (typeof r.index === 'number' ? null : r.index.code);
    // no approval yet, then the wrong operator secret: refused, nothing approved
    expect(code(lead.proposeCharter(change, clock.now))).toBe(FleetCode.CharterNotApproved);
    expect(() => lead.approveCharter(change, new Uint8Array(32).fill(8))).toThrow(expect.objectContaining({ code: FleetCode.WrongOperatorSecret }));
    expect(code(lead.proposeCharter(change, clock.now))).toBe(FleetCode.CharterNotApproved);
    // the right one: proposed (after an entry of the leader's view, if needed) and committed by the three founding members
    lead.approveCharter(change, OPERATOR);
    let r = lead.proposeCharter(change, clock.now);
    if (code(r) === FleetCode.Busy) {
      run(devs, () => lead.status().commit === lead.status().tip);
      r = lead.proposeCharter(change, clock.now);
    }
    expect(typeof r.index).toBe('number');
    run(devs, () => devs.every((d) => d.status().commit >= (r.index as number)));
    expect(devs.every((d) => d.status().commit >= (r.index as number))).toBe(true);
    expect(readFileSync(join(dirs[lead.status().member]!, FILES.history), 'utf8')).toMatch(/"kind":"charter","serial":1/);
  });
});
