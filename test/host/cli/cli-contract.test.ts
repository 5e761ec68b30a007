/**
 * The `bkv` CLI contract (issue 17), on the real command (node bin/bkv.mjs) against served vaults
 * in development mode: every exit code (host/cli/exit-codes.ts), every `--json` shape (one object
 * on stdout, messages on stderr), every `--help` (host/cli/help.ts's table, entry by entry),
 * closest-option hints, no prompt without a terminal and no password in argv, and progress lines
 * only on a terminal (through `script`'s pseudo-terminal, where it exists).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { COMMANDS, usageOf } from '../../../host/cli/help.ts';
import { EXIT, EXIT_CODES, codeName } from '../../../host/cli/exit-codes.ts';
import { DEFAULT_TOKEN_KIND, TOKEN_KINDS } from '../../../hsm/tokens/backends.ts';
import { bin, root, runBkv, runBkvAsync, startServe, stop } from '../../helpers/cli.ts';
import type { BkvRun, Served } from '../../helpers/cli.ts';

let dir: string;
let vault: Served;
let issuerKey: string;
let vaultKey: string;

const bkv = (args: string[], input?: string) => runBkv(dir, args, { input });

/** Runs `bkv ARGS` and expects exit `code`, showing its stderr when it differs. */
function expectCode(args: string[], code: number, input?: string): BkvRun {
  const r = bkv(args, input);
  expect(r.code, `bkv ${args.join(' ')}\n${r.err}`).toBe(code);
  return r;
}

/**
 * `bkv ARGS --json`, expecting exit `code`: stdout is exactly one JSON object whose envelope
 * (ok, exitCode, command, elapsedMs; `error.code` the exit code's name) matches; returns it.
 */
function json(args: string[], code: number, command: string, input?: string): Record<string, any> & { err: string } {
  const r = expectCode([...args, '--json'], code, input);
  const lines = r.out.trim().split('\n');
  expect(lines, `stdout of bkv ${args.join(' ')} --json`).toHaveLength(1);
  const j = JSON.parse(lines[0]!) as Record<string, any>;
  expect(j).toMatchObject({ ok: code === 0, exitCode: code, command });
  expect(typeof j.elapsedMs).toBe('number');
  if (j.error !== undefined) {
    expect(j.error.code).toBe(codeName(code));
    expect(typeof j.error.name).toBe('string');
    expect(typeof j.error.message).toBe('string');
  }
  return { ...j, err: r.err };
}

/** A token of the development issuer for `id`, in `id.tok`, checking `bkv auth token --json`. */
function tokenFor(id: string): string {
  const j = json(['auth', 'token', '--issuer-key', issuerKey, '--id', id, '--out', `${id}.tok`], 0, 'auth token');
  expect(j).toMatchObject({ id, issuer: 'bkv-development', ttlSeconds: 600, path: join(dir, `${id}.tok`) });
  expect(Date.parse(j.expiresAt) - Date.now()).toBeGreaterThan(500_000);
  return `${id}.tok`;
}

const escrowArgs = (id: string, token = `${id}.tok`) => ['--vault', vault.url, '--vault-key', vaultKey, '--id', id, '--auth-token', token];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bkv-contract-'));
  vault = await startServe(dir, ['--data', join(dir, 'vault'), '--port', '0', '--partitions', '1', '--record-limit', 'off']);
  issuerKey = join(dir, 'vault', 'auth', 'issuer.key');
  vaultKey = join(dir, 'vault', 'vault-key.pub');
  writeFileSync(join(dir, 'pw'), 'correct horse\n');
  writeFileSync(join(dir, 'pw2'), 'battery staple\n');
  writeFileSync(join(dir, 'bad'), 'guess\n');
}, 90_000);

afterAll(async () => {
  if (vault) await stop(vault.proc);
  rmSync(dir, { recursive: true, force: true });
});

