/**
 * The device thread's young-generation cap holds in a process run as `bkv serve` runs
 * (--max-semi-space-size=4, bin/bkv.mjs): host/channel/worker-channel.ts deviceThread clears the
 * flag before the thread starts, so the thread's new space grows to its own cap while the main
 * thread's stays at the flag's 4 MB semi-spaces. Without the clearing, V8 hands the thread the
 * process flag's size and ignores the cap (the control below shows it). The cap here is 24 MB
 * (DEVICE_YOUNG_GENERATION_MB: 8 MB semi-spaces), twice the flag's own size (4 MB semi-spaces), so
 * that the two can be told apart.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'bkv-young-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each thread keeps about 200,000 small objects alive while allocating more, so its new space
// grows to whatever its limit is; then it reports the new space's size in MB.
const CHURN = `
const v8 = require('node:v8');
function newSpaceMb() {
  const keep = [];
  for (let i = 0; i < 3e6; i++) { keep.push({ a: i }); if (keep.length > 200000) keep.length = 0; }
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
}`;

function run(useDeviceThread: boolean): { main: number; thread: number } {
  const script = join(dir, `probe-${useDeviceThread ? 'device' : 'plain'}.ts`);
  const mod = join(process.cwd(), 'host/channel/worker-channel.ts');
  writeFileSync(
    script,
    `import { Worker } from 'node:worker_threads';
import { deviceThread } from ${JSON.stringify(mod)};
${CHURN}
const code = ${JSON.stringify(`${CHURN}\nrequire('node:worker_threads').parentPort.postMessage(newSpaceMb());`)};
const w = ${useDeviceThread ? 'deviceThread(code, { eval: true }, 24)' : 'new Worker(code, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 24 } })'};
w.on('message', async (thread) => {
  const main = newSpaceMb();
  console.log(JSON.stringify({ main, thread }));
  await w.terminate();
});
`,
  );
  const r = spawnSync(process.execPath, ['--max-semi-space-size=4', '--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as { main: number; thread: number };
}

describe('a device thread under --max-semi-space-size=4', () => {
  it('gets its own young-generation cap (24 MB: a 16 MB new space), the main thread keeps the flag\'s', () => {
    const d = run(true);
    expect(d.thread).toBeGreaterThan(8);
    expect(d.main).toBeLessThanOrEqual(8);
  }, 120_000);

  it('control: a worker started plainly with the same resourceLimits gets the flag\'s size instead', () => {
    const p = run(false);
    expect(p.thread).toBeLessThanOrEqual(8);
    expect(p.main).toBeLessThanOrEqual(8);
  }, 120_000);
});
