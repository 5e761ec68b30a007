/**
 * The help of every `bkv` command and subcommand, in one table: usage, what it does, an example,
 * and its outcome exit codes. `bkv --help`, `bkv CMD --help`, `bkv CMD VERB --help` (and `-h`,
 * anywhere on the line) print from here; test/host/cli/cli-contract.test.ts runs every entry.
 */
import { UsageError, closest } from './args.ts';
import { EXIT, EXIT_CODES, codeName } from './exit-codes.ts';
import { DEFAULT_TOKEN_KIND, TOKEN_KINDS } from '../../hsm/tokens/backends.ts';

export interface HelpEntry {
  usage: string;
  about: string;
  example: string;
  /** The outcome codes besides 0, 1 and 2 (which every command has). */
  exits?: readonly number[];
}

export interface CommandHelp extends HelpEntry {
  /** Subcommands (`bkv escrow register`); a command with none takes no verb. */
  verbs?: Record<string, HelpEntry>;
}

const VAULT = '--vault URL[,URL...] --vault-key FILE --id ID --auth-token FILE';
const ESCROW_EXAMPLE = 'bkv escrow VERB --vault http://127.0.0.1:8080 --vault-key vault/vault-key.pub --id alice --auth-token alice.tok';
const escrowExample = (verb: string, more: string) => `${ESCROW_EXAMPLE.replace('VERB', verb)} ${more}`.trimEnd();
const PASSWORD_NOTE = 'Passwords are typed at a prompt that does not echo, or read from the first line of a file (--password-file); never from the command line, and no prompt without a terminal (exit 2).';
const PIN_SOURCE = '[--token-pin-file F | --operator-dir DIR]';

