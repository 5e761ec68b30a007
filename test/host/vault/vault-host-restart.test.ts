/**
 * Automatic partition restarts keep trying: a device that dies while the token is broken can not
 * come back at once (its boot or its load needs the token's keys), meanwhile the partition is
 * not ready and refuses its operations (ChannelError NotReady), and once the token works again
 * the partition must serve again on its own, without an operator restart. On every token under
 * test, each broken in a way it has (`breakToken`): the emulator's store file in the data folder;
 * behind p11-kit-client.so (test/helpers/tokens.ts `vaultToken`) the store file of the emulator
 * that `bkv token serve` serves; SoftHSM2's token folder, moved away.
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describeTokens, emulatorStoreFile, vaultToken } from '../../helpers/tokens.ts';
import type { TokenKind } from '../../helpers/tokens.ts';
import { softhsmPaths } from '../../../hsm/tokens/softhsm.ts';
import type { EnclavePool } from '../../../host/channel/pool.ts';
import { ChannelError, ChannelErrorCode } from '../../../host/channel/channel.ts';
import type { ProcessChannel } from '../../../host/channel/process-channel.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { hostClient } from '../../helpers/vault-harness.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';
import { rejectionOf } from '../../helpers/errors.ts';

const te = new TextEncoder();
const { dirs, hosts } = trackVaults();

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Breaks the token the vault's devices open, in a way its backend has; returns the repair. The
 * emulator (and the one p11kit's server serves): its store file no longer verifies, so a device
 * that opens the token fails at boot; the exact bytes are put back later. SoftHSM2: its token
 * folder is moved away, so a device that boots makes a new, empty token of the vault's label
 * (hsm/tokens/open.ts ensureToken) and its firmware answers NotProvisioned when the host loads
 * the records; the repair sets that folder aside and moves the vault's back.
 */
function breakToken(kind: TokenKind, dataDir: string): () => void {
  const store = emulatorStoreFile(kind, dataDir);
  if (store !== null) {
    const good = readFileSync(store);
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff;
    writeFileSync(`${store}.bad`, bad);
    renameSync(`${store}.bad`, store);
    return () => {
      writeFileSync(`${store}.good`, good);
      renameSync(`${store}.good`, store);
    };
  }
  if (kind !== 'softhsm') throw new Error(`breakToken: no way to break a ${kind} token`);
  const { tokenDir } = softhsmPaths(dataDir);
  renameSync(tokenDir, `${tokenDir}.away`);
  return () => {
    // A device restarting now may make the folder again between the two renames: try again.
    for (let i = 0; ; i++) {
      if (existsSync(tokenDir)) renameSync(tokenDir, `${tokenDir}.made-${i}`);
      try {
        renameSync(`${tokenDir}.away`, tokenDir);
        return;
      } catch (e) {
        if (i >= 20 || !['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    }
  };
}

describeTokens('automatic restarts', (kind) => {
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

    const repair = breakToken(kind, dataDir);

    // The device of partition 0 dies; every restart fails while the token is broken, and the
    // partition says so: not ready, its operations refused with the typed error.
    const pool = (host as unknown as { pool: EnclavePool }).pool;
    process.kill((pool.channel(0) as ProcessChannel).pid!, 'SIGKILL');
    await until('two failed restarts', () => log.filter((l) => l.startsWith('partition 0 restart failed')).length >= 2, 30_000);
    expect(host.partitionsReady()[0]).toBe(false);
    const refused = await rejectionOf(client.status(id));
    expect(refused).toBeInstanceOf(ChannelError);
    expect((refused as ChannelError).code).toBe(ChannelErrorCode.NotReady);
    expect(host.partitionsReady()[0]).toBe(false);

    // The token works again: the next try brings the partition back, with the record intact.
    repair();
    await until('partition 0 ready', () => host.partitionsReady()[0] === true, 30_000);
    expect(log.some((l) => /partition 0: serving again after \d+ failed restart/.test(l))).toBe(true);
    const r = await client.recover(id, te.encode('pw'));
    expect(r.ok).toBe(true);
    if (r.ok) expect(Buffer.from(r.backupKey).equals(Buffer.from(key))).toBe(true);
  }, 90_000);
}, { p11kit: true });
