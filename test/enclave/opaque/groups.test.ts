/**
 * The group backends (RFC 9497 §2.1 prime-order group API, §4.1 ristretto255-SHA512, §4.3
 * P256-SHA256), run for every backend in allSuites():
 * - RFC 9497 Appendix A vectors for the pieces a group checks alone: DeriveKeyPair (§3.2.1),
 *   blinding (blind · HashToGroup), evaluation (skS · blinded, and the POPRF t⁻¹ · blinded),
 *   unblinding and Finalize (§3.3.1), ScalarMultGen(skS) = pkS;
 * - byte-for-byte agreement with the @noble reference on random inputs (fast-check);
 * - edge scalars (1, 2, n − 1, ...) and a shared x-coordinate with a leading zero byte;
 * - rejection of every malformed element with a typed OpaqueError naming the field.
 */
import fc from 'fast-check';
import sodium from 'libsodium-wrappers-sumo';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { concat, fromHex, i2osp, toHex, utf8 } from '../../../enclave/opaque/bytes.ts';
import { OpaqueError, OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import type { Group } from '../../../enclave/opaque/group.ts';
import { P256_ORDER, P256_P, bigintToBe, beToBigint } from '../../../enclave/opaque/groups/noble-p256.ts';
import { RISTRETTO_ORDER, bigintToLe, leToBigint, modInverse } from '../../../enclave/opaque/groups/noble-ristretto255.ts';
import { modInverseVartime } from '../../../enclave/opaque/groups/node-p256.ts';
import { createSodiumRistretto255 } from '../../../enclave/opaque/groups/sodium-ristretto255.ts';
import { expandMessageXmd, hashPrefix, hmacKey } from '../../../enclave/opaque/hash.ts';
import { nobleHash } from '../../../enclave/opaque/hash-noble.ts';
import { nodeHash } from '../../../enclave/opaque/hash-node.ts';
import type { HashPrimitives } from '../../../enclave/opaque/hash.ts';
import { createSodiumSha256, createSodiumSha512 } from '../../../enclave/opaque/hash-sodium.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { OPRF_IDENTIFIER } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { portableSuite } from '../../../enclave/opaque/suites-portable.ts';
import { allSuites } from '../../helpers/suites.ts';

interface OprfCase {
  Batch: number;
  Blind: string;
  BlindedElement: string;
  EvaluationElement: string;
  Input: string;
  Output: string;
  Info?: string;
}
interface OprfVectors {
  identifier: string;
  mode: number;
  groupDST: string;
  keyInfo: string;
  seed: string;
  skSm: string;
  pkSm?: string;
  vectors: OprfCase[];
}
const OPRF: OprfVectors[] = (
  JSON.parse(readFileSync(new URL('../../vectors/rfc/oprf-rfc9497-appendixA.json', import.meta.url), 'utf8')) as {
    vectors: OprfVectors[];
  }
).vectors;

const suites = await allSuites();
const RUNS = { numRuns: 200 };

const orderOf = (g: Group): bigint => (g.id === 'ristretto255' ? RISTRETTO_ORDER : P256_ORDER);
const encScalar = (g: Group, x: bigint): Uint8Array => (g.id === 'ristretto255' ? bigintToLe(x, 32) : bigintToBe(x, 32));
const decScalar = (g: Group, b: Uint8Array): bigint => (g.id === 'ristretto255' ? leToBigint(b) : beToBigint(b));
/** 32 random bytes to a non-zero reduced scalar. */
const scalarFrom = (g: Group, b: Uint8Array): Uint8Array => encScalar(g, (decScalar(g, b) % (orderOf(g) - 1n)) + 1n);
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

function contextString(mode: number, id: SuiteId): Uint8Array {
  return concat(utf8('OPRFV1-'), Uint8Array.of(mode), utf8('-'), utf8(OPRF_IDENTIFIER[id]));
}

/** RFC 9497 §3.2.1 DeriveKeyPair, the scalar half. */
function deriveSk(g: Group, seed: Uint8Array, info: Uint8Array, ctx: Uint8Array): Uint8Array {
  const deriveInput = concat(seed, i2osp(info.length, 2), info);
  const dst = concat(utf8('DeriveKeyPair'), ctx);
  for (let counter = 0; counter < 256; counter++) {
    const sk = g.hashToScalar(concat(deriveInput, i2osp(counter, 1)), dst);
    if (!g.isZeroScalar(sk)) return sk;
  }
  throw new Error('DeriveKeyPairError');
}

function expectFault(fn: () => unknown, code: number, field: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(OpaqueError);
  expect((err as OpaqueError).code).toBe(code);
  expect((err as OpaqueError).field).toBe(field);
}

/** Every way `e` can be refused must name `field` with the same code: checkElement and scalarMult. */
function expectRejected(g: Group, e: Uint8Array, code: number): void {
  expectFault(() => g.checkElement(e, 'blinded_message'), code, 'blinded_message');
  expectFault(() => g.scalarMult(encScalar(g, 7n), e, 'client_public_keyshare'), code, 'client_public_keyshare');
}

describe('suites', () => {
  it('includes the fast backends, cached', async () => {
    const openssl = `node OpenSSL ${process.versions.openssl}`;
    expect(suites.map((s) => `${s.name}:${s.suite.group.backend}+${s.suite.hash.backend ?? 'node:crypto'}`)).toEqual([
      'ristretto255-SHA512/noble:noble+@noble/hashes',
      'P256-SHA256/noble:noble+@noble/hashes',
      `ristretto255-SHA512/fast:sodium-native+${openssl}`,
      'P256-SHA256/fast:node-ecdh+node:crypto',
      'ristretto255-SHA512/wasm:sodium-wasm+sodium-wasm',
      'ristretto255-SHA512/native+sodium-sha512:sodium-native+libsodium native',
      `ristretto255-SHA512/wasm+openssl-sha512:sodium-wasm+${openssl}`,
    ]);
    expect(await fastSuite('P256-SHA256')).toBe(await fastSuite('P256-SHA256'));
    expect(await fastSuite('ristretto255-SHA512')).toBe(await fastSuite('ristretto255-SHA512'));
  });
});

describe.each(suites)('$name', ({ suite }: { suite: Suite }) => {
  const g = suite.group;
  const ref = portableSuite(suite.id).group;
  const n = orderOf(g);
  const all = OPRF.filter((v) => v.identifier === suite.id);

  describe('RFC 9497 Appendix A', () => {
    it('has mode 0, 1 and 2 vectors for this suite', () => {
      expect(all.map((v) => v.mode).sort()).toEqual([0, 1, 2]);
    });

    it('mode 0: contextString and HashToGroup DST', () => {
      const v = all.find((x) => x.mode === 0)!;
      expect(toHex(suite.oprfContextString)).toBe(toHex(contextString(0, suite.id)));
      expect(toHex(concat(utf8('HashToGroup-'), suite.oprfContextString))).toBe(v.groupDST);
    });

    for (const v of all) {
      const ctx = contextString(v.mode, suite.id);
      const label = `mode ${v.mode}`;

      it(`${label}: DeriveKeyPair(seed, info) = skSm`, () => {
        expect(toHex(deriveSk(g, fromHex(v.seed), fromHex(v.keyInfo), ctx))).toBe(v.skSm);
      });

      if (v.pkSm) {
        it(`${label}: ScalarMultGen(skSm) = pkSm`, () => {
          expect(toHex(g.scalarMultBase(fromHex(v.skSm)))).toBe(v.pkSm);
        });
      }

      v.vectors.forEach((t, i) => {
        it(`${label} vector ${i + 1}: blind, evaluate, unblind, finalize`, () => {
          const dstG = concat(utf8('HashToGroup-'), ctx);
          expect(toHex(dstG)).toBe(v.groupDST);
          const inputs = t.Input.split(',');
          const blinds = t.Blind.split(',');
          const blinded = t.BlindedElement.split(',');
          const evaluated = t.EvaluationElement.split(',');
          const outputs = t.Output.split(',');
          const info = t.Info === undefined ? undefined : fromHex(t.Info);
          for (let j = 0; j < t.Batch; j++) {
            const input = fromHex(inputs[j]!);
            const blind = fromHex(blinds[j]!);
            // Blind: blind · HashToGroup(input).
            const h = g.hashToGroup(input, dstG);
            g.checkElement(h, 'input_element');
            expect(toHex(g.scalarMult(blind, h, 'input_element'))).toBe(blinded[j]);
            // BlindEvaluate: skS · blinded (OPRF, VOPRF), or t⁻¹ · blinded with t = skS + m (POPRF).
            let key = fromHex(v.skSm);
            if (info) {
              const framed = concat(utf8('Info'), i2osp(info.length, 2), info);
              const m = g.hashToScalar(framed, concat(utf8('HashToScalar-'), ctx));
              key = g.scalarInvert(encScalar(g, (decScalar(g, key) + decScalar(g, m)) % n));
            }
            expect(toHex(g.scalarMult(key, fromHex(blinded[j]!), 'blinded_message'))).toBe(evaluated[j]);
            // Finalize: unblind with blind⁻¹ and hash.
            const unblinded = g.scalarMult(g.scalarInvert(blind), fromHex(evaluated[j]!), 'evaluated_message');
            const infoPart = info ? concat(i2osp(info.length, 2), info) : new Uint8Array(0);
            const out = suite.hash.hash(
              i2osp(input.length, 2),
              input,
              infoPart,
              i2osp(unblinded.length, 2),
              unblinded,
              utf8('Finalize'),
            );
            expect(toHex(out)).toBe(outputs[j]);
          }
        });
      });
    }
  });

  describe('agrees byte for byte with @noble/curves', () => {
    it('scalarMult', () => {
      fc.assert(
        fc.property(bytes32, bytes32, (a, b) => {
          const k = scalarFrom(g, a);
          const m = ref.scalarMultBase(scalarFrom(g, b));
          expect(toHex(g.scalarMult(k, m, 'm'))).toBe(toHex(ref.scalarMult(k, m, 'm')));
        }),
        RUNS,
      );
    });
    it('scalarMultBase', () => {
      fc.assert(
        fc.property(bytes32, (a) => {
          const k = scalarFrom(g, a);
          expect(toHex(g.scalarMultBase(k))).toBe(toHex(ref.scalarMultBase(k)));
        }),
        RUNS,
      );
    });
    it('hashToGroup', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (msg, dst) => {
          expect(toHex(g.hashToGroup(msg, dst))).toBe(toHex(ref.hashToGroup(msg, dst)));
        }),
        RUNS,
      );
    });
    it('hashToScalar', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (msg, dst) => {
          expect(toHex(g.hashToScalar(msg, dst))).toBe(toHex(ref.hashToScalar(msg, dst)));
        }),
        RUNS,
      );
    });
    it('scalarInvert', () => {
      fc.assert(
        fc.property(bytes32, (a) => {
          const k = scalarFrom(g, a);
          const inv = g.scalarInvert(k);
          expect(toHex(inv)).toBe(toHex(ref.scalarInvert(k)));
          expect((decScalar(g, inv) * decScalar(g, k)) % n).toBe(1n);
        }),
        RUNS,
      );
    });
    it('element validity of random encodings', () => {
      // For P-256 a random x behind a valid prefix is a point about half the time.
      const enc =
        g.id === 'ristretto255'
          ? bytes32
          : fc.tuple(fc.constantFrom(2, 3), bytes32).map(([p, x]) => concat(Uint8Array.of(p), x));
      fc.assert(
        fc.property(enc, (e) => {
          let refOk = true;
          try {
            ref.checkElement(e, 'e');
          } catch {
            refOk = false;
          }
          if (refOk) {
            g.checkElement(e, 'e');
            const k = encScalar(g, 3n);
            expect(toHex(g.scalarMult(k, e, 'e'))).toBe(toHex(ref.scalarMult(k, e, 'e')));
          } else {
            expectRejected(g, e, OpaqueErrorCode.InvalidElement);
          }
        }),
        RUNS,
      );
    });
  });

  describe('edge scalars and points', () => {
    const edges = [1n, 2n, 3n, n - 1n, n - 2n, (n - 1n) / 2n, (n + 1n) / 2n, 2n ** 128n];
    const points = () => [
      ['G', ref.scalarMultBase(encScalar(g, 1n))],
      ['-G', ref.scalarMultBase(encScalar(g, n - 1n))],
      ['2G', ref.scalarMultBase(encScalar(g, 2n))],
      ['random', ref.scalarMultBase(encScalar(g, 0x1234567890abcdefn ** 3n % n))],
    ] as const;
    it('scalarMult and scalarMultBase agree with the reference', () => {
      for (const x of edges) {
        const k = encScalar(g, x);
        expect(toHex(g.scalarMultBase(k)), `${x}·G`).toBe(toHex(ref.scalarMultBase(k)));
        for (const [name, m] of points()) {
          expect(toHex(g.scalarMult(k, m, 'm')), `${x}·${name}`).toBe(toHex(ref.scalarMult(k, m, 'm')));
        }
      }
    });
    if (g.id === 'P256') it('a result whose x-coordinate starts with a zero byte', () => {
      const m = ref.scalarMultBase(encScalar(g, 5n));
      let found = 0;
      for (let x = 1n; found < 2 && x < 5000n; x++) {
        const k = encScalar(g, x);
        const want = ref.scalarMultBase(encScalar(g, 5n * x)); // = x·m, cheaper to search with
        if (want[1] !== 0) continue;
        found++;
        expect(toHex(g.scalarMult(k, m, 'm'))).toBe(toHex(want));
        expect(toHex(g.scalarMultBase(encScalar(g, 5n * x)))).toBe(toHex(want));
      }
      expect(found).toBe(2);
    });
    it('zero and unreduced scalars are refused', () => {
      const m = ref.scalarMultBase(encScalar(g, 9n));
      for (const x of [0n, n, n + 1n]) {
        expect(() => g.scalarMult(encScalar(g, x), m, 'm')).toThrow();
        expect(() => g.scalarMultBase(encScalar(g, x))).toThrow();
      }
    });
  });

  describe('rejects malformed elements with typed faults', () => {
    const { InvalidElement, InvalidLength } = OpaqueErrorCode;
    const valid = () => ref.scalarMultBase(encScalar(g, 11n));

    it('wrong lengths and empty input', () => {
      const len = g.elementLen;
      for (const l of [0, 1, len - 1, len + 1, 64, 65]) {
        const e = new Uint8Array(l);
        if (l > 0) e[0] = g.id === 'P256' ? 2 : 0;
        if (l === 65 && g.id === 'P256') continue; // below: a real uncompressed point
        expectRejected(g, e, InvalidLength);
      }
      expectRejected(g, valid().subarray(0, len - 1), InvalidLength);
      expectRejected(g, concat(valid(), Uint8Array.of(0)), InvalidLength);
    });

    if (g.id === 'ristretto255') {
      const p = 2n ** 255n - 19n;
      const le = (x: bigint) => bigintToLe(x, 32);
      it('identity', () => expectRejected(g, new Uint8Array(32), InvalidElement));
      it('non-canonical: a field element ≥ p', () => {
        for (const x of [p, p + 1n, p + 2n, 2n ** 255n - 1n]) expectRejected(g, le(x), InvalidElement);
        // p + s for a valid s (the same value mod p, encoded unreduced).
        const s = leToBigint(valid());
        if (s + p < 2n ** 256n) expectRejected(g, le(s + p), InvalidElement);
      });
      it('non-canonical: a negative field element', () => {
        expectRejected(g, le(1n), InvalidElement);
        expectRejected(g, le(p - 2n), InvalidElement);
        // −s mod p is odd for a valid (even) s.
        expectRejected(g, le(p - leToBigint(valid())), InvalidElement);
      });
      it('non-canonical: the top bit set', () => {
        const e = valid();
        e[31]! |= 0x80;
        expectRejected(g, e, InvalidElement);
      });
      it('not a ristretto255 point', () => expectRejected(g, le(2n), InvalidElement));
    } else {
      const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
      const rhs = (x: bigint) => (((x * x) % P256_P) * x - 3n * x + B) % P256_P;
      const isSquare = (x: bigint) => {
        let r = 1n;
        let b = rhs(x);
        for (let e = (P256_P - 1n) / 2n; e > 0n; e >>= 1n, b = (b * b) % P256_P) if (e & 1n) r = (r * b) % P256_P;
        return r === 1n;
      };
      const comp = (prefix: number, x: bigint) => concat(Uint8Array.of(prefix), bigintToBe(x, 32));
      let noRoot = 1n;
      while (isSquare(noRoot)) noRoot++;
      let root = 0n;
      while (!isSquare(root)) root++;

      it('identity (SEC1 encodes it as the single byte 00)', () => {
        expectRejected(g, new Uint8Array(33), InvalidElement);
        expectRejected(g, Uint8Array.of(0), InvalidLength);
      });
      it('an x with no square root (off the curve)', () => {
        expectRejected(g, comp(2, noRoot), InvalidElement);
        expectRejected(g, comp(3, noRoot), InvalidElement);
      });
      it('non-canonical: x ≥ p', () => {
        expectRejected(g, comp(2, P256_P), InvalidElement);
        expectRejected(g, comp(3, 2n ** 256n - 1n), InvalidElement);
        // p + root is ≥ p but names a point mod p.
        expectRejected(g, comp(2, P256_P + root), InvalidElement);
        g.checkElement(comp(2, root), 'e');
      });
      it('prefixes other than 02 and 03', () => {
        const x = valid().subarray(1);
        for (const prefix of [0, 1, 4, 5, 6, 7, 0xff]) expectRejected(g, concat(Uint8Array.of(prefix), x), InvalidElement);
      });
      it('the uncompressed (65-byte) form of a valid point', () => {
        const u = uncompressed(valid());
        expect(u[0]).toBe(4);
        expectRejected(g, u, InvalidLength);
      });
    }
  });
});

