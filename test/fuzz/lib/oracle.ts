/**
 * Fuzzing: the oracle's building blocks, shared by every target.
 *
 * - `Violation`: what a target throws when an input broke a rule (anything else a target throws
 *   is a violation too: the driver counts every exception).
 * - Typed errors: only `EnclaveFault` (message codec and enclave faults) and `OpaqueError` may
 *   escape a decoder; `typed()` turns anything else (TypeError, RangeError, ...) into a Violation.
 * - `SecretScanner`: no byte of a planted secret, raw or as hex (either case), may appear in a
 *   response, a fault message, a log line or an audit event. It looks for each half (16 bytes)
 *   of every secret, so a partial leak is caught too.
 * - `UntypedProbe`: the enclave converts every exception it catches into a typed fault
 *   (`toFault` in enclave/vault/compute.ts), so an internal TypeError leaves the enclave as an
 *   innocent-looking `BadPayload` "internal error". The probe sets a conditional breakpoint on
 *   `toFault` through the in-process inspector whose condition hands the caught exception to a
 *   recorder and never pauses, so every untyped exception that reaches it is seen, with its stack.
 * - `ConsoleTap`: captures console output while enclave code runs, so log lines can be scanned.
 */
import { Session } from 'node:inspector';
import { EnclaveFault } from '../../../enclave/api/codes.ts';
import { OpaqueError } from '../../../enclave/opaque/errors.ts';
import { toFault } from '../../../enclave/vault/compute.ts';
import type { Secret } from './canary.ts';
import { UnexpectedResponse, expectResponse } from '../../../enclave/api/expect.ts';

export class Violation extends Error {
  override readonly name = 'Violation';
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(`[${kind}] ${message}`);
  }
}

export function violation(kind: string, message: string): never {
  throw new Violation(kind, message);
}

/**
 * A violation of `kind` unless `res` is of `type`: expectResponse (enclave/api/expect.ts) with the
 * fuzz driver's finding in place of its error; the message names what came (Fault code included).
 */
export function expectAnswer<M extends { type: string }, const T extends M['type']>(kind: string, res: M, type: T, what: string): asserts res is Extract<M, { type: T }> {
  try {
    expectResponse(res, type, what);
  } catch (e) {
    if (e instanceof UnexpectedResponse) violation(kind, e.message);
    throw e;
  }
}

/** EnclaveFault and OpaqueError are the typed errors of this project (TokenError is the token's own). */
export function isTyped(e: unknown, extra: readonly string[] = []): boolean {
  if (e instanceof EnclaveFault || e instanceof OpaqueError) return true;
  return e instanceof Error && extra.includes(e.name);
}

