/**
 * The `pkcs11` token backend (hsm/tokens/pkcs11-module.ts): `bkv serve --token pkcs11` on a
 * token the operator made in a PKCS#11 module, here SoftHSM2's library loaded as any module (in
 * the served process, which owns it), and p11-kit's client forwarding to `bkv token serve`. The
 * vault runs a whole escrow on the operator's token, and refuses a missing token, a second
 * token of the label, a development-mode PIN source and a data folder of another token, each
 * with a message that says what to do. Through p11-kit 0.24.1's client (no AES-GCM or ECDH
 * parameters carried) the vault runs on the ctr-hmac token profile (enclave/token-profiles.ts),
 * says so at start, and escrows and recovers a key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SOFTHSM_DEFAULT_LIB } from '../../../hsm/tokens/softhsm.ts';
import { bin, runBkv, startServe, stop } from '../../helpers/cli.ts';

const P11KIT_CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';
const ci = process.env.CI === 'true' || process.env.CI === '1';
const softhsmUtil = spawnSync('softhsm2-util', ['--version']).status === 0;
const p11kitTool = spawnSync('p11-kit', ['--help']).error === undefined;
const missing = [!existsSync(SOFTHSM_DEFAULT_LIB) && SOFTHSM_DEFAULT_LIB, !softhsmUtil && 'softhsm2-util', !existsSync(P11KIT_CLIENT) && P11KIT_CLIENT, !p11kitTool && 'p11-kit'].filter(Boolean);
const why = missing.length ? `needs ${missing.join(', ')} (apt-get install -y softhsm2 p11-kit-modules p11-kit; softhsm-config/ci-setup.sh)` : null;
if (why && ci) throw new Error(`pkcs11 backend tests: ${why}`);
if (why) console.warn(`pkcs11 backend tests skipped: ${why}`);

let dir: string;
let env: NodeJS.ProcessEnv;
const bkv = (args: string[], extra: NodeJS.ProcessEnv = {}) => runBkv(dir, args, { env: { ...env, ...extra } });
const USER_PIN = '5678-user';

/** Makes a SoftHSM2 token with softhsm2-util (what an operator does with their module's tools). */
function initToken(label: string): void {
  const r = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', '1234-so', '--pin', USER_PIN], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`softhsm2-util: ${r.stderr}`);
}

const moduleArgs = (data: string, label: string, more: string[] = []) => ['--data', data, '--port', '0', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB, '--token-label', label, '--token-pin-file', join(dir, 'pin'), ...more];