describe('bkv --help', () => {
  it('bkv --help, -h and help list every command and every exit code; the README lists the same codes', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = expectCode(args, 0);
      for (const c of EXIT_CODES) {
        expect(r.out).toMatch(new RegExp(`^  ${c.code}\\s+${c.name}\\s`, 'm'));
        expect(readme).toMatch(new RegExp(`^\\| ${c.code} \\| \`${c.name}\` \\|`, 'm'));
      }
      for (const cmd of Object.keys(COMMANDS)) expect(r.out).toContain(usageOf(cmd).split('\n')[0]);
      expect(r.out).toMatch(/--json/);
    }
    // Options added to a command show in its help and in bkv --help.
    const serveHelp = expectCode(['serve', '--help'], 0).out;
    expect(serveHelp).toMatch(/\[--cors-origin ORIGIN \.\.\.\]/);
    expect(serveHelp).toContain(`[--token ${TOKEN_KINDS.join('|')}]`);
    expect(serveHelp).toContain(`default ${DEFAULT_TOKEN_KIND}`);
    expect(serveHelp).toMatch(/--cors-origin https:\/\/app\.example \(repeatable\)/);
    expect(expectCode(['--help'], 0).out).toMatch(/bkv serve .*\[--cors-origin ORIGIN \.\.\.\]/);
    // No command: the help on stderr and a usage error.
    const none = expectCode([], EXIT.usage);
    expect(none.out).toBe('');
    expect(none.err).toMatch(/exit codes:/);
  });

  it('every command and subcommand answers --help and -h (after the subcommand, whatever else is on the line) with its usage and an example', async () => {
    const runs: [string[], string, string][] = [];
    for (const [cmd, c] of Object.entries(COMMANDS)) {
      runs.push([[cmd, '--help'], cmd, c.example], [[cmd, '-h'], cmd, c.example]);
      for (const [verb, v] of Object.entries(c.verbs ?? {})) {
        const usage = `usage: bkv ${cmd} ${verb}`;
        // Help wins over a bad option on the same line.
        runs.push([[cmd, verb, '--help'], usage, v.example], [[cmd, verb, '--no-such-option', '-h'], usage, v.example]);
        expect(v.example.startsWith(`bkv ${cmd} ${verb} `), `${cmd} ${verb}: its example runs it`).toBe(true);
      }
    }
    runs.push([['help', 'escrow', 'recover'], 'usage: bkv escrow recover', COMMANDS.escrow!.verbs!.recover!.example]);
    // A few at a time: each is a process of its own.
    for (let i = 0; i < runs.length; i += 4) {
      const batch = runs.slice(i, i + 4);
      const results = await Promise.all(batch.map(([args]) => runBkvAsync(dir, args)));
      results.forEach((r, k) => {
        const [args, usage, example] = batch[k]!;
        expect(r.code, `bkv ${args.join(' ')}\n${r.err}`).toBe(0);
        expect(r.out).toContain(usage);
        expect(r.out).toContain(`example:\n  ${example}`);
        expect(r.out).toMatch(/exit codes: 0 ok, 1 failure, 2 usage/);
      });
    }
  }, 240_000);

  it('help with --json is one object with the usage and the example', () => {
    const j = json(['escrow', 'register', '--help'], 0, 'escrow register');
    expect(j.help.usage).toBe(COMMANDS.escrow!.verbs!.register!.usage);
    expect(j.help.example).toBe(COMMANDS.escrow!.verbs!.register!.example);
  });
});

