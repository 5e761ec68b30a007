/**
 * Bootstrap of the PKCS#11 remote's token thread (plain JavaScript so Node starts it with no
 * loader, as hsm/boot.mjs does for the devices): registers tsx's ESM loader, then serves the
 * client that started it (pkcs11-server.ts). A failure to start is written into the shared
 * memory, where the client, blocked in Atomics.wait, reads it; then the thread ends.
 */
import { workerData } from 'node:worker_threads';

let serveToken;
try {
  const { register } = await import('tsx/esm/api');
  register();
  ({ serveToken } = await import('./pkcs11-server.ts'));
} catch (e) {
  fail(e);
}
if (serveToken) {
  try {
    serveToken(workerData);
  } catch (e) {
    fail(e);
  }
  process.exit(0);
}

function fail(e) {
  const sab = workerData?.sab;
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength <= 16) process.exit(1);
  const ctl = new Int32Array(sab, 0, 4);
  const msg = Buffer.from(String(e instanceof Error ? `${e.name}: ${e.message}` : e).slice(0, 1024), 'utf8').subarray(0, sab.byteLength - 16);
  new Uint8Array(sab, 16).set(msg);
  Atomics.store(ctl, 1, msg.length);
  Atomics.store(ctl, 0, 5); // FAILED (protocol.ts STATE)
  Atomics.notify(ctl, 0);
  process.exit(1);
}
