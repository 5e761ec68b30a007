/**
 * The map-key helpers of enclave/opaque/bytes.ts: the bytes they encode (views at an offset
 * included), and that they give no small array an ArrayBuffer of its own (V8 keeps an array of 64
 * bytes or less inside the array; `b.buffer` moves it out, a native allocation per key).
 */
import { describe, expect, it } from 'vitest';
import { latin1Key, toHex } from '../../../enclave/opaque/bytes.ts';

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
