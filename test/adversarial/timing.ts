/**
 * Timing side channels, in the style of dudect (Reparaz, Balasch, Verbauwhede, "Dude, is my code
 * constant time?", 2017): two classes of input, interleaved at random, many measurements of each;
 * Welch's t between the classes, on the raw measurements and on the measurements below several
 * percentiles of the pooled distribution (cropping the long tail that scheduling adds); |t| above
 * 4.5 says the classes' times differ.
 *
 *   npx tsx test/adversarial/timing.ts [--samples N] [--target service|engine] [--seed S]
 *       [--only login-start,ke3,compare,delay,a/a]
 *
 * Measured: the round trip of one sealed operation through the vault service (a child process on
 * loopback; `--target engine`: VaultHost.submit in this process), with the client's own crypto
 * done before the clock starts.
 *   login-start   LoginStart (KE1 to KE2) for a registered user vs an unknown one (the enclave
 *                 answers the latter with the RFC 9807 fake credential response)
 *   ke3           LoginFinish with the right KE3 vs a wrong one (after an unmeasured LoginStart)
 * Controls:
 *   compare       positive: an early-exit byte comparison of 16 KiB buffers, equal vs differing in
 *                 the first byte (in process): must leak
 *   delay         positive, at the noise of the real measurement: registered-user LoginStart in
 *                 both classes, with a busy wait of a quarter of the median added to one: must leak
 *   a/a           negative: registered-user LoginStart in both classes: should not leak
 * Every message carries its id's issuer token, and every id's token (16 registered users, 16
 * unknown ids, reused round robin) is verified once before the measurements, so the enclave's
 * token check is a cache hit in both classes (a first verification costs about 0.2 ms: it would
 * otherwise stand out in whichever class used fresh ids).
 * It reports; it does not gate (exit 0 always): a shared machine is noisy, and a difference in
 * time between registered and unknown users or right and wrong passwords is a finding to weigh,
 * not a test failure.
 */
import { randomBytes } from 'node:crypto';
import { encodeMessage } from '../../enclave/api/codec.ts';
import { ClientRequests, SUITE_CODE } from '../../enclave/api/messages.ts';
import { sealRequest } from '../../client/e2e-seal.ts';
import { clientLoginFinish, clientLoginStart } from '../../enclave/opaque/client.ts';
import { MAX_LOGIN_SESSIONS_PER_ID } from '../../enclave/vault/sessions.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import type { Relay } from '../../client/escrow.ts';
import { Moments, Rng, isMain, newReport, parseArgs, percentile, runMain, sortedCopy, tempDir, te, welchT } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { CONTEXT, rng as cryptoRng } from './lib/flows.ts';
import type { ClientOp } from './lib/flows.ts';
import { openHost, openService } from './lib/vaults.ts';
import { expectResponse } from '../../enclave/api/expect.ts';

export const THRESHOLD = 4.5;
const CROPS = [100, 99, 95, 90, 75, 50];

export interface TestResult {
  name: string;
  classes: [string, string];
  n: [number, number];
  /** Median time per class, µs. */
  median: [number, number];
  /** t on the raw measurements. */
  t: number;
  /** The largest |t| over the crops, and at which percentile. */
  maxT: number;
  cropAt: number;
  leak: boolean;
}

/** Welch's t over the raw samples and over the samples below each crop percentile. */
export function analyse(name: string, classes: [string, string], a: number[], b: number[]): TestResult {
  const pooled = sortedCopy([...a, ...b]);
  let maxT = 0;
  let cropAt = 100;
  let raw = 0;
  for (const p of CROPS) {
    const limit = p === 100 ? Infinity : percentile(pooled, p);
    const ma = new Moments();
    const mb = new Moments();
    for (const x of a) if (x <= limit) ma.push(x);
    for (const x of b) if (x <= limit) mb.push(x);
    const t = welchT(ma, mb);
    if (p === 100) raw = t;
    if (Math.abs(t) > Math.abs(maxT)) {
      maxT = t;
      cropAt = p;
    }
  }
  const med = (xs: number[]) => percentile(sortedCopy(xs), 50);
  return { name, classes, n: [a.length, b.length], median: [med(a), med(b)], t: raw, maxT, cropAt, leak: Math.abs(maxT) > THRESHOLD };
}

