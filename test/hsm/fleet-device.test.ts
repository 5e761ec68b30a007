/**
 * The member's device in its folder (hsm/fleet/device.ts): the key ceremony over the members'
 * folders ends with every member holding the same secret (equal checks, working message keys),
 * without a host ever handling it; it refuses a wrong operator secret, another member's grant, an
 * altered grant and an identity file whose fingerprint is not its key; a founder that crashed after
 * keeping its secret seals the missing grants again from it; the device boots from its folder and
 * keeps its state across a restart; client intents are read strictly; a charter change is
 * approved only with the operator secret whose hash the device provisioned, and so is a re-form
 * without a member gone for good.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ceremonyStep, ensureIdentity, FILES, FleetDevice, FleetDeviceError, IntentError, parseIntent, provisionedHash, type DeviceOutput } from '../../hsm/fleet/device.ts';
import { ChangeFormatError, charterApproval, JOIN_FILE, joinStep, reformApproval, reformApprovalMessage } from '../../hsm/fleet/charters.ts';
import { FleetCode, FleetFault } from '../../enclave/fleet/faults.ts';
import { EnclaveFault } from '../../enclave/api/codes.ts';
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
async function formedDevices(operatorSecret?: Uint8Array): Promise<{ dirs: string[]; devs: FleetDevice[]; lead: number }> {
  const dirs = folders();
  await ceremony(dirs);
  const devs = dirs.map((dir, member) => new FleetDevice({ dir, member, n: 3, ...TIMING, ...(operatorSecret && { operatorSecret }) }, clock.now));
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

  it('a charter change: the operator\'s approval checked, proposed by the leader on its own, committed, journaled; the added member granted, joined and admitted', async () => {
    const { dirs, devs, lead: l } = await formedDevices(OPERATOR);
    const lead = devs[l]!;
    const keys = [0, 1, 2].map((m) => Uint8Array.from(Buffer.from(JSON.parse(readFileSync(join(dirs[m]!, FILES.pub), 'utf8')).publicKey, 'hex')));
    const dir3 = join(dirname(dirs[0]!), 'member-3');
    mkdirSync(dir3);
    const id3 = await ensureIdentity(dir3, 3, OPERATOR);
    const change = { serial: 1, identities: [...keys, Uint8Array.from(Buffer.from(id3.publicKey, 'hex'))] };
    const founding = { fleetId: FLEET_ID, founder: 0, identities: keys };
    const approval = charterApproval(OPERATOR, founding, change);
    // forged approvals (another operator secret's, another change's, cut short, empty): refused, nothing approved, nothing proposed
    for (const bad of [charterApproval(new Uint8Array(32).fill(8), founding, change), charterApproval(OPERATOR, founding, { ...change, serial: 2 }), approval.subarray(0, 31), new Uint8Array(0)]) {
      expect(() => lead.approveCharter(change, bad)).toThrow(expect.objectContaining({ code: FleetCode.CharterNotApproved }));
    }
    run(devs, () => false);
    expect(devs.map((d) => d.status().charter)).toEqual(devs.map(() => ({ serial: 0, members: [0, 1, 2], ids: 3, committed: 0 })));
    // a device started without the operator secret approves nothing; one given another secret does not start
    expect(() => new FleetDevice({ dir: dirs[l]!, member: l, n: 3, ...TIMING }, clock.now).approveCharter(change, approval)).toThrow(expect.objectContaining({ code: FleetCode.NoOperatorSecret }));
    expect(() => new FleetDevice({ dir: dirs[l]!, member: l, n: 3, ...TIMING, operatorSecret: new Uint8Array(32).fill(8) }, clock.now)).toThrow(expect.objectContaining({ code: FleetCode.WrongOperatorSecret }));
    // no grant before the change commits
    expect(await lead.grantJoiner(3)).toBeNull();
    // approved in every device: whichever leads proposes it on its own, and the three founding members commit it
    for (const d of devs) d.approveCharter(change, approval);
    expect(lead.status().charter.approved).toBe(1);
    run(devs, () => devs.every((d) => d.status().charter.committed === 1));
    expect(devs.map((d) => d.status().charter)).toEqual(devs.map(() => ({ serial: 1, members: [0, 1, 2, 3], ids: 4, committed: 1 })));
    expect(readFileSync(join(dirs[l]!, FILES.history), 'utf8')).toMatch(/"kind":"charter","serial":1/);
    // the grant: none for a founding id; the added member's opens only in its device, untampered
    expect(await lead.grantJoiner(1)).toBeNull();
    const grant = (await lead.grantJoiner(3))!;
    const join3 = (g: object) => {
      writeFileSync(join(dir3, JOIN_FILE), JSON.stringify(g));
      return joinStep({ dir: dir3, seedFile: join(dir3, FILES.seed), member: 3, founding, founderCheck: readFileSync(join(dirs[0]!, FILES.check), 'utf8').trim(), operatorSecret: OPERATOR, provisioned: provisionedHash(dir3) });
    };
    expect(await joinStep({ dir: dir3, seedFile: join(dir3, FILES.seed), member: 3, founding, founderCheck: null, operatorSecret: OPERATOR, provisioned: provisionedHash(dir3) })).toEqual({ done: false, waiting: expect.stringContaining('join.json') });
    const flipped = grant.grant.slice(0, 40) + (grant.grant[40] === '0' ? '1' : '0') + grant.grant.slice(41);
    await refusedWith(join3({ ...grant, grant: flipped }), FleetCode.BadGrant);
    await refusedWith(join3({ ...grant, granter: (l + 1) % 3 }), FleetCode.BadGrant);
    await expect(join3({ ...grant, serial: 'x' })).rejects.toThrow(ChangeFormatError);
    // cut short, grown (the grant decoder's typed fault), not hex, too many ids, not JSON: refused before any decryption
    await expect(join3({ ...grant, grant: grant.grant.slice(0, -2) })).rejects.toThrow(EnclaveFault);
    await expect(join3({ ...grant, grant: grant.grant + '00' })).rejects.toThrow(EnclaveFault);
    await expect(join3({ ...grant, grant: 'zz' })).rejects.toThrow(ChangeFormatError);
    await expect(join3({ ...grant, identities: Array.from({ length: 8 }, () => null) })).rejects.toThrow(ChangeFormatError);
    writeFileSync(join(dir3, JOIN_FILE), '{"granter":');
    await expect(joinStep({ dir: dir3, seedFile: join(dir3, FILES.seed), member: 3, founding, founderCheck: null, operatorSecret: OPERATOR, provisioned: provisionedHash(dir3) })).rejects.toThrow(ChangeFormatError);
    // the joiner's device given another operator secret than the one it provisioned opens nothing
    writeFileSync(join(dir3, JOIN_FILE), JSON.stringify(grant));
    await refusedWith(joinStep({ dir: dir3, seedFile: join(dir3, FILES.seed), member: 3, founding, founderCheck: null, operatorSecret: new Uint8Array(32).fill(8), provisioned: provisionedHash(dir3) }), FleetCode.WrongOperatorSecret);
    // a grant for another id (the joiner named 4 in a changed charter it is not in) opens nothing
    await refusedWith(joinStep({ dir: dir3, seedFile: join(dir3, FILES.seed), member: 4, founding, founderCheck: null, operatorSecret: OPERATOR, provisioned: provisionedHash(dir3) }), FleetCode.NotInCharter);
    expect(existsSync(join(dir3, FILES.secrets))).toBe(false);
    expect(await join3(grant)).toEqual({ done: true, check: readFileSync(join(dirs[0]!, FILES.check), 'utf8').trim() });
    // the added member boots empty, rejoins, installs the leader's snapshot and is admitted
    const d3 = new FleetDevice({ dir: dir3, member: 3, n: 3, ...TIMING, operatorSecret: OPERATOR }, clock.now);
    const all = [...devs, d3];
    run(all, () => d3.status().status === 'normal' && d3.status().commit === lead.status().commit);
    expect(d3.status()).toEqual(expect.objectContaining({ status: 'normal', charter: { serial: 1, members: [0, 1, 2, 3], ids: 4, committed: 1 } }));
  });

  it('a re-form without a member gone for good: the operator\'s approval checked (its MAC over the epoch, the ids and the kept boots), then the two members left re-form', async () => {
    const { dirs } = await formedDevices(OPERATOR);
    const keys = [0, 1, 2].map((m) => Uint8Array.from(Buffer.from(JSON.parse(readFileSync(join(dirs[m]!, FILES.pub), 'utf8')).publicKey, 'hex')));
    const founding = { fleetId: FLEET_ID, founder: 0, identities: keys };
    // a whole-fleet restart; member 2 does not come back
    const devs = [0, 1].map((member) => new FleetDevice({ dir: dirs[member]!, member, n: 3, ...TIMING, operatorSecret: OPERATOR }, clock.now));
    run(devs, () => false);
    expect(devs.map((d) => [d.status().status, d.status().epoch])).toEqual([['reform', 1], ['reform', 1]]);
    const boots = new Map(devs.map((d) => [d.status().member, Uint8Array.from(Buffer.from(d.status().incarnation, 'hex'))] as const));
    const approval = reformApproval(OPERATOR, founding, 1, [2], boots);
    // the ids and boots are sets: their order does not change the MAC; a charter approval's message is never a re-form's
    expect(reformApproval(OPERATOR, founding, 1, [2, 3], new Map([...boots].reverse()))).toEqual(reformApproval(OPERATOR, founding, 1, [3, 2], boots));
    expect(reformApprovalMessage(founding, 1, [2], boots).length).not.toBe(32);
    const otherBoot = new Map(boots).set(1, new Uint8Array(16).fill(1));
    // forged approvals (another operator secret's, other ids', another epoch's, another boot's, a charter approval, cut short, empty): refused, nothing held
    for (const bad of [reformApproval(new Uint8Array(32).fill(8), founding, 1, [2], boots), reformApproval(OPERATOR, founding, 1, [1], boots), reformApproval(OPERATOR, founding, 2, [2], boots), reformApproval(OPERATOR, founding, 1, [2], otherBoot), charterApproval(OPERATOR, founding, { serial: 1, identities: keys }), approval.subarray(0, 31), new Uint8Array(0)]) {
      expect(() => devs[0]!.approveReform(1, [2], boots, bad, clock.now)).toThrow(expect.objectContaining({ code: FleetCode.CharterNotApproved }));
    }
    expect(devs[0]!.status().reformApproval).toBeUndefined();
    const bare = new FleetDevice({ dir: dirs[1]!, member: 1, n: 3, ...TIMING }, clock.now);
    expect(() => bare.approveReform(1, [2], boots, approval, clock.now)).toThrow(expect.objectContaining({ code: FleetCode.NoOperatorSecret }));
    run(devs, () => false);
    expect(devs.map((d) => d.status().status), 'still waiting for member 2').toEqual(['reform', 'reform']);
    const sent: DeviceOutput[] = devs.map((d) => d.approveReform(1, [2], boots, approval, clock.now));
    expect(sent.some((o) => o.send.length > 0), 'the approval moves the re-form at once').toBe(true);
    expect(devs.map((d) => d.status().reformApproval)).toEqual(devs.map(() => ({ fromEpoch: 1, without: [2], kept: [0, 1], applies: true })));
    run(devs, () => devs.every((d) => d.status().status === 'normal'));
    expect(devs.map((d) => d.status().status)).toEqual(['normal', 'normal']);
    expect(devs[0]!.status().epoch).toBeGreaterThan(1);
    expect(devs.map((d) => d.status().reformApproval?.applies), 'an approval of epoch 1 applies to nothing now').toEqual([false, false]);
  });
});
