/**
 * The emulator token served by `bkv token serve` (host/cli/cmd-token.ts, hsm/tokens/p11kit/) in a
 * child process, for tests and benches that reach it through Debian's p11-kit-client.so 0.24.1
 * (package p11-kit-modules; softhsm-config/ci-setup.sh installs it).
 *
 * The server runs in its own process because the client is synchronous: a pkcs11js call blocks
 * its thread until the answer arrives, so the server can not share the caller's thread.
 * p11-kit-client.so reads P11_KIT_SERVER_ADDRESS with getenv in C_GetFunctionList (pkcs11js's
 * `load`), and each C_GetFunctionList is a module instance with its own connection (p11-kit
 * client.c): set the variable in the process's environment before loading.
 *
 * Starting is synchronous (the caller may be a synchronous `freshToken`): the child's stdout goes
 * to a file, read until it names the address (cmd-token.ts prints `P11_KIT_SERVER_ADDRESS=...`
 * once it listens).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { P11_KIT_CLIENT } from '../../host/cli/cmd-token.ts';
import { pkcs11Backend } from '../../hsm/tokens/pkcs11-module.ts';
import { bin } from './cli.ts';

/** Where Debian's p11-kit-modules installs the client module. */
export { P11_KIT_CLIENT };

/** Null when the client can run here; else why not, with the install hint. */
export function p11kitUnavailable(): string | null {
  if (!existsSync(P11_KIT_CLIENT)) return `${P11_KIT_CLIENT} not installed (apt-get install -y p11-kit-modules)`;
  return pkcs11Backend.unavailable(); // pkcs11js, which loads it
}

export interface TokenServerProcess {
  /** The value for P11_KIT_SERVER_ADDRESS. */
  address: string;
  /** The server's data folder: its emulator store, read by every connection's module instance (hsm/tokens/p11kit/server.ts). */
  dataDir: string;
  pid: number;
  /** What the server wrote on stderr so far (its refusals are JSON lines there). */
  stderr(): string;
  /** SIGTERM to the server (it closes every connection and removes its socket); removes its folder. */
  stop(): void;
}

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Starts `bkv token serve` on a new data folder whose token has these PINs; returns once it listens. */
export function startTokenServer(pins: { userPin: string; soPin: string }, timeoutMs = 60_000): TokenServerProcess {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-p11kit-serve-'));
  const outFile = join(dir, 'stdout');
  const errFile = join(dir, 'stderr');
  const out = openSync(outFile, 'w');
  const err = openSync(errFile, 'w');
  const dataDir = join(dir, 'data');
  const child = spawn(process.execPath, [bin, 'token', 'serve', '--data', dataDir, '--socket', join(dir, 'token.sock')], {
    stdio: ['ignore', out, err],
    env: { ...process.env, BKV_TOKEN_PIN: pins.userPin, BKV_TOKEN_SO_PIN: pins.soPin },
  });
  closeSync(out);
  closeSync(err);
  child.unref();
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  const stderr = () => (existsSync(errFile) ? readFileSync(errFile, 'utf8') : '');
  const stop = () => {
    if (exited === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /^P11_KIT_SERVER_ADDRESS=(\S+)$/m.exec(readFileSync(outFile, 'utf8'));
    if (m) return { address: m[1]!, dataDir, pid: child.pid!, stderr, stop };
    // The exit event needs the event loop, which this loop holds: ask the kernel instead.
    let alive = true;
    try {
      process.kill(child.pid!, 0);
    } catch {
      alive = false;
    }
    if (!alive || Date.now() > deadline) {
      const why = stderr();
      stop();
      throw new Error(`bkv token serve ${alive ? 'did not listen in time' : 'exited'}: ${why}`);
    }
    pause(50);
  }
}