/** The 04 || x || y form of a compressed P-256 point, through the reference decoder. */
function uncompressed(c: Uint8Array): Uint8Array {
  const x = beToBigint(c.subarray(1));
  const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
  const a = (((x * x) % P256_P) * x - 3n * x + B) % P256_P;
  let y = 1n;
  let b = a;
  for (let e = (P256_P + 1n) / 4n; e > 0n; e >>= 1n, b = (b * b) % P256_P) if (e & 1n) y = (y * b) % P256_P;
  if ((y & 1n) !== BigInt(c[0]! & 1)) y = P256_P - y;
  return concat(Uint8Array.of(4), bigintToBe(x, 32), bigintToBe(y, 32));
}

const rawSodium = await createSodiumRistretto255(nodeHash('SHA-512'));
const wrappedSodium = await createSodiumRistretto255(nodeHash('SHA-512'), { rawExports: false });

describe('sodium-wasm: the raw-export and wrapper paths agree', () => {
  const raw = rawSodium;
  const wrapped = wrappedSodium;
  it('reports its mode', () => {
    expect(raw.rawExports).toBe(true);
    expect(wrapped.rawExports).toBe(false);
  });
  it('on random inputs', () => {
    fc.assert(
      fc.property(bytes32, bytes32, fc.uint8Array({ maxLength: 40 }), (a, b, msg) => {
        const k = scalarFrom(raw, a);
        const m = raw.scalarMultBase(scalarFrom(raw, b));
        expect(toHex(wrapped.scalarMultBase(k))).toBe(toHex(raw.scalarMultBase(k)));
        expect(toHex(wrapped.scalarMult(k, m, 'm'))).toBe(toHex(raw.scalarMult(k, m, 'm')));
        expect(toHex(wrapped.scalarInvert(k))).toBe(toHex(raw.scalarInvert(k)));
        expect(toHex(wrapped.hashToGroup(msg, utf8('dst')))).toBe(toHex(raw.hashToGroup(msg, utf8('dst'))));
        expect(toHex(wrapped.hashToScalar(msg, utf8('dst')))).toBe(toHex(raw.hashToScalar(msg, utf8('dst'))));
      }),
      { numRuns: 50 },
    );
  });
  it('on invalid elements', () => {
    expectRejected(wrapped, new Uint8Array(32), OpaqueErrorCode.InvalidElement);
    expectRejected(wrapped, bigintToLe(1n, 32), OpaqueErrorCode.InvalidElement);
  });
  it('leaves no secret in the WebAssembly heap (raw exports)', () => {
    const mod = (sodium as unknown as { libsodium: { HEAPU8: Uint8Array; _malloc(n: number): number; _free(p: number): void } })
      .libsodium;
    // dlmalloc writes list pointers over the first bytes of a freed block: look for the last 24.
    const inHeap = (b: Uint8Array) => Buffer.from(mod.HEAPU8.buffer).indexOf(Buffer.from(b.subarray(b.length - 24))) >= 0;
    // Positive control: a pattern we put there ourselves is found.
    const probe = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 ^ (i * 37));
    const at = mod._malloc(32);
    mod.HEAPU8.set(probe, at);
    expect(inHeap(probe)).toBe(true);
    mod.HEAPU8.fill(0, at, at + 32);
    mod._free(at);
    expect(inHeap(probe)).toBe(false);

    fc.assert(
      fc.property(bytes32, bytes32, fc.uint8Array({ minLength: 1, maxLength: 40 }), (a, b, msg) => {
        const k = scalarFrom(raw, a);
        const m = raw.scalarMultBase(scalarFrom(raw, b));
        raw.scalarMult(k, m, 'm');
        raw.scalarMultBase(k);
        const inv = raw.scalarInvert(k);
        const dst = utf8('dst');
        const sk = raw.hashToScalar(msg, dst);
        raw.hashToGroup(msg, dst);
        const u = expandMessageXmd(raw.hash, msg, dst, 64);
        for (const secret of [k, inv, sk, u.subarray(0, 32), u.subarray(32)]) expect(inHeap(secret)).toBe(false);
      }),
      { numRuns: 20 },
    );
  });
  it('refuses a hash other than SHA-512', async () => {
    await expect(createSodiumRistretto255(nodeHash('SHA-256'))).rejects.toBeInstanceOf(OpaqueError);
  });
});

