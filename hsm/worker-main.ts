/**
 * Worker-thread entry of the simulated device (the default isolation): the host starts
 * hsm/boot.mjs in a worker with the DeviceConfig (enclave/api/device.ts) as workerData; requests and responses cross the
 * thread boundary as transferred ArrayBuffers. A failpoint ends the thread at once (code 137).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './runner.ts';

const port = parentPort;
if (!port) throw new Error('hsm/worker-main.ts must run in a worker thread');

serve(workerData, {
  send: (msg, transfer) => port.postMessage(msg, transfer ?? []),
  onMessage: (fn) => port.on('message', fn),
  // Let the port deliver what was posted, then end the thread.
  exit: (code) => setImmediate(() => process.exit(code)),
  crash: () => process.exit(137),
});
