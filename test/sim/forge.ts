/**
 * The forging adversary of the simulation: what a host or the network could make of a captured
 * message if it could do more than drop, delay, duplicate, reorder and replay. Each forgery
 * changes the bytes (a bit flipped, a cut, bytes added, another receiver id or incarnation in the
 * header), so the MAC over the exact bytes must refuse it, or an earlier check of the header
 * (docs/fleet.md, "What a member checks"). `impersonate` is a member's device gone bad: a third
 * member re-MACs the captured message, as new, under a key of its own (every key it holds), in the
 * sender's name; the pairwise keys (enclave/fleet/keys.ts) must refuse it.
 */
import type { MessageKeys } from '../../enclave/fleet/keys.ts';
import { bodyBytes, INCARNATION_BYTES, readHeader, sealBody } from '../../enclave/fleet/wire.ts';
import type { Rng } from './rng.ts';

export const FORGERIES = ['flip', 'truncate', 'extend', 'retarget-id', 'retarget-incarnation', 'impersonate'] as const;
export type Forgery = (typeof FORGERIES)[number];

/** Header offsets (wire.ts): version, type, sender, receiver, sender incarnation, receiver incarnation, sequence number. */
export const TO_OFFSET = 3;
export const TO_INC_OFFSET = 4 + INCARNATION_BYTES;

/**
 * A forgery of `msg` for an `n`-member fleet, and the member the network delivers it to.
 * `incarnations(id)`: the incarnations running for member id (a re-target to one of them is the
 * strongest: a real receiver's incarnation in place of the one the sender named). `keysOf(id)`:
 * the message keys member id's device holds (for `impersonate`).
 */
export function forge(
  rng: Rng,
  msg: Uint8Array,
  kind: Forgery,
  n: number,
  incarnations: (id: number) => readonly Uint8Array[],
  keysOf: (id: number) => MessageKeys,
): { msg: Uint8Array; to: number } {
  const to = msg[TO_OFFSET]!;
  switch (kind) {
    case 'impersonate': {
      // a member that is neither the sender nor the receiver MACs the message with one of its keys, with a sequence number not yet seen
      const h = readHeader(msg);
      const others = Array.from({ length: n }, (_, i) => i).filter((i) => i !== h.from && i !== h.to);
      const k = keysOf(rng.pick(others));
      const key = rng.pick([...k.send, ...k.receive].filter((x): x is Uint8Array => x !== null));
      return { msg: sealBody(key, { ...h, seq: h.seq + 1 + rng.int(8) }, bodyBytes(msg)), to };
    }
    case 'flip': {
      const out = msg.slice();
      const bit = rng.int(out.length * 8);
      out[bit >> 3]! ^= 1 << (bit & 7);
      return { msg: out, to };
    }
    case 'truncate':
      return { msg: msg.slice(0, rng.int(msg.length)), to };
    case 'extend': {
      const out = new Uint8Array(msg.length + 1 + rng.int(40));
      out.set(msg);
      out.set(rng.bytes(out.length - msg.length), msg.length);
      return { msg: out, to };
    }
    case 'retarget-id': {
      const other = (to + 1 + rng.int(n - 1)) % n;
      const out = msg.slice();
      out[TO_OFFSET] = other;
      return { msg: out, to: other };
    }
    case 'retarget-incarnation': {
      const named = msg.subarray(TO_INC_OFFSET, TO_INC_OFFSET + INCARNATION_BYTES);
      const others = incarnations(to).filter((inc) => !inc.every((x, i) => x === named[i]));
      let inc = others.length > 0 ? rng.pick(others) : rng.bytes(INCARNATION_BYTES);
      if (inc.every((x, i) => x === named[i])) inc = inc.map((x) => x ^ 1);
      const out = msg.slice();
      out.set(inc, TO_INC_OFFSET);
      return { msg: out, to };
    }
  }
}

/** Every forgery of `msg` a test can list exhaustively: each single-bit flip, each truncation, one extension by a byte. */
export function* exhaustive(msg: Uint8Array): Generator<[string, Uint8Array]> {
  for (let bit = 0; bit < msg.length * 8; bit++) {
    const out = msg.slice();
    out[bit >> 3]! ^= 1 << (bit & 7);
    yield [`bit ${bit} flipped`, out];
  }
  for (let len = 0; len < msg.length; len++) yield [`cut to ${len} bytes`, msg.slice(0, len)];
  const longer = new Uint8Array(msg.length + 1);
  longer.set(msg);
  yield ['a byte appended', longer];
}