export const COMMANDS: Record<string, CommandHelp> = {
  demo: {
    usage: 'bkv demo [--keep] [--process] [--partitions N]\n  bkv demo --fleet [--keep]   (three member processes, the leader killed midway)',
    about:
      'The whole escrow story on embedded defaults, in a temporary folder: a backup key and an encrypted backup, the key escrowed under a password, a wrong and the right password, the backup restored, a stranger refused, a user locked out. --keep keeps the folder; --process runs the devices as child processes.',
    example: 'bkv demo --partitions 1',
  },
  serve: {
    usage: `bkv serve [--data DIR] [--port N] [--host ADDR] [--token ${TOKEN_KINDS.join('|')}] [--module PATH --token-label L | --slot N] ${PIN_SOURCE} [--store URL] [--partitions N] [--process] [--record-limit R/B|off] [--address-limit R/B|off] [--auth-issuer FILE.pub ...] [--auth-audience A] [--operator-key-file F] [--cors-origin ORIGIN ...]\n        (environment: BKV_STORE, BKV_TOKEN_PIN, BKV_TOKEN_SO_PIN, BKV_SERVICE_TOKEN)\n  bkv serve --fleet DIR/fleet.json --member I [--operator-key-file F] [--peer-listen H:P] [--api-listen H:P] [--peer-via J=H:P ...] [--store URL] [--record-limit R/B|off] [--address-limit R/B|off] [--replication-test]`,
    about:
      `Runs the vault service on a data folder (default ./data) and writes DIR/vault-key.pub, the file clients pin. Logs are JSON lines on stdout, the summary on stderr (with a progress line while the records load, on a terminal: records loaded of the total, rate); SIGTERM or SIGINT stop it gracefully. --token picks the PKCS#11 token backend (hsm/tokens/backends.ts; default ${DEFAULT_TOKEN_KIND}). --token pkcs11 runs on a token you made in any PKCS#11 module (a hardware HSM's): --module PATH names the module, --token-label or --slot the token (the data folder remembers both), its user PIN comes from --token-pin-file or BKV_TOKEN_PIN; the vault never creates that token and refuses one that lacks a mechanism the firmware needs, listing what is missing. Without --auth-issuer it runs in development mode: an issuer key pair in DIR/auth. --cors-origin https://app.example (repeatable) lets browser pages from that origin call the API (CORS: preflights answered, Access-Control-Allow-Origin for that origin only); without it no CORS header is sent. With --json, stdout holds one JSON object once it listens (url, vaultKeyFile, partitions, records, auth, corsOrigins, loadMs) and the log lines go to stderr. With --fleet, it runs member I of a fleet instead (docs/fleet.md, "The member process"): the key ceremony over the members' folders on its first start (the operator secret: --operator-key-file, default DIR/auth/operator.secret), then the fleet's vault keys into the member's token (the emulator in its data folder, its PINs in DIR/auth/member-<i>.operator/) and, once it is normal in a view, DIR/vault-key.pub, the one file every member's clients pin (a member whose key is not the file's exits 1, as does one whose token holds another fleet's keys); then GET /fleet/status and POST /fleet/ops on its client address; --peer-listen and --api-listen listen elsewhere than fleet.json says, --peer-via J=H:P reaches member J through H:P (a proxy).`,
    example: 'bkv serve --data ./vault --port 8080 --auth-issuer issuer/issuer.pub',
  },
  key: {
    usage: '',
    about: 'Backup keys.',
    example: 'bkv key new --out my.key',
    verbs: {
      new: {
        usage: 'bkv key new [--out FILE] [--checked]',
        about: 'A new backup key (64 hex digits). --out writes it with its check group to FILE (mode 0600, never overwrites); otherwise it is printed (--checked adds the check group; --json puts it in "key").',
        example: 'bkv key new --out my.key',
      },
    },
  },
  backup: {
    usage: '',
    about: 'Backup files under a backup key (AES-256-GCM in authenticated chunks, bounded memory).',
    example: 'bkv backup encrypt chats.db chats.bkv --key-file my.key',
    verbs: {
      encrypt: {
        usage: 'bkv backup encrypt IN OUT --key-file F [--overwrite]',
        about: 'Encrypts IN to OUT under the backup key in F. On a terminal a progress line shows bytes, rate and time left.',
        example: 'bkv backup encrypt chats.db chats.bkv --key-file my.key',
      },
      decrypt: {
        usage: 'bkv backup decrypt IN OUT --key-file F [--overwrite]',
        about: 'Decrypts IN to OUT with the backup key in F; OUT appears only once every chunk has verified. On a terminal a progress line shows bytes, rate and time left.',
        example: 'bkv backup decrypt chats.bkv chats.db --key-file my.key',
      },
    },
  },
  escrow: {
    usage: '',
    about: `Escrows a backup key with a vault service. --vault takes one URL or a fleet's members comma-separated (at most 16), asked in turn: the next only when a member certainly did not take the request (could not be reached, not the leader, not serving), never after a charging request was sent. Every member's key must match the pinned file (--vault-key, written by bkv serve); every operation carries the issuer's token for the id (--auth-token, from bkv auth token); the API bearer token, when the service wants one, comes from BKV_SERVICE_TOKEN. ${PASSWORD_NOTE}`,
    example: escrowExample('status', ''),
    verbs: {
      register: {
        usage: `bkv escrow register ${VAULT} --key-file F [--password-file F] [--attempts N] [--pacing standard|none] [--suite ristretto255-SHA512|P256-SHA256]`,
        about: `Escrows the backup key in F under a password with N guesses (1..255, default 10) and guess pacing (default standard: 3 free, then 1 min, 5 min, 15 min, 1 h). ${PASSWORD_NOTE}`,
        example: escrowExample('register', '--key-file my.key --password-file pw --attempts 10'),
        exits: [EXIT.notAuthorized, EXIT.retryLater],
      },
      recover: {
        usage: `bkv escrow recover ${VAULT} [--password-file F] [--out FILE]`,
        about: `Recovers the backup key with the password: printed, or written to FILE (mode 0600; --json puts it in "backupKey" without --out). One guess is charged before the vault answers. ${PASSWORD_NOTE}`,
        example: escrowExample('recover', '--password-file pw --out my.key'),
        exits: [EXIT.wrongPassword, EXIT.locked, EXIT.notRegistered, EXIT.notAuthorized, EXIT.retryLater],
      },
      'change-password': {
        usage: `bkv escrow change-password ${VAULT} [--password-file F] [--new-password-file F]`,
        about: `Changes the password (a recovery with the current one authorizes it); the backup key stays. ${PASSWORD_NOTE}`,
        example: escrowExample('change-password', '--password-file pw --new-password-file pw2'),
        exits: [EXIT.wrongPassword, EXIT.locked, EXIT.notRegistered, EXIT.notAuthorized, EXIT.retryLater],
      },
      delete: {
        usage: `bkv escrow delete ${VAULT} [--key-file F | --password-file F]`,
        about: `Deletes the record and the escrowed key. A live record needs proof: the backup key (--key-file) or the password (charged as a guess); a locked one needs none. ${PASSWORD_NOTE}`,
        example: escrowExample('delete', '--key-file my.key'),
        exits: [EXIT.wrongPassword, EXIT.notRegistered, EXIT.notAuthorized, EXIT.retryLater],
      },
      status: {
        usage: `bkv escrow status ${VAULT}`,
        about: 'Whether the id is registered, and its attempts remaining of its limit. Exit 0 registered, 4 locked, 5 not registered.',
        example: escrowExample('status', ''),
        exits: [EXIT.locked, EXIT.notRegistered, EXIT.notAuthorized, EXIT.retryLater],
      },
    },
  },
  auth: {
    usage: '',
    about: "The issuer's tools: its key pair, and the short-lived per-user tokens a vault accepts (bkv serve --auth-issuer DIR/issuer.pub).",
    example: 'bkv auth token --issuer-key issuer/issuer.key --id alice --out alice.tok',
    verbs: {
      keygen: {
        usage: 'bkv auth keygen --out DIR [--name NAME]',
        about: 'Writes a new issuer key pair: DIR/issuer.key (mode 0600) and DIR/issuer.pub (for bkv serve --auth-issuer); never overwrites one.',
        example: 'bkv auth keygen --out issuer --name accounts.example',
      },
      token: {
        usage: 'bkv auth token --issuer-key FILE --id ID [--ttl 10m] [--audience A] [--out FILE]',
        about: 'A token for one record id, signed by the issuer (EdDSA JWT; --ttl up to 1h, default 10m): printed, or written to FILE (mode 0600; --json puts it in "token" without --out).',
        example: 'bkv auth token --issuer-key issuer/issuer.key --id alice --ttl 10m --out alice.tok',
      },
    },
  },
  operator: {
    usage: '',
    about: 'What only the holder of the operator secret may do.',
    example: 'bkv operator keygen --out /secure/operator.key',
    verbs: {
      keygen: {
        usage: 'bkv operator keygen --out FILE',
        about: "A new operator secret, 64 hex digits, mode 0600. bkv serve --operator-key-file FILE provisions its SHA-256 into a new vault's NVRAM (it can not be added later).",
        example: 'bkv operator keygen --out /secure/operator.key',
      },
      'set-issuers': {
        usage: `bkv operator set-issuers --data DIR --operator-key-file FILE --auth-issuer FILE.pub ... [--auth-audience A]\n        ${PIN_SOURCE}   (the token's PINs, as for bkv serve)`,
        about: "Replaces the vault's issuer set (the enclave checks the operator secret against the provisioned hash) and stores it in DIR/auth/config.json; run it while the vault is stopped. The devices then boot only under the new set.",
        example: 'bkv operator set-issuers --data ./vault --operator-key-file /secure/operator.key --auth-issuer b/issuer.pub',
      },
      'audit-verify': {
        usage: `bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N]\n        ${PIN_SOURCE}   (the token's PINs, as for bkv serve)`,
        about:
          "Has every partition's device check its audit chain from the committed head (in NVRAM) back to the first event; with the operator secret the devices also open the events, which the host stores sealed, and the newest N are printed (default 20, 0: all): partition, sequence, time, kind, record hash, attempts remaining. Run it while the vault is stopped. Exits 1 when a chain does not verify, naming the first event that does not. --json: ok, opened, partitions[{partition, headSeq, verified, broken, entries}].",
        example: 'bkv operator audit-verify --data ./vault --operator-key-file /secure/operator.key --last 50',
      },
      zeroize: {
        usage: `bkv operator zeroize --data DIR --operator-key-file FILE [--yes]\n        ${PIN_SOURCE}   (the token's PINs, as for bkv serve)`,
        about:
          "Destroys the vault for good: every partition's device checks the operator secret against the provisioned hash, destroys its token keys and marks its NVRAM zeroized, so no stored record can ever be opened again and bkv serve refuses the folder (exit 1). A wrong secret destroys nothing (exit 1). Run it while the vault is stopped. On a terminal it asks you to type the data folder's name; without a terminal it needs --yes (else exit 2). Running it again finishes an interrupted run. --json: zeroized, partitions.",
        example: 'bkv operator zeroize --data ./vault --operator-key-file /secure/operator.key',
      },
      status: {
        usage: `bkv operator status --data DIR [--operator-key-file FILE]\n        ${PIN_SOURCE}   (the token's PINs, as for bkv serve)`,
        about:
          "Boots every partition's device, loads its records and prints what the device reports, one line per partition: state (ready, selfTestFailed, zeroized, notLoaded), power-on self-tests (passed, failed, notRun), records, locked records, NVRAM use against its region's budget, committed epoch, whether an operator secret is provisioned; then the stored issuer set. Locked records are counted only with the operator secret (the device opens every stored record once; a record's lock is sealed, and the host alone must not learn when one locks); without it they are unknown (null). Run it while the vault is stopped. Exits 1 when a partition can not serve, or the secret is refused. --json: serving, records, locked (null without the secret), issuers, audience, development, partitions[{partition, state, selfTest, selfTestFailures, records, locked, nvram: {used, budget}, epoch, operatorSecret, loadError}].",
        example: 'bkv operator status --data ./vault --operator-key-file /secure/operator.key --json',
      },
    },
  },
  fleet: {
    usage: '',
    about: 'A fleet of vault members with majority replication (docs/fleet.md).',
    example: 'bkv fleet init --members 3 --dir ./fleet',
    verbs: {
      init: {
        usage: 'bkv fleet init --members 3|5|7 --dir DIR [--host ADDR] [--base-port P] [--auth-issuer FILE.pub ...] [--operator-key-file F] [--store-template postgres://USER@HOST:PORT/NAME_{member}]',
        about:
          'Writes a new fleet folder: DIR/fleet.json (the fleet id; each member\'s client address host:P+2i, its address for the other members host:P+2i+1, its data folder DIR/member-<i>/), without --auth-issuer a development issuer key pair in DIR/auth/ (bkv auth token --issuer-key DIR/auth/issuer.key), and without --operator-key-file a development operator secret DIR/auth/operator.secret (mode 0600) for the members\' key ceremony. Defaults: --host 127.0.0.1, --base-port 7400. Each member\'s vault store is SQLite vault.db in its data folder, unless --store-template gives each its own PostgreSQL database: {member} in the URL becomes the member\'s id (written to fleet.json as the member\'s store; a template without {member}, one that still gives two members one database and schema, or one with a password is refused, exit 2: give the password through PGPASSWORD or ~/.pgpass). The databases must exist (createdb); a member refuses to start on a missing one, or on one another running process holds. Never overwrites a fleet.json (exit 1); an interrupted run can be run again. --json: file, fleetId, members[{id, api, peer, data, store (a PostgreSQL store only)}], devIssuerKey, devOperatorSecret.',
        example: 'bkv fleet init --members 3 --dir ./fleet --base-port 7400',
      },
      up: {
        usage: 'bkv fleet up DIR [--operator-key-file F]',
        about:
          'Starts every member of the fleet in DIR as a child process (bkv serve --fleet DIR/fleet.json --member I), for development: prints where each listens (clients, members, data folder, store, pid), restarts none, and SIGINT (Ctrl-C) or SIGTERM stops them all (exit 0 when they all stopped cleanly, 1 otherwise). On the first start the members run the key ceremony over their folders. --json: one object once started (status, file, members[{id, api, peer, data, store (a PostgreSQL store only), pid}]).',
        example: 'bkv fleet up ./fleet',
      },
      add: {
        usage: 'bkv fleet add DIR [--host ADDR] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]',
        about:
          'Adds a member to a running fleet (docs/fleet.md "Membership changes in the processes"): refused (exit 1) unless every member is up, normal under one leader, not behind, with no change in flight. Makes the new member\'s folder DIR/member-<k>/ (k: the next id, never one given before) and its device identity, writes it to fleet.json ("joined": the change\'s serial; default addresses: the next two ports above the fleet\'s highest, on the first member\'s host), sends the change and the operator\'s approval of it (a MAC under the operator secret, default DIR/auth/operator.secret) to every member until a majority has it committed, then waits for a member\'s grant of the fleet secret in the new folder (join.json). Start the new member then (bkv serve --fleet DIR/fleet.json --member k): it opens the grant, copies the other members\' rows, and is admitted. Until it is, the fleet needs every other member. Run again after an interruption, it resumes the same addition. --timeout S (default 60) bounds each wait (exit 1 with what is missing). --json: member, serial, api, peer, data, start.',
        example: 'bkv fleet add ./fleet',
      },
      remove: {
        usage: 'bkv fleet remove DIR --member I [--operator-key-file F] [--timeout S]',
        about:
          'Removes member I from a running fleet: refused (exit 1) unless every other member is up and normal with no change in flight; a fleet of 3 goes to 2 only when member I does not answer (the two left then need each other: the step that replaces a member gone for good), and a fleet of 2 is not made smaller. The change and the operator\'s approval go to every member until a majority of the remaining ones has it committed; fleet.json then marks the member "removed" (its id is never given again, bkv fleet up and status skip it, and bkv serve --fleet refuses to run it). The removed member learns its removal from the leader and retires: stop its process. --json: removed, serial.',
        example: 'bkv fleet remove ./fleet --member 0',
      },
      replace: {
        usage: 'bkv fleet replace DIR --member I [--host ADDR] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]',
        about:
          'bkv fleet add, then waits (up to --timeout, default 60 s) for the new member to serve (start it when the command says so), then bkv fleet remove --member I: the fleet goes from N to N+1 to N members. When member I does not answer (gone for good, after bkv fleet reform --without I if the others had to re-form), it removes member I first, then adds: 3 to 2 to 3, 5 to 4 to 5 (an addition with a member down could not commit). --json: added, removed, serial (of the removal), start.',
        example: 'bkv fleet replace ./fleet --member 0 --timeout 300',
      },
      reform: {
        usage: 'bkv fleet reform DIR --without I[,J] [--operator-key-file F] [--timeout S]',
        about:
          'After a whole-fleet restart with members gone for good (a machine lost), the members left re-form without them (docs/fleet.md "Re-form without some members"): a re-form otherwise waits for the vote of every member id. Refused (exit 1) unless every member it keeps answers and they do not serve under a leader, every member named in --without is silent, the kept members report one epoch and, without the members named, keep a majority of the charter at each one\'s tip (the tips may differ by a change not yet committed: name a member that change adds, and that never ran, in --without too). The operator\'s approval (a MAC under the operator secret, default DIR/auth/operator.secret, over the epoch, the ids and each kept member\'s boot, read from its status each round: an approval is good only for the processes the operator saw) goes to every kept member until all are normal under one leader in a later epoch (--timeout S, default 60: exit 1 with each member\'s state; run again, it resumes). The member left out stays in the charter: started again from its folder, it rejoins and is admitted. The operator vouches that the kept members\' folders are their own and current: a kept member restored from an old copy could lose what only the member left out holds. --json: fromEpoch, epoch, without, members, leader.',
        example: 'bkv fleet reform ./fleet --without 2',
      },
      status: {
        usage: 'bkv fleet status DIR',
        about:
          'Asks each member for its state (GET /fleet/status on its client address) and prints one line a member: status, epoch, view, leader, commit, lag (the leader\'s commit minus the member\'s), applied (the last batch its vault committed or applied), charter (the serial of the charter at its commit point and the ids it names, serial:ids), health (ok, lagging, behind: its vault waits to copy another member\'s rows, cut-off: it leads but hears no majority, not-normal, unreachable). Exit 0 when a majority of the members is normal under one leader that answers and is not cut off; exit 1 otherwise (when members re-form and wait for silent ones, the message names them and the way out if one is gone for good: bkv fleet reform DIR --without I; a cut-off leader it names). --json: file, fleetId, leader, healthy, members[{member, api, reachable, status, epoch, view, leader, commit, lag, vaultKey, appliedBatch, behind, charter {serial, members}, health}] (vaultKey: the fingerprint of the vault key the member\'s token gives, the same on every member of a fleet; null before its key ceremony is done).',
        example: 'bkv fleet status ./fleet --json',
      },
    },
  },
  token: {
    usage: '',
    about: "The vault's PKCS#11 token for other programs.",
    example: 'bkv token serve --data ./vault --socket /run/bkv/token.sock',
    verbs: {
      serve: {
        usage: `bkv token serve --data DIR --socket PATH ${PIN_SOURCE}\n        (environment: BKV_TOKEN_PIN, BKV_TOKEN_SO_PIN)`,
        about:
          "Serves the data folder's emulator token on a Unix socket (mode 0600) in p11-kit's RPC protocol, so that any PKCS#11 application that loads p11-kit-client.so (Debian package p11-kit-modules) with P11_KIT_SERVER_ADDRESS=unix:path=PATH uses it: pkcs11-tool, p11tool, pkcs11js, graphene-pk11. The token is opened and created as bkv serve does, with the PINs from the same sources. Prints the P11_KIT_SERVER_ADDRESS=... line on stdout; each refused request is a JSON line on stderr. Each client connection has its own sessions and logins; the PIN lockout is the token's. SIGTERM or SIGINT close every connection and remove the socket. --json: one object once it listens (status, socket, address, label, dataDir, module).",
        example: 'bkv token serve --data ./vault --socket /run/bkv/token.sock',
      },
    },
  },
};

