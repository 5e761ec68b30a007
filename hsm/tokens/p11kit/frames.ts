/**
 * p11-kit's RPC transport over a stream (p11-kit rpc-transport.c `rpc_socket_read` /
 * `rpc_socket_write`): after the one-byte version exchange, each message is a frame of a 12-byte
 * header (three big-endian uint32: the call code the answer echoes, the options length, the body
 * length), then the options bytes, then the body (one RPC message, codec.ts).
 *
 * The reader checks both lengths against its limits as soon as the header is complete, before
 * it allocates or waits for anything more, so a header announcing 4 GB is refused after 12 bytes.
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
  /** The version byte, once the first byte of the stream has arrived. */
  private version: number | null = null;
  private readonly head = Buffer.alloc(FRAME_HEADER_BYTES);
  private headFill = 0;
  /** The frame being received: its header and a buffer of exactly its options and body bytes. */
  private frame: { code: number; options: number; bytes: Buffer; fill: number } | null = null;

  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {}

  /**
   * Takes bytes as the socket delivers them: the first is the version byte (`onVersion`), then
   * frames, each handed to `onFrame` as soon as its last byte is in, in order. A header over the
   * limits throws once its 12 bytes are in, after the frames before it were handled. A frame's
   * buffer is allocated once, at the size its checked header announces: bytes trickling in one
   * at a time cost no more memory than the frame itself.
   */
  feed(chunk: Buffer, onVersion: (v: number) => void, onFrame: (f: Frame) => void): void {
    let at = 0;
    if (this.version === null && chunk.length > 0) {
      this.version = chunk[0]!;
      at = 1;
      onVersion(this.version);
    }
    while (at < chunk.length) {
      if (this.frame === null) {
        const n = Math.min(FRAME_HEADER_BYTES - this.headFill, chunk.length - at);
        chunk.copy(this.head, this.headFill, at, at + n);
        this.headFill += n;
        at += n;
        if (this.headFill < FRAME_HEADER_BYTES) return;
        this.headFill = 0;
        const code = this.head.readUInt32BE(0);
        const options = this.head.readUInt32BE(4);
        const body = this.head.readUInt32BE(8);
        if (options > this.limits.maxOptions) throw new P11KitError(E.FrameTooLarge, `frame options of ${options} bytes (limit ${this.limits.maxOptions})`);
        if (body > this.limits.maxBody) throw new P11KitError(E.FrameTooLarge, `frame body of ${body} bytes (limit ${this.limits.maxBody})`);
        this.frame = { code, options, bytes: Buffer.alloc(options + body), fill: 0 };
      }
      const f = this.frame;
      const n = Math.min(f.bytes.length - f.fill, chunk.length - at);
      chunk.copy(f.bytes, f.fill, at, at + n);
      f.fill += n;
      at += n;
      if (f.fill < f.bytes.length) return;
      this.frame = null;
      onFrame({ code: f.code, options: f.bytes.subarray(0, f.options), body: f.bytes.subarray(f.options) });
    }
  }

  /** Whether a frame (or its header) has begun and not yet ended. */
  get inFrame(): boolean {
    return this.frame !== null || this.headFill > 0;
  }

  /** Called at end of stream: a frame (or header) cut short is refused. */
  finish(): void {
    if (this.frame !== null || this.headFill > 0) {
      const got = this.frame ? FRAME_HEADER_BYTES + this.frame.fill : this.headFill;
      throw new P11KitError(E.TruncatedFrame, `connection closed inside a frame (${got} bytes of it received)`);
    }
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
