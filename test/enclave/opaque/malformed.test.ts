/**
 * Malformed input for every RFC 9807 message (§4.1.1, §5.1, §6.1, §6.3.1) and decoder, on every
 * backend of allSuites(): truncated, oversized, empty, bit-flipped, identity, non-canonical and
 * off-curve elements (RFC 9497 §2.1 DeserializeElement), each a typed OpaqueError naming the
 * message or RFC field; a fast-check "only OpaqueError" property per decoder; the same faults
 * through the client and server entry points; KE2/KE3 tampering and KE3 replay as outcomes;
 * single-use state objects (StateReused); bad keys, identities, contexts and random sources.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { ristretto255 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RandomSource, utf8 } from '../../../enclave/opaque/bytes.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { OpaqueError, OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import * as M from '../../../enclave/opaque/encoding.ts';
import {
  type ServerKeys, generateServerKeys, serverLoginFinish, serverLoginStart, serverLoginStateDecode, serverLoginStateEncode,
  serverRegistrationResponse,
} from '../../../enclave/opaque/server.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { allSuites } from '../../helpers/suites.ts';
import { MESSAGE_DECODERS, MESSAGE_ENCODERS, opaqueMessages } from '../../helpers/opaque.ts';

const suites = await allSuites();
const rng: RandomSource = (n) => new Uint8Array(nodeRandomBytes(n));
const runs = (name: string, fast: number, slow: number): number => (name.endsWith('/noble') ? slow : fast);

/** Runs `f` and returns the OpaqueError it throws (fails the test on anything else). */
function fault(f: () => unknown): OpaqueError {
  try {
    f();
  } catch (e) {
    if (e instanceof OpaqueError) return e;
    throw new Error(`expected an OpaqueError, got ${String(e)}`);
  }
  throw new Error('expected an OpaqueError, nothing was thrown');
}
async function faultAsync(f: () => Promise<unknown>): Promise<OpaqueError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof OpaqueError) return e;
    throw new Error(`expected an OpaqueError, got ${String(e)}`);
  }
  throw new Error('expected an OpaqueError, nothing was thrown');
}
const expectFault = (e: OpaqueError, code: number, field: string): void => {
  expect({ code: e.code, field: e.field }).toEqual({ code, field });
};

// Bad element encodings per group: identity, non-canonical, not on the curve.
function beBytes(x: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}
function firstInvalid(make: (i: number) => Uint8Array, decode: (b: Uint8Array) => unknown): Uint8Array {
  for (let i = 1; ; i++) {
    const b = make(i);
    try {
      decode(b);
    } catch {
      return b;
    }
  }
}
const P256_P = 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n;
const BAD: Record<Suite['group']['id'], Record<'identity' | 'non-canonical' | 'off-curve', Uint8Array>> = {
  ristretto255: {
    identity: new Uint8Array(32),
    // s = p = 2^255 - 19, little-endian: not reduced.
    'non-canonical': Uint8Array.from([0xed, ...new Array(30).fill(0xff), 0x7f]),
    // A small even s (canonical and non-negative) that is not the encoding of a point.
    'off-curve': firstInvalid((i) => Uint8Array.from([2 * i, ...new Array(31).fill(0)]), (b) => ristretto255.Point.fromBytes(b)),
  },
  P256: {
    identity: new Uint8Array(33),
    'non-canonical': Uint8Array.from([2, ...beBytes(P256_P, 32)]),
    'off-curve': firstInvalid((i) => Uint8Array.from([2, ...beBytes(BigInt(i), 32)]), (b) => p256.Point.fromBytes(b)),
  },
};

interface Fixture {
  keys: ServerKeys;
  messages: Record<M.MessageName, Uint8Array>;
}

async function fixture(suite: Suite): Promise<Fixture> {
  const keys = generateServerKeys(suite, rng);
  return { keys, messages: await opaqueMessages({ suite, context: utf8('ctx'), rng }, keys, utf8('pw'), utf8('id')) };
}