/** A key, one to four messages, and up to three more parts (hmacKey and hashPrefix properties). */
const keyMsgsMore = [
  fc.uint8Array({ maxLength: 300 }),
  fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 4 }),
  fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 3 }),
] as const;
/** A saved HMAC key holds its padded key (key XOR ipad) in the WebAssembly heap until disposed (a positive control), then not. */
function savedKeyIsWiped(h: HashPrimitives, key: Uint8Array, inHeap: (b: Uint8Array) => boolean): void {
  const ipad = key.map((b) => b ^ 0x36);
  const k = hmacKey(h, key);
  expect(inHeap(ipad)).toBe(true);
  k.mac(key);
  k.dispose();
  expect(inHeap(ipad)).toBe(false);
}

/** Whether the last 24 bytes of `b` stand anywhere in libsodium's WebAssembly heap. */
function inSodiumHeap(b: Uint8Array): boolean {
  const mod = (sodium as unknown as { libsodium: { HEAPU8: Uint8Array } }).libsodium;
  return Buffer.from(mod.HEAPU8.buffer).indexOf(Buffer.from(b.subarray(b.length - 24))) >= 0;
}

/**
 * No secret is left in libsodium's heap: a saved HMAC key once disposed, and whatever `round`
 * returns after each of 30 rounds on a high-entropy `keyLen`-byte key and message (a low-entropy
 * input, such as all zeros, is in the heap anyway).
 */
