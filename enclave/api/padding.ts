/**
 * Padding of the enclave's sealed answers, so that their length tells the host nothing about the
 * outcome (registered or not, locked or a KE2, a fault or a result): every answer's plaintext is
 * padded to a multiple of RESPONSE_BLOCK bytes, with ISO/IEC 7816-4 padding (one 0x80 byte, then
 * zeros), before AES-GCM. Every answer of the message API fits one block, so every sealed answer
 * is 12 (nonce) + 512 + 16 (tag) = 540 bytes.
 */
export const RESPONSE_BLOCK = 512;

/**
 * `m` padded. `into`: an all-zero array to write it in when it is exactly the padded length (the
 * enclave's per-thread scratch, wiped by the caller after sealing), else a new array.
 */
export function padResponse(m: Uint8Array, into?: Uint8Array): Uint8Array {
  const n = Math.ceil((m.length + 1) / RESPONSE_BLOCK) * RESPONSE_BLOCK;
  const out = into !== undefined && into.length === n ? into : new Uint8Array(n);
  out.set(m, 0);
  out[m.length] = 0x80;
  return out;
}

/** The answer inside `p`, or null when `p` is not padded as padResponse pads. */
export function unpadResponse(p: Uint8Array): Uint8Array | null {
  if (p.length === 0 || p.length % RESPONSE_BLOCK !== 0) return null;
  let i = p.length - 1;
  while (i >= 0 && p[i] === 0) i--;
  return i >= 0 && p[i] === 0x80 ? p.subarray(0, i) : null;
}
