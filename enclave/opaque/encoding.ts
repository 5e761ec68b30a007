/**
 * Strict wire encodings of every RFC 9807 message: RegistrationRequest, RegistrationResponse,
 * RegistrationRecord (§5.1), Envelope (§4.1.1), CredentialRequest, CredentialResponse (§6.3.1),
 * AuthRequest, AuthResponse, KE1, KE2, KE3 (§6.1). All are fixed-length concatenations
 * (RFC 8446 §3 presentation language, no length prefixes), so a decoder knows the exact length
 * from the Suite: anything else is InvalidLength naming the message, with expected and actual
 * length (a longer input is reported as trailing bytes). Every group element is validated with
 * group.checkElement naming its RFC field (RFC 9497 §2.1 DeserializeElement).
 *
 * Decoded fields are views into the input (no copies); copy them if the input will change.
 */
import { concat } from './bytes.ts';
import { OpaqueError, OpaqueErrorCode, invalidLength } from './errors.ts';
import type { Suite } from './suite.ts';

export type MessageName =
  | 'RegistrationRequest' | 'RegistrationResponse' | 'RegistrationRecord' | 'Envelope'
  | 'CredentialRequest' | 'CredentialResponse' | 'AuthRequest' | 'AuthResponse' | 'KE1' | 'KE2' | 'KE3';

export const MESSAGE_NAMES: readonly MessageName[] = [
  'RegistrationRequest', 'RegistrationResponse', 'RegistrationRecord', 'Envelope', 'CredentialRequest',
  'CredentialResponse', 'AuthRequest', 'AuthResponse', 'KE1', 'KE2', 'KE3',
];

/** One fixed-length field: its RFC name, length, and whether it is a group element. */
export interface FieldSpec { readonly name: string; readonly len: number; readonly element: boolean }
type Layouts = Record<MessageName, { fields: readonly FieldSpec[]; len: number }>;

const layoutCache = new WeakMap<Suite, Layouts>();

/** The field layout of every message for `suite` (lengths from RFC 9807 §4.1.1, §5.1, §6.1, §6.3.1). */
export function layouts(suite: Suite): Layouts {
  let l = layoutCache.get(suite);
  if (l) return l;
  const { Noe, Npk, Nh, Nn, Nm } = suite;
  const f = (name: string, len: number, element = false): FieldSpec => ({ name, len, element });
  const envelope = [f('envelope_nonce', Nn), f('auth_tag', Nm)];
  const credReq = [f('blinded_message', Noe, true)];
  const credResp = [f('evaluated_message', Noe, true), f('masking_nonce', Nn), f('masked_response', Npk + Nn + Nm)];
  const authReq = [f('client_nonce', Nn), f('client_public_keyshare', Npk, true)];
  const authResp = [f('server_nonce', Nn), f('server_public_keyshare', Npk, true), f('server_mac', Nm)];
  const all: Record<MessageName, FieldSpec[]> = {
    RegistrationRequest: credReq,
    RegistrationResponse: [f('evaluated_message', Noe, true), f('server_public_key', Npk, true)],
    RegistrationRecord: [f('client_public_key', Npk, true), f('masking_key', Nh), f('envelope', Nn + Nm)],
    Envelope: envelope,
    CredentialRequest: credReq,
    CredentialResponse: credResp,
    AuthRequest: authReq,
    AuthResponse: authResp,
    KE1: [...credReq, ...authReq],
    KE2: [...credResp, ...authResp],
    KE3: [f('client_mac', Nm)],
  };
  l = {} as Layouts;
  for (const name of MESSAGE_NAMES) {
    const fields = Object.freeze(all[name]);
    l[name] = Object.freeze({ fields, len: fields.reduce((n, x) => n + x.len, 0) });
  }
  layoutCache.set(suite, Object.freeze(l));
  return l;
}

/** The exact encoded length of `name` under `suite`. */
export function messageLength(suite: Suite, name: MessageName): number {
  return layouts(suite)[name].len;
}

function lengthError(name: string, expected: number, actual: number): OpaqueError {
  const e = invalidLength(name, expected, actual);
  if (actual > expected) {
    return new OpaqueError(OpaqueErrorCode.InvalidLength, `${e.message} (${actual - expected} trailing bytes)`, name);
  }
  return e;
}

