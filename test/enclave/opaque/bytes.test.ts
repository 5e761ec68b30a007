/**
 * The map-key helpers of enclave/opaque/bytes.ts: the bytes they encode (views at an offset
 * included), and that they give no small array an ArrayBuffer of its own (V8 keeps an array of 64
 * bytes or less inside the array; `b.buffer` moves it out, a native allocation per key). And
 * ByteArena: zero-filled arrays that share chunks and never overlap.
 */
import { describe, expect, it } from 'vitest';
import { ByteArena, latin1Key, newBytes, toHex } from '../../../enclave/opaque/bytes.ts';

const all = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('toHex and latin1Key', () => {
  it('encode every byte value, and a view at an offset as its own bytes', () => {
    expect(toHex(all)).toBe(Buffer.from(all).toString('hex'));
    expect(latin1Key(all)).toBe(String.fromCharCode(...all));
    const view = all.subarray(250, 254);
    expect(toHex(view)).toBe('fafbfcfd');
    expect(latin1Key(view)).toBe('\u00fa\u00fb\u00fc\u00fd');
    expect(toHex(new Uint8Array(0))).toBe('');
    expect(latin1Key(new Uint8Array(0))).toBe('');
  });

  it('give no small array an ArrayBuffer of its own', () => {
    // Kept alive, so that a buffer made for any of them could not be freed before the count.
    const keep: Uint8Array[] = [];
    const n = 4000;
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < n; i++) {
      const a = new Uint8Array(32);
      a[0] = i & 0xff;
      a[1] = i >> 8;
      keep.push(a);
      toHex(a);
      latin1Key(a);
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    // With `Buffer.from(a.buffer, ...)` this grows by n * 32 bytes (128,000).
    expect(grown).toBeLessThan(n * 4);
    expect(toHex(keep[n - 1]!).slice(0, 4)).toBe(`${((n - 1) & 0xff).toString(16).padStart(2, '0')}${((n - 1) >> 8).toString(16).padStart(2, '0')}`);
  });
});

describe('ByteArena', () => {
  it('carves zero-filled, non-overlapping arrays from shared chunks; a large one gets its own buffer', () => {
    const arena = new ByteArena(1024);
    const a = arena.take(100);
    const b = arena.alloc(33);
    const c = arena.take(7);
    for (const x of [a, b, c]) expect(x.every((v) => v === 0)).toBe(true);
    expect([a.length, b.length, c.length]).toEqual([100, 33, 7]);
    // One chunk, 8-byte aligned starts, no overlap.
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).toBe(a.buffer);
    expect(a.buffer.byteLength).toBe(1024);
    expect(b.byteOffset).toBe(104);
    expect(c.byteOffset).toBe(144);
    a.fill(0xaa);
    b.fill(0xbb);
    c.fill(0xcc);
    expect(a.every((v) => v === 0xaa) && b.every((v) => v === 0xbb) && c.every((v) => v === 0xcc)).toBe(true);
    // Wiping an array wipes its bytes in the chunk, and only its own.
    b.fill(0);
    expect(new Uint8Array(a.buffer, 104, 33).every((v) => v === 0)).toBe(true);
    expect(a[99]).toBe(0xaa);
    // Full: a new chunk, zero-filled; the old one is not reused.
    const fill: Uint8Array[] = [];
    for (let i = 0; i < 4; i++) fill.push(arena.take(250));
    expect(fill[3]!.buffer).not.toBe(a.buffer);
    expect(fill[3]!.every((v) => v === 0)).toBe(true);
    // More than a quarter chunk: its own buffer, exactly its length.
    const big = arena.take(257);
    expect(big.buffer.byteLength).toBe(257);
    expect(big.byteOffset).toBe(0);
    expect(arena.take(0).length).toBe(0);
    expect(() => new ByteArena(16)).toThrow(RangeError);
    expect(newBytes(5)).toEqual(new Uint8Array(5));
  });
});
