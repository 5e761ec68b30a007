// Bundles examples/browser-client/app.js with backup-key-vault/client for the browser (esbuild,
// platform browser: a `node:` import reachable from the client would fail the build).
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const r = await build({
  entryPoints: [join(here, 'app.js')],
  outfile: join(here, 'app.bundle.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  metafile: true,
  logLevel: 'error',
});
const bytes = Object.values(r.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(JSON.stringify({ bundle: 'app.bundle.js', bytes }));
