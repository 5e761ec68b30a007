// The page of test/package/browser.mjs: `backup-key-vault/client` from the installed tarball, as
// a web app imports it, bundled for the browser by esbuild. `window.bkvRun(vaultUrl)` escrows a
// backup key, tries a wrong and the right password over HTTP (httpRelay, fetch), and opens a
// backup it made. Tokens come from the page's service (POST /token/{recordId}).
import {
  DEFAULT_KSF_BOUNDS, DEFAULT_OPAQUE_CONTEXT, EscrowClient, argon2idKsf, decryptBackup, encryptBackup, fetchVaultInfo, generateBackupKey, httpRelay, portableSuite,
} from 'backup-key-vault/client';

const te = new TextEncoder();
const SMALL_ARGON2ID = { t: 1, m: 1024, p: 1 };
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

window.bkvRun = async (vaultUrl) => {
  const info = await fetchVaultInfo(vaultUrl);
  const client = new EscrowClient({
    relay: httpRelay({ baseUrl: vaultUrl }),
    enclavePublicKey: info.enclavePublicKey,
    suite: portableSuite('ristretto255-SHA512'),
    context: DEFAULT_OPAQUE_CONTEXT,
    rng: (n) => crypto.getRandomValues(new Uint8Array(n)),
    ksf: argon2idKsf(SMALL_ARGON2ID),
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, min: SMALL_ARGON2ID },
    auth: async (recordId) => (await (await fetch(`/token/${encodeURIComponent(new TextDecoder().decode(recordId))}`, { method: 'POST' })).json()).token,
  });
  const id = te.encode('browser@example');
  const key = generateBackupKey();
  const reg = await client.register(id, te.encode('correct horse battery staple'), key, { attemptLimit: 3 });
  const wrong = await client.recover(id, te.encode('correct horse battery stable'));
  const right = await client.recover(id, te.encode('correct horse battery staple'));
  const plain = te.encode('a chat database, '.repeat(1000));
  const opened = await decryptBackup(key, await encryptBackup(key, plain, { chunkSize: 4096 }));
  return {
    userAgent: navigator.userAgent,
    hasProcess: typeof globalThis.process !== 'undefined',
    registered: reg.attemptsRemaining,
    wrong: { outcome: wrong.outcome, attemptsRemaining: wrong.attemptsRemaining },
    recovered: right.ok && hex(right.backupKey) === hex(key),
    backupRoundTrip: hex(opened) === hex(plain),
  };
};
window.bkvReady = true;
