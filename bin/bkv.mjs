#!/usr/bin/env node
// The `bkv` command: runs host/cli/bkv.ts from the project's bundle (bin/bundle.mjs: plain
// JavaScript, no loader in any thread), or from source through tsx when the bundle is turned off
// (BKV_BUNDLE=0) or does not build.
import { pathToFileURL } from 'node:url';
import { projectBundle } from './bundle.mjs';

const bundle = projectBundle();
if (bundle) {
  await import(pathToFileURL(bundle.cli).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../host/cli/bkv.ts');
}
