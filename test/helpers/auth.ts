/**
 * One issuer for every test vault of a process (enclave/api/auth.ts): the AuthConfig a test
 * platform or VaultHost is provisioned with, and tokens for record ids, minted at a given clock
 * (a test platform's clock is not the wall clock). Record ids must be UTF-8: a token's subject is
 * the id's text.
 */
import { PACING } from '../../enclave/api/pacing.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { DEFAULT_AUDIENCE } from '../../enclave/api/auth.ts';
import { mintToken, newIssuer } from '../../host/auth/issuer.ts';
import type { IssuerPrivate } from '../../host/auth/issuer.ts';
import { DEFAULT_KSF_BOUNDS } from '../../client/escrow.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';

export interface TestIssuer {
  issuer: IssuerPrivate;
  config: AuthConfig;
  /** A token for `recordId`, issued at `nowMs` (default: the wall clock), valid `ttlS` seconds (default 600). */
  token(recordId: Uint8Array | string, nowMs?: number, opts?: { ttlS?: number; audience?: string }): Promise<string>;
  /** The same, as the bytes of a client request's `auth` field. */
  tokenBytes(recordId: Uint8Array | string, nowMs?: number, opts?: { ttlS?: number; audience?: string }): Promise<Uint8Array>;
}

const td = new TextDecoder('utf-8', { fatal: true });
let cached: Promise<TestIssuer> | undefined;

export async function makeTestIssuer(name = 'test-issuer', audience = DEFAULT_AUDIENCE): Promise<TestIssuer> {
  const issuer = await newIssuer(name);
  const token = (recordId: Uint8Array | string, nowMs = Date.now(), opts: { ttlS?: number; audience?: string } = {}) =>
    mintToken(issuer, {
      subject: typeof recordId === 'string' ? recordId : td.decode(recordId),
      audience: opts.audience ?? audience,
      ttlS: opts.ttlS ?? 600,
      nowS: Math.floor(nowMs / 1000),
    });
  return {
    issuer,
    config: { audience, issuers: [{ name, publicKey: issuer.publicKey }], minPacing: PACING.none },
    token,
    tokenBytes: async (id, nowMs, opts) => new TextEncoder().encode(await token(id, nowMs, opts)),
  };
}

/** The process's shared test issuer. */
export function testIssuer(): Promise<TestIssuer> {
  cached ??= makeTestIssuer();
  return cached;
}

/** EscrowClient options for tests against a vault provisioned with `issuer` on the wall clock: identity KSF, fresh tokens. */
export function wallClockClientExtras(issuer: TestIssuer) {
  return {
    ksf: identityKsf,
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
    pacing: 'none' as const,
    auth: (recordId: Uint8Array) => issuer.token(recordId),
  };
}
