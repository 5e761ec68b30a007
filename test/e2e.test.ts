/**
 * The end-to-end envelope: the enclave's synchronous receiver (enclave/vault/e2e-open.ts, on
 * node:crypto) and the portable one (client/e2e-seal.ts, on @hpke/core) derive the same key pair
 * from the same input and open each other's messages; tampering, a moved record id and a wrong
 * key are refused; answers to a replayed request never share a nonce. The synchronous receiver's
 * key schedule runs on node:crypto's SHA-256 or on libsodium's (the enclave's), with the same bytes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { deriveE2eKeyPair, openRequest, sealRequest } from '../client/e2e-seal.ts';
import { EnclaveFault } from '../enclave/api/codes.ts';
import { deriveE2eReceiver, openRequestSync } from '../enclave/vault/e2e-open.ts';
import { createSodiumSha256, createSodiumSha512 } from '../enclave/opaque/hash-sodium.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));

describe('end-to-end envelope', () => {
  it('both receivers derive the same key pair (RFC 9180 §7.1.3)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 64 }), async (ikm) => {
        const a = await deriveE2eKeyPair(ikm);
        const b = deriveE2eReceiver(ikm);
        expect(Buffer.from(b.publicKey).toString('hex')).toBe(Buffer.from(a.publicKey).toString('hex'));
      }),
      { numRuns: 20 },
    );
  });

  it('the synchronous receiver opens what clients seal, and clients open its answers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }), async (id, req, res) => {
        const r = deriveE2eReceiver(rnd(32));
        const { message, openResponse } = await sealRequest(r.publicKey, id, req);
        const opened = openRequestSync(r, id, message, rnd);
        expect(Buffer.from(opened.request).equals(Buffer.from(req))).toBe(true);
        expect(Buffer.from(await openResponse(opened.sealResponse(res))).equals(Buffer.from(res))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('with libsodium\'s SHA-256 (as the enclave runs it) the receiver derives the same key and opens the same messages', async () => {
    const sodium256 = await createSodiumSha256();
    const sodium512 = await createSodiumSha512();
    expect(() => deriveE2eReceiver(rnd(32), sodium512)).toThrow(TypeError);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 64 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ maxLength: 600 }), async (ikm, id, req) => {
        const viaNode = deriveE2eReceiver(ikm);
        const viaSodium = deriveE2eReceiver(ikm, sodium256);
        expect(Buffer.from(viaSodium.publicKey).equals(Buffer.from(viaNode.publicKey))).toBe(true);
        const { message, openResponse } = await sealRequest(viaSodium.publicKey, id, req);
        const a = openRequestSync(viaNode, id, message, rnd);
        const b = openRequestSync(viaSodium, id, message, rnd);
        expect(Buffer.from(b.request).equals(Buffer.from(req))).toBe(true);
        expect(Buffer.from(a.request).equals(Buffer.from(req))).toBe(true);
        // Same response key: each answer opens under the client's context.
        expect(await openResponse(b.sealResponse(Uint8Array.of(7)))).toEqual(Uint8Array.of(7));
        expect(await openResponse(a.sealResponse(Uint8Array.of(6)))).toEqual(Uint8Array.of(6));
        // Tampering is refused on this path too.
        const t = Uint8Array.from(message);
        t[t.length - 1]! ^= 1;
        expect(() => openRequestSync(viaSodium, id, t, rnd)).toThrow(EnclaveFault);
      }),
      { numRuns: 25 },
    );
  });

  it('the portable receiver agrees on the same messages', async () => {
    const ikm = rnd(32);
    const a = await deriveE2eKeyPair(ikm);
    const b = deriveE2eReceiver(ikm);
    const id = new TextEncoder().encode('rec');
    const { message, openResponse } = await sealRequest(a.publicKey, id, Uint8Array.of(1, 2, 3));
    const viaA = await openRequest(a, id, message, rnd);
    const viaB = openRequestSync(b, id, message, rnd);
    expect(viaA.request).toEqual(viaB.request);
    expect(await openResponse(await viaA.sealResponse(Uint8Array.of(9)))).toEqual(Uint8Array.of(9));
    expect(await openResponse(viaB.sealResponse(Uint8Array.of(8)))).toEqual(Uint8Array.of(8));
  });

  it('refuses tampering, another record id, another key, and short input', async () => {
    const r = deriveE2eReceiver(rnd(32));
    const id = new TextEncoder().encode('rec');
    const { message } = await sealRequest(r.publicKey, id, Uint8Array.of(1, 2, 3));
    for (let i = 0; i < message.length; i += 7) {
      const m = Uint8Array.from(message);
      m[i]! ^= 1;
      expect(() => openRequestSync(r, id, m, rnd)).toThrow(EnclaveFault);
    }
    expect(() => openRequestSync(r, new TextEncoder().encode('other'), message, rnd)).toThrow(EnclaveFault);
    expect(() => openRequestSync(deriveE2eReceiver(rnd(32)), id, message, rnd)).toThrow(EnclaveFault);
    expect(() => openRequestSync(r, id, message.subarray(0, 40), rnd)).toThrow(EnclaveFault);
    expect(() => openRequestSync(r, id, new Uint8Array(0), rnd)).toThrow(EnclaveFault);
  });

  it('answers to a replayed request use fresh nonces', async () => {
    const r = deriveE2eReceiver(rnd(32));
    const id = new TextEncoder().encode('rec');
    const { message } = await sealRequest(r.publicKey, id, Uint8Array.of(1));
    const x = openRequestSync(r, id, message, rnd).sealResponse(Uint8Array.of(1));
    const y = openRequestSync(r, id, message, rnd).sealResponse(Uint8Array.of(2));
    expect(Buffer.from(x.subarray(0, 12)).equals(Buffer.from(y.subarray(0, 12)))).toBe(false);
  });
});
