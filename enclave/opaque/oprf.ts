/**
 * RFC 9497 OPRF, base mode (modeOPRF = 0x00, §3.1) over a Suite: DeriveKeyPair (§3.2.1),
 * Blind, BlindEvaluate, Finalize and Evaluate (§3.3.1). This is the OPRF of RFC 9807 §2.1.
 *
 * Elements and scalars are the group's canonical encodings (group.ts). Domain separation tags
 * are built once per suite (§3.1, §4): "HashToGroup-" || contextString, "HashToScalar-" ||
 * contextString, "DeriveKeyPair" || contextString.
 */
import { type RandomSource, concat, i2osp, utf8, zeroize } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode } from './errors.ts';
import type { Suite } from './suite.ts';

interface OprfLabels {
  hashToGroupDst: Uint8Array;
  hashToScalarDst: Uint8Array;
  deriveKeyPairDst: Uint8Array;
}

const FINALIZE = utf8('Finalize');
const labelCache = new WeakMap<Suite, OprfLabels>();

/** The suite's DSTs (RFC 9497 §3.1 contextString; §4 HashToGroup / HashToScalar). */
export function oprfLabels(suite: Suite): OprfLabels {
  let l = labelCache.get(suite);
  if (!l) {
    const ctx = suite.oprfContextString;
    l = {
      hashToGroupDst: concat(utf8('HashToGroup-'), ctx),
      hashToScalarDst: concat(utf8('HashToScalar-'), ctx),
      deriveKeyPairDst: concat(utf8('DeriveKeyPair'), ctx),
    };
    labelCache.set(suite, l);
  }
  return l;
}

/** I2OSP(len(info), 2) || info: the part of DeriveKeyPair's input that depends on `info` only. */
export function deriveKeyPairInfo(info: Uint8Array): Uint8Array {
  if (info.length > 0xffff) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'DeriveKeyPair: info longer than 65535 bytes');
  return concat(i2osp(info.length, 2), info);
}

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/**
 * deriveKeyPairScalar's input arrays, one per length, all zeros between calls (each is wiped when
 * the call ends): the server derives a record's OPRF key at every login, and an input of more
 * than 64 bytes would be a fresh ArrayBuffer each time. `inputBusy`: a call is using them (a
 * nested one takes a fresh array). Inputs of more than 512 bytes (an id that long) take a fresh array too.
 */
const DERIVE_INPUTS = new Map<number, Uint8Array>();
let inputBusy = false;

/**
 * RFC 9497 §3.2.1 DeriveKeyPair, private scalar only (the public key costs a base multiplication
 * that the OPRF key never needs). `infoWithLen` is `deriveKeyPairInfo(info)`, precomputed.
 */
export function deriveKeyPairScalar(suite: Suite, seed: Uint8Array, infoWithLen: Uint8Array): Uint8Array {
  const dst = oprfLabels(suite).deriveKeyPairDst;
  // deriveInput = seed || I2OSP(len(info), 2) || info, then || I2OSP(counter, 1).
  const len = seed.length + infoWithLen.length + 1;
  const reuse = !inputBusy && len > 64 && len <= 512;
  let msg = reuse ? DERIVE_INPUTS.get(len) : undefined;
  if (msg === undefined) {
    msg = new Uint8Array(len);
    if (reuse) DERIVE_INPUTS.set(len, msg);
  }
  if (reuse) inputBusy = true;
  msg.set(seed, 0);
  msg.set(infoWithLen, seed.length);
  const last = msg.length - 1;
  try {
    for (let counter = 0; counter <= 255; counter++) {
      msg[last] = counter;
      const sk = suite.group.hashToScalar(msg, dst);
      // hashToScalar returns a reduced encoding, so zero is the all-zero string (no bigint needed).
      if (!isAllZero(sk)) return sk;
    }
  } finally {
    zeroize(msg);
    if (reuse) inputBusy = false;
  }
  throw new OpaqueError(OpaqueErrorCode.DeriveKeyPairError, 'DeriveKeyPair: no non-zero scalar in 256 tries');
}

/** RFC 9497 §3.2.1 DeriveKeyPair(seed, info) -> (skS, pkS). */
export function deriveKeyPair(suite: Suite, seed: Uint8Array, info: Uint8Array): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = deriveKeyPairScalar(suite, seed, deriveKeyPairInfo(info));
  return { privateKey, publicKey: suite.group.scalarMultBase(privateKey) };
}

/** RFC 9497 §3.3.1 Blind(input): blind = RandomScalar(), drawn from the injected `rng`. */
export function blind(suite: Suite, input: Uint8Array, rng: RandomSource): { blind: Uint8Array; blindedElement: Uint8Array } {
  const g = suite.group;
  const r = g.randomScalar(rng);
  try {
    const inputElement = hashInputToGroup(suite, input);
    return { blind: r, blindedElement: g.scalarMult(r, inputElement, 'blinded_message') };
  } catch (e) {
    zeroize(r);
    throw e;
  }
}

/** HashToGroup(input); the identity raises InvalidInputError (RFC 9497 §3.3.1 Blind / Evaluate). */
function hashInputToGroup(suite: Suite, input: Uint8Array): Uint8Array {
  checkInput(input);
  let e: Uint8Array;
  try {
    e = suite.group.hashToGroup(input, oprfLabels(suite).hashToGroupDst);
    suite.group.checkElement(e, 'input');
  } catch {
    throw new OpaqueError(OpaqueErrorCode.InvalidInput, 'OPRF input hashes to the identity element', 'input');
  }
  return e;
}

/**
 * RFC 9497 §3.3.1 BlindEvaluate(skS, blindedElement). The element is validated by the group
 * (RFC 9497 §2.1 DeserializeElement) and a fault names `field`.
 */
export function blindEvaluate(suite: Suite, sk: Uint8Array, blindedElement: Uint8Array, field = 'blinded_message'): Uint8Array {
  return suite.group.scalarMult(sk, blindedElement, field);
}

/** Finalize encodes len(input) on 2 bytes (RFC 9497 §3.3.1), so longer inputs are refused up front. */
function checkInput(input: Uint8Array): void {
  if (!(input instanceof Uint8Array) || input.length > 0xffff) {
    throw new OpaqueError(OpaqueErrorCode.InvalidArgument, 'OPRF input must be a byte string of at most 65535 bytes', 'input');
  }
}

/** Hash(I2OSP(len(input), 2) || input || I2OSP(len(element), 2) || element || "Finalize"). */
function finalHash(suite: Suite, input: Uint8Array, element: Uint8Array): Uint8Array {
  checkInput(input);
  return suite.hash.hash(i2osp(input.length, 2), input, i2osp(element.length, 2), element, FINALIZE);
}

/** RFC 9497 §3.3.1 Finalize(input, blind, evaluatedElement). */
export function finalize(suite: Suite, input: Uint8Array, blindScalar: Uint8Array, evaluatedElement: Uint8Array, field = 'evaluated_message'): Uint8Array {
  const g = suite.group;
  const inv = g.scalarInvert(blindScalar);
  try {
    const unblinded = g.scalarMult(inv, evaluatedElement, field);
    return finalHash(suite, input, unblinded);
  } finally {
    zeroize(inv);
  }
}

/** RFC 9497 §3.3.1 Evaluate(skS, input): the unblinded PRF, for tests and server-side checks. */
export function evaluate(suite: Suite, sk: Uint8Array, input: Uint8Array): Uint8Array {
  const issued = suite.group.scalarMult(sk, hashInputToGroup(suite, input), 'input');
  return finalHash(suite, input, issued);
}
