/**
 * `bkv escrow register|recover|change-password|delete|status`: escrow a backup key with a vault
 * service. `--vault` takes one URL or a fleet's members comma-separated (client/vault-members.ts:
 * asked in turn, moving on only when a member certainly did not take the request). The vault's
 * public key comes from the file the operator published (`--vault-key`, written by `bkv serve`);
 * each member's live key must match it before that member gets anything. Every
 * operation carries the issuer's token for the id (`--auth-token FILE`, from `bkv auth token`);
 * the API bearer token, when the service wants one, comes from BKV_SERVICE_TOKEN.
 *
 * Outcomes are exit codes (exit-codes.ts) and, with --json, fields: `outcome`, `attemptsRemaining`,
 * `attemptLimit`, `destroyed` (the guess used the last attempt), `retryAfterSeconds`, `path`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { EscrowClient } from '../../client/escrow.ts';
import type { RecoverResult } from '../../client/escrow.ts';
import { VaultUrlError, httpRelay, parseVaultUrls } from '../../client/http-relay.ts';
import { formatBackupKey } from '../../client/backup-key.ts';
import { argon2idKsf, DEFAULT_ARGON2ID } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { parseSuiteId } from '../../enclave/opaque/suite.ts';
import { intOption, parseArgs, required, UsageError } from './args.ts';
import { readKeyFile, readPassword, readVaultKeyFile } from './io.ts';
import { EXIT, noTokenError } from './exit-codes.ts';
import { COMMANDS, unknownWord } from './help.ts';
import type { Output } from './output.ts';

const VERBS = new Set(Object.keys(COMMANDS.escrow!.verbs!));

/**
 * The exit code and message of a login that did not recover (SDK RecoverResult): 3 a wrong
 * password (the last attempt: the key is now destroyed), 4 locked before this attempt, 7 paced.
 */
function loginFailed(r: Exclude<RecoverResult, { ok: true }>, out: Output): number {
  if (r.outcome === 'wrong-password') {
    out.set({ outcome: r.outcome, attemptsRemaining: r.attemptsRemaining, destroyed: r.locked });
    console.error(r.locked ? 'wrong password; that was the last attempt: the key is now destroyed (LOCKED)' : `wrong password; attempts remaining ${r.attemptsRemaining}`);
    return EXIT.wrongPassword;
  }
  if (r.outcome === 'paced') {
    out.set({ outcome: r.outcome, attemptsRemaining: r.attemptsRemaining, retryAfterSeconds: r.retryAfterSeconds });
    console.error(`too soon: after wrong passwords the vault allows the next try in ${r.retryAfterSeconds} s (nothing was charged; attempts remaining ${r.attemptsRemaining})`);
    return EXIT.retryLater;
  }
  out.set({ outcome: r.outcome, attemptsRemaining: 0 });
  console.error('LOCKED: the key was destroyed after too many wrong passwords');
  return EXIT.locked;
}

/**
 * The record's status before a login: exit 5 when it is not registered and 4 when it is locked
 * (nothing is tried, nothing charged); otherwise its attempt limit. The enclave answers a login
 * for an unknown id like a wrong password (RFC 9807 §6.3.2.2); the token's holder may ask.
 */
async function loginPossible(client: EscrowClient, recordId: Uint8Array, id: string, out: Output): Promise<{ exit: number } | { attemptLimit: number }> {
  const st = await client.status(recordId);
  if (st.type === 'NotRegistered') {
    out.set({ outcome: 'not-registered' });
    console.error(`not registered: the vault holds no record for ${id}`);
    return { exit: EXIT.notRegistered };
  }
  out.set({ attemptLimit: st.attemptLimit });
  if (st.locked) {
    out.set({ outcome: 'locked', attemptsRemaining: 0 });
    console.error('LOCKED: the key was destroyed after too many wrong passwords; nothing was tried');
    return { exit: EXIT.locked };
  }
  return { attemptLimit: st.attemptLimit };
}

/** `--vault URL[,URL...]`: a usage error for an empty item, a URL that is not http(s), a duplicate, more than 16. */
function vaultUrls(spec: string): string[] {
  try {
    return parseVaultUrls(spec);
  } catch (e) {
    if (e instanceof VaultUrlError) throw new UsageError(`--vault: ${e.message}`);
    throw e;
  }
}

