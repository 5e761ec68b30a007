/**
 * Interleaved A/B of single steps of the enclave path between two source trees (two commits as
 * git worktrees), in one process: each step's module is imported from both trees and the two
 * are timed alternately (A, B, B, A, ...), CPU time of the process per call, median of the
 * rounds, a full garbage collection before each measurement (as bench/breakdown.ts). For a cut
 * inside one step, where bench/lib/tree-ab.ts (the whole login, two processes) is too coarse to
 * show it on a shared machine. Steps:
 *   nvram  FileNvram.write of a 226-byte state, twice (a batch's intent and commit), 256-byte region
 *   audit  AuditLog.next with the record hash (one event per charged guess)
 *
 *   npx tsx bench/lib/step-ab.ts --a DIR --b DIR [--rounds 8] [--ms 200] [--steps nvram,audit]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { args, machine, machineLine } from './common.ts';
import { median } from './stats.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const A = args();
const dirA = A.get('a') ?? '';
const dirB = A.get('b') ?? '';
if (!dirA || !dirB) {
  console.error('usage: npx tsx bench/lib/step-ab.ts --a DIR --b DIR [--rounds 8] [--ms 200] [--steps nvram,audit]');
  process.exit(2);
}
const ROUNDS = A.num('rounds', 8);
const MS = A.num('ms', 200);
const STEPS = (A.get('steps') ?? 'nvram,audit').split(',');
const tmp = mkdtempSync(join(tmpdir(), 'bkv-step-ab-'));
const load = (dir: string, file: string) => import(pathToFileURL(join(resolve(dir), file)).href);

type Fn = () => unknown;
async function fixtures(dir: string, tag: string): Promise<Record<string, Fn>> {
  const out: Record<string, Fn> = {};
  if (STEPS.includes('nvram')) {
    const { FileNvram } = await load(dir, 'hsm/nvram-file.ts');
    const nv = new FileNvram(join(tmp, `nvram-${tag}.bin`), { size: 256 });
    const state = new Uint8Array(226).fill(7);
    nv.write(state);
    out.nvram = () => {
      nv.write(state);
      nv.write(state);
    };
  }
  if (STEPS.includes('audit')) {
    const { AuditLog } = await load(dir, 'enclave/vault/audit.ts');
    const { createSodiumSha256 } = await load(dir, 'enclave/opaque/hash-sodium.ts');
    const audit = new AuditLog(new Uint8Array(randomBytes(32)), new Uint8Array(randomBytes(32)), await createSodiumSha256());
    const rid = new TextEncoder().encode('user-0001@example.org');
    const head = new Uint8Array(32);
    const nonce = new Uint8Array(randomBytes(16));
    let i = 0;
    out.audit = () => audit.next(i++, head, 0, nonce, 2, audit.recordHash(rid), 9);
  }
  return out;
}

function measure(fn: Fn): number {
  gc();
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < MS || n < 3) {
    fn();
    n++;
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

const fa = await fixtures(dirA, 'a');
const fb = await fixtures(dirB, 'b');
const cpu: Record<string, { A: number[]; B: number[] }> = {};
for (const s of STEPS) cpu[s] = { A: [], B: [] };
for (const s of STEPS) {
  measure(fa[s]!); // warm-up
  measure(fb[s]!);
}
for (let r = 0; r < ROUNDS; r++) {
  const order: ('A' | 'B')[] = r % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
  for (const s of STEPS) for (const w of order) cpu[s]![w].push(measure((w === 'A' ? fa : fb)[s]!));
}
rmSync(tmp, { recursive: true, force: true });
console.log(`steps A/B: ${machineLine(machine())}\nA = ${resolve(dirA)}\nB = ${resolve(dirB)}\n${ROUNDS} rounds of ${MS} ms per step and tree, order alternating; CPU us per call, median\n`);
console.log(`${'step'.padEnd(10)}${'A'.padStart(10)}${'B'.padStart(10)}${'B/A'.padStart(8)}`);
for (const s of STEPS) {
  const a = median(cpu[s]!.A);
  const b = median(cpu[s]!.B);
  console.log(`${s.padEnd(10)}${a.toFixed(1).padStart(10)}${b.toFixed(1).padStart(10)}${(b / a).toFixed(3).padStart(8)}`);
}
process.exit(0);
