/**
 * The `bkv` command line (package bin):
 *   bkv demo                      the whole story on embedded defaults
 *   bkv serve ...                 the vault service
 *   bkv key new ...               a new backup key
 *   bkv backup encrypt|decrypt    backup files under a backup key
 *   bkv escrow ...                escrow a backup key with a vault service
 *   bkv auth keygen|token         the issuer's keys and per-user tokens
 *   bkv operator keygen|set-issuers|audit-verify   the operator secret, changing the issuer set, the audit chain
 * Exit codes: 0 done, 1 failure, 2 an outcome the user must see (wrong password, locked),
 * 6 not authorized (no, invalid, expired or another record's issuer token: refused by the
 * enclave or already by the service's early check), 64 usage error.
 */
import { UsageError } from './args.ts';
import { backupCommand, keyCommand } from './cmd-backup.ts';
import { escrowCommand } from './cmd-escrow.ts';
import { AUTH_USAGE, authCommand } from './cmd-auth.ts';
import { OPERATOR_USAGE, operatorCommand } from './cmd-operator.ts';
import { AuthSetupError } from '../auth/issuer.ts';
import { EscrowError } from '../../client/escrow.ts';
import { Handling, faultName } from '../../enclave/api/codes.ts';
import { SERVE_USAGE, serveCommand } from './cmd-serve.ts';
import { VaultHttpError } from '../../client/http-relay.ts';
import { runDemo } from './demo.ts';
import { scrubCredentials } from './redact.ts';

const HELP = `bkv: Backup Key Vault
  bkv demo [--keep] [--process] [--partitions N]
  ${SERVE_USAGE}
  bkv key new [--out FILE] [--checked]
  bkv backup encrypt|decrypt IN OUT --key-file F [--overwrite]
  bkv escrow register|recover|change-password|delete|status --vault URL --vault-key FILE --id ID
        --auth-token FILE [--key-file F] [--password-file F] [--new-password-file F] [--attempts N] [--pacing standard|none] [--out FILE]
  ${AUTH_USAGE}
  ${OPERATOR_USAGE}`;

/** Exit code 6: the enclave refused the operation's issuer token. */
const AUTH_FAULTS: ReadonlySet<number> = new Set([Handling.AuthRequired, Handling.AuthInvalid, Handling.AuthExpired, Handling.AuthWrongSubject, Handling.AuthWrongAudience]);

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'demo':
      return runDemo(rest);
    case 'serve':
      return serveCommand(rest);
    case 'key':
      return keyCommand(rest);
    case 'backup':
      return backupCommand(rest);
    case 'escrow':
      return escrowCommand(rest);
    case 'auth':
      return authCommand(rest);
    case 'operator':
      return operatorCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return cmd === undefined ? 64 : 0;
    default:
      throw new UsageError(`unknown command ${cmd}\n${HELP}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`bkv: ${scrubCredentials(e.message)}`);
      process.exit(64);
    }
    if (e instanceof EscrowError && AUTH_FAULTS.has(e.code)) {
      console.error(`bkv: not authorized (${faultName(e.code)}): the vault needs a valid issuer token for this id (--auth-token FILE)`);
      process.exit(6);
    }
    if (e instanceof VaultHttpError && (e.code === 'AUTH_TOKEN_REQUIRED' || e.code === 'AUTH_TOKEN_REFUSED')) {
      console.error(`bkv: not authorized (the service refused the issuer token: ${e.code}): the vault needs a valid issuer token for this id (--auth-token FILE)`);
      process.exit(6);
    }
    if (e instanceof AuthSetupError) {
      console.error(`bkv: ${e.message}`);
      process.exit(1);
    }
    if (e instanceof VaultHttpError && e.rateLimited) {
      console.error(`bkv: the vault service is rate limiting this record or address; retry in ${e.retryAfterSeconds ?? 60} s`);
      process.exit(1);
    }
    const name = e instanceof Error ? e.name : 'Error';
    // Never a credential: a storage URL in a message loses its user:password.
    console.error(`bkv: ${name}: ${scrubCredentials(e instanceof Error ? e.message : String(e))}`);
    process.exit(1);
  },
);
