/**
 * `bkv escrow register|recover|change-password|delete|status`: escrow a backup key with a vault
 * service. The vault's public key comes from the file the operator published (`--vault-key`,
 * written by `bkv serve`); the service's live key must match it, or nothing is sent. Every
 * operation carries the issuer's token for the id (`--auth-token FILE`, from `bkv auth token`);
 * the API bearer token, when the service wants one, comes from BKV_SERVICE_TOKEN.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { EscrowClient } from '../../client/escrow.ts';
import type { RecoverResult } from '../../client/escrow.ts';
import { fetchVaultInfo, httpRelay } from '../../client/http-relay.ts';
import { formatBackupKey } from '../../client/backup-key.ts';
import { argon2idKsf, DEFAULT_ARGON2ID } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { parseSuiteId } from '../../enclave/opaque/suite.ts';
import { intOption, parseArgs, required, UsageError } from './args.ts';
import { readKeyFile, readPassword, readVaultKeyFile } from './io.ts';

const USAGE = `usage: bkv escrow register|recover|change-password|delete|status --vault URL --vault-key FILE --id ID --auth-token FILE
  register:        --key-file F [--password-file F] [--attempts N] [--pacing standard|none] [--suite ristretto255-SHA512|P256-SHA256]
  recover:         [--password-file F] [--out FILE]
  change-password: [--password-file F] [--new-password-file F]
  delete:          --key-file F | [--password-file F]   (proof needed unless the record is locked)`;

export async function escrowCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    options: ['vault', 'vault-key', 'id', 'key-file', 'password-file', 'new-password-file', 'attempts', 'out', 'suite', 'auth-token', 'pacing'],
  });
  const verb = p.positional[0];
  if (!verb || p.positional.length !== 1) throw new UsageError(USAGE);
  const url = required(p, 'vault');
  const pinned = readVaultKeyFile(required(p, 'vault-key'));
  const recordId = new TextEncoder().encode(required(p, 'id'));
  if (recordId.length > 64) throw new UsageError('--id: at most 64 bytes');
  const tokenFile = p.opts.get('auth-token');
  if (tokenFile === undefined) {
    console.error('bkv: not authorized: the vault needs an issuer token for this id (--auth-token FILE, made by `bkv auth token`)');
    return 6;
  }
  let authToken: string;
  try {
    authToken = readFileSync(tokenFile, 'utf8').trim();
  } catch (e) {
    throw new UsageError(`--auth-token ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const serviceToken = process.env.BKV_SERVICE_TOKEN || undefined;
  const live = await fetchVaultInfo(url, { token: serviceToken });
  if (Buffer.compare(Buffer.from(live.enclavePublicKey), Buffer.from(pinned.enclavePublicKey)) !== 0) {
    throw new UsageError(`the vault at ${url} does not have the pinned enclave key: refusing to talk to it`);
  }
  const suite = await fastSuite(parseSuiteId(p.opts.get('suite') ?? 'ristretto255-SHA512'));
  const client = new EscrowClient({
    relay: httpRelay({ baseUrl: url, token: serviceToken }),
    enclavePublicKey: pinned.enclavePublicKey,
    suite,
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: pinned.opaqueContext,
    ksf: argon2idKsf(DEFAULT_ARGON2ID),
    auth: authToken,
  });
  const say = (r: RecoverResult) => {
    if (r.ok) return `recovered; attempts remaining ${r.attemptsRemaining}`;
    if (r.outcome === 'locked') return 'LOCKED: the key was destroyed after too many wrong passwords';
    if (r.outcome === 'paced') return `too soon: after wrong passwords the vault allows the next try in ${r.retryAfterSeconds} s (nothing was charged; attempts remaining ${r.attemptsRemaining})`;
    return `wrong password; attempts remaining ${r.attemptsRemaining}${r.locked ? ' (now LOCKED: the key is destroyed)' : ''}`;
  };
  switch (verb) {
    case 'register': {
      const key = readKeyFile(required(p, 'key-file'));
      const pw = await readPassword(p.opts.get('password-file'), 'new password: ');
      const pacing = p.opts.get('pacing') ?? 'standard';
      if (pacing !== 'standard' && pacing !== 'none') throw new UsageError('--pacing must be standard or none');
      const r = await client.register(recordId, pw, key, { attemptLimit: intOption(p, 'attempts', 1, 255), pacing });
      console.log(`registered ${required(p, 'id')}: ${r.attemptLimit} attempts`);
      return 0;
    }
    case 'recover': {
      const pw = await readPassword(p.opts.get('password-file'), 'password: ');
      const r = await client.recover(recordId, pw);
      console.error(say(r));
      if (!r.ok) return 2;
      const text = formatBackupKey(r.backupKey, { checked: true });
      const out = p.opts.get('out');
      if (out) {
        writeFileSync(out, text + '\n', { mode: 0o600, flag: 'wx' });
        console.error(`wrote the backup key to ${out}`);
      } else {
        console.log(text);
      }
      return 0;
    }
    case 'change-password': {
      const cur = await readPassword(p.opts.get('password-file'), 'current password: ');
      const next = await readPassword(p.opts.get('new-password-file'), 'new password: ');
      const r = await client.changePassword(recordId, cur, next);
      if (!r.ok) {
        console.error(say(r));
        return 2;
      }
      console.log(`password changed; the backup key is unchanged; ${r.attemptsRemaining} attempts`);
      return 0;
    }
    case 'status': {
      const r = await client.status(recordId);
      if (r.type === 'NotRegistered') console.log('not registered');
      else if (r.type === 'StatusResult') console.log(r.locked ? 'LOCKED' : `registered; attempts remaining ${r.attemptsRemaining} of ${r.attemptLimit}`);
      return 0;
    }
    case 'delete': {
      // Proof of the current backup key (--key-file) or of the password; a locked record needs none.
      const keyFile = p.opts.get('key-file');
      const st = await client.status(recordId);
      const locked = st.type === 'StatusResult' && st.locked === 1;
      const proof = locked ? null : keyFile ? { backupKey: readKeyFile(keyFile) } : { password: await readPassword(p.opts.get('password-file'), 'password: ') };
      const r = await client.delete(recordId, proof);
      if (r.type === 'Deleted') console.log('deleted');
      else if (r.type === 'NotRegistered') console.log('not registered');
      else {
        console.error(r.type === 'WrongPassword' ? `wrong password; attempts remaining ${r.attemptsRemaining}` : r.type);
        return 2;
      }
      return 0;
    }
    default:
      throw new UsageError(USAGE);
  }
}
