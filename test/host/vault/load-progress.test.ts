/**
 * VaultHost `onLoadProgress` (what `bkv serve` draws while it loads): told 0 of the store's
 * records first (rows with a blob: a deleted record's sealed tombstone is one), then after each
 * chunk the records loaded so far, over every partition, ending at the total. On every token
 * under test, p11-kit-client.so included (test/helpers/tokens.ts `vaultToken`).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { hostClient } from '../../helpers/vault-harness.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { describeTokens, vaultToken } from '../../helpers/tokens.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';

const te = new TextEncoder();
const { dirs } = trackVaults();

describeTokens('load progress', (kind) => {
  it('counts the stored records loaded of the total, over 2 partitions, from 0 to the total', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bkv-load-progress-'));
    dirs.push(dataDir);
    const t = vaultToken(kind, dataDir);
    const issuer = await testIssuer();
    const first = await VaultHost.open({ ...t, dataDir, partitions: 2, auth: issuer.config });
    const ids = Array.from({ length: 7 }, (_, i) => te.encode(`user-${i}`));
    try {
      expect(new Set(ids.map((id) => first.partitionOf(id))).size).toBe(2);
      const client = await hostClient(first, issuer);
      await Promise.all(ids.map((id, i) => client.register(id, te.encode(`pw-${i}`), new Uint8Array(32).fill(i), { attemptLimit: 3 })));
      await client.delete(ids[0]!, { password: te.encode('pw-0') });
    } finally {
      await first.close();
    }

    const calls: [number, number][] = [];
    const again = await VaultHost.open({ ...t, dataDir, partitions: 2, auth: issuer.config, onLoadProgress: (loaded, total) => calls.push([loaded, total]) });
    try {
      expect(again.info.records).toBe(6); // the enclave's live records; the store holds 7 rows with a blob
      expect(calls[0]).toEqual([0, 7]);
      expect(calls.at(-1)).toEqual([7, 7]);
      expect(calls.length).toBeGreaterThanOrEqual(3); // one call per loaded chunk, one chunk per partition here
      for (let i = 1; i < calls.length; i++) expect(calls[i]![0]).toBeGreaterThanOrEqual(calls[i - 1]![0]);
    } finally {
      await again.close();
    }
  }, 90_000);
}, { p11kit: true });
