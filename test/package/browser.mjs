// Run by test/package.test.ts from plain Node in a project that installed the packed tarball:
// test/package/browser-entry.mjs, which imports `backup-key-vault/client`, is bundled for the
// browser by esbuild (the consumer's own bundler) from the installed package, served next to the
// vault service (`backup-key-vault/service`, development-mode tokens) and run in headless
// Chromium through playwright-core (BKV_CHROMIUM, BKV_CHROMIUM_ARGS: test/helpers/chromium.ts).
// Prints one JSON line: the bundle's inputs and the page's results.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { createVaultHandler, defaultLogger, mintToken, readIssuerPrivate, resolveServeAuth } from 'backup-key-vault/service';

const r = await build({
  entryPoints: [join(import.meta.dirname, 'browser-entry.mjs')],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  metafile: true,
  logLevel: 'error',
});
const js = r.outputFiles[0].text;
const inputs = Object.keys(r.metafile.inputs);

const scratch = mkdtempSync(join(tmpdir(), 'bkv-pkg-browser-'));
const dataDir = join(scratch, 'data');
const auth = await resolveServeAuth(dataDir, { issuerFiles: [] });
const issuer = readIssuerPrivate(auth.devKeyFile);
const handler = await createVaultHandler({ dataDir, partitions: 1, tokenPins: { operatorDir: join(scratch, 'operator') }, auth: auth.config, authMode: 'development', rateLimits: { record: { perMinute: 60, burst: 20 } }, logger: defaultLogger('warn') });

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
    handler.listener(req, res);
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}`;

let browser;
try {
  browser = await chromium.launch({ executablePath: process.env.BKV_CHROMIUM, args: JSON.parse(process.env.BKV_CHROMIUM_ARGS ?? '[]'), headless: true });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.bkvReady === true, undefined, { timeout: 30_000 });
  const out = await page.evaluate((url) => window.bkvRun(url), origin);
  console.log(JSON.stringify({ inputs, bytes: js.length, pageErrors, ...out }));
} finally {
  await browser?.close();
  const drained = handler.drain(5_000);
  server.close();
  server.closeAllConnections();
  await drained;
  await handler.close();
  rmSync(scratch, { recursive: true, force: true });
}
