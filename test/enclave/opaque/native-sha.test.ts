/**
 * SHA-256 and SHA-512 with HMAC and expand_message_xmd on native code (enclave/opaque/hash-native.ts),
 * on each library it runs on (Node's own OpenSSL, native libsodium): the enclave's own SHA-256
 * and the server's ristretto255-SHA512 hash. Byte for byte the same as node:crypto's and the
 * WebAssembly build's (hash-sodium.ts) for every length around the staging limit and the block
 * size, keys of every kind RFC 2104 treats apart (empty, short, one block, longer than a block),
 * split into parts anywhere; keyed states and prefixes as plain calls; expand_message_xmd as
 * hash.ts composes it; its arrays wiped after each call and its saved states when released; the
 * loaders' order, switches and refusals. Under CI=true a missing library fails.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NativeSha, knownAnswerFault, loadNativeSha256, loadNativeSha512, loadNativeShaOn } from '../../../enclave/opaque/hash-native.ts';
import type { ShaCalls } from '../../../enclave/opaque/hash-native.ts';
import { createSodiumSha256, createSodiumSha512 } from '../../../enclave/opaque/hash-sodium.ts';
import { expandMessageXmd, hashPrefix, hmacKey } from '../../../enclave/opaque/hash.ts';
import type { HashPrimitives } from '../../../enclave/opaque/hash.ts';

const ci = process.env.CI === 'true';
const LIBRARIES = [
  { library: 'openssl', backend: `node OpenSSL ${process.versions.openssl}` },
  { library: 'libsodium', backend: 'libsodium native' },
] as const;
const SIZES = [
  { bits: 256, outputLen: 32, blockLen: 64, node: 'sha256', wasm: createSodiumSha256 },
  { bits: 512, outputLen: 64, blockLen: 128, node: 'sha512', wasm: createSodiumSha512 },
] as const;
const CASES = await Promise.all(
  LIBRARIES.flatMap((l) => SIZES.map(async (z) => ({ ...l, ...z, loaded: await loadNativeShaOn(l.library, z.bits) }))),
);
for (const c of CASES) if (!c.loaded.sha && !ci) console.log(`native SHA-${c.bits} on ${c.library}: tests skipped: ${c.loaded.reason}`);

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** `b` cut at the given points (sorted, deduplicated, within bounds). */
const split = (b: Uint8Array, cuts: number[]) => {
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const c of at) {
    parts.push(b.subarray(from, c));
    from = c;
  }
  parts.push(b.subarray(from));
  return parts;
};

// Around both block sizes, the staging limit (1024) and beyond it.
const LENGTHS = [0, 1, 31, 32, 55, 56, 63, 64, 65, 111, 112, 119, 127, 128, 129, 300, 895, 896, 960, 1000, 1023, 1024, 1025, 2048, 5000];
const KEY_LENGTHS = [0, 1, 16, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200];

