/**
 * The fleet transport (host/fleet/transport.ts): frames survive any split or merge of the byte
 * stream; an empty or oversized frame closes its connection before anything is delivered; the
 * host delivers what it can not judge as bytes (the device checks the MAC) and routes only by the
 * header; a peer that is not there yet is reached once it listens, with the oldest frames dropped
 * from a full queue; a peer that restarts is reached again.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { frame, FrameError, FrameReader, Transport } from '../../../host/fleet/transport.ts';
import { ANY_INCARNATION, MAX_MESSAGE_BYTES, seal } from '../../../enclave/fleet/wire.ts';
import { freePort } from '../../helpers/tcp-proxy.ts';

const KEY = new Uint8Array(32).fill(7);
const INC = new Uint8Array(16).fill(1);
const msg = (from: number, to: number, seq: number): Uint8Array => seal(KEY, { from, to, fromInc: INC, toInc: ANY_INCARNATION, seq, body: { type: 'commit', epoch: 1, view: 0, commit: seq } });

const until = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const open: Transport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function member(self: number, ports: number[], got: Uint8Array[], o: { maxQueue?: number; start?: boolean } = {}): Promise<Transport> {
  const t = new Transport({ self, listen: { host: '127.0.0.1', port: ports[self]! }, peers: ports.map((port) => ({ host: '127.0.0.1', port })), onMessage: (m) => got.push(m), maxQueue: o.maxQueue, backoffMinMs: 10, backoffMaxMs: 100 });
  if (o.start !== false) await t.start();
  open.push(t);
  return t;
}

describe('FrameReader', () => {
  const msgs = [msg(0, 1, 1), msg(0, 1, 2), msg(0, 1, 3)];
  const stream = Buffer.concat(msgs.map(frame));

  it('takes frames split anywhere and merged', () => {
    for (const size of [1, 3, 5, 47, stream.length]) {
      const r = new FrameReader();
      const got: Uint8Array[] = [];
      for (let i = 0; i < stream.length; i += size) got.push(...r.push(stream.subarray(i, i + size)));
      expect(got).toEqual(msgs);
    }
  });

  it('refuses an empty frame and one over the bound, before reading its bytes', () => {
    const over = Buffer.alloc(4);
    over.writeUInt32BE(MAX_MESSAGE_BYTES + 1);
    expect(() => new FrameReader().push(over)).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.alloc(4))).toThrow(FrameError);
    const at = Buffer.alloc(4);
    at.writeUInt32BE(MAX_MESSAGE_BYTES);
    expect(new FrameReader().push(at)).toEqual([]); // the longest frame is waited for
  });
});

describe('Transport', () => {
  it('routes by the header: each message reaches the member it names, byte for byte', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const got: Uint8Array[][] = [[], [], []];
    const t = await Promise.all([0, 1, 2].map((i) => member(i, ports, got[i]!)));
    t[0]!.send(msg(0, 1, 1));
    t[0]!.send(msg(0, 2, 2));
    t[2]!.send(msg(2, 1, 3));
    t[0]!.send(new Uint8Array(10)); // no header the host can read: not sent
    await until(() => got[1]!.length === 2 && got[2]!.length === 1);
    expect(got[1]!.map((m) => Buffer.from(m).toString('hex')).sort()).toEqual([msg(0, 1, 1), msg(2, 1, 3)].map((m) => Buffer.from(m).toString('hex')).sort());
    expect(got[2]).toEqual([msg(0, 2, 2)]);
    expect(got[0]).toEqual([]);
  });

  it('closes a connection that sends an oversized or empty frame; garbage of a valid length is delivered as bytes for the device to refuse', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const got: Uint8Array[] = [];
    const t = await member(1, ports, got);
    const garbage = new Uint8Array(100).fill(0xab);
    for (const bad of [MAX_MESSAGE_BYTES + 1, 0]) {
      const s = net.connect(ports[1]!, '127.0.0.1');
      const closed = new Promise((r) => s.on('close', r));
      s.on('error', () => undefined);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(bad);
      s.write(Buffer.concat([frame(garbage), head, Buffer.alloc(64)]));
      await closed;
    }
    expect(t.refusedFrames).toBe(2);
    expect(got).toEqual([garbage, garbage]);
  });

  it('reaches a peer that starts late (oldest frames dropped from a full queue) and again after it restarts', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const got: Uint8Array[] = [];
    const a = await member(0, ports, []);
    for (let seq = 1; seq <= 10; seq++) a.send(msg(0, 1, seq));
    // queue bound 256 by default: use a small one to see the drop
    const small = await member(2, ports, [], { maxQueue: 4 });
    for (let seq = 1; seq <= 10; seq++) small.send(msg(2, 1, seq));
    expect(small.status().find((p) => p.id === 1)).toMatchObject({ queued: 4, dropped: 6 });
    await new Promise((r) => setTimeout(r, 200));
    const b = await member(1, ports, got);
    await until(() => got.length === 14);
    expect(got.filter((m) => m[2] === 2).map((m) => m.at(43))).toEqual([7, 8, 9, 10]); // sender id at byte 2; the sequence number's low byte
    expect(a.status().find((p) => p.id === 1)?.state).toBe('connected');
    await b.close();
    open.splice(open.indexOf(b), 1);
    await until(() => a.status().find((p) => p.id === 1)?.state !== 'connected');
    const got2: Uint8Array[] = [];
    await member(1, ports, got2);
    a.send(msg(0, 1, 11));
    await until(() => got2.length === 1);
    expect(got2[0]).toEqual(msg(0, 1, 11));
    expect(a.status().find((p) => p.id === 1)!.connects).toBe(2);
  });
});
