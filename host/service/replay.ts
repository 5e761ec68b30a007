/**
 * A host-side guard against byte-identical replays of a sealed operation. Each client message is
 * sealed with a fresh HPKE encapsulation, so an honest client never sends the same bytes twice;
 * a second copy is someone replaying captured traffic. The enclave already refuses replays that
 * could gain anything (a used stage, a finished session), but a replayed LoginStart opens a new
 * session and is charged a guess like any stranger's login; refusing the copy here (409) means a
 * replay costs the user nothing, and no second answer is sealed under the same response key.
 *
 * It remembers SHA-256(len(recordId) || recordId || message) for `windowMs` (default 10 min),
 * at most `maxEntries` (default 100,000, about 12 MB); past that the oldest are forgotten first.
 * Defence in depth only: the host is untrusted and this guard is no part of the enclave's rules.
 */
import { createHash } from 'node:crypto';

export interface ReplayGuardOptions {
  windowMs?: number;
  maxEntries?: number;
  now?: () => number;
}

export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(opts: ReplayGuardOptions = {}) {
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.maxEntries = opts.maxEntries ?? 100_000;
    this.now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.seen.size;
  }

  /** The key of one submission. */
  key(recordId: Uint8Array, message: Uint8Array): string {
    return createHash('sha256').update(Uint8Array.of(recordId.length)).update(recordId).update(message).digest('base64');
  }

  /** True when this key was remembered within the window. */
  has(key: string): boolean {
    const until = this.seen.get(key);
    return until !== undefined && until > this.now();
  }

  remember(key: string): void {
    const t = this.now();
    this.seen.delete(key);
    this.seen.set(key, t + this.windowMs);
    // Insertion order is expiry order (the window is constant): expired entries are at the front.
    for (const [k, until] of this.seen) {
      if (until > t && this.seen.size <= this.maxEntries) break;
      this.seen.delete(k);
    }
  }
}
