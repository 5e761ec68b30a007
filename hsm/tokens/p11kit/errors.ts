/**
 * The p11-kit RPC server's refusals: why a frame, a message or a connection was refused. Each is
 * logged with its code (never with the bytes that caused it) and answered on the wire as p11-kit's
 * own server answers (p11-kit rpc-server.c): a malformed argument inside a known call is
 * CKR_DEVICE_ERROR; a wrong C_Initialize handshake CKR_GENERAL_ERROR; an unknown call, a wrong
 * signature, a bad frame or one left unfinished closes the connection.
 */
import { codedErrorClass } from '../../../enclave/api/codes.ts';
import type { CodeOf } from '../../../enclave/api/codes.ts';

/** Stable codes (3200-3299: the p11-kit RPC server; never renumbered). */
export const P11KitErrorCode = {
  /** A frame header announces more options or body bytes than the server accepts. */
  FrameTooLarge: 3201,
  /** The connection ended inside a frame (a header, options or body cut short). */
  TruncatedFrame: 3202,
  /** The message names a call id outside the table, or the error call. */
  UnknownCall: 3203,
  /** The message's signature string is not the one of its call. */
  BadSignature: 3204,
  /** A field ends past the end of the message. */
  Truncated: 3205,
  /** Bytes left after the last field of the message. */
  TrailingBytes: 3206,
  /** A length or count is larger than the server accepts, or than the bytes that follow. */
  TooLong: 3207,
  /** A value the protocol does not allow (a flag byte other than 0 or 1, a nested template, a bad date). */
  InvalidValue: 3208,
  /** C_Initialize without the protocol's handshake string. */
  BadHandshake: 3209,
  /** The client sent more requests than it read answers to: the server stops reading from it. */
  Flooding: 3210,
  /** A frame begun and not finished within the frame timeout. */
  FrameTimeout: 3211,
} as const;
export type P11KitErrorCode = CodeOf<typeof P11KitErrorCode>;

export const P11KitError = codedErrorClass('P11KitError', P11KitErrorCode);
export type P11KitError = InstanceType<typeof P11KitError>;

const NAMES = new Map<number, string>(Object.entries(P11KitErrorCode).map(([k, v]) => [v, k]));

/** The name of a code (`FrameTooLarge`), for logs. */
export function p11KitErrorName(code: number): string {
  return NAMES.get(code) ?? String(code);
}
