/**
 * hsm/runner.ts: where a device keeps its partition's NVRAM. The default is the device's own file
 * (`nvram-<partition>.bin`, hsm/nvram-file.ts); `nvram: 'token'` keeps it in the token's data
 * objects (hsm/nvram-token.ts); a data folder whose NVRAM already lives in the token (made
 * before the file was the default) keeps using the token when no choice is given.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeNvramState } from '../../enclave/vault/nvram-state.ts';
import { FileNvram } from '../../hsm/nvram-file.ts';
import { TokenNvram, nvramLabel } from '../../hsm/nvram-token.ts';
import { bootFirmware, buildPlatform, checkConfig, nvramFileName } from '../../hsm/runner.ts';
import type { CheckedConfig, HsmPlatform } from '../../hsm/runner.ts';
import type { Pkcs11Token } from '../../enclave/token-pkcs11.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-hsm-nvram-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

async function boot(cfg: CheckedConfig): Promise<HsmPlatform> {
  const platform = buildPlatform(cfg, () => {
    throw new Error('crash');
  });
  await bootFirmware(cfg, platform);
  return platform;
}
const objects = (p: HsmPlatform, partition: number) => {
  const t = p.token as Pkcs11Token;
  return t.readData(`${nvramLabel(partition)}/0`).length + t.readData(`${nvramLabel(partition)}/1`).length;
};
const close = (p: HsmPlatform) => (p.token as Pkcs11Token).close();

describe('device NVRAM placement (hsm/runner.ts)', () => {
  it("defaults to the partition's own file; the token holds no NVRAM object", { timeout: 60_000 }, async () => {
    const dataDir = path.join(root, `v${n++}`);
    const p = await boot({ dataDir, partition: 1, partitions: 2 });
    try {
      expect(p.nvram).toBeInstanceOf(FileNvram);
      expect(fs.existsSync(path.join(dataDir, nvramFileName(1)))).toBe(true);
      expect(objects(p, 1)).toBe(0);
      // The enclave wrote its provisioned state there.
      expect(decodeNvramState(new FileNvram(path.join(dataDir, nvramFileName(1)), { size: p.nvram.size }).read())).not.toBeNull();
    } finally {
      close(p);
    }
  });

  it("nvram: 'token' keeps it in the token's data objects, and no file", { timeout: 60_000 }, async () => {
    const dataDir = path.join(root, `v${n++}`);
    const p = await boot({ dataDir, partition: 0, partitions: 1, nvram: 'token' });
    try {
      expect(p.nvram).toBeInstanceOf(TokenNvram);
      expect(fs.existsSync(path.join(dataDir, nvramFileName(0)))).toBe(false);
      expect(objects(p, 0)).toBe(1);
    } finally {
      close(p);
    }
  });

  it('a folder provisioned with token NVRAM keeps it when no choice is given; its state is read back', { timeout: 60_000 }, async () => {
    const dataDir = path.join(root, `v${n++}`);
    const first = await boot({ dataDir, partition: 0, partitions: 1, nvram: 'token' });
    const before = first.nvram.read();
    close(first);
    const again = await boot({ dataDir, partition: 0, partitions: 1 });
    try {
      expect(again.nvram).toBeInstanceOf(TokenNvram);
      expect(fs.existsSync(path.join(dataDir, nvramFileName(0)))).toBe(false);
      expect(again.nvram.read()).toEqual(before);
    } finally {
      close(again);
    }
  });

  it('rejects an unknown nvram kind', () => {
    expect(() => checkConfig({ dataDir: path.join(root, 'bad'), partition: 0, partitions: 1, nvram: 'disk' })).toThrow(/nvram must be 'token' or 'file'/);
  });
});
