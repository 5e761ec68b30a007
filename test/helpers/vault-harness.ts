/**
 * A whole vault in one process for firmware tests: the enclave (createEnclave over a test
 * platform), a PartitionEngine and a SQLite store in a temporary folder, and an EscrowClient
 * talking through them. `restart()` boots a new enclave on the same NVRAM, token and database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createEnclave } from '../../enclave/main.ts';
import type { Enclave } from '../../enclave/main.ts';
import { SUITE_CODE } from '../../enclave/api/messages.ts';
import type { SuiteId } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { EscrowClient } from '../../host/client/escrow.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import type { RecordStore } from '../../host/storage/types.ts';
import { PartitionEngine } from '../../host/vault/engine.ts';
import { testPlatform } from './platform.ts';
import type { TestPlatform } from './platform.ts';

export const CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');

export interface Harness {
  dir: string;
  platform: TestPlatform;
  enclave: Enclave;
  engine: PartitionEngine;
  store: RecordStore;
  hpkePublicKey: Uint8Array;
  client(suite?: SuiteId): Promise<EscrowClient>;
  restart(opts?: { keepStore?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export async function openHarness(opts: { operatorKeyHash?: Uint8Array } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-test-'));
  const platform = testPlatform({ operatorKeyHash: opts.operatorKeyHash });
  const h = {} as Harness;
  h.dir = dir;
  h.platform = platform;
  h.store = await openSqliteStore(join(dir, 'vault.db'));
  const boot = async () => {
    h.enclave = await createEnclave(platform);
    h.engine = new PartitionEngine({ request: (b) => h.enclave.handle(b) }, h.store, 0);
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
  h.close = async () => {
    await h.engine.close();
    await h.store.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return h;
}

export { SUITE_CODE };
