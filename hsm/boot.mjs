/**
 * Bootstrap of the simulated device from source (a firmware given by path, BKV_BUNDLE=0; the
 * default is the bundle, bin/bundle.mjs), plain JavaScript so Node can start it with no loader:
 * registers tsx's ESM loader (the device's sources are TypeScript), then loads the worker-thread
 * or child-process entry. Used for both modes because on Node 20 `--import tsx` in a worker's
 * execArgv does not reach the worker's module loader, and vitest's own loader is not inherited.
 */
import { isMainThread } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(isMainThread ? './process-main.ts' : './worker-main.ts');
