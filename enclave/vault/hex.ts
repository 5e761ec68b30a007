/**
 * Lowercase hex of bytes, as `toHex` (enclave/opaque/bytes.ts) writes it, in one native call: the
 * vault keys its tables by hex ids (record, session, stage), several per operation, and the
 * portable per-byte version makes dozens of short-lived strings for each.
 */
export function hexOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
