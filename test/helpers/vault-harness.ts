/**
 * A whole vault in one process for firmware tests: the enclave (createEnclave over a test
 * platform on the emulator token or SoftHSM2), a PartitionEngine and a SQLite store in a
 * temporary folder, and an EscrowClient talking through them. `restart()` boots a new enclave on
 * the same NVRAM, token and database. `holdLogin` keeps a login session open after its KE2 (to
 * finish later, or never: an abandoned session); `storedRecord` opens a record's stored blob with
 * the enclave's sealing key, to check what the storage itself holds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createEnclave } from '../../enclave/main.ts';
import type { Device } from '../../enclave/api/device.ts';
import type { TableLimits } from '../../enclave/vault/sessions.ts';
import { SUITE_CODE } from '../../enclave/api/messages.ts';
import type { ClientRequest } from '../../enclave/api/messages.ts';
import type { SuiteId } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../../client/escrow.ts';
import type { ClientOp, RecoverResult, Relay } from '../../client/escrow.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { LABEL_SEAL } from '../../enclave/vault/keys.ts';
import { unseal } from '../../enclave/vault/record.ts';
import type { SealedHeader, VaultRecord } from '../../enclave/vault/record.ts';
import { testIssuer, wallClockClientExtras } from './auth.ts';
import type { TestIssuer } from './auth.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import type { RecordStore } from '../../host/storage/types.ts';
import { PartitionEngine } from '../../host/vault/engine.ts';
import type { VaultHost } from '../../host/vault/vault-host.ts';
import { testPlatform } from './platform.ts';
import type { TestPlatform } from './platform.ts';
import type { TokenKind } from './tokens.ts';

export const CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');

/** An EscrowClient of a running VaultHost: the fast ristretto255 suite, the test context, `issuer`'s tokens on the wall clock. */
export async function hostClient(host: VaultHost, issuer: TestIssuer): Promise<EscrowClient> {
  return new EscrowClient({
    relay: (rid, m) => host.submit(rid, m),
    enclavePublicKey: host.info.enclavePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: CONTEXT,
    ...wallClockClientExtras(issuer),
  });
}

export interface Harness {
  dir: string;
  platform: TestPlatform;
  enclave: Device;
  engine: PartitionEngine;
  store: RecordStore;
  hpkePublicKey: Uint8Array;
  /** The issuer the enclave is provisioned with; `client()` mints its tokens at the platform clock. */
  issuer: TestIssuer;
  /**
   * An EscrowClient through the engine (identity KSF, for speed). `wrap` puts a test's relay
   * between the client and the engine; `auth` overrides its token source (default: a valid token
   * for the operation's record id at the platform clock).
   */
  client(suite?: SuiteId, opts?: { wrap?: (relay: Relay) => Relay; auth?: EscrowClientAuth }): Promise<EscrowClient>;
  /** Boots a new enclave (a crash of the old one: it is simply dropped) on the same NVRAM, token and store. */
  restart(): Promise<void>;
  /** Closes and reopens the database (to swap the file underneath). */
  reopenStore(): Promise<void>;
  close(): Promise<void>;
}

type EscrowClientAuth = ConstructorParameters<typeof EscrowClient>[0]['auth'];

