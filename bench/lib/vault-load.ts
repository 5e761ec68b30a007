/**
 * Load generation for the enclave path (VaultHost.submit) and the HTTP service: client messages
 * sealed beforehand (client/e2e-seal-node.ts, a fresh HPKE encapsulation each, so the enclave's replay
 * guard, if any, and the host's pass them), each carrying its record's issuer token (bench/lib/
 * auth.ts: one per record id, minted once and reused, so the enclave verifies each token once and
 * then hits its cache), a closed-loop driver at a fixed concurrency that records every latency,
 * and checks of the answers after the timed window.
 *
 * The generator runs in the bench's process, on the cores the vault is measured on, so its own
 * work is kept small: every answer is opened and checked, with native libsodium's AES-256-GCM
 * where it loads (what the enclave seals with; bench/breakdown.ts timed the answer's seal at 4.7 µs
 * on it against 11 on node:crypto in the full run of 329dcc4), else client/e2e-seal-node.ts
 * openResponse.
 */
import { randomBytes } from 'node:crypto';
import { decodeMessage, encodeMessage } from '../../enclave/api/codec.ts';
import type { ClientRequest, ClientResponse } from '../../enclave/api/messages.ts';
import { ClientRequests, ClientResponses, SUITE_CODE } from '../../enclave/api/messages.ts';
import { clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import type { Suite } from '../../enclave/opaque/suite.ts';
import type { BenchTokens } from './auth.ts';
import { FastSealer, openResponse } from '../../client/e2e-seal-node.ts';
import { expectResponse } from '../../enclave/api/expect.ts';
import { LABELS, e2eAad } from '../../enclave/api/labels.ts';
import { unpadResponse } from '../../enclave/api/padding.ts';
import { loadNativeHpke } from '../../enclave/opaque/groups/sodium-native.ts';

const nativeGcm = await loadNativeHpke().then((r) => (r.hpke?.gcm ? r.hpke : null));
const AAD_RESP = new TextEncoder().encode(LABELS.e2eResponseAad);

/** openResponse (client/e2e-seal-node.ts) on native libsodium's AES-GCM: the same bytes, the same refusals. */
function openAnswer(responseKey: Uint8Array, recordId: Uint8Array, response: Uint8Array): Uint8Array | null {
  if (!nativeGcm) return openResponse(responseKey, recordId, response);
  if (response.length < 28) return null;
  const pt = nativeGcm.gcmOpen(responseKey, response.subarray(0, 12), e2eAad(AAD_RESP, recordId), response.subarray(12));
  return pt && unpadResponse(pt);
}

/** A client request before `ClientKit.prepare` adds the record's token. */
export type ClientOp = ClientRequest extends infer U ? (U extends ClientRequest ? Omit<U, 'auth'> : never) : never;

export type Submit = (recordId: Uint8Array, message: Uint8Array) => Promise<{ sealed: boolean; response: Uint8Array }>;

export interface Prepared {
  recordId: Uint8Array;
  message: Uint8Array;
  responseKey: Uint8Array;
}

export interface Outcome {
  /** Operations answered within the measured interval (closedLoop's `rampMs`). */
  ops: number;
  /** The measured interval's length. */
  ms: number;
  /** Messages submitted in all (ramp, interval and drain): all of them when the window ran out of messages. */
  sent: number;
  opsPerSec: number;
  latenciesMs: Float64Array;
  /** Counts of the decoded answer types (after the window). */
  answers: Record<string, number>;
  /** Every message sent with its answer, in completion order. */
  answerList: { p: Prepared; r: { sealed: boolean; response: Uint8Array } }[];
}

const te = new TextEncoder();
export const rng = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

export function decodeAnswer(p: Prepared, r: { sealed: boolean; response: Uint8Array }): ClientResponse | null {
  const plain = r.sealed ? openAnswer(p.responseKey, p.recordId, r.response) : r.response;
  if (!plain) return null;
  try {
    return decodeMessage(ClientResponses, plain);
  } catch {
    return null;
  }
}

/** Client inputs for one suite: a few real KE1s and registration requests (reused: the server's work does not depend on them). */
export class ClientKit {
  readonly sealer: FastSealer;
  readonly ke1s: Uint8Array[];
  readonly regRequests: Uint8Array[];
  constructor(
    readonly suite: Suite,
    readonly enclavePublicKey: Uint8Array,
    readonly context: Uint8Array,
    /** The issuer's tokens: every prepared message carries its record's. */
    readonly tokens: BenchTokens,
  ) {
    this.sealer = new FastSealer(enclavePublicKey);
    const o = { suite, context, rng, ksf: identityKsf };
    this.ke1s = Array.from({ length: 16 }, (_, i) => clientLoginStart(o, te.encode(`pw-${i}`)).ke1);
    this.regRequests = Array.from({ length: 16 }, (_, i) => clientRegistrationStart(o, te.encode(`pw-${i}`)).request);
  }

  /** Seals `request` for `recordId` with the record's token (reused: minted at its first use). */
  prepare(recordId: Uint8Array, request: ClientOp): Prepared {
    const s = this.sealer.seal(recordId, encodeMessage(ClientRequests, { ...request, auth: this.tokens.bytes(recordId) } as ClientRequest));
    return { recordId, message: s.message, responseKey: s.responseKey };
  }

  loginStart(recordId: Uint8Array, i: number): Prepared {
    return this.prepare(recordId, { type: 'LoginStart', suite: SUITE_CODE[this.suite.id], ke1: this.ke1s[i & 15]! });
  }

  registerStart(recordId: Uint8Array, i: number, attemptLimit = 255): Prepared {
    return this.prepare(recordId, {
      type: 'RegisterStart',
      suite: SUITE_CODE[this.suite.id],
      request: this.regRequests[i & 15]!,
      attemptLimit,
      ksf: identityKsf.params,
      pacing: 0,
    });
  }

  /** A genuine registration record (for `recordId`, password `pw`) whose bytes stand in for others' in bulk registration. */
  async sampleRecord(submit: Submit, recordId: Uint8Array, pw: Uint8Array): Promise<Uint8Array> {
    const o = { suite: this.suite, context: this.context, rng, ksf: identityKsf };
    const { request, state } = clientRegistrationStart(o, pw);
    const p = this.prepare(recordId, { type: 'RegisterStart', suite: SUITE_CODE[this.suite.id], request, attemptLimit: 255, ksf: identityKsf.params, pacing: 0 });
    const a = expectResponse(decodeAnswer(p, await submit(recordId, p.message)), 'RegisterStarted', 'sample registration');
    const { record } = await clientRegistrationFinish(o, state, pw, a.response);
    const f = this.prepare(recordId, { type: 'RegisterFinish', stageId: a.stageId, record, backupKey: new Uint8Array(32).fill(7), authorization: undefined });
    expectResponse(decodeAnswer(f, await submit(recordId, f.message)), 'Registered', 'sample registration finish');
    return record;
  }
}

/**
 * Registers `ids` as fast as the vault takes them: RegisterStart then RegisterFinish per id,
 * `inFlight` ids at a time. Every record carries the same (valid) RegistrationRecord bytes:
 * the enclave's work per registration does not depend on them, and logins only need KE1->KE2.
 */
export async function bulkRegister(
  kit: ClientKit,
  submit: Submit,
  ids: Uint8Array[],
  record: Uint8Array,
  opts: { inFlight?: number; attemptLimit?: number; onProgress?: (done: number) => void } = {},
): Promise<{ ms: number; failures: number }> {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  let failures = 0;
  const key = new Uint8Array(32).fill(9);
  const one = async (i: number): Promise<void> => {
    const id = ids[i]!;
    const s = kit.registerStart(id, i, opts.attemptLimit ?? 255);
    const a = decodeAnswer(s, await submit(id, s.message));
    if (a?.type !== 'RegisterStarted') {
      failures++;
      return;
    }
    const f = kit.prepare(id, { type: 'RegisterFinish', stageId: a.stageId, record, backupKey: key, authorization: undefined });
    const b = decodeAnswer(f, await submit(id, f.message));
    if (b?.type !== 'Registered') failures++;
  };
  await Promise.all(
    Array.from({ length: Math.min(opts.inFlight ?? 256, ids.length) }, async () => {
      while (next < ids.length) {
        const i = next++;
        await one(i);
        done++;
        if (opts.onProgress && done % 1000 === 0) opts.onProgress(done);
      }
    }),
  );
  return { ms: performance.now() - t0, failures };
}

/**
 * A window's answers, copied as they arrive into one buffer allocated before it (with the index of
 * their message, and whether sealed), so that the load generator keeps no object per answer alive
 * through the window: the answers (thousands per window) would otherwise outlive the young
 * generation and load the process's old-generation collector, which the server under test pays
 * for and the raw server's loop (bench/lib/raw-worker.ts keeps nothing) does not.
 */
class AnswerStore {
  private buf: Uint8Array;
  private at = 0;
  private readonly meta: number[] = []; // per answer: message index, offset, length, sealed (0/1)
  constructor(messages: number) {
    this.buf = new Uint8Array(Math.max(1 << 16, messages * 1100));
  }
  add(i: number, sealed: boolean, response: Uint8Array): void {
    if (this.at + response.length > this.buf.length) {
      const b = new Uint8Array(Math.max(this.buf.length * 2, this.at + response.length));
      b.set(this.buf.subarray(0, this.at));
      this.buf = b;
    }
    this.buf.set(response, this.at);
    this.meta.push(i, this.at, response.length, sealed ? 1 : 0);
    this.at += response.length;
  }
  list(msgs: Prepared[]): { p: Prepared; r: { sealed: boolean; response: Uint8Array } }[] {
    const out: { p: Prepared; r: { sealed: boolean; response: Uint8Array } }[] = [];
    const m = this.meta;
    for (let k = 0; k < m.length; k += 4) {
      out.push({ p: msgs[m[k]!]!, r: { sealed: m[k + 3] === 1, response: this.buf.subarray(m[k + 1]!, m[k + 1]! + m[k + 2]!) } });
    }
    return out;
  }
}

/** Where a closed loop's measured interval starts and ends (`ClosedLoopOptions`). */
export interface LoopHooks {
  /** Called when the measured interval starts (after the ramp) and when it ends (before the answers are decoded). */
  onStart?: () => void;
  onEnd?: () => void;
}

export interface ClosedLoopOptions extends LoopHooks {
  /**
   * Sustained-load measurement: the clients run `rampMs` before the measured interval and go on
   * submitting through it; only the operations answered within the interval count (`ops`,
   * latencies), over its length (`ms`), and those answered after it (the drain of the operations
   * in flight when it ended) do not. 0 (the default): the interval is the whole run, from the
   * first submission to the last answer, drain included.
   */
  rampMs?: number;
}

/**
 * Closed loop: `concurrency` clients each submit the next prepared message as soon as their
 * previous one is answered, until the window ends or the messages run out. Answers are checked
 * after the window (decryption is not timed, and is outside the interval `onEnd` closes).
 *
 * Why a ramp: an idle vault's first batch holds every client's first operation and nothing
 * overlaps it (host/vault/engine.ts), so the first ~100 ms of a window answer a quarter to a half
 * of what the sustained rate does, and the window's last batches drain with nothing behind them; with 2 s
 * windows that was 2-5% of the rate (bench/README.md, 2026-12-06 (night)). A service under load
 * runs at the sustained rate, which is what a ramp measures.
 */
export async function closedLoop(submit: Submit, msgs: Prepared[], concurrency: number, windowMs: number, opts: ClosedLoopOptions = {}): Promise<Outcome> {
  const rampMs = opts.rampMs ?? 0;
  if (!Number.isFinite(rampMs) || rampMs < 0) throw new RangeError(`rampMs: ${rampMs}`);
  let next = 0;
  const lat: number[] = [];
  const store = new AnswerStore(msgs.length);
  const t0 = performance.now();
  const end = t0 + rampMs + windowMs;
  let errors = 0;
  // The measured interval [from, to): with a ramp, its ends are when the timers actually ran (a
  // busy event loop runs them late), so that the count, the CPU the hooks read and the length agree.
  let from = t0;
  let to = Infinity;
  let started = rampMs === 0;
  if (started) opts.onStart?.();
  const timers: NodeJS.Timeout[] = [];
  if (rampMs > 0) {
    timers.push(
      setTimeout(() => {
        from = performance.now();
        started = true;
        opts.onStart?.();
      }, rampMs),
      setTimeout(() => {
        to = performance.now();
        opts.onEnd?.();
      }, rampMs + windowMs),
    );
  }
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end && next < msgs.length) {
        const i = next++;
        const p = msgs[i]!;
        const s = performance.now();
        try {
          const r = await submit(p.recordId, p.message);
          const t = performance.now();
          if (started && t < to) lat.push(t - s);
          store.add(i, r.sealed, r.response);
        } catch {
          errors++;
        }
      }
    }),
  );
  if (rampMs > 0 && to === Infinity) {
    // The messages ran out (or every client stopped) before the interval's end: it ends now.
    for (const t of timers) clearTimeout(t);
    if (!started) {
      from = performance.now();
      opts.onStart?.();
    }
    to = performance.now();
    opts.onEnd?.();
  } else if (rampMs === 0) {
    to = performance.now();
    opts.onEnd?.();
  }
  const ms = to - from;
  const answers = store.list(msgs);
  const counts: Record<string, number> = {};
  for (const { p, r } of answers) {
    const a = decodeAnswer(p, r);
    const k = a === null ? 'undecodable' : a.type === 'Fault' ? `Fault ${a.code}` : a.type;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  if (errors) counts['submit error'] = errors;
  const sorted = Float64Array.from(lat).sort();
  return { ops: lat.length, ms, sent: next, opsPerSec: (lat.length * 1000) / ms, latenciesMs: sorted, answers: counts, answerList: answers };
}