describe('bkv usage errors (exit 2)', () => {
  it('an unknown option names the closest known one; an unknown command or subcommand too', () => {
    const cases: [string[], RegExp][] = [
      [['escrow', 'register', '--vualt', 'x'], /unknown option --vualt; did you mean --vault\?/],
      [['backup', 'encrypt', 'a', 'b', '--key-flie', 'k'], /unknown option --key-flie; did you mean --key-file\?/],
      [['serve', '--partitons', '2'], /did you mean --partitions\?/],
      [['serve', '--cors-orign', 'https://app.example'], /did you mean --cors-origin\?/],
      // --token's values are the backends table's (hsm/tokens/backends.ts), in the message and the hint
      [['serve', '--token', `${TOKEN_KINDS.at(-1)!}x`], new RegExp(`--token must be ${TOKEN_KINDS.join(' or ')}; did you mean ${TOKEN_KINDS.at(-1)!}\\?`)],
      [['serve', '--token', 'xyzzy'], new RegExp(`--token must be ${TOKEN_KINDS.join(' or ')}$`, 'm')],
      [['serve', '--cors-origin', 'https://app.example/'], /--cors-origin: .*not a serialized origin.*did you mean "https:\/\/app.example"\?/],
      [['serve', '--cors-origin', '*'], /--cors-origin: .*not a URL origin/],
      [['key', 'new', '--jsno'], /did you mean --json\?/],
      [['escrw', 'status'], /unknown command escrw; did you mean escrow\?/],
      [['escrow', 'regster'], /unknown subcommand regster of bkv escrow; did you mean register\?/],
      [['auth', 'tokn'], /did you mean token\?/],
      [['operator', 'keygn'], /did you mean keygen\?/],
      [['key', 'new', '--out'], /--out needs a value/],
      [['backup', 'encrypt', 'a', '--key-file', 'k'], /takes IN and OUT/],
      [['auth', 'token', '--issuer-key', issuerKey, '--id', 'a', '--ttl', '2h'], /--ttl must be/],
      [['escrow'], /a subcommand of bkv escrow is missing/],
      // --vault URL[,URL...]: an empty item, not http(s), a member twice, more than 16
      [['escrow', 'status', '--vault', ''], /--vault: vault URL 1 of 1 is empty/],
      [['escrow', 'status', '--vault', 'http://a:7400,,http://b:7400'], /--vault: vault URL 2 of 3 is empty/],
      [['escrow', 'status', '--vault', 'http://a:7400,ftp://b'], /--vault: "ftp:\/\/b" is not an http\(s\) base URL/],
      [['escrow', 'recover', '--vault', 'http://a:7400,http://A:7400/'], /--vault: http:\/\/A:7400\/ is listed twice/],
      [['escrow', 'register', '--vault', Array.from({ length: 17 }, (_, i) => `http://10.0.0.${i}:7400`).join(',')], /--vault: at most 16 vault URLs \(got 17\)/],
    ];
    for (const [args, msg] of cases) expect(expectCode(args, EXIT.usage).err).toMatch(msg);
  }, 60_000);

  it('with --json the error is one object: {ok: false, exitCode: 2, error: {code: "usage", name, message}}', () => {
    const j = json(['escrow', 'status', '--vualt', 'x'], EXIT.usage, 'escrow status');
    expect(j.error).toEqual({ code: 'usage', name: 'UsageError', message: 'unknown option --vualt; did you mean --vault?' });
    expect(j.err).toMatch(/bkv: unknown option --vualt/);
    expect(json(['nonsense'], EXIT.usage, 'nonsense').error.message).toMatch(/unknown command nonsense/);
  });

  it('passwords never come from argv: there is no option that takes one, and no help offers one', () => {
    const r = expectCode(['escrow', 'recover', ...escrowArgs('nobody', 'none.tok'), '--password', 'hunter2'], EXIT.usage);
    expect(r.err).toMatch(/unknown option --password; did you mean --password-file\?/);
    for (const [cmd, c] of Object.entries(COMMANDS)) {
      for (const e of [c, ...Object.values(c.verbs ?? {})]) {
        for (const opt of e.usage.match(/--[a-z-]*(?:password|pin|secret)[a-z-]*/g) ?? []) expect(opt, `${cmd}: ${opt}`).toMatch(/-(file|dir)$/);
      }
    }
  });
});

