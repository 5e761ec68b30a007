/**
 * `bkv serve`: runs the vault service on a data folder and writes the vault's public key file
 * (`DIR/vault-key.pub`, what clients pin). Logs are JSON lines on stdout; the human summary
 * goes to stderr. SIGTERM / SIGINT shut down gracefully. The API bearer token, when wanted,
 * comes from the environment (BKV_SERVICE_TOKEN), never from argv.
 */
import { join } from 'node:path';
import { DEFAULT_OPAQUE_CONTEXT } from '../../enclave/api/messages.ts';
import { runUntilSignal } from '../service/signals.ts';
import { intOption, parseArgs, UsageError } from './args.ts';
import type { Parsed } from './args.ts';
import type { BucketConfig } from '../service/rate-limit.ts';
import { writeVaultKeyFile } from './io.ts';
import { resolveServeAuth, writeStoredAuth } from '../auth/issuer.ts';

export const SERVE_USAGE =
  'bkv serve [--data DIR] [--port N] [--host ADDR] [--token emulator|softhsm] [--store URL] [--partitions N] [--process] [--record-limit R/B|off] [--address-limit R/B|off] [--auth-issuer FILE.pub ...] [--auth-audience A]';

/** `R/B`: R operations a minute with a burst of B; `off`: no limit. */
function limit(p: Parsed, name: string): BucketConfig | false | undefined {
  const v = p.opts.get(name);
  if (v === undefined) return undefined;
  if (v === 'off') return false;
  const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--${name} wants RATE/BURST (e.g. 10/5) or off`);
  return { perMinute: Number(m[1]), burst: Number(m[2]) };
}

const SUITE_NAMES: Record<number, string> = { 1: 'ristretto255-SHA512', 2: 'P256-SHA256' };

export async function serveCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    options: ['data', 'port', 'host', 'token', 'store', 'partitions', 'record-limit', 'address-limit', 'auth-issuer', 'auth-audience'],
    flags: ['process'],
  });
  if (p.positional.length) throw new UsageError(`usage: ${SERVE_USAGE}`);
  const dataDir = p.opts.get('data') ?? 'data';
  const token = p.opts.get('token') ?? 'emulator';
  if (token !== 'emulator' && token !== 'softhsm') throw new UsageError('--token must be emulator or softhsm');
  const auth = await resolveServeAuth(dataDir, { issuerFiles: p.all.get('auth-issuer') ?? [], audience: p.opts.get('auth-audience') });
  const service = await runUntilSignal({
    dataDir,
    port: intOption(p, 'port', 0, 65535) ?? 8080,
    host: p.opts.get('host') ?? '127.0.0.1',
    store: p.opts.get('store'),
    mode: p.flags.has('process') ? 'process' : 'worker',
    partitions: intOption(p, 'partitions', 1, 16),
    hsmToken: token,
    token: process.env.BKV_SERVICE_TOKEN || undefined,
    rateLimits: { record: limit(p, 'record-limit'), address: limit(p, 'address-limit') },
    auth: auth.config,
    authMode: auth.development ? 'development' : 'issuers',
  });
  // The enclaves accepted this issuer set (they refuse to boot under another): the host stores it.
  writeStoredAuth(dataDir, auth);
  const info = service.vault.info;
  const file = join(dataDir, 'vault-key.pub');
  writeVaultKeyFile(file, {
    enclavePublicKey: info.enclavePublicKey,
    opaqueContext: DEFAULT_OPAQUE_CONTEXT,
    serverPublicKeys: Object.fromEntries([...info.serverPublicKeys].map(([code, k]) => [SUITE_NAMES[code] ?? String(code), k])),
  });
  console.error(`bkv: vault listening on ${service.url} (${info.partitions} partitions, ${token} token, ${p.opts.get('store') ? 'store ' + p.opts.get('store') : 'SQLite in ' + dataDir})`);
  console.error(`bkv: clients pin ${file}`);
  if (auth.development) {
    console.error(`bkv: DEVELOPMENT MODE: tokens are signed by the issuer key ${auth.devKeyFile}, which sits in the data folder (anyone who reads it can act as any user); give --auth-issuer FILE.pub in production`);
    console.error(`bkv:   a token for an id: bkv auth token --issuer-key ${auth.devKeyFile} --id ID --out TOKEN`);
  } else {
    console.error(`bkv: client operations need a token from ${auth.config.issuers.map((i) => i.name).join(', ')} for audience ${auth.config.audience}`);
  }
  return -1; // keep running until a signal
}