/** Every command's usage: its own line, or one line per subcommand. */
export function usageOf(cmd: string): string {
  const c = COMMANDS[cmd]!;
  return c.verbs ? Object.values(c.verbs).map((v) => v.usage).join('\n  ') : c.usage;
}

const exitLine = (codes: readonly number[] = []) =>
  `exit codes: 0 ok, 1 failure, 2 usage${codes.map((n) => `, ${n} ${codeName(n)}`).join('')} (bkv --help explains them)`;
const GENERIC = '--json: one JSON object on stdout, messages on stderr, the same exit codes. --help, -h: this help.';

/** The help of `bkv CMD` or `bkv CMD VERB` (a verb it does not have: the command's). */
export function helpOf(cmd: string, verb?: string): { usage: string; about: string; example: string; text: string } {
  const c = COMMANDS[cmd]!;
  const v = verb !== undefined ? c.verbs?.[verb] : undefined;
  if (v) {
    return { ...v, text: `usage: ${v.usage}\n\n${v.about}\n\nexample:\n  ${v.example}\n\n${exitLine(v.exits)}\n${GENERIC}` };
  }
  const usage = usageOf(cmd);
  const more = c.verbs ? `\nbkv ${cmd} VERB --help: one subcommand (${Object.keys(c.verbs).join(', ')}).` : '';
  const exits = [...new Set(Object.values(c.verbs ?? {}).flatMap((x) => x.exits ?? []))].sort((a, b) => a - b);
  return { usage, about: c.about, example: c.example, text: `usage:\n  ${usage}\n\n${c.about}\n\nexample:\n  ${c.example}\n${more}\n${exitLine(exits)}\n${GENERIC}` };
}

