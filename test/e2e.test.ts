/**
 * The end-to-end envelope: the enclave's synchronous receiver (enclave/vault/e2e-open.ts, on
 * node:crypto) and the portable one (client/e2e-seal.ts, on @hpke/core) derive the same key pair
 * from the same input and open each other's messages; tampering, a moved record id and a wrong
 * key are refused; answers to a replayed request never share a nonce. The synchronous receiver's
 * key schedule runs on node:crypto's SHA-256 or on libsodium's (the enclave's), and its X25519 and
 * AES-GCM on native libsodium (the enclave's, when it loads) or node:crypto, X25519 on Node's own
 * OpenSSL where the enclave passes it, with the same bytes and the same refusals (RFC 9180
 * §7.1.4: a small-order key, whose DH output is all zeros).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHmac, randomBytes } from 'node:crypto';
import { deriveE2eKeyPair, openRequest, sealRequest } from '../client/e2e-seal.ts';
import { EnclaveFault } from '../enclave/api/codes.ts';
import { deriveE2eReceiver, openRequestSync } from '../enclave/vault/e2e-open.ts';
import { createSodiumSha256, createSodiumSha512 } from '../enclave/opaque/hash-sodium.ts';
import { loadNativeHpke } from '../enclave/opaque/groups/sodium-native.ts';
import { loadOpensslX25519, processOpenssl } from '../enclave/opaque/groups/openssl-native.ts';
import { Handling } from '../enclave/api/codes.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const native = await loadNativeHpke();
const openssl = await loadOpensslX25519();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * X25519 public keys of small order (RFC 7748 §5 decodes them; every scalar maps them to the
 * all-zero point): 0, 1, the order-8 point and its negative, p - 1, p, p + 1, and 0 with its
 * (ignored) top bit set.
 */
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000080',
].map((h) => Uint8Array.from(Buffer.from(h, 'hex')));

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

  it('native libsodium runs the native receiver here (X25519 and AES-GCM), and says why not when it does not load', async () => {
    expect(native.hpke, native.hpke ? '' : native.reason).not.toBeNull();
    expect(native.hpke!.gcm).toBe(true);
    const r = deriveE2eReceiver(rnd(32), undefined, native.hpke);
    expect(r.crypto.name).toBe('libsodium native');
    expect(deriveE2eReceiver(rnd(32)).crypto.name).toBe('node:crypto');
    const off = await loadNativeHpke({ BKV_SODIUM_NATIVE: '0' });
    expect(off).toEqual({ hpke: null, reason: 'turned off (BKV_SODIUM_NATIVE=0)' });
    const missing = await loadNativeHpke({ BKV_SODIUM_LIBRARY: 'libbkv-no-such-library.so' });
    expect(missing.hpke).toBeNull();
  });

  it('the native receiver derives the same key, opens what both clients seal, and both clients open its answers', async () => {
    const sodium256 = await createSodiumSha256();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 64 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }), async (ikm, id, req, res) => {
        const viaNode = deriveE2eReceiver(ikm);
        const viaNative = deriveE2eReceiver(ikm, sodium256, native.hpke);
        const viaOpenssl = deriveE2eReceiver(ikm, sodium256, native.hpke, openssl.make);
        const portable = await deriveE2eKeyPair(ikm);
        expect(hex(viaNative.publicKey)).toBe(hex(viaNode.publicKey));
        expect(hex(viaOpenssl.publicKey)).toBe(hex(viaNode.publicKey));
        const { message, openResponse } = await sealRequest(viaNative.publicKey, id, req);
        const opened = openRequestSync(viaNative, id, message, rnd);
        expect(hex(opened.request)).toBe(hex(req));
        expect(hex(openRequestSync(viaNode, id, message, rnd).request)).toBe(hex(req));
        const viaOpensslOpened = openRequestSync(viaOpenssl, id, message, rnd);
        expect(hex(viaOpensslOpened.request)).toBe(hex(req));
        expect(hex(await openResponse(viaOpensslOpened.sealResponse(res)))).toBe(hex(res));
        viaOpenssl.crypto.zeroize();
        expect(hex(await openResponse(opened.sealResponse(res)))).toBe(hex(res));
        // The browser client's receiver opens the same message to the same request.
        expect(hex((await openRequest(portable, id, message, rnd)).request)).toBe(hex(req));
      }),
      { numRuns: 25 },
    );
  });

  it('the native receiver refuses what the node:crypto one refuses, with the same fault', async () => {
    const ikm = rnd(32);
    const a = deriveE2eReceiver(ikm);
    const b = deriveE2eReceiver(ikm, await createSodiumSha256(), native.hpke);
    // X25519 on Node's OpenSSL, with either AES-GCM.
    const c = deriveE2eReceiver(ikm, await createSodiumSha256(), native.hpke, openssl.make);
    const d = deriveE2eReceiver(ikm, undefined, null, openssl.make);
    const id = new TextEncoder().encode('rec');
    const { message } = await sealRequest(a.publicKey, id, Uint8Array.of(1, 2, 3));
    const faultOf = (r: typeof a, m: Uint8Array, rid: Uint8Array = id) => {
      try {
        openRequestSync(r, rid, m, rnd);
        return 'opened';
      } catch (e) {
        return e instanceof EnclaveFault ? `${e.code} ${e.message}` : String(e);
      }
    };
    const bad = `${Handling.BadPayload} end-to-end payload does not open`;
    const cases: [Uint8Array<ArrayBufferLike>, Uint8Array<ArrayBufferLike>][] = [];
    for (let i = 0; i < message.length; i += 5) {
      const m = Uint8Array.from(message);
      m[i]! ^= 1;
      cases.push([m, id]);
    }
    cases.push([message, new TextEncoder().encode('other')], [message.subarray(0, 47), id], [message.subarray(0, 48), id], [new Uint8Array(0), id]);
    for (const [m, rid] of cases) {
      for (const r of [a, b, c, d]) expect(faultOf(r, m, rid)).toBe(bad);
    }
    // RFC 9180 §7.1.4: a small-order enc gives an all-zero DH output; all refuse it.
    for (const enc of SMALL_ORDER) {
      const m = Uint8Array.from(message);
      m.set(enc, 0);
      for (const r of [a, b, c, d]) expect(faultOf(r, m)).toBe(bad);
    }
    for (const r of [a, b, c, d]) expect(faultOf(r, message)).toBe('opened');
    // OpenSSL's refusals leave nothing on this thread's OpenSSL error queue (Node's crypto calls share it).
    const lib = await processOpenssl();
    expect(lib.lib!.func('unsigned long ERR_peek_error()')()).toBe(0);
    for (const r of [c, d]) r.crypto.zeroize();
  });

  it('zeroize wipes the native receiver\'s private key: nothing opens after it', async () => {
    for (const x of [null, openssl.make]) {
      const r = deriveE2eReceiver(rnd(32), undefined, native.hpke, x);
      const id = new TextEncoder().encode('rec');
      const { message } = await sealRequest(r.publicKey, id, Uint8Array.of(1));
      expect(openRequestSync(r, id, message, rnd).request).toEqual(Uint8Array.of(1));
      r.crypto.zeroize();
      expect(() => openRequestSync(r, id, message, rnd)).toThrow(EnclaveFault);
      r.crypto.zeroize(); // twice is harmless
    }
  });

  it('X25519 on Node\'s OpenSSL loads here, passed its known answers, names itself, and says why not when turned off', async () => {
    expect(openssl.make, openssl.make ? '' : openssl.reason).not.toBeNull();
    const r = deriveE2eReceiver(rnd(32), undefined, native.hpke, openssl.make);
    expect(r.crypto.name).toBe(`node OpenSSL ${process.versions.openssl} X25519, libsodium native AES-GCM`);
    expect(deriveE2eReceiver(rnd(32), undefined, null, openssl.make).crypto.name).toBe(`node OpenSSL ${process.versions.openssl} X25519, node:crypto AES-GCM`);
    r.crypto.zeroize();
    const x = openssl.make!(rnd(32));
    expect(x.dh(new Uint8Array(31))).toBeNull();
    expect(x.dh(new Uint8Array(33))).toBeNull();
    x.dispose();
    expect(x.dh(rnd(32))).toBeNull();
    expect(await loadOpensslX25519({ BKV_OPENSSL_NATIVE: '0' })).toEqual({ make: null, reason: 'turned off (BKV_OPENSSL_NATIVE=0)' });
  });

  it('native HMAC-SHA256 (the key schedule\'s) is RFC 2104 HMAC for a 32-byte key, and declines any other key or a long input', () => {
    const n = native.hpke!;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 4 }), (key, parts) => {
        const want = createHmac('sha256', key).update(Buffer.concat(parts)).digest('hex');
        const got = n.hmacSha256(key, parts);
        if (parts.reduce((a, p) => a + p.length, 0) > 256) expect(got).toBeNull();
        else expect(hex(got!)).toBe(want);
      }),
      { numRuns: 200 },
    );
    expect(n.hmacSha256(new Uint8Array(31), [Uint8Array.of(1)])).toBeNull();
    expect(n.hmacSha256(new Uint8Array(33), [Uint8Array.of(1)])).toBeNull();
    expect(n.hmacSha256(new Uint8Array(32), [new Uint8Array(257)])).toBeNull();
  });
});