describe.skipIf(why !== null)('bkv serve --token pkcs11', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bkv-pkcs11-'));
    writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
    spawnSync('mkdir', ['-p', join(dir, 'tokens')]);
    env = { SOFTHSM2_CONF: join(dir, 'softhsm2.conf') };
    writeFileSync(join(dir, 'pin'), `${USER_PIN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'pw'), 'correct horse\n', { mode: 0o600 });
    initToken('ops-token');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Registers and recovers a backup key on the vault served at `url` from the folder `data`. */
  function escrowRoundTrip(url: string, data: string, id: string): void {
    const vault = ['--vault', url, '--vault-key', `${data}/vault-key.pub`, '--id', id, '--auth-token', `${id}.tok`];
    expect(bkv(['auth', 'token', '--issuer-key', `${data}/auth/issuer.key`, '--id', id, '--out', `${id}.tok`]).code).toBe(0);
    expect(bkv(['key', 'new', '--out', `${id}.k1`]).code).toBe(0);
    const reg = bkv(['escrow', 'register', ...vault, '--key-file', `${id}.k1`, '--password-file', 'pw', '--attempts', '3']);
    expect(reg.code, reg.err).toBe(0);
    const rec = bkv(['escrow', 'recover', ...vault, '--password-file', 'pw', '--out', `${id}.k2`]);
    expect(rec.code, rec.err).toBe(0);
    const hex = (f: string) => readFileSync(join(dir, f), 'utf8').replace(/\s+/g, '').slice(0, 64);
    expect(hex(`${id}.k2`)).toMatch(/^[0-9a-f]{64}$/);
    expect(hex(`${id}.k2`)).toBe(hex(`${id}.k1`));
  }

  it("escrows and recovers a key with the vault's keys in the operator's token", async () => {
    const served = await startServe(dir, moduleArgs('vault', 'ops-token'), env);
    try {
      const cfg = JSON.parse(readFileSync(join(dir, 'vault', 'token.json'), 'utf8'));
      expect(cfg).toMatchObject({ kind: 'pkcs11', module: SOFTHSM_DEFAULT_LIB, label: 'ops-token' });
      expect(existsSync(join(dir, 'vault.operator'))).toBe(false); // no PINs kept anywhere
      escrowRoundTrip(served.url, 'vault', 'alice');
      expect(served.err()).toMatch(/token profile gcm-ecdh; the token meets gcm-ecdh, ctr-hmac/);
    } finally {
      await stop(served.proc);
    }
    // The keys are objects of the operator's token: its user sees them (labels only: they are sensitive).
    const objects = spawnSync('pkcs11-tool', ['--module', SOFTHSM_DEFAULT_LIB, '--token-label', 'ops-token', '--login', '--pin', USER_PIN, '--list-objects'], { env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(objects.stdout).toMatch(/Secret Key Object/);
    expect(objects.stdout).toMatch(/sensitive/);
    // Again on the same folder without --module: the folder remembers the module and the token.
    const again = await startServe(dir, ['--data', 'vault', '--port', '0', '--token', 'pkcs11', '--token-pin-file', join(dir, 'pin')], env);
    await stop(again.proc);
  });

  it('--slot N: the token found there, and its label written to token.json', async () => {
    initToken('slot-token');
    const list = spawnSync('softhsm2-util', ['--show-slots'], { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout;
    // "Slot <id>" blocks, each with its token's "Label: ...".
    const slot = list
      .split(/^Slot /m)
      .slice(1)
      .find((block) => /Label:\s+slot-token\s*$/m.test(block))
      ?.match(/^\d+/)?.[0];
    expect(slot, list).toBeDefined();
    const served = await startServe(dir, ['--data', 'by-slot', '--port', '0', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB, '--slot', slot!, '--token-pin-file', join(dir, 'pin')], env);
    await stop(served.proc);
    expect(served.err()).toMatch(/token\.json names it by its label from now on/);
    const cfg = JSON.parse(readFileSync(join(dir, 'by-slot', 'token.json'), 'utf8'));
    expect(cfg).toMatchObject({ kind: 'pkcs11', label: 'slot-token' });
    expect(cfg.slot).toBeUndefined();
  });

  it('refuses what it can not use, saying why', () => {
    const fails = (args: string[], code: number, message: RegExp, extra: NodeJS.ProcessEnv = {}) => {
      const r = bkv(['serve', ...args], extra);
      expect(r.code, r.err).toBe(code);
      expect(r.err).toMatch(message);
    };
    fails(moduleArgs('v-none', 'no-such-token'), 1, /no token labelled "no-such-token" in .*libsofthsm2\.so \(its tokens: .*slot \d+: "ops-token"/);
    fails(['--data', 'v-dev', '--port', '0', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB, '--token-label', 'ops-token'], 1, /the vault keeps no PIN of it/);
    fails(['--data', 'v-x', '--token', 'pkcs11', '--module', '/nonexistent/module.so', '--token-label', 'x'], 2, /--module: no file/);
    fails(['--data', 'v-x', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB], 2, /--token-label L or --slot N/);
    fails(['--data', 'v-x', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB, '--token-label', 'a', '--slot', '1'], 2, /--token-label L or --slot N/);
    fails(['--data', 'v-x', '--token', 'pkcs11'], 2, /needs --module PATH/);
    fails(['--data', 'v-x', '--token', 'emulator', '--token-label', 'a'], 2, /--token-label goes with --token pkcs11/);
    fails(['--data', 'v-x', '--token', 'pkcs11', '--module', SOFTHSM_DEFAULT_LIB, '--token-label', 'a label that is far too long for a token'], 2, /1 to 32 bytes/);
    // The folder of the first test was made on ops-token: another token is another set of keys.
    initToken('other-token');
    fails(moduleArgs('vault', 'other-token'), 2, /was created with the module .*, token "ops-token"; it can not be opened with another token/);
    // Two tokens with one label: which holds the keys is not known.
    initToken('twin');
    initToken('twin');
    fails(moduleArgs('v-twin', 'twin'), 1, /2 tokens of .* are labelled "twin"/);
    expect(existsSync(join(dir, 'v-twin', 'vault-key.pub'))).toBe(false);
  });

  it("p11-kit's client (0.24.1) in front of bkv token serve: the vault runs on the ctr-hmac profile, escrows and recovers", async () => {
    const sock = join(dir, 'p11.sock');
    const server: ChildProcess = spawn(process.execPath, [bin, 'token', 'serve', '--data', join(dir, 'emu'), '--socket', sock], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(sock)).toBe(true);
      const label = JSON.parse(readFileSync(join(dir, 'emu', 'token.json'), 'utf8')).label as string;
      const pins = JSON.parse(readFileSync(join(dir, 'emu.operator', `token-${label}.json`), 'utf8')) as { userPin: string };
      writeFileSync(join(dir, 'emu-pin'), `${pins.userPin}\n`, { mode: 0o600 });
      const p11env = { ...env, P11_KIT_SERVER_ADDRESS: `unix:path=${sock}` };
      const args = ['--data', 'v-p11kit', '--port', '0', '--token', 'pkcs11', '--module', P11KIT_CLIENT, '--token-label', label, '--token-pin-file', join(dir, 'emu-pin')];
      const served = await startServe(dir, args, p11env);
      try {
        expect(served.err()).toMatch(/token profile ctr-hmac; the token meets ctr-hmac/);
        escrowRoundTrip(served.url, 'v-p11kit', 'bob');
      } finally {
        await stop(served.proc);
      }
      // The vault's keys went through the client into the emulator: the ctr-hmac ones, no AES-GCM key.
      const objects = spawnSync('pkcs11-tool', ['--module', P11KIT_CLIENT, '--token-label', label, '--login', '--pin', pins.userPin, '--list-objects'], { env: { ...process.env, ...p11env }, encoding: 'utf8' });
      expect(objects.stdout).toMatch(/label: +bkv-seal-ctr/);
      expect(objects.stdout).toMatch(/label: +bkv-seal-mac/);
      expect(objects.stdout).not.toMatch(/label: +bkv-seal\n/);
    } finally {
      server.kill('SIGTERM');
      await new Promise((res) => server.once('exit', res));
    }
  });

  it('a vault provisioned on gcm-ecdh does not start behind a transport that meets ctr-hmac only', async () => {
    // The SoftHSM2 token of the first test, behind `p11-kit server` and its 0.24.1 client.
    const sock = join(dir, 'kit.sock');
    const kit = spawn('p11-kit', ['server', '-f', '-p', SOFTHSM_DEFAULT_LIB, '-n', sock, 'pkcs11:token=ops-token'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(sock)).toBe(true);
      writeFileSync(join(dir, 'vault', 'token.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(dir, 'vault', 'token.json'), 'utf8')), module: P11KIT_CLIENT }));
      const r = bkv(['serve', '--data', 'vault', '--port', '0', '--token', 'pkcs11', '--token-pin-file', join(dir, 'pin')], { P11_KIT_SERVER_ADDRESS: `unix:path=${sock}` });
      expect(r.code, r.err).not.toBe(0);
      expect(r.err).toMatch(/the vault's keys are of token profile gcm-ecdh, which this token does not meet \(it meets: ctr-hmac\)/);
    } finally {
      kit.kill('SIGTERM');
      await new Promise((res) => kit.once('exit', res));
    }
  });
});
