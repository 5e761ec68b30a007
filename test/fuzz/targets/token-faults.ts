/**
 * Fuzz target: the token calls that cross the boundary between the enclave and its root of trust
 * (enclave/token.ts). A real token is another library or process (SoftHSM2 through PKCS#11); what
 * comes back from it is input to the enclave. The input is a fault schedule: pairs of bytes
 * (call index, fault), at most 16; the n-th token call of the scenario gets the fault (the index
 * byte modulo CALL_SPAN: the scenario makes 35-40 token calls, so most of 0..255 would hit none):
 *   0 throws TokenError CKR_DEVICE_ERROR     1 throws TokenError CKR_SESSION_HANDLE_INVALID
 *   2 throws a plain Error (a broken binding)  3 returns its output one byte short
 *   4 returns its output one byte long        5 returns its output with one bit flipped
 *   6 returns an empty output                 7 findKey finds nothing / a generate returns a stale handle
 * The scenario, on a fresh vault with the planted token (lib/vault.ts; it has the EC calls, so the
 * P-256 server key's Diffie-Hellman runs in it): boot and load, register canary B (P-256; canary
 * A, ristretto255, when the input has an odd length and its last byte is odd), a login with a
 * wrong password, a login with the right one, Status; then the faults stop and the enclave must
 * still answer.
 * Oracle: every answer decodes and carries no planted secret (scanned as in lib/vault.ts); no key
 * is released to the wrong-password login; a released key is the canary's unless a fault
 * corrupted a token output; a TokenError must come out as a typed fault (PlatformFault.TokenError),
 * not as BadPayload "internal error" (`token-error-unmapped`); a malformed token output must be
 * refused, not crash the enclave code with a TypeError or RangeError (`untyped-error`).
 */
import type { KeyHandle, Token } from '../../../enclave/token.ts';
import { TokenError } from '../../../enclave/token.ts';
import { CANARY_A, CANARY_B } from '../lib/canary.ts';
import type { CanaryToken } from '../lib/canary.ts';
import { equalBytes, Violation, violation } from '../lib/oracle.ts';
import { FuzzVault } from '../lib/vault.ts';

export const name = 'token-faults';
export const weight = 2;
export const maxInputLength = 32;
export const timeoutMs = 4000;

const INJECTED = 'bkv-fuzz injected token fault';
/** Call indices a schedule addresses (a little above the scenario's call count: lastCallLog). */
const CALL_SPAN = 64;

class FaultyToken implements Token {
  calls = 0;
  active = true;
  schedule = new Map<number, number>();
  /** An output of decryptGcm or hmac was corrupted (a released key may then differ). */
  corruptedOutput = false;
  hits: string[] = [];
  /** Every call, by index (make-seeds.ts picks one call of each method from it). */
  readonly log: string[] = [];
  constructor(private readonly inner: CanaryToken) {}

  private fault(method: string): number | undefined {
    const i = this.calls++;
    if (this.log.length < 1024) this.log.push(method);
    if (!this.active) return undefined;
    const f = this.schedule.get(i);
    if (f !== undefined) this.hits.push(`${i}:${method}:${f}`);
    return f;
  }
  private throwing(f: number): void {
    if (f === 0) throw new TokenError('CKR_DEVICE_ERROR');
    if (f === 1) throw new TokenError('CKR_SESSION_HANDLE_INVALID');
    if (f === 2) throw new Error(INJECTED);
  }
  private bytes(method: string, f: number | undefined, out: () => Uint8Array): Uint8Array {
    if (f === undefined) return out();
    this.throwing(f);
    const b = out();
    if (method === 'decryptGcm' || method === 'hmac' || method === 'ecdhX' || method === 'ecPublicKey') this.corruptedOutput = true;
    switch (f) {
      case 3:
        return b.slice(0, Math.max(0, b.length - 1));
      case 4:
        return Uint8Array.of(...b, 0);
      case 6:
        return new Uint8Array(0);
      default: {
        const c = Uint8Array.from(b);
        if (c.length) c[c.length >> 1]! ^= 0x10;
        return c;
      }
    }
  }
  findKey(label: string): KeyHandle | null {
    const f = this.fault('findKey');
    if (f !== undefined) {
      this.throwing(f);
      return null;
    }
    return this.inner.findKey(label);
  }
  generateAesKey(label: string): KeyHandle {
    const f = this.fault('generateAesKey');
    if (f !== undefined) this.throwing(f);
    const h = this.inner.generateAesKey(label);
    return f === undefined ? h : h + 1000;
  }
  generateHmacKey(label: string, len: number): KeyHandle {
    const f = this.fault('generateHmacKey');
    if (f !== undefined) this.throwing(f);
    const h = this.inner.generateHmacKey(label, len);
    return f === undefined ? h : h + 1000;
  }
  encryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    return this.bytes('encryptGcm', this.fault('encryptGcm'), () => this.inner.encryptGcm(key, iv, aad, pt));
  }
  decryptGcm(key: KeyHandle, iv: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    return this.bytes('decryptGcm', this.fault('decryptGcm'), () => this.inner.decryptGcm(key, iv, aad, ct));
  }
  hmac(key: KeyHandle, hash: 'SHA-256' | 'SHA-512', data: Uint8Array): Uint8Array {
    return this.bytes('hmac', this.fault('hmac'), () => this.inner.hmac(key, hash, data));
  }
  random(n: number): Uint8Array {
    return this.bytes('random', this.fault('random'), () => this.inner.random(n));
  }
  generateEcKeyPair(label: string): KeyHandle {
    const f = this.fault('generateEcKeyPair');
    if (f !== undefined) this.throwing(f);
    const h = this.inner.generateEcKeyPair(label);
    return f === undefined ? h : h + 1000;
  }
  ecPublicKey(key: KeyHandle): Uint8Array {
    return this.bytes('ecPublicKey', this.fault('ecPublicKey'), () => this.inner.ecPublicKey(key));
  }
  ecdhX(key: KeyHandle, point: Uint8Array): Uint8Array {
    return this.bytes('ecdhX', this.fault('ecdhX'), () => this.inner.ecdhX(key, point));
  }
  destroyAllKeys(): void {
    const f = this.fault('destroyAllKeys');
    if (f !== undefined) this.throwing(f);
    this.inner.destroyAllKeys();
  }
}

