/**
 * A minimal p11-kit RPC client for tests (protocol version 0, as p11-kit-client.so 0.24.1 speaks
 * it): the version byte, then frames of a 12-byte header and an RPC message, written with the
 * server's own codec in request mode. It also sends raw bytes, for the refusal tests.
 */
import * as net from 'node:net';
import { RpcReader, RpcWriter } from '../../../hsm/tokens/p11kit/codec.ts';
import { RPC_HANDSHAKE, callNamed } from '../../../hsm/tokens/p11kit/calls.ts';

export class WireClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;
  private code = 1;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Connects; with `version` the version byte is sent and the server's answer read. */
  static async connect(socketPath: string, version: number | null = 0): Promise<{ client: WireClient; serverVersion: number | null }> {
    const socket = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    const client = new WireClient(socket);
    if (version === null) return { client, serverVersion: null };
    client.raw(Buffer.of(version));
    const v = await client.read(1);
    return { client, serverVersion: v === null ? null : v[0]! };
  }

  /** Stops reading from the socket: the server's answers pile up on its side. */
  pause(): void {
    this.socket.pause();
  }

  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** `n` bytes, or null when the server closed first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (this.ended) return null;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves once the server has closed the connection (or after `ms`, false). */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.ended && Date.now() < deadline) await new Promise<void>((r) => setTimeout(r, 10));
    return this.ended;
  }

  /** Sends one message body in a frame; returns the answer's body (null if the server closed). */
  async frame(body: Buffer): Promise<Buffer | null> {
    const h = Buffer.alloc(12);
    const code = this.code++;
    h.writeUInt32BE(code, 0);
    h.writeUInt32BE(6, 4);
    h.writeUInt32BE(body.length, 8);
    this.raw(Buffer.concat([h, Buffer.from('client'), body]));
    const head = await this.read(12);
    if (head === null) return null;
    if (head.readUInt32BE(0) !== code) throw new Error('answer with another call code');
    const opts = await this.read(head.readUInt32BE(4));
    if (opts === null) return null;
    return this.read(head.readUInt32BE(8));
  }

  /** A call: `args` writes the request's fields; the answer is a reader (its call is ERROR on a CKR_ error). */
  async call(name: string, args: (w: RpcWriter) => void = () => {}): Promise<RpcReader> {
    const w = new RpcWriter(callNamed(name), 'request');
    args(w);
    const body = await this.frame(w.finish());
    if (body === null) throw new Error(`${name}: connection closed`);
    return new RpcReader(body, 'response');
  }

  /** The CKR_ value of an error answer, or 0 for a normal one (whose fields are left to read). */
  static rv(r: RpcReader): number {
    return r.call.name === 'ERROR' ? Number(r.ulong()) : 0;
  }

  async initialize(): Promise<number> {
    return WireClient.rv(await this.call('C_Initialize', (w) => w.byteArray(RPC_HANDSHAKE).byte(0).byteArray(Buffer.alloc(0))));
  }

  close(): void {
    this.socket.destroy();
  }
}
