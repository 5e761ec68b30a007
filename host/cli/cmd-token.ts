/**
 * `bkv token serve --data DIR --socket PATH`: serves the data folder's emulator token over
 * p11-kit's RPC protocol (hsm/tokens/p11kit/), so that any PKCS#11 application loading
 * p11-kit-client.so with P11_KIT_SERVER_ADDRESS=unix:path=PATH uses it (pkcs11-tool, p11tool,
 * pkcs11js, graphene-pk11). The token is opened as `bkv serve` opens it: created at first start,
 * its label from DIR/token.json, its PINs from the same sources (--token-pin-file, BKV_TOKEN_PIN,
 * or the operator folder), never printed. Its answer on stdout is the line to put in the
 * clients' environment, `P11_KIT_SERVER_ADDRESS=unix:path=PATH`; messages and each refused
 * request (a JSON line) go to stderr. With --json,
 * stdout holds one object once it listens. SIGTERM / SIGINT close every connection (finalizing
 * its sessions) and remove the socket file, then exit 0.
 */
import { resolve } from 'node:path';
import { serveToken } from '../../hsm/tokens/p11kit/index.ts';
import type { P11KitLogEvent } from '../../hsm/tokens/p11kit/index.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { tokenPinSource } from './cmd-serve.ts';
import { unknownWord } from './help.ts';
import type { Output } from './output.ts';

/** Where Debian's p11-kit-modules installs the client module (for the hint printed at start). */
export const P11_KIT_CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

export async function tokenCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['data', 'socket', 'token-pin-file', 'operator-dir'] });
  const verb = p.positional[0];
  if (verb !== 'serve') throw unknownWord(verb, 'token');
  if (p.positional.length !== 1) throw new UsageError(`unexpected ${p.positional.slice(1).join(' ')}`);
  const dataDir = resolve(p.opts.get('data') ?? 'data');
  const socketPath = resolve(required(p, 'socket'));
  const pins = tokenPinSource(p, dataDir);
  console.error(`bkv: ${pins.note}`);
  const log = (e: P11KitLogEvent) => console.error(JSON.stringify({ time: new Date().toISOString(), ...e }));
  const server = await serveToken({
    dataDir,
    socketPath,
    pins: pins.source,
    // Connections and closes are routine; refusals are what an operator wants to see.
    log: (e) => e.event === 'refused' && log(e),
    notice: (line) => console.error(`bkv: ${line}`),
  });
  let stopping = false;
  const onSignal = (signal: keyof typeof SIGNAL_EXIT) => {
    if (stopping) process.exit(SIGNAL_EXIT[signal]);
    stopping = true;
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  console.error(`bkv: token ${server.label} of ${dataDir} served on ${server.socketPath}`);
  if (!out.json) console.log(`P11_KIT_SERVER_ADDRESS=${server.address}`);
  console.error(`bkv: for example: P11_KIT_SERVER_ADDRESS=${server.address} pkcs11-tool --module ${P11_KIT_CLIENT} --list-slots`);
  out.set({ status: 'listening', socket: server.socketPath, address: server.address, label: server.label, dataDir, module: P11_KIT_CLIENT });
  out.emit({});
  return -1; // keep running until a signal
}
