/**
 * `npm run docs`: the API reference of the package's entry points (typedoc.json) in docs/api/,
 * from their docblocks; any typedoc warning (a broken link or tag) fails it. typedoc reads the
 * sources through TypeScript 5's compiler API, which TypeScript 7 (the project's tsc, a native
 * binary) does not have, so typedoc and its TypeScript live apart in docs/typedoc/, installed
 * from its lock on first use (as bench/peers).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'docs', 'typedoc');
if (!existsSync(join(tools, 'node_modules', 'typedoc', 'package.json'))) {
  execFileSync('npm', ['ci', '--prefix', tools, '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}
try {
  execFileSync(process.execPath, [join(tools, 'node_modules', 'typedoc', 'bin', 'typedoc'), ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
} catch (e) {
  process.exitCode = e.status ?? 1; // typedoc printed why
}
