/**
 * A whole vault in one process for firmware tests: the enclave (createEnclave over a test
 * platform on the emulator token or SoftHSM2), a PartitionEngine and a SQLite store in a
 * temporary folder, and an EscrowClient talking through them. `restart()` boots a new enclave on
 * the same NVRAM, token and database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createEnclave } from '../../enclave/main.ts';
import type { Enclave } from '../../enclave/main.ts';
import type { TableLimits } from '../../enclave/vault/sessions.ts';
import { SUITE_CODE } from '../../enclave/api/messages.ts';
import type { SuiteId } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { EscrowClient } from '../../host/client/escrow.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import type { RecordStore } from '../../host/storage/types.ts';
import { PartitionEngine } from '../../host/vault/engine.ts';
import { testPlatform } from './platform.ts';
import type { TestPlatform } from './platform.ts';
import type { TokenKind } from './tokens.ts';

export const CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');

export interface Harness {
  dir: string;
  platform: TestPlatform;
  enclave: Enclave;
  engine: PartitionEngine;
  store: RecordStore;
  hpkePublicKey: Uint8Array;
  client(suite?: SuiteId): Promise<EscrowClient>;
  /** Boots a new enclave (a crash of the old one: it is simply dropped) on the same NVRAM, token and store. */
  restart(): Promise<void>;
  /** Closes and reopens the database (to swap the file underneath). */
  reopenStore(): Promise<void>;
  close(): Promise<void>;
}

export async function openHarness(opts: { operatorKeyHash?: Uint8Array; tokenKind?: TokenKind; tableLimits?: Partial<TableLimits> } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-test-'));
  const platform = testPlatform({ operatorKeyHash: opts.operatorKeyHash, tokenKind: opts.tokenKind });
  const h = {} as Harness;
  h.dir = dir;
  h.platform = platform;
  h.store = await openSqliteStore(join(dir, 'vault.db'));
  const boot = async () => {
    h.enclave = await createEnclave(platform, { tableLimits: opts.tableLimits });
    // The engine reaches the store through `h.store`, so a test can swap the database underneath.
    const store = new Proxy({} as RecordStore, {
      get: (_t, k) => {
        const v = (h.store as unknown as Record<string | symbol, unknown>)[k];
        return typeof v === 'function' ? v.bind(h.store) : v;
      },
    });
    h.engine = new PartitionEngine({ request: (b) => h.enclave.handle(b) }, store, 0);
    const info = await h.engine.start();
    h.hpkePublicKey = info.hpkePublicKey;
  };
  await boot();
  h.client = async (suite: SuiteId = 'ristretto255-SHA512') =>
    new EscrowClient({
      relay: (recordId, message) => h.engine.submit(recordId, message),
      enclavePublicKey: h.hpkePublicKey,
      suite: await fastSuite(suite),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
    });
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

export { SUITE_CODE };
