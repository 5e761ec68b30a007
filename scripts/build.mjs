/**
 * `npm run build` (and `prepare`): the package's JavaScript, declaration files and source maps
 * in dist/ (tsconfig.build.json; `rewriteRelativeImportExtensions` turns the sources' `.ts`
 * specifiers into `.js`), plus bin/bundle.mjs, which the compiled channel and SoftHSM2 code import
 * (plain JavaScript, so tsc does not emit it). Plain JavaScript: it runs before anything is built.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(join(root, 'package.json')).resolve('typescript/package.json')), 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
mkdirSync(join(dist, 'bin'), { recursive: true });
copyFileSync(join(root, 'bin', 'bundle.mjs'), join(dist, 'bin', 'bundle.mjs'));
