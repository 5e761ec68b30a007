/**
 * The `bkv` command line (package bin):
 *   bkv demo                      the whole story on embedded defaults
 *   bkv serve ...                 the vault service
 *   bkv key new ...               a new backup key
 *   bkv backup encrypt|decrypt    backup files under a backup key
 *   bkv escrow ...                escrow a backup key with a vault service
 *   bkv auth keygen|token         the issuer's keys and per-user tokens
 *   bkv operator keygen|set-issuers|audit-verify|zeroize|status   the operator secret, the issuer set, the audit chain, zeroization, status
 *   bkv fleet init|up|status      a fleet's folder, its member processes, their state (docs/fleet.md)
 *   bkv token serve ...           the vault's token for any PKCS#11 application (p11-kit's RPC)
 * The contract every command keeps (issue 17): the exit codes of exit-codes.ts; `--json` (one
 * JSON object on stdout, output.ts); `--help` / `-h` anywhere, from help.ts's table.
 */
import { HelpRequested } from './args.ts';
import { EXIT, describeError } from './exit-codes.ts';
import { COMMANDS, helpOf, topHelp, unknownWord } from './help.ts';
import { Output, claimStdout } from './output.ts';

type Run = (argv: string[], out: Output) => Promise<number>;

/** Each command's module, loaded when it runs (help and usage errors load none). */
const RUN: Record<string, () => Promise<Run>> = {
  demo: async () => (await import('./demo.ts')).runDemo,
  serve: async () => (await import('./cmd-serve.ts')).serveCommand,
  key: async () => (await import('./cmd-backup.ts')).keyCommand,
  backup: async () => (await import('./cmd-backup.ts')).backupCommand,
  escrow: async () => (await import('./cmd-escrow.ts')).escrowCommand,
  auth: async () => (await import('./cmd-auth.ts')).authCommand,
  operator: async () => (await import('./cmd-operator.ts')).operatorCommand,
  fleet: async () => (await import('./cmd-fleet.ts')).fleetCommand,
  token: async () => (await import('./cmd-token.ts')).tokenCommand,
};

/** `escrow recover` for `bkv escrow recover ...`: the command and its verb, as far as the words say. */
function commandName(cmd: string | undefined, rest: string[]): string {
  if (cmd === undefined || !(cmd in COMMANDS)) return cmd ?? '';
  const verb = rest.find((w) => !w.startsWith('-'));
  return verb !== undefined && COMMANDS[cmd]!.verbs?.[verb] ? `${cmd} ${verb}` : cmd;
}

function printHelp(out: Output, cmd?: string, verb?: string): number {
  if (cmd === undefined) {
    if (out.json) out.set({ help: { text: topHelp() } });
    else console.log(topHelp());
  } else {
    const h = helpOf(cmd, verb);
    if (out.json) out.set({ help: { usage: h.usage, about: h.about, example: h.example } });
    else console.log(h.text);
  }
  return EXIT.ok;
}

async function main(argv: string[], out: Output): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    console.error(topHelp());
    throw unknownWord(undefined);
  }
  if (cmd === '--help' || cmd === '-h') return printHelp(out);
  if (cmd === 'help') {
    const [c, v] = rest.filter((w) => w !== '--json');
    if (c !== undefined && !(c in COMMANDS)) throw unknownWord(c);
    return printHelp(out, c, v);
  }
  const load = RUN[cmd];
  if (!load) throw unknownWord(cmd);
  try {
    return await (await load())(rest, out);
  } catch (e) {
    if (e instanceof HelpRequested) return printHelp(out, cmd, e.positional[0]);
    throw e;
  }
}

const given = process.argv.slice(2);
// `bkv --json escrow ...` is `bkv escrow ... --json`.
const argv = given[0] === '--json' ? given.slice(1) : given;
const out = new Output(given.includes('--json'), commandName(argv[0], argv.slice(1)));
if (out.json) claimStdout();
main(argv, out).then(
  (code) => {
    if (code < 0) return; // bkv serve, bkv token serve: run until a signal
    out.emit({ exitCode: code });
    process.exit(code);
  },
  (e: unknown) => {
    const { line, exitCode, ...error } = describeError(e);
    console.error(line);
    if (exitCode === EXIT.usage && argv[0] !== undefined && argv[0] in COMMANDS) console.error(`bkv: usage: bkv ${out.command} --help`);
    out.emit({ exitCode, error });
    process.exit(exitCode);
  },
);