function leavesNoSecretInHeap(h: HashPrimitives, keyLen: number, round: (key: Uint8Array, msg: Uint8Array) => Uint8Array[]): void {
  savedKeyIsWiped(h, new Uint8Array(randomBytes(keyLen)), inSodiumHeap);
  for (let i = 0; i < 30; i++) {
    const key = new Uint8Array(randomBytes(keyLen));
    const msg = new Uint8Array(randomBytes(24 + ((i * 97) % 1500)));
    for (const secret of round(key, msg)) expect(inSodiumHeap(secret)).toBe(false);
  }
}

const edgeBytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + 3) & 0xff);

/** `h` agrees with @noble/hashes and node:crypto on hashes and HMACs of messages and keys of these lengths, in one or several parts. */
function agreesAtEdges(h: HashPrimitives, lens: number[], keyLens: number[]): void {
  const ref = nobleHash(h.name);
  const node = nodeHash(h.name);
  for (const n of lens) {
    const msg = edgeBytes(n, n);
    expect(toHex(h.hash(msg))).toBe(toHex(ref.hash(msg)));
    expect(h.hash(msg).length).toBe(h.outputLen);
    expect(toHex(h.hash(msg.subarray(0, n >> 1), msg.subarray(n >> 1)))).toBe(toHex(node.hash(msg)));
    for (const kl of keyLens) {
      const key = edgeBytes(kl, kl + 1);
      expect(toHex(h.hmac(key, msg))).toBe(toHex(ref.hmac(key, msg)));
    }
    const key = edgeBytes(h.outputLen, 9);
    expect(toHex(h.hmac(key, msg.subarray(0, 5), msg.subarray(5), msg))).toBe(toHex(node.hmac(key, msg, msg)));
  }
}

