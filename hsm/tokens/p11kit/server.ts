/**
 * A p11-kit RPC server on a Unix socket: any PKCS#11 application that loads Debian's
 * p11-kit-client.so (package p11-kit-modules) with `P11_KIT_SERVER_ADDRESS=unix:path=SOCKET`
 * talks to the vault's emulator token through it (pkcs11-tool, p11tool, pkcs11js,
 * graphene-pk11). The protocol is p11-kit 0.24.1's, version 0 (calls.ts, codec.ts, frames.ts).
 *
 * `serveToken` opens the data folder's token as `bkv serve` does (hsm/tokens/open.ts: the label
 * from token.json, created with its PINs at first start; the PINs from the operator's source,
 * never from the data folder) and gives each connection its own emulator module on the same
 * store file. `serveModules` serves any module factory (tests).
 *
 * The socket file is made owner-only (0600): whoever can connect can use the token's public
 * objects and try PINs (the emulator's lockout bounds the tries). A stale socket file left by a
 * server that died is replaced; one that a live server answers on is refused.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type * as P from '../../../enclave/api/pkcs11.ts';
import type { TokenPinSource } from '../../../enclave/api/device.ts';
import { EmulatorModule } from '../emulator/module.ts';
import type { EmulatorOptions } from '../emulator/module.ts';
import { EMULATOR_STORE_FILE } from '../emulator/backend.ts';
import { openVaultToken } from '../open.ts';
import { normalizedModule } from '../../../enclave/api/pkcs11.ts';
import { DEFAULT_CODEC_LIMITS } from './codec.ts';
import type { CodecLimits } from './codec.ts';
import { Connection } from './connection.ts';
import type { P11KitLogEvent } from './connection.ts';
import { DEFAULT_FRAME_LIMITS } from './frames.ts';
import type { FrameLimits } from './frames.ts';

export type { P11KitLogEvent } from './connection.ts';

export interface ServeModulesOptions {
  socketPath: string;
  /** A new, not yet initialized module for each connection. */
  newModule: () => P.Pkcs11;
  /** Connections served at once (default 64); more are closed at once. */
  maxConnections?: number;
  frameLimits?: Partial<FrameLimits>;
  codecLimits?: Partial<CodecLimits>;
  /** How long one frame may take from its first byte to its last (default 30 s); idle time between frames is not limited. */
  frameTimeoutMs?: number;
  /** Where connection events go (default: refusals as JSON lines on stderr). */
  log?: (e: P11KitLogEvent) => void;
}

export interface RunningTokenServer {
  /** The socket's path (absolute). */
  socketPath: string;
  /** The value for P11_KIT_SERVER_ADDRESS. */
  address: string;
  /** Connections open now. */
  connections(): number;
  /** Stops accepting, closes every connection (finalizing its module) and removes the socket file. */
  close(): Promise<void>;
}

/** The P11_KIT_SERVER_ADDRESS value for a socket path (p11-kit rpc-transport.c `unix:path=`). */
export function serverAddress(socketPath: string): string {
  return `unix:path=${path.resolve(socketPath)}`;
}

/** Removes a socket file no server answers on; refuses one a live server holds. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`a server is already listening on ${socketPath}`);
  fs.unlinkSync(socketPath);
}

export async function serveModules(opts: ServeModulesOptions): Promise<RunningTokenServer> {
  const socketPath = path.resolve(opts.socketPath);
  await clearStaleSocket(socketPath);
  const frameLimits = { ...DEFAULT_FRAME_LIMITS, ...opts.frameLimits };
  const codecLimits = { ...DEFAULT_CODEC_LIMITS, ...opts.codecLimits };
  const log = opts.log ?? ((e: P11KitLogEvent) => e.event === 'refused' && process.stderr.write(JSON.stringify(e) + '\n'));
  const open = new Set<Connection>();
  let next = 1;
  const server = net.createServer((socket) => {
    const c = new Connection(socket, {
      id: next++,
      newModule: opts.newModule,
      frameLimits,
      codecLimits,
      maxUnreadAnswers: 4 * frameLimits.maxBody,
      frameTimeoutMs: opts.frameTimeoutMs ?? 30_000,
      log,
    });
    open.add(c);
    socket.on('close', () => open.delete(c));
  });
  server.maxConnections = opts.maxConnections ?? 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, 0o600);
  let closing: Promise<void> | null = null;
  return {
    socketPath,
    address: serverAddress(socketPath),
    connections: () => open.size,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of open) c.close();
      }).finally(() => fs.rmSync(socketPath, { force: true }));
      return closing;
    },
  };
}

export interface ServeTokenOptions {
  /** The vault's data folder: its emulator token store, token.json with the token's label. */
  dataDir: string;
  socketPath: string;
  /** Where the token's PINs come from (default: development mode, the operator folder `<data>.operator`). */
  pins?: TokenPinSource;
  /** Emulator tuning (tests): PIN lockout after N failures, PBKDF2 iterations. */
  emulator?: Omit<EmulatorOptions, 'storeFile'>;
  maxConnections?: number;
  frameLimits?: Partial<FrameLimits>;
  codecLimits?: Partial<CodecLimits>;
  frameTimeoutMs?: number;
  log?: (e: P11KitLogEvent) => void;
  /** One line for the operator when opening the token changed something on disk. */
  notice?: (line: string) => void;
}

/** The served token: the server and the token's label. */
export interface RunningVaultTokenServer extends RunningTokenServer {
  label: string;
}

/** Serves the data folder's emulator token on a Unix socket (see the file's header). */
export async function serveToken(opts: ServeTokenOptions): Promise<RunningVaultTokenServer> {
  const dataDir = path.resolve(opts.dataDir);
  const opened = openVaultToken(dataDir, 'emulator', { pins: opts.pins, emulator: opts.emulator, log: opts.notice });
  opened.module.C_Finalize();
  const storeFile = path.join(dataDir, EMULATOR_STORE_FILE);
  const server = await serveModules({
    socketPath: opts.socketPath,
    newModule: () => normalizedModule(new EmulatorModule({ ...opts.emulator, storeFile })),
    maxConnections: opts.maxConnections,
    frameLimits: opts.frameLimits,
    codecLimits: opts.codecLimits,
    frameTimeoutMs: opts.frameTimeoutMs,
    log: opts.log,
  });
  return { ...server, label: opened.label };
}
