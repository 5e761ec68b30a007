// The browser side of examples/browser-client: escrow a backup key with a vault service and
// recover it, using backup-key-vault/client only (bundled by build.mjs). The page asks your
// service for a token per record id (examples/embedded-service.mjs answers POST /token/{id}).
import { DEFAULT_OPAQUE_CONTEXT, EscrowClient, fetchVaultInfo, formatBackupKey, generateBackupKey, httpRelay, portableSuite } from 'backup-key-vault/client';

const $ = (id) => document.getElementById(id);
const te = new TextEncoder();
const say = (line) => ($('log').textContent += `${line}\n`);

async function client(url) {
  const info = await fetchVaultInfo(url); // a real app compares info.enclavePublicKey with a pinned key
  return new EscrowClient({
    relay: httpRelay({ baseUrl: url }),
    enclavePublicKey: info.enclavePublicKey,
    suite: portableSuite('ristretto255-SHA512'),
    context: DEFAULT_OPAQUE_CONTEXT,
    rng: (n) => crypto.getRandomValues(new Uint8Array(n)),
    auth: async (recordId) => (await (await fetch(`${url}/token/${encodeURIComponent(new TextDecoder().decode(recordId))}`, { method: 'POST' })).json()).token,
  });
}

$('escrow').onclick = async () => {
  const c = await client($('url').value);
  const key = generateBackupKey();
  const r = await c.register(te.encode($('id').value), te.encode($('password').value), key, { attemptLimit: 5 });
  say(`escrowed ${formatBackupKey(key)}; attempts remaining ${r.attemptsRemaining}`);
};
$('recover').onclick = async () => {
  const c = await client($('url').value);
  const r = await c.recover(te.encode($('id').value), te.encode($('password').value));
  say(r.ok ? `recovered ${formatBackupKey(r.backupKey)}` : `not recovered: ${r.outcome}${'attemptsRemaining' in r ? `, attempts remaining ${r.attemptsRemaining}` : ''}`);
};
