/**
 * What p11-kit's client (Debian 12's p11-kit-client.so 0.24.1) carries, measured on a module that
 * has everything: SoftHSM2 2.6.1 behind p11-kit's own `p11-kit server`. The client keeps only the
 * mechanisms its rpc-message.c knows how to serialize (`p11_rpc_mechanism_is_supported`): this
 * pins the list enclave/token-profiles.ts builds the ctr-hmac profile on (AES-ECB and the HMACs
 * cross; AES-CBC, CTR, GCM, CMAC, key wrap and ECDH1 do not), and that both profiles are met by
 * SoftHSM2 itself. A newer client that carries more fails the exact list: then the profiles
 * deserve a second look (a later p11-kit carries AES-GCM and ECDH1 parameters).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { supportedProfiles } from '../../../enclave/token-profiles.ts';
import { SOFTHSM_DEFAULT_LIB } from '../../../hsm/tokens/softhsm.ts';
import { P11_KIT_CLIENT } from '../../helpers/p11kit-server.ts';

const ci = process.env.CI === 'true' || process.env.CI === '1';
const missing = [
  !existsSync(SOFTHSM_DEFAULT_LIB) && SOFTHSM_DEFAULT_LIB,
  spawnSync('softhsm2-util', ['--version']).status !== 0 && 'softhsm2-util',
  !existsSync(P11_KIT_CLIENT) && P11_KIT_CLIENT,
  spawnSync('p11-kit', ['--help']).error !== undefined && 'p11-kit',
].filter(Boolean);
const why = missing.length ? `needs ${missing.join(', ')} (apt-get install -y softhsm2 p11-kit-modules p11-kit; softhsm-config/ci-setup.sh)` : null;
if (why && ci) throw new Error(`p11-kit client mechanisms: ${why}`);
if (why) console.warn(`p11-kit client mechanisms skipped: ${why}`);

const NAMES: Record<string, number> = {
  CKM_AES_KEY_GEN: P.CKM_AES_KEY_GEN,
  CKM_AES_ECB: P.CKM_AES_ECB,
  CKM_AES_CBC: 0x1082,
  CKM_AES_CBC_PAD: 0x1085,
  CKM_AES_CTR: 0x1086,
  CKM_AES_GCM: P.CKM_AES_GCM,
  CKM_AES_CMAC: 0x108a,
  CKM_AES_KEY_WRAP: P.CKM_AES_KEY_WRAP,
  CKM_AES_KEY_WRAP_PAD: P.CKM_AES_KEY_WRAP_PAD,
  CKM_GENERIC_SECRET_KEY_GEN: P.CKM_GENERIC_SECRET_KEY_GEN,
  CKM_SHA256: 0x250,
  CKM_SHA256_HMAC: P.CKM_SHA256_HMAC,
  CKM_SHA512_HMAC: P.CKM_SHA512_HMAC,
  CKM_EC_KEY_PAIR_GEN: P.CKM_EC_KEY_PAIR_GEN,
  CKM_ECDSA: 0x1041,
  CKM_ECDH1_DERIVE: P.CKM_ECDH1_DERIVE,
};

describe.skipIf(why !== null)("p11-kit-client.so 0.24.1 in front of SoftHSM2 (p11-kit's own server)", () => {
  let dir: string;
  let server: ChildProcess;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bkv-kit-'));
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    env = { ...process.env, SOFTHSM2_CONF: join(dir, 'softhsm2.conf') };
    const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'kit', '--so-pin', '1234', '--pin', '5678'], { env, encoding: 'utf8' });
    if (init.status !== 0) throw new Error(init.stderr);
    const sock = join(dir, 'sock');
    server = spawn('p11-kit', ['server', '-f', '-p', SOFTHSM_DEFAULT_LIB, '-n', sock, 'pkcs11:token=kit'], { env, stdio: 'ignore' });
    for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    // Read by the client with getenv when it is loaded (p11-kit client.c).
    process.env.P11_KIT_SERVER_ADDRESS = `unix:path=${sock}`;
  });
  afterAll(async () => {
    server?.kill('SIGTERM');
    if (server && server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('carries AES-ECB and the HMACs, not AES-CBC, CTR, GCM, CMAC, key wrap or ECDH1; the token behind it meets only ctr-hmac', () => {
    const { PKCS11 } = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => P.Pkcs11 & { load(p: string): void; C_Initialize(o?: unknown): void } };
    const listed = (path: string, extraEnv: NodeJS.ProcessEnv = {}) => {
      Object.assign(process.env, extraEnv);
      const lib = new PKCS11();
      lib.load(path);
      lib.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
      const m = P.normalizedModule(lib) as P.Pkcs11;
      const slot = m.C_GetSlotList(true).find((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === 'kit')!;
      const have = new Set(m.C_GetMechanismList(slot).map(Number));
      return { m, slot, names: Object.keys(NAMES).filter((n) => have.has(NAMES[n]!)) };
    };
    const direct = listed(SOFTHSM_DEFAULT_LIB, { SOFTHSM2_CONF: env.SOFTHSM2_CONF });
    expect(direct.names).toEqual(Object.keys(NAMES)); // SoftHSM2 has every one
    expect(supportedProfiles(direct.m, direct.slot)).toEqual(['gcm-ecdh', 'ctr-hmac']);
    const through = listed(P11_KIT_CLIENT);
    expect(through.names).toEqual(['CKM_AES_KEY_GEN', 'CKM_AES_ECB', 'CKM_GENERIC_SECRET_KEY_GEN', 'CKM_SHA256', 'CKM_SHA256_HMAC', 'CKM_SHA512_HMAC', 'CKM_EC_KEY_PAIR_GEN', 'CKM_ECDSA']);
    expect(supportedProfiles(through.m, through.slot)).toEqual(['ctr-hmac']);
  });
});
