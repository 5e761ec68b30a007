// Run by test/package.test.ts from plain Node in a project that installed the packed tarball:
// test/package/browser-entry.mjs, which imports `backup-key-vault/client`, is bundled for the
// browser by esbuild (the consumer's own bundler) from the installed package, served from an
// app's origin and run in headless Chromium through playwright-core (BKV_CHROMIUM,
// BKV_CHROMIUM_ARGS: test/helpers/chromium.ts) against the vault service
// (`backup-key-vault/service`, development-mode tokens) on another origin, which allows the
// app's origin (CORS, `corsOrigins`); a page from a third origin is refused by the browser.
// Prints one JSON line: the bundle's inputs and the page's results.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { bundleForBrowser } from './browser-bundle.mjs';
import { createVaultHandler, defaultLogger, mintToken, readIssuerPrivate, resolveServeAuth } from 'backup-key-vault/service';

const { js, inputs } = await bundleForBrowser(join(import.meta.dirname, 'browser-entry.mjs'));

const scratch = mkdtempSync(join(tmpdir(), 'bkv-pkg-browser-'));
const dataDir = join(scratch, 'data');
const auth = await resolveServeAuth(dataDir, { issuerFiles: [] });
const issuer = readIssuerPrivate(auth.devKeyFile);

/** A page server (the app's origin): the page, its bundle, and the app's token route. */
async function pageServer() {
  const server = createServer((req, res) => {
    const token = /^\/token\/([^/?]+)$/.exec(req.url ?? '');
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><meta charset="utf-8"><title>bkv</title><link rel="icon" href="data:,"><script type="module" src="/client.js"></script>');
    } else if (req.url === '/client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(js);
    } else if (req.method === 'POST' && token) {
      void mintToken(issuer, { subject: decodeURIComponent(token[1]), audience: auth.config.audience, ttlS: 300 }).then((t) => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: t }));
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

// The page's origin and the vault's differ (another port): the vault allows the app's origin
// only (corsOrigins), and a page from another origin is refused by the browser.
const app = await pageServer();
const stranger = await pageServer();
const handler = await createVaultHandler({
  dataDir, partitions: 1, tokenPins: { operatorDir: join(scratch, 'operator') }, auth: auth.config, authMode: 'development',
  rateLimits: { record: { perMinute: 60, burst: 20 } }, logger: defaultLogger('warn'), corsOrigins: [app.origin],
});
const server = createServer(handler.listener);
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const vaultUrl = `http://127.0.0.1:${server.address().port}`;

let browser;
try {
  browser = await chromium.launch({ executablePath: process.env.BKV_CHROMIUM, args: JSON.parse(process.env.BKV_CHROMIUM_ARGS ?? '[]'), headless: true });
  const open = async (origin) => {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.bkvReady === true, undefined, { timeout: 30_000 });
    return page;
  };
  const page = await open(app.origin);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const out = await page.evaluate((url) => window.bkvRun(url), vaultUrl);
  const other = await open(stranger.origin);
  const strangerConsole = [];
  other.on('console', (m) => strangerConsole.push(m.text()));
  const strangerError = await other.evaluate((url) => window.bkvRun(url).then(() => 'no error', (e) => String(e?.message ?? e)), vaultUrl);
  console.log(JSON.stringify({ inputs, bytes: js.length, crossOrigin: app.origin !== vaultUrl, pageErrors, strangerError, strangerBlockedByCors: strangerConsole.some((t) => /blocked by CORS policy/.test(t)), ...out }));
} finally {
  await browser?.close();
  const drained = handler.drain(5_000);
  for (const s of [server, app.server, stranger.server]) {
    s.close();
    s.closeAllConnections();
  }
  await drained;
  await handler.close();
  rmSync(scratch, { recursive: true, force: true });
}
