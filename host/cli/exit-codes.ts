/**
 * The `bkv` exit codes and the error object `--json` prints (issue 17, "The CLI contract"). The
 * codes are stable and never renumbered; `bkv --help` and the README list them from `EXIT_CODES`.
 * Outcomes (a wrong password, a locked or unknown record, a paced guess) are values the commands
 * return; faults are thrown and mapped to a code here, in one place.
 */
import { UsageError } from './args.ts';
import { AuthSetupError } from '../auth/issuer.ts';
import { EscrowError } from '../../client/escrow.ts';
import { VaultHttpError, VaultKeyMismatchError } from '../../client/http-relay.ts';
import { Handling, faultName } from '../../enclave/api/codes.ts';
import { scrubCredentials } from './redact.ts';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  wrongPassword: 3,
  locked: 4,
  notRegistered: 5,
  notAuthorized: 6,
  retryLater: 7,
} as const;

/** Every code with the name `--json` reports (`error.code`) and what it means; the help and README print this. */
export const EXIT_CODES: readonly { code: number; name: string; meaning: string }[] = [
  { code: EXIT.ok, name: 'ok', meaning: 'success' },
  { code: EXIT.failure, name: 'failure', meaning: 'anything else: network, storage, a damaged or mistyped file' },
  { code: EXIT.usage, name: 'usage', meaning: 'usage error: unknown command or option, a missing or bad value, no terminal to type a password' },
  { code: EXIT.wrongPassword, name: 'wrong-password', meaning: 'wrong password: one guess charged, attempts remaining printed; the guess that used the last attempt says the key is now destroyed' },
  { code: EXIT.locked, name: 'locked', meaning: 'locked: the key was destroyed before this attempt (nothing was tried)' },
  { code: EXIT.notRegistered, name: 'not-registered', meaning: 'not registered: the vault holds no record for the id' },
  { code: EXIT.notAuthorized, name: 'not-authorized', meaning: 'not authorized: no valid issuer token for the id, or replacing a live record without proof' },
  { code: EXIT.retryLater, name: 'retry-later', meaning: "retry later: the record's guess pacing or the service's rate limit; nothing was charged; retryAfterSeconds says when" },
];

/** A failure with its exit code, thrown by a command (not authorized, not registered, ...). */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly exitCode: number,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** What `--json` prints under `error` (and the human line is made of): never a credential. */
export interface ErrorReport {
  exitCode: number;
  /** The exit code's name (EXIT_CODES): usage, not-authorized, retry-later, failure, ... */
  code: string;
  /** The error's class (UsageError, EscrowError, VaultHttpError, StorageError, ...). */
  name: string;
  message: string;
  /** The enclave's fault (EscrowError): its number and name. */
  fault?: { code: number; name: string };
  retryAfterSeconds?: number;
}

/** Exit 6: the enclave refused the operation's issuer token, or a live record's replacement without proof. */
const AUTH_FAULTS: ReadonlySet<number> = new Set([
  Handling.AuthRequired,
  Handling.AuthInvalid,
  Handling.AuthExpired,
  Handling.AuthWrongSubject,
  Handling.AuthWrongAudience,
  Handling.NotAuthorized,
]);

const NEEDS_TOKEN = 'the vault needs a valid issuer token for this id (--auth-token FILE, made by `bkv auth token`)';

export const codeName = (exitCode: number): string => EXIT_CODES.find((c) => c.code === exitCode)?.name ?? 'failure';

/** The error's report for `--json`, and the line printed on stderr (`bkv: ...`). */
export function describeError(e: unknown): ErrorReport & { line: string } {
  const r = (exitCode: number, name: string, message: string, extra: Partial<ErrorReport> = {}, line = message) => ({
    exitCode,
    code: codeName(exitCode),
    name,
    message: scrubCredentials(message),
    ...extra,
    line: `bkv: ${scrubCredentials(line)}`,
  });
  if (e instanceof UsageError) return r(EXIT.usage, e.name, e.message);
  // A member of --vault whose key is not the pinned one: the command line names a wrong vault.
  if (e instanceof VaultKeyMismatchError) return r(EXIT.usage, e.name, e.message);
  if (e instanceof CliError) return r(e.exitCode, e.name, e.message);
  if (e instanceof EscrowError && AUTH_FAULTS.has(e.code)) {
    const fault = { code: e.code, name: faultName(e.code) };
    if (e.code === Handling.NotAuthorized) return r(EXIT.notAuthorized, e.name, `not authorized (${fault.name}): the id is registered; replacing or deleting it needs proof of its password or backup key`, { fault });
    return r(EXIT.notAuthorized, e.name, `not authorized (${fault.name}): ${NEEDS_TOKEN}`, { fault });
  }
  if (e instanceof EscrowError) return r(EXIT.failure, e.name, e.message, { fault: { code: e.code, name: faultName(e.code) } }, `${e.name}: ${e.message}`);
  if (e instanceof VaultHttpError && (e.code === 'AUTH_TOKEN_REQUIRED' || e.code === 'AUTH_TOKEN_REFUSED')) {
    return r(EXIT.notAuthorized, e.name, `not authorized (the service refused the issuer token: ${e.code}): ${NEEDS_TOKEN}`);
  }
  if (e instanceof VaultHttpError && e.rateLimited) {
    const s = e.retryAfterSeconds ?? 60;
    return r(EXIT.retryLater, e.name, `the vault service is rate limiting this record or address; retry in ${s} s (nothing was charged)`, { retryAfterSeconds: s });
  }
  if (e instanceof AuthSetupError) return r(EXIT.failure, e.name, e.message);
  // Never a credential: a storage URL in a message loses its user:password.
  if (e instanceof Error) return r(EXIT.failure, e.name, e.message, {}, `${e.name}: ${e.message}`);
  return r(EXIT.failure, 'Error', String(e));
}

/** The not-authorized error of an escrow command given no token at all. */
export function noTokenError(): CliError {
  return new CliError(EXIT.notAuthorized, `not authorized: ${NEEDS_TOKEN}`);
}
