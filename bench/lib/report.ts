/**
 * The runner's report: a console table, Markdown (bench/results/latest.md) and a hand-written
 * SVG chart (bench/results/latest.svg: operations per second per configuration, one panel per
 * group, peers beside ours, the floor drawn as a dashed line). No dependencies.
 */
import type { BenchResult, Machine } from './common.ts';

export interface Target {
  key: string;
  what: string;
  target: string;
  value: number | null;
  met: boolean | null;
  note: string;
}

export interface Report {
  machine: Machine & { quick: boolean; subsystems: string[]; secondsPerSubsystem: Record<string, number>; totalSeconds: number };
  results: (BenchResult & { subsystem: string })[];
  ratios: Record<string, number | null>;
  missing: Record<string, string>;
  targets: Target[];
  figures: Record<string, Record<string, number>>;
  notes: Record<string, string[]>;
  failed: { subsystem: string; reason: string }[];
}

const fmtOps = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const fmtMs = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const status = (t: Target): string => (t.met === null ? 'MISSING' : t.met ? 'MET' : 'NOT MET');
const val = (v: number | null): string => (v === null ? '-' : String(v));

function groups(r: Report): Map<string, Report['results']> {
  const g = new Map<string, Report['results']>();
  for (const x of r.results) g.set(`${x.subsystem} | ${x.group}`, [...(g.get(`${x.subsystem} | ${x.group}`) ?? []), x]);
  return g;
}

