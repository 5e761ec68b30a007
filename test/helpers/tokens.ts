/**
 * Which PKCS#11 tokens a test run covers, and fresh tokens for tests.
 *
 * Kinds: every device token backend (hsm/tokens/backends.ts: `emulator`, the emulator module in
 * this thread; `softhsm`, SoftHSM2 through pkcs11js) and `p11kit` (the emulator served by
 * `bkv token serve` in a child process, reached through p11-kit-client.so 0.24.1 with pkcs11js:
 * every call crosses p11-kit's RPC protocol; test/helpers/p11kit-server.ts). BKV_TOKEN = one kind,
 * or all. Unset: every kind available (the emulator always, SoftHSM2 and p11kit when installed).
 * A suite that needs a backend that is missing skips with its install hint locally, and fails in
 * CI (CI=true), where SoftHSM2 and p11-kit-modules are part of the machine.
 *
 * p11kit is a module transport, not a device token: it joins the suites that drive the module
 * they get from `freshToken` (`{ p11kit: true }`; the firmware suites run on it on the ctr-hmac
 * token profile). A suite that hands its kind to a device runs on the device kinds only, unless it
 * opens its VaultHost with `vaultToken` (the `pkcs11` backend on p11-kit-client.so, as `bkv serve
 * --token pkcs11` does; test/host/vault/vault-host.test.ts). Its client can not carry some
 * mechanisms (`carries`): a suite asserts the client's refusal there instead of the result.
 *
 * Fresh tokens: the backend's scratch module (the emulator in memory with fast PIN derivation;
 * SoftHSM2 with its own token folder in a temporary directory), or for p11kit a new token
 * (C_InitToken on the server's free slot) on the one server of this test process, started at the
 * first p11kit token and stopped with the test file. One scratch module per backend is live at a
 * time: SoftHSM2 is one library per process, and opening a new SoftHSM2 token re-initializes the
 * library and ends the sessions of the previous one, so a test file uses one SoftHSM2 token at a
 * time. The p11kit module is loaded once per process (hsm/tokens/pkcs11-module.ts `loadModule`),
 * one connection to the server; vitest runs each test file in a process of its own.
 */
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import * as P from '../../enclave/api/pkcs11.ts';
import { TokenError } from '../../enclave/token.ts';
import { SCRATCH_TOKEN_KINDS, TOKEN_BACKENDS } from '../../hsm/tokens/backends.ts';
import type { TokenKind as DeviceTokenKind } from '../../hsm/tokens/backends.ts';
import type { EmulatorOptions } from '../../hsm/tokens/emulator/module.ts';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { provisionModuleToken, readTokenConfig } from '../../hsm/tokens/config.ts';
import { EMULATOR_STORE_FILE } from '../../hsm/tokens/emulator/backend.ts';
import { ensureToken } from '../../hsm/tokens/open.ts';
import { loadModule } from '../../hsm/tokens/pkcs11-module.ts';
import { P11KIT_CLIENT_REFUSES } from '../../hsm/tokens/p11kit/index.ts';
import { P11_KIT_CLIENT, p11kitUnavailable, startTokenServer } from './p11kit-server.ts';
import type { TokenServerProcess } from './p11kit-server.ts';

export type TokenKind = DeviceTokenKind | 'p11kit';

const KINDS: readonly TokenKind[] = [...SCRATCH_TOKEN_KINDS, 'p11kit'];

export const SO_PIN = 'so-pin-0000';
export const USER_PIN = 'user-pin-1111';

const ci = process.env.CI === 'true' || process.env.CI === '1';

const unavailable = (kind: TokenKind): string | null => (kind === 'p11kit' ? p11kitUnavailable() : TOKEN_BACKENDS[kind].unavailable());

export function tokensUnderTest(): TokenKind[] {
  const want = process.env.BKV_TOKEN;
  const named = KINDS.find((k) => k === want);
  if (named) return [named];
  if (want && want !== 'all') throw new Error(`BKV_TOKEN must be ${KINDS.join(', ')} or all, not ${want}`);
  if (want === 'all' || ci) return [...KINDS];
  return KINDS.filter((k) => unavailable(k) === null);
}

const title = (kind: TokenKind): string => (kind === 'p11kit' ? 'p11-kit-client.so' : TOKEN_BACKENDS[kind].title);

/**
 * Whether a mechanism reaches the token through this kind: false for the mechanisms p11-kit
 * 0.24.1's client refuses itself with CKR_MECHANISM_INVALID (P11KIT_CLIENT_REFUSES).
 */
export function carries(kind: TokenKind, mechanism: number): boolean {
  return kind !== 'p11kit' || !P11KIT_CLIENT_REFUSES.includes(mechanism);
}

/** Null if tests on this token can run; else why they are skipped (never in CI: there they fail). */
export function skipReason(kind: TokenKind): string | null {
  return ci ? null : unavailable(kind);
}

/**
 * Runs `body` once per token under test, in a describe block named after the token. p11kit is
 * among them only for a suite given `{ p11kit: true }` (see above).
 */
export function describeTokens(name: string, body: (kind: DeviceTokenKind) => void): void;
export function describeTokens(name: string, body: (kind: TokenKind) => void, opts: { p11kit: true }): void;
export function describeTokens(name: string, body: (kind: never) => void, opts: { p11kit?: boolean } = {}): void {
  const kinds = tokensUnderTest().filter((k) => k !== 'p11kit' || opts.p11kit === true);
  for (const k of KINDS) {
    const why = unavailable(k);
    if ((k !== 'p11kit' || opts.p11kit) && !kinds.includes(k) && !process.env.BKV_TOKEN && why) describe.skip(`${name} [${k}] skipped: ${why}`, () => it(`needs ${title(k)}`, () => {}));
  }
  if (kinds.length === 0) describe.skip(`${name} skipped: BKV_TOKEN=p11kit and this suite runs on device tokens only`, () => it('needs a device token', () => {}));
  for (const kind of kinds) {
    const why = skipReason(kind);
    if (why) describe.skip(`${name} [${kind}] skipped: ${why}`, () => it(`needs ${title(kind)}`, () => {}));
    else describe(`${name} [${kind}]`, () => (body as (k: TokenKind) => void)(kind));
  }
}