describe('bkv escrow: exit codes and --json shapes', () => {
  it('no prompt when stdin is not a terminal: exit 2, the piped text is not taken for a password, nothing is charged', () => {
    expectCode(['key', 'new', '--out', 'nina.key'], 0);
    tokenFor('nina');
    const nina = escrowArgs('nina');
    expectCode(['escrow', 'register', ...nina, '--key-file', 'nina.key', '--password-file', 'pw', '--attempts', '3'], 0);
    for (const args of [
      ['escrow', 'recover', ...nina],
      ['escrow', 'delete', ...nina],
      ['escrow', 'register', ...escrowArgs('nobody', 'nina.tok'), '--key-file', 'nina.key'],
    ]) {
      const r = expectCode(args, EXIT.usage, 'correct horse\n');
      expect(r.err).toMatch(/no terminal to type a password: pass --password-file/);
      expect(r.err).not.toMatch(/^(?:new |current )?password: /m);
    }
    const r = expectCode(['escrow', 'change-password', ...nina, '--password-file', 'pw'], EXIT.usage, 'battery staple\n');
    expect(r.err).toMatch(/pass --new-password-file/);
    // Nothing was charged.
    expect(json(['escrow', 'status', ...nina], 0, 'escrow status')).toMatchObject({ outcome: 'registered', attemptsRemaining: 3, attemptLimit: 3 });
  }, 120_000);

  it('5 not registered (status, recover, delete), 0 registered, 6 registered again, 0 recovered, 3 wrong (then destroyed), 4 locked, 0 deleted', () => {
    expectCode(['key', 'new', '--out', 'erin.key'], 0);
    tokenFor('erin');
    const erin = escrowArgs('erin');
    const key = readFileSync(join(dir, 'erin.key'), 'utf8').trim().replace(/\s+/g, ' ');

    for (const [verb, more] of [['status', []], ['recover', ['--password-file', 'pw']], ['delete', ['--password-file', 'pw']]] as const) {
      const j = json(['escrow', verb, ...erin, ...more], EXIT.notRegistered, `escrow ${verb}`);
      expect(j).toMatchObject({ id: 'erin', outcome: 'not-registered' });
      expect(j.err).toMatch(/not registered/);
    }
    expect(expectCode(['escrow', 'status', ...erin], EXIT.notRegistered).out).toMatch(/not registered/);

    expect(json(['escrow', 'register', ...erin, '--key-file', 'erin.key', '--password-file', 'pw', '--attempts', '2'], 0, 'escrow register')).toMatchObject({
      id: 'erin',
      outcome: 'registered',
      attemptLimit: 2,
      attemptsRemaining: 2,
      pacing: 'standard',
      suite: 'ristretto255-SHA512',
    });
    const again = json(['escrow', 'register', ...erin, '--key-file', 'erin.key', '--password-file', 'pw'], EXIT.notAuthorized, 'escrow register');
    expect(again.error).toMatchObject({ code: 'not-authorized', name: 'EscrowError', fault: { code: 2108, name: 'Handling.NotAuthorized' } });
    expect(json(['escrow', 'status', ...erin], 0, 'escrow status')).toMatchObject({ outcome: 'registered', attemptsRemaining: 2, attemptLimit: 2 });

    // Recovered: the key in the object (no --out), or in a file whose path it gives.
    const rec = json(['escrow', 'recover', ...erin, '--password-file', 'pw'], 0, 'escrow recover');
    expect(rec).toMatchObject({ outcome: 'recovered', attemptsRemaining: 2, attemptLimit: 2 });
    expect(rec.backupKey).toBe(key);
    const out = json(['escrow', 'recover', ...erin, '--password-file', 'pw', '--out', 'erin.recovered'], 0, 'escrow recover');
    expect(out.path).toBe(join(dir, 'erin.recovered'));
    expect(out.backupKey).toBeUndefined();
    expect(readFileSync(out.path, 'utf8').trim().replace(/\s+/g, ' ')).toBe(key);
    expect(json(['escrow', 'change-password', ...erin, '--password-file', 'pw', '--new-password-file', 'pw2'], 0, 'escrow change-password')).toMatchObject({
      outcome: 'password-changed',
      attemptsRemaining: 2,
      attemptLimit: 2,
    });

    // Wrong passwords: 3 with the attempts left; the guess that uses the last one says the key is destroyed.
    const wrong = expectCode(['escrow', 'recover', ...erin, '--password-file', 'pw'], EXIT.wrongPassword);
    expect(wrong.out).toBe('');
    expect(wrong.err).toMatch(/wrong password; attempts remaining 1/);
    const last = json(['escrow', 'recover', ...erin, '--password-file', 'bad'], EXIT.wrongPassword, 'escrow recover');
    expect(last).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 0, destroyed: true });
    expect(last.err).toMatch(/last attempt: the key is now destroyed/);
    // Locked before the attempt: 4, the right password included; nothing is tried.
    const locked = json(['escrow', 'recover', ...erin, '--password-file', 'pw2'], EXIT.locked, 'escrow recover');
    expect(locked).toMatchObject({ outcome: 'locked', attemptsRemaining: 0 });
    expect(locked.err).toMatch(/LOCKED/);
    expect(json(['escrow', 'change-password', ...erin, '--password-file', 'pw2', '--new-password-file', 'pw'], EXIT.locked, 'escrow change-password').outcome).toBe('locked');
    expect(json(['escrow', 'status', ...erin], EXIT.locked, 'escrow status')).toMatchObject({ outcome: 'locked', attemptsRemaining: 0 });
    // A locked record is deleted without proof.
    expect(json(['escrow', 'delete', ...erin], 0, 'escrow delete')).toMatchObject({ outcome: 'deleted' });
    expectCode(['escrow', 'status', ...erin], EXIT.notRegistered);
  }, 240_000);

  it('wrong password on delete and change-password is 3 too', () => {
    expectCode(['key', 'new', '--out', 'gus.key'], 0);
    tokenFor('gus');
    const gus = escrowArgs('gus');
    expectCode(['escrow', 'register', ...gus, '--key-file', 'gus.key', '--password-file', 'pw', '--attempts', '5'], 0);
    expect(json(['escrow', 'delete', ...gus, '--password-file', 'bad'], EXIT.wrongPassword, 'escrow delete')).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 4, destroyed: false });
    expect(json(['escrow', 'change-password', ...gus, '--password-file', 'bad', '--new-password-file', 'pw2'], EXIT.wrongPassword, 'escrow change-password')).toMatchObject({
      outcome: 'wrong-password',
      attemptsRemaining: 3,
    });
    expect(json(['escrow', 'delete', ...gus, '--key-file', 'gus.key'], 0, 'escrow delete').outcome).toBe('deleted');
  }, 120_000);

  it('7 retry later: a paced guess charges nothing and says when', () => {
    expectCode(['key', 'new', '--out', 'finn.key'], 0);
    tokenFor('finn');
    const finn = escrowArgs('finn');
    expectCode(['escrow', 'register', ...finn, '--key-file', 'finn.key', '--password-file', 'pw', '--attempts', '10'], 0);
    // Standard pacing: three guesses free, then one a minute.
    for (const left of [9, 8, 7]) {
      expect(json(['escrow', 'recover', ...finn, '--password-file', 'bad'], EXIT.wrongPassword, 'escrow recover')).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: left, destroyed: false });
    }
    const paced = json(['escrow', 'recover', ...finn, '--password-file', 'pw'], EXIT.retryLater, 'escrow recover');
    expect(paced).toMatchObject({ outcome: 'paced', attemptsRemaining: 7 });
    expect(paced.retryAfterSeconds).toBeGreaterThan(0);
    expect(paced.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(paced.err).toMatch(/too soon: .* next try in \d+ s \(nothing was charged/);
    expect(expectCode(['escrow', 'recover', ...finn, '--password-file', 'pw'], EXIT.retryLater).err).toMatch(/too soon/);
    expect(json(['escrow', 'status', ...finn], 0, 'escrow status').attemptsRemaining).toBe(7);
  }, 180_000);

  it('6 not authorized: no token, another id\'s token', () => {
    const none = json(['escrow', 'status', '--vault', vault.url, '--vault-key', vaultKey, '--id', 'erin'], EXIT.notAuthorized, 'escrow status');
    expect(none.error).toMatchObject({ code: 'not-authorized', name: 'CliError' });
    expect(none.err).toMatch(/not authorized/);
    tokenFor('mallory');
    const other = json(['escrow', 'recover', ...escrowArgs('nina', 'mallory.tok'), '--password-file', 'bad'], EXIT.notAuthorized, 'escrow recover');
    expect(other.error).toMatchObject({ code: 'not-authorized', name: 'VaultHttpError' });
    expect(other.error.message).toMatch(/AUTH_TOKEN_REFUSED/);
    expectCode(['escrow', 'recover', ...escrowArgs('nina', 'mallory.tok'), '--password-file', 'bad'], EXIT.notAuthorized);
  }, 60_000);

  it('1 failure: no service there, a backup under another key', () => {
    const gone = json(['escrow', 'status', '--vault', 'http://127.0.0.1:1', '--vault-key', vaultKey, '--id', 'x', '--auth-token', 'nina.tok'], EXIT.failure, 'escrow status');
    expect(gone.error.code).toBe('failure');
    expectCode(['key', 'new', '--out', 'k1.key'], 0);
    expectCode(['key', 'new', '--out', 'k2.key'], 0);
    writeFileSync(join(dir, 'small.bin'), randomBytes(1000));
    expectCode(['backup', 'encrypt', 'small.bin', 'small.bkv', '--key-file', 'k1.key'], 0);
    const bad = json(['backup', 'decrypt', 'small.bkv', 'small.out', '--key-file', 'k2.key'], EXIT.failure, 'backup decrypt');
    expect(bad.error.name).toMatch(/BackupFileError/);
    expect(existsSync(join(dir, 'small.out'))).toBe(false);
  }, 60_000);
});