export async function escrowCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, {
    options: ['vault', 'vault-key', 'id', 'key-file', 'password-file', 'new-password-file', 'attempts', 'out', 'suite', 'auth-token', 'pacing'],
  });
  const verb = p.positional[0];
  if (verb === undefined || !VERBS.has(verb)) throw unknownWord(verb, 'escrow');
  if (p.positional.length !== 1) throw new UsageError(`unexpected ${p.positional.slice(1).join(' ')}`);
  const urls = vaultUrls(required(p, 'vault'));
  const pinned = readVaultKeyFile(required(p, 'vault-key'));
  const id = required(p, 'id');
  const recordId = new TextEncoder().encode(id);
  if (recordId.length > 64) throw new UsageError('--id: at most 64 bytes');
  out.set({ id });
  const tokenFile = p.opts.get('auth-token');
  if (tokenFile === undefined) throw noTokenError();
  let authToken: string;
  try {
    authToken = readFileSync(tokenFile, 'utf8').trim();
  } catch (e) {
    throw new UsageError(`--auth-token ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const serviceToken = process.env.BKV_SERVICE_TOKEN || undefined;
  const relay = httpRelay({ baseUrl: urls, token: serviceToken, enclavePublicKey: pinned.enclavePublicKey });
  await relay.ready(); // a member with another key (VaultKeyMismatchError, exit 2) is refused before any password is asked
  const suite = await fastSuite(parseSuiteId(p.opts.get('suite') ?? 'ristretto255-SHA512'));
  const client = new EscrowClient({
    relay,
    enclavePublicKey: pinned.enclavePublicKey,
    suite,
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: pinned.opaqueContext,
    ksf: argon2idKsf(DEFAULT_ARGON2ID),
    auth: authToken,
  });
  switch (verb) {
    case 'register': {
      const key = readKeyFile(required(p, 'key-file'));
      const pw = await readPassword(p.opts.get('password-file'), 'new password: ');
      const pacing = p.opts.get('pacing') ?? 'standard';
      if (pacing !== 'standard' && pacing !== 'none') throw new UsageError('--pacing must be standard or none');
      const r = await client.register(recordId, pw, key, { attemptLimit: intOption(p, 'attempts', 1, 255), pacing });
      out.set({ outcome: 'registered', attemptLimit: r.attemptLimit, attemptsRemaining: r.attemptsRemaining, pacing, suite: suite.id });
      console.log(`registered ${id}: ${r.attemptLimit} attempts`);
      return EXIT.ok;
    }
    case 'recover': {
      const pw = await readPassword(p.opts.get('password-file'), 'password: ');
      const before = await loginPossible(client, recordId, id, out);
      if ('exit' in before) return before.exit;
      const r = await client.recover(recordId, pw);
      if (!r.ok) return loginFailed(r, out);
      console.error(`recovered; attempts remaining ${r.attemptsRemaining}`);
      out.set({ outcome: 'recovered', attemptsRemaining: r.attemptsRemaining });
      const text = formatBackupKey(r.backupKey, { checked: true });
      const file = p.opts.get('out');
      if (file) {
        writeFileSync(file, text + '\n', { mode: 0o600, flag: 'wx' });
        out.set({ path: resolve(file) });
        console.error(`wrote the backup key to ${file}`);
      } else if (out.json) {
        out.set({ backupKey: text });
      } else {
        console.log(text);
      }
      return EXIT.ok;
    }
    case 'change-password': {
      const cur = await readPassword(p.opts.get('password-file'), 'current password: ');
      const next = await readPassword(p.opts.get('new-password-file'), 'new password: ', '--new-password-file');
      const before = await loginPossible(client, recordId, id, out);
      if ('exit' in before) return before.exit;
      const r = await client.changePassword(recordId, cur, next);
      if (!r.ok) return loginFailed(r, out);
      out.set({ outcome: 'password-changed', attemptLimit: r.attemptLimit, attemptsRemaining: r.attemptsRemaining });
      console.log(`password changed; the backup key is unchanged; ${r.attemptsRemaining} attempts`);
      return EXIT.ok;
    }
    case 'status': {
      const r = await client.status(recordId);
      if (r.type === 'NotRegistered') {
        out.set({ outcome: 'not-registered' });
        console.log('not registered');
        return EXIT.notRegistered;
      }
      out.set({ outcome: r.locked ? 'locked' : 'registered', attemptsRemaining: r.attemptsRemaining, attemptLimit: r.attemptLimit });
      console.log(r.locked ? 'LOCKED' : `registered; attempts remaining ${r.attemptsRemaining} of ${r.attemptLimit}`);
      return r.locked ? EXIT.locked : EXIT.ok;
    }
    case 'delete': {
      // Proof of the current backup key (--key-file) or of the password; a locked record needs none.
      const keyFile = p.opts.get('key-file');
      const st = await client.status(recordId);
      const locked = st.type === 'StatusResult' && st.locked === 1;
      const proof = st.type !== 'StatusResult' || locked ? null : keyFile ? { backupKey: readKeyFile(keyFile) } : { password: await readPassword(p.opts.get('password-file'), 'password: ') };
      const r = await client.delete(recordId, proof);
      switch (r.type) {
        case 'Deleted':
          out.set({ outcome: 'deleted' });
          console.log('deleted');
          return EXIT.ok;
        case 'NotRegistered':
          out.set({ outcome: 'not-registered' });
          console.error(`not registered: the vault holds no record for ${id}`);
          return EXIT.notRegistered;
        case 'WrongPassword':
          return loginFailed({ ok: false, outcome: 'wrong-password', attemptsRemaining: r.attemptsRemaining, locked: r.locked === 1 }, out);
        case 'RetryLater':
          return loginFailed({ ok: false, outcome: 'paced', attemptsRemaining: r.attemptsRemaining, retryAfterSeconds: r.retryAfterSeconds }, out);
        case 'Locked':
          return loginFailed({ ok: false, outcome: 'locked' }, out);
        default:
          throw new Error(`unexpected answer ${r.type}`);
      }
    }
    default:
      throw unknownWord(verb, 'escrow');
  }
}
