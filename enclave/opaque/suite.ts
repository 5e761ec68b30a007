/**
 * OPAQUE-3DH configurations (RFC 9807 §7) and their constants, built from a group backend and a
 * hash implementation. Two suites: `ristretto255-SHA512` (default) and `P256-SHA256`.
 *
 * This file imports no backend: `suites-portable.ts` builds suites on @noble (browser-safe) and
 * `suites-fast.ts` on libsodium (WebAssembly) and node:crypto (the server default).
 */
import { concat, utf8 } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode } from './errors.ts';
import type { Group } from './group.ts';
import type { HashPrimitives } from './hash.ts';

export type SuiteId = 'ristretto255-SHA512' | 'P256-SHA256';
export const SUITE_IDS: readonly SuiteId[] = ['ristretto255-SHA512', 'P256-SHA256'];
export const DEFAULT_SUITE: SuiteId = 'ristretto255-SHA512';

export interface Suite {
  readonly id: SuiteId;
  readonly group: Group;
  /** The hash of the OPRF and of OPAQUE's KDF/MAC/Hash (SHA-512 or SHA-256). */
  readonly hash: HashPrimitives;
  /** RFC 9497 §3.1 contextString for mode 0x00 (base OPRF): "OPRFV1-" || 0x00 || "-" || identifier. */
  readonly oprfContextString: Uint8Array;
  readonly Nh: number;
  readonly Npk: number;
  readonly Nsk: number;
  readonly Noe: number;
  readonly Nok: number;
  readonly Nm: number;
  readonly Nx: number;
  readonly Nn: 32;
  readonly Nseed: 32;
}

/** RFC 9497 §4 identifiers. */
export const OPRF_IDENTIFIER: Record<SuiteId, string> = {
  'ristretto255-SHA512': 'ristretto255-SHA512',
  'P256-SHA256': 'P256-SHA256',
};

export function makeSuite(id: SuiteId, group: Group, hash: HashPrimitives): Suite {
  const expectGroup = id === 'ristretto255-SHA512' ? 'ristretto255' : 'P256';
  const expectHash = id === 'ristretto255-SHA512' ? 'SHA-512' : 'SHA-256';
  if (group.id !== expectGroup || hash.name !== expectHash) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `suite ${id} needs ${expectGroup} and ${expectHash}`);
  }
  return {
    id,
    group,
    hash,
    oprfContextString: concat(utf8('OPRFV1-'), Uint8Array.of(0), utf8('-'), utf8(OPRF_IDENTIFIER[id])),
    Nh: hash.outputLen,
    Npk: group.elementLen,
    Nsk: group.scalarLen,
    Noe: group.elementLen,
    Nok: group.scalarLen,
    Nm: hash.outputLen,
    Nx: hash.outputLen,
    Nn: 32,
    Nseed: 32,
  };
}

export function parseSuiteId(s: string): SuiteId {
  if ((SUITE_IDS as readonly string[]).includes(s)) return s as SuiteId;
  throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `unknown suite ${JSON.stringify(s)}; expected one of ${SUITE_IDS.join(', ')}`);
}
