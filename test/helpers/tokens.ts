/**
 * Which PKCS#11 tokens a test run covers, and fresh tokens for tests.
 *
 * Kinds: every device token backend (hsm/tokens/backends.ts: `emulator`, the emulator module in
 * this thread; `softhsm`, SoftHSM2 through pkcs11js) and `remote` (the emulator in its own thread
 * behind the PKCS#11 remote, test/helpers/remote-token/: every call crosses as bytes). BKV_TOKEN =
 * one kind, or all. Unset: every kind available (the emulator and the remote always, SoftHSM2 when
 * installed). A suite that needs a backend that is missing skips with its install hint locally,
 * and fails in CI (CI=true), where SoftHSM2 is part of the machine.
 *
 * The remote is a module transport, not a device token: it joins the suites that drive the
 * module they get from `freshToken` (`{ remote: true }`); a suite that hands
 * its kind to a device (VaultHost, hsm/runner.ts) runs on the device kinds only.
 *
 * Fresh tokens: the backend's scratch module (the emulator in memory with fast PIN derivation;
 * SoftHSM2 with its own token folder in a temporary directory), or the emulator behind a remote
 * (its thread ends with the test file). One scratch module per backend is live at a time: SoftHSM2
 * is one library per process, and opening a new SoftHSM2 token re-initializes the library and
 * ends the sessions of the previous one, so a test file uses one SoftHSM2 token at a time.
 */
import { afterAll, describe, it } from 'vitest';
import * as P from '../../enclave/api/pkcs11.ts';
import { TokenError } from '../../enclave/token.ts';
import { SCRATCH_TOKEN_KINDS, TOKEN_BACKENDS } from '../../hsm/tokens/backends.ts';
import type { TokenKind as DeviceTokenKind } from '../../hsm/tokens/backends.ts';
import type { EmulatorOptions } from '../../hsm/tokens/emulator/module.ts';
import { ensureToken } from '../../hsm/tokens/open.ts';
import { RemotePkcs11 } from './remote-token/client.ts';

export type TokenKind = DeviceTokenKind | 'remote';

const KINDS: readonly TokenKind[] = [...SCRATCH_TOKEN_KINDS, 'remote'];

export const SO_PIN = 'so-pin-0000';
export const USER_PIN = 'user-pin-1111';

const ci = process.env.CI === 'true' || process.env.CI === '1';

const unavailable = (kind: TokenKind): string | null => (kind === 'remote' ? null : TOKEN_BACKENDS[kind].unavailable());

export function tokensUnderTest(): TokenKind[] {
  const want = process.env.BKV_TOKEN;
  const named = KINDS.find((k) => k === want);
  if (named) return [named];
  if (want && want !== 'all') throw new Error(`BKV_TOKEN must be ${KINDS.join(', ')} or all, not ${want}`);
  if (want === 'all' || ci) return [...KINDS];
  return KINDS.filter((k) => unavailable(k) === null);
}

/** Null if tests on this token can run; else why they are skipped (never in CI: there they fail). */
export function skipReason(kind: TokenKind): string | null {
  return ci ? null : unavailable(kind);
}

/**
 * Runs `body` once per token under test, in a describe block named after the token. The remote
 * is among them only for a suite given `{ remote: true }` (see above).
 */
export function describeTokens(name: string, body: (kind: DeviceTokenKind) => void): void;
export function describeTokens(name: string, body: (kind: TokenKind) => void, opts: { remote: true }): void;
export function describeTokens(name: string, body: (kind: never) => void, opts: { remote?: boolean } = {}): void {
  const remote = opts.remote === true;
  const kinds = tokensUnderTest().filter((k) => k !== 'remote' || remote);
  for (const k of SCRATCH_TOKEN_KINDS) {
    const why = unavailable(k);
    if (!kinds.includes(k) && !process.env.BKV_TOKEN && why) describe.skip(`${name} [${k}] skipped: ${why}`, () => it(`needs ${TOKEN_BACKENDS[k].title}`, () => {}));
  }
  if (kinds.length === 0) describe.skip(`${name} skipped: BKV_TOKEN=remote and this suite runs on device tokens only`, () => it('needs a device token', () => {}));
  for (const kind of kinds) {
    const why = skipReason(kind);
    if (why) describe.skip(`${name} [${kind}] skipped: ${why}`, () => it(`needs ${kind === 'remote' ? 'the remote' : TOKEN_BACKENDS[kind].title}`, () => {}));
    else describe(`${name} [${kind}]`, () => (body as (k: TokenKind) => void)(kind));
  }
}

// Scratch modules: one live per backend; the previous one goes when the next is made, the last
// when the test file ends. Remote token threads end with the test file.
const live = new Map<DeviceTokenKind, { dispose(): void }>();
const dropScratch = () => {
  for (const s of live.values()) s.dispose();
  live.clear();
};
const remotes: RemotePkcs11[] = [];
const closeRemotes = () => {
  for (const r of remotes.splice(0)) r.close();
};
afterAll(() => {
  dropScratch();
  closeRemotes();
});
process.once('exit', dropScratch);

export interface FreshToken {
  kind: TokenKind;
  module: P.Pkcs11;
  label: string;
  slot: P.Handle;
}

let counter = 0;

/** A newly initialized token (user PIN set, nobody logged in). */
export function freshToken(kind: TokenKind, emulator: EmulatorOptions = {}): FreshToken {
  const label = `bkv-test-${process.pid}-${counter++}`;
  const fast = { pinKdfIterations: 1000, ...emulator };
  let module: P.Pkcs11;
  if (kind === 'remote') {
    const r = new RemotePkcs11({ emulator: fast });
    remotes.push(r);
    module = r;
    module.C_Initialize();
    ensureToken(module, label, SO_PIN, USER_PIN);
  } else {
    const s = TOKEN_BACKENDS[kind].scratch!({ emulator: fast });
    const previous = live.get(kind);
    live.set(kind, s);
    previous?.dispose();
    ensureToken(s.module, label, SO_PIN, USER_PIN, s.rescan);
    module = s.module;
  }
  const slot = module.C_GetSlotList(true).find((s) => P.trimLabel(module.C_GetTokenInfo(s).label) === label)!;
  return { kind, module, label, slot };
}

/** The CKR_ name a token call fails with ('CKR_OK' when it does not fail). */
export function ckr(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const n = P.normalizePkcs11Error(e);
    if (n instanceof P.Pkcs11Error) return n.message;
    if (n instanceof TokenError) return n.ckr;
    throw e;
  }
  return 'CKR_OK';
}
