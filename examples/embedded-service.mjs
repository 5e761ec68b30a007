#!/usr/bin/env node
// An embedded vault service in plain Node: the vault's HTTP handler mounted in your own
// node:http server next to your own routes, with a development-mode issuer whose tokens your
// service hands to its signed-in users (one token per record id, short-lived).
//
//   node examples/embedded-service.mjs [--data DIR] [--port N] [--cors-origin ORIGIN ...] [--once]
//
// --cors-origin lets a page from that origin (examples/browser-client, served by any static
// server) call the vault and this service's token route across origins (CORS); repeatable.
//
// Serves until Ctrl-C; with --once it escrows and recovers one key through itself with
// backup-key-vault/client, prints the result as JSON, and stops (CI runs it so).
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createVaultHandler, defaultLogger, mintToken, readIssuerPrivate, resolveServeAuth } from 'backup-key-vault/service';
import { DEFAULT_OPAQUE_CONTEXT, EscrowClient, fetchVaultInfo, generateBackupKey, httpRelay, portableSuite } from 'backup-key-vault/client';

const { values: args } = parseArgs({
  options: { data: { type: 'string' }, port: { type: 'string', default: '0' }, 'cors-origin': { type: 'string', multiple: true, default: [] }, once: { type: 'boolean', default: false } },
});
const corsOrigins = args['cors-origin'];
const scratch = args.data === undefined ? mkdtempSync(join(tmpdir(), 'bkv-example-')) : undefined;
const dataDir = args.data ?? join(scratch, 'data');

// Development mode, as `bkv serve` without --auth-issuer: the issuer key is kept in the data
// folder. In production, give your issuer's public key files (`issuerFiles`) and keep the
// private key in your service only.
const auth = await resolveServeAuth(dataDir, { issuerFiles: [] });
const issuer = readIssuerPrivate(auth.devKeyFile);
const handler = await createVaultHandler({
  dataDir,
  partitions: 1,
  tokenPins: { operatorDir: `${dataDir}.operator` },
  auth: auth.config,
  authMode: 'development',
  rateLimits: { record: { perMinute: 10, burst: 5 } },
  logger: defaultLogger(args.once ? 'warn' : 'info'),
  corsOrigins, // the vault's routes answer these origins' preflights and allow them
});

const server = createServer((req, res) => {
  // Your service's own route: a token for the signed-in user's record id (here: any id, no sign-in).
  const m = /^\/token\/([^/?]+)$/.exec(req.url ?? '');
  if (req.method === 'POST' && m) {
    // Your own routes set their own CORS headers (a simple POST: no preflight).
    if (corsOrigins.includes(req.headers.origin)) res.setHeader('access-control-allow-origin', req.headers.origin).setHeader('vary', 'Origin');
    void mintToken(issuer, { subject: decodeURIComponent(m[1]), audience: auth.config.audience, ttlS: 300 }).then((token) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token }));
    });
    return;
  }
  handler.listener(req, res); // /v1/*, /health, /metrics
});
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}`;

async function stop() {
  const drained = handler.drain(5_000);
  server.close();
  server.closeIdleConnections();
  await drained;
  server.closeAllConnections();
  await handler.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true }); // the data folder and its operator folder (token PINs)
}

if (!args.once) {
  console.log(`vault service at ${url} (POST /token/{recordId} for a token); Ctrl-C stops`);
  process.once('SIGINT', () => void stop());
} else {
  // A client as an app would run it, over HTTP only.
  const info = await fetchVaultInfo(url);
  const client = new EscrowClient({
    relay: httpRelay({ baseUrl: url }),
    enclavePublicKey: info.enclavePublicKey,
    suite: portableSuite('ristretto255-SHA512'),
    context: DEFAULT_OPAQUE_CONTEXT,
    rng: (n) => crypto.getRandomValues(new Uint8Array(n)),
    auth: async (recordId) => {
      const r = await fetch(`${url}/token/${encodeURIComponent(new TextDecoder().decode(recordId))}`, { method: 'POST' });
      return (await r.json()).token;
    },
  });
  const te = new TextEncoder();
  const id = te.encode('alice@example');
  const backupKey = generateBackupKey();
  const reg = await client.register(id, te.encode('correct horse battery staple'), backupKey, { attemptLimit: 5 });
  const rec = await client.recover(id, te.encode('correct horse battery staple'));
  const health = await (await fetch(`${url}/health`)).json();
  console.log(JSON.stringify({
    url, health: health.status, auth: health.auth, attemptsRemaining: reg.attemptsRemaining,
    recovered: rec.ok && Buffer.from(rec.backupKey).equals(Buffer.from(backupKey)),
  }));
  await stop();
}
