/**
 * Public API of the OPAQUE core: RFC 9807 OPAQUE-3DH (client, server, message codecs, key
 * stretching) over the RFC 9497 base-mode OPRF. Every message is its exact RFC 9807 encoding.
 *
 * Published as `backup-key-vault/opaque`. A suite comes from `fastSuite(id)` (server side:
 * libsodium WebAssembly and node:crypto, Node only) or `portableSuite(id)` (@noble only, any
 * JavaScript runtime); both give the same bytes. A browser bundle imports
 * `backup-key-vault/opaque/client` with `portableSuite` from `backup-key-vault/client`, so that
 * neither node:crypto nor the server code is reachable.
 * @module backup-key-vault/opaque
 */
export { OpaqueError, OpaqueErrorCode } from './errors.ts';
export type { RandomSource } from './bytes.ts';
export type { Suite, SuiteId } from './suite.ts';
export { DEFAULT_SUITE, SUITE_IDS, parseSuiteId } from './suite.ts';
export { fastSuite } from './suites-fast.ts';
export { portableSuite } from './suites-portable.ts';

export {
  type Ksf, type Argon2idParams, identityKsf, argon2idKsf, DEFAULT_ARGON2ID, ARGON2ID_LIMITS, encodeKsfParams, ksfFromParams,
} from './ksf.ts';

export {
  type Identities, type ClientOptions, type ClientLoginResult, type ClientRegistrationState, type ClientLoginState,
  clientRegistrationStart, clientRegistrationFinish, clientLoginStart, clientLoginFinish,
} from './client.ts';

export {
  type ServerKeys, type ServerOptions, type FakeRecord, type ServerLoginResult, type ServerLoginState,
  serverRegistrationResponse, serverLoginStart, serverLoginFinish, deriveServerKeyPair, generateServerKeys,
  generateFakeRecord, checkServerKeys, serverLoginStateEncode, serverLoginStateDecode,
} from './server.ts';

export {
  type MessageName, type RegistrationRequest, type RegistrationResponse, type RegistrationRecord, type Envelope,
  type CredentialRequest, type CredentialResponse, type AuthRequest, type AuthResponse, type KE1, type KE2, type KE3,
  MESSAGE_NAMES, messageLength,
  decodeRegistrationRequest, encodeRegistrationRequest, decodeRegistrationResponse, encodeRegistrationResponse,
  decodeRegistrationRecord, encodeRegistrationRecord, decodeEnvelope, encodeEnvelope,
  decodeCredentialRequest, encodeCredentialRequest, decodeCredentialResponse, encodeCredentialResponse,
  decodeAuthRequest, encodeAuthRequest, decodeAuthResponse, encodeAuthResponse,
  decodeKE1, encodeKE1, decodeKE2, encodeKE2, decodeKE3, encodeKE3,
} from './encoding.ts';

export { deriveKeyPair, blind, blindEvaluate, finalize, evaluate } from './oprf.ts';
