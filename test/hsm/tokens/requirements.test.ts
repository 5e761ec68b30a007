/**
 * hsm/tokens/requirements.ts: a token is checked against what the firmware needs when a device
 * opens it. Every backend's real token passes; a module that lacks a mechanism, a flag, a key
 * size or a token capability is refused with the whole list, and openVaultToken refuses it
 * before the firmware ever runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as P from '../../../enclave/api/pkcs11.ts';
import { TOKEN_BACKENDS } from '../../../hsm/tokens/backends.ts';
import { openVaultToken } from '../../../hsm/tokens/open.ts';
import { FIRMWARE_NEEDS, TokenCheckCode, TokenCheckError, checkTokenSupports, missingFeatures } from '../../../hsm/tokens/requirements.ts';
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

describeTokens('what the firmware needs of a token', (kind) => {
  it('the real token has all of it', () => {
    const t = freshToken(kind);
    expect(missingFeatures(t.module, t.slot)).toEqual([]);
    expect(() => checkTokenSupports(t.module, t.slot, kind)).not.toThrow();
    // Each need is a mechanism the token lists.
    const list = new Set(t.module.C_GetMechanismList(t.slot).map(Number));
    for (const n of FIRMWARE_NEEDS) expect(list.has(n.mechanism), n.name).toBe(true);
  });
});

describe('a token that lacks some of it', () => {
  it('is refused with every missing piece named', () => {
    const t = freshToken('emulator');
    const m = crippled(t.module, {
      hide: [P.CKM_AES_GCM, P.CKM_SHA512_HMAC],
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
    expect((err as Error).message).toMatch(/^the test token lacks what the vault's firmware needs: a random number generator .*; CKM_ECDH1_DERIVE with CKF_DERIVE$/);
  });

  it('each single need, taken away alone, is found', () => {
    const t = freshToken('emulator');
    for (const n of FIRMWARE_NEEDS) {
      expect(missingFeatures(crippled(t.module, { hide: [n.mechanism] }), t.slot), n.name).toEqual([n.name]);
      for (const [bit, name] of n.flags) expect(missingFeatures(crippled(t.module, { clear: [[n.mechanism, bit]] }), t.slot)).toEqual([`${n.name} with ${name}`]);
    }
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
      return { ...t, module: crippled(t.module, { hide: [P.CKM_ECDH1_DERIVE] }) };
    });
    expect(() => openVaultToken(data, 'emulator', { pins, emulator })).toThrow(/lacks what the vault's firmware needs: CKM_ECDH1_DERIVE$/);
    spy.mockRestore();
    const opened = openVaultToken(data, 'emulator', { pins, emulator });
    expect(opened.label).toMatch(/^bkv-/);
  });
});
