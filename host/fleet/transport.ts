/**
 * The fleet's transport between member hosts (docs/fleet.md, "The member process"): a TCP server
 * on the member's peer address, and one outbound connection to each other member. A frame is a
 * u32 length (big-endian) and one sealed fleet message (enclave/fleet/wire.ts).
 *
 * The host trusts nothing it carries: it reads only the header of what it sends, to route it
 * (hsm/fleet/device.ts `receiverOf`), and hands every inbound frame, as bytes, to its device, which checks the MAC
 * before anything else. What the host bounds is its own resources: a frame longer than
 * `MAX_FLEET_MESSAGE_BYTES` (wire.ts `MAX_MESSAGE_BYTES`) or empty closes the connection that sent it (before its bytes are
 * buffered), inbound connections are capped, and each peer's outbound queue holds at most
 * `maxQueue` frames (the oldest is dropped when full: the protocol resends what matters, VR
 * Revisited §4). A connection that fails is made again after a backoff that doubles up to a cap.
 */
import net from 'node:net';
import { MAX_FLEET_MESSAGE_BYTES, routeOf } from '../../hsm/fleet/device.ts';
import type { Endpoint } from './config.ts';

export const FRAME_HEADER_BYTES = 4;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/** Splits a byte stream into frames; `FrameError` for a length of 0 or above the bound (the stream is then unusable). */
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private need = -1;

  constructor(private readonly max = MAX_FLEET_MESSAGE_BYTES) {}

  /** The frames that `chunk` completes, in order; the frames before a refused length are delivered first (to `onFrame`, else in the result). */
  push(chunk: Buffer, onFrame?: (f: Uint8Array) => void): Uint8Array[] {
    this.chunks.push(chunk);
    this.have += chunk.length;
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.have < FRAME_HEADER_BYTES) break;
        const len = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (len === 0 || len > this.max) throw new FrameError(`frame of ${len} bytes (1..${this.max})`);
        this.need = len;
      }
      if (this.have < this.need) break;
      const f = new Uint8Array(this.take(this.need));
      if (onFrame) onFrame(f);
      else out.push(f);
      this.need = -1;
    }
    return out;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
    const head = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    return head;
  }
}

export function frame(msg: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + msg.length);
  b.writeUInt32BE(msg.length, 0);
  b.set(msg, FRAME_HEADER_BYTES);
  return b;
}

export type PeerState = 'connected' | 'connecting' | 'waiting';

export interface PeerStatus {
  readonly id: number;
  readonly address: string;
  readonly state: PeerState;
  readonly queued: number;
  /** Frames dropped from a full queue, and frames that failed to route (a header the host could not read). */
  readonly dropped: number;
  readonly connects: number;
}

export interface TransportOptions {
  readonly self: number;
  /** Where this member listens (its peer address, or an override). */
  readonly listen: Endpoint;
  /** Each member's peer address by id (this member's own is not used). */
  readonly peers: readonly Endpoint[];
  /** Every inbound frame, unread: the device checks it. */
  readonly onMessage: (msg: Uint8Array) => void;
  readonly maxQueue?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  readonly maxInbound?: number;
  /** Connection events, for the host's log. */
  readonly onEvent?: (e: { peer?: number; event: string; detail?: string }) => void;
}

class Peer {
  socket: net.Socket | null = null;
  state: PeerState = 'waiting';
  queue: Buffer[] = [];
  dropped = 0;
  connects = 0;
  failures = 0;
  writable = false;
  timer: NodeJS.Timeout | null = null;
  constructor(
    readonly id: number,
    readonly to: Endpoint,
  ) {}
}

export class Transport {
  private server: net.Server | null = null;
  private readonly peers: (Peer | null)[];
  private readonly inbound = new Set<net.Socket>();
  private closed = false;
  private readonly maxQueue: number;
  private readonly min: number;
  private readonly max: number;
  /** Inbound frames refused for their length (connections closed). */
  refusedFrames = 0;
  /**
   * The messages this member's device handed over to send, by the type their header names, since
   * the process started (GET /fleet/status `sent`): what a fleet says to itself, such as re-form
   * accepts or pre-votes that do not stop (docs/fleet.md "The client API, the CLI").
   */
  readonly sent: Record<string, number> = {};

