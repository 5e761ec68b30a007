/**
 * A keyed additive set hash (AdHash, Bellare-Micciancio 1997, with a secret-keyed PRF): the sum
 * modulo 2^256 of HMAC-SHA256(K, element) over a set. Adding or removing one element costs one
 * HMAC; without K nobody can find two different sets with the same sum. Values are little-endian
 * integers of up to 32 bytes (shorter ones are zero-extended).
 */
export function addInto(acc: Uint8Array, v: Uint8Array): void {
  let carry = 0;
  for (let i = 0; i < 32; i++) {
    const s = acc[i]! + (v[i] ?? 0) + carry;
    acc[i] = s & 0xff;
    carry = s >> 8;
  }
}

export function subInto(acc: Uint8Array, v: Uint8Array): void {
  let borrow = 0;
  for (let i = 0; i < 32; i++) {
    const s = acc[i]! - (v[i] ?? 0) - borrow;
    acc[i] = s & 0xff;
    borrow = s < 0 ? 1 : 0;
  }
}
