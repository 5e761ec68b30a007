/**
 * A raw OPAQUE server in a worker thread (no boundary, no storage): the "all cores" baseline of
 * bench/enclave.ts. Each worker makes its own keys and inputs (16 KE1s and 4 records from our
 * client), then on {run, op, ms} runs the operation back to back for `ms` of wall-clock time
 * and answers {ops, ms}. Idle between runs (blocked on its port).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { generateServerKeys, serverLoginStart, serverRegistrationResponse } from '../../enclave/opaque/server.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import type { SuiteId } from '../../enclave/opaque/suite.ts';

const port = parentPort!;
const suite = await fastSuite((workerData as { suite?: SuiteId }).suite ?? 'ristretto255-SHA512');
const rng = (n: number) => new Uint8Array(randomBytes(n));
const context = new TextEncoder().encode('BackupKeyVault-v1');
const o = { suite, context, rng, ksf: identityKsf };
const keys = generateServerKeys(suite, rng);
const te = new TextEncoder();
const ids = Array.from({ length: 4 }, (_, i) => te.encode(`user-${i}`));
const records: Uint8Array[] = [];
for (let i = 0; i < 4; i++) {
  const { request, state } = clientRegistrationStart(o, te.encode(`pw-${i}`));
  const response = serverRegistrationResponse(o, keys, request, ids[i]!);
  records.push((await clientRegistrationFinish(o, state, te.encode(`pw-${i}`), response)).record);
}
const ke1s = Array.from({ length: 16 }, (_, i) => clientLoginStart(o, te.encode(`pw-${i & 3}`)).ke1);
const regs = Array.from({ length: 16 }, (_, i) => clientRegistrationStart(o, te.encode(`pw-${i}`)).request);

const ops: Record<string, (i: number) => void> = {
  login: (i) => void serverLoginStart(o, keys, ke1s[i & 15]!, ids[i & 3]!, records[i & 3]!),
  register: (i) => void serverRegistrationResponse(o, keys, regs[i & 15]!, ids[i & 3]!),
};

port.on('message', (m: { run: string; ms: number }) => {
  const f = ops[m.run]!;
  const t0 = performance.now();
  const end = t0 + m.ms;
  let n = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 4; k++) f(n++);
  }
  port.postMessage({ ops: n, ms: performance.now() - t0 });
});
port.postMessage({ ready: true });
