/**
 * The p11-kit RPC decoder and dispatcher never crash (hsm/tokens/p11kit/codec.ts, dispatch.ts):
 * for every call of p11-kit 0.24.1's table, a request with its real call id and signature and
 * then any bytes is either answered (a response or an error response) or refused with a
 * P11KitError; nothing else is thrown. The module behind is the emulator with a token and a
 * logged-in session, so that handle checks do not stop every request before its arguments are
 * used. (The property of opaque-ke's decoders; p11-kit keeps a fuzz seed per call.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../../hsm/tokens/emulator/module.ts';
import { ensureToken } from '../../../hsm/tokens/open.ts';
import { RPC_CALLS } from '../../../hsm/tokens/p11kit/calls.ts';
import { DEFAULT_CODEC_LIMITS, RpcReader } from '../../../hsm/tokens/p11kit/codec.ts';
import { dispatch } from '../../../hsm/tokens/p11kit/dispatch.ts';
import type { CallContext } from '../../../hsm/tokens/p11kit/dispatch.ts';
import { P11KitError } from '../../../hsm/tokens/p11kit/errors.ts';

function context(): CallContext {
  const m = P.normalizedModule(new EmulatorModule({ pinKdfIterations: 1000, userPinMaxFailures: 0 }));
  m.C_Initialize();
  ensureToken(m, 'fuzz', 'so-pin-0000', 'user-pin-1111');
  const s = m.C_OpenSession(m.C_GetSlotList(true)[0]!, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  m.C_Login(s, P.CKU_USER, 'user-pin-1111');
  return {
    module: () => m,
    // C_Initialize and C_Finalize of the fuzzed requests leave the one module in place.
    initialize: () => {},
    finalize: () => {},
    limits: DEFAULT_CODEC_LIMITS,
    decryptPending: new Map(),
    signLength: new Map(),
  };
}

/** A request body: call id, signature, then `tail`. */
function request(id: number, sig: string, tail: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(id, 0);
  h.writeUInt32BE(sig.length, 4);
  return Buffer.concat([h, Buffer.from(sig, 'latin1'), tail]);
}

/** Field-shaped bytes: small lengths and counts, handle-like numbers, flag bytes, so that decoding goes deep. */
const fieldish = fc
  .array(
    fc.oneof(
      fc.constantFrom(Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(0xff, 0xff, 0xff, 0xff)),
      fc.integer({ min: 0, max: 40 }).map((n) => Uint8Array.of(0, 0, 0, n)),
      fc.integer({ min: 0, max: 8 }).map((n) => Uint8Array.of(0, 0, 0, 0, 0, 0, 0, n)),
      fc.uint8Array({ maxLength: 24 }),
    ),
    { maxLength: 16 },
  )
  .map((parts) => Buffer.concat(parts));

describe('p11-kit RPC decoding does not crash', () => {
  const ctx = context();

  it('every call, any bytes after its signature: an answer or a P11KitError, nothing else', () => {
    const calls = RPC_CALLS.filter((c) => c.id !== 0 && c.name !== 'C_Finalize' && c.name !== 'C_Initialize');
    let answered = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.constantFrom(...calls), fc.oneof(fieldish, fc.uint8Array({ maxLength: 96 })), (call, tail) => {
        try {
          const out = dispatch(new RpcReader(request(call.id, call.request, tail)), ctx);
          expect(Buffer.isBuffer(out)).toBe(true);
          answered++;
        } catch (e) {
          if (!(e instanceof P11KitError)) throw e;
          refused++;
        }
      }),
      { numRuns: 3000, seed: 11 },
    );
    // Both outcomes occur: the generator reaches past argument decoding into the module.
    expect(answered).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });
});