describe('hash-sodium: libsodium WebAssembly SHA-512', async () => {
  const h = await createSodiumSha512();
  const ref = nobleHash('SHA-512');
  const node = nodeHash('SHA-512');
  const hex = (b: Uint8Array) => toHex(b);
  // Lengths around the block (128), the staging area (1024) and beyond.
  const lens = [0, 1, 63, 64, 111, 112, 127, 128, 129, 255, 256, 1000, 1023, 1024, 1025, 2048, 3000];
  const bytesOf = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + 3) & 0xff);

  it('is the suite hash of ristretto255 on WebAssembly (the fast suite where native libsodium does not load)', () => {
    const wasm = suites.find((s) => s.name === 'ristretto255-SHA512/wasm') ?? suites.find((s) => s.name === 'ristretto255-SHA512/fast');
    expect(wasm!.suite.group.backend).toBe('sodium-wasm');
    expect(wasm!.suite.hash.backend).toBe('sodium-wasm');
  });
  it('hash and hmac agree with @noble/hashes and node:crypto at edge lengths, in one or many parts', () => {
    agreesAtEdges(h, lens, [0, 1, 32, 64, 127, 128, 129, 200, 1024, 1025, 2000]);
  });
  it('hmacKey and hashPrefix agree with hmac and hash (random inputs)', () => {
    fc.assert(
      fc.property(
        ...keyMsgsMore,
        (key, msgs, more) => {
          const k = hmacKey(h, key);
          for (const m of msgs) expect(hex(k.mac(m, ...more))).toBe(hex(ref.hmac(key, m, ...more)));
          k.dispose();
          const p = hashPrefix(h, msgs);
          expect(hex(p.digest)).toBe(hex(ref.hash(...msgs)));
          expect(hex(p.extend(...more))).toBe(hex(ref.hash(...msgs, ...more)));
          expect(() => p.extend()).toThrow();
          // The fallbacks of implementations without them agree too.
          expect(hex(hmacKey(node, key).mac(msgs[0]!))).toBe(hex(ref.hmac(key, msgs[0]!)));
          const q = hashPrefix(node, msgs);
          expect(hex(q.extend(...more))).toBe(hex(ref.hash(...msgs, ...more)));
        },
      ),
      { numRuns: 100 },
    );
  });
  it('saved states: more live keys and prefixes than heap slots, used in any order, then released', () => {
    const keys = Array.from({ length: 20 }, (_, i) => bytesOf(64, i + 100));
    const live = keys.map((k) => hmacKey(h, k));
    const prefixes = keys.map((k) => hashPrefix(h, [k]));
    for (let i = keys.length - 1; i >= 0; i--) {
      expect(hex(live[i]!.mac(keys[0]!))).toBe(hex(ref.hmac(keys[i]!, keys[0]!)));
      expect(hex(prefixes[i]!.extend(keys[1]!))).toBe(hex(ref.hash(keys[i]!, keys[1]!)));
      live[i]!.dispose();
      live[i]!.dispose(); // idempotent
      prefixes[i]!.dispose();
      expect(() => live[i]!.mac(keys[0]!)).toThrow();
    }
    // An abandoned prefix (never extended) is released by dispose; the slots are all free again.
    for (let i = 0; i < 20; i++) hashPrefix(h, [keys[i]!]).dispose();
    const again = keys.map((k) => hmacKey(h, k));
    expect(hex(again[7]!.mac(keys[2]!))).toBe(hex(ref.hmac(keys[7]!, keys[2]!)));
    for (const k of again) k.dispose();
  });
  it('xmd64 (in the heap) agrees with expand_message_xmd, and the sodium group with the reference', async () => {
    const mod = (sodium as unknown as { libsodium: { HEAPU8: Uint8Array } }).libsodium;
    const g = await createSodiumRistretto255(h);
    const refG = portableSuite('ristretto255-SHA512').group;
    for (const n of [0, 1, 55, 100, 1000, 1019, 1020, 1021, 1100, 3000]) {
      for (const dl of [1, 13, 41, 200, 255]) {
        const msg = bytesOf(n, dl);
        const dst = bytesOf(dl, n + 5);
        const at = h.xmd64(msg, dst);
        const u = mod.HEAPU8.slice(at, at + 64);
        h.wipe();
        expect(hex(u)).toBe(hex(expandMessageXmd(ref, msg, dst, 64)));
        expect(hex(g.hashToScalar(msg, dst))).toBe(hex(refG.hashToScalar(msg, dst)));
        expect(hex(g.hashToGroup(msg, dst))).toBe(hex(refG.hashToGroup(msg, dst)));
      }
    }
    // A DST over 255 bytes is hashed first (RFC 9380 §5.3.3): the generic path.
    const long = bytesOf(300, 1);
    expect(() => h.xmd64(long, long)).toThrow(RangeError);
    expect(hex(g.hashToScalar(long, long))).toBe(hex(refG.hashToScalar(long, long)));
  });
  it('leaves no secret in the WebAssembly heap', async () => {
    const g = await createSodiumRistretto255(h);
    leavesNoSecretInHeap(h, 64, (key, msg) => {
      const tag = h.hmac(key, msg);
      const k = hmacKey(h, key);
      const tag2 = k.mac(msg, key);
      k.dispose();
      const p = hashPrefix(h, [key, msg]);
      const d2 = p.extend(key);
      const digest = h.hash(key, msg);
      const sk = g.hashToScalar(msg, utf8('dst'));
      // (hashToGroup's output element is not checked: crypto_core_ristretto255_from_hash leaves a
      // copy on libsodium's own stack, outside the scratch area, whichever hash feeds it.)
      g.hashToGroup(key, utf8('dst'));
      return [key, msg, tag, tag2, p.digest, d2, digest, sk];
    });
  });
});

