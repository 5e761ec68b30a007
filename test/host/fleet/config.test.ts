/**
 * A fleet's configuration (host/fleet/config.ts) and `bkv fleet init`: what init writes reads
 * back; every malformed field of a fleet.json is refused with a FleetConfigError that names it;
 * init never overwrites a fleet, writes nothing when an issuer file is bad, and can be run again
 * after an interruption; the CLI keeps the contract (exit codes, --json).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_FLEET_ISSUER, FLEET_FILE, FleetConfigError, checkFleetConfig, fleetJson, foundingMembers, initFleet, memberDir, parseEndpoint, readFleetConfig } from '../../../host/fleet/config.ts';
import { generateIssuer, mintToken, readIssuerPrivate } from '../../../host/auth/issuer.ts';
import { runBkv } from '../../helpers/cli.ts';
import { thrownBy } from '../../helpers/errors.ts';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'bkv-fleet-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A valid fleet.json object for three members. */
const member = (i: number): Record<string, any> => ({ id: i, api: `127.0.0.1:${7400 + 2 * i}`, peer: `127.0.0.1:${7401 + 2 * i}`, data: `member-${i}` });

function valid(): Record<string, any> {
  return {
    format: 'bkv-fleet/1',
    fleetId: '00112233445566778899aabbccddeeff',
    members: [0, 1, 2].map(member),
    auth: { issuers: ['auth/issuer.pub'] },
  };
}

describe('fleet init', () => {
  it('writes members, addresses, data folders and a development issuer that read back', async () => {
    const dir = join(tmp(), 'fleet');
    const r = await initFleet({ dir, members: 5, basePort: 9000 });
    const f = readFleetConfig(join(dir, FLEET_FILE));
    expect(f.fleetId).toMatch(/^[0-9a-f]{32}$/);
    expect(f.fleetId).toBe(r.fleet.fleetId);
    expect(f.members.map((m) => [m.api.port, m.peer.port])).toEqual([
      [9000, 9001],
      [9002, 9003],
      [9004, 9005],
      [9006, 9007],
      [9008, 9009],
    ]);
    for (const m of f.members) {
      expect(m.api.host).toBe('127.0.0.1');
      expect(memberDir(f, m.id)).toBe(join(dir, `member-${m.id}`));
      expect(statSync(memberDir(f, m.id)).mode & 0o777).toBe(0o700);
    }
    expect(() => memberDir(f, 5)).toThrow(FleetConfigError);
    // The development issuer signs tokens (for bkv auth token).
    expect(r.devIssuerKey).toBe(join(dir, 'auth', 'issuer.key'));
    const issuer = readIssuerPrivate(r.devIssuerKey!);
    expect(issuer.name).toBe(DEV_FLEET_ISSUER);
    expect((await mintToken(issuer, { subject: 'alice' })).split('.')).toHaveLength(3);
    expect(statSync(r.devIssuerKey!).mode & 0o777).toBe(0o600);
    // Two fleets get different ids.
    const other = await initFleet({ dir: join(tmp(), 'other'), members: 3 });
    expect(other.fleet.fleetId).not.toBe(f.fleetId);
  });

  it('never overwrites a fleet.json', async () => {
    const dir = tmp();
    await initFleet({ dir, members: 3 });
    const before = readFileSync(join(dir, FLEET_FILE));
    await expect(initFleet({ dir, members: 5 })).rejects.toThrow(/exists; not overwriting/);
    expect(readFileSync(join(dir, FLEET_FILE)).equals(before)).toBe(true);
  });

  it('run again after an interruption (no fleet.json yet): the development issuer found is kept', async () => {
    const dir = tmp();
    const first = await initFleet({ dir, members: 3 });
    const kid = readIssuerPrivate(first.devIssuerKey!).kid;
    unlinkSync(join(dir, FLEET_FILE));
    const again = await initFleet({ dir, members: 3 });
    expect(readIssuerPrivate(again.devIssuerKey!).kid).toBe(kid);
    expect(readFleetConfig(join(dir, FLEET_FILE)).members).toHaveLength(3);
  });

  it('with issuers given: no development issuer; a bad issuer file writes nothing', async () => {
    const keys = tmp();
    await generateIssuer(keys, 'accounts.example');
    const dir = join(tmp(), 'f');
    const r = await initFleet({ dir, members: 3, authIssuers: [join(keys, 'issuer.pub')] });
    expect(r.devIssuerKey).toBeUndefined();
    expect(existsSync(join(dir, 'auth', 'issuer.key'))).toBe(false);
    expect(existsSync(join(dir, 'auth', 'issuer.pub'))).toBe(false);
    // the members' key ceremony still needs an operator secret: a development one, unless given
    expect(r.devOperatorSecret).toBe(join(dir, 'auth', 'operator.secret'));
    const withKey = join(tmp(), 'h');
    expect((await initFleet({ dir: withKey, members: 3, authIssuers: [join(keys, 'issuer.pub')], operatorKeyFile: join(keys, 'op.key') })).devOperatorSecret).toBeUndefined();
    // no development secret: only the fleet's peer secret, which every fleet has
    expect(readdirSync(join(withKey, 'auth'))).toEqual(['peer.secret']);
    expect(statSync(join(withKey, 'auth', 'peer.secret')).mode & 0o777).toBe(0o600);
    expect(readFleetConfig(join(dir, FLEET_FILE)).auth.issuers).toEqual([join(keys, 'issuer.pub')]);

    writeFileSync(join(keys, 'bad.pub'), '{"kty":"RSA"}');
    const dir2 = join(tmp(), 'g');
    await expect(initFleet({ dir: dir2, members: 3, authIssuers: [join(keys, 'bad.pub')] })).rejects.toThrow(/not an Ed25519 JWK/);
    expect(existsSync(dir2)).toBe(false);
  });

  it('refuses member counts other than 3, 5, 7, bad hosts and ports past 65535', async () => {
    for (const n of [0, 1, 2, 4, 6, 8, 9]) await expect(initFleet({ dir: tmp(), members: n })).rejects.toThrow(/--members must be 3, 5 or 7/);
    await expect(initFleet({ dir: tmp(), members: 3, host: 'bad host' })).rejects.toThrow(/--host/);
    await expect(initFleet({ dir: tmp(), members: 7, basePort: 65530 })).rejects.toThrow(/--base-port/);
    await expect(initFleet({ dir: tmp(), members: 3, basePort: 0 })).rejects.toThrow(/--base-port/);
  });
});

