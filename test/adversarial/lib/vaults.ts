/**
 * Ways the adversarial drivers reach a vault: a VaultHost in this process (worker-thread or
 * child-process devices) or a vault service in a child process over HTTP, each with a
 * VaultClient; and the device processes of this process (to SIGKILL one). Every vault is
 * provisioned with the process's test issuer (test/helpers/auth.ts), whose tokens the clients send.
 */
import { readFileSync } from 'node:fs';
import { fetchVaultInfo, httpRelay } from '../../../client/http-relay.ts';
import { VaultHost } from '../../../host/vault/vault-host.ts';
import { fastSealRequest } from '../../../client/e2e-seal-node.ts';
import { testIssuer } from '../../helpers/auth.ts';
import type { VaultHostOptions } from '../../../host/vault/vault-host.ts';
import { childPids } from './common.ts';
import { VaultClient } from './flows.ts';
import { startServiceProc } from './service-proc.ts';
import type { ServiceProc } from './service-proc.ts';

export interface OpenVault {
  client: VaultClient;
  close(): Promise<void>;
  host?: VaultHost;
  service?: ServiceProc;
}

export async function openHost(opts: VaultHostOptions): Promise<OpenVault & { host: VaultHost }> {
  const host = await VaultHost.open({ auth: (await testIssuer()).config, ...opts });
  const client = await VaultClient.create((r, m) => host.submit(r, m), host.info.enclavePublicKey);
  return { host, client, close: () => host.close() };
}

/**
 * A vault service in a child process and a client of it. `fastSeal`: the client seals on
 * node:crypto (client/e2e-seal-node.ts, the same bytes as the SDK's WebCrypto path, several times
 * cheaper) so that a load driver measures the vault rather than itself.
 */
export async function openService(opts: { dataDir: string; mode?: 'worker' | 'process'; partitions?: number; replayWindowMs?: number; fastSeal?: boolean }): Promise<OpenVault & { service: ServiceProc }> {
  const service = await startServiceProc(opts);
  try {
    const info = await fetchVaultInfo(service.url);
    const client = await VaultClient.create(httpRelay({ baseUrl: service.url, timeoutMs: 60_000 }), info.enclavePublicKey, undefined, opts.fastSeal ? fastSealRequest(info.enclavePublicKey) : undefined);
    return {
      service,
      client,
      close: async () => {
        await service.stop();
      },
    };
  } catch (e) {
    await service.kill();
    throw e;
  }
}

/**
 * The simulated devices of this process: its child processes running a device entry, the
 * bundled one (bin/bundle.mjs, `process-main.js`, what process-mode devices run by default) or
 * hsm/boot.mjs (from source, BKV_BUNDLE=0).
 */
export function myDevicePids(): number[] {
  return childPids(process.pid).filter((pid) => {
    try {
      return /boot\.mjs|process-main\.js/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}
