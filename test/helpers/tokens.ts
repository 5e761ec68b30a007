/**
 * Which PKCS#11 tokens a test run covers, and fresh tokens for tests.
 *
 * BKV_TOKEN = emulator | softhsm | all. Unset: all when SoftHSM2 is installed, else the
 * emulator. A suite that needs SoftHSM2 when it is missing skips with the install hint locally,
 * and fails in CI (CI=true), where SoftHSM2 is part of the machine.
 *
 * Fresh tokens: the emulator in memory (fast PIN derivation), or SoftHSM2 with its own token
 * folder in a temporary directory (SoftHSM2 is one library per process: opening a new SoftHSM2
 * token re-initializes the library and ends the sessions of the previous one, so a test file
 * uses one SoftHSM2 token at a time).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import * as P from '../../enclave/api/pkcs11.ts';
import { EmulatorModule } from '../../host/tokens/emulator/module.ts';
import type { EmulatorOptions } from '../../host/tokens/emulator/module.ts';
import { ensureEmulatorToken } from '../../host/tokens/open.ts';
import { ensureSoftHsmToken, loadSoftHsm, softhsmUnavailable } from '../../host/tokens/softhsm.ts';

export type TokenKind = 'emulator' | 'softhsm';

export const SO_PIN = 'so-pin-0000';
export const USER_PIN = 'user-pin-1111';

const ci = process.env.CI === 'true' || process.env.CI === '1';

export function tokensUnderTest(): TokenKind[] {
  const want = process.env.BKV_TOKEN;
  if (want === 'emulator') return ['emulator'];
  if (want === 'softhsm') return ['softhsm'];
  if (want && want !== 'all') throw new Error(`BKV_TOKEN must be emulator, softhsm or all, not ${want}`);
  if (want === 'all' || ci || softhsmUnavailable() === null) return ['emulator', 'softhsm'];
  return ['emulator'];
}

/** Null if tests on this token can run; else why they are skipped (never in CI: there they fail). */
export function skipReason(kind: TokenKind): string | null {
  if (kind !== 'softhsm' || ci) return null;
  return softhsmUnavailable();
}

/** Runs `body` once per token under test, in a describe block named after the token. */
export function describeTokens(name: string, body: (kind: TokenKind) => void): void {
  const kinds = tokensUnderTest();
  if (!kinds.includes('softhsm') && !process.env.BKV_TOKEN && softhsmUnavailable()) {
    describe.skip(`${name} [softhsm] skipped: ${softhsmUnavailable()}`, () => it('needs SoftHSM2', () => {}));
  }
  for (const kind of kinds) {
    const why = skipReason(kind);
    if (why) describe.skip(`${name} [${kind}] skipped: ${why}`, () => it('needs SoftHSM2', () => {}));
    else describe(`${name} [${kind}]`, () => body(kind));
  }
}

// SoftHSM2 token folders: one is live at a time per process; the previous one goes when the next
// is made, the last when the test file ends.
let softhsmDir: string | null = null;
const dropSofthsmDir = () => {
  if (softhsmDir) rmSync(softhsmDir, { recursive: true, force: true });
  softhsmDir = null;
};
afterAll(dropSofthsmDir);
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
