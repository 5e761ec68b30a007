// Run by test/package.test.ts from plain Node in a project that installed the packed tarball:
// a vault opened in-process through backup-key-vault/vault (one partition, worker thread),
// an escrow and a recovery relayed by `vault.submit` from backup-key-vault/client. Prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_OPAQUE_CONTEXT, EscrowClient, generateBackupKey, portableSuite } from 'backup-key-vault/client';
import { DEFAULT_AUDIENCE, VaultHost, mintToken, newIssuer } from 'backup-key-vault/vault';

const dir = mkdtempSync(join(tmpdir(), 'bkv-pkg-vault-'));
const issuer = await newIssuer('package-test');
const vault = await VaultHost.open({
  dataDir: join(dir, 'data'),
  partitions: 1,
  tokenPins: { operatorDir: join(dir, 'operator') },
  auth: { audience: DEFAULT_AUDIENCE, issuers: [{ name: issuer.name, publicKey: issuer.publicKey }] },
});
try {
  const client = new EscrowClient({
    relay: (recordId, message) => vault.submit(recordId, message),
    enclavePublicKey: vault.info.enclavePublicKey,
    suite: portableSuite('ristretto255-SHA512'),
    context: DEFAULT_OPAQUE_CONTEXT,
    rng: (n) => crypto.getRandomValues(new Uint8Array(n)),
    auth: (recordId) => mintToken(issuer, { subject: new TextDecoder().decode(recordId) }),
  });
  const id = new TextEncoder().encode('alice@example');
  const key = generateBackupKey();
  const reg = await client.register(id, new TextEncoder().encode('pw'), key, { attemptLimit: 5 });
  const rec = await client.recover(id, new TextEncoder().encode('pw'));
  console.log(JSON.stringify({
    partitionsReady: vault.partitionsReady(),
    records: vault.info.records,
    enclavePublicKeyBytes: vault.info.enclavePublicKey.length,
    attemptsRemaining: reg.attemptsRemaining,
    recovered: rec.ok && Buffer.from(rec.backupKey).equals(Buffer.from(key)),
  }));
} finally {
  await vault.close();
  rmSync(dir, { recursive: true, force: true });
}
