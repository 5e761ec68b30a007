#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=40
// The `bkv` command: runs host/cli/bkv.ts from the project's bundle (bin/bundle.mjs: plain
// JavaScript, no loader in any thread), or from source through tsx when the bundle is turned off
// (BKV_BUNDLE=0) or does not build. An installed package (no sources) runs dist/ (npm run build).
// --max-semi-space-size=4 (MB; V8's default lets it grow to 16): the main thread's young
// generation stays small under load; --heap-growing-percent=40: every heap's old generation grows
// to 1.4 times its live size between full collections (bench/memory.ts measures the service's RSS;
// figures in bench/README.md). The flags are BKV_NODE_FLAGS in
// bin/bundle.mjs; the npm scripts and the benches pass the same (test/host/cli/bundle.test.ts checks).
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// An installed package ships no sources: it runs its compiled dist/ (npm run build), and
// imports neither the bundler (./bundle.mjs, esbuild) nor tsx: both are devDependencies.
const fromSource = existsSync(new URL('../host/cli/bkv.ts', import.meta.url));
const bundle = fromSource ? (await import('./bundle.mjs')).projectBundle() : undefined;
if (!fromSource) {
  await import('../dist/host/cli/bkv.js');
} else if (bundle) {
  await import(pathToFileURL(bundle.cli).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../host/cli/bkv.ts');
}
