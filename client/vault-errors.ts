/**
 * The typed failures of the vault service's HTTP transport (client/http-relay.ts,
 * client/vault-members.ts). Browser-safe.
 *
 * - `VaultHttpError`: an HTTP error answer (its stable `code` and `num`, the status,
 *   `retryAfterSeconds` from `Retry-After`, and the `leader` a 421 NOT_LEADER names).
 * - `VaultTransportError`: no usable answer (network failure, timeout, a body that is not the
 *   API's JSON); `unsent` is true only when the connection could not be made, so nothing left.
 * - `VaultKeyMismatchError`: a member whose live enclave key is not the pinned one (refused).
 * - `VaultMembersError`: every member was tried (client/vault-members.ts: once each, a named
 *   leader once more) and none took the request.
 * - `VaultUrlError`: a list of member URLs the client can not use.
 */

/** An HTTP error answer from the vault service. */
export class VaultHttpError extends Error {
  override readonly name = 'VaultHttpError';
  constructor(
    readonly status: number,
    /** The stable error code (`RATE_LIMITED`), or `HTTP_<status>` when the body had none. */
    readonly code: string,
    /** The stable error number (6000-6099), or 0 when the body had none. */
    readonly num: number,
    /** Seconds to wait, from `Retry-After` (429, 503), when given. */
    readonly retryAfterSeconds: number | undefined,
    message: string,
    /** The leader's client URL a 421 NOT_LEADER names (a hint from the member: followed only if configured). */
    readonly leader?: string,
  ) {
    super(`vault service ${status} ${code}: ${message}${leader === undefined ? '' : ` (leader ${leader})`}`);
  }

  get rateLimited(): boolean {
    return this.status === 429;
  }
}

/** No usable answer: the network failed, the deadline passed, or the body was not the API's JSON. */
export class VaultTransportError extends Error {
  override readonly name: string = 'VaultTransportError';
  /** The connection could not be made: the request certainly did not leave this client. */
  readonly unsent: boolean;
  constructor(message: string, options: ErrorOptions & { unsent?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.unsent = options.unsent ?? false;
  }
}

/** A member's live enclave key is not the pinned one: it gets nothing, and the operation stops here. */
export class VaultKeyMismatchError extends Error {
  override readonly name = 'VaultKeyMismatchError';
  constructor(readonly member: string) {
    super(`the vault at ${member} does not have the pinned enclave key: refusing to talk to it`);
  }
}

/** Every member was tried and none took the request; `attempts` says what each answered, in order (a followed leader twice). */
export class VaultMembersError extends VaultTransportError {
  override readonly name: string = 'VaultMembersError';
  constructor(readonly attempts: readonly { member: string; error: Error }[]) {
    super(`no member of the vault took the request: ${attempts.map((a) => `${a.member}: ${a.error.message}`).join('; ')}`);
  }
}

/** A list of member URLs the client can not use (empty item, not http(s), duplicate, too many). */
export class VaultUrlError extends Error {
  override readonly name = 'VaultUrlError';
}