/**
 * Splits `b` into the fields of `name` after checking only its total length. The caller must
 * validate element fields itself (the server's scalar multiplications do, naming the field).
 */
export function splitMessage(suite: Suite, name: MessageName, b: Uint8Array): Uint8Array[] {
  const { fields, len } = layouts(suite)[name];
  if (!(b instanceof Uint8Array)) throw lengthError(name, len, -1);
  if (b.length !== len) throw lengthError(name, len, b.length);
  const out: Uint8Array[] = new Array(fields.length);
  for (let i = 0, off = 0; i < fields.length; off += fields[i]!.len, i++) out[i] = b.subarray(off, off + fields[i]!.len);
  return out;
}

/** splitMessage plus group.checkElement on every element field. */
export function decodeFields(suite: Suite, name: MessageName, b: Uint8Array): Uint8Array[] {
  const parts = splitMessage(suite, name, b);
  const { fields } = layouts(suite)[name];
  for (let i = 0; i < fields.length; i++) if (fields[i]!.element) suite.group.checkElement(parts[i]!, fields[i]!.name);
  return parts;
}

/** Checks every field's length (and element validity) and concatenates. */
export function encodeFields(suite: Suite, name: MessageName, values: readonly Uint8Array[]): Uint8Array {
  const { fields } = layouts(suite)[name];
  if (values.length !== fields.length) throw new OpaqueError(OpaqueErrorCode.InvalidArgument, `${name}: ${fields.length} fields expected`);
  for (let i = 0; i < fields.length; i++) {
    const v = values[i], s = fields[i]!;
    if (!(v instanceof Uint8Array)) throw invalidLength(s.name, s.len, -1);
    if (v.length !== s.len) throw invalidLength(s.name, s.len, v.length);
    if (s.element) suite.group.checkElement(v, s.name);
  }
  return concat(...values);
}

export interface RegistrationRequest { blindedMessage: Uint8Array }
export interface RegistrationResponse { evaluatedMessage: Uint8Array; serverPublicKey: Uint8Array }
export interface Envelope { envelopeNonce: Uint8Array; authTag: Uint8Array }
/** `envelope` is the encoded Envelope (Nn + Nm bytes); decode it with decodeEnvelope. */
export interface RegistrationRecord { clientPublicKey: Uint8Array; maskingKey: Uint8Array; envelope: Uint8Array }
export interface CredentialRequest { blindedMessage: Uint8Array }
export interface CredentialResponse { evaluatedMessage: Uint8Array; maskingNonce: Uint8Array; maskedResponse: Uint8Array }
export interface AuthRequest { clientNonce: Uint8Array; clientPublicKeyshare: Uint8Array }
export interface AuthResponse { serverNonce: Uint8Array; serverPublicKeyshare: Uint8Array; serverMac: Uint8Array }
export interface KE1 { credentialRequest: CredentialRequest; authRequest: AuthRequest }
export interface KE2 { credentialResponse: CredentialResponse; authResponse: AuthResponse }
export interface KE3 { clientMac: Uint8Array }

type Parts = Uint8Array[];
const at = (p: Parts, i: number): Uint8Array => p[i]!;

export const decodeRegistrationRequest = (s: Suite, b: Uint8Array): RegistrationRequest =>
  ({ blindedMessage: at(decodeFields(s, 'RegistrationRequest', b), 0) });
export const encodeRegistrationRequest = (s: Suite, m: RegistrationRequest): Uint8Array =>
  encodeFields(s, 'RegistrationRequest', [m.blindedMessage]);

export function decodeRegistrationResponse(s: Suite, b: Uint8Array): RegistrationResponse {
  const p = decodeFields(s, 'RegistrationResponse', b);
  return { evaluatedMessage: at(p, 0), serverPublicKey: at(p, 1) };
}
export const encodeRegistrationResponse = (s: Suite, m: RegistrationResponse): Uint8Array =>
  encodeFields(s, 'RegistrationResponse', [m.evaluatedMessage, m.serverPublicKey]);