/** A busy wait (a sleep would hand the time to the scheduler and add its own noise). */
function spin(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

/** The positive control in process: an early-exit comparison. */
function compareControl(samples: number, rng: Rng): TestResult {
  const n = 16 * 1024;
  const secret = new Uint8Array(randomBytes(n));
  const same = Uint8Array.from(secret);
  const differs = Uint8Array.from(secret);
  differs[0]! ^= 1;
  const leakyEqual = (x: Uint8Array, y: Uint8Array) => {
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  };
  const a: number[] = [];
  const b: number[] = [];
  let sink = 0;
  for (let i = 0; i < samples; i++) {
    const cls = rng.chance(0.5);
    const t0 = performance.now();
    sink += leakyEqual(secret, cls ? same : differs) ? 1 : 0;
    const dt = (performance.now() - t0) * 1000;
    if (i >= samples / 20) (cls ? a : b).push(dt);
  }
  if (sink < 0) console.log(sink);
  return analyse('control: early-exit compare (must leak)', ['equal', 'first byte differs'], a, b);
}

interface User {
  id: Uint8Array;
  password: Uint8Array;
  used: number;
}

export interface TimingOptions {
  samples?: number;
  target?: 'service' | 'engine';
  seed?: number;
  /** Which tests to run (default all). */
  only?: ('login-start' | 'ke3' | 'compare' | 'delay' | 'a/a')[];
  log?: (line: string) => void;
}

export async function timing(o: TimingOptions = {}): Promise<Report & { results: TestResult[] }> {
  const seed = o.seed ?? Date.now() % 1e9;
  const rng = new Rng(seed);
  const samples = o.samples ?? 2000;
  const target = o.target ?? 'service';
  const want = (t: NonNullable<TimingOptions['only']>[number]) => !o.only || o.only.includes(t);
  const log = o.log ?? (() => undefined);
  const report = newReport(`timing (dudect-style Welch's t, ${samples} samples per test, target ${target}, seed ${seed})`) as Report & { results: TestResult[] };
  report.results = [];
  const add = (r: TestResult) => {
    report.results.push(r);
    report.checks++;
    report.stats[r.name] =
      `${r.leak ? 'LEAK' : 'no leak detected'}: max |t| ${Math.abs(r.maxT).toFixed(2)} (crop p${r.cropAt}), raw t ${r.t.toFixed(2)}; ` +
      `median ${r.classes[0]} ${r.median[0].toFixed(1)} µs (n ${r.n[0]}) vs ${r.classes[1]} ${r.median[1].toFixed(1)} µs (n ${r.n[1]})`;
    log(`${r.name}: ${report.stats[r.name]}`);
  };
  if (want('compare')) add(compareControl(Math.max(samples, 2000), rng));
  if (!want('login-start') && !want('ke3') && !want('delay') && !want('a/a')) return report;

  const tmp = tempDir('timing');
  const v = target === 'service' ? await openService({ dataDir: tmp.dir, partitions: 1, replayWindowMs: 0 }) : await openHost({ dataDir: tmp.dir, mode: 'worker', partitions: 1 });
  const relay: Relay = v.client.relay;
  const pk = v.client.enclavePublicKey;
  const c = v.client;
  const suite = c.suite;
  const co = { suite, context: CONTEXT, rng: cryptoRng, ksf: identityKsf };
  try {
    const users: User[] = [];
    for (let i = 0; i < 16; i++) {
      const u = { id: te.encode(`timing-${i}-${randomBytes(4).toString('hex')}`), password: te.encode(`pw-${i}`), used: 0 };
      const r = await c.register(u.id, u.password, new Uint8Array(32).fill(i), { attemptLimit: 255 });
      if (!r.registered) throw new Error('setup: registration failed');
      users.push(u);
    }
    // Unknown ids, reused like the users, each token verified (and cached by the enclave) now.
    const nobodies = Array.from({ length: 16 }, () => te.encode(`nobody-${randomBytes(8).toString('hex')}`));
    for (const id of nobodies) {
      const st = await c.status(id);
      if (!st.ok) throw st.error;
      expectResponse(st.res, 'NotRegistered', 'setup: Status of an unknown id');
    }
    let nobodyTurn = 0;
    let turn = 0;
    const user = async (): Promise<User> => {
      const u = users[turn++ % users.length]!;
      if (u.used >= MAX_LOGIN_SESSIONS_PER_ID - 1) {
        // A good login (unmeasured) resets the count and ends the sessions the measured logins
        // left open: a record holds at most MAX_LOGIN_SESSIONS_PER_ID, and this one needs one.
        const ok = await c.login(u.id, u.password);
        if (!ok.key) throw new Error('setup: reset login failed');
        u.used = 0;
      }
      u.used++;
      return u;
    };
    const seal = async (id: Uint8Array, req: ClientOp) => (await sealRequest(pk, id, encodeMessage(ClientRequests, await c.withAuth(id, req)))).message;
    const loginStartMessage = async (id: Uint8Array, password: Uint8Array) => {
      const { ke1, state } = clientLoginStart(co, password);
      return { message: await seal(id, { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 }), state };
    };
    const timed = async (id: Uint8Array, message: Uint8Array, extraUs = 0): Promise<number> => {
      const t0 = performance.now();
      await relay(id, message);
      if (extraUs) spin(extraUs);
      return (performance.now() - t0) * 1000;
    };
    // LoginStart: registered vs unknown.
    const loginStartTest = async (name: string, classes: [string, string], pick: (cls: boolean) => Promise<{ id: Uint8Array; extraUs: number }>) => {
      const a: number[] = [];
      const b: number[] = [];
      for (let i = 0; i < samples; i++) {
        const cls = rng.chance(0.5);
        const { id, extraUs } = await pick(cls);
        const { message } = await loginStartMessage(id, te.encode('guess'));
        const dt = await timed(id, message, extraUs);
        if (i >= samples / 20) (cls ? a : b).push(dt);
      }
      return analyse(name, classes, a, b);
    };
    let medianUs = 0;
    if (want('login-start')) {
      const r = await loginStartTest('login-start: registered vs unknown user', ['registered', 'unknown'], async (cls) => ({ id: cls ? (await user()).id : nobodies[nobodyTurn++ % nobodies.length]!, extraUs: 0 }));
      medianUs = r.median[0];
      add(r);
    }
    if (want('a/a')) add(await loginStartTest('control a/a: registered vs registered (should not leak)', ['registered', 'registered'], async () => ({ id: (await user()).id, extraUs: 0 })));
    if (want('delay')) {
      if (!medianUs) {
        const probe: number[] = [];
        for (let i = 0; i < 50; i++) {
          const u = await user();
          probe.push(await timed(u.id, (await loginStartMessage(u.id, te.encode('guess'))).message));
        }
        medianUs = percentile(sortedCopy(probe), 50);
      }
      const extra = Math.round(medianUs / 4);
      add(await loginStartTest(`control delay: registered vs registered + ${extra} µs (must leak)`, ['registered', `+${extra} µs`], async (cls) => ({ id: (await user()).id, extraUs: cls ? 0 : extra })));
    }

    // KE3: right vs wrong.
    if (want('ke3')) {
      const a: number[] = [];
      const b: number[] = [];
      for (let i = 0; i < samples; i++) {
        const cls = rng.chance(0.5);
        const u = await user();
        const { ke1, state } = clientLoginStart(co, u.password);
        const start = await c.send(u.id, { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 });
        if (!start.ok) throw start.error;
        const started = expectResponse(start.res, 'LoginStarted', 'setup: LoginStart');
        const fin = await clientLoginFinish(co, state, u.password, started.ke2);
        if (!fin.ok) throw new Error('setup: the client could not finish');
        const ke3 = cls ? fin.ke3 : Uint8Array.from(fin.ke3, (x, j) => (j === 0 ? x ^ 1 : x));
        const message = await seal(u.id, { type: 'LoginFinish', sessionId: started.sessionId, ke3 });
        const dt = await timed(u.id, message);
        if (cls) u.used = 0;
        if (i >= samples / 20) (cls ? a : b).push(dt);
      }
      add(analyse('ke3: right vs wrong password', ['right', 'wrong'], a, b));
    }
  } finally {
    await v.close();
    tmp.remove();
  }
  report.notes.push('exit status 0 whatever the verdicts: timing on a shared machine is evidence to weigh, not a gate');
  return report;
}

if (isMain(import.meta.url)) {
  runMain(
    async () => {
      const a = parseArgs(process.argv.slice(2), ['samples', 'target', 'seed', 'only']);
      const only = a.get('only')?.split(',') as TimingOptions['only'];
      const known = ['login-start', 'ke3', 'compare', 'delay', 'a/a'];
      for (const t of only ?? []) if (!known.includes(t)) throw new Error(`--only: unknown test ${t} (${known.join(', ')})`);
      return timing({
        only,
        samples: a.num('samples', 2000),
        target: a.get('target') === 'engine' ? 'engine' : 'service',
        seed: a.get('seed') === undefined ? undefined : a.num('seed', 1),
        log: (l) => console.log(l),
      });
    },
    { alwaysZero: true },
  );
}
