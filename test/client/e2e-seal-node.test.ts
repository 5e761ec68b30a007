/**
 * client/e2e-seal-node.ts, the Node sender: FastSealer seals exactly what client/e2e-seal.ts
 * `openRequest` (@hpke/core, the browser client's) opens, and `openResponse` opens what
 * `sealResponse` seals, so the load generators' messages are real; `fastSealRequest` does both
 * in the SDK's `sealRequest` shape (the soak's client).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveE2eKeyPair, openRequest } from '../../client/e2e-seal.ts';
import { FastSealer, fastSealRequest, openResponse } from '../../client/e2e-seal-node.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const te = new TextEncoder();

describe('the Node sender', () => {
  it('FastSealer messages open in the enclave, and its answers open back', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const sealer = new FastSealer(kp.publicKey);
    for (let i = 0; i < 5; i++) {
      const id = te.encode(`user-${i}`);
      const req = rnd(10 + i * 37);
      const s = sealer.seal(id, req);
      const opened = await openRequest(kp, id, s.message, rnd);
      expect(Buffer.from(opened.request).equals(Buffer.from(req))).toBe(true);
      const answer = rnd(50);
      const sealed = await opened.sealResponse(answer);
      expect(Buffer.from(openResponse(s.responseKey, id, sealed)!).equals(Buffer.from(answer))).toBe(true);
      expect(openResponse(s.responseKey, te.encode('someone else'), sealed)).toBeNull();
    }
  });

  it('the record id is bound: a message for one id does not open for another', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const s = new FastSealer(kp.publicKey).seal(te.encode('a'), rnd(40));
    await expect(openRequest(kp, te.encode('b'), s.message, rnd)).rejects.toThrow();
  });

  it('fastSealRequest: what it seals opens in the enclave; a changed answer or another enclave key is refused', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const seal = fastSealRequest(kp.publicKey);
    const id = te.encode('user-x');
    const req = rnd(77);
    const s = await seal(kp.publicKey, id, req);
    const opened = await openRequest(kp, id, s.message, rnd);
    expect(Buffer.from(opened.request).equals(Buffer.from(req))).toBe(true);
    const answer = rnd(64);
    const sealed = await opened.sealResponse(answer);
    expect(Buffer.from(await s.openResponse(sealed)).equals(Buffer.from(answer))).toBe(true);
    const flipped = sealed.slice();
    flipped[20]! ^= 1;
    await expect(s.openResponse(flipped)).rejects.toThrow(/does not open/);
    const other = await deriveE2eKeyPair(rnd(32));
    await expect(seal(other.publicKey, id, req)).rejects.toThrow(/another enclave key/);
  });
});

