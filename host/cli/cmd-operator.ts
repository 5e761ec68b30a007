/**
 * `bkv operator`: what only the holder of the operator secret may do.
 *   bkv operator keygen --out FILE
 *       a new operator secret: 64 hex digits (32 bytes), mode 0600. `bkv serve --operator-key-file
 *       FILE` provisions its SHA-256 into a new vault's NVRAM (it can not be added later).
 *   bkv operator set-issuers --data DIR --operator-key-file FILE --auth-issuer FILE.pub ... [--auth-audience A]
 *       replaces the vault's issuer set (the enclave's SetAuth, checked against the provisioned
 *       hash), then stores it in DIR/auth/config.json; run it while the vault is stopped. The
 *       devices then boot only under the new set.
 *   bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N]
 *       checks the audit chain of every partition through its device; with the secret the device
 *       opens the events (cmd-audit.ts). Run it while the vault is stopped.
 *   bkv operator zeroize --data DIR --operator-key-file FILE [--yes]
 *       destroys every partition's device keys (the enclave's Zeroize, checked against the
 *       provisioned hash); the vault never serves again. Asks for the data folder's name on a
 *       terminal; without one, only with --yes. Run it while the vault is stopped.
 *   bkv operator status --data DIR [--operator-key-file FILE]
 *       every partition's device as it reports itself (state, self-tests, records, NVRAM use,
 *       epoch, operator secret) and the stored issuer set; with the secret the devices also count
 *       the locked records (Census). Run it while the vault is stopped.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ENCLAVE_STATE, SELF_TEST } from '../../enclave/api/messages.ts';
import { POOL_CONFIG_FILE } from '../channel/pool.ts';
import { MAX_ISSUERS } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { AuthSetupError, readIssuerPublic, readStoredAuth, writeStoredAuth } from '../auth/issuer.ts';
import { VaultHost } from '../vault/vault-host.ts';
import type { PartitionStatus } from '../vault/vault-host.ts';
import { parseArgs, required, UsageError } from './args.ts';
import type { Parsed } from './args.ts';
import { tokenPinSource } from './cmd-serve.ts';
import { readOperatorSecret } from './io.ts';
import { auditVerifyCommand, operatorCall } from './cmd-audit.ts';
import { CliError, EXIT } from './exit-codes.ts';
import { unknownWord, usageOf } from './help.ts';
import type { Output } from './output.ts';

export const OPERATOR_USAGE = usageOf('operator');

export async function operatorCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['out', 'data', 'operator-key-file', 'auth-issuer', 'auth-audience', 'token-pin-file', 'operator-dir', 'last'], flags: ['yes'] });
  const verb = p.positional[0];
  if (p.positional.length !== 1) throw p.positional.length === 0 ? unknownWord(verb, 'operator') : new UsageError(`usage: ${OPERATOR_USAGE}`);
  switch (verb) {
    case 'keygen': {
      const file = required(p, 'out');
      writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      out.set({ path: resolve(file) });
      console.error(`bkv: operator secret in ${file}: keep it apart from the data folder; bkv serve --operator-key-file ${file} provisions a new vault with it`);
      return 0;
    }
    case 'set-issuers': {
      const dataDir = required(p, 'data');
      const secret = readOperatorSecret(required(p, 'operator-key-file'));
      const files = p.all.get('auth-issuer') ?? [];
      if (files.length === 0 || files.length > MAX_ISSUERS) throw new UsageError(`--auth-issuer: 1..${MAX_ISSUERS} issuer public keys`);
      const stored = readStoredAuth(dataDir);
      if (!stored) throw new AuthSetupError(`${dataDir} holds no provisioned issuer set (auth/config.json): start it once with bkv serve`);
      const next: AuthConfig = {
        audience: p.opts.get('auth-audience') ?? stored.config.audience,
        issuers: files.map((f) => {
          const i = readIssuerPublic(f);
          return { name: i.name, publicKey: i.publicKey };
        }),
        minPacing: stored.config.minPacing,
      };
      const pins = tokenPinSource(p, dataDir);
      const host = await VaultHost.open({ dataDir, auth: stored.config, tokenPins: pins.source });
      await operatorCall(host, (h) => h.setAuth(next, secret));
      writeStoredAuth(dataDir, { config: next, development: false });
      out.set({ issuers: next.issuers.map((i) => i.name), audience: next.audience });
      console.error(`bkv: the vault now accepts tokens of ${next.issuers.map((i) => i.name).join(', ')} for audience ${next.audience}; start it with the same --auth-issuer files`);
      return 0;
    }
    case 'audit-verify':
      return auditVerifyCommand(p, out);
    case 'zeroize': {
      const dataDir = required(p, 'data');
      const secret = readOperatorSecret(required(p, 'operator-key-file'));
      requireVault(dataDir);
      await confirmZeroize(dataDir, p.flags.has('yes'));
      const host = await openDevices(p, dataDir);
      const partitions = await operatorCall(host, (h) => h.zeroize(secret));
      out.set({ zeroized: true, partitions });
      console.error(`bkv: ${partitions} partition(s) of ${dataDir} zeroized: the device keys are destroyed; no record stored there can be opened again, and bkv serve refuses the folder`);
      return 0;
    }
    case 'status': {
      const dataDir = required(p, 'data');
      const keyFile = p.opts.get('operator-key-file');
      const secret = keyFile === undefined ? undefined : readOperatorSecret(keyFile);
      requireVault(dataDir);
      const stored = readStoredAuth(dataDir);
      const host = await openDevices(p, dataDir);
      const parts = await operatorCall(host, async (h) => {
        const reports = (await h.status()).map(partitionReport);
        if (secret) {
          for (const x of reports) if (x.state === 'ready' && x.loadError === null) x.locked = (await h.census(x.partition, secret)).locked;
        }
        return reports;
      });
      const serving = parts.every((x) => x.state === 'ready' && x.loadError === null);
      const counted = secret !== undefined && parts.every((x) => x.locked !== null);
      out.set({
        serving,
        records: parts.reduce((n, x) => n + x.records, 0),
        locked: counted ? parts.reduce((n, x) => n + (x.locked ?? 0), 0) : null,
        issuers: stored ? stored.config.issuers.map((i) => i.name) : [],
        audience: stored?.config.audience ?? null,
        development: stored?.development ?? false,
        partitions: parts,
      });
      for (const x of parts) {
        console.log(
          [x.partition, x.state, `self-tests ${x.selfTest}${x.selfTestFailures.length ? ` (${x.selfTestFailures.join(',')})` : ''}`, `${x.records} records`, x.locked === null ? 'locked unknown' : `${x.locked} locked`, `NVRAM ${x.nvram.used}/${x.nvram.budget} B`, `epoch ${x.epoch}`, `operator secret ${x.operatorSecret ? 'provisioned' : 'none'}`].join('\t'),
        );
        if (x.loadError) console.error(`bkv: partition ${x.partition}: its records did not load: ${x.loadError}`);
      }
      if (!secret) console.error('bkv: locked records are counted only with --operator-key-file (the device opens every record)');
      console.error(`bkv: issuers: ${stored ? stored.config.issuers.map((i) => i.name).join(', ') : 'none stored'}${stored?.development ? ' (development mode)' : ''}; ${serving ? 'every partition can serve' : 'the vault can not serve'}`);
      return serving ? EXIT.ok : EXIT.failure;
    }
    default:
      throw unknownWord(verb, 'operator');
  }
}

const STATE_NAME = new Map<number, string>(Object.entries(ENCLAVE_STATE).map(([k, v]) => [v, k]));
const SELF_TEST_NAME = new Map<number, string>(Object.entries(SELF_TEST).map(([k, v]) => [v, k]));

/** One partition of `bkv operator status --json`. */
function partitionReport(s: PartitionStatus) {
  const i = s.info;
  const failure = new TextDecoder().decode(i.failure);
  return {
    partition: s.partition,
    state: STATE_NAME.get(i.state) ?? `state-${i.state}`,
    selfTest: SELF_TEST_NAME.get(i.selfTest) ?? `self-test-${i.selfTest}`,
    selfTestFailures: failure ? failure.split(',') : [],
    records: i.records,
    /** Counted only with the operator secret (Census). */
    locked: null as number | null,
    nvram: { used: i.nvramUsed, budget: i.nvramSize },
    epoch: i.epoch,
    operatorSecret: i.operatorKey === 1,
    loadError: s.loadError,
  };
}

