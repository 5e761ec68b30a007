/**
 * The vault on real isolation boundaries: devices in worker threads and in child processes,
 * several partitions, restarts, and SIGKILL of a child-process device at every failpoint of a
 * batch: no acknowledged registration lost, no guess refunded, nothing half-written accepted.
 * On every token under test, p11-kit-client.so included (the devices on the `pkcs11` backend:
 * test/helpers/tokens.ts `vaultToken`). And the host's periodic store compaction (`compactEveryMs`).
 */
import { expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import type { VaultHostOptions } from '../../../host/vault/vault-host.ts';
import { EscrowClient, EscrowError } from '../../../client/escrow.ts';
import { Integrity } from '../../../enclave/api/codes.ts';
import { CONTEXT, hostClient } from '../../helpers/vault-harness.ts';
import { testIssuer, wallClockClientExtras } from '../../helpers/auth.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { randomBytes } from 'node:crypto';
import { describeTokens, p11kitTokenHolds, vaultToken } from '../../helpers/tokens.ts';
import { LABEL_SEAL, LABEL_SEAL_CTR, LABEL_SEAL_MAC } from '../../../enclave/token-profiles.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';

const te = new TextEncoder();
const { dirs, hosts } = trackVaults();

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bkv-host-'));
  dirs.push(d);
  return d;
}

async function open(opts: VaultHostOptions): Promise<{ host: VaultHost; client: EscrowClient }> {
  const issuer = await testIssuer();
  const host = await VaultHost.open({ auth: issuer.config, ...opts });
  hosts.push(host);
  return { host, client: await hostClient(host, issuer) };
}

describeTokens('vault on isolated devices', (kind) => {
  for (const mode of ['worker', 'process'] as const) {
    it(`serves many records over 2 partitions and keeps them across a reopen (${mode})`, async () => {
      const dataDir = tempDir();
      const t = vaultToken(kind, dataDir);
      const { host, client } = await open({ ...t, dataDir, mode, partitions: 2 });
      const ids = Array.from({ length: 12 }, (_, i) => te.encode(`user-${i}`));
      expect(new Set(ids.map((id) => host.partitionOf(id))).size).toBe(2);
      await Promise.all(ids.map((id, i) => client.register(id, te.encode(`pw-${i}`), new Uint8Array(32).fill(i), { attemptLimit: 3 })));
      await Promise.all(ids.map((id) => client.recover(id, te.encode('wrong'))));
      const pk = host.info.enclavePublicKey;
      await host.close();
      hosts.splice(hosts.indexOf(host), 1);
      // Through p11-kit's client the devices made the vault's keys on the served token, of the ctr-hmac profile (enclave/token-profiles.ts).
      if (kind === 'p11kit') expect(p11kitTokenHolds(dataDir, [LABEL_SEAL, LABEL_SEAL_CTR, LABEL_SEAL_MAC])).toEqual([LABEL_SEAL_CTR, LABEL_SEAL_MAC]);
      const again = await open({ ...t, dataDir, mode });
      expect(Buffer.from(again.host.info.enclavePublicKey).equals(Buffer.from(pk))).toBe(true);
      expect(again.host.info.records).toBe(12);
      for (const [i, id] of ids.entries()) {
        expect(await again.client.status(id)).toMatchObject({ attemptsRemaining: 2 });
        const r = await again.client.recover(id, te.encode(`pw-${i}`));
        expect(r.ok && r.backupKey[0] === i).toBe(true);
      }
    });
  }

  for (const failpoint of ['batch:before-intent', 'batch:prepared', 'commit:before-nvram', 'commit:after-nvram']) {
    it(`SIGKILL of the device at ${failpoint} loses nothing acknowledged and refunds nothing`, async () => {
      const dataDir = tempDir();
      const t = vaultToken(kind, dataDir);
      const id = te.encode('victim');
      {
        const { host, client } = await open({ ...t, dataDir, mode: 'process', partitions: 1 });
        await client.register(id, te.encode('pw'), new Uint8Array(32).fill(7), { attemptLimit: 5 });
        await host.close();
        hosts.splice(hosts.indexOf(host), 1);
      }
      {
        const { host, client } = await open({ ...t, dataDir, mode: 'process', partitions: 1, failpoint, autoRestart: false });
        const r = await client.recover(id, te.encode('wrong')).then(
          (v) => ({ ok: true, v }),
          (e: unknown) => ({ ok: false, e }),
        );
        expect(r.ok, 'the device died before answering').toBe(false);
        await host.close();
        hosts.splice(hosts.indexOf(host), 1);
      }
      const { client } = await open({ ...t, dataDir, mode: 'process' });
      const st = await client.status(id);
      expect(st).toMatchObject({ type: 'StatusResult', registered: 1 });
      const remaining = (st as { attemptsRemaining: number }).attemptsRemaining;
      // Before the intent the batch never happened; from the commit on, the guess stays charged.
      expect(remaining).toBe(failpoint.startsWith('commit') ? 4 : 5);
      const ok = await client.recover(id, te.encode('pw'));
      expect(ok.ok && ok.backupKey[0] === 7).toBe(true);
    });
  }
}, { p11kit: true });