describe.each(CASES)('SHA-$bits on $library', ({ bits, outputLen, blockLen, node, wasm, loaded, backend }) => {
  const run = it.skipIf(!loaded.sha && !ci);
  const h = (): NativeSha => {
    expect(loaded.sha, loaded.sha ? '' : loaded.reason).toBeTruthy();
    return loaded.sha!;
  };
  const nodeHash = (parts: Uint8Array[]) => createHash(node).update(Buffer.concat(parts)).digest('hex');
  const nodeHmac = (key: Uint8Array, parts: Uint8Array[]) => createHmac(node, key).update(Buffer.concat(parts)).digest('hex');

  run('loads, with its sizes', () => {
    const s = h();
    expect([s.name, s.outputLen, s.blockLen, s.backend]).toEqual([`SHA-${bits}`, outputLen, blockLen, backend]);
  });

  run('hash: node:crypto and the WebAssembly build agree at every length, one part or several', async () => {
    const s = h();
    const w = await wasm();
    for (const n of LENGTHS) {
      const m = new Uint8Array(randomBytes(n));
      const want = nodeHash([m]);
      expect(hex(s.hash(m)), `length ${n}`).toBe(want);
      expect(hex(s.hash(...split(m, [n >> 2, n >> 1, n - 1]))), `length ${n}, 4 parts`).toBe(want);
      expect(hex(w.hash(m))).toBe(want);
    }
    expect(hex(s.hash())).toBe(nodeHash([]));
  });

  run('hmac: every key length (the 32-byte one-shot path and the init path), every length', () => {
    const s = h();
    for (const k of KEY_LENGTHS) {
      const key = new Uint8Array(randomBytes(k));
      for (const n of LENGTHS) {
        const m = new Uint8Array(randomBytes(n));
        const want = nodeHmac(key, [m]);
        expect(hex(s.hmac(key, m)), `key ${k}, length ${n}`).toBe(want);
        expect(hex(s.hmac(key, ...split(m, [1, n >> 1]))), `key ${k}, length ${n}, 3 parts`).toBe(want);
      }
    }
  });

  run('hmacKey: the key set up once gives the same MACs as hmac, many times, until disposed', () => {
    const s = h();
    for (const k of [0, 32, 64, 65, 129, 150]) {
      const key = new Uint8Array(randomBytes(k));
      const keyed = hmacKey(s, key);
      for (const n of [0, 10, 64, 1024, 1500]) {
        const m = new Uint8Array(randomBytes(n));
        expect(hex(keyed.mac(m)), `key ${k}, length ${n}`).toBe(nodeHmac(key, [m]));
        expect(hex(keyed.mac(...split(m, [3, 7]))), `key ${k}, length ${n}, parts`).toBe(nodeHmac(key, [m]));
      }
      keyed.dispose();
      expect(() => keyed.mac(new Uint8Array(5))).toThrow(/after dispose/);
    }
  });

  run('hmacKey and hashPrefix: more held at once than there are slots, each still right, every slot given back', () => {
    const s = h();
    const free = () => (s as unknown as { freeSlots: Uint8Array[] }).freeSlots.length;
    const before = free();
    const keys = Array.from({ length: 20 }, (_, i) => new Uint8Array(randomBytes(i * 7)));
    const keyed = keys.map((k) => hmacKey(s, k));
    const prefixes = keys.map((k) => hashPrefix(s, [k, k]));
    expect(free()).toBe(0);
    const m = new Uint8Array(randomBytes(77));
    keys.forEach((k, i) => {
      expect(hex(keyed[i]!.mac(m))).toBe(nodeHmac(k, [m]));
      expect(hex(prefixes[i]!.digest)).toBe(nodeHash([k, k]));
      expect(hex(prefixes[i]!.extend(m, m))).toBe(nodeHash([k, k, m, m]));
      expect(() => prefixes[i]!.extend(m)).toThrow(/extend called twice/);
      keyed[i]!.dispose();
    });
    expect(free()).toBe(before);
    // A disposed prefix that was never extended gives its slot back too.
    hashPrefix(s, [m]).dispose();
    expect(free()).toBe(before);
  });

  run('hashPrefix: any prefix, any continuation, as one hash (staged and part-by-part lengths)', () => {
    const s = h();
    for (const [a, b] of [[0, 0], [10, 1500], [1500, 10], [127, 1], [1024, 1024]] as const) {
      const x = new Uint8Array(randomBytes(a));
      const y = new Uint8Array(randomBytes(b));
      const p = hashPrefix(s, [x]);
      expect(hex(p.digest)).toBe(nodeHash([x]));
      expect(hex(p.extend(...split(y, [5])))).toBe(nodeHash([x, y]));
    }
  });

  run('xmdInto: RFC 9380 expand_message_xmd for one output block, as hash.ts composes it over node:crypto; refuses what it can not do', () => {
    const s = h();
    const reference: HashPrimitives = {
      name: s.name,
      outputLen,
      blockLen,
      hash: (...p) => new Uint8Array(createHash(node).update(Buffer.concat(p)).digest()),
      hmac: (k, ...p) => new Uint8Array(createHmac(node, k).update(Buffer.concat(p)).digest()),
    };
    for (const [msgLen, dstLen] of [[0, 0], [0, 1], [32, 40], [100, 255], [1010, 10], [1020, 255], [3000, 17]] as const) {
      const msg = new Uint8Array(randomBytes(msgLen));
      const dst = new Uint8Array(randomBytes(dstLen));
      const into = new Uint8Array(outputLen);
      s.xmdInto(msg, dst, into);
      expect(hex(into), `msg ${msgLen}, dst ${dstLen}`).toBe(hex(expandMessageXmd(reference, msg, dst, outputLen)));
    }
    expect(() => s.xmdInto(new Uint8Array(1), new Uint8Array(256), new Uint8Array(outputLen))).toThrow(RangeError);
    expect(() => s.xmdInto(new Uint8Array(1), new Uint8Array(1), new Uint8Array(outputLen + 1))).toThrow(RangeError);
  });

  run('property: any input cut anywhere, any key, hashes and MACs as node:crypto does', () => {
    const s = h();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 5 }), (m, key, cuts) => {
        const parts = split(m, cuts);
        expect(hex(s.hash(...parts))).toBe(nodeHash([m]));
        expect(hex(s.hmac(key, ...parts))).toBe(nodeHmac(key, [m]));
      }),
      { numRuns: 300 },
    );
  });

  run('wipes its staging, key and state arrays after every call, and a saved state when released', () => {
    const s = h();
    const inner = s as unknown as Record<'stage' | 'out' | 'keyStage' | 'hashState' | 'macState', Uint8Array> & { freeSlots: Uint8Array[] };
    const zero = () => (['stage', 'out', 'keyStage', 'hashState', 'macState'] as const).every((k) => inner[k].every((x) => x === 0));
    const key = new Uint8Array(32).fill(9);
    s.hash(new Uint8Array(300).fill(1));
    expect(zero()).toBe(true);
    s.hash(new Uint8Array(3000).fill(1)); // the part-by-part path
    expect(zero()).toBe(true);
    s.hmac(key, new Uint8Array(100).fill(2));
    expect(zero()).toBe(true);
    s.hmac(new Uint8Array(70).fill(3), new Uint8Array(2000).fill(2));
    expect(zero()).toBe(true);
    const k = hmacKey(s, key);
    k.mac(new Uint8Array(40).fill(4));
    expect(zero()).toBe(true);
    const p = hashPrefix(s, [new Uint8Array(50).fill(5)]);
    expect(zero()).toBe(true);
    p.extend(new Uint8Array(10).fill(6));
    s.xmdInto(new Uint8Array(40).fill(7), new Uint8Array(30).fill(8), new Uint8Array(outputLen));
    expect(zero()).toBe(true);
    // While held, the keyed state is in a slot (not zero); released, every slot is zero.
    k.dispose();
    expect(inner.freeSlots.every((slot) => slot.every((x) => x === 0))).toBe(true);
  });
});

