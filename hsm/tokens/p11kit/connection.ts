/**
 * One client connection: one client process of p11-kit-client.so (p11-kit rpc-transport.c).
 * The client opens with its protocol version byte and the server answers with the version it
 * will speak (rpc-server.c `p11_kit_remote_serve_module`: the lower of the two); then frames
 * (frames.ts), each one request answered in order with the frame's call code echoed.
 *
 * Each connection has its own module instance, made at its C_Initialize and finalized at its
 * C_Finalize or when it closes, as p11-kit's server gives each client its own process: sessions,
 * logins and operations of one client are invisible to the others, while the token store (and
 * its PIN failure count) is shared through the store file.
 *
 * Refusals (errors.ts): a bad argument inside a known call is answered CKR_DEVICE_ERROR and the
 * connection goes on; a wrong C_Initialize handshake CKR_GENERAL_ERROR; an unknown call id, a
 * wrong signature, an oversized, truncated or unfinished frame, or a client that sends
 * requests without reading the answers closes this connection only. Every refusal is logged with
 * its code and the call's name, never with the bytes.
 */
import type { Socket } from 'node:net';
import * as P from '../../../enclave/api/pkcs11.ts';
import { RPC_PROTOCOL_VERSION } from './calls.ts';
import { RpcReader, RpcWriter } from './codec.ts';
import type { CodecLimits } from './codec.ts';
import { dispatch } from './dispatch.ts';
import type { CallContext } from './dispatch.ts';
import { P11KitError, P11KitErrorCode as E, p11KitErrorName } from './errors.ts';
import { FrameReader, encodeFrame } from './frames.ts';
import type { FrameLimits } from './frames.ts';

/** What the server logs: one event per connection opened, closed or refused. */
export interface P11KitLogEvent {
  event: 'connected' | 'closed' | 'refused';
  connection: number;
  /** The refusal's P11KitError name (refused only). */
  reason?: string;
  code?: number;
  /** The call being handled, when there was one. */
  call?: string;
  /** What the client was told: a CKR_ name, or that the connection was closed. */
  answer?: string;
}

export interface ConnectionOptions {
  id: number;
  newModule: () => P.Pkcs11;
  frameLimits: FrameLimits;
  codecLimits: CodecLimits;
  /** Bytes of answers waiting for the client to read before the server stops reading its requests. */
  maxUnreadAnswers: number;
  /** How long a frame may take from its first byte to its last before the connection is closed. */
  frameTimeoutMs: number;
  log: (e: P11KitLogEvent) => void;
}

export class Connection {
  private readonly frames: FrameReader;
  private mod: P.Pkcs11 | null = null;
  private closed = false;
  /** Running while a frame is partly received (a connection idle between frames has none). */
  private frameTimer: NodeJS.Timeout | null = null;
  private readonly ctx: CallContext;

  constructor(
    private readonly socket: Socket,
    private readonly opts: ConnectionOptions,
  ) {
    this.frames = new FrameReader(opts.frameLimits);
    const self = this;
    this.ctx = {
      limits: opts.codecLimits,
      decryptPending: new Map(),
      signLength: new Map(),
      module() {
        if (!self.mod) P.fail(P.CKR.CKR_CRYPTOKI_NOT_INITIALIZED);
        return self.mod;
      },
      initialize() {
        if (self.mod) P.fail(P.CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED, 'C_Initialize');
        const m = opts.newModule();
        m.C_Initialize();
        self.mod = m;
      },
      finalize() {
        self.ctx.module().C_Finalize();
        self.mod = null;
        self.ctx.decryptPending.clear();
        self.ctx.signLength.clear();
      },
    };
    opts.log({ event: 'connected', connection: opts.id });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  private refuse(e: P11KitError, answer: string, call?: string): void {
    this.opts.log({ event: 'refused', connection: this.opts.id, reason: p11KitErrorName(e.code), code: e.code, answer, ...(call && { call }) });
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.frames.feed(
        chunk,
        // p11-kit 0.24.1 takes any version byte and answers with the lower of it and its own.
        (v) => this.socket.write(Buffer.of(Math.min(v, RPC_PROTOCOL_VERSION))),
        (f) => {
          if (this.closed) return;
          this.socket.write(encodeFrame(f.code, this.handle(f.body)));
          if (this.socket.writableLength > this.opts.maxUnreadAnswers) throw new P11KitError(E.Flooding, 'client does not read its answers');
        },
      );
    } catch (e) {
      if (e instanceof P11KitError) this.refuse(e, 'connection closed');
      else this.opts.log({ event: 'refused', connection: this.opts.id, reason: e instanceof Error ? e.name : typeof e, answer: 'connection closed' });
      this.close();
      return;
    }
    this.watchFrame();
  }

  /** A frame left unfinished (bytes trickled in, then none) closes the connection after the frame timeout. */
  private watchFrame(): void {
    if (!this.frames.inFrame) {
      if (this.frameTimer) clearTimeout(this.frameTimer);
      this.frameTimer = null;
      return;
    }
    this.frameTimer ??= setTimeout(() => {
      this.refuse(new P11KitError(E.FrameTimeout, 'frame not finished in time'), 'connection closed');
      this.close();
    }, this.opts.frameTimeoutMs);
  }

  /** One request body to its response body; message-level faults (unknown call, bad signature) throw. */
  private handle(body: Buffer): Buffer {
    const r = new RpcReader(body);
    try {
      return dispatch(r, this.ctx);
    } catch (e) {
      if (e instanceof P11KitError) {
        // rpc-server.c: a bad handshake is CKR_GENERAL_ERROR, any other argument fault PARSE_ERROR (CKR_DEVICE_ERROR).
        const ckr = e.code === E.BadHandshake ? P.CKR.CKR_GENERAL_ERROR : P.CKR.CKR_DEVICE_ERROR;
        this.refuse(e, P.ckrName(ckr), r.call.name);
        return RpcWriter.error(ckr);
      }
      // Not a PKCS#11 error and not ours: a fault in the module. The client gets CKR_GENERAL_ERROR; the log names only its class.
      this.opts.log({ event: 'refused', connection: this.opts.id, reason: e instanceof Error ? e.name : typeof e, call: r.call.name, answer: 'CKR_GENERAL_ERROR' });
      return RpcWriter.error(P.CKR.CKR_GENERAL_ERROR);
    }
  }

  private onEnd(): void {
    try {
      this.frames.finish();
    } catch (e) {
      if (e instanceof P11KitError) this.refuse(e, 'connection closed');
    }
    this.close();
  }

  /** Ends the connection and finalizes its module (its sessions and logins go with it). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.frameTimer) clearTimeout(this.frameTimer);
    if (this.mod) {
      try {
        this.mod.C_Finalize();
      } catch {
        // The module is dropped either way.
      }
      this.mod = null;
    }
    this.socket.destroy();
    this.opts.log({ event: 'closed', connection: this.opts.id });
  }
}