let seed = 1;
let n = 0;
let last: string | undefined;

export async function setup(o: { seed?: number } = {}): Promise<void> {
  seed = o.seed ?? 1;
}

export function outcome(): string | undefined {
  return last;
}

/** Runs a scenario step; a refusal by the enclave ('not-serving') ends the scenario, anything else is a violation. */
async function step<T>(f: () => Promise<T>): Promise<T | null> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof Violation && e.kind === 'not-serving') return null;
    throw e;
  }
}

let lastLog: string[] = [];

/** The token calls of the last scenario, in order (for make-seeds.ts). */
export function lastCallLog(): string[] {
  return lastLog;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  const input = new Uint8Array(data);
  let faulty!: FaultyToken;
  const v = await FuzzVault.create(seed * 100_000 + n++, { wrapToken: (t) => (faulty = new FaultyToken(t)) });
  for (let i = 0; i + 1 < input.length && i < 32; i += 2) faulty.schedule.set(input[i]! % CALL_SPAN, input[i + 1]! & 7);
  // An odd last byte with its low bit set picks canary A (ristretto255), else canary B (P-256).
  const canary = input.length % 2 === 1 && input[input.length - 1]! & 1 ? CANARY_A : CANARY_B;
  v.untypedKind = (e) => {
    if (e instanceof Error && e.message === INJECTED) return null;
    // toFault maps a TokenError to PlatformFault.TokenError (2301): a typed fault, not a violation.
    if (e instanceof TokenError) return null;
    return 'untyped-error';
  };
  const stages: string[] = [];
  let primary: unknown = null;
  try {
    const booted = await step(async () => (await v.boot(), true));
    stages.push(booted ? 'boot' : 'boot-refused');
    if (!booted) return;
    const reg = await step(() => v.register(canary.recordId, canary.suite, canary.password, canary.backupKey, canary.attemptLimit));
    stages.push(reg ? reg.type : 'register-refused');
    if (reg?.type !== 'Registered') return;
    // A wrong password: nothing may be released.
    const wrong = await step(() => v.loginStart(canary.recordId, canary.suite, new TextEncoder().encode('wrong')));
    if (wrong && 'sessionId' in wrong) {
      const fin = await step(() => v.client(canary.recordId, { type: 'LoginFinish', sessionId: wrong.sessionId, ke3: new Uint8Array(64) }));
      if (fin?.type === 'Recovered') violation('released-without-ke3', `the wrong-password login was answered Recovered (token faults ${faulty.hits.join(' ')})`);
      stages.push(fin?.type ?? 'finish-refused');
    } else stages.push(wrong ? wrong.res.type : 'start-refused');
    // The right password.
    const right = await step(() => v.loginStart(canary.recordId, canary.suite, canary.password));
    if (right && 'sessionId' in right && right.ke3) {
      const fin = await step(() => v.client(canary.recordId, { type: 'LoginFinish', sessionId: right.sessionId, ke3: right.ke3! }));
      if (fin?.type === 'Recovered') {
        const key = await v.unwrap(right.sessionKey!, fin.wrappedKey);
        if (!key) violation('bad-release', 'the released key does not unwrap under the session key');
        if (!equalBytes(key, canary.backupKey) && !faulty.corruptedOutput) violation('wrong-key', `the released key is not the canary's (token faults ${faulty.hits.join(' ')})`);
      }
      stages.push(fin?.type ?? 'finish-refused');
    } else stages.push(right ? ('sessionId' in right ? 'no-ke3' : right.res.type) : 'start-refused');
    const st = await step(() => v.status(canary.recordId));
    stages.push(st?.type ?? 'status-refused');
  } catch (e) {
    primary = e;
  }
  faulty.active = false;
  lastLog = faulty.log;
  last = `${faulty.hits.map((h) => h.split(':').slice(1).join(':')).join(',')}/${stages.join(',')}`;
  if (primary) throw primary;
  // The faults stopped: the enclave answers (in whatever state it chose).
  await v.info().catch((e) => {
    if (!(e instanceof Violation && e.kind === 'not-serving')) throw e;
  });
  v.checkProbe('the token-faults scenario');
}
