/**
 * A vault opened as a library starts silently: its devices print their start note (the token
 * profile line, hsm/runner.ts) on stderr only when asked (`deviceNotes`, which `bkv serve` sets:
 * test/host/cli/cli.test.ts checks that serve prints it once). Worker-thread devices write to this
 * process's stderr through the thread's stream; child-process devices through the channel's copy
 * of their stderr (host/channel/process-channel.ts): both end in process.stderr.write, watched here.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import type { ChannelMode } from '../../../host/channel/pool.ts';
import { testIssuer } from '../../helpers/auth.ts';
import { trackVaults } from '../../helpers/vault-cleanup.ts';

const { dirs, hosts } = trackVaults();
const realWrite = process.stderr.write;

afterEach(() => {
  process.stderr.write = realWrite;
});

/** What reaches this process's stderr while a vault is opened (with `deviceNotes` or not) and closed. */
async function stderrOfStart(mode: ChannelMode, deviceNotes: boolean | undefined): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bkv-notes-'));
  dirs.push(dataDir);
  const issuer = await testIssuer();
  let seen = '';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    seen += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return (realWrite as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
  }) as typeof process.stderr.write;
  const host = await VaultHost.open({ auth: issuer.config, dataDir, token: 'emulator', mode, partitions: 2, compactEveryMs: 0, ...(deviceNotes !== undefined && { deviceNotes }) });
  hosts.push(host);
  // Closed here, so the devices have ended and what they wrote has come through.
  await host.close();
  process.stderr.write = realWrite;
  return seen;
}

for (const mode of ['worker', 'process'] as const) {
  it(`a library VaultHost start writes no token profile line to stderr; with deviceNotes, partition 0's device writes it once (${mode})`, async () => {
    const quiet = await stderrOfStart(mode, undefined);
    expect(quiet).not.toMatch(/token profile/);
    expect(await stderrOfStart(mode, false)).not.toMatch(/token profile/);
    const told = await stderrOfStart(mode, true);
    expect(told.match(/bkv device \d+: token profile [^\n]*/g)).toEqual(['bkv device 0: token profile gcm-ecdh; the token meets gcm-ecdh, ctr-hmac']);
  }, 60_000);
}
