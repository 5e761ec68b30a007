/**
 * A partition whose restart fails is down, not ready: its device may boot (the channel says
 * 'ready') and then answer a fault at load, so the host keeps the fault and, until a restart
 * succeeds, reports the partition not ready and refuses its operations with a typed error
 * (ChannelError NotReady, which the service answers 503 NOT_READY) before any device sees them.
 * Here the load fails because a stored record was tampered with (the enclave refuses the load);
 * test/host/vault/vault-host-restart.test.ts breaks the token itself on every backend.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { EnclaveCallError } from '../../../host/vault/engine.ts';
import type { EnclavePool } from '../../../host/channel/pool.ts';
import { ChannelError, ChannelErrorCode } from '../../../host/channel/channel.ts';
import { toServiceError } from '../../../host/service/error-codes.ts';
import { hostClient } from '../../helpers/vault-harness.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';
import { rejectionOf } from '../../helpers/errors.ts';

const te = new TextEncoder();
const { dirs, hosts } = trackVaults();

it('a restart whose load the device refuses leaves the partition not ready, refusing with NotReady (503 NOT_READY), until a restart succeeds', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-down-'));
  dirs.push(dataDir);
  const issuer = await testIssuer();
  const log: string[] = [];
  const host = await VaultHost.open({ auth: issuer.config, dataDir, token: 'emulator', partitions: 1, compactEveryMs: 0, log: (l) => log.push(l) });
  hosts.push(host);
  const client = await hostClient(host, issuer);
  const id = te.encode('down-0');
  const key = new Uint8Array(32).fill(9);
  await client.register(id, te.encode('pw'), key, { attemptLimit: 5 });
  expect(host.partitionsReady()).toEqual([true]);

  // One stored record no longer opens: the next load is refused by the device.
  const row = (await host.store.getMany(0, [id]))[0]!;
  const good = Uint8Array.from(row.blob);
  const bad = Uint8Array.from(good);
  bad[bad.length - 1]! ^= 0x01;
  const epoch = (await host.store.appliedEpoch(0))!;
  await host.store.applyBatch(0, epoch, [{ recordId: id, blob: bad }], []);

  const failed = await rejectionOf(host.restartPartition(0));
  expect(failed).toBeInstanceOf(EnclaveCallError);
  // The new device booted and runs: its channel alone would say ready.
  const pool = (host as unknown as { pool: EnclavePool }).pool;
  expect(pool.channel(0).state).toBe('ready');
  expect(host.partitionsReady()).toEqual([false]);

  // Its operations are refused before any device sees them, with the typed error, not relayed.
  const refused = await rejectionOf(client.status(id));
  expect(refused).toBeInstanceOf(ChannelError);
  expect((refused as ChannelError).code).toBe(ChannelErrorCode.NotReady);
  expect((refused as Error).cause).toBe(failed);
  const http = toServiceError(refused);
  expect([http.code, http.status, http.extra.retryAfterSeconds]).toEqual(['NOT_READY', 503, 1]);
  expect(await rejectionOf(host.submit(id, new Uint8Array(16)))).toMatchObject({ name: 'ChannelError', code: ChannelErrorCode.NotReady });

  // The store is whole again: the next restart brings the partition back, the record intact.
  await host.store.applyBatch(0, epoch, [{ recordId: id, blob: good }], []);
  await host.restartPartition(0);
  expect(host.partitionsReady()).toEqual([true]);
  const r = await client.recover(id, te.encode('pw'));
  expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
  expect(log.filter((l) => l === 'partition 0: restarting device')).toHaveLength(2);
});