const JSON_HELP = `--json (every command): stdout holds exactly one JSON object; every message goes to stderr; the exit code is the same.
  {"ok": true|false, "exitCode": N, "command": "escrow recover", ...its fields, "elapsedMs": N}
  escrow: "id", "outcome" (registered, recovered, password-changed, deleted, wrong-password, locked, paced,
    not-registered), "attemptsRemaining", "attemptLimit", "destroyed", "retryAfterSeconds", "path"
  an error: {"ok": false, "exitCode": N, "command": ..., "error": {"code": "usage", "name": "UsageError", "message": ...}}
    ("code" is the exit code's name below; "fault": {"code", "name"} when the enclave refused; "retryAfterSeconds")
  bkv serve: the object is printed once it listens (no exitCode yet); its JSON log lines go to stderr.`;

/** `bkv --help`: every command, the flags they share, the exit codes and the JSON shapes. */
export function topHelp(): string {
  const cmds = Object.keys(COMMANDS).map((c) => `  ${usageOf(c)}`).join('\n');
  const codes = EXIT_CODES.map((c) => `  ${String(c.code).padEnd(2)} ${c.name.padEnd(15)} ${c.meaning}`).join('\n');
  return `bkv: Backup Key Vault
usage:
${cmds}
  bkv help [COMMAND [VERB]]

Every command and subcommand takes --help (-h), anywhere on the line, with an example.
Passwords and PINs never come from the command line: a prompt (only on a terminal) or a file.

exit codes:
${codes}

${JSON_HELP}

example:
  bkv demo
  bkv escrow register --help`;
}

/** A usage error for a word that is not a command (or not a subcommand of `cmd`), naming the closest one. */
export function unknownWord(word: string | undefined, cmd?: string): UsageError {
  const known = cmd ? Object.keys(COMMANDS[cmd]?.verbs ?? {}) : Object.keys(COMMANDS);
  const what = cmd ? 'subcommand' : 'command';
  const of = cmd ? ` of bkv ${cmd}` : '';
  if (word === undefined) return new UsageError(`a ${what}${of} is missing: ${known.join(', ')}`);
  const near = closest(word, known);
  return new UsageError(`unknown ${what} ${word}${of}${near ? `; did you mean ${near}?` : ''}`);
}
