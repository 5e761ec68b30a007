/**
 * Which PKCS#11 tokens a test run covers, and fresh tokens for tests.
 *
 * Kinds: `emulator` (the emulator module in this thread), `softhsm` (SoftHSM2 through pkcs11js)
 * and `remote` (the emulator in its own thread behind the PKCS#11 remote, test/helpers/remote-token/:
 * every call crosses as bytes). BKV_TOKEN = emulator | softhsm | remote | all. Unset: every kind
 * available (the emulator and the remote always, SoftHSM2 when installed). A suite that needs
 * SoftHSM2 when it is missing skips with the install hint locally, and fails in CI (CI=true),
 * where SoftHSM2 is part of the machine.
 *
 * The remote is a module transport, not a device token: it joins the suites that drive the
 * module they get from `freshToken` (`{ remote: true }`); a suite that hands
 * its kind to a device (VaultHost, hsm/runner.ts) runs on the device kinds only.
 *
 * Fresh tokens: the emulator in memory (fast PIN derivation), the same behind a remote (its
 * thread ends with the test file), or SoftHSM2 with its own token folder in a temporary
 * directory (SoftHSM2 is one library per process: opening a new SoftHSM2 token re-initializes
 * the library and ends the sessions of the previous one, so a test file uses one SoftHSM2 token
 * at a time).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import * as P from '../../enclave/api/pkcs11.ts';
import { TokenError } from '../../enclave/token.ts';
import { EmulatorModule } from '../../hsm/tokens/emulator/module.ts';
import type { EmulatorOptions } from '../../hsm/tokens/emulator/module.ts';
import { ensureEmulatorToken } from '../../hsm/tokens/open.ts';
import { RemotePkcs11 } from './remote-token/client.ts';
import { ensureSoftHsmToken, loadSoftHsm, softhsmUnavailable } from '../../hsm/tokens/softhsm.ts';

export type TokenKind = 'emulator' | 'softhsm' | 'remote';
/** The kinds a device can open (hsm/tokens/config.ts). */
export type DeviceTokenKind = Exclude<TokenKind, 'remote'>;

const KINDS: readonly TokenKind[] = ['emulator', 'softhsm', 'remote'];

/** Suites (by name) that drive a module from freshToken and so run on the remote too. */

export const SO_PIN = 'so-pin-0000';
export const USER_PIN = 'user-pin-1111';

const ci = process.env.CI === 'true' || process.env.CI === '1';

export function tokensUnderTest(): TokenKind[] {
  const want = process.env.BKV_TOKEN;
  if (want === 'emulator' || want === 'softhsm' || want === 'remote') return [want];
  if (want && want !== 'all') throw new Error(`BKV_TOKEN must be emulator, softhsm, remote or all, not ${want}`);
  if (want === 'all' || ci || softhsmUnavailable() === null) return [...KINDS];
  return KINDS.filter((k) => k !== 'softhsm');
}

/** Null if tests on this token can run; else why they are skipped (never in CI: there they fail). */
export function skipReason(kind: TokenKind): string | null {
  if (kind !== 'softhsm' || ci) return null;
  return softhsmUnavailable();
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
  if (!kinds.includes('softhsm') && !process.env.BKV_TOKEN && softhsmUnavailable()) {
    describe.skip(`${name} [softhsm] skipped: ${softhsmUnavailable()}`, () => it('needs SoftHSM2', () => {}));
  }
  if (kinds.length === 0) describe.skip(`${name} skipped: BKV_TOKEN=remote and this suite runs on device tokens only`, () => it('needs a device token', () => {}));
  for (const kind of kinds) {
    const why = skipReason(kind);
    if (why) describe.skip(`${name} [${kind}] skipped: ${why}`, () => it('needs SoftHSM2', () => {}));
    else describe(`${name} [${kind}]`, () => (body as (k: TokenKind) => void)(kind));
  }
}

// SoftHSM2 token folders: one is live at a time per process; the previous one goes when the next
// is made, the last when the test file ends. Remote token threads end with the test file.
let softhsmDir: string | null = null;
const dropSofthsmDir = () => {
  if (softhsmDir) rmSync(softhsmDir, { recursive: true, force: true });
  softhsmDir = null;
};
const remotes: RemotePkcs11[] = [];
const closeRemotes = () => {
  for (const r of remotes.splice(0)) r.close();
};
afterAll(() => {
  dropSofthsmDir();
  closeRemotes();
});
process.once('exit', dropSofthsmDir);

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
  let module: P.Pkcs11;
  if (kind === 'emulator') {
    module = P.normalizedModule(new EmulatorModule({ pinKdfIterations: 1000, ...emulator }));
    module.C_Initialize();
    ensureEmulatorToken(module, label, SO_PIN, USER_PIN);
  } else if (kind === 'remote') {
    const r = new RemotePkcs11({ emulator: { pinKdfIterations: 1000, ...emulator } });
    remotes.push(r);
    module = r;
    module.C_Initialize();
    ensureEmulatorToken(module, label, SO_PIN, USER_PIN);
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'bkv-softhsm-'));
    const m = loadSoftHsm(dir);
    const previous = softhsmDir;
    softhsmDir = dir;
    if (previous) rmSync(previous, { recursive: true, force: true });
    ensureSoftHsmToken(m, label, SO_PIN, USER_PIN);
    module = m;
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
