/**
 * ProcessChannel: runs the simulated device (hsm/process-main.ts, bundled by bin/bundle.mjs, or from source through hsm/boot.mjs) in a child
 * process, forked with an IPC channel using `serialization: 'advanced'` (ArrayBuffers cross as
 * bytes, no base64). The child's death, by exit code or signal (a SIGKILL, a failpoint), fails
 * every pending request with Crashed; the tail of its stderr goes into the error message.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BKV_NODE_FLAGS } from '../../bin/bundle.mjs';
import { DeviceChannel, deviceEntry } from './channel.ts';
import type { ChannelOptions } from './channel.ts';
import { deviceYoungMb } from './worker-channel.ts';
import { DEVICE_CONFIG_ENV } from '../../enclave/api/device.ts';
import type { ToDevice } from '../../enclave/api/device.ts';

const STDERR_TAIL = 4096;

/**
 * The node flags of a device process: the heap rules a device thread runs with (worker-channel.ts),
 * as flags of its own process. Its young generation capped at `youngMb` (V8 sizes a young
 * generation at three semi-spaces, so 12 MB is --max-semi-space-size=4; 0: V8's own sizing), and
 * `bkv`'s other flags (bin/bundle.mjs BKV_NODE_FLAGS: --heap-growing-percent=40). Without them a
 * forked device ran on V8's defaults whatever `bkv` itself ran with.
 */
export function deviceProcessFlags(youngMb: number): string[] {
  const rest = BKV_NODE_FLAGS.filter((f) => !f.startsWith('--max-semi-space-size='));
  return youngMb > 0 ? [`--max-semi-space-size=${Math.max(1, Math.round(youngMb / 3))}`, ...rest] : rest;
}

export class ProcessChannel extends DeviceChannel {
  private readonly child: ChildProcess;
  private stderrTail = '';

  constructor(opts: ChannelOptions) {
    const young = deviceYoungMb(); // refused before anything starts
    super(opts);
    const forward = opts.forwardStderr ?? true;
    // execArgv replaces the parent's flags (tsx's loader, vitest's) with the device's own.
    this.child = fork(deviceEntry('process', this.config), [], {
      execArgv: deviceProcessFlags(young),
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: { ...process.env, [DEVICE_CONFIG_ENV]: JSON.stringify(this.config) },
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (s: string) => {
      if (forward) process.stderr.write(s);
      this.stderrTail = (this.stderrTail + s).slice(-STDERR_TAIL);
    });
    this.child.on('message', (m: unknown) => this.onDeviceMessage(m));
    this.child.on('error', (e: Error) => {
      // Spawn failures emit 'error' and never 'close'.
      if (this.child.pid === undefined) this.onDeviceExit(`spawn failed: ${e.message}`);
    });
    // 'close' comes after the exit and after the child's stdio and IPC are drained.
    this.child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      this.onDeviceExit(signal ? `signal ${signal}` : `exit code ${code}`, lastLine(this.stderrTail));
    });
  }

  /** The device's process id (tests kill it; operators watch it). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  protected post(msg: ToDevice): void {
    if (!this.child.connected) return; // gone: its close event fails the request
    this.child.send(msg, (err) => {
      void err; // a send that fails means the child died; 'close' reports it
    });
  }

  protected async terminate(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

function lastLine(s: string): string | undefined {
  const lines = s.trim().split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return undefined;
  // An uncaught error prints its stack; the line naming the error is the useful one.
  const named = lines.find((l) => /^\w*Error\b|^Error:/.test(l.trim()));
  return (named ?? lines[lines.length - 1]!).trim().slice(0, 500);
}
