/**
 * Automatic partition restarts keep trying: a device that dies while the token is broken can not
 * come back at once (its boot needs the token's keys), and once the token works again the
 * partition must serve again on its own, without an operator restart. On the emulator token, in
 * the data folder or behind p11-kit-client.so (test/helpers/tokens.ts `vaultToken`): the test
 * breaks the emulator's store file, which SoftHSM2 does not have (skipped there, saying so).
 */
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describeTokens, emulatorStoreFile, vaultToken } from '../../helpers/tokens.ts';
import type { EnclavePool } from '../../../host/channel/pool.ts';
import type { ProcessChannel } from '../../../host/channel/process-channel.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { hostClient } from '../../helpers/vault-harness.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';

const te = new TextEncoder();
const { dirs, hosts } = trackVaults();

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeTokens('automatic restarts', (kind) => {
  if (kind === 'softhsm') {
    it.skip(`a partition whose restarts fail while the token is broken serves again once the token works: skipped on SoftHSM2, whose token has no emulator store file to break`, () => {});
    return;
  }
  it('a partition whose restarts fail while the token is broken serves again once the token works', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bkv-restart-'));
    dirs.push(dataDir);
    const t = vaultToken(kind, dataDir);
    const log: string[] = [];
    const issuer = await testIssuer();
    const host = await VaultHost.open({ auth: issuer.config, dataDir, ...t, mode: 'process', partitions: 2, restartBackoffMs: 50, restartMaxBackoffMs: 400, log: (l) => log.push(l) });
    hosts.push(host);
    const client = await hostClient(host, issuer);
    let id = te.encode('user-0');
    for (let i = 1; host.partitionOf(id) !== 0; i++) id = te.encode(`user-${i}`);
    const key = new Uint8Array(32).fill(7);
    await client.register(id, te.encode('pw'), key, { attemptLimit: 5 });

    // Break the token: its store file no longer verifies (the exact bytes are put back later).
    const store = emulatorStoreFile(kind, dataDir)!;
    const good = readFileSync(store);
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff;
    writeFileSync(`${store}.bad`, bad);
    renameSync(`${store}.bad`, store);

    // The device of partition 0 dies; every restart fails while the token is broken.
    const pool = (host as unknown as { pool: EnclavePool }).pool;
    process.kill((pool.channel(0) as ProcessChannel).pid!, 'SIGKILL');
    await until('two failed restarts', () => log.filter((l) => l.startsWith('partition 0 restart failed')).length >= 2, 30_000);
    expect(host.partitionsReady()[0]).toBe(false);

    // The token works again: the next try brings the partition back, with the record intact.
    writeFileSync(`${store}.good`, good);
    renameSync(`${store}.good`, store);
    await until('partition 0 ready', () => host.partitionsReady()[0] === true, 30_000);
    expect(log.some((l) => /partition 0: serving again after \d+ failed restart/.test(l))).toBe(true);
    const r = await client.recover(id, te.encode('pw'));
    expect(r.ok).toBe(true);
    if (r.ok) expect(Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
  }, 90_000);
}, { p11kit: true });
