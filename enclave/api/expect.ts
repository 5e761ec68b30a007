/**
 * One typed check of a decoded response's type, for the code that drives the device by hand
 * (tests, fuzz targets, benchmarks, adversarial scripts): `expectResponse(res, 'Registered', what)`
 * returns `res` narrowed to that message type, or throws an `UnexpectedResponse` that names what
 * was expected and what came (a Fault with its code, name and field; no answer at all).
 * The host and client check answers against `HOST_RESPONSE_OF` (messages.ts) themselves.
 */
import { faultName } from './codes.ts';

/** A response of another type than the one expected (or none). */
export class UnexpectedResponse extends Error {
  override readonly name = 'UnexpectedResponse';
  constructor(
    /** What the caller was doing, for the message. */
    readonly what: string,
    readonly expected: readonly string[],
    /** The type that came, `undefined` when nothing came. */
    readonly actual: string | undefined,
    /** The Fault's code when a Fault came. */
    readonly faultCode?: number,
    /** The Fault's field when a Fault named one. */
    readonly faultField?: string,
    /** The Fault's text (a host Fault carries one: fixed text chosen by the enclave, never a secret). */
    readonly faultMessage?: string,
  ) {
    super(`${what}: expected ${expected.join(' or ')}, got ${describeResponse(actual, faultCode, faultField, faultMessage)}`);
  }
}

function describeResponse(type: string | undefined, code: number | undefined, field: string | undefined, text: string | undefined): string {
  if (type === undefined) return 'no answer';
  if (code === undefined) return type;
  return `${type} ${code} (${faultName(code)}${field ? `, field ${field}` : ''}${text ? `: ${text}` : ''})`;
}

const td = new TextDecoder();
const textOf = (b: unknown): string | undefined => (b instanceof Uint8Array && b.length > 0 ? td.decode(b) : undefined);

/**
 * `res` narrowed to `type` (or to one of `type` when a list is given); anything else (another
 * type, a Fault, nothing: undefined or null) throws UnexpectedResponse.
 */
export function expectResponse<M extends { type: string }, const T extends M['type']>(
  res: M | undefined | null,
  type: T | readonly T[],
  what: string,
): Extract<M, { type: T }> {
  const expected: readonly string[] = typeof type === 'string' ? [type] : type;
  if (res != null && expected.includes(res.type)) return res as Extract<M, { type: T }>;
  const fault = (res ?? undefined) as { type: string; code?: unknown; field?: unknown; message?: unknown } | undefined;
  if (fault?.type !== 'Fault' || typeof fault.code !== 'number') throw new UnexpectedResponse(what, expected, fault?.type);
  throw new UnexpectedResponse(what, expected, fault.type, fault.code, textOf(fault.field), textOf(fault.message));
}
