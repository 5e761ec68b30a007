/**
 * p11-kit's RPC transport over a stream (p11-kit rpc-transport.c `rpc_socket_read` /
 * `rpc_socket_write`): after the one-byte version exchange, each message is a frame of a 12-byte
 * header (three big-endian uint32: the call code the answer echoes, the options length, the body
 * length), then the options bytes, then the body (one RPC message, codec.ts).
 *
 * The reader buffers what the socket delivers and cuts frames; it checks both lengths against
 * its limits as soon as the header is complete, before it waits for (or keeps) any more bytes,
 * so a header announcing 4 GB is refused after 12 bytes.
 */
import { P11KitError, P11KitErrorCode as E } from './errors.ts';

export const FRAME_HEADER_BYTES = 12;

export interface FrameLimits {
  /** Largest body (one RPC message) accepted. */
  maxBody: number;
  /** Largest options block accepted (p11-kit's client sends its program's name). */
  maxOptions: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = { maxBody: (1 << 20) + 4096, maxOptions: 1024 };

export interface Frame {
  code: number;
  options: Buffer;
  body: Buffer;
}

export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The header of the frame being received, once its 12 bytes are in. */
  private header: { code: number; options: number; body: number } | null = null;

  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received and not yet returned in a frame. */
  get pending(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** Takes the one version byte the client opens with (null until it has arrived). */
  versionByte(): number | null {
    if (this.buffered < 1) return null;
    return this.take(1)[0]!;
  }

  /** The next complete frame, or null until more bytes arrive; a header over the limits throws. */
  next(): Frame | null {
    if (this.header === null) {
      if (this.buffered < FRAME_HEADER_BYTES) return null;
      const h = this.take(FRAME_HEADER_BYTES);
      const header = { code: h.readUInt32BE(0), options: h.readUInt32BE(4), body: h.readUInt32BE(8) };
      if (header.options > this.limits.maxOptions) throw new P11KitError(E.FrameTooLarge, `frame options of ${header.options} bytes (limit ${this.limits.maxOptions})`);
      if (header.body > this.limits.maxBody) throw new P11KitError(E.FrameTooLarge, `frame body of ${header.body} bytes (limit ${this.limits.maxBody})`);
      this.header = header;
    }
    const { code, options, body } = this.header;
    if (this.buffered < options + body) return null;
    this.header = null;
    // Copies: the frame outlives the socket's chunks it was cut from.
    const bytes = Buffer.from(this.take(options + body));
    return { code, options: bytes.subarray(0, options), body: bytes.subarray(options) };
  }

  /** Called at end of stream: a frame (or header) cut short is refused. */
  finish(): void {
    if (this.header !== null || this.buffered > 0) throw new P11KitError(E.TruncatedFrame, `connection closed inside a frame (${this.buffered} bytes pending)`);
  }
}

/** One frame: header (call code, empty options, body length) and body. */
export function encodeFrame(code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(code >>> 0, 0);
  h.writeUInt32BE(0, 4);
  h.writeUInt32BE(body.length, 8);
  return Buffer.concat([h, body]);
}
