// One esbuild bundle for the browser, in memory: the browser tests' build
// (test/client/browser.test.ts from this checkout's sources, test/package/browser.mjs from the
// installed tarball). platform 'browser': a `node:` import reachable from `entry` fails the build.
import { build } from 'esbuild';

/** Bundles `entry`; returns the JavaScript and the input paths (relative to the working folder). */
export async function bundleForBrowser(entry) {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    metafile: true,
    logLevel: 'silent',
  });
  return { js: r.outputFiles[0].text, inputs: Object.keys(r.metafile.inputs) };
}
