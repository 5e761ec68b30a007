/**
 * `bkv serve`: runs the vault service on a data folder and writes the vault's public key file
 * (`DIR/vault-key.pub`, what clients pin). Logs are JSON lines on stdout; the human summary
 * goes to stderr, with a progress line while the devices load their records (on a terminal:
 * records loaded of the store's total, and the rate).
 * With --json, stdout holds one object once it listens (url, key file, records, load time) and
 * the log lines go to stderr. SIGTERM / SIGINT shut down gracefully. The API bearer token, when
 * wanted, comes from the environment (BKV_SERVICE_TOKEN), never from argv.
 *
 * The token's PINs never come from the data folder (hsm/tokens/token-pins.ts): from
 * `--token-pin-file F` (outside the data folder), else from BKV_TOKEN_PIN (and BKV_TOKEN_SO_PIN
 * at the token's creation), else development mode: the operator folder (`--operator-dir`,
 * default `<data>.operator`), named at start. The store URL comes from `--store` or BKV_STORE;
 * a URL is printed only without its credentials.
 *
 * `bkv serve --fleet DIR/fleet.json --member I ...` runs one member of a fleet instead
 * (cmd-fleet.ts `fleetServe`, host/fleet/member-host.ts).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_OPAQUE_CONTEXT } from '../../enclave/api/messages.ts';
import { pino } from 'pino';
import { runUntilSignal } from '../service/signals.ts';
import { REDACT_PATHS } from '../service/logging.ts';
import { parseCorsOrigin } from '../service/http.ts';
import { closest, intOption, parseArgs, UsageError } from './args.ts';
import type { Parsed } from './args.ts';
import type { BucketConfig } from '../service/rate-limit.ts';
import { readOperatorSecret, ticker, writeVaultKeyFile } from './io.ts';
import type { Output } from './output.ts';
import { resolveServeAuth, writeStoredAuth } from '../auth/issuer.ts';
import { operatorKeyHash } from '../vault/vault-host.ts';
import { scrubCredentials } from './redact.ts';
import { TOKEN_PIN_ENV, assertOutsideDataDir, defaultOperatorDir, pinsFromEnv } from '../../hsm/tokens/token-pins.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { DEFAULT_TOKEN_KIND, TOKEN_KINDS, isTokenKind } from '../../hsm/tokens/backends.ts';
import { provisionModuleToken, readTokenConfig } from '../../hsm/tokens/config.ts';

/** Environment variable with the store URL (when --store is not given). */
export const STORE_ENV = 'BKV_STORE';

/**
 * `--token pkcs11 --module PATH --token-label L | --slot N`: names the operator's token in
 * token.json (hsm/tokens/config.ts) before the devices start; without --module, the data folder
 * must already name one. The three options belong to `--token pkcs11` only.
 */
