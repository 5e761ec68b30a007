/**
 * Bounded, expiring tables of in-flight protocol state, held only in enclave memory: staged
 * registrations, login sessions between KE2 and KE3, and recovered sessions that may authorize
 * a password change. Lost on restart by design: a dropped session never refunds its guess.
 */
import { EnclaveFault, Handling } from '../api/codes.ts';

export class ExpiringTable<V> {
  private readonly m = new Map<string, { v: V; expires: number }>();
  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
    private readonly onDrop?: (v: V) => void,
  ) {}

  get size(): number {
    return this.m.size;
  }

  put(key: string, v: V, now: number): void {
    if (this.m.size >= this.max) this.sweep(now);
    if (this.m.size >= this.max) throw new EnclaveFault(Handling.TooManySessions, 'too many sessions in flight');
    this.m.set(key, { v, expires: now + this.ttlMs });
  }

  /** Removes and returns the entry: 'missing', 'expired', or the value. */
  take(key: string, now: number): V | 'missing' | 'expired' {
    const e = this.m.get(key);
    if (!e) return 'missing';
    this.m.delete(key);
    if (e.expires <= now) {
      this.onDrop?.(e.v);
      return 'expired';
    }
    return e.v;
  }

  /** True if some live entry satisfies `pred`. */
  some(now: number, pred: (v: V) => boolean): boolean {
    for (const e of this.m.values()) if (e.expires > now && pred(e.v)) return true;
    return false;
  }

  sweep(now: number): void {
    for (const [k, e] of this.m) {
      if (e.expires <= now) {
        this.m.delete(k);
        this.onDrop?.(e.v);
      }
    }
  }

  clear(): void {
    for (const e of this.m.values()) this.onDrop?.(e.v);
    this.m.clear();
  }
}