it('submit goes to the partition it is given (the route computes it once); a wrong one is refused by that device, one out of range here', async () => {
  const issuer = await testIssuer();
  const host = await VaultHost.open({ auth: issuer.config, dataDir: tempDir(), partitions: 2, compactEveryMs: 0 });
  hosts.push(host);
  const base = await hostClient(host, issuer);
  const suite = await fastSuite('ristretto255-SHA512');
  const via = (pick: (rid: Uint8Array) => number) =>
    new EscrowClient({
      relay: (rid, m) => host.submit(rid, m, pick(rid)),
      enclavePublicKey: host.info.enclavePublicKey,
      suite,
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ...wallClockClientExtras(issuer),
    });
  const id = te.encode('routed');
  await via((rid) => host.partitionOf(rid)).register(id, te.encode('pw'), new Uint8Array(32).fill(5), { attemptLimit: 3 });
  const wrong = await via((rid) => 1 - host.partitionOf(rid))
    .status(id)
    .then(() => null, (e: unknown) => e);
  expect(wrong).toBeInstanceOf(EscrowError);
  expect((wrong as EscrowError).code).toBe(Integrity.IndexMismatch);
  await expect(host.submit(id, new Uint8Array(8), 2)).rejects.toThrow(RangeError);
  expect(await base.status(id)).toMatchObject({ attemptsRemaining: 3 });
});

it('compacts the store from time to time: empty-blob rows of committed batches go, records and sealed tombstones stay', async () => {
  const { host, client } = await open({ token: 'emulator', dataDir: tempDir(), partitions: 1, compactEveryMs: 50 });
  const kept = te.encode('kept');
  const deleted = te.encode('deleted');
  const ghost = te.encode('ghost');
  await client.register(kept, te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
  await client.register(deleted, te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 3 });
  expect(await client.delete(deleted, { backupKey: new Uint8Array(32).fill(2) })).toMatchObject({ type: 'Deleted' });
  // An empty-blob row (to the enclave the same as no row), written at the applied epoch: it
  // stays until a later batch is applied, then the next pass removes it.
  const epoch = (await host.store.appliedEpoch(0))!;
  await host.store.applyBatch(0, epoch, [{ recordId: ghost, blob: new Uint8Array(0) }], []);
  await host.compact();
  expect((await host.store.getMany(0, [ghost]))[0]).toBeDefined();
  expect(await client.status(kept)).toMatchObject({ attemptsRemaining: 3 });
  expect(await client.status(ghost)).toMatchObject({ type: 'NotRegistered' });
  await client.register(te.encode('later'), te.encode('pw'), new Uint8Array(32).fill(3), { attemptLimit: 3 });
  for (let i = 0; i < 200 && (await host.store.getMany(0, [ghost]))[0] !== undefined; i++) await new Promise((r) => setTimeout(r, 25));
  const rows = await host.store.getMany(0, [ghost, kept, deleted]);
  expect(rows.map((r) => r && new TextDecoder().decode(r.recordId))).toEqual([undefined, 'kept', 'deleted']);
  expect(rows[2]!.blob.length).toBeGreaterThan(0); // the sealed tombstone
  const r = await client.recover(kept, te.encode('pw'));
  expect(r.ok && r.backupKey[0] === 1).toBe(true);
});

it('compactEveryMs: 0 never compacts (a pass run by hand does); a delay a timer can not hold is refused', async () => {
  await expect(VaultHost.open({ dataDir: tempDir(), compactEveryMs: 2 ** 31 })).rejects.toThrow(RangeError);
  const { host, client } = await open({ token: 'emulator', dataDir: tempDir(), partitions: 1, compactEveryMs: 0 });
  const ghost = te.encode('ghost');
  await client.register(te.encode('a'), te.encode('pw'), new Uint8Array(32).fill(1), { attemptLimit: 3 });
  await host.store.applyBatch(0, (await host.store.appliedEpoch(0))!, [{ recordId: ghost, blob: new Uint8Array(0) }], []);
  await client.register(te.encode('b'), te.encode('pw'), new Uint8Array(32).fill(2), { attemptLimit: 3 });
  await new Promise((r) => setTimeout(r, 200));
  expect((await host.store.getMany(0, [ghost]))[0]).toBeDefined();
  await host.compact();
  expect((await host.store.getMany(0, [ghost]))[0]).toBeUndefined();
});
