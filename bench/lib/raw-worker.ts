/**
 * A raw OPAQUE server in a worker thread (no boundary, no storage): the "all cores" baseline of
 * bench/enclave.ts. Each worker makes its own keys and inputs (16 KE1s and 4 records from our
 * client), then on {run, op, ms} runs the operation back to back for `ms` of wall-clock time
 * and answers {ops, ms, authFailures}. Idle between runs (blocked on its port).
 *
 * A login pays the issuer token check the enclave's login pays in bench/enclave.ts (the same
 * TokenVerifier, enclave/api/auth-verify.ts): its record's token, minted once by a bench issuer
 * (bench/lib/auth.ts) and verified once before the first run, so each timed login is a cache hit,
 * as each enclave login is (bench/lib/enclave-rig.ts keeps the ids it logs in to within the
 * verifier's cache).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { generateServerKeys, serverLoginStart, serverRegistrationResponse } from '../../enclave/opaque/server.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { TokenVerifier } from '../../enclave/api/auth-verify.ts';
import { BenchTokens } from './auth.ts';
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

const tokens = await BenchTokens.create();
const verifier = await TokenVerifier.create(tokens.config);
for (const id of ids) await verifier.check(tokens.bytes(id), id, Date.now()); // each token's one verification
let authFailures = 0;
const authFailed = () => void authFailures++;

const ops: Record<string, (i: number) => void> = {
  login: (i) => {
    const id = ids[i & 3]!;
    verifier.check(tokens.bytes(id), id, Date.now()).catch(authFailed);
    serverLoginStart(o, keys, ke1s[i & 15]!, id, records[i & 3]!);
  },
  register: (i) => void serverRegistrationResponse(o, keys, regs[i & 15]!, ids[i & 3]!),
};

port.on('message', async (m: { run: string; ms: number }) => {
  const f = ops[m.run]!;
  const t0 = performance.now();
  const end = t0 + m.ms;
  let n = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 4; k++) f(n++);
  }
  const ms = performance.now() - t0;
  await new Promise((r) => setImmediate(r)); // the token checks' settlements have run
  port.postMessage({ ops: n, ms, authFailures });
  authFailures = 0;
});
port.postMessage({ ready: true });
