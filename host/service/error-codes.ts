/**
 * The vault service's error codes: a stable string and a stable number in 6000-6099 (never
 * renumbered; add at the end), the HTTP status, and fixed text. Every error answer is
 * `{ error: { code, num, message, field?, leader? } }` (`leader`: a 421 NOT_LEADER's leader's
 * client URL, when known: host/fleet/member-host.ts; openapi.yaml); the text is chosen here, never
 * taken from an exception, so no internal detail (paths, SQL, enclave state, stack traces) reaches
 * a client.
 *
 * `toServiceError` maps what the vault can throw (enclave faults, channel errors, storage
 * errors, a full engine queue) to these codes.
 */
import { ChannelError, ChannelErrorCode } from '../channel/channel.ts';
import { StorageCode, StorageError } from '../storage/types.ts';
import { EnclaveCallError } from '../vault/engine.ts';

export const ErrorCode = {
  BAD_REQUEST: { num: 6001, status: 400, message: 'the request is malformed' },
  MALFORMED_JSON: { num: 6002, status: 400, message: 'the body is not valid JSON' },
  UNSUPPORTED_MEDIA_TYPE: { num: 6003, status: 415, message: 'Content-Type must be application/json' },
  PAYLOAD_TOO_LARGE: { num: 6004, status: 413, message: 'the body is too large' },
  REQUEST_TIMEOUT: { num: 6005, status: 408, message: 'the request was not received in time' },
  NOT_FOUND: { num: 6006, status: 404, message: 'no such route' },
  METHOD_NOT_ALLOWED: { num: 6007, status: 405, message: 'method not allowed on this route' },
  RATE_LIMITED: { num: 6008, status: 429, message: 'too many requests; retry later' },
  BAD_RECORD_ID: { num: 6009, status: 400, message: 'recordId must be base64url (no padding) of 1 to 64 bytes' },
  BAD_MESSAGE: { num: 6010, status: 400, message: 'message must be base64url (no padding) of 1 to 4096 bytes' },
  REPLAYED: { num: 6011, status: 409, message: 'this sealed message was already submitted; seal a new one' },
  UNAUTHORIZED: { num: 6012, status: 401, message: 'missing or wrong bearer token' },
  SHUTTING_DOWN: { num: 6013, status: 503, message: 'the service is shutting down' },
  UNAVAILABLE: { num: 6014, status: 503, message: 'the vault is temporarily unavailable; retry later' },
  ENCLAVE_FAULT: { num: 6015, status: 500, message: 'the enclave could not process the request' },
  STORAGE_ERROR: { num: 6016, status: 500, message: 'the record store failed' },
  INTERNAL: { num: 6017, status: 500, message: 'internal error' },
  NOT_READY: { num: 6018, status: 503, message: 'not every partition is ready' },
  ENCLAVE_TIMEOUT: { num: 6019, status: 504, message: 'the enclave did not answer in time' },
  HEADERS_TOO_LARGE: { num: 6020, status: 431, message: 'the request line or headers are too large' },
  AUTH_TOKEN_REQUIRED: { num: 6021, status: 401, message: 'the operation needs the issuer token for its record (header bkv-auth-token)' },
  AUTH_TOKEN_REFUSED: { num: 6022, status: 403, message: 'the issuer token is not valid for this record' },
  NOT_LEADER: { num: 6023, status: 421, message: 'this member does not lead the fleet now; ask the leader' },
  // the fleet members' rows endpoint (host/fleet/rows-endpoint.ts): another member's host only
  PEER_AUTH_REQUIRED: { num: 6024, status: 401, message: 'this route is for the fleet\'s members: a peer credential is required' },
  PEER_AUTH_REFUSED: { num: 6025, status: 403, message: 'the peer credential is refused' },
  PEER_AUTH_BUSY: { num: 6026, status: 503, message: 'too many peer credentials in the window; retry later' },
  ROWS_NOT_SERVED: { num: 6027, status: 409, message: 'this member serves no copy of its rows now; ask another member that is not behind' },
  ROWS_BUSY: { num: 6028, status: 503, message: 'a copy of the rows is being served; retry later' },
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;

/** An error answer's body (openapi.yaml `Error`); `leader` only on 421 NOT_LEADER. */
export interface ServiceErrorJson {
  error: { code: string; num: number; message: string; field?: string; leader?: string };
}

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  readonly status: number;
  readonly num: number;
  constructor(
    readonly code: ErrorCodeName,
    readonly extra: { field?: string; retryAfterSeconds?: number; allow?: string; cause?: unknown; leader?: string } = {},
  ) {
    super(ErrorCode[code].message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.status = ErrorCode[code].status;
    this.num = ErrorCode[code].num;
  }

  toJSON(): ServiceErrorJson {
    return { error: { code: this.code, num: this.num, message: this.message, ...(this.extra.field && { field: this.extra.field }), ...(this.extra.leader && { leader: this.extra.leader }) } };
  }
}

/** What the vault threw, as a service error (5xx unless the cause is a transient refusal). */
export function toServiceError(e: unknown): ServiceError {
  if (e instanceof ServiceError) return e;
  if (e instanceof EnclaveCallError) return new ServiceError('ENCLAVE_FAULT', { cause: e });
  if (e instanceof ChannelError) {
    if (e.code === ChannelErrorCode.Timeout) return new ServiceError('ENCLAVE_TIMEOUT', { cause: e });
    // The record's partition is down (its device failed to boot or load): refused before any device saw it.
    if (e.code === ChannelErrorCode.NotReady) return new ServiceError('NOT_READY', { cause: e, retryAfterSeconds: 1 });
    if (e.code === ChannelErrorCode.Overloaded || e.code === ChannelErrorCode.Crashed || e.code === ChannelErrorCode.Closed) {
      return new ServiceError('UNAVAILABLE', { cause: e, retryAfterSeconds: 1 });
    }
    return new ServiceError('ENCLAVE_FAULT', { cause: e });
  }
  if (e instanceof StorageError) {
    if (e.code === StorageCode.Busy) return new ServiceError('UNAVAILABLE', { cause: e, retryAfterSeconds: 1 });
    return new ServiceError('STORAGE_ERROR', { cause: e });
  }
  // The engine refuses with plain errors when its queue is full or it is closing.
  if (e instanceof Error && e.message === 'partition queue full') return new ServiceError('UNAVAILABLE', { cause: e, retryAfterSeconds: 1 });
  if (e instanceof Error && e.message === 'partition engine closed') return new ServiceError('SHUTTING_DOWN', { cause: e });
  return new ServiceError('INTERNAL', { cause: e });
}

/** A short description of an error's kind for logs: its class and code, never its message or stack. */
export function errorKind(e: unknown): { errName: string; errCode?: number | string } {
  if (e instanceof ServiceError) return { errName: e.name, errCode: e.code };
  if (e instanceof EnclaveCallError || e instanceof ChannelError || e instanceof StorageError) return { errName: e.name, errCode: e.code };
  return { errName: e instanceof Error ? e.name : typeof e };
}