/** `b` with `field` (at its offset in `name`) replaced by `value`. */
function withField(suite: Suite, name: M.MessageName, b: Uint8Array, field: string, value: Uint8Array): Uint8Array {
  let off = 0;
  for (const f of M.layouts(suite)[name].fields) {
    if (f.name === field) {
      const out = Uint8Array.from(b);
      out.set(value, off);
      return out;
    }
    off += f.len;
  }
  throw new Error(`${name} has no field ${field}`);
}

/** The field of `name` that holds byte `i`. */
function fieldAt(suite: Suite, name: M.MessageName, i: number): M.FieldSpec {
  let off = 0;
  for (const f of M.layouts(suite)[name].fields) {
    if (i < off + f.len) return f;
    off += f.len;
  }
  throw new Error('out of range');
}

for (const { name: suiteName, suite } of suites) {
  const fx = await fixture(suite);
  const bad = BAD[suite.group.id];

  describe(`message decoders on ${suiteName}`, () => {
    for (const name of M.MESSAGE_NAMES) {
      const valid = fx.messages[name];
      const len = M.messageLength(suite, name);
      const decode = (b: Uint8Array) => MESSAGE_DECODERS[name](suite, b);

      it(`${name}: a valid encoding decodes and re-encodes to the same bytes`, () => {
        expect(valid.length).toBe(len);
        expect(MESSAGE_ENCODERS[name](suite, decode(valid) as never)).toEqual(valid);
      });

      it(`${name}: empty, truncated and oversized inputs are InvalidLength naming ${name}`, () => {
        for (const b of [new Uint8Array(0), valid.subarray(0, len - 1), valid.subarray(0, 1)]) {
          const e = fault(() => decode(b));
          expectFault(e, OpaqueErrorCode.InvalidLength, name);
          expect(e.message).toContain(`expected ${len} bytes, got ${b.length}`);
        }
        for (const extra of [1, 17]) {
          const e = fault(() => decode(Uint8Array.from([...valid, ...new Array(extra).fill(0)])));
          expectFault(e, OpaqueErrorCode.InvalidLength, name);
          expect(e.message).toContain(`${extra} trailing bytes`);
        }
        expectFault(fault(() => decode('x' as unknown as Uint8Array)), OpaqueErrorCode.InvalidLength, name);
      });

      for (const f of M.layouts(suite)[name].fields.filter((x) => x.element)) {
        it(`${name}: ${f.name} that is the identity, non-canonical or off the curve is InvalidElement naming ${f.name}`, () => {
          for (const [kind, enc] of Object.entries(bad)) {
            const e = fault(() => decode(withField(suite, name, valid, f.name, enc)));
            expectFault(e, OpaqueErrorCode.InvalidElement, f.name);
            expect(e.message, kind).toContain(f.name);
          }
        });
      }

      it(`${name}: a flipped bit decodes or is InvalidElement naming the field that holds it`, () => {
        fc.assert(
          fc.property(fc.integer({ min: 0, max: len * 8 - 1 }), (bit) => {
            const b = Uint8Array.from(valid);
            b[bit >> 3]! ^= 1 << (bit & 7);
            const f = fieldAt(suite, name, bit >> 3);
            try {
              decode(b);
            } catch (e) {
              expect(f.element).toBe(true);
              expectFault(e as OpaqueError, OpaqueErrorCode.InvalidElement, f.name);
            }
          }),
          { numRuns: runs(suiteName, 100, 30) },
        );
      });

      it(`${name}: arbitrary bytes never throw anything but OpaqueError`, () => {
        const anyLen = fc.uint8Array({ maxLength: 2 * len + 2 });
        const exactLen = fc.uint8Array({ minLength: len, maxLength: len });
        fc.assert(
          fc.property(fc.oneof(anyLen, exactLen), (b) => {
            try {
              decode(b);
            } catch (e) {
              expect(e).toBeInstanceOf(OpaqueError);
              expect([OpaqueErrorCode.InvalidLength, OpaqueErrorCode.InvalidElement]).toContain((e as OpaqueError).code);
            }
          }),
          { numRuns: runs(suiteName, 200, 60) },
        );
      });

      it(`${name}: the encoder checks every field's length, naming it`, () => {
        const decoded = decode(valid) as Record<string, unknown>;
        // Shorten the first byte-string field found (depth first) and expect its RFC name.
        const first = M.layouts(suite)[name].fields[0]!;
        const shorten = (v: unknown): unknown => {
          if (v instanceof Uint8Array) return v.subarray(1);
          const o = { ...(v as Record<string, unknown>) };
          const k = Object.keys(o)[0]!;
          o[k] = shorten(o[k]);
          return o;
        };
        const e = fault(() => MESSAGE_ENCODERS[name](suite, shorten(decoded) as never));
        expectFault(e, OpaqueErrorCode.InvalidLength, first.name);
      });
    }
  });

  describe(`protocol entry points on ${suiteName}`, () => {
    const o = { suite, context: utf8('ctx'), rng };
    const pw = utf8('pw');
    const cid = utf8('id');
    const { keys, messages } = fx;

    it('the server names bad elements in RegistrationRequest, KE1 and the stored record', () => {
      for (const enc of Object.values(bad)) {
        const req = withField(suite, 'RegistrationRequest', messages.RegistrationRequest, 'blinded_message', enc);
        expectFault(fault(() => serverRegistrationResponse(o, keys, req, cid)), OpaqueErrorCode.InvalidElement, 'blinded_message');
        for (const field of ['blinded_message', 'client_public_keyshare']) {
          const ke1 = withField(suite, 'KE1', messages.KE1, field, enc);
          expectFault(fault(() => serverLoginStart(o, keys, ke1, cid, messages.RegistrationRecord)), OpaqueErrorCode.InvalidElement, field);
        }
        const record = withField(suite, 'RegistrationRecord', messages.RegistrationRecord, 'client_public_key', enc);
        expectFault(fault(() => serverLoginStart(o, keys, messages.KE1, cid, record)), OpaqueErrorCode.InvalidElement, 'client_public_key');
        const fake = { clientPublicKey: enc, maskingKey: new Uint8Array(suite.Nh) };
        expectFault(fault(() => serverLoginStart(o, keys, messages.KE1, cid, null, fake)), OpaqueErrorCode.InvalidElement, 'client_public_key');
      }
    });

    it('the server checks lengths of KE1, the record, the fake record, KE3 and the request', () => {
      const cut = (b: Uint8Array) => b.subarray(0, b.length - 1);
      expectFault(fault(() => serverRegistrationResponse(o, keys, cut(messages.RegistrationRequest), cid)), OpaqueErrorCode.InvalidLength, 'RegistrationRequest');
      expectFault(fault(() => serverLoginStart(o, keys, cut(messages.KE1), cid, messages.RegistrationRecord)), OpaqueErrorCode.InvalidLength, 'KE1');
      expectFault(fault(() => serverLoginStart(o, keys, messages.KE1, cid, cut(messages.RegistrationRecord))), OpaqueErrorCode.InvalidLength, 'RegistrationRecord');
      const fake = { clientPublicKey: messages.RegistrationRecord.slice(0, suite.Npk), maskingKey: new Uint8Array(3) };
      expectFault(fault(() => serverLoginStart(o, keys, messages.KE1, cid, null, fake)), OpaqueErrorCode.InvalidLength, 'masking_key');
      const { state } = serverLoginStart(o, keys, messages.KE1, cid, messages.RegistrationRecord);
      expectFault(fault(() => serverLoginFinish(o, state, cut(messages.KE3))), OpaqueErrorCode.InvalidLength, 'KE3');
      // The malformed KE3 spent the state.
      expect(fault(() => serverLoginFinish(o, state, messages.KE3)).code).toBe(OpaqueErrorCode.StateReused);
    });

    it('the client names bad elements in RegistrationResponse and KE2', async () => {
      for (const enc of Object.values(bad)) {
        for (const field of ['evaluated_message', 'server_public_key']) {
          const reg = clientRegistrationStart(o, pw);
          const resp = withField(suite, 'RegistrationResponse', serverRegistrationResponse(o, keys, reg.request, cid), field, enc);
          expectFault(await faultAsync(() => clientRegistrationFinish(o, reg.state, pw, resp)), OpaqueErrorCode.InvalidElement, field);
        }
        for (const field of ['evaluated_message', 'server_public_keyshare']) {
          const { ke1, state } = clientLoginStart(o, pw);
          const ke2 = withField(suite, 'KE2', serverLoginStart(o, keys, ke1, cid, messages.RegistrationRecord).ke2, field, enc);
          expectFault(await faultAsync(() => clientLoginFinish(o, state, pw, ke2)), OpaqueErrorCode.InvalidElement, field);
        }
      }
      const { state } = clientLoginStart(o, pw);
      expectFault(await faultAsync(() => clientLoginFinish(o, state, pw, messages.KE2.subarray(1))), OpaqueErrorCode.InvalidLength, 'KE2');
    });

    it('a flipped bit anywhere in KE2 never lets the client succeed', async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: M.messageLength(suite, 'KE2') * 8 - 1 }), async (bit) => {
          const { ke1, state } = clientLoginStart(o, pw);
          const ke2 = serverLoginStart(o, keys, ke1, cid, messages.RegistrationRecord).ke2;
          ke2[bit >> 3]! ^= 1 << (bit & 7);
          try {
            const r = await clientLoginFinish(o, state, pw, ke2);
            expect(r.ok).toBe(false);
          } catch (e) {
            expect(e).toBeInstanceOf(OpaqueError);
            expect((e as OpaqueError).code).toBe(OpaqueErrorCode.InvalidElement);
          }
        }),
        { numRuns: runs(suiteName, 40, 6) },
      );
    });

    it('a flipped bit in KE3, or a KE3 replayed to another server state, is wrong-password', async () => {
      const login = async () => {
        const { ke1, state } = clientLoginStart(o, pw);
        const s = serverLoginStart(o, keys, ke1, cid, messages.RegistrationRecord);
        const c = await clientLoginFinish(o, state, pw, s.ke2);
        if (!c.ok) throw new Error('login failed');
        return { ke3: c.ke3, state: s.state };
      };
      const a = await login();
      const b = await login();
      expect(serverLoginFinish(o, b.state, a.ke3)).toEqual({ ok: false, outcome: 'wrong-password' });
      for (const bit of [0, 7, 8 * suite.Nm - 1]) {
        const c = await login();
        const ke3 = Uint8Array.from(c.ke3);
        ke3[bit >> 3]! ^= 1 << (bit & 7);
        expect(serverLoginFinish(o, c.state, ke3)).toEqual({ ok: false, outcome: 'wrong-password' });
      }
      expect(serverLoginFinish(o, a.state, a.ke3).ok).toBe(true);
    });

    it('every state object is single use (StateReused)', async () => {
      const reg = clientRegistrationStart(o, pw);
      const resp = serverRegistrationResponse(o, keys, reg.request, cid);
      await clientRegistrationFinish(o, reg.state, pw, resp);
      expect((await faultAsync(() => clientRegistrationFinish(o, reg.state, pw, resp))).code).toBe(OpaqueErrorCode.StateReused);

      const { ke1, state } = clientLoginStart(o, pw);
      const s = serverLoginStart(o, keys, ke1, cid, messages.RegistrationRecord);
      const c = await clientLoginFinish(o, state, pw, s.ke2);
      expect(c.ok).toBe(true);
      expect((await faultAsync(() => clientLoginFinish(o, state, pw, s.ke2))).code).toBe(OpaqueErrorCode.StateReused);
      if (!c.ok) return;
      expect(serverLoginFinish(o, s.state, c.ke3).ok).toBe(true);
      expect(fault(() => serverLoginFinish(o, s.state, c.ke3)).code).toBe(OpaqueErrorCode.StateReused);
      expect(fault(() => serverLoginStateEncode(s.state)).code).toBe(OpaqueErrorCode.StateReused);

      // A client state spent by a malformed KE2 stays spent.
      const l2 = clientLoginStart(o, pw);
      await faultAsync(() => clientLoginFinish(o, l2.state, pw, new Uint8Array(1)));
      expect((await faultAsync(() => clientLoginFinish(o, l2.state, pw, s.ke2))).code).toBe(OpaqueErrorCode.StateReused);
    });

    it('serverLoginStateDecode is strict', () => {
      const { state } = serverLoginStart(o, keys, messages.KE1, cid, messages.RegistrationRecord);
      const blob = serverLoginStateEncode(state);
      expectFault(fault(() => serverLoginStateDecode(suite, blob.subarray(1))), OpaqueErrorCode.InvalidLength, 'ServerLoginState');
      expectFault(fault(() => serverLoginStateDecode(suite, Uint8Array.from([...blob, 0]))), OpaqueErrorCode.InvalidLength, 'ServerLoginState');
      expectFault(fault(() => serverLoginStateDecode(suite, Uint8Array.from([9, ...blob.subarray(1)]))), OpaqueErrorCode.InvalidArgument, 'ServerLoginState');
      expectFault(fault(() => serverLoginStateDecode(suite, Uint8Array.from([1, 7, ...blob.subarray(2)]))), OpaqueErrorCode.InvalidArgument, 'ServerLoginState');
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: blob.length + 2 }), (b) => {
          try {
            serverLoginStateDecode(suite, b);
          } catch (e) {
            expect(e).toBeInstanceOf(OpaqueError);
          }
        }),
      );
    });

    it('bad server keys, identities, contexts, passwords and random sources are typed faults', () => {
      const k = (patch: Partial<ServerKeys>): ServerKeys => ({ ...keys, ...patch });
      const login = (kk: ServerKeys) => () => serverLoginStart(o, kk, messages.KE1, cid, messages.RegistrationRecord);
      expectFault(fault(login(k({ oprfSeed: new Uint8Array(suite.Nh - 1) }))), OpaqueErrorCode.InvalidLength, 'oprf_seed');
      expectFault(fault(login(k({ serverPrivateKey: new Uint8Array(suite.Nsk) }))), OpaqueErrorCode.InvalidScalar, 'server_private_key');
      expectFault(fault(login(k({ serverPrivateKey: new Uint8Array(suite.Nsk).fill(0xff) }))), OpaqueErrorCode.InvalidScalar, 'server_private_key');
      expectFault(fault(login(k({ serverPublicKey: bad.identity }))), OpaqueErrorCode.InvalidElement, 'server_public_key');
      const other = generateServerKeys(suite, rng);
      expectFault(fault(login(k({ serverPublicKey: other.serverPublicKey }))), OpaqueErrorCode.InvalidArgument, 'server_public_key');

      const withIds = { ...o, identities: { client: new Uint8Array(0) } };
      expectFault(fault(() => serverLoginStart(withIds, keys, messages.KE1, cid, messages.RegistrationRecord)), OpaqueErrorCode.InvalidArgument, 'client_identity');
      expectFault(fault(() => clientLoginStart({ ...o, identities: { server: new Uint8Array(0x10000) } }, pw)), OpaqueErrorCode.InvalidArgument, 'server_identity');
      expectFault(fault(() => clientLoginStart({ ...o, context: new Uint8Array(0x10000) }, pw)), OpaqueErrorCode.InvalidArgument, 'context');
      expectFault(fault(() => clientRegistrationStart(o, new Uint8Array(0x10000))), OpaqueErrorCode.InvalidArgument, 'password');

      const short: RandomSource = (n) => new Uint8Array(n - 1);
      const dry: RandomSource = () => {
        throw new OpaqueError(OpaqueErrorCode.RandomSourceError, 'dry');
      };
      for (const r of [short, dry]) {
        expect(fault(() => clientLoginStart({ ...o, rng: r }, pw)).code).toBe(OpaqueErrorCode.RandomSourceError);
        expect(fault(() => serverLoginStart({ ...o, rng: r }, keys, messages.KE1, cid, messages.RegistrationRecord)).code).toBe(OpaqueErrorCode.RandomSourceError);
        expect(fault(() => generateServerKeys(suite, r)).code).toBe(OpaqueErrorCode.RandomSourceError);
      }
    });
  });
}
