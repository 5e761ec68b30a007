/**
 * Host-side rate limiting: token buckets keyed by record id and by client address, checked before
 * an operation reaches the enclave, to shed load. It is a first line only: what keeps a stranger
 * from spending a user's guesses is the issuer token the enclave checks (enclave/api/auth.ts),
 * and the enclave's own guess limit; nothing depends on these buckets.
 *
 * A bucket holds up to `burst` tokens and refills at `perMinute / 60` tokens a second; an
 * operation takes one token, or is refused with the time until the next token (HTTP 429,
 * `Retry-After`).
 *
 * Memory is bounded: at most `maxKeys` buckets per limiter. A periodic `sweep()` drops buckets
 * that have refilled to full (they are the same as no bucket). A bucket that is not full is never
 * dropped: dropping it would hand its key a full burst again. When the table is full of buckets
 * that are not, a key that has no bucket is refused (429) until sweeps make room (at most once a
 * second while full; counted in `refusedFull`): a flood of new keys costs new keys availability
 * for at most the refill time of a bucket, never an old key's limit. At about 200 bytes per
 * bucket, 100,000 keys cost about 20 MB.
 */

export interface BucketConfig {
  /** Sustained rate: tokens added per minute. */
  perMinute: number;
  /** Bucket size: operations allowed at once after a quiet period. */
  burst: number;
}

export interface RateLimits {
  /** Per record id (false: off). Default 10/min, burst 5. */
  record?: BucketConfig | false;
  /** Per client address (IPv4 address, or IPv6 /64 prefix; false: off). Default 300/min, burst 100. */
  address?: BucketConfig | false;
  /** Buckets kept per limiter (default 100,000). */
  maxKeys?: number;
  /** How often idle buckets are swept (default 60 s). */
  sweepIntervalMs?: number;
}

export const DEFAULT_RATE_LIMITS = {
  record: { perMinute: 10, burst: 5 },
  address: { perMinute: 300, burst: 100 },
  maxKeys: 100_000,
  sweepIntervalMs: 60_000,
} as const;

export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  /** Operations refused because the table was full of buckets that are not. */
  refusedFull = 0;
  private lastFullSweep = -Infinity;

  constructor(
    readonly config: BucketConfig,
    private readonly maxKeys: number = DEFAULT_RATE_LIMITS.maxKeys,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(config.perMinute > 0) || !(config.burst >= 1) || !Number.isFinite(config.perMinute) || !Number.isFinite(config.burst)) {
      throw new RangeError('rate limit: perMinute must be > 0 and burst >= 1');
    }
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new RangeError('rate limit: maxKeys must be a positive integer');
    this.perMs = config.perMinute / 60_000;
  }

  get size(): number {
    return this.buckets.size;
  }

  private level(b: Bucket, t: number): number {
    return Math.min(this.config.burst, b.tokens + (t - b.at) * this.perMs);
  }

  /** Takes one token for `key`, or says how long until one is available. */
  take(key: string): TakeResult {
    const t = this.now();
    const old = this.buckets.get(key);
    if (!old && this.buckets.size >= this.maxKeys) {
      if (t - this.lastFullSweep >= 1000) {
        this.lastFullSweep = t;
        this.sweep();
      }
      if (this.buckets.size >= this.maxKeys) {
        this.refusedFull++;
        return { ok: false, retryAfterMs: 1000 };
      }
    }
    const tokens = old ? this.level(old, t) : this.config.burst;
    if (old) this.buckets.delete(key); // re-inserted below: most recently used last
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: t });
      return { ok: true };
    }
    this.buckets.set(key, { tokens, at: t });
    return { ok: false, retryAfterMs: Math.ceil((1 - tokens) / this.perMs) };
  }

  /** Drops the buckets that have refilled to full; returns how many. */
  sweep(): number {
    const t = this.now();
    let n = 0;
    for (const [k, b] of this.buckets) {
      if (this.level(b, t) >= this.config.burst) {
        this.buckets.delete(k);
        n++;
      }
    }
    return n;
  }

}

/** The rate-limit key of a client address: an IPv4 address, or the /64 prefix of an IPv6 one. */
export function addressKey(remote: string | undefined): string {
  if (!remote) return 'unknown';
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remote);
  if (v4) return v4[1]!;
  const addr = remote.split('%')[0]!.toLowerCase();
  const [head = '', tail] = addr.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
