/**
 * RFC 9497 Appendix A.1.1 / A.3.1 test vectors, base mode (0x00), for ristretto255-SHA512 and
 * P256-SHA256: DeriveKeyPair (§3.2.1), Blind (through a queue RNG handing out the vector's
 * blind), BlindEvaluate, Finalize and Evaluate (§3.3.1), on every backend of allSuites().
 * Rows with Batch > 1 hold comma-separated values and are run element by element.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../enclave/opaque/bytes.ts';
import { OpaqueError, OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import { blind, blindEvaluate, deriveKeyPair, deriveKeyPairInfo, deriveKeyPairScalar, evaluate, finalize, oprfLabels } from '../../../enclave/opaque/oprf.ts';
import { allSuites } from '../../helpers/suites.ts';
import { queueRng } from '../../helpers/opaque.ts';

interface OprfRow { Batch: number; Blind: string; BlindedElement: string; EvaluationElement: string; Input: string; Output: string }
interface OprfVector { identifier: string; mode: number; seed: string; keyInfo: string; skSm: string; vectors: OprfRow[] }

const file = JSON.parse(readFileSync(new URL('../../vectors/rfc/oprf-rfc9497-appendixA.json', import.meta.url), 'utf8')) as { vectors: OprfVector[] };
const suites = await allSuites();

const split = (s: string): Uint8Array[] => s.split(',').map(fromHex);

describe('RFC 9497 OPRF base mode vectors', () => {
  for (const { name, suite } of suites) {
    const vectors = file.vectors.filter((v) => v.mode === 0 && v.identifier === suite.id);
    it(`${name}: the vector file has mode-0 vectors for this suite`, () => {
      expect(vectors.length).toBe(1);
      expect(vectors[0]!.vectors.length).toBeGreaterThanOrEqual(2);
    });
    for (const v of vectors) {
      it(`${name}: DeriveKeyPair(seed, keyInfo) = skSm`, () => {
        const { privateKey, publicKey } = deriveKeyPair(suite, fromHex(v.seed), fromHex(v.keyInfo));
        expect(toHex(privateKey)).toBe(v.skSm);
        expect(toHex(publicKey)).toBe(toHex(suite.group.scalarMultBase(fromHex(v.skSm))));
      });
      v.vectors.forEach((row, i) => {
        it(`${name}: vector ${i + 1} (batch ${row.Batch}): Blind, BlindEvaluate, Finalize, Evaluate`, () => {
          const sk = fromHex(v.skSm);
          const inputs = split(row.Input), blinds = split(row.Blind), blinded = split(row.BlindedElement);
          const evaluated = split(row.EvaluationElement), outputs = split(row.Output);
          expect(new Set([inputs.length, blinds.length, blinded.length, evaluated.length, outputs.length]).size).toBe(1);
          expect(inputs.length).toBe(row.Batch);
          const rng = queueRng(...blinds);
          for (let j = 0; j < inputs.length; j++) {
            const b = blind(suite, inputs[j]!, rng);
            expect(toHex(b.blind)).toBe(toHex(blinds[j]!));
            expect(toHex(b.blindedElement)).toBe(toHex(blinded[j]!));
            const ev = blindEvaluate(suite, sk, b.blindedElement);
            expect(toHex(ev)).toBe(toHex(evaluated[j]!));
            expect(toHex(finalize(suite, inputs[j]!, b.blind, ev))).toBe(toHex(outputs[j]!));
            expect(toHex(evaluate(suite, sk, inputs[j]!))).toBe(toHex(outputs[j]!));
          }
          expect(() => rng(1)).toThrow(OpaqueError);
        });
      });
    }

    it(`${name}: BlindEvaluate and Finalize reject invalid elements naming the field`, () => {
      const sk = fromHex(vectors[0]!.skSm);
      const bad = new Uint8Array(suite.Noe); // the identity / not a valid encoding in both groups
      for (const [fn, field] of [
        [() => blindEvaluate(suite, sk, bad), 'blinded_message'],
        [() => finalize(suite, new Uint8Array(1), sk, bad), 'evaluated_message'],
      ] as const) {
        try {
          fn();
          expect.unreachable();
        } catch (e) {
          expect(e).toBeInstanceOf(OpaqueError);
          expect((e as OpaqueError).field).toBe(field);
        }
      }
    });

    it(`${name}: an input that hashes to the identity is InvalidInput (Blind and Evaluate)`, () => {
      // A group whose HashToGroup returns the identity encoding (all zero in both suites' fixed length).
      const group = Object.assign(Object.create(suite.group) as typeof suite.group, { hashToGroup: () => new Uint8Array(suite.Noe) });
      const stub = { ...suite, group };
      const sk = fromHex(vectors[0]!.skSm);
      for (const f of [() => blind(stub, new Uint8Array(1), queueRng(fromHex(vectors[0]!.vectors[0]!.Blind))), () => evaluate(stub, sk, new Uint8Array(1))]) {
        try {
          f();
          expect.unreachable();
        } catch (e) {
          expect((e as OpaqueError).code).toBe(OpaqueErrorCode.InvalidInput);
        }
      }
    });

    it(`${name}: Blind with a dry random source is RandomSourceError`, () => {
      try {
        blind(suite, new Uint8Array(3), queueRng());
        expect.unreachable();
      } catch (e) {
        expect((e as OpaqueError).code).toBe(OpaqueErrorCode.RandomSourceError);
      }
    });
  }
});

describe('DeriveKeyPair with long key info (the input arrays reused between calls)', () => {
  /** RFC 9497 §3.2.1 spelled out: HashToScalar(seed || I2OSP(len(info), 2) || info || I2OSP(counter, 1), DST) for counter 0 (never zero here). */
  const reference = (suite: (typeof suites)[number]['suite'], seed: Uint8Array, info: Uint8Array): string => {
    const msg = new Uint8Array([...seed, info.length >> 8, info.length & 0xff, ...info, 0]);
    return toHex(suite.group.hashToScalar(msg, oprfLabels(suite).deriveKeyPairDst));
  };
  for (const { name, suite } of suites) {
    it(`${name}: the same scalar as the definition, for inputs of several lengths in turn, the same ones again`, () => {
      const seed = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
      const infos = [40, 100, 40, 7, 100, 300, 7, 40].map((n, k) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + k) & 0xff));
      for (const info of infos) expect(toHex(deriveKeyPairScalar(suite, seed, deriveKeyPairInfo(info)))).toBe(reference(suite, seed, info));
      // A longer seed-and-info is no different, and the result does not change when another call reuses the arrays.
      const first = deriveKeyPairScalar(suite, seed, deriveKeyPairInfo(infos[1]!));
      const kept = toHex(first);
      deriveKeyPairScalar(suite, seed.map((b) => b ^ 0xff), deriveKeyPairInfo(infos[1]!));
      expect(toHex(first)).toBe(kept);
    });
  }
});
