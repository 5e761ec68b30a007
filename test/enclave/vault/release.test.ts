/**
 * enclave/vault/release.ts (the enclave's synchronous node:crypto side of the key release)
 * against enclave/api/authorize.ts and client/release-unwrap.ts (the client's portable side): the
 * same bytes both ways, and the client's unwrapReleased opens what the enclave wraps.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { backupKeyAuthKey, releaseKey, sessionAuthKey } from '../../../enclave/api/authorize.ts';
import { unwrapReleased, wrapForRelease } from '../../../client/release-unwrap.ts';
import { backupKeyAuthKeySync, releaseKeySync, sessionAuthKeySync, wrapForReleaseSync } from '../../../enclave/vault/release.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));

describe('enclave key release on node:crypto', () => {
  it('derives the same keys as the portable client side', () => {
    for (let i = 0; i < 20; i++) {
      const k = rnd(i % 2 ? 64 : 32);
      expect(releaseKeySync(k)).toEqual(releaseKey(k));
      expect(sessionAuthKeySync(k)).toEqual(sessionAuthKey(k));
      expect(backupKeyAuthKeySync(k)).toEqual(backupKeyAuthKey(k));
    }
  });

  it("wraps exactly as wrapForRelease does, and the client's unwrapReleased opens it", async () => {
    for (let i = 0; i < 20; i++) {
      const sessionKey = rnd(64);
      const iv = rnd(12);
      const backupKey = rnd(32);
      const wrapped = wrapForReleaseSync(sessionKey, iv, backupKey);
      expect(wrapped.length).toBe(12 + 32 + 16);
      expect(wrapped).toEqual(await wrapForRelease(sessionKey, iv, backupKey));
      expect(await unwrapReleased(sessionKey, wrapped)).toEqual(backupKey);
    }
  });

  it('does not open under another session key, or tampered', async () => {
    const sessionKey = rnd(64);
    const wrapped = wrapForReleaseSync(sessionKey, rnd(12), rnd(32));
    expect(await unwrapReleased(rnd(64), wrapped)).toBeNull();
    const bad = Uint8Array.from(wrapped);
    bad[20]! ^= 1;
    expect(await unwrapReleased(sessionKey, bad)).toBeNull();
  });

  it('refuses an IV that is not 12 bytes', () => {
    expect(() => wrapForReleaseSync(rnd(64), rnd(16), rnd(32))).toThrow(RangeError);
  });
});