describe('fleet.json is read strictly', () => {
  it('members added and removed by charter changes round-trip; the founding ones are those without "joined"', () => {
    const v = valid();
    v.members.push({ ...member(3), joined: 1 }, { ...member(4), joined: 3 });
    v.members[0].removed = 2;
    const c = checkFleetConfig(v);
    expect(c.members.map((m) => [m.joined, m.removed])).toEqual([[undefined, 2], [undefined, undefined], [undefined, undefined], [1, undefined], [3, undefined]]);
    expect(foundingMembers(c).map((m) => m.id)).toEqual([0, 1, 2]);
    expect(JSON.parse(fleetJson(c))).toEqual(v);
  });

  it('a valid file round-trips through its JSON form, IPv6 endpoints in brackets', () => {
    const v = valid();
    v.members[2].api = '[::1]:7404';
    const c = checkFleetConfig(v);
    expect(c.members[2]!.api).toEqual({ host: '::1', port: 7404 });
    expect(JSON.parse(fleetJson(c))).toEqual(v);
  });

  const cases: [string, (v: Record<string, any>) => void, RegExp][] = [
    ['an unknown top-level key', (v) => (v.extra = 1), /unknown key "extra"/],
    ['another format', (v) => (v.format = 'bkv-fleet/2'), /"format"/],
    ['a short fleet id', (v) => (v.fleetId = 'abcd'), /"fleetId"/],
    ['an upper-case fleet id', (v) => (v.fleetId = v.fleetId.toUpperCase()), /"fleetId"/],
    ['one member', (v) => v.members.splice(1), /"members" must list 3, 5 or 7/],
    ['four members', (v) => v.members.push({ ...v.members[0], id: 3 }), /"members" must list 3, 5 or 7/],
    ['members not an array', (v) => (v.members = {}), /"members"/],
    ['ids out of order', (v) => ([v.members[0].id, v.members[1].id] = [1, 0]), /members\[0\]: "id" must be 0/],
    ['a string id', (v) => (v.members[1].id = '1'), /members\[1\]: "id" must be 1/],
    ['an unknown member key', (v) => (v.members[1].secret = 'x'), /members\[1\]: unknown key "secret"/],
    ['a member that is not an object', (v) => (v.members[1] = 'member-1'), /members\[1\]: expected an object/],
    ['an endpoint used twice', (v) => (v.members[2].peer = v.members[0].api), /endpoint 127\.0\.0\.1:7400 is used twice/],
    ['port 0', (v) => (v.members[0].api = '127.0.0.1:0'), /members\[0\]\.api/],
    ['port 65536', (v) => (v.members[0].api = '127.0.0.1:65536'), /members\[0\]\.api/],
    ['no port', (v) => (v.members[0].peer = '127.0.0.1'), /members\[0\]\.peer/],
    ['a number for an endpoint', (v) => (v.members[0].peer = 7401), /members\[0\]\.peer: expected "host:port"/],
    ['an IPv4 address in brackets', (v) => (v.members[0].api = '[127.0.0.1]:7400'), /only an IPv6 address goes in brackets/],
    ['a host with a space', (v) => (v.members[1].api = 'a b:7402'), /members\[1\]\.api/],
    ['a host label over 63 characters', (v) => (v.members[1].api = `${'a'.repeat(64)}.example:7402`), /not an IP address or a host name/],
    ['a data folder outside the fleet folder', (v) => (v.members[1].data = '../elsewhere'), /members\[1\]\.data: .*relative path inside/],
    ['an absolute data folder', (v) => (v.members[1].data = '/var/lib/x'), /members\[1\]\.data/],
    ['an empty data folder', (v) => (v.members[1].data = ''), /members\[1\]\.data/],
    ['a shared data folder', (v) => (v.members[2].data = './member-0'), /"\.\/member-0" is another member's/],
    ['no issuers', (v) => (v.auth.issuers = []), /"auth\.issuers"/],
    ['17 issuers', (v) => (v.auth.issuers = Array.from({ length: 17 }, (_, i) => `i${i}.pub`)), /"auth\.issuers" must list 1\.\.16/],
    ['an issuer that is not a string', (v) => (v.auth.issuers = [7]), /"auth\.issuers"/],
    ['an unknown auth key', (v) => (v.auth.audience = 'x'), /auth: unknown key "audience"/],
    ['auth missing', (v) => delete v.auth, /auth: expected an object/],
    // members added and removed by charter changes (docs/fleet.md "Membership changes in the processes")
    ['an added member among the founding ones', (v) => (v.members[1].joined = 1), /the 2 founding members come first|must list 3, 5 or 7 founding/],
    ['an added member without "joined"', (v) => v.members.push(member(3)), /"members" must list 3, 5 or 7 founding members/],
    ['an added member\'s serial 0', (v) => v.members.push({ ...member(3), joined: 0 }), /members\[3\]: "joined" and "removed" must be charter serials/],
    ['a serial that is not an integer', (v) => v.members.push({ ...member(3), joined: 1.5 }), /members\[3\]: "joined" and "removed" must be charter serials/],
    ['added members out of change order', (v) => v.members.push({ ...member(3), joined: 2 }, { ...member(4), joined: 2 }), /members\[4\]: "joined" must follow the member before it's/],
    ['a removal before the addition', (v) => v.members.push({ ...member(3), joined: 2, removed: 2 }), /members\[3\]: "removed" must follow "joined"/],
    ['one member left', (v) => ((v.members[0].removed = 1), (v.members[1].removed = 2)), /1 members not removed: a fleet has 2 to 7/],
    ['an eighth member id', (v) => v.members.push(...[3, 4, 5, 6, 7].map((i) => ({ ...member(i), joined: i - 2 }))), /"members" must list at most 7 members/],
  ];
  for (const [what, change, message] of cases) {
    it(`refuses ${what}`, () => {
      const v = valid();
      expect(() => checkFleetConfig(v)).not.toThrow();
      change(v);
      const err = thrownBy(() => checkFleetConfig(v));
      expect(err).toBeInstanceOf(FleetConfigError);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('refuses a missing file, a file that is not JSON, and an issuer key that is not there', async () => {
    const dir = tmp();
    expect(() => readFleetConfig(join(dir, FLEET_FILE))).toThrow(/ENOENT/);
    writeFileSync(join(dir, FLEET_FILE), '{"format":');
    expect(() => readFleetConfig(join(dir, FLEET_FILE))).toThrow(/not JSON/);
    writeFileSync(join(dir, FLEET_FILE), JSON.stringify(valid()));
    expect(() => readFleetConfig(join(dir, FLEET_FILE))).toThrow(/issuer key .*issuer\.pub: ENOENT/);
    await generateIssuer(join(dir, 'auth'), 'x');
    expect(readFleetConfig(join(dir, FLEET_FILE)).members).toHaveLength(3);
  });

  it('parseEndpoint: host:port and [v6]:port only', () => {
    expect(parseEndpoint('vault-1.example:443', 'e')).toEqual({ host: 'vault-1.example', port: 443 });
    expect(parseEndpoint('[fe80::1]:7400', 'e')).toEqual({ host: 'fe80::1', port: 7400 });
    for (const bad of ['::1:7400', 'host:', ':7400', 'host:123456', 'host:7400:1', '[::1]7400']) expect(() => parseEndpoint(bad, 'e'), bad).toThrow(FleetConfigError);
  });
});

describe('bkv fleet init', () => {
  it('writes the folder and reports it (--json); exit 1 on an existing fleet, exit 2 on bad usage', () => {
    const cwd = tmp();
    const ok = runBkv(cwd, ['fleet', 'init', '--members', '3', '--dir', 'f', '--base-port', '7600', '--json']);
    expect(ok.code, ok.err).toBe(0);
    const j = JSON.parse(ok.out.trim());
    expect(j).toMatchObject({ ok: true, exitCode: 0, command: 'fleet init', file: join(cwd, 'f', FLEET_FILE), devIssuerKey: join(cwd, 'f', 'auth', 'issuer.key') });
    expect(j.members).toEqual([0, 1, 2].map((i) => ({ id: i, api: `127.0.0.1:${7600 + 2 * i}`, peer: `127.0.0.1:${7601 + 2 * i}`, data: join(cwd, 'f', `member-${i}`) })));
    expect(readFleetConfig(join(cwd, 'f', FLEET_FILE)).fleetId).toBe(j.fleetId);
    // The development issuer works with bkv auth token.
    const tok = runBkv(cwd, ['auth', 'token', '--issuer-key', 'f/auth/issuer.key', '--id', 'alice']);
    expect(tok.code, tok.err).toBe(0);

    const again = runBkv(cwd, ['fleet', 'init', '--members', '3', '--dir', 'f', '--json']);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.out.trim()).error).toMatchObject({ code: 'failure', name: 'FleetConfigError' });

    for (const args of [
      ['--members', '4', '--dir', 'g'],
      ['--members', '3'],
      ['--dir', 'g'],
      ['--members', '3', '--dir', 'g', '--host', 'no such host!'],
      ['--members', '7', '--dir', 'g', '--base-port', '65530'],
      ['--members', '3', '--dir', 'g', '--port', '1'],
    ]) {
      const r = runBkv(cwd, ['fleet', 'init', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(existsSync(join(cwd, 'g'))).toBe(false);
    }
    const verb = runBkv(cwd, ['fleet', 'inti']);
    expect(verb.code).toBe(2);
    expect(verb.err).toMatch(/did you mean init\?/);
  });
});