describe('hash-sodium: libsodium WebAssembly SHA-256 (the enclave\'s)', async () => {
  const h = await createSodiumSha256();
  const h512 = await createSodiumSha512();
  const ref = nobleHash('SHA-256');
  const hex = (b: Uint8Array) => toHex(b);
  // Lengths around the block (64), the staging area (1024) and beyond.
  const lens = [0, 1, 31, 32, 55, 56, 63, 64, 65, 127, 128, 1000, 1023, 1024, 1025, 2048, 3000];

  it('hash and hmac agree with @noble/hashes and node:crypto at edge lengths, in one or many parts', () => {
    expect([h.name, h.outputLen, h.blockLen, h.backend]).toEqual(['SHA-256', 32, 64, 'sodium-wasm']);
    agreesAtEdges(h, lens, [0, 1, 32, 63, 64, 65, 128, 1024, 1025, 2000]);
  });
  it('RFC 4231 test case 2 (HMAC-SHA-256) and the FIPS 180-4 "abc" digest', () => {
    expect(hex(h.hmac(utf8('Jefe'), utf8('what do ya want for nothing?')))).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    expect(hex(h.hash(utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
  it('hmacKey and hashPrefix agree with hmac and hash; interleaved with SHA-512 calls on the same heap', () => {
    fc.assert(
      fc.property(
        ...keyMsgsMore,
        (key, msgs, more) => {
          const k = hmacKey(h, key);
          const k512 = hmacKey(h512, key);
          for (const m of msgs) {
            expect(hex(k.mac(m, ...more))).toBe(hex(ref.hmac(key, m, ...more)));
            expect(hex(k512.mac(m))).toBe(hex(nodeHash('SHA-512').hmac(key, m)));
          }
          k.dispose();
          k512.dispose();
          const p = hashPrefix(h, msgs);
          expect(hex(p.digest)).toBe(hex(ref.hash(...msgs)));
          expect(hex(p.extend(...more))).toBe(hex(ref.hash(...msgs, ...more)));
          expect(() => p.extend()).toThrow();
        },
      ),
      { numRuns: 100 },
    );
  });
  it('leaves no secret in the WebAssembly heap', () => {
    leavesNoSecretInHeap(h, 32, (key, msg) => {
      const tag = h.hmac(key, msg);
      const digest = h.hash(key, msg);
      const p = hashPrefix(h, [key, msg]);
      const d2 = p.extend(key);
      return [key, msg, tag, digest, p.digest, d2];
    });
  });
});

describe('modInverseVartime (Lehmer) agrees with the plain extended Euclid', () => {
  for (const [name, m] of [
    ['p', P256_P],
    ['n', P256_ORDER],
    ['L', RISTRETTO_ORDER],
  ] as const) {
    it(`mod ${name}`, () => {
      const fixed = [1n, 2n, 3n, m - 1n, m - 2n, (m + 1n) / 2n, 2n ** 48n, 2n ** 48n - 1n, 2n ** 200n + 1n];
      for (const a of fixed) expect(modInverseVartime(a, m)).toBe(modInverse(a, m));
      fc.assert(
        fc.property(fc.bigInt({ min: 1n, max: m - 1n }), (a) => {
          expect(modInverseVartime(a, m)).toBe(modInverse(a, m));
        }),
        { numRuns: 2000 },
      );
      expect(() => modInverseVartime(0n, m)).toThrow(RangeError);
    });
  }
});

describe('pooledRandom', () => {
  it('serves fresh bytes, leaves nothing served in the pool, and passes large draws through', async () => {
    const { pooledRandom } = await import('../../../enclave/opaque/bytes.ts');
    let fills = 0;
    let pool: Uint8Array | null = null;
    let ctr = 0;
    const r = pooledRandom((b) => {
      fills++;
      if (b.length === 64) pool = b;
      for (let i = 0; i < b.length; i++) b[i] = (++ctr % 255) + 1;
    }, 64);
    const a = r(32);
    const b = r(32);
    expect(fills).toBe(1);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(pool!.every((x) => x === 0)).toBe(true); // both draws wiped from the pool
    r(16);
    expect(fills).toBe(2);
    expect(r(100).length).toBe(100);
    expect(fills).toBe(3);
  });
});
