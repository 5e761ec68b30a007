/**
 * Interleaved A/B of a device setting read from the environment when a device boots: one rig
 * (2 worker-thread partitions, SQLite, emulator token) per value, all open at once, login windows
 * interleaved round by round (the order rotating) so that machine noise falls on every value
 * alike. Prints the median logins/s and CPU per login of each value, and every window. A tool for
 * choosing a setting (for example BKV_DEVICE_YOUNG_MB, the device young-generation cap in
 * host/channel/worker-channel.ts), or for an A/B of a code path behind a temporary switch; not a
 * benchmark of record.
 *
 *   npx tsx bench/lib/env-ab.ts NAME=a,b[,c...] [rounds (default 6)] [concurrency (default 256)] [window ms (default 3000)]
 *   npx tsx bench/lib/env-ab.ts BKV_DEVICE_YOUNG_MB=24,0 6 128
 */
import { EnclaveRig } from './enclave-rig.ts';
import { median } from './stats.ts';

const spec = process.argv[2] ?? '';
const eq = spec.indexOf('=');
if (eq <= 0 || eq === spec.length - 1) {
  console.error('usage: npx tsx bench/lib/env-ab.ts NAME=a,b[,c...] [rounds] [concurrency] [window ms]');
  process.exit(2);
}
const name = spec.slice(0, eq);
const values = spec.slice(eq + 1).split(',');
const num = (i: number, d: number) => {
  const v = Number(process.argv[i] ?? d);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`argument ${i - 2}: expected a positive integer, got ${process.argv[i]}`);
    process.exit(2);
  }
  return v;
};
const rounds = num(3, 6);
const concurrency = num(4, 256);
const windowMs = num(5, 3000);

const saved = process.env[name];
const rigs: EnclaveRig[] = [];
for (const v of values) {
  process.env[name] = v; // read by the devices as they boot
  process.stderr.write(`  .. opening a rig with ${name}=${v}\n`);
  // Logins are never finished and a record holds at most 16 open login sessions (120 s each).
  rigs.push(await EnclaveRig.open({ partitions: 2, records: 4096 }));
}
if (saved === undefined) delete process.env[name];
else process.env[name] = saved;
for (const r of rigs) await r.login(concurrency, windowMs); // warm-up
const rate: number[][] = values.map(() => []);
const cpu: number[][] = values.map(() => []);
for (let i = 0; i < rounds; i++) {
  for (let j = 0; j < rigs.length; j++) {
    const k = (i + j) % rigs.length;
    const w = await rigs[k]!.login(concurrency, windowMs);
    rate[k]!.push(w.opsPerSec);
    cpu[k]!.push(w.cpuUsPerOp);
  }
  process.stderr.write(`  .. round ${i + 1}/${rounds}\n`);
}
const f = (a: number[]) => a.map((x) => x.toFixed(0)).join(' ');
console.log(`login at concurrency ${concurrency}, ${rounds} interleaved rounds of ${windowMs} ms windows`);
values.forEach((v, j) => console.log(`${name}=${v}: median ${median(rate[j]!).toFixed(0)} logins/s, ${median(cpu[j]!).toFixed(0)} us CPU per login; windows ${f(rate[j]!)}; CPU ${f(cpu[j]!)}`));
for (const r of rigs) await r.close();
process.exit(0);
