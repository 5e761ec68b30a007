/**
 * What a VaultHost test opens and must close: register the hosts and data folders here, and each
 * test's `afterEach` closes the hosts and removes each folder with its token PINs' operator folder.
 */
import { rmSync } from 'node:fs';
import { afterEach } from 'vitest';
import type { VaultHost } from '../../host/vault/vault-host.ts';

export function trackVaults(): { dirs: string[]; hosts: VaultHost[] } {
  const dirs: string[] = [];
  const hosts: VaultHost[] = [];
  afterEach(async () => {
    for (const h of hosts.splice(0)) await h.close().catch(() => undefined);
    for (const d of dirs.splice(0)) for (const x of [d, `${d}.operator`]) rmSync(x, { recursive: true, force: true });
  });
  return { dirs, hosts };
}
