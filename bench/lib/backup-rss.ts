/**
 * Child process of bench/memory.ts: encrypts a generated stream of `--mib` MiB (a 1 MiB random
 * block repeated: AES-GCM costs the same on any bytes) through client/backup-file-node.ts
 * `createEncryptTransform` into a sink that counts and discards, and prints one JSON line:
 * bytes in and out, seconds, MB/s, RSS before, peak RSS (VmHWM) and the sampled peak.
 * Run alone so that its peak RSS is the encryption's, not a bench's.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createEncryptTransform } from '../../client/backup-file-node.ts';

const i = process.argv.indexOf('--mib');
const MIB = Number(i >= 0 ? process.argv[i + 1] : 1024);
const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;

const block = randomBytes(1 << 20);
const piece = 64 * 1024;
const rssBefore = kb('VmRSS');
let sent = 0;
const total = MIB * (1 << 20);
const src = new Readable({
  highWaterMark: 4 * piece,
  read() {
    while (sent < total) {
      const off = sent % block.length;
      const n = Math.min(piece, total - sent, block.length - off);
      sent += n;
      if (!this.push(block.subarray(off, off + n))) return;
    }
    this.push(null);
  },
});
let out = 0;
const sink = new Writable({
  highWaterMark: 4 * piece,
  write(chunk: Buffer, _e, cb) {
    out += chunk.length;
    cb();
  },
});
let sampled = 0;
const timer = setInterval(() => {
  sampled = Math.max(sampled, kb('VmRSS'));
}, 50);
const t0 = performance.now();
await pipeline(src, createEncryptTransform(new Uint8Array(randomBytes(32))), sink);
const s = (performance.now() - t0) / 1000;
clearInterval(timer);
sampled = Math.max(sampled, kb('VmRSS'));
console.log(JSON.stringify({ mib: MIB, bytesIn: sent, bytesOut: out, seconds: s, mbPerSec: sent / 1e6 / s, rssBeforeMB: rssBefore, peakRssMB: kb('VmHWM'), sampledPeakMB: sampled }));