  constructor(private readonly o: TransportOptions) {
    this.peers = o.peers.map((e, i) => (i === o.self ? null : new Peer(i, e)));
    this.maxQueue = o.maxQueue ?? 256;
    this.min = o.backoffMinMs ?? 50;
    this.max = o.backoffMaxMs ?? 1000;
  }

  /** Listens, and starts connecting to every other member. */
  async start(): Promise<void> {
    const server = net.createServer((s) => this.accept(s));
    server.maxConnections = this.o.maxInbound ?? 32;
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(this.o.listen.port, this.o.listen.host, () => {
        server.off('error', rej);
        res();
      });
    });
    this.server = server;
    for (const p of this.peers) if (p) this.connect(p);
  }

  /**
   * A member a charter change added (fleet.json rewritten by `bkv fleet add`): connected to from
   * now on. An id already known keeps its connection.
   */
  addPeer(id: number, to: Endpoint): void {
    if (id === this.o.self || this.peers[id] || this.closed) return;
    while (this.peers.length <= id) this.peers.push(null);
    const p = new Peer(id, to);
    this.peers[id] = p;
    if (this.server) this.connect(p);
  }

  /** The port it listens on (the given one, or the one the system chose for port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  /** Sends a sealed message to the member its header names (dropped when the header does not read or names no other member). */
  send(msg: Uint8Array): void {
    const r = routeOf(msg);
    const p = r && this.peers[r.to];
    if (!r || !p) return;
    this.sent[r.type] = (this.sent[r.type] ?? 0) + 1;
    if (p.queue.length >= this.maxQueue) {
      p.queue.shift();
      p.dropped++;
    }
    p.queue.push(frame(msg));
    this.pump(p);
  }

  status(): PeerStatus[] {
    return this.peers.filter((p): p is Peer => p !== null).map((p) => ({ id: p.id, address: `${p.to.host}:${p.to.port}`, state: p.state, queued: p.queue.length, dropped: p.dropped, connects: p.connects }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.peers) {
      if (!p) continue;
      if (p.timer) clearTimeout(p.timer);
      p.socket?.destroy();
    }
    for (const s of this.inbound) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((res) => server.close(() => res()));
  }

  private accept(s: net.Socket): void {
    if (this.closed) return void s.destroy();
    this.inbound.add(s);
    s.setNoDelay(true);
    const reader = new FrameReader();
    s.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, this.o.onMessage);
      } catch (e) {
        if (!(e instanceof FrameError)) throw e;
        this.refusedFrames++;
        this.o.onEvent?.({ event: 'frame refused', detail: (e as Error).message });
        s.destroy();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => this.inbound.delete(s));
  }

  private connect(p: Peer): void {
    if (this.closed) return;
    p.timer = null;
    p.state = 'connecting';
    const s = net.connect({ host: p.to.host, port: p.to.port });
    p.socket = s;
    s.setNoDelay(true);
    s.on('connect', () => {
      p.state = 'connected';
      p.writable = true;
      p.failures = 0;
      p.connects++;
      this.o.onEvent?.({ peer: p.id, event: 'connected' });
      this.pump(p);
    });
    s.on('drain', () => {
      p.writable = true;
      this.pump(p);
    });
    // the link is one-way: nothing is expected back on it
    s.on('data', () => s.destroy());
    s.on('error', () => undefined);
    s.on('close', () => {
      if (p.socket !== s) return;
      const was = p.state;
      p.socket = null;
      p.writable = false;
      p.state = 'waiting';
      if (was === 'connected') this.o.onEvent?.({ peer: p.id, event: 'disconnected' });
      if (this.closed) return;
      const delay = Math.min(this.max, this.min * 2 ** Math.min(p.failures++, 16));
      p.timer = setTimeout(() => this.connect(p), delay * (0.5 + Math.random() / 2));
    });
  }

  private pump(p: Peer): void {
    while (p.state === 'connected' && p.writable && p.queue.length > 0) {
      p.writable = p.socket!.write(p.queue.shift()!);
    }
  }
}