/** The operator commands act on an existing vault, never make one. */
function requireVault(dataDir: string): void {
  if (!existsSync(join(dataDir, POOL_CONFIG_FILE))) throw new CliError(EXIT.failure, `${dataDir} holds no vault (no ${POOL_CONFIG_FILE}): start one there with bkv serve`);
}

/** The vault's devices, booted without loading records (a device in any state answers). */
async function openDevices(p: Parsed, dataDir: string): Promise<VaultHost> {
  const pins = tokenPinSource(p, dataDir);
  const stored = readStoredAuth(dataDir);
  return VaultHost.open({ dataDir, tokenPins: pins.source, load: false, ...(stored && { auth: stored.config }) });
}

/** Zeroize destroys the vault: on a terminal the operator types the data folder's name; without one, --yes. */
async function confirmZeroize(dataDir: string, yes: boolean): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) throw new UsageError('zeroize destroys the vault for good: pass --yes when no terminal can confirm it');
  const name = basename(resolve(dataDir));
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const answer = await new Promise<string>((res) => rl.question(`bkv: zeroize destroys every key of ${resolve(dataDir)} for good. Type ${name} to go on: `, res));
  rl.close();
  if (answer.trim() !== name) throw new CliError(EXIT.failure, 'not confirmed: nothing was zeroized');
}
