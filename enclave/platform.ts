/**
 * Everything the firmware gets from the outside world, injected as one object at start: a
 * random source, a clock, a small NVRAM, and a token (its root of trust). The firmware calls
 * nothing else: no file system, no network, no global clock or randomness.
 */
import type { AuthConfig } from './api/auth.ts';
import type { Token } from './token.ts';

export interface Nvram {
  /** Capacity in bytes (real HSMs have about 4 KB; this partition's region of it). */
  readonly size: number;
  /** The last durably written contents (all zero bytes or empty when never written). */
  read(): Uint8Array;
  /** Replaces the contents durably (returns once the write has reached stable storage). */
  write(data: Uint8Array): void | Promise<void>;
}

export interface Platform {
  /** Cryptographically secure random bytes. */
  random(n: number): Uint8Array;
  /** Milliseconds since the Unix epoch. */
  now(): number;
  nvram: Nvram;
  token: Token;
  /** This enclave's partition of the record space, and how many partitions there are. */
  partition: number;
  partitions: number;
  /** SHA-256 of the operator secret that authorizes zeroization (set at provisioning). */
  operatorKeyHash?: Uint8Array;
  /**
   * The issuers whose tokens authorize client operations, and the vault's audience
   * (enclave/api/auth.ts). The host stores it and passes it at every boot; the enclave adopts it
   * at provisioning and afterwards refuses to serve under any other (its hash is in NVRAM).
   */
  auth?: AuthConfig;
  /** The vault's OPAQUE context string (RFC 9807 §6.1); fixed at provisioning. */
  opaqueContext?: Uint8Array;
  /** Test hook: crash points (the simulated device kills itself when a configured one is hit). */
  failpoint?(name: string): void;
}
