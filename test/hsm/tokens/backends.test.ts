/**
 * hsm/tokens/backends.ts is the one list of token backends: the device's config check and the
 * token kind parsers take their names from it, and every entry that is available here opens a
 * fresh token through the generic ensureToken.
 */
import { describe, expect, it } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { checkConfig } from '../../../hsm/runner.ts';
import { DEFAULT_TOKEN_KIND, SCRATCH_TOKEN_KINDS, TOKEN_BACKENDS, TOKEN_KINDS, isTokenKind, parseTokenKind } from '../../../hsm/tokens/backends.ts';
import { ensureToken } from '../../../hsm/tokens/open.ts';

describe('token backends', () => {
  it('names every backend in the device config check and the parsers', () => {
    expect(TOKEN_KINDS).toContain(DEFAULT_TOKEN_KIND);
    for (const k of TOKEN_KINDS) {
      expect(isTokenKind(k)).toBe(true);
      expect(parseTokenKind(k)).toBe(k);
      expect(checkConfig({ dataDir: '/d', partition: 0, partitions: 1, token: k }).token).toBe(k);
    }
    expect(parseTokenKind(undefined)).toBe(DEFAULT_TOKEN_KIND);
    for (const bad of ['hsm', 'toString', '']) {
      expect(isTokenKind(bad)).toBe(false);
      expect(() => parseTokenKind(bad)).toThrow(TOKEN_KINDS.join(' or '));
      expect(() => checkConfig({ dataDir: '/d', partition: 0, partitions: 1, token: bad })).toThrow(/token must be/);
    }
  });

  it('every backend but the operator-module one has a scratch module and makes its tokens', () => {
    expect(SCRATCH_TOKEN_KINDS).toEqual(TOKEN_KINDS.filter((k) => k !== 'pkcs11'));
    for (const k of TOKEN_KINDS) expect(TOKEN_BACKENDS[k].createsTokens, k).toBe(k !== 'pkcs11');
  });

  for (const kind of SCRATCH_TOKEN_KINDS) {
    const b = TOKEN_BACKENDS[kind];
    it.skipIf(b.unavailable() !== null)(`${kind}: a scratch module gets a token with the user PIN set; hostEnv is plain strings`, () => {
      for (const v of Object.values(b.hostEnv('/data'))) expect(typeof v).toBe('string');
      const s = b.scratch!({ emulator: { pinKdfIterations: 1000 } });
      try {
        ensureToken(s.module, 'backend-test', 'so-pin-0000', 'user-pin-1111', s.rescan);
        ensureToken(s.module, 'backend-test', undefined, 'user-pin-1111', s.rescan); // exists: no SO PIN needed
        const slot = s.module.C_GetSlotList(true).find((x) => P.trimLabel(s.module.C_GetTokenInfo(x).label) === 'backend-test')!;
        const session = s.module.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
        s.module.C_Login(session, P.CKU_USER, 'user-pin-1111');
        s.module.C_Logout(session);
        s.module.C_CloseSession(session);
      } finally {
        s.dispose();
      }
    });
  }
});
