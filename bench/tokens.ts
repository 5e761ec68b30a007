/**
 * Token operation rates, the emulator token against SoftHSM2, side by side in one run, through
 * the firmware's own token layer (enclave/token-pkcs11.ts over PKCS#11 v2.40): AES-256-GCM of
 * 64 bytes (C_EncryptInit + C_Encrypt), HMAC-SHA256 of 64 bytes (C_SignInit + C_Sign), 32 random
 * bytes (C_GenerateRandom), P-256 ECDH (C_DeriveKey + C_GetAttributeValue + C_DestroyObject),
 * the OPAQUE P-256 server DH done in the token (two derivations and a point recovery), an NVRAM
 * write as token data objects (destroy + create; the emulator's store fsyncs, SoftHSM2's files are
 * fsynced by host/tokens/softhsm.ts), and C_Login.
 *
 *   npx tsx bench/tokens.ts [--quick]
 *
 * Prints the machine, Node version and each token's ops/s with the emulator/SoftHSM2 ratio;
 * writes bench/results/tokens-latest.json.
 */
import { createECDH } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { p256 } from '@noble/curves/nist.js';
import * as P from '../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../enclave/token-pkcs11.ts';
import { tokenP256Key } from '../enclave/vault/token-dh.ts';
import { TokenNvram } from '../hsm/nvram-token.ts';
import { openVaultToken } from '../host/tokens/open.ts';
import { softhsmUnavailable } from '../host/tokens/softhsm.ts';
import type { TokenKind } from '../host/tokens/config.ts';

const quick = process.argv.includes('--quick');
const budgetMs = quick ? 300 : 1500;

function rate(fn: () => void): { opsPerSec: number; usPerOp: number } {
  for (let i = 0; i < 20; i++) fn(); // warm up
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    t = performance.now();
  }
  const us = ((t - t0) * 1000) / n;
  return { opsPerSec: Math.round(1e6 / us), usPerOp: Number(us.toFixed(2)) };
}

function bench(kind: TokenKind): Record<string, { opsPerSec: number; usPerOp: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bkv-bench-${kind}-`));
  try {
    const o = openVaultToken(dir, kind);
    const token = new Pkcs11Token({ module: o.module, label: o.label, userPin: o.userPin, exclusive: o.exclusive, lockObjectStore: kind === 'softhsm' });
    const aes = token.generateAesKey('bench-aes');
    const mac = token.generateHmacKey('bench-mac', 32);
    const ec = token.generateEcKeyPair('bench-ec');
    const iv = token.random(12);
    const aad = new Uint8Array(16);
    const msg = new Uint8Array(64);
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const point = new Uint8Array(peer.getPublicKey());
    const dh = tokenP256Key(token, ec);
    const m = p256.Point.BASE.multiply(7n).toBytes(true);
    const nv = new TokenNvram(token, 'bench-nvram', 256);
    const state = new Uint8Array(226);
    const s = o.module.C_OpenSession(o.module.C_GetSlotList(true).find((x) => P.trimLabel(o.module.C_GetTokenInfo(x).label) === o.label)!, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    const out: Record<string, { opsPerSec: number; usPerOp: number }> = {
      'aes-256-gcm encrypt 64 B': rate(() => token.encryptGcm(aes, iv, aad, msg)),
      'hmac-sha256 64 B': rate(() => token.hmac(mac, 'SHA-256', msg)),
      'random 32 B': rate(() => token.random(32)),
      'ecdh p-256 (x only)': rate(() => token.ecdhX(ec, point)),
      'opaque p-256 server dh in token': rate(() => dh.dh(m, 'bench')),
    };
    out['nvram write (data objects)'] = rate(() => nv.write(state));
    out['C_Login + C_Logout'] = rate(() => {
      o.module.C_Logout(s);
      o.module.C_Login(s, P.CKU_USER, o.userPin);
    });
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const why = softhsmUnavailable();
const kinds: TokenKind[] = why ? ['emulator'] : ['emulator', 'softhsm'];
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`# token operation rates: ${cpu}, ${os.cpus().length} cores, Node ${process.version}, ${quick ? 'quick' : `${budgetMs} ms per figure`}`);
if (why) console.log(`# SoftHSM2 skipped: ${why}`);
const results: Record<string, Record<string, { opsPerSec: number; usPerOp: number }>> = {};
for (const k of kinds) results[k] = bench(k);
const names = Object.keys(results.emulator!);
console.log(`\n${'operation'.padEnd(34)} ${kinds.map((k) => `${k} ops/s`.padStart(18)).join('')}${kinds.length > 1 ? '   emulator/softhsm' : ''}`);
for (const name of names) {
  const cells = kinds.map((k) => `${results[k]![name]!.opsPerSec.toLocaleString('en-US')} (${results[k]![name]!.usPerOp} us)`.padStart(18));
  const ratio = kinds.length > 1 ? `   ${(results.emulator![name]!.opsPerSec / results.softhsm![name]!.opsPerSec).toFixed(2)}x` : '';
  console.log(`${name.padEnd(34)} ${cells.join('')}${ratio}`);
}
const file = fileURLToPath(new URL('./results/tokens-latest.json', import.meta.url));
fs.mkdirSync(path.dirname(file), { recursive: true });
fs.writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), cpu, cores: os.cpus().length, node: process.version, quick, results }, null, 2)}\n`);
console.log(`\nwritten ${path.relative(process.cwd(), file)}`);
