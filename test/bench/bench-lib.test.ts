/**
 * The benchmarks' own helpers: bench/lib/report.ts renders a report (table, Markdown, SVG) from a
 * minimal result set, the fleet's rows (CPU per member, the leader named) and target included;
 * bench/lib/common.ts reads a process's CPU time and the machine's load; every script answers
 * --help / -h with its docblock and measures nothing (bench/lib/common.ts `args`). (The load
 * generators' sender is client/e2e-seal-node.ts, tested beside the client.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BUSY_OTHER_CORES, machineLoad, procCpuMs } from '../../bench/lib/common.ts';
import { renderMarkdown, renderSvg, renderTable } from '../../bench/lib/report.ts';
import type { Report } from '../../bench/lib/report.ts';

const machineOf = (subsystems: string[]): Report['machine'] => ({
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
  subsystems,
  secondsPerSubsystem: Object.fromEntries(subsystems.map((s) => [s, 1])),
  totalSeconds: 1,
});

describe('bench report', () => {
  it('renders table, Markdown and SVG', () => {
    const r: Report = {
      machine: machineOf(['opaque']),
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

  it('renders the fleet: a panel with its ratios, each member\'s CPU per login with the leader named, the fleet3VsSingle target', () => {
    const group = 'fleet vs single vault, logins over HTTP';
    const r: Report = {
      machine: machineOf(['fleet']),
      results: [
        { subsystem: 'fleet', name: 'fleet: single vault, logins, concurrency 8', group, kind: 'ours', opsPerSec: 40, p50Ms: 150, p99Ms: 300, cpuMsPerLogin: { single: 5.8 } },
        { subsystem: 'fleet', name: 'fleet: fleet of 3, logins, concurrency 8', group, kind: 'ours', opsPerSec: 22, p50Ms: 300, p99Ms: 500, cpuMsPerLogin: { 'member 0': 5.5, 'member 1 (leader)': 7.7, 'member 2': 5.6 } },
      ],
      ratios: { fleet3VsSingle: 0.55, fleet5VsSingle: null },
      missing: { fleet5VsSingle: 'not measured: --members 3' },
      targets: [{ key: 'fleet3VsSingle', what: 'fleet of 3 / single vault', target: '>= 0.5', value: 0.55, met: true, note: '' }],
      figures: {},
      notes: { fleet: ['a note'] },
      failed: [],
    };
    const table = renderTable(r);
    expect(table).toContain('CPU ms per login: member 0 5.5, member 1 (leader) 7.7, member 2 5.6');
    expect(table).toMatch(/fleet5VsSingle\s+-\s+\(not measured: --members 3\)/);
    expect(renderMarkdown(r)).toContain('| `fleet3VsSingle` | 0.55 | &gt;= 0.5 | **MET**');
    const svg = renderSvg(r);
    expect(svg).toContain('the single vault vs fleets of member processes on loopback, by concurrency (fleet3VsSingle 0.55)');
    expect(svg).toContain('>fleet of 3, logins, concurrency 8<'); // the bar's label, without the subsystem prefix
  });
});

describe('bench machine helpers', () => {
  it('procCpuMs reads a live process\'s CPU time and answers NaN for a process that is gone', () => {
    const end = performance.now() + 60;
    while (performance.now() < end); // some CPU time of our own
    const own = process.cpuUsage();
    const ms = procCpuMs(process.pid);
    // /proc counts in 10 ms ticks, each of user and system rounded down
    expect(ms).toBeGreaterThan((own.user + own.system) / 1000 - 40);
    expect(ms).toBeLessThanOrEqual((own.user + own.system) / 1000 + 40);
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    expect(procCpuMs(Number(gone.stdout))).toBeNaN();
  });

  it('machineLoad reports the load and other processes\' cores, and warns exactly when they reach the busy threshold', async () => {
    const m = await machineLoad([], 100);
    expect(m.loadavg).toHaveLength(3);
    expect(m.otherCores).toBeGreaterThanOrEqual(0);
    if (m.otherCores >= BUSY_OTHER_CORES) expect(m.warning).toMatch(/^machine busy: other processes used [\d.]+ of \d+ cores/);
    else expect(m.warning).toBeNull();
  });
});

describe('bench scripts', () => {
  it('answer --help and -h with their usage, and measure nothing', { timeout: 60_000 }, () => {
    for (const [script, flag] of [
      ['bench/enclave.ts', '--help'],
      ['bench/storage.ts', '-h'],
      ['bench/fleet.ts', '--help'],
    ]) {
      // A measuring run takes minutes: it would hit the 30 s timeout and fail the status check.
      const r = spawnSync(process.execPath, ['--import', 'tsx', script!, flag!], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`npx tsx ${script}`);
      expect(r.stdout + r.stderr).not.toMatch(/wrote bench\/results|opening a vault|round 1|records registered/);
    }
  });
});

describe('bench load generator', () => {
  it('opens every answer as the client does (native AES-GCM where it loads): the same answer, and null for a tampered one, another key or another record id', async () => {
    const { decodeAnswer } = await import('../../bench/lib/vault-load.ts');
    const { openResponse, FastSealer } = await import('../../client/e2e-seal-node.ts');
    const { deriveE2eReceiver, openRequestSync } = await import('../../enclave/vault/e2e-open.ts');
    const { loadNativeHpke } = await import('../../enclave/opaque/groups/sodium-native.ts');
    const { encodeMessage } = await import('../../enclave/api/codec.ts');
    const { ClientResponses } = await import('../../enclave/api/messages.ts');
    const { randomBytes } = await import('node:crypto');
    const native = (await loadNativeHpke()).hpke;
    const receiver = deriveE2eReceiver(new Uint8Array(randomBytes(32)), undefined, native);
    const sealer = new FastSealer(receiver.publicKey);
    const recordId = new TextEncoder().encode('alice');
    const answer = { type: 'Fault' as const, code: 7, field: new TextEncoder().encode('recordId') };
    const { message, responseKey } = sealer.seal(recordId, new Uint8Array([1, 2, 3]));
    const opened = openRequestSync(receiver, recordId, message, (n) => new Uint8Array(randomBytes(n)));
    const response = opened.sealResponse(encodeMessage(ClientResponses, answer));
    const p = { recordId, message, responseKey };
    expect(decodeAnswer(p, { sealed: true, response })).toEqual(answer);
    expect(openResponse(responseKey, recordId, response)).not.toBeNull();
    const cases: [string, Parameters<typeof decodeAnswer>[0], Uint8Array][] = [
      ['a flipped tag bit', p, Uint8Array.from(response, (b, i) => (i === response.length - 1 ? b ^ 1 : b))],
      ['a flipped nonce bit', p, Uint8Array.from(response, (b, i) => (i === 0 ? b ^ 1 : b))],
      ['truncated', p, response.subarray(0, 27)],
      ['another key', { ...p, responseKey: new Uint8Array(32) }, response],
      ['another record id', { ...p, recordId: new TextEncoder().encode('bob') }, response],
    ];
    for (const [name, q, r] of cases) {
      expect(decodeAnswer(q, { sealed: true, response: r }), name).toBeNull();
      expect(openResponse(q.responseKey, q.recordId, r), name).toBeNull();
    }
  });
});

describe('bench closed loop (bench/lib/vault-load.ts closedLoop)', () => {
  // A fake vault: each operation answered `delay(i)` ms after it was submitted (unsealed bytes that
  // decode to nothing), the answer times kept.
  const fake = (delay: (i: number) => number) => {
    const answeredAt: number[] = [];
    let i = 0;
    const submit = (_id: Uint8Array, _m: Uint8Array) =>
      new Promise<{ sealed: boolean; response: Uint8Array }>((resolve) => {
        setTimeout(() => {
          answeredAt.push(performance.now());
          resolve({ sealed: false, response: new Uint8Array(1) });
        }, delay(i++));
      });
    return { submit, answeredAt };
  };
  const msgs = (n: number) => Array.from({ length: n }, () => ({ recordId: new Uint8Array(1), message: new Uint8Array(1), responseKey: new Uint8Array(32) }));

  it('with a ramp, counts only the operations answered within the measured interval, over its length, its hooks around it', async () => {
    const { closedLoop } = await import('../../bench/lib/vault-load.ts');
    // Slow answers (40 ms) during the ramp, fast ones (4 ms) after: the ramp's and the drain's
    // operations are not in the rate.
    const t0 = performance.now();
    const { submit, answeredAt } = fake(() => (performance.now() - t0 < 150 ? 40 : 4));
    const calls: [string, number][] = [];
    const o = await closedLoop(submit, msgs(10_000), 4, 300, { rampMs: 150, onStart: () => calls.push(['start', performance.now()]), onEnd: () => calls.push(['end', performance.now()]) });
    expect(calls.map((c) => c[0])).toEqual(['start', 'end']);
    const [from, to] = [calls[0]![1], calls[1]![1]];
    expect(o.ms).toBeGreaterThanOrEqual(290);
    expect(Math.abs(o.ms - (to - from))).toBeLessThan(1);
    const within = answeredAt.filter((t) => t >= from && t < to).length;
    expect(Math.abs(o.ops - within)).toBeLessThanOrEqual(4); // an answer at a boundary may fall either side
    expect(o.latenciesMs.length).toBe(o.ops);
    expect(o.sent - o.ops).toBeGreaterThanOrEqual(answeredAt.filter((t) => t < from).length); // the ramp's operations were sent, not counted
    expect(o.answers.undecodable).toBe(o.sent); // every answer is still checked
    // Counted at 4 ms each on 4 clients: near 1,000/s, where the whole run (ramp and drain) was far slower.
    expect(o.opsPerSec).toBeGreaterThan(700);
    expect((answeredAt.length * 1000) / (answeredAt.at(-1)! - t0)).toBeLessThan(o.opsPerSec * 0.9);
  });

  it('without a ramp, measures the whole run, first submission to last answer; a run out of messages ends the interval', async () => {
    const { closedLoop } = await import('../../bench/lib/vault-load.ts');
    const a = fake(() => 5);
    const hooks: string[] = [];
    const t0 = performance.now();
    const o = await closedLoop(a.submit, msgs(20), 2, 10_000, { onStart: () => hooks.push('start'), onEnd: () => hooks.push('end') });
    expect(hooks).toEqual(['start', 'end']);
    expect(o.ops).toBe(20);
    expect(o.sent).toBe(20);
    expect(o.ms).toBeLessThan(performance.now() - t0 + 1);
    expect(o.ms).toBeGreaterThanOrEqual(45); // ten rounds of 5 ms
    // With a ramp longer than the messages last: the interval starts and ends when they run out.
    const b = fake(() => 5);
    const hooks2: string[] = [];
    const r = await closedLoop(b.submit, msgs(20), 2, 10_000, { rampMs: 5_000, onStart: () => hooks2.push('start'), onEnd: () => hooks2.push('end') });
    expect(hooks2).toEqual(['start', 'end']);
    expect(r.sent).toBe(20);
    expect(r.ops).toBe(0);
    expect(r.ms).toBeLessThan(100);
    await expect(closedLoop(b.submit, msgs(1), 1, 10, { rampMs: -1 })).rejects.toThrow(RangeError);
  });
});

describe('bench/lib/alloc-sites.ts', () => {
  it('counts allocations per login by kind and by first JavaScript frame, leaving out extensions and backing-store objects', async () => {
    const { summarize } = await import('../../bench/lib/alloc-sites.ts');
    const login = (n: number) => `${n} probe_libsodium:crypto_scalarmult_curve25519: (7f00)\n\t 1 crypto_scalarmult_curve25519 (libsodium.so.23)\n`;
    const sample = (head: string, frames: string[]) => `${head}\n${frames.map((f, i) => `\t ${(i + 1).toString(16)} ${f}`).join('\n')}\n`;
    const js = 'JS:*seal file:///x/enclave/vault/record.ts:1:5836';
    const text = [
      login(1),
      login(2),
      // a new array of 350 bytes: its memory, its BackingStore object (left out), its extension (left out)
      sample('3 probe_libc:calloc: (7f01) n=350 sz=1', ['__libc_calloc', 'v8::internal::Heap::AllocateExternalBackingStore', 'v8::internal::BackingStore::Allocate', 'v8::internal::(anonymous namespace)::ConstructBuffer', 'v8::internal::Builtin_ArrayBufferConstructor', js]),
      sample('3 probe_libc:malloc: (7f02) sz=24', ['__libc_malloc', 'v8::internal::(anonymous namespace)::ConstructBuffer', 'v8::internal::Builtin_ArrayBufferConstructor', js]),
      sample('3 probe_libc:malloc: (7f03) sz=64', ['__libc_malloc', 'v8::internal::JSArrayBuffer::EnsureExtension', 'v8::internal::JSArrayBuffer::Attach', js]),
      // a small array moved out
      sample('3 probe_libc:malloc: (7f04) sz=32', ['__libc_malloc', 'v8::internal::JSTypedArray::GetBuffer', 'v8::internal::Runtime_TypedArrayGetBuffer', 'JS:*leafOf file:///x/enclave/vault/record-index.ts:1:685']),
      // a row's blob copied by Node, no JavaScript frame
      sample('3 probe_libc:malloc: (7f05) sz=350', ['__libc_malloc', 'v8::ArrayBuffer::NewBackingStore', 'node::Buffer::Copy']),
    ].join('\n');
    const s = summarize(text);
    expect(s.logins).toBe(2);
    expect(Object.fromEntries(s.byKind)).toEqual({ 'new ArrayBuffer': 0.5, 'moved out': 0.5, 'Buffer copied': 0.5 });
    const seal = s.bySite.find((x) => x.kind === 'new ArrayBuffer')!;
    expect(seal.site).toBe('JS:*seal enclave/vault/record.ts:1:5836');
    expect(seal.sizes).toEqual([[350, 0.5]]);
    expect(s.bySite.find((x) => x.kind === 'moved out')!.site).toContain('leafOf');
    expect(s.bySite.find((x) => x.kind === 'Buffer copied')!.site).toBe('(no JavaScript frame)');
    // Without the login probe there is nothing to divide by.
    expect(summarize(text.replace(/probe_libsodium/g, 'probe_other')).logins).toBe(0);
  });
});
