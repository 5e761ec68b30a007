/**
 * host/channel: the enclave channel in both isolation modes (worker thread, child process) and
 * the partition pool, driven against the fixture firmware test/fixtures/echo-firmware.ts:
 * round trips, concurrency, timeouts, overload, shutdown with requests in flight, device
 * deaths (SIGKILL, exit, uncaught error, failpoint) with restart and NVRAM surviving, boot
 * failures, and the persisted partition count.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChannelError, ChannelErrorCode } from '../../../host/channel/channel.ts';
import type { ChannelOptions, EnclaveChannel } from '../../../host/channel/channel.ts';
import { EnclavePool, createChannel, partitionHashBackend, partitionOf, settlePartitions } from '../../../host/channel/pool.ts';
import { loadNativeSha256 } from '../../../enclave/opaque/hash-native.ts';
import type { ChannelMode } from '../../../host/channel/pool.ts';
import { ProcessChannel, deviceProcessFlags } from '../../../host/channel/process-channel.ts';
import { DEVICE_YOUNG_GENERATION_MB, deviceYoungMb } from '../../../host/channel/worker-channel.ts';
import { CMD } from '../../fixtures/echo-firmware.ts';
import { encodeMessage } from '../../../enclave/api/codec.ts';
import { wholeBuffer } from '../../../enclave/api/device.ts';
import { HostRequests, HostResponses, MAX_BATCH_OPS, MAX_CLIENT_MESSAGE, MAX_RECORD_ID, MAX_SEALED_RECORD } from '../../../enclave/api/messages.ts';
import { rejectionOf } from '../../helpers/errors.ts';

const FIRMWARE = fileURLToPath(new URL('../../fixtures/echo-firmware.ts', import.meta.url));
const BOOT_FAIL = fileURLToPath(new URL('../../fixtures/boot-fail-firmware.ts', import.meta.url));
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bkv-channel-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(root, `vault-${dirs++}`);

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const cmd = (c: number, arg: Uint8Array | number[] = []) => new Uint8Array([c, ...arg]);
const sleepCmd = (ms: number) => cmd(CMD.sleep, [ms >> 8, ms & 0xff]);

async function codeOf(p: Promise<unknown>): Promise<number> {
  const e = await rejectionOf(p);
  expect(e).toBeInstanceOf(ChannelError);
  return (e as ChannelError).code;
}

async function errorOf(p: Promise<unknown>): Promise<ChannelError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ChannelError);
    return e as ChannelError;
  }
  throw new Error('expected a ChannelError');
}

function open(mode: ChannelMode, opts: Partial<ChannelOptions> = {}): EnclaveChannel {
  return createChannel(mode, { dataDir: freshDir(), firmware: FIRMWARE, forwardStderr: false, ...opts });
}

describe('what crosses the channel without a copy (enclave/api/device.ts wholeBuffer)', () => {
  it('the codec output spans its buffer, at full batch size in both directions', () => {
    const op = (i: number) => ({ opId: i, recordId: new Uint8Array(MAX_RECORD_ID).fill(i), stored: new Uint8Array(MAX_SEALED_RECORD), request: new Uint8Array(MAX_CLIENT_MESSAGE) });
    const batch = encodeMessage(HostRequests, { type: 'Batch', epoch: 1, ops: Array.from({ length: MAX_BATCH_OPS }, (_, i) => op(i)) });
    expect(batch.byteLength).toBeGreaterThan(1_500_000);
    expect(wholeBuffer(batch)).toBe(batch.buffer);
    const committed = encodeMessage(HostResponses, {
      type: 'Committed',
      epoch: 1,
      results: Array.from({ length: MAX_BATCH_OPS }, (_, i) => ({ opId: i, sealed: 1, response: new Uint8Array(MAX_CLIENT_MESSAGE) })),
    });
    expect(wholeBuffer(committed)).toBe(committed.buffer);
    expect(wholeBuffer(batch.subarray(1))).toBeNull();
    expect(wholeBuffer(batch.subarray(0, batch.length - 1))).toBeNull();
  });
});

describe.each(['worker', 'process'] as const)('%s channel', (mode) => {
  describe('one running device', () => {
    let ch: EnclaveChannel;
    beforeAll(async () => {
      ch = open(mode, { maxInFlight: 300, timeoutMs: 10_000 });
      await ch.ready;
    });
    afterAll(() => ch.close());

    it('round-trips bytes without detaching the caller’s buffer', async () => {
      expect(ch.state).toBe('ready');
      const req = cmd(CMD.echo, [1, 2, 3, 255]);
      expect(await ch.request(req)).toEqual(new Uint8Array([1, 2, 3, 255]));
      expect(req.byteLength).toBe(5);
      expect(await ch.request(cmd(CMD.echo))).toEqual(new Uint8Array(0));
      const big = new Uint8Array(1 + (1 << 20)).map((_, i) => (i - 1) & 0xff);
      big[0] = CMD.echo;
      expect(Buffer.from(await ch.request(big)).equals(big.subarray(1))).toBe(true);
      expect(await ch.request(cmd(CMD.info))).toEqual(new Uint8Array([0, 0, 0, 1]));
    });

    it('gives the firmware its NVRAM and token through the platform', async () => {
      expect(dec(await ch.request(cmd(CMD.nvramWrite, enc('hello nvram'))))).toBe('ok');
      expect(dec(await ch.request(cmd(CMD.nvramRead)))).toBe('hello nvram');
      expect(dec(await ch.request(cmd(CMD.seal, enc('sealed and opened'))))).toBe('sealed and opened');
    });

    it('takes one request at a time, in order: a slow request is answered before the quick one sent after it', async () => {
      const order: string[] = [];
      const slow = ch.request(sleepCmd(80)).then((r) => order.push(dec(r)));
      const quick = ch.request(cmd(CMD.echo, enc('quick'))).then((r) => order.push(dec(r)));
      await Promise.all([slow, quick]);
      expect(order).toEqual(['slept', 'quick']);
    });

    it('moves the buffer of a request the caller gives up (no copy), and copies one it keeps', async () => {
      const kept = cmd(CMD.echo, enc('kept'));
      expect(dec(await ch.request(kept))).toBe('kept');
      expect(kept.byteLength).toBe(5);
      const given = cmd(CMD.echo, enc('given'));
      expect(dec(await ch.request(given, { transfer: true }))).toBe('given');
      // A worker thread takes the buffer itself; a child process gets a serialized copy either way.
      expect(given.byteLength).toBe(mode === 'worker' ? 0 : 6);
      // A view into a larger buffer is copied even when given up: the rest of its buffer stays.
      const big = new Uint8Array(32);
      big.set(cmd(CMD.echo, enc('view')), 4);
      expect(dec(await ch.request(big.subarray(4, 9), { transfer: true }))).toBe('view');
      expect(big.byteLength).toBe(32);
    });

    it('answers many concurrent requests, each with its own response', async () => {
      const reqs = Array.from({ length: 300 }, (_, i) => cmd(CMD.echo, enc(`request ${i}`)));
      const res = await Promise.all(reqs.map((r) => ch.request(r)));
      res.forEach((r, i) => expect(dec(r)).toBe(`request ${i}`));
      expect(ch.inFlight).toBe(0);
    });

    it('times a request out; it stays in flight until the firmware answers; the channel goes on', async () => {
      expect(await codeOf(ch.request(sleepCmd(300), { timeoutMs: 30 }))).toBe(ChannelErrorCode.Timeout);
      expect(ch.inFlight).toBe(1);
      expect(dec(await ch.request(cmd(CMD.echo, enc('after'))))).toBe('after');
      expect(ch.inFlight).toBe(0);
    });

    it('rejects with Overloaded beyond maxInFlight instead of queueing', async () => {
      const first = ch.request(sleepCmd(50));
      const rest = Array.from({ length: 299 }, () => ch.request(cmd(CMD.echo, [7])));
      expect(ch.inFlight).toBe(300);
      expect(await codeOf(ch.request(cmd(CMD.echo)))).toBe(ChannelErrorCode.Overloaded);
      expect(dec(await first)).toBe('slept');
      await Promise.all(rest);
      expect(await ch.request(cmd(CMD.echo, [8]))).toEqual(new Uint8Array([8]));
    });

    it('turns a throwing handler into HandlerFailed and keeps serving', async () => {
      const err = await errorOf(ch.request(cmd(CMD.throw)));
      expect(err.code).toBe(ChannelErrorCode.HandlerFailed);
      expect(err.message).toMatch(/fixture handler fault/);
      expect(await ch.request(cmd(CMD.echo, [9]))).toEqual(new Uint8Array([9]));
    });

    it('rejects a request that is not bytes', async () => {
      expect(await codeOf(ch.request('nope' as unknown as Uint8Array))).toBe(ChannelErrorCode.InvalidRequest);
    });
  });

  it('close() waits for requests in flight, cuts off a hung one at the deadline, then refuses', async () => {
    const ch = open(mode, { killAfterMs: 150 });
    const early = ch.request(sleepCmd(20)); // sent before boot completes: held, then delivered
    await ch.ready;
    const finishing = ch.request(sleepCmd(60));
    const hung = ch.request(cmd(CMD.spin));
    const t0 = performance.now();
    const closing = ch.close({ timeoutMs: 250 });
    expect(ch.closed).toBe(true);
    expect(await codeOf(ch.request(cmd(CMD.echo)))).toBe(ChannelErrorCode.Closed);
    expect(dec(await early)).toBe('slept');
    expect(dec(await finishing)).toBe('slept');
    expect(await codeOf(hung)).toBe(ChannelErrorCode.Closed);
    await closing;
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(ch.state).toBe('closed');
    await ch.close(); // idempotent
  });

  const deaths = mode === 'process' ? (['sigkill', 'uncaught'] as const) : (['exit', 'uncaught'] as const);
  it.each(deaths)('a device death (%s) fails pending and later requests with Crashed', async (how) => {
    const crashes: ChannelError[] = [];
    const ch = open(mode, { onCrash: (e) => crashes.push(e) });
    await ch.ready;
    let pending: Promise<Uint8Array>;
    if (how === 'sigkill') {
      pending = ch.request(sleepCmd(5000));
      process.kill((ch as ProcessChannel).pid!, 'SIGKILL');
    } else if (how === 'exit') {
      pending = ch.request(cmd(CMD.exit));
    } else {
      // The handler answers, then an error thrown from a timer ends the device while the sleep waits.
      expect(dec(await ch.request(cmd(CMD.uncaught)))).toBe('ok');
      pending = ch.request(sleepCmd(5000));
    }
    const queued = ch.request(cmd(CMD.echo));
    const err = await errorOf(pending);
    expect(err.code).toBe(ChannelErrorCode.Crashed);
    expect(err.message).toMatch(
      how === 'sigkill' ? /signal SIGKILL/ : how === 'exit' ? /exit code 3/ : /fixture uncaught fault|exit code 1/,
    );
    expect(await codeOf(queued)).toBe(ChannelErrorCode.Crashed);
    expect(ch.state).toBe('crashed');
    expect(ch.closed).toBe(true);
    expect(await codeOf(ch.request(cmd(CMD.echo)))).toBe(ChannelErrorCode.Crashed);
    expect(crashes).toHaveLength(1);
    await ch.close();
  });

  it('reports a firmware whose boot fails, with its reason, and fails its requests', async () => {
    const ch = open(mode, { firmware: BOOT_FAIL });
    const missing = open(mode, { firmware: path.join(root, 'no-such-firmware.ts') });
    const early = ch.request(cmd(CMD.echo));
    const err = await errorOf(ch.ready);
    expect(err.code).toBe(ChannelErrorCode.BootFailed);
    expect(err.message).toMatch(/known-answer mismatch/);
    expect(await codeOf(early)).toBe(ChannelErrorCode.BootFailed);
    expect(await codeOf(ch.request(cmd(CMD.echo)))).toBe(ChannelErrorCode.BootFailed);
    await ch.close();

    const err2 = await errorOf(missing.ready);
    expect(err2.code).toBe(ChannelErrorCode.BootFailed);
    expect(err2.message).toMatch(/no-such-firmware/);
    await missing.close();
  });

  it('pool: partitions share one token, keep their own NVRAM, and a crashed one restarts with NVRAM intact', async () => {
    const dataDir = freshDir();
    const crashes: number[] = [];
    const pool = await EnclavePool.open({
      dataDir,
      mode,
      partitions: 2,
      firmware: FIRMWARE,
      failpoint: 'after-nvram-write',
      forwardStderr: false,
      onCrash: (p) => crashes.push(p),
    });
    try {
      for (let p = 0; p < 2; p++) expect(await pool.request(p, cmd(CMD.info))).toEqual(new Uint8Array([0, p, 0, 2]));
      // All partitions race to generate the same token key on first use; they must end with one.
      const sealed = await Promise.all([0, 1].map((p) => pool.request(p, cmd(CMD.sealFixed, enc('x')))));
      expect(new Set(sealed.map((s) => Buffer.from(s).toString('hex'))).size).toBe(1);
      for (let p = 0; p < 2; p++) await pool.request(p, cmd(CMD.nvramWrite, enc(`partition ${p}`)));

      // Partition 1 writes its NVRAM, then dies at the failpoint before answering.
      const err = await errorOf(pool.request(1, cmd(CMD.writeThenFailpoint, enc('written before the crash'))));
      expect(err.code).toBe(ChannelErrorCode.Crashed);
      expect(crashes).toEqual([1]);
      expect(await codeOf(pool.request(1, cmd(CMD.echo)))).toBe(ChannelErrorCode.Crashed);
      expect(dec(await pool.request(0, cmd(CMD.nvramRead)))).toBe('partition 0');

      await pool.restart(1);
      expect(pool.channel(1).state).toBe('ready');
      expect(dec(await pool.request(1, cmd(CMD.nvramRead)))).toBe('written before the crash');
      // The restarted partition still uses the same token key.
      expect(await pool.request(1, cmd(CMD.sealFixed, enc('x')))).toEqual(sealed[0]);
      // A device killed from outside (process mode), or a healthy one (worker mode), restarts too.
      if (mode === 'process') {
        process.kill((pool.channel(0) as ProcessChannel).pid!, 'SIGKILL');
        expect(await codeOf(pool.request(0, sleepCmd(5000)))).toBe(ChannelErrorCode.Crashed);
        expect(crashes).toEqual([1, 0]);
      }
      await pool.restart(0);
      expect(dec(await pool.request(0, cmd(CMD.nvramRead)))).toBe('partition 0');
    } finally {
      await pool.close();
    }
    expect(await codeOf(pool.request(0, cmd(CMD.echo)))).toBe(ChannelErrorCode.Closed);
  });
});

describe('pool partitions', () => {
  it('partitionOf is the first 4 bytes of SHA-256(recordId), big-endian, mod partitions', () => {
    const pool = { partitions: 7 };
    for (let i = 0; i < 50; i++) {
      const id = enc(`record-${i}`);
      const expected = createHash('sha256').update(id).digest().readUInt32BE(0) % pool.partitions;
      expect(partitionOf(id, pool.partitions)).toBe(expected);
    }
    const counts = new Array(4).fill(0);
    for (let i = 0; i < 4000; i++) counts[partitionOf(enc(`id ${i}`), 4)]++;
    for (const c of counts) expect(c).toBeGreaterThan(850);
  });

  it('partitionOf gives the same partitions once native libsodium has loaded (ids whose digest has the top bit set, views at an offset)', async () => {
    const loaded = await loadNativeSha256();
    if (!loaded.sha256) {
      if (process.env.CI === 'true') throw new Error(`native libsodium missing in CI: ${loaded.reason}`);
      console.log(`skipped: native libsodium not loaded (${loaded.reason})`);
      return;
    }
    partitionOf(enc('first call starts the load'), 3);
    await new Promise((r) => setTimeout(r, 0));
    expect(partitionHashBackend()).toBe('libsodium native');
    let high = 0;
    for (let i = 0; i < 200; i++) {
      const whole = enc(`xx-record-${i}`);
      const id = whole.subarray(3); // a view at an offset
      const d = createHash('sha256').update(id).digest();
      if (d[0]! >= 0x80) high++;
      for (const n of [1, 2, 7, 1000]) expect(partitionOf(id, n)).toBe(d.readUInt32BE(0) % n);
    }
    expect(high).toBeGreaterThan(50);
  });

  it('the count is fixed when the data folder is created; a different count is refused', async () => {
    const dataDir = freshDir();
    expect(settlePartitions(dataDir, undefined)).toBe(os.availableParallelism());
    expect(settlePartitions(dataDir, undefined)).toBe(os.availableParallelism());
    expect(() => settlePartitions(dataDir, os.availableParallelism() + 1)).toThrow(/was created with/);
    const other = freshDir();
    const pool = await EnclavePool.open({ dataDir: other, partitions: 1, firmware: FIRMWARE });
    expect(pool.partitions).toBe(1);
    expect(pool.partitionOf(enc('abc'))).toBe(0);
    expect(() => pool.request(1, cmd(CMD.echo))).toThrow(RangeError);
    await pool.close();
    await expect(EnclavePool.open({ dataDir: other, partitions: 2, firmware: FIRMWARE })).rejects.toThrow(/created with 1 partitions/);
    const reopened = await EnclavePool.open({ dataDir: other, firmware: FIRMWARE });
    expect(reopened.partitions).toBe(1);
    await reopened.close();
  });

  it('open() rejects, and ends the other partitions, when a firmware fails to boot', async () => {
    await expect(EnclavePool.open({ dataDir: freshDir(), partitions: 2, firmware: BOOT_FAIL })).rejects.toMatchObject({
      code: ChannelErrorCode.BootFailed,
    });
  });
});

describe('a device process', () => {
  it('runs with the device heap rules as node flags of its own (young generation cap, bkv heap growth), not the parent\'s loader flags', async () => {
    expect(deviceProcessFlags(12)).toEqual(['--max-semi-space-size=4', '--heap-growing-percent=40']);
    expect(deviceProcessFlags(24)).toEqual(['--max-semi-space-size=8', '--heap-growing-percent=40']);
    expect(deviceProcessFlags(0)).toEqual(['--heap-growing-percent=40']);
    const ch = open('process');
    await ch.ready;
    try {
      // What the kernel says the child was started with (the flags come before the entry script).
      const argv = fs.readFileSync(`/proc/${(ch as ProcessChannel).pid!}/cmdline`, 'utf8').split('\0');
      for (const f of deviceProcessFlags(DEVICE_YOUNG_GENERATION_MB)) expect(argv).toContain(f);
      expect(argv.some((a) => a.startsWith('--max-semi-space-size='))).toBe(true);
      expect(argv.filter((a) => /^--(import|require|loader)\b/.test(a))).toEqual([]);
      expect(dec(await ch.request(cmd(CMD.echo, enc('up'))))).toBe('up');
    } finally {
      await ch.close();
    }
  });
});

describe('the devices\' young-generation cap from the environment', () => {
  it('is the default unless BKV_DEVICE_YOUNG_MB gives a whole number of MB; anything else is refused by name before a device starts', () => {
    expect(deviceYoungMb({})).toBe(DEVICE_YOUNG_GENERATION_MB);
    expect(deviceYoungMb({ BKV_DEVICE_YOUNG_MB: '' })).toBe(DEVICE_YOUNG_GENERATION_MB);
    expect(deviceYoungMb({ BKV_DEVICE_YOUNG_MB: '0' })).toBe(0);
    expect(deviceYoungMb({ BKV_DEVICE_YOUNG_MB: '48' })).toBe(48);
    for (const bad of ['abc', '-1', '1.5', '12MB', ' 24', '1e3', '99999', 'x'.repeat(100)]) {
      expect(() => deviceYoungMb({ BKV_DEVICE_YOUNG_MB: bad }), bad).toThrow(/^BKV_DEVICE_YOUNG_MB: expected a whole number of MB/);
    }
    const was = process.env.BKV_DEVICE_YOUNG_MB;
    process.env.BKV_DEVICE_YOUNG_MB = 'lots';
    try {
      for (const mode of ['worker', 'process'] as const) expect(() => open(mode), mode).toThrow(/BKV_DEVICE_YOUNG_MB.*"lots"/);
    } finally {
      if (was === undefined) delete process.env.BKV_DEVICE_YOUNG_MB;
      else process.env.BKV_DEVICE_YOUNG_MB = was;
    }
  });
});