// Scratch modules: one live per backend; the previous one goes when the next is made, the last
// when the test file ends. The p11kit server ends with the test file.
const live = new Map<DeviceTokenKind, { dispose(): void }>();
const dropScratch = () => {
  for (const s of live.values()) s.dispose();
  live.clear();
};
let server: TokenServerProcess | null = null;
const stopServer = () => {
  server?.stop();
  server = null;
};
afterAll(() => {
  dropScratch();
  stopServer();
});
process.once('exit', () => {
  dropScratch();
  stopServer();
});

/**
 * p11-kit-client.so, loaded and initialized once per process, reaching this process's server.
 * `reinitialize` is C_Finalize + C_Initialize with the flag the client needs (CKF_OS_LOCKING_OK;
 * it answers CKR_CANT_LOCK without): the connection closes and a new one opens.
 */
function p11kitModule(): P.Pkcs11 & { reinitialize(): void } {
  if (!server) {
    server = startTokenServer({ userPin: USER_PIN, soPin: SO_PIN });
    // Read by the client with getenv when pkcs11js loads it (p11-kit client.c C_GetFunctionList).
    process.env.P11_KIT_SERVER_ADDRESS = server.address;
  }
  const m = loadModule(P11_KIT_CLIENT);
  const reinitialize = () => {
    m.C_Finalize();
    m.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  };
  return new Proxy(m, {
    get: (t, k) => {
      if (k === 'reinitialize') return reinitialize;
      const v = Reflect.get(t, k, t) as unknown;
      return typeof v === 'function' ? v.bind(t) : v;
    },
  }) as P.Pkcs11 & { reinitialize(): void };
}

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
  if (kind === 'p11kit') {
    // The server's emulator has the options `bkv token serve` gives it; a suite that tunes the emulator runs on device kinds.
    if (Object.keys(emulator).length > 0) throw new Error('freshToken: the p11kit token takes no emulator options');
    module = p11kitModule();
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

/** What a VaultHost (host/vault/vault-host.ts VaultHostOptions) needs to put its devices on a token. */
export interface VaultToken {
  token: DeviceTokenKind;
  tokenPins?: TokenPinSource;
}

/**
 * The token options of a new VaultHost data folder `dataDir` on `kind`; give the same ones to
 * every open of that folder. A device kind goes to the devices as it is (they make the token).
 * p11kit: a fresh token on this process's server (`freshToken`), named in `dataDir`'s token.json
 * for the `pkcs11` backend on p11-kit-client.so (provisionModuleToken, what `bkv serve --token
 * pkcs11 --module PATH --token-label L` writes), its PINs given to the devices as `tokenPins`
 * (a `pkcs11` vault keeps none of its own: hsm/tokens/token-pins.ts `operatorTokenPins`). The
 * devices reach the server by P11_KIT_SERVER_ADDRESS, set in this process's environment by
 * `freshToken`: worker threads share the process's environment (the client reads it with
 * getenv), and child-process devices are forked with a copy of process.env
 * (host/channel/process-channel.ts).
 */
export function vaultToken(kind: TokenKind, dataDir: string): VaultToken {
  if (kind !== 'p11kit') return { token: kind };
  const { label } = freshToken('p11kit');
  provisionModuleToken(dataDir, { module: P11_KIT_CLIENT, label });
  return { token: 'pkcs11', tokenPins: { userPin: USER_PIN } };
}

/**
 * Which of `labels` name objects on the token of a `vaultToken` p11kit data folder: looked up
 * from this process through its own connection to the server (whose logins are its own:
 * hsm/tokens/p11kit/connection.ts), logged in as the token's user, to see that the devices put
 * the vault's keys there.
 */
export function p11kitTokenHolds(dataDir: string, labels: readonly string[]): string[] {
  const label = readTokenConfig(dataDir)?.config.label;
  const m = p11kitModule();
  const slot = m.C_GetSlotList(true).find((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === label);
  if (slot === undefined) throw new Error(`no p11kit token labelled ${label}`);
  const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
  try {
    m.C_Login(s, P.CKU_USER, USER_PIN);
    return labels.filter((l) => {
      m.C_FindObjectsInit(s, [{ type: P.CKA_LABEL, value: l }]);
      const found = m.C_FindObjects(s, 1).length > 0;
      m.C_FindObjectsFinal(s);
      return found;
    });
  } finally {
    m.C_CloseSession(s);
  }
}

/**
 * The emulator store file the devices of a VaultHost data folder made with `vaultToken` open: the
 * folder's own for the emulator backend (hsm/tokens/emulator/backend.ts); for p11kit the server's,
 * which each connection's module instance reads (hsm/tokens/p11kit/server.ts `serveToken`); null
 * for the other backends (SoftHSM2 keeps its token in its own object files).
 */
export function emulatorStoreFile(kind: TokenKind, dataDir: string): string | null {
  if (kind === 'emulator') return join(dataDir, EMULATOR_STORE_FILE);
  if (kind !== 'p11kit') return null;
  if (!server) throw new Error('emulatorStoreFile: no p11kit token made in this process yet (vaultToken)');
  return join(server.dataDir, EMULATOR_STORE_FILE);
}
