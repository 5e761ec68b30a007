/**
 * Key stretching functions (RFC 9807 §2.3 Stretch; §7 Configurations recommends Argon2id with
 * S = zeroes(16), T = Nh, v = 0x13) and the small encoding of their parameters that travels
 * with a registration, so that every later login stretches with the same function.
 *
 * Browser-safe: imports only hash-wasm (WebAssembly Argon2id) and project files.
 *
 * Parameter encoding (version = algorithm byte, then big-endian fields):
 *   0x00                                  identity (RFC 9807 Appendix C vectors use it)
 *   0x01 || t:u32 || m:u32 (KiB) || p:u32  Argon2id v1.3
 */
import { argon2id } from 'hash-wasm';
import { OpaqueError, OpaqueErrorCode } from './errors.ts';

export interface Ksf {
  readonly id: 'identity' | 'argon2id';
  /** RFC 9807 §2.3 Stretch(msg). The identity KSF ignores `outputLen` and returns a copy of `input`. */
  stretch(input: Uint8Array, outputLen: number): Promise<Uint8Array>;
  /** The encoded parameters (see the header). */
  readonly params: Uint8Array;
  /** Argon2id's parameters (absent for the identity KSF). */
  readonly argon2id?: Readonly<Argon2idParams>;
}

export interface Argon2idParams {
  /** Passes over memory (iterations). */
  t: number;
  /** Memory in KiB. */
  m: number;
  /** Lanes (parallelism). */
  p: number;
}

/**
 * The project default. RFC 9807 §7 recommends t = 1, p = 4, m = 2^21 KiB (2 GiB), which a
 * browser tab frequently cannot allocate; we use RFC 9106 §4's second recommended option for
 * memory-constrained settings, t = 3, m = 2^16 KiB (64 MiB), p = 4 (with RFC 9807 §7's zero
 * salt and T = Nh). Registrations carry their parameters (encodeKsfParams), so raising this
 * default later does not break existing records.
 */
export const DEFAULT_ARGON2ID: Argon2idParams = Object.freeze({ t: 3, m: 65536, p: 4 });

/**
 * Accepted ranges. RFC 9106 §3.1 allows far more; these bounds keep a login from being turned
 * into a denial of service by parameters read back from storage: at most 64 passes, at most
 * 2^21 KiB (the RFC 9807 §7 recommendation), at most 255 lanes, and m >= 8p (RFC 9106 §3.1).
 */
export const ARGON2ID_LIMITS = Object.freeze({ tMax: 64, mMax: 1 << 21, pMax: 255 });

const ALG_IDENTITY = 0x00;
const ALG_ARGON2ID = 0x01;
const ARGON2ID_PARAMS_LEN = 13;
/** RFC 9807 §7: S = zeroes(16). */
const ZERO_SALT = new Uint8Array(16);

function ksfError(msg: string): OpaqueError {
  return new OpaqueError(OpaqueErrorCode.KsfError, msg, 'ksf_params');
}

export const identityKsf: Ksf = Object.freeze({
  id: 'identity' as const,
  // RFC 9807 Appendix C: KSF = Identity, Stretch(msg) = msg.
  stretch: async (input: Uint8Array): Promise<Uint8Array> => Uint8Array.from(input),
  get params(): Uint8Array {
    return Uint8Array.of(ALG_IDENTITY);
  },
});

function checkArgon2idParams(p: Argon2idParams): void {
  const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
  if (!p || !isInt(p.t) || !isInt(p.m) || !isInt(p.p)) throw ksfError('argon2id: t, m and p must be integers');
  if (p.t < 1 || p.t > ARGON2ID_LIMITS.tMax) throw ksfError(`argon2id: t=${p.t} outside 1..${ARGON2ID_LIMITS.tMax}`);
  if (p.p < 1 || p.p > ARGON2ID_LIMITS.pMax) throw ksfError(`argon2id: p=${p.p} outside 1..${ARGON2ID_LIMITS.pMax}`);
  if (p.m < 8 * p.p || p.m > ARGON2ID_LIMITS.mMax) {
    throw ksfError(`argon2id: m=${p.m} KiB outside ${8 * p.p}..${ARGON2ID_LIMITS.mMax} (m >= 8p)`);
  }
}

function encodeArgon2id(p: Argon2idParams): Uint8Array {
  const out = new Uint8Array(ARGON2ID_PARAMS_LEN);
  const v = new DataView(out.buffer);
  out[0] = ALG_ARGON2ID;
  v.setUint32(1, p.t);
  v.setUint32(5, p.m);
  v.setUint32(9, p.p);
  return out;
}

export function argon2idKsf(p: Argon2idParams): Ksf {
  checkArgon2idParams(p);
  const params = Object.freeze({ t: p.t, m: p.m, p: p.p });
  const encoded = encodeArgon2id(params);
  return Object.freeze({
    id: 'argon2id' as const,
    argon2id: params,
    get params(): Uint8Array {
      return Uint8Array.from(encoded);
    },
    async stretch(input: Uint8Array, outputLen: number): Promise<Uint8Array> {
      if (!Number.isInteger(outputLen) || outputLen < 4 || outputLen > 1024) {
        throw ksfError(`argon2id: output length ${outputLen} outside 4..1024`);
      }
      try {
        // RFC 9807 §7: Argon2id(S = zeroes(16), p, T = Nh, m, t, v = 0x13, K = nil, X = nil).
        return await argon2id({
          password: input,
          salt: ZERO_SALT,
          iterations: params.t,
          memorySize: params.m,
          parallelism: params.p,
          hashLength: outputLen,
          outputType: 'binary',
        });
      } catch (e) {
        throw ksfError(`argon2id failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  });
}

export function encodeKsfParams(k: Ksf): Uint8Array {
  return k.params;
}

/** Strict decode of `encodeKsfParams` output: unknown algorithm, wrong length or out-of-range values are KsfError. */
export function ksfFromParams(b: Uint8Array): Ksf {
  if (!(b instanceof Uint8Array) || b.length === 0) throw ksfError('ksf_params: empty');
  switch (b[0]) {
    case ALG_IDENTITY:
      if (b.length !== 1) throw ksfError(`ksf_params: identity takes 1 byte, got ${b.length}`);
      return identityKsf;
    case ALG_ARGON2ID: {
      if (b.length !== ARGON2ID_PARAMS_LEN) {
        throw ksfError(`ksf_params: argon2id takes ${ARGON2ID_PARAMS_LEN} bytes, got ${b.length}`);
      }
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      return argon2idKsf({ t: v.getUint32(1), m: v.getUint32(5), p: v.getUint32(9) });
    }
    default:
      throw ksfError(`ksf_params: unknown algorithm 0x${b[0]!.toString(16).padStart(2, '0')}`);
  }
}
