/**
 * A/B of the device young-generation cap (BKV_DEVICE_YOUNG_MB): one rig (2 worker-thread
 * partitions, SQLite, emulator token) per setting, all open at once, login windows at
 * concurrency 128 interleaved round by round so machine noise falls on every setting alike.
 * A tool for choosing DEVICE_YOUNG_GENERATION_MB (host/channel/worker-channel.ts), not a
 * benchmark of record.
 *
 *   npx tsx bench/lib/young-ab.ts [MB,MB,...  (default 24,0; 0 = V8's own sizing)] [rounds (default 6)]
 */
import { EnclaveRig } from './enclave-rig.ts';
const settings = (process.argv[2] ?? '24,0').split(',');
const rounds = Number(process.argv[3] ?? 6);
const rigs: EnclaveRig[] = [];
for (const y of settings) {
  process.env.BKV_DEVICE_YOUNG_MB = y;
  rigs.push(await EnclaveRig.open({ partitions: 2, records: 1024 }));
}
for (const r of rigs) await r.login(128, 3000); // warm-up
const res: number[][] = settings.map(() => []);
const cpu: number[][] = settings.map(() => []);
for (let i = 0; i < rounds; i++) {
  for (let j = 0; j < rigs.length; j++) {
    const w = await rigs[(i + j) % rigs.length]!.login(128, 2000);
    res[(i + j) % rigs.length]!.push(w.opsPerSec);
    cpu[(i + j) % rigs.length]!.push(w.cpuUsPerOp);
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
settings.forEach((s, j) => console.log(`young ${s}: median ${med(res[j]!).toFixed(0)}/s cpu ${med(cpu[j]!).toFixed(0)} us/op; all ${res[j]!.map((x) => x.toFixed(0)).join(' ')}`));
for (const r of rigs) await r.close();
process.exit(0);
