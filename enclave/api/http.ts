/**
 * The vault service's HTTP wire format, a contract shared by the server (host/service/) and the
 * browser-safe client relay (client/http-relay.ts), so it lives here: JSON bodies, bytes as base64url without padding
 * (RFC 4648 §5), route paths and the error envelope. Pure TypeScript: no Node APIs, no Buffer.
 *
 * The decoder is strict: only the URL-safe alphabet, no padding, no whitespace, and the unused
 * low bits of the last character must be zero, so every byte string has exactly one encoding.
 */

/** Version of this HTTP API (the path prefix /v1). */
export const HTTP_API_VERSION = 1;

export const ROUTE = {
  info: '/v1/vault',
  ops: '/v1/records/{recordId}/ops',
  health: '/health',
  metrics: '/metrics',
} as const;

/** `GET /v1/vault`: what clients pin. Keys are base64url. */
export interface VaultInfoJson {
  enclavePublicKey: string;
  /** OPAQUE server public key by suite name (`ristretto255-SHA512`, `P256-SHA256`). */
  serverPublicKeys: Record<string, string>;
  partitions: number;
  apiVersion: number;
}

/** `POST /v1/records/{recordId}/ops` request body. */
export interface OpRequestJson {
  /** The client's HPKE-sealed operation. */
  message: string;
}

/** `POST /v1/records/{recordId}/ops` response body. */
export interface OpResponseJson {
  /** true: `response` is sealed to the client; false: a plain enclave fault (the request did not open). */
  sealed: boolean;
  response: string;
}

/** Every error response: a stable string code, its stable number (6000-6099) and fixed text. */
export interface ErrorJson {
  /** `leader`: the URL of the member that leads, in a fleet member's 421 NOT_LEADER (openapi.yaml). */
  error: { code: string; num: number; message: string; field?: string; leader?: string };
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

export function toBase64url(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]!;
  }
  return out;
}

/** Strict base64url (no padding, canonical); null when `s` is not one. */
export function fromBase64url(s: string): Uint8Array | null {
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? DECODE[c]! : -1;
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return null; // non-zero unused bits: not canonical
  return out;
}

/** The ops path of a record id. */
export function opsPath(recordId: Uint8Array): string {
  return `/v1/records/${toBase64url(recordId)}/ops`;
}

/** The request header that carries the issuer token of an operation, for the service's early check (lower case, as node:http gives it). */
export const AUTH_TOKEN_HEADER = 'bkv-auth-token';