export function decodeEnvelope(s: Suite, b: Uint8Array): Envelope {
  const p = decodeFields(s, 'Envelope', b);
  return { envelopeNonce: at(p, 0), authTag: at(p, 1) };
}
export const encodeEnvelope = (s: Suite, m: Envelope): Uint8Array => encodeFields(s, 'Envelope', [m.envelopeNonce, m.authTag]);

export function decodeRegistrationRecord(s: Suite, b: Uint8Array): RegistrationRecord {
  const p = decodeFields(s, 'RegistrationRecord', b);
  return { clientPublicKey: at(p, 0), maskingKey: at(p, 1), envelope: at(p, 2) };
}
export const encodeRegistrationRecord = (s: Suite, m: RegistrationRecord): Uint8Array =>
  encodeFields(s, 'RegistrationRecord', [m.clientPublicKey, m.maskingKey, m.envelope]);

export const decodeCredentialRequest = (s: Suite, b: Uint8Array): CredentialRequest =>
  ({ blindedMessage: at(decodeFields(s, 'CredentialRequest', b), 0) });
export const encodeCredentialRequest = (s: Suite, m: CredentialRequest): Uint8Array =>
  encodeFields(s, 'CredentialRequest', [m.blindedMessage]);

const credResp = (p: Parts, o: number): CredentialResponse =>
  ({ evaluatedMessage: at(p, o), maskingNonce: at(p, o + 1), maskedResponse: at(p, o + 2) });
const credRespParts = (m: CredentialResponse): Uint8Array[] => [m.evaluatedMessage, m.maskingNonce, m.maskedResponse];
export const decodeCredentialResponse = (s: Suite, b: Uint8Array): CredentialResponse =>
  credResp(decodeFields(s, 'CredentialResponse', b), 0);
export const encodeCredentialResponse = (s: Suite, m: CredentialResponse): Uint8Array =>
  encodeFields(s, 'CredentialResponse', credRespParts(m));

const authReq = (p: Parts, o: number): AuthRequest => ({ clientNonce: at(p, o), clientPublicKeyshare: at(p, o + 1) });
export const decodeAuthRequest = (s: Suite, b: Uint8Array): AuthRequest => authReq(decodeFields(s, 'AuthRequest', b), 0);
export const encodeAuthRequest = (s: Suite, m: AuthRequest): Uint8Array =>
  encodeFields(s, 'AuthRequest', [m.clientNonce, m.clientPublicKeyshare]);

const authResp = (p: Parts, o: number): AuthResponse =>
  ({ serverNonce: at(p, o), serverPublicKeyshare: at(p, o + 1), serverMac: at(p, o + 2) });
const authRespParts = (m: AuthResponse): Uint8Array[] => [m.serverNonce, m.serverPublicKeyshare, m.serverMac];
export const decodeAuthResponse = (s: Suite, b: Uint8Array): AuthResponse => authResp(decodeFields(s, 'AuthResponse', b), 0);
export const encodeAuthResponse = (s: Suite, m: AuthResponse): Uint8Array => encodeFields(s, 'AuthResponse', authRespParts(m));

export function decodeKE1(s: Suite, b: Uint8Array): KE1 {
  const p = decodeFields(s, 'KE1', b);
  return { credentialRequest: { blindedMessage: at(p, 0) }, authRequest: authReq(p, 1) };
}
export const encodeKE1 = (s: Suite, m: KE1): Uint8Array =>
  encodeFields(s, 'KE1', [m.credentialRequest.blindedMessage, m.authRequest.clientNonce, m.authRequest.clientPublicKeyshare]);

export function decodeKE2(s: Suite, b: Uint8Array): KE2 {
  const p = decodeFields(s, 'KE2', b);
  return { credentialResponse: credResp(p, 0), authResponse: authResp(p, 3) };
}
export const encodeKE2 = (s: Suite, m: KE2): Uint8Array =>
  encodeFields(s, 'KE2', [...credRespParts(m.credentialResponse), ...authRespParts(m.authResponse)]);

export const decodeKE3 = (s: Suite, b: Uint8Array): KE3 => ({ clientMac: at(decodeFields(s, 'KE3', b), 0) });
export const encodeKE3 = (s: Suite, m: KE3): Uint8Array => encodeFields(s, 'KE3', [m.clientMac]);
