/**
 * Native allocations per enclave login, by JavaScript site: reads `perf script` output of uprobes
 * on glibc's malloc and calloc and on libsodium's crypto_scalarmult_curve25519 (the envelope's
 * X25519: exactly one per enclave login, so its count is the login count), and prints, per login,
 * the allocations by kind (a new ArrayBuffer, a small array moved out to an ArrayBuffer of its own,
 * a Buffer copied by Node's C++, other) and by the first JavaScript frame of each sample. An
 * ArrayBuffer's extension (one more allocation per ArrayBuffer) is left out of the counts.
 * bench/README.md 2026-12-06 (evening) has the figures this gave. Linux, root, `perf` installed:
 *
 *   perf probe -x /lib/x86_64-linux-gnu/libc.so.6 -a 'malloc sz=%di:u64'
 *   perf probe -x /lib/x86_64-linux-gnu/libc.so.6 -a 'calloc n=%di:u64 sz=%si:u64'
 *   perf probe -x /usr/lib/x86_64-linux-gnu/libsodium.so.23 -a crypto_scalarmult_curve25519
 *   node --perf-basic-prof --import tsx bench/lib/device-profile.ts --ms 4000 --records 4096 --concurrency 256 &
 *   # once its window has started (after registration):
 *   perf record -e probe_libc:malloc -e probe_libc:calloc -e probe_libsodium:crypto_scalarmult_curve25519 -g -a -o F.data -- sleep 1
 *   perf script -i F.data --comm node -F tid,event,trace,ip,sym > F.txt
 *   npx tsx bench/lib/alloc-sites.ts F.txt
 *   perf probe -d 'probe_libc:*' -d 'probe_libsodium:*'
 */
import { readFileSync } from 'node:fs';

export interface AllocSummary {
  logins: number;
  /** Allocations per login by kind. */
  byKind: Map<string, number>;
  /** Allocations per login by (first JavaScript frame, kind), with the commonest sizes. */
  bySite: { site: string; kind: string; perLogin: number; sizes: [number, number][] }[];
}

/** The kind of one allocation from its native frames (innermost first); null: an ArrayBuffer's extension or its C++ object (counted with its memory). */
export function kindOf(frames: string[]): string | null {
  const top = frames.slice(0, 8).join(' ');
  if (top.includes('GetBuffer')) return 'moved out';
  if (top.includes('EnsureExtension')) return null;
  if (top.includes('Buffer::Copy')) return 'Buffer copied';
  if (top.includes('ArrayBufferConstructor')) {
    // The BackingStore object itself (allocated in ConstructBuffer): counted through its memory.
    if (!(frames[0] ?? '').includes('AllocateExternal') && ((frames[0] ?? '').includes('ConstructBuffer') || (frames[1] ?? '').includes('ConstructBuffer'))) return null;
    return 'new ArrayBuffer';
  }
  if (top.includes('BackingStore::Allocate')) return 'new ArrayBuffer';
  if (top.includes('NewBackingStore')) return "Node's C++ result";
  return 'other';
}

/** Summarizes `perf script -F tid,event,trace,ip,sym` text. */
export function summarize(text: string): AllocSummary {
  let logins = 0;
  const kinds = new Map<string, number>();
  const sites = new Map<string, { site: string; kind: string; n: number; sizes: Map<number, number> }>();
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.trim().split('\n');
    const head = lines[0] ?? '';
    if (head.includes('probe_libsodium:crypto_scalarmult_curve25519')) {
      logins++;
      continue;
    }
    if (!head.includes('probe_libc:')) continue;
    const sz = /sz=(\d+)/.exec(head);
    const n = /\bn=(\d+)/.exec(head);
    const size = (sz ? Number(sz[1]) : 0) * (n ? Number(n[1]) : 1);
    // A frame line: "addr symbol (dso)"; keep the symbol.
    const frames = lines.slice(1).map((l) => l.trim().split(/\s+/).slice(1).join(' '));
    const kind = kindOf(frames);
    if (kind === null) continue;
    const js = frames.find((f) => f.startsWith('JS:'));
    const site = js ? js.replace(/ file:\/\/\S*?\/((?:enclave|host|hsm|bench|client)\/)/, ' $1').replace(/\s*\(.*\)$/, '') : '(no JavaScript frame)';
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    const key = `${site}\u0000${kind}`;
    let s = sites.get(key);
    if (!s) sites.set(key, (s = { site, kind, n: 0, sizes: new Map() }));
    s.n++;
    s.sizes.set(size, (s.sizes.get(size) ?? 0) + 1);
  }
  const per = (x: number) => (logins > 0 ? x / logins : NaN);
  return {
    logins,
    byKind: new Map([...kinds].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, per(v)])),
    bySite: [...sites.values()]
      .sort((a, b) => b.n - a.n)
      .map((s) => ({ site: s.site, kind: s.kind, perLogin: per(s.n), sizes: [...s.sizes].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([z, c]) => [z, per(c)] as [number, number]) })),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file || file === '--help' || file === '-h') {
    console.log('usage: npx tsx bench/lib/alloc-sites.ts FILE.txt   (perf script output; the steps are in this file\'s header)');
    process.exit(file ? 0 : 2);
  }
  const s = summarize(readFileSync(file, 'utf8'));
  if (s.logins === 0) {
    console.error('no crypto_scalarmult_curve25519 samples: no logins counted (was the libsodium probe recorded?)');
    process.exit(1);
  }
  let total = 0;
  for (const v of s.byKind.values()) total += v;
  console.log(`${s.logins} logins; ${total.toFixed(1)} allocations per login: ${[...s.byKind].map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  for (const x of s.bySite) {
    if (x.perLogin < 0.2) break;
    console.log(`  ${x.perLogin.toFixed(2).padStart(6)}  ${x.site.slice(0, 70).padEnd(70)} ${x.kind.padEnd(18)} ${x.sizes.map(([z, c]) => `${z} B x${c.toFixed(1)}`).join(', ')}`);
  }
}