function extra(x: BenchResult): string {
  const parts: string[] = [];
  if (typeof x.meanBatch === 'number') parts.push(`batch ${x.meanBatch}`);
  if (typeof x.unit === 'string') parts.push(x.unit);
  if (typeof x.usPerOp === 'number') parts.push(`${x.usPerOp} us/op`);
  if (typeof x.cpuUsPerOp === 'number') parts.push(`${x.cpuUsPerOp} us CPU/op${x.per ? ` (${x.per})` : ''}`);
  const c = x.cpuCores as { host: number; devices: number; other: number; otherProcesses: number } | undefined;
  if (c) parts.push(`cores: host ${c.host}, devices ${c.devices}, other threads ${c.other}, other processes ${c.otherProcesses}`);
  // bench/fleet.ts: per process (each member, the leader named)
  const perProc = x.cpuMsPerLogin as Record<string, number> | undefined;
  if (perProc && typeof perProc === 'object') parts.push(`CPU ms per login: ${Object.entries(perProc).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return parts.join(', ');
}

function machineText(m: Report['machine']): string {
  return `${m.cpu}, ${m.logicalCores} logical cores (${m.availableParallelism} available), ${m.memoryGiB} GiB, Node ${m.node} ${m.platform}; load average ${m.loadavgAtStart.join(' ')} at start, ${m.loadavgAtEnd?.join(' ') ?? '?'} at end; ${m.date}${m.commit ? `; commit ${m.commit}` : ''}; ${m.quick ? 'QUICK run' : 'full run'}, ${m.totalSeconds} s`;
}

export function renderTable(r: Report): string {
  const out: string[] = [];
  out.push(`machine: ${machineText(r.machine)}`);
  const w = Math.min(92, Math.max(...r.results.map((x) => x.name.length), 20)) + 2;
  out.push(`\n${'configuration'.padEnd(w)}${'ops/s'.padStart(11)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}  notes`);
  for (const [g, xs] of groups(r)) {
    out.push(`[${g}]`);
    for (const x of xs) out.push(`  ${x.name.slice(0, w - 2).padEnd(w - 2)}${fmtOps(x.opsPerSec).padStart(11)}${fmtMs(x.p50Ms).padStart(9)}${fmtMs(x.p99Ms).padStart(9)}  ${extra(x)}`);
  }
  out.push('\nratios:');
  for (const [k, v] of Object.entries(r.ratios)) out.push(`  ${k.padEnd(36)} ${val(v)}${v === null ? `   (${r.missing[k] ?? 'missing'})` : ''}`);
  for (const [s, f] of Object.entries(r.figures)) {
    out.push(`\nfigures (${s}):`);
    for (const [k, v] of Object.entries(f)) out.push(`  ${k.padEnd(36)} ${v}`);
  }
  out.push('\ntargets:');
  for (const t of r.targets) out.push(`  ${status(t).padEnd(8)} ${t.key.padEnd(24)} ${val(t.value).padStart(9)} ${t.target.padEnd(9)} ${t.what}${t.note ? ` (${t.note})` : ''}`);
  if (r.failed.length) out.push(`\nBROKEN: ${r.failed.map((f) => `${f.subsystem}: ${f.reason}`).join('; ')}`);
  return out.join('\n');
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\|/g, '\\|');

export function renderMarkdown(r: Report): string {
  const o: string[] = [];
  o.push(`# Backup Key Vault benchmarks (${r.machine.quick ? 'quick' : 'full'} run)\n`);
  o.push(`Machine: ${esc(machineText(r.machine))}.\n`);
  o.push('Every figure below was measured in this one run; ratios compare contestants measured side by side (interleaved). The load average says how busy the shared machine was.\n');
  o.push('## Targets\n');
  o.push('| target | value | wanted | status | what |');
  o.push('|---|---:|---|---|---|');
  for (const t of r.targets) o.push(`| \`${t.key}\` | ${val(t.value)} | ${esc(t.target)} | **${status(t)}** | ${esc(t.what)}${t.note ? ` (${esc(t.note)})` : ''} |`);
  o.push('\n![operations per second](latest.svg)\n');
  o.push('## Ratios\n');
  o.push('| ratio | value |');
  o.push('|---|---:|');
  for (const [k, v] of Object.entries(r.ratios)) o.push(`| \`${k}\` | ${v === null ? `missing: ${esc(r.missing[k] ?? '')}` : v} |`);
  o.push('\n## Results\n');
  for (const [g, xs] of groups(r)) {
    o.push(`### ${esc(g)}\n`);
    o.push('| configuration | ops/s | p50 ms | p99 ms | notes |');
    o.push('|---|---:|---:|---:|---|');
    for (const x of xs) o.push(`| ${esc(x.name)} | ${fmtOps(x.opsPerSec)} | ${fmtMs(x.p50Ms)} | ${fmtMs(x.p99Ms)} | ${esc(extra(x))} |`);
    o.push('');
  }
  for (const [s, f] of Object.entries(r.figures)) {
    o.push(`## Figures: ${s}\n`);
    o.push('| figure | value |');
    o.push('|---|---:|');
    for (const [k, v] of Object.entries(f)) o.push(`| \`${k}\` | ${v} |`);
    o.push('');
  }
  o.push('## Notes\n');
  for (const [s, ns] of Object.entries(r.notes)) for (const n of ns) o.push(`- ${s}: ${esc(n)}`);
  o.push(`- seconds per subsystem: ${Object.entries(r.machine.secondsPerSubsystem).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (r.failed.length) o.push(`\n**Broken:** ${r.failed.map((f) => `${f.subsystem}: ${esc(f.reason)}`).join('; ')}`);
  return `${o.join('\n')}\n`;
}

// ---- SVG ---------------------------------------------------------------------------------------
const COLORS: Record<string, string> = { ours: '#2563eb', peer: '#ea580c', floor: '#6b7280', other: '#0d9488' };
const x = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The panels: which results each shows (the floor of a panel is drawn as a line, not a bar). */
function panels(r: Report): { title: string; bars: BenchResult[]; floor?: BenchResult }[] {
  const by = (pred: (b: Report['results'][number]) => boolean) => r.results.filter(pred);
  const out: { title: string; bars: BenchResult[]; floor?: BenchResult }[] = [];
  for (const suite of ['ristretto255', 'P-256']) {
    const login = by((b) => b.subsystem === 'opaque' && b.group === `login KE1->KE2 per core, ${suite}`);
    // ristretto255 has two floors (libsodium WebAssembly and native): the chart draws the native one.
    const floor = login.find((b) => b.kind === 'floor' && b.name.includes('sodium-native')) ?? login.find((b) => b.kind === 'floor');
    const bars = login.filter((b) => b.kind !== 'floor');
    const pre = suite === 'P-256' ? 'p256' : '';
    const vsPeer = r.ratios[pre ? 'p256LoginVsSerenityP256' : 'loginVsSerenity'];
    const vsFloor = pre ? r.ratios.p256LoginVsFloor : (r.ratios.loginVsNativeFloor ?? r.ratios.loginVsFloor);
    const ann = [vsPeer != null ? `ours/peer ${vsPeer}x` : '', vsFloor != null ? `ours/floor ${vsFloor}` : ''].filter(Boolean).join(', ');
    if (bars.length) out.push({ title: `Server login (KE1 to KE2) per core, ${suite}${ann ? ` (${ann})` : ''}; dashed line: the floor, 4 + 1 multiplications`, bars, ...(floor && { floor }) });
    const reg = by((b) => b.subsystem === 'opaque' && b.group === `registration response per core, ${suite}`);
    if (reg.length) out.push({ title: `OPAQUE registration response per core, ${suite}`, bars: reg });
  }
  const all = by((b) => b.subsystem === 'enclave' && b.group === 'login, all cores (wall clock)');
  const evr = r.ratios.enclaveVsRaw;
  if (all.length) out.push({ title: `Login on all cores: raw server vs the enclave path (durable charging, group commit) by concurrency${evr != null ? ` (enclaveVsRaw ${evr})` : ''}`, bars: all });
  const scal = by((b) => b.subsystem === 'enclave' && /^login, \d+ partition/.test(b.group));
  if (scal.length) out.push({ title: 'Enclave login with fewer partitions (scaling)', bars: scal });
  const other = by((b) => b.subsystem === 'enclave' && (b.group.startsWith('registration') || b.group.startsWith('KE3')));
  if (other.length) out.push({ title: 'Registration and KE3 check: raw vs the enclave path', bars: other });
  const svc = by((b) => b.subsystem === 'service');
  if (svc.length) out.push({ title: 'End to end over HTTP (bkv serve, SDK client): status ops/s and logins/s', bars: svc });
  const fleet = by((b) => b.subsystem === 'fleet');
  const fr = ['fleet3VsSingle', 'fleet5VsSingle'].filter((k) => r.ratios[k] != null).map((k) => `${k} ${r.ratios[k]}`);
  if (fleet.length) out.push({ title: `Logins over HTTP: the single vault vs fleets of member processes on loopback, by concurrency${fr.length ? ` (${fr.join(', ')})` : ''}`, bars: fleet });
  const tok = by((b) => b.subsystem === 'tokens' && b.group.startsWith('login'));
  const sve = r.ratios.softhsmVsEmulator;
  if (tok.length) out.push({ title: `Enclave login by token: emulator vs SoftHSM2${sve != null ? ` (softhsmVsEmulator ${sve})` : ''}`, bars: tok });
  const st = by((b) => b.subsystem === 'storage' && b.group.startsWith('login'));
  if (st.length) out.push({ title: 'Enclave login by store: SQLite vs PostgreSQL', bars: st });
  const st2 = by((b) => b.subsystem === 'storage' && b.group === 'store: applyBatch 32 writes');
  if (st2.length) out.push({ title: 'Store: applyBatch of 32 writes (batches/s)', bars: st2 });
  return out;
}

export function renderSvg(r: Report): string {
  const W = 1000;
  const LABEL = 430;
  const BAR_W = W - LABEL - 210;
  const BAR_H = 16;
  const GAP = 4;
  const ps = panels(r);
  const parts: string[] = [];
  let y = 58;
  for (const p of ps) {
    const max = Math.max(...p.bars.map((b) => b.opsPerSec), p.floor?.opsPerSec ?? 0) * 1.05 || 1;
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${x(p.title)}</text>`);
    y += 8;
    const top = y;
    for (const b of p.bars) {
      const w = Math.max(1, (b.opsPerSec / max) * BAR_W);
      const label = b.name.replace(/^(opaque|enclave|service|fleet|tokens|storage|memory): /, '');
      parts.push(`<text x="${LABEL - 6}" y="${y + BAR_H - 4}" font-size="11" text-anchor="end">${x(label.length > 70 ? `${label.slice(0, 67)}...` : label)}</text>`);
      parts.push(`<rect x="${LABEL}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${COLORS[b.kind ?? 'other']}"><title>${x(`${b.name}: ${fmtOps(b.opsPerSec)} ops/s`)}</title></rect>`);
      const lat = b.p50Ms !== undefined ? `  p50 ${fmtMs(b.p50Ms)} / p99 ${fmtMs(b.p99Ms)} ms` : '';
      parts.push(`<text x="${LABEL + w + 4}" y="${y + BAR_H - 4}" font-size="11">${x(fmtOps(b.opsPerSec))}${x(lat)}</text>`);
      y += BAR_H + GAP;
    }
    if (p.floor) {
      const fx = LABEL + (p.floor.opsPerSec / max) * BAR_W;
      parts.push(`<line x1="${fx.toFixed(1)}" y1="${top - 4}" x2="${fx.toFixed(1)}" y2="${y}" stroke="${COLORS.floor}" stroke-width="2" stroke-dasharray="5,3"/>`);
      parts.push(`<text x="${fx.toFixed(1)}" y="${y + 11}" font-size="10" text-anchor="middle" fill="${COLORS.floor}">floor ${x(fmtOps(p.floor.opsPerSec))}/s</text>`);
      y += 12;
    }
    y += 22;
  }
  const legend = [
    ['ours', 'ours'],
    ['peer', 'peer (@serenity-kit, opaque-ke in WebAssembly)'],
    ['floor', 'floor'],
    ['other', 'other'],
  ]
    .map(([k, t], i) => `<rect x="${[10, 80, 400, 470][i]}" y="30" width="12" height="12" fill="${COLORS[k!]}"/><text x="${[26, 96, 416, 486][i]}" y="40" font-size="11">${x(t!)}</text>`)
    .join('');
  const m = r.machine;
  const head = `<text x="10" y="18" font-size="13">${x(`Operations per second (${m.quick ? 'quick' : 'full'} run) on ${m.cpu}, ${m.logicalCores} cores, Node ${m.node}; load ${m.loadavgAtStart[0]}..${m.loadavgAtEnd?.[0] ?? '?'}; ${m.date.slice(0, 16)}`)}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 10}" viewBox="0 0 ${W} ${y + 10}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${head}
${legend}
${parts.join('\n')}
</svg>
`;
}
