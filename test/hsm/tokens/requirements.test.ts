/**
 * hsm/tokens/requirements.ts: a token is checked against the firmware token profiles
 * (enclave/token-profiles.ts) when a device opens it. Every device backend's real token meets
 * both profiles, and the emulator through p11-kit-client.so 0.24.1 meets ctr-hmac only (its
 * client carries no AES-GCM or ECDH); a module that lacks a mechanism, a flag or a key size of a
 * profile does not meet it; one that meets none, or lacks a token capability, is refused with the
 * whole list per profile, and openVaultToken refuses it before the firmware ever runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { TOKEN_BACKENDS } from '../../../hsm/tokens/backends.ts';
import { openVaultToken } from '../../../hsm/tokens/open.ts';
import { FIRMWARE_NEEDS, TokenCheckCode, TokenCheckError, checkTokenSupports, missingFeatures, profileReport } from '../../../hsm/tokens/requirements.ts';
import { PROFILE_NEEDS } from '../../../enclave/token-profiles.ts';
import { describeTokens, freshToken } from '../../helpers/tokens.ts';
import { thrownBy } from '../../helpers/errors.ts';

/** `m` with some mechanisms hidden, some flags cleared, some sizes and token flags changed. */
function crippled(m: P.Pkcs11, change: { hide?: number[]; clear?: [number, number][]; sizes?: [number, number, number][]; tokenFlagsOff?: number; tokenFlagsOn?: number }): P.Pkcs11 {
  return new Proxy(m, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'C_GetMechanismList') return (slot: P.Handle) => target.C_GetMechanismList(slot).filter((x) => !change.hide?.includes(Number(x)));
      if (prop === 'C_GetMechanismInfo')
        return (slot: P.Handle, mech: number) => {
          const info = { ...target.C_GetMechanismInfo(slot, mech) };
          for (const [mm, bit] of change.clear ?? []) if (mm === mech) info.flags &= ~bit;
          for (const [mm, min, max] of change.sizes ?? []) if (mm === mech) [info.minKeySize, info.maxKeySize] = [min, max];
          return info;
        };
      if (prop === 'C_GetTokenInfo')
        return (slot: P.Handle) => {
          const info = { ...target.C_GetTokenInfo(slot) };
          info.flags = (info.flags & ~(change.tokenFlagsOff ?? 0)) | (change.tokenFlagsOn ?? 0);
          return info;
        };
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describeTokens(
  'what the firmware needs of a token',
  (kind) => {
    it('the real token meets the profiles its transport carries', () => {
      const t = freshToken(kind);
      const meets = kind === 'p11kit' ? ['ctr-hmac'] : ['gcm-ecdh', 'ctr-hmac'];
      expect(checkTokenSupports(t.module, t.slot, kind)).toEqual(meets);
      if (kind === 'p11kit') {
        // What p11-kit 0.24.1's client leaves out of the strongest profile: exactly what it can not carry.
        expect(profileReport(t.module, t.slot)[0]).toEqual({ profile: 'gcm-ecdh', missing: ['CKM_AES_GCM', 'CKM_ECDH1_DERIVE'] });
      } else expect(missingFeatures(t.module, t.slot)).toEqual([]);
      // Each need of a profile met is a mechanism the token lists.
      const list = new Set(t.module.C_GetMechanismList(t.slot).map(Number));
      for (const p of meets) for (const n of PROFILE_NEEDS[p as 'ctr-hmac']) expect(list.has(n.mechanism), n.name).toBe(true);
    });
  },
  { p11kit: true },
);

describe('a token that lacks some of it', () => {
  it('is refused with every missing piece named', () => {
    const t = freshToken('emulator');
    const m = crippled(t.module, {
      hide: [P.CKM_AES_GCM, P.CKM_SHA512_HMAC, P.CKM_AES_ECB],
      clear: [[P.CKM_ECDH1_DERIVE, P.CKF_DERIVE]],
      sizes: [
        [P.CKM_AES_KEY_GEN, 16, 24],
        [P.CKM_EC_KEY_PAIR_GEN, 384, 521],
      ],
      tokenFlagsOff: P.CKF_RNG,
      tokenFlagsOn: P.CKF_WRITE_PROTECTED,
    });
    expect(missingFeatures(m, t.slot)).toEqual([
      'a random number generator (CKF_RNG)',
      'a writable token (it is CKF_WRITE_PROTECTED)',
      'CKM_AES_KEY_GEN for key size 32 (the token takes 16..24)',
      'CKM_AES_GCM',
      'CKM_SHA512_HMAC',
      'CKM_EC_KEY_PAIR_GEN for key size 256 (the token takes 384..521)',
      'CKM_ECDH1_DERIVE with CKF_DERIVE',
    ]);
    const err = thrownBy(() => checkTokenSupports(m, t.slot, 'the test token'));
    expect(err).toBeInstanceOf(TokenCheckError);
    expect((err as TokenCheckError).code).toBe(TokenCheckCode.Unsupported);
    expect((err as Error).message).toBe(
      "the test token lacks what the vault's firmware needs: a random number generator (CKF_RNG); a writable token (it is CKF_WRITE_PROTECTED); " +
        'for profile gcm-ecdh: CKM_AES_KEY_GEN for key size 32 (the token takes 16..24), CKM_AES_GCM, CKM_SHA512_HMAC, CKM_EC_KEY_PAIR_GEN for key size 256 (the token takes 384..521), CKM_ECDH1_DERIVE with CKF_DERIVE; ' +
        'for profile ctr-hmac: CKM_AES_KEY_GEN for key size 32 (the token takes 16..24), CKM_AES_ECB, CKM_SHA512_HMAC',
    );
  });

  it('a token that meets one profile is opened with it; a token flag missing refuses it whatever it meets', () => {
    const t = freshToken('emulator');
    expect(checkTokenSupports(crippled(t.module, { hide: [P.CKM_ECDH1_DERIVE] }), t.slot, 'x')).toEqual(['ctr-hmac']);
    expect(checkTokenSupports(crippled(t.module, { hide: [P.CKM_AES_ECB] }), t.slot, 'x')).toEqual(['gcm-ecdh']);
    expect(() => checkTokenSupports(crippled(t.module, { tokenFlagsOff: P.CKF_RNG }), t.slot, 'x')).toThrow(/^x lacks what the vault's firmware needs: a random number generator \(CKF_RNG\)$/);
  });

  it('each single need, taken away alone, is found', () => {
    const t = freshToken('emulator');
    for (const profile of ['gcm-ecdh', 'ctr-hmac'] as const) {
      for (const n of PROFILE_NEEDS[profile]) {
        expect(missingFeatures(crippled(t.module, { hide: [n.mechanism] }), t.slot, profile), n.name).toEqual([n.name]);
        for (const [bit, name] of n.flags) expect(missingFeatures(crippled(t.module, { clear: [[n.mechanism, bit]] }), t.slot, profile)).toEqual([`${n.name} with ${name}`]);
      }
    }
    expect(FIRMWARE_NEEDS).toBe(PROFILE_NEEDS['gcm-ecdh']);
    expect(missingFeatures(crippled(t.module, { tokenFlagsOff: P.CKF_USER_PIN_INITIALIZED }), t.slot)).toEqual(['a user PIN (CKF_USER_PIN_INITIALIZED)']);
  });
});

describe('openVaultToken', () => {
  const dirs: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('refuses a token that lacks a mechanism before the firmware runs, and opens the same token whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bkv-req-'));
    dirs.push(dir);
    const data = join(dir, 'data');
    const pins = { userPin: 'user-pin-1111', soPin: 'so-pin-0000' };
    const emulator = { pinKdfIterations: 1000 };
    const load = TOKEN_BACKENDS.emulator.load.bind(TOKEN_BACKENDS.emulator);
    const spy = vi.spyOn(TOKEN_BACKENDS.emulator, 'load').mockImplementation((d, o) => {
      const t = load(d, o);
      return { ...t, module: crippled(t.module, { hide: [P.CKM_ECDH1_DERIVE, P.CKM_AES_ECB] }) };
    });
    expect(() => openVaultToken(data, 'emulator', { pins, emulator })).toThrow(/lacks what the vault's firmware needs: for profile gcm-ecdh: CKM_ECDH1_DERIVE; for profile ctr-hmac: CKM_AES_ECB$/);
    spy.mockRestore();
    const opened = openVaultToken(data, 'emulator', { pins, emulator });
    expect(opened.label).toMatch(/^bkv-/);
    expect(opened.profiles).toEqual(['gcm-ecdh', 'ctr-hmac']);
  });
});
