/**
 * The benchmarks' own helpers: bench/lib/report.ts renders a report (table, Markdown, SVG) from a
 * minimal result set; every script answers --help / -h with its docblock and measures nothing
 * (bench/lib/common.ts `args`). (The load generators' sender is client/e2e-seal-node.ts, tested
 * beside the client.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { renderMarkdown, renderSvg, renderTable } from '../../bench/lib/report.ts';
import type { Report } from '../../bench/lib/report.ts';

describe('bench report', () => {
  it('renders table, Markdown and SVG', () => {
    const r: Report = {
      machine: {
        cpu: 'cpu',
        logicalCores: 2,
        availableParallelism: 2,
        memoryGiB: 4,
        node: 'v20',
        platform: 'linux/x64',
        loadavgAtStart: [1, 1, 1],
        loadavgAtEnd: [1, 1, 1],
        date: new Date(0).toISOString(),
        quick: true,
        subsystems: ['opaque'],
        secondsPerSubsystem: { opaque: 1 },
        totalSeconds: 1,
      },
      results: [
        { subsystem: 'opaque', name: 'opaque: r255 ours/fast: login KE1->KE2', group: 'login KE1->KE2 per core, ristretto255', kind: 'ours', opsPerSec: 1500 },
        { subsystem: 'opaque', name: 'opaque: r255 serenity: login KE1->KE2', group: 'login KE1->KE2 per core, ristretto255', kind: 'peer', opsPerSec: 750 },
        { subsystem: 'opaque', name: 'opaque: r255 floor <4+1>', group: 'login KE1->KE2 per core, ristretto255', kind: 'floor', opsPerSec: 1800 },
      ],
      ratios: { loginVsSerenity: 2, enclaveVsRaw: null },
      missing: { enclaveVsRaw: 'not run' },
      targets: [{ key: 'loginVsSerenity', what: 'x', target: '>= 2', value: 2, met: true, note: '' }],
      figures: {},
      notes: { opaque: ['a note'] },
      failed: [],
    };
    expect(renderTable(r)).toContain('MET');
    expect(renderMarkdown(r)).toContain('| `loginVsSerenity` | 2 | &gt;= 2 | **MET**');
    const svg = renderSvg(r);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('stroke-dasharray'); // the floor line
    expect(svg).toContain('login KE1-&gt;KE2'); // escaped labels
    expect(svg).toContain('floor 1,800/s');
  });
});

describe('bench scripts', () => {
  it('answer --help and -h with their usage, and measure nothing', { timeout: 60_000 }, () => {
    for (const [script, flag] of [
      ['bench/enclave.ts', '--help'],
      ['bench/storage.ts', '-h'],
    ]) {
      // A measuring run takes minutes: it would hit the 30 s timeout and fail the status check.
      const r = spawnSync(process.execPath, ['--import', 'tsx', script!, flag!], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`npx tsx ${script}`);
      expect(r.stdout + r.stderr).not.toMatch(/wrote bench\/results|opening a vault|round 1/);
    }
  });
});
