/**
 * The client SDK in a browser (issue 5, the client SDK; the README's introduction):
 * test/fixtures/browser-entry.ts is bundled for the browser with esbuild (in memory; any Node
 * built-in in the client path fails the build), served from a loopback HTTP server and run in
 * headless Chromium through playwright-core. The page registers a backup key under a password
 * and recovers it against a real vault: its relay calls back into Node (`page.exposeFunction`,
 * bytes as base64), so every escrow message goes browser -> VaultHost -> enclave worker and
 * back. The vault trusts the test issuer (test/helpers/auth.ts); the test mints the record's token
 * and hands it to the page, which sends it with every operation. It also encrypts and decrypts a backup (format v1, client/backup-file.ts) with
 * WebCrypto, and the two sides open each other's backups.
 *
 * Needs Chromium (test/helpers/chromium.ts). Without it the browser part is skipped with a
 * printed reason, except with CI=true, where it fails.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptBackup, encryptBackup } from '../../client/backup-file.ts';
import { nodeAead } from '../../client/backup-file-node.ts';
import { formatBackupKey, generateBackupKey, parseBackupKey } from '../../client/backup-key.ts';
import { VaultHost } from '../../host/vault/vault-host.ts';
import { testIssuer } from '../helpers/auth.ts';
import { CHROMIUM, CHROMIUM_ARGS, browserRuns, requireChromium } from '../helpers/chromium.ts';
import { bundleForBrowser } from '../package/browser-bundle.mjs';
import type { BrowserRunInput, BrowserRunOutput } from '../fixtures/browser-entry.ts';

const entry = resolve(import.meta.dirname, '../fixtures', 'browser-entry.ts');
const runsInBrowser = browserRuns('test/client/browser.test.ts');

const bundle = (): Promise<{ js: string; inputs: string[] }> => bundleForBrowser(entry);

describe('browser bundle', () => {
  it('the client path bundles for the browser without any Node built-in', async () => {
    const { js, inputs } = await bundle();
    expect(js.length).toBeGreaterThan(10_000);
    expect(inputs.filter((p) => p.startsWith('node:') || /(^|\/)hsm\//.test(p) || /(^|\/)host\//.test(p))).toEqual([]);
    expect(inputs.some((p) => p.endsWith('client/escrow.ts'))).toBe(true);
    expect(inputs.some((p) => p.endsWith('client/backup-file.ts'))).toBe(true);
    expect(inputs.some((p) => p.endsWith('client/backup-file-node.ts'))).toBe(false);
    expect(inputs.some((p) => p.includes('libsodium'))).toBe(false);
  });
});

describe.runIf(runsInBrowser)('browser: escrow and backups in headless Chromium', () => {
  let dataDir: string;
  let vault: VaultHost | undefined;
  let server: Server | undefined;
  let browser: Browser | undefined;
  let origin: string;

  beforeAll(async () => {
    requireChromium();
    const { js } = await bundle();
    server = createServer((req, res) => {
      if (req.url === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><meta charset="utf-8"><title>bkv client</title><link rel="icon" href="data:,"><script type="module" src="/client.js"></script>');
      } else if (req.url === '/client.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
        res.end(js);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((ok) => server!.listen(0, '127.0.0.1', ok));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dataDir = mkdtempSync(join(tmpdir(), 'bkv-browser-'));
    vault = await VaultHost.open({ dataDir, partitions: 1, auth: (await testIssuer()).config });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  afterAll(async () => {
    await browser?.close();
    await vault?.close();
    await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
    if (dataDir) for (const x of [dataDir, `${dataDir}.operator`]) rmSync(x, { recursive: true, force: true });
  });

  it('registers and recovers a key through the vault, and encrypts and decrypts a backup in the page', async () => {
    const page = await browser!.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });

    const relayed: { bytesIn: number; sealed: boolean }[] = [];
    await page.exposeFunction('bkvRelay', async (recordId: string, message: string) => {
      const msg = Buffer.from(message, 'base64');
      const r = await vault!.submit(new Uint8Array(Buffer.from(recordId, 'base64')), new Uint8Array(msg));
      relayed.push({ bytesIn: msg.length, sealed: r.sealed });
      return { sealed: r.sealed, response: Buffer.from(r.response).toString('base64') };
    });

    // A backup made on Node (node:crypto) for the page to open (WebCrypto).
    const nodeKey = generateBackupKey();
    const nodePlain = new TextEncoder().encode('a chat database exported on a server, '.repeat(3000));
    const nodeBackup = await encryptBackup(nodeKey, nodePlain, { chunkSize: 8192, aead: nodeAead });

    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.bkvReady === true, undefined, { timeout: 30_000 });
    const recordId = 'browser-user@example';
    const input: BrowserRunInput = {
      enclavePublicKey: Buffer.from(vault!.info.enclavePublicKey).toString('base64'),
      recordId,
      authToken: await (await testIssuer()).token(recordId),
      password: 'correct horse battery staple',
      wrongPassword: 'correct horse battery stable',
      nodeBackup: Buffer.from(nodeBackup).toString('base64'),
      nodeBackupKey: formatBackupKey(nodeKey, { checked: true }),
    };
    const out: BrowserRunOutput = await page.evaluate((i) => window.bkvRun(i), input);
    await page.close();

    expect(pageErrors).toEqual([]);
    expect(out.userAgent).toMatch(/Chrome\//);
    expect(out.hasProcess).toBe(false);

    // The backup key in the page.
    expect(out.keyText.split('\n')).toHaveLength(5);
    expect(out.parsedBack).toBe(true);
    expect(out.typingError.code).toBe(5051);
    expect(out.typingError.message).toContain('did you mean "0"?');

    // Escrow through the vault: register (2 messages), wrong password (2), right password (2).
    expect(out.registered).toEqual({ attemptsRemaining: 3, attemptLimit: 3 });
    expect(out.wrong).toEqual({ outcome: 'wrong-password', attemptsRemaining: 2 });
    expect(out.recovered).toBe(true);
    expect(out.attemptsAfterRecovery).toBe(3);
    expect(relayed.length).toBe(6);
    expect(relayed.every((r) => r.sealed)).toBe(true);
    const recoveredKey = new Uint8Array(Buffer.from(out.recoveredKey, 'hex'));
    expect(parseBackupKey(out.keyText)).toEqual(recoveredKey);

    // Backups: the page's round trip, its tamper detection, and each side opening the other's.
    expect(out.backupRoundTrip).toBe(true);
    expect(out.tamperedCode).toBe(5007);
    const pagePlain = await decryptBackup(recoveredKey, new Uint8Array(Buffer.from(out.backup, 'base64')), { aead: nodeAead });
    expect(createHash('sha256').update(pagePlain).digest('hex')).toBe(out.plaintextSha256);
    expect(out.nodeBackupSha256).toBe(createHash('sha256').update(nodePlain).digest('hex'));
  });
});