describe('bkv --json: one object on stdout, messages on stderr', () => {
  it('key new, backup encrypt and decrypt, auth keygen and token, operator keygen', () => {
    const printed = json(['key', 'new'], 0, 'key new');
    expect(printed.key).toMatch(/^[0-9a-f]{4}( [0-9a-f]{4}){15}$/);
    expect(json(['key', 'new', '--checked'], 0, 'key new').key).toMatch(/^[0-9a-f]{4}( [0-9a-f]{4}){16}$/);
    const written = json(['key', 'new', '--out', 'j.key'], 0, 'key new');
    expect(written).toMatchObject({ path: join(dir, 'j.key') });
    expect(written.key).toBeUndefined();
    expect(written.err).toMatch(/wrote a new backup key/);

    const data = randomBytes(300_000);
    writeFileSync(join(dir, 'j.bin'), data);
    const enc = json(['backup', 'encrypt', 'j.bin', 'j.bkv', '--key-file', 'j.key'], 0, 'backup encrypt');
    expect(enc).toMatchObject({ input: join(dir, 'j.bin'), output: join(dir, 'j.bkv'), bytesIn: 300_000 });
    expect(enc.bytesOut).toBeGreaterThan(300_000);
    expect(enc.ms).toBeGreaterThanOrEqual(0);
    expect(enc.bytesPerSecond).toBeGreaterThan(0);
    expect(enc.err).toMatch(/encrypted j\.bin/);
    const dec = json(['backup', 'decrypt', 'j.bkv', 'j.out', '--key-file', 'j.key'], 0, 'backup decrypt');
    expect(dec).toMatchObject({ bytesIn: enc.bytesOut, bytesOut: 300_000, output: join(dir, 'j.out') });
    expect(readFileSync(join(dir, 'j.out')).equals(data)).toBe(true);

    const iss = json(['auth', 'keygen', '--out', 'j-issuer', '--name', 'j.example'], 0, 'auth keygen');
    expect(iss).toMatchObject({ name: 'j.example', privateKey: join(dir, 'j-issuer', 'issuer.key'), publicKey: join(dir, 'j-issuer', 'issuer.pub') });
    expect(iss.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const tok = json(['auth', 'token', '--issuer-key', iss.privateKey, '--id', 'jo', '--ttl', '5m'], 0, 'auth token');
    expect(tok).toMatchObject({ id: 'jo', issuer: 'j.example', ttlSeconds: 300 });
    expect(tok.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(tok.path).toBeUndefined();

    const op = json(['operator', 'keygen', '--out', 'j-op.key'], 0, 'operator keygen');
    expect(op.path).toBe(join(dir, 'j-op.key'));
    expect(json(['operator', 'keygen', '--out', 'j-op.key'], EXIT.failure, 'operator keygen').error.message).toMatch(/EEXIST/);
  }, 60_000);

  it('serve: one object once it listens (no exit code), log lines on stderr; a rate limit is 7 with retryAfterSeconds; operator set-issuers', async () => {
    expectCode(['operator', 'keygen', '--out', 's-op.key'], 0);
    expectCode(['operator', 'keygen', '--out', 's-other-op.key'], 0);
    expectCode(['auth', 'keygen', '--out', 's-iss', '--name', 's.example'], 0);
    expectCode(['auth', 'keygen', '--out', 's-iss2', '--name', 's2.example'], 0);
    const data = join(dir, 'vault-json');
    const s = await startServe(dir, ['--data', data, '--port', '0', '--partitions', '1', '--record-limit', '1/1', '--auth-issuer', join('s-iss', 'issuer.pub'), '--operator-key-file', 's-op.key', '--cors-origin', 'https://app.example', '--cors-origin', 'http://localhost:8000', '--json'], {}, /client operations need/);
    try {
      // stdout and stderr are two pipes: the object may arrive after the last stderr line.
      for (let i = 0; i < 100 && !s.out().includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
      const lines = s.out().trim().split('\n');
      expect(lines).toHaveLength(1);
      const j = JSON.parse(lines[0]!) as Record<string, unknown>;
      expect(j).toMatchObject({ ok: true, command: 'serve', status: 'listening', url: s.url, vaultKeyFile: join(data, 'vault-key.pub'), partitions: 1, records: 0, auth: 'issuers', issuers: ['s.example'], audience: 'backup-key-vault', corsOrigins: ['https://app.example', 'http://localhost:8000'] });
      expect(j.exitCode).toBeUndefined();
      // --cors-origin: the listed origin is allowed, another is not (test/host/service/cors.test.ts has the rest)
      const allowed = await fetch(`${s.url}/v1/vault`, { headers: { origin: 'http://localhost:8000' } });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('http://localhost:8000');
      const other = await fetch(`${s.url}/v1/vault`, { headers: { origin: 'https://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      expect(s.err()).toMatch(/browser pages from https:\/\/app\.example, http:\/\/localhost:8000 may call the API/);
      expect(typeof j.loadMs).toBe('number');
      expect(s.err()).toMatch(/"msg":"listening"/);

      expectCode(['auth', 'token', '--issuer-key', join('s-iss', 'issuer.key'), '--id', 'rita', '--out', 'rita.tok'], 0);
      const args = ['escrow', 'status', '--vault', s.url, '--vault-key', join(data, 'vault-key.pub'), '--id', 'rita', '--auth-token', 'rita.tok'];
      expectCode(args, EXIT.notRegistered);
      const limited = json(args, EXIT.retryLater, 'escrow status');
      expect(limited.error).toMatchObject({ code: 'retry-later', name: 'VaultHttpError' });
      expect(limited.error.retryAfterSeconds).toBeGreaterThan(0);
      expect(limited.err).toMatch(/rate limiting .* retry in \d+ s/);
    } finally {
      await stop(s.proc);
    }
    expect(s.out().trim().split('\n')).toHaveLength(1); // the shutdown logged on stderr too

    const set = ['operator', 'set-issuers', '--data', data, '--auth-issuer', join('s-iss2', 'issuer.pub')];
    const refused = json([...set, '--operator-key-file', 's-other-op.key'], EXIT.failure, 'operator set-issuers');
    expect(refused.error).toMatchObject({ code: 'failure', message: expect.stringMatching(/refused the operator secret/) });
    expect(json([...set, '--operator-key-file', 's-op.key'], 0, 'operator set-issuers')).toMatchObject({ issuers: ['s2.example'], audience: 'backup-key-vault' });
  }, 180_000);

  it('demo: the story on stderr, one object with its timings on stdout', () => {
    const j = json(['demo', '--partitions', '1'], 0, 'demo');
    expect(Object.keys(j.timings).sort()).toEqual(['decrypt', 'encrypt', 'recover', 'register', 'vaultUp', 'wrongPassword']);
    for (const v of Object.values(j.timings)) expect(v).toBeGreaterThanOrEqual(0);
    expect(j.records).toBe(2);
    expect(j.err).toMatch(/demo finished/);
  }, 180_000);
});

/** `script` gives a command a pseudo-terminal (util-linux); CI images without it skip these. */
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

/** Every descendant of `pid` (from /proc), children before grandchildren. */
function descendants(pid: number): number[] {
  const r = spawnSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  const kids = new Map<number, number[]>();
  for (const line of r.stdout.trim().split('\n')) {
    const [c, pp] = line.trim().split(/\s+/).map(Number) as [number, number];
    kids.set(pp, [...(kids.get(pp) ?? []), c]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of kids.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/**
 * Stops `script` and what runs under it: SIGTERM to the command inside (script does not forward
 * it: the command sits in its own session on the pseudo-terminal), then SIGKILL to anything
 * left after 10 s, so that a slow machine never leaves the test waiting on an exit.
 */
async function stopTree(p: ReturnType<typeof spawn>): Promise<void> {
  const exited = p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => p.once('exit', () => r()));
  const tree = descendants(p.pid!);
  for (const pid of tree) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const timer = setTimeout(() => {
    for (const pid of [...descendants(p.pid!), ...tree, p.pid!]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

/** Runs `shell` (a command line) on a pseudo-terminal; returns what the terminal showed. */
function onTerminal(shell: string): string {
  const r = spawnSync('script', ['-qec', shell, '/dev/null'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stdout).toBe(0);
  return r.stdout;
}

describe('progress on stderr: only on a terminal, never with --json', () => {
  beforeAll(() => {
    writeFileSync(join(dir, 'big.bin'), randomBytes(24 << 20));
    expectCode(['key', 'new', '--out', 'big.key'], 0);
  });

  it('not a terminal: no progress line', () => {
    const r = expectCode(['backup', 'encrypt', 'big.bin', 'big-pipe.bkv', '--key-file', 'big.key'], 0);
    expect(r.err).not.toMatch(/\r|MiB\/s/);
  }, 60_000);

  it.skipIf(!hasScript)('backup encrypt and decrypt on a terminal: bytes, rate and time left; silent with --json', () => {
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)}`;
    const enc = onTerminal(`${cmd} backup encrypt big.bin big.bkv --key-file big.key > enc.out`);
    expect(enc).toMatch(/\rencrypting \[#+\.*\] [\d.]+ MiB \/ 24\.0 MiB \d+%, [\d.]+ MiB\/s, \d+ s left/);
    expect(enc).toMatch(/24\.0 MiB \/ 24\.0 MiB 100%/);
    expect(readFileSync(join(dir, 'enc.out'), 'utf8')).toMatch(/^encrypted big\.bin/);
    const dec = onTerminal(`${cmd} backup decrypt big.bkv big.out --key-file big.key > /dev/null`);
    expect(dec).toMatch(/\rdecrypting \[#+\.*\] .*MiB\/s/);
    const quiet = onTerminal(`${cmd} backup decrypt big.bkv big2.out --key-file big.key --json > dec.json`);
    expect(quiet).not.toMatch(/MiB\/s/);
    expect(JSON.parse(readFileSync(join(dir, 'dec.json'), 'utf8'))).toMatchObject({ ok: true, bytesOut: 24 << 20 });
  }, 120_000);

  it.skipIf(!hasScript)('bkv serve on a terminal: a progress line counts the records loaded of the total, with the rate; silent with --json', async () => {
    // A vault with records: the demo's, kept (2 records, development mode, its own operator folder).
    const demo = json(['demo', '--keep', '--partitions', '1'], 0, 'demo');
    const kept = demo.dataDir as string;
    const serveOn = async (extra: string): Promise<string> => {
      const cmd = `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} serve --data ${join(kept, 'vault')} --operator-dir ${join(kept, 'vault.operator')} --port 0 --partitions 1${extra}`;
      const p = spawn('script', ['-qec', cmd, '/dev/null'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
      let shown = '';
      p.stdout.on('data', (d: Buffer) => (shown += d.toString()));
      try {
        await new Promise<void>((res, rej) => {
          const t = setTimeout(() => rej(new Error(`serve did not start: ${shown}`)), 60_000);
          p.stdout.on('data', () => {
            if (/clients pin|"status":"listening"/.test(shown)) {
              clearTimeout(t);
              res();
            }
          });
        });
      } finally {
        await stopTree(p);
      }
      return shown;
    };
    try {
      const shown = await serveOn('');
      expect(shown).toMatch(/\rbkv: starting the devices and loading their records: \d+\.\d s/);
      expect(shown).toMatch(/\rbkv: starting the devices and loading their records: \d+\.\d s, 0 \/ 2 records 0%, 0\/s/);
      expect(shown).toMatch(/\rbkv: starting the devices and loading their records: \d+\.\d s, 2 \/ 2 records 100%, [\d,]+\/s/);
      expect(shown).toMatch(/bkv: 2 records loaded in \d+\.\d s/);
      const quiet = await serveOn(' --json');
      expect(quiet).not.toMatch(/loading their records|\/ 2 records/);
      expect(quiet).toMatch(/"records":2/);
    } finally {
      rmSync(kept, { recursive: true, force: true });
    }
  }, 300_000);
});