function moduleToken(p: Parsed, token: string, dataDir: string): void {
  const given = ['module', 'token-label', 'slot'].filter((o) => p.opts.has(o));
  if (token !== 'pkcs11') {
    if (given.length) throw new UsageError(`--${given[0]} goes with --token pkcs11`);
    return;
  }
  const module = p.opts.get('module');
  if (module === undefined) {
    if (given.length) throw new UsageError(`--${given[0]} goes with --module`);
    if (readTokenConfig(dataDir)?.config.kind !== 'pkcs11') throw new UsageError(`--token pkcs11 needs --module PATH and --token-label L or --slot N (${dataDir} names no module yet)`);
    return;
  }
  if (p.opts.has('token-label') === p.opts.has('slot')) throw new UsageError('--module needs the token: --token-label L or --slot N (one of them)');
  if (!existsSync(module)) throw new UsageError(`--module: no file ${module}`);
  try {
    provisionModuleToken(dataDir, { module: resolve(module), ...(p.opts.has('token-label') && { label: p.opts.get('token-label')! }), ...(p.opts.has('slot') && { slot: intOption(p, 'slot', 0, 2 ** 32 - 1)! }) });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Where the devices find the token's PINs, from the options and the environment, and the line
 * that says so at start (never a PIN).
 */
export function tokenPinSource(p: Parsed, dataDir: string, env: NodeJS.ProcessEnv = process.env): { source: TokenPinSource; note: string } {
  const pinFile = p.opts.get('token-pin-file');
  const operatorDir = p.opts.get('operator-dir');
  const fromEnv = pinsFromEnv(env);
  const given = [pinFile !== undefined && '--token-pin-file', operatorDir !== undefined && '--operator-dir', fromEnv !== undefined && TOKEN_PIN_ENV].filter(Boolean);
  if (given.length > 1) throw new UsageError(`the token PINs come from one place: ${given.join(' and ')} were both given`);
  if (pinFile !== undefined) {
    const file = resolve(pinFile);
    assertOutsideDataDir(file, dataDir, 'the token pin file');
    return { source: { pinFile: file }, note: `token PINs: the pin file ${file}` };
  }
  if (fromEnv !== undefined) return { source: fromEnv, note: `token PINs: from ${TOKEN_PIN_ENV}` };
  const dir = operatorDir !== undefined ? resolve(operatorDir) : defaultOperatorDir(dataDir);
  assertOutsideDataDir(dir, dataDir, 'the operator folder');
  return { source: { operatorDir: dir }, note: `token PINs: ${dir} (development mode: keep this folder apart from the data folder)` };
}

/** `R/B`: R operations a minute with a burst of B; `off`: no limit. */
/** `--record-limit` / `--address-limit`: RATE/BURST per minute, or off (also `bkv serve --fleet`'s). */
export function limit(p: Parsed, name: string): BucketConfig | false | undefined {
  const v = p.opts.get(name);
  if (v === undefined) return undefined;
  if (v === 'off') return false;
  const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--${name} wants RATE/BURST (e.g. 10/5) or off`);
  return { perMinute: Number(m[1]), burst: Number(m[2]) };
}

/** The start summary; the store URL without its credentials. */
export function listeningLine(url: string, partitions: number, token: string, store: string | undefined, dataDir: string): string {
  return `vault listening on ${url} (${partitions} partitions, ${token} token, ${store ? 'store ' + scrubCredentials(store) : 'SQLite in ' + dataDir})`;
}

const SUITE_NAMES: Record<number, string> = { 1: 'ristretto255-SHA512', 2: 'P256-SHA256' };

export async function serveCommand(argv: string[], out: Output): Promise<number> {
  // one member of a fleet (cmd-fleet.ts): its own options, no vault data folder
  if (argv.some((a) => a === '--fleet' || a.startsWith('--fleet='))) return (await import('./cmd-fleet.ts')).fleetServe(argv, out);
  const p = parseArgs(argv, {
    options: ['data', 'port', 'host', 'token', 'module', 'token-label', 'slot', 'token-pin-file', 'operator-dir', 'store', 'partitions', 'record-limit', 'address-limit', 'auth-issuer', 'auth-audience', 'operator-key-file', 'cors-origin'],
    flags: ['process'],
  });
  if (p.positional.length) throw new UsageError(`unexpected ${p.positional.join(' ')}`);
  const dataDir = p.opts.get('data') ?? 'data';
  const token = p.opts.get('token') ?? DEFAULT_TOKEN_KIND;
  if (!isTokenKind(token)) {
    const near = closest(token, TOKEN_KINDS);
    throw new UsageError(`--token must be ${TOKEN_KINDS.join(' or ')}${near ? `; did you mean ${near}?` : ''}`);
  }
  moduleToken(p, token, dataDir);
  const corsOrigins = (p.all.get('cors-origin') ?? []).map((o) => {
    try {
      return parseCorsOrigin(o);
    } catch (e) {
      throw new UsageError(`--cors-origin: ${(e as Error).message}`);
    }
  });
  const store = p.opts.get('store') ?? (process.env[STORE_ENV] || undefined);
  const pins = tokenPinSource(p, dataDir);
  console.error(`bkv: ${pins.note}`);
  const auth = await resolveServeAuth(dataDir, { issuerFiles: p.all.get('auth-issuer') ?? [], audience: p.opts.get('auth-audience') });
  const loading = ticker('bkv: starting the devices and loading their records', out.progress);
  const t0 = performance.now();
  const service = await runUntilSignal({
    dataDir,
    port: intOption(p, 'port', 0, 65535) ?? 8080,
    host: p.opts.get('host') ?? '127.0.0.1',
    store,
    mode: p.flags.has('process') ? 'process' : 'worker',
    partitions: intOption(p, 'partitions', 1, 16),
    hsmToken: token,
    tokenPins: pins.source,
    token: process.env.BKV_SERVICE_TOKEN || undefined,
    // --json: stdout holds the one start object; the log lines go to stderr (the default logger's
    // settings, host/service/logging.ts, on another descriptor).
    ...(out.json && { logger: pino({ level: 'info', base: { service: 'backup-key-vault' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, pino.destination({ dest: 2, sync: true })) }),
    rateLimits: { record: limit(p, 'record-limit'), address: limit(p, 'address-limit') },
    auth: auth.config,
    authMode: auth.development ? 'development' : 'issuers',
    corsOrigins,
    onLoadProgress: (loaded: number, total: number) => loading.count(loaded, total),
    // The operator sees the token profile of the vault's keys once per start (stderr, beside the lines below).
    deviceNotes: true,
    // Provisioned into a new vault's NVRAM (SHA-256 of the secret); an existing vault keeps its own.
    ...(p.opts.has('operator-key-file') && { operatorKeyHash: operatorKeyHash(readOperatorSecret(p.opts.get('operator-key-file')!)) }),
  }).finally(() => loading.end());
  const loadMs = Math.round(performance.now() - t0);
  // The enclaves accepted this issuer set (they refuse to boot under another): the host stores it.
  writeStoredAuth(dataDir, auth);
  const info = service.vault.info;
  const file = join(dataDir, 'vault-key.pub');
  writeVaultKeyFile(file, {
    enclavePublicKey: info.enclavePublicKey,
    opaqueContext: DEFAULT_OPAQUE_CONTEXT,
    serverPublicKeys: Object.fromEntries([...info.serverPublicKeys].map(([code, k]) => [SUITE_NAMES[code] ?? String(code), k])),
  });
  console.error(`bkv: ${info.records} records loaded in ${(loadMs / 1000).toFixed(1)} s`);
  console.error(`bkv: ${listeningLine(service.url, info.partitions, token, store, dataDir)}`);
  console.error(`bkv: clients pin ${file}`);
  if (corsOrigins.length > 0) console.error(`bkv: browser pages from ${corsOrigins.join(', ')} may call the API (CORS)`);
  if (auth.development) {
    console.error(`bkv: DEVELOPMENT MODE: tokens are signed by the issuer key ${auth.devKeyFile}, which sits in the data folder (anyone who reads it can act as any user); give --auth-issuer FILE.pub in production`);
    console.error(`bkv:   a token for an id: bkv auth token --issuer-key ${auth.devKeyFile} --id ID --out TOKEN`);
  } else {
    console.error(`bkv: client operations need a token from ${auth.config.issuers.map((i) => i.name).join(', ')} for audience ${auth.config.audience}`);
  }
  out.set({
    status: 'listening',
    url: service.url,
    vaultKeyFile: resolve(file),
    partitions: info.partitions,
    records: info.records,
    loadMs,
    token,
    corsOrigins,
    onLoadProgress: (loaded: number, total: number) => loading.count(loaded, total),
    auth: auth.development ? 'development' : 'issuers',
    ...(auth.development ? { issuerKeyFile: resolve(auth.devKeyFile!) } : { issuers: auth.config.issuers.map((i) => i.name), audience: auth.config.audience }),
  });
  out.emit({});
  return -1; // keep running until a signal
}
