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
  ) {
    super(`${what}: expected ${expected.join(' or ')}, got ${describeResponse(actual, faultCode, faultField)}`);
  }
}

function describeResponse(type: string | undefined, code: number | undefined, field: string | undefined): string {
  if (type === undefined) return 'no answer';
  if (code === undefined) return type;
  return `${type} ${code} (${faultName(code)}${field ? `, field ${field}` : ''})`;
}

/**
 * `res` narrowed to `type` (or to one of `type` when a list is given); anything else (another
 * type, a Fault, undefined) throws UnexpectedResponse.
 */
export function expectResponse<M extends { type: string }, const T extends M['type']>(
  res: M | undefined,
  type: T | readonly T[],
  what: string,
): Extract<M, { type: T }> {
  const expected: readonly string[] = typeof type === 'string' ? [type] : type;
  if (res !== undefined && expected.includes(res.type)) return res as Extract<M, { type: T }>;
  const fault = res as { type: string; code?: unknown; field?: unknown } | undefined;
  const code = fault?.type === 'Fault' && typeof fault.code === 'number' ? fault.code : undefined;
  const field = code !== undefined && fault!.field instanceof Uint8Array && fault!.field.length > 0 ? new TextDecoder().decode(fault!.field) : undefined;
  throw new UnexpectedResponse(what, expected, res?.type, code, field);
}