describe('native hash loading', () => {
  it.skipIf(!CASES.every((c) => c.loaded.sha) && !ci)('takes Node\'s OpenSSL first, native libsodium with BKV_OPENSSL_NATIVE=0, and says why neither when both are off', async () => {
    const openssl = `node OpenSSL ${process.versions.openssl}`;
    expect((await loadNativeSha256()).sha256?.backend).toBe(openssl);
    expect((await loadNativeSha512()).sha512?.backend).toBe(openssl);
    expect((await loadNativeSha256({ BKV_OPENSSL_NATIVE: '0' })).sha256?.backend).toBe('libsodium native');
    expect((await loadNativeSha512({ BKV_OPENSSL_NATIVE: '0' })).sha512?.backend).toBe('libsodium native');
    const none = await loadNativeSha512({ BKV_OPENSSL_NATIVE: '0', BKV_SODIUM_NATIVE: '0' });
    expect(none.sha512).toBeNull();
    expect(none.sha512 === null && none.reason).toMatch(/BKV_OPENSSL_NATIVE=0.*BKV_SODIUM_NATIVE=0/);
  });

  it('a library without the functions is refused with the reason, not used', async () => {
    for (const bits of [256, 512] as const) {
      const r = await loadNativeShaOn('libsodium', bits, { BKV_SODIUM_LIBRARY: 'libc.so.6' });
      expect(r.sha).toBeNull();
      expect(r.sha === null && r.reason).toMatch(/libc\.so\.6/);
      const off = await loadNativeShaOn('libsodium', bits, { BKV_SODIUM_NATIVE: '0' });
      expect(off.sha === null && off.reason).toMatch(/BKV_SODIUM_NATIVE=0/);
    }
  });

  it.skipIf(!CASES.every((c) => c.loaded.sha) && !ci)('the known-answer check passes each library and refuses a hash that gives wrong bytes', () => {
    for (const c of CASES) {
      const good = c.loaded.sha!;
      expect(knownAnswerFault(good), `${c.library} SHA-${c.bits}`).toBeNull();
      // The same calls with the state after init altered in one bit: every digest is wrong.
      const calls = (good as unknown as { c: ShaCalls }).c;
      const broken = new NativeSha(good.name, { ...calls, init: (st) => (calls.init(st), (st[0]! ^= 1), undefined) }, 'broken', 'test');
      expect(knownAnswerFault(broken)).toMatch(/of "abc" is wrong/);
      // Right hash and one-shot HMAC, a keyed state's outer pad state altered: caught by the keyed answer.
      const badKey = new NativeSha(good.name, calls, 'broken', 'test');
      const pads = badKey as unknown as { keyInto(into: Uint8Array, key: Uint8Array): void };
      const keyInto = pads.keyInto.bind(badKey);
      pads.keyInto = (into, key) => {
        keyInto(into, key);
        into[into.length / 2]! ^= 1; // the first byte of the outer pad state
      };
      expect(knownAnswerFault(badKey)).toMatch(/keyed HMAC/);
    }
  });
});
