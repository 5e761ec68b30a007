/**
 * The benchmarks' own helpers must measure the product, not something else:
 * - bench/lib/hpke.ts FastSealer seals exactly what client/e2e-seal.ts `openRequest` opens, and
 *   `openResponse` opens what `sealResponse` seals (the load generator's messages are real), and
 *   `fastSealRequest` does both in the SDK's `sealRequest` shape (the soak's client);
 * - bench/lib/report.ts renders a report (table, Markdown, SVG) from a minimal result set.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveE2eKeyPair, openRequest } from '../../client/e2e-seal.ts';
import { FastSealer, fastSealRequest, openResponse } from '../../bench/lib/hpke.ts';
import { renderMarkdown, renderSvg, renderTable } from '../../bench/lib/report.ts';
import type { Report } from '../../bench/lib/report.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const te = new TextEncoder();

describe('bench HPKE helpers', () => {
  it('FastSealer messages open in the enclave, and its answers open back', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const sealer = new FastSealer(kp.publicKey);
    for (let i = 0; i < 5; i++) {
      const id = te.encode(`user-${i}`);
      const req = rnd(10 + i * 37);
      const s = sealer.seal(id, req);
      const opened = await openRequest(kp, id, s.message, rnd);
      expect(Buffer.from(opened.request).equals(Buffer.from(req))).toBe(true);
      const answer = rnd(50);
      const sealed = await opened.sealResponse(answer);
      expect(Buffer.from(openResponse(s.responseKey, id, sealed)!).equals(Buffer.from(answer))).toBe(true);
      expect(openResponse(s.responseKey, te.encode('someone else'), sealed)).toBeNull();
    }
  });

  it('the record id is bound: a message for one id does not open for another', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const s = new FastSealer(kp.publicKey).seal(te.encode('a'), rnd(40));
    await expect(openRequest(kp, te.encode('b'), s.message, rnd)).rejects.toThrow();
  });

  it('fastSealRequest: what it seals opens in the enclave; a changed answer or another enclave key is refused', async () => {
    const kp = await deriveE2eKeyPair(rnd(32));
    const seal = fastSealRequest(kp.publicKey);
    const id = te.encode('user-x');
    const req = rnd(77);
    const s = await seal(kp.publicKey, id, req);
    const opened = await openRequest(kp, id, s.message, rnd);
    expect(Buffer.from(opened.request).equals(Buffer.from(req))).toBe(true);
    const answer = rnd(64);
    const sealed = await opened.sealResponse(answer);
    expect(Buffer.from(await s.openResponse(sealed)).equals(Buffer.from(answer))).toBe(true);
    const flipped = sealed.slice();
    flipped[20]! ^= 1;
    await expect(s.openResponse(flipped)).rejects.toThrow(/does not open/);
    const other = await deriveE2eKeyPair(rnd(32));
    await expect(seal(other.publicKey, id, req)).rejects.toThrow(/another enclave key/);
  });
});

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
