/**
 * SHA-256 and HMAC-SHA256 on native libsodium (enclave/opaque/groups/sodium-native.ts
 * `NativeSha256`), the enclave's own SHA-256 where the library loads: byte for byte the same as
 * node:crypto's and the WebAssembly build's (hash-sodium.ts) for every length around the staging
 * limit and the block size, keys of every kind RFC 2104 treats apart (empty, short, one block,
 * longer than a block), split into parts anywhere; its arrays wiped after each call; the loader's
 * refusal of a library without the functions. Under CI=true a missing library fails.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNativeSha256 } from '../../../enclave/opaque/groups/sodium-native.ts';
import type { NativeSha256 } from '../../../enclave/opaque/groups/sodium-native.ts';
import { createSodiumSha256 } from '../../../enclave/opaque/hash-sodium.ts';
import { hmacKey } from '../../../enclave/opaque/hash.ts';

const loaded = await loadNativeSha256();
const ci = process.env.CI === 'true';
if (!loaded.sha256 && !ci) console.log(`native SHA-256 tests skipped: ${loaded.reason}`);
const run = it.skipIf(!loaded.sha256 && !ci);
const h = () => {
  expect(loaded.sha256, loaded.sha256 ? '' : loaded.reason).not.toBeNull();
  return loaded.sha256 as NativeSha256;
};

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const nodeHash = (parts: Uint8Array[]) => createHash('sha256').update(Buffer.concat(parts)).digest('hex');
const nodeHmac = (key: Uint8Array, parts: Uint8Array[]) => createHmac('sha256', key).update(Buffer.concat(parts)).digest('hex');
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

// Around the block size, the staging limit (1024) and beyond it.
const LENGTHS = [0, 1, 31, 32, 55, 56, 63, 64, 65, 119, 128, 300, 1000, 1023, 1024, 1025, 2048, 5000];
const KEY_LENGTHS = [0, 1, 16, 31, 32, 33, 63, 64, 65, 100, 200];

describe('native libsodium SHA-256', () => {
  run('loads, as SHA-256 with its sizes', () => {
    const s = h();
    expect([s.name, s.outputLen, s.blockLen, s.backend]).toEqual(['SHA-256', 32, 64, 'libsodium native']);
  });

  run('hash: node:crypto and the WebAssembly build agree at every length, one part or several', async () => {
    const s = h();
    const wasm = await createSodiumSha256();
    for (const n of LENGTHS) {
      const m = new Uint8Array(randomBytes(n));
      const want = nodeHash([m]);
      expect(hex(s.hash(m)), `length ${n}`).toBe(want);
      expect(hex(s.hash(...split(m, [n >> 2, n >> 1, n - 1]))), `length ${n}, 4 parts`).toBe(want);
      expect(hex(wasm.hash(m))).toBe(want);
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
    for (const k of [0, 32, 64, 65, 150]) {
      const key = new Uint8Array(randomBytes(k));
      const keyed = hmacKey(s, key);
      for (const n of [0, 10, 64, 1024, 1500]) {
        const m = new Uint8Array(randomBytes(n));
        expect(hex(keyed.mac(m)), `key ${k}, length ${n}`).toBe(nodeHmac(key, [m]));
        expect(hex(keyed.mac(...split(m, [3, 7]))), `key ${k}, length ${n}, parts`).toBe(nodeHmac(key, [m]));
      }
      const held = (keyed as unknown as { dispose(): void }).dispose;
      held();
      // A disposed key's saved state is zeros: its MACs no longer match the key's.
      expect(hex(keyed.mac(new Uint8Array(5)))).not.toBe(nodeHmac(key, [new Uint8Array(5)]));
    }
  });

  run('property: any input cut anywhere, any key, hashes and MACs as node:crypto does', () => {
    const s = h();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.uint8Array({ maxLength: 130 }), fc.array(fc.nat(), { maxLength: 5 }), (m, key, cuts) => {
        const parts = split(m, cuts);
        expect(hex(s.hash(...parts))).toBe(nodeHash([m]));
        expect(hex(s.hmac(key, ...parts))).toBe(nodeHmac(key, [m]));
      }),
      { numRuns: 300 },
    );
  });

  run('wipes its staging, key and state arrays after every call', () => {
    const s = h();
    const inner = s as unknown as Record<'stage' | 'out' | 'keyStage' | 'hashState' | 'macState', Uint8Array>;
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
    hmacKey(s, key).mac(new Uint8Array(40).fill(4));
    expect(zero()).toBe(true);
  });

  it('a library without the functions is refused with the reason, not used', async () => {
    const r = await loadNativeSha256({ BKV_SODIUM_LIBRARY: 'libc.so.6' });
    expect(r.sha256).toBeNull();
    expect(r.sha256 === null && r.reason).toMatch(/libc\.so\.6/);
    const off = await loadNativeSha256({ BKV_SODIUM_NATIVE: '0' });
    expect(off.sha256 === null && off.reason).toMatch(/BKV_SODIUM_NATIVE=0/);
  });
});