export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 8).join('\n')}`;
  return `non-Error thrown: ${String(e)}`;
}

/** Runs `f`; a non-typed exception becomes a Violation. Returns the result, or the typed error. */
export function typed<T>(what: string, f: () => T, extra: readonly string[] = []): { ok: true; value: T } | { ok: false; error: Error } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof Violation) throw e;
    if (isTyped(e, extra)) return { ok: false, error: e as Error };
    throw new Violation('untyped-error', `${what} threw ${describeError(e)}`);
  }
}

export async function typedAsync<T>(what: string, f: () => Promise<T>, extra: readonly string[] = []): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    if (e instanceof Violation) throw e;
    if (isTyped(e, extra)) return { ok: false, error: e as Error };
    throw new Violation('untyped-error', `${what} threw ${describeError(e)}`);
  }
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

interface Needle {
  name: string;
  raw: Buffer;
  hex: string;
}

/** Looks for planted secrets in bytes and text. */
export class SecretScanner {
  private needles: Needle[] = [];
  private extra = new Map<string, Needle[]>();

  constructor(secrets: readonly Secret[]) {
    for (const s of secrets) this.needles.push(...SecretScanner.needlesOf(s));
  }

  private static needlesOf(s: Secret): Needle[] {
    if (s.bytes.length < 12) return [];
    const parts =
      s.bytes.length <= 16
        ? [s.bytes]
        : [s.bytes.subarray(0, 16), s.bytes.subarray(s.bytes.length - 16)];
    return parts.map((p, i) => ({ name: `${s.name}${parts.length > 1 ? (i ? '[tail]' : '[head]') : ''}`, raw: Buffer.from(p), hex: Buffer.from(p).toString('hex') }));
  }

  /** Secrets that change during a run (the current OPAQUE record of a canary), by slot. */
  setDynamic(slot: string, secrets: readonly Secret[]): void {
    this.extra.set(slot, secrets.flatMap((s) => SecretScanner.needlesOf(s)));
  }

  get count(): number {
    let n = this.needles.length;
    for (const v of this.extra.values()) n += v.length;
    return n;
  }

  /** Throws a Violation naming the secret and `where` if any secret appears in `data`. */
  scan(where: string, data: Uint8Array | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.length);
    if (buf.length < 12) return;
    const text = buf.toString('latin1').toLowerCase();
    const check = (n: Needle) => {
      if (buf.indexOf(n.raw) >= 0) violation('canary-leak', `${n.name} appears as raw bytes in ${where}`);
      if (buf.length >= 24 && text.includes(n.hex)) violation('canary-leak', `${n.name} appears as hex in ${where}`);
    };
    for (const n of this.needles) check(n);
    for (const v of this.extra.values()) for (const n of v) check(n);
  }
}

/** Records every exception that reaches the enclave's `toFault` and is not already typed. */
export class UntypedProbe {
  private static instance: UntypedProbe | null = null;
  private readonly seen: unknown[] = [];
  private session: Session | null = null;
  active = false;

  static install(): UntypedProbe {
    if (UntypedProbe.instance) return UntypedProbe.instance;
    const p = new UntypedProbe();
    const g = globalThis as unknown as Record<string, unknown>;
    g.__bkvFuzzToFault = toFault;
    g.__bkvFuzzProbe = (e: unknown) => {
      if (!(e instanceof EnclaveFault) && !(e instanceof OpaqueError) && p.seen.length < 16) p.seen.push(e);
    };
    try {
      const s = new Session();
      s.connect();
      s.post('Debugger.enable');
      s.post('Runtime.evaluate', { expression: 'globalThis.__bkvFuzzToFault' }, (err, r) => {
        const objectId = (r as { result?: { objectId?: string } } | undefined)?.result?.objectId;
        if (err || !objectId) return;
        s.post(
          'Debugger.setBreakpointOnFunctionCall',
          { objectId, condition: '(globalThis.__bkvFuzzProbe(arguments[0]), false)' },
          (err2) => {
            if (!err2) p.active = true;
          },
        );
      });
      p.session = s;
    } catch {
      p.active = false;
    }
    UntypedProbe.instance = p;
    return p;
  }

  /** The untyped exceptions seen since the last call. */
  drain(): unknown[] {
    return this.seen.splice(0);
  }

  /** Throws a Violation if an untyped exception reached toFault since the last drain. */
  check(where: string): void {
    const e = this.drain();
    if (e.length) violation('untyped-error', `an untyped exception reached the enclave's toFault during ${where} (answered as BadPayload "internal error"): ${describeError(e[0])}`);
  }
}

/** Captures console output (log lines) while enclave code runs. */
export class ConsoleTap {
  private lines: string[] = [];
  private saved: Partial<Record<'log' | 'info' | 'warn' | 'error' | 'debug', (...a: unknown[]) => void>> = {};

  start(): void {
    for (const k of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      this.saved[k] = console[k];
      console[k] = (...a: unknown[]) => {
        if (this.lines.length < 1000) this.lines.push(a.map((x) => (typeof x === 'string' ? x : x instanceof Uint8Array ? hex(x) : safeString(x))).join(' '));
      };
    }
  }

  stop(): string[] {
    for (const [k, f] of Object.entries(this.saved)) (console as unknown as Record<string, unknown>)[k] = f;
    this.saved = {};
    return this.lines.splice(0);
  }
}

function safeString(x: unknown): string {
  try {
    return typeof x === 'object' ? JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? hex(v) : v)) : String(x);
  } catch {
    return String(x);
  }
}