export async function openHarness(opts: { operatorKeyHash?: Uint8Array; tokenKind?: TokenKind; tableLimits?: Partial<TableLimits>; minPacing?: number; fleet?: boolean } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-test-'));
  const platform = testPlatform({ operatorKeyHash: opts.operatorKeyHash, tokenKind: opts.tokenKind });
  const issuer = await testIssuer();
  platform.auth = opts.minPacing === undefined ? issuer.config : { ...issuer.config, minPacing: opts.minPacing };
  const h = {} as Harness;
  h.issuer = issuer;
  h.dir = dir;
  h.platform = platform;
  h.store = await openSqliteStore(join(dir, 'vault.db'));
  const boot = async () => {
    h.enclave = await createEnclave(platform, { tableLimits: opts.tableLimits, fleet: opts.fleet });
    // The engine reaches the store through `h.store`, so a test can swap the database underneath.
    const store = new Proxy({} as RecordStore, {
      get: (_t, k) => {
        const v = (h.store as unknown as Record<string | symbol, unknown>)[k];
        return typeof v === 'function' ? v.bind(h.store) : v;
      },
    });
    h.engine = new PartitionEngine(h.enclave, store, 0);
    const info = await h.engine.start();
    h.hpkePublicKey = info.hpkePublicKey;
  };
  await boot();
  h.client = async (suite: SuiteId = 'ristretto255-SHA512', opts: { wrap?: (relay: Relay) => Relay; auth?: EscrowClientAuth } = {}) => {
    const relay: Relay = (recordId, message) => h.engine.submit(recordId, message);
    return new EscrowClient({
      relay: opts.wrap ? opts.wrap(relay) : relay,
      enclavePublicKey: h.hpkePublicKey,
      suite: await fastSuite(suite),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ksf: identityKsf,
      ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
      pacing: 'none',
      auth: opts.auth ?? ((recordId) => issuer.token(recordId, platform.clock.t)),
    });
  };
  h.restart = async () => {
    await h.engine.close();
    await boot();
  };
  h.reopenStore = async () => {
    await h.store.close();
    h.store = await openSqliteStore(join(dir, 'vault.db'));
  };
  h.close = async () => {
    await h.engine.close();
    await h.store.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return h;
}

export interface HeldLogin {
  /** Lets the client send its KE3; the login's outcome. */
  finish(): Promise<RecoverResult>;
}

/**
 * Starts a login of `recordId` with `password` and holds it once the LoginStart's answer (the KE2,
 * or Locked) has reached the client: the session stays open in the enclave until `finish()` lets
 * the client send its KE3. A held login never finished is an abandoned session.
 */
export async function holdLogin(h: Harness, recordId: Uint8Array, password: Uint8Array): Promise<HeldLogin> {
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let answered!: () => void;
  const started = new Promise<void>((r) => (answered = r));
  const c = await h.client(undefined, {
    wrap: (relay) => async (rid, message) => {
      if (calls++ > 0) {
        await gate;
        return relay(rid, message);
      }
      try {
        return await relay(rid, message);
      } finally {
        answered();
      }
    },
  });
  const outcome = c.recover(recordId, password);
  const settled = outcome.then(
    () => undefined,
    () => undefined,
  );
  await Promise.race([started, settled]);
  return {
    finish: () => {
      release();
      return outcome;
    },
  };
}

/** The record as stored for `recordId` (partition 0), opened with the enclave's sealing key; null when no row. */
export async function storedRecord(h: Harness, recordId: Uint8Array): Promise<{ blob: Uint8Array; header: SealedHeader; record: VaultRecord | null } | null> {
  const row = (await h.store.getMany(0, [recordId]))[0];
  if (!row) return null;
  const key = h.platform.token.findKey(LABEL_SEAL);
  if (key === null) throw new Error('the token holds no sealing key');
  return { blob: row.blob, ...unseal(h.platform.token, key, recordId, row.blob) };
}

export { SUITE_CODE };

/** What an EscrowClient of a test needs besides its relay and keys: the identity KSF and tokens at the platform clock. */
export function clientExtras(h: Harness) {
  return {
    ksf: identityKsf,
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
    pacing: 'none' as const,
    auth: (recordId: Uint8Array) => h.issuer.token(recordId, h.platform.clock.t),
  };
}

/** The `auth` field of a hand-made client request for `recordId`, valid at the platform clock. */
export function authFor(h: Harness, recordId: Uint8Array): Promise<Uint8Array> {
  return h.issuer.tokenBytes(recordId, h.platform.clock.t);
}

export type { ClientOp };

/** `op` with a valid token for `recordId` at the platform clock. */
export async function withAuth(h: Harness, recordId: Uint8Array, op: ClientOp): Promise<ClientRequest> {
  return { ...op, auth: await authFor(h, recordId) } as ClientRequest;
}
