/**
 * An in-process platform for firmware tests: the firmware's token is `Pkcs11Token` over a fresh
 * PKCS#11 token, the emulator or SoftHSM2 (test/helpers/tokens.ts; BKV_TOKEN picks), and an
 * in-memory NVRAM whose contents a test can snapshot and restore (to play rollback attacks),
 * plus a controllable clock. `tokenFault: 'gcm'` flips a bit of every other C_Encrypt output of
 * the token (a broken device, for the self-test failure path): an AES-GCM ciphertext that then
 * does not authenticate, or on the ctr-hmac profile a keystream that does not match the next one.
 */
import { randomBytes } from 'node:crypto';
import * as P from '../../enclave/api/pkcs11.ts';
import type { Nvram, Platform } from '../../enclave/platform.ts';
import { Pkcs11Token } from '../../enclave/token-pkcs11.ts';
import { freshToken, tokensUnderTest, USER_PIN } from './tokens.ts';
import type { TokenKind } from './tokens.ts';

export class MemoryNvram implements Nvram {
  data: Uint8Array = new Uint8Array(0);
  writes = 0;
  failWrites = false;
  constructor(readonly size = 256) {}
  read(): Uint8Array {
    return Uint8Array.from(this.data);
  }
  write(d: Uint8Array): void {
    if (this.failWrites) throw new Error('NVRAM write failed');
    if (d.length > this.size) throw new Error('NVRAM region overflow');
    this.data = Uint8Array.from(d);
    this.writes++;
  }
}

export interface TestPlatform extends Platform {
  token: Pkcs11Token;
  nvram: MemoryNvram;
  tokenKind: TokenKind;
  module: P.Pkcs11;
  clock: { t: number };
  failpoints: Set<string>;
}

/** A module whose first, third, ... C_Encrypt / C_EncryptFinal answers come out with their first byte flipped. */
function gcmFault(m: P.Pkcs11): P.Pkcs11 {
  let calls = 0;
  const flip = (b: Buffer) => {
    if (b.length > 0 && calls++ % 2 === 0) b[0]! ^= 1;
    return b;
  };
  return new Proxy(m, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'C_Encrypt' || prop === 'C_EncryptFinal') return (...a: unknown[]) => flip((v as (...x: unknown[]) => Buffer).apply(target, a));
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The token kind firmware tests use when a test does not say: the first under test (BKV_TOKEN
 * picks it). On p11kit the firmware runs on the ctr-hmac token profile (enclave/token-profiles.ts):
 * p11-kit 0.24.1's client carries no AES-GCM or ECDH.
 */
export function defaultTokenKind(): TokenKind {
  return tokensUnderTest()[0] ?? 'emulator';
}

export function testPlatform(
  opts: {
    partition?: number;
    partitions?: number;
    token?: Pkcs11Token;
    nvram?: MemoryNvram;
    operatorKeyHash?: Uint8Array;
    tokenKind?: TokenKind;
    tokenFault?: 'gcm';
  } = {},
): TestPlatform {
  const clock = { t: 1_700_000_000_000 };
  const failpoints = new Set<string>();
  const kind = opts.tokenKind ?? defaultTokenKind();
  let token = opts.token;
  let module: P.Pkcs11 | undefined;
  if (!token) {
    const t = freshToken(kind);
    module = opts.tokenFault === 'gcm' ? gcmFault(t.module) : t.module;
    token = new Pkcs11Token({ module, label: t.label, userPin: USER_PIN });
  }
  return {
    random: (n) => new Uint8Array(randomBytes(n)),
    now: () => clock.t,
    nvram: opts.nvram ?? new MemoryNvram(),
    token,
    tokenKind: kind,
    module: module!,
    partition: opts.partition ?? 0,
    partitions: opts.partitions ?? 1,
    operatorKeyHash: opts.operatorKeyHash,
    clock,
    failpoints,
    failpoint(name: string) {
      if (failpoints.has(name)) throw new Error(`failpoint ${name}`);
    },
  };
}
