/**
 * Child-process entry of the simulated device: the host forks hsm/boot.mjs with an IPC channel
 * (`serialization: 'advanced'`, so ArrayBuffers cross as bytes) and the DeviceConfig as JSON in
 * the environment variable DEVICE_CONFIG_ENV (both in enclave/api/device.ts). The device exits
 * when the host goes away (IPC disconnect), and a failpoint kills it with SIGKILL.
 */
import { DEVICE_CONFIG_ENV } from '../enclave/api/device.ts';
import type { FromDevice } from '../enclave/api/device.ts';
import { serve } from './runner.ts';

const send = process.send?.bind(process);
if (!send) throw new Error('hsm/process-main.ts must run as a forked child with an IPC channel');

let config: unknown;
try {
  config = JSON.parse(process.env[DEVICE_CONFIG_ENV] ?? '');
} catch {
  config = undefined;
}

process.on('disconnect', () => process.exit(0));

let unsent = 0;
let exitCode: number | undefined;
const maybeExit = () => {
  if (exitCode !== undefined && unsent === 0) process.exit(exitCode);
};

serve(config, {
  send: (msg: FromDevice) => {
    unsent++;
    send(msg, undefined, undefined, () => {
      unsent--;
      maybeExit();
    });
  },
  onMessage: (fn) => process.on('message', fn),
  exit: (code) => {
    exitCode = code;
    maybeExit();
  },
  crash: () => {
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is delivered before kill() returns to a process signalling itself; never reached.
    process.exit(137);
  },
});
