/**
 * The issuer's side of per-user authorization (the rules are in enclave/api/auth.ts): Ed25519 key
 * files and token minting with `jose`, and the issuer set a vault is provisioned with.
 *
 * Files (JSON Web Keys, RFC 7517 / RFC 8037, with two members of ours):
 *   issuer.key  the private JWK (`d`), mode 0600: `{ kty, crv, x, d, kid, iss }`
 *   issuer.pub  the public JWK: `{ kty, crv, x, kid, iss }`
 * `kid` is the RFC 7638 thumbprint of the public key, `iss` the issuer's name (the `iss` claim of
 * its tokens).
 *
 * `DATA/auth/config.json` is the issuer set the host hands to every device at boot
 * (`{ audience, development, minPacing, issuers: [{ name, x }] }`); the enclave keeps its hash in NVRAM and
 * refuses to serve under another, so editing this file can not let a host mint its own tokens.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, importJWK } from 'jose';
import { DEFAULT_AUDIENCE, MAX_ISSUERS, MAX_TOKEN_LIFETIME_S, base64url, fromBase64url, issuerKid } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { PACING, isPacing } from '../../enclave/api/pacing.ts';
import { writeFileDurably } from '../../hsm/durable-file.ts';

/** Atomic and durable (temp file, fsync, rename, fsync of the folder); then the file's mode. */
function writeText(file: string, text: string, mode: number): void {
  writeFileDurably(file, Buffer.from(text));
  fs.chmodSync(file, mode);
}

export class AuthSetupError extends Error {
  override readonly name = 'AuthSetupError';
}

export interface IssuerPublic {
  name: string;
  publicKey: Uint8Array;
  kid: string;
}
export interface IssuerPrivate extends IssuerPublic {
  /** The private JWK, as jose imports it. */
  jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string; d: string };
}

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new AuthSetupError(`${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new AuthSetupError(`${what} ${file}: not a JSON object`);
  }
}

function keyBytes(v: unknown, file: string, member: string): Uint8Array {
  let b: Uint8Array | null = null;
  try {
    if (typeof v === 'string') b = fromBase64url(v);
  } catch {
    b = null;
  }
  if (!b || b.length !== 32) throw new AuthSetupError(`${file}: "${member}" must be 32 bytes of base64url (an Ed25519 key)`);
  return b;
}

function issuerName(v: unknown, file: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) throw new AuthSetupError(`${file}: "iss" must be the issuer's name (1..128 characters)`);
  return v;
}

/** Reads an `issuer.pub` (or the public half of an `issuer.key`). */
export function readIssuerPublic(file: string): IssuerPublic {
  const j = readJson(file, 'issuer key');
  if (j.kty !== 'OKP' || j.crv !== 'Ed25519') throw new AuthSetupError(`${file}: not an Ed25519 JWK (kty OKP, crv Ed25519)`);
  const publicKey = keyBytes(j.x, file, 'x');
  const kid = issuerKid(publicKey);
  if (j.kid !== undefined && j.kid !== kid) throw new AuthSetupError(`${file}: "kid" is not the key's RFC 7638 thumbprint`);
  return { name: issuerName(j.iss, file), publicKey, kid };
}

export function readIssuerPrivate(file: string): IssuerPrivate {
  const pub = readIssuerPublic(file);
  const j = readJson(file, 'issuer key');
  keyBytes(j.d, file, 'd');
  return { ...pub, jwk: { kty: 'OKP', crv: 'Ed25519', x: j.x as string, d: j.d as string } };
}

/** A new issuer key pair, in memory. */
export async function newIssuer(name: string): Promise<IssuerPrivate> {
  issuerName(name, '--name');
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const pubJwk = await exportJWK(publicKey);
  const privJwk = await exportJWK(privateKey);
  const raw = fromBase64url(pubJwk.x!);
  return { name, publicKey: raw, kid: issuerKid(raw), jwk: { kty: 'OKP', crv: 'Ed25519', x: pubJwk.x!, d: privJwk.d! } };
}

/** Makes an issuer key pair: `DIR/issuer.key` (0600) and `DIR/issuer.pub`. Refuses to overwrite. */
export async function generateIssuer(dir: string, name: string): Promise<IssuerPublic> {
  issuerName(name, '--name');
  const keyFile = path.join(dir, 'issuer.key');
  const pubFile = path.join(dir, 'issuer.pub');
  for (const f of [keyFile, pubFile]) if (fs.existsSync(f)) throw new AuthSetupError(`${f} exists; not overwriting an issuer key`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const i = await newIssuer(name);
  const pub = { kty: 'OKP', crv: 'Ed25519', x: i.jwk.x, kid: i.kid, iss: name };
  writeText(keyFile, JSON.stringify({ ...pub, d: i.jwk.d }, null, 2) + '\n', 0o600);
  writeText(pubFile, JSON.stringify(pub, null, 2) + '\n', 0o644);
  return { name, publicKey: i.publicKey, kid: i.kid };
}

/** Parses `10m`, `90s`, `1h` or a number of seconds. */
export function parseTtl(s: string): number {
  const m = /^(\d+)([smh]?)$/.exec(s);
  if (!m) throw new AuthSetupError(`--ttl wants seconds or N[s|m|h], got ${JSON.stringify(s)}`);
  const n = Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
  if (n < 1 || n > MAX_TOKEN_LIFETIME_S) throw new AuthSetupError(`--ttl must be 1 s..${MAX_TOKEN_LIFETIME_S / 60} min (tokens are short-lived)`);
  return n;
}

/** A token for one record id (enclave/api/auth.ts), valid from `nowS` for `ttlS` seconds. */
/** Each issuer's signing key, imported once (an import costs about as much as the signature). */
const signingKeys = new WeakMap<IssuerPrivate, ReturnType<typeof importJWK>>();

export async function mintToken(
  issuer: IssuerPrivate,
  opts: { subject: string; audience?: string; ttlS?: number; nowS?: number },
): Promise<string> {
  const now = opts.nowS ?? Math.floor(Date.now() / 1000);
  const ttl = opts.ttlS ?? 600;
  let imported = signingKeys.get(issuer);
  if (!imported) {
    imported = importJWK(issuer.jwk, 'EdDSA');
    imported.catch(() => signingKeys.delete(issuer));
    signingKeys.set(issuer, imported);
  }
  const key = await imported;
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: issuer.kid, typ: 'JWT' })
    .setIssuer(issuer.name)
    .setAudience(opts.audience ?? DEFAULT_AUDIENCE)
    .setSubject(opts.subject)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .setJti(base64url(randomBytes(12)))
    .sign(key);
}

/** What the host stores and hands to the devices (DATA/auth/config.json). */
export interface StoredAuth {
  config: AuthConfig;
  /** Made by `bkv serve` without `--auth-issuer`: its issuer key sits in the data folder. */
  development: boolean;
}

export const authConfigFile = (dataDir: string) => path.join(dataDir, 'auth', 'config.json');

export function readStoredAuth(dataDir: string): StoredAuth | null {
  const file = authConfigFile(dataDir);
  if (!fs.existsSync(file)) return null;
  const j = readJson(file, 'auth config');
  if (typeof j.audience !== 'string' || !Array.isArray(j.issuers) || j.issuers.length === 0 || j.issuers.length > MAX_ISSUERS) {
    throw new AuthSetupError(`${file}: expected { audience, development, issuers: [{ name, x }] } with 1..${MAX_ISSUERS} issuers`);
  }
  const issuers = j.issuers.map((i: unknown) => {
    const o = (i ?? {}) as Record<string, unknown>;
    return { name: issuerName(o.name, file), publicKey: keyBytes(o.x, file, 'x') };
  });
  const minPacing = j.minPacing === undefined ? PACING.standard : j.minPacing;
  if (typeof minPacing !== 'number' || !isPacing(minPacing)) throw new AuthSetupError(`${file}: "minPacing" must be a pacing schedule code (enclave/api/pacing.ts)`);
  return { config: { audience: j.audience, issuers, minPacing }, development: j.development === true };
}

export function writeStoredAuth(dataDir: string, a: StoredAuth): void {
  const file = authConfigFile(dataDir);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const body = {
    audience: a.config.audience,
    development: a.development,
    minPacing: a.config.minPacing ?? PACING.standard,
    issuers: a.config.issuers.map((i) => ({ name: i.name, x: base64url(i.publicKey), kid: issuerKid(i.publicKey) })),
  };
  writeText(file, JSON.stringify(body, null, 2) + '\n', 0o644);
}

export function sameAuth(a: AuthConfig, b: AuthConfig): boolean {
  return (
    a.audience === b.audience &&
    (a.minPacing ?? PACING.standard) === (b.minPacing ?? PACING.standard) &&
    a.issuers.length === b.issuers.length &&
    a.issuers.every((x, i) => x.name === b.issuers[i]!.name && base64url(x.publicKey) === base64url(b.issuers[i]!.publicKey))
  );
}

/**
 * The issuer set `bkv serve` runs with: the `--auth-issuer` files when given; else the set the
 * data folder was provisioned with; else development mode, which makes an issuer key pair at
 * `DATA/auth/issuer.key` / `.pub` (anyone who reads the data folder can then mint tokens).
 */
export async function resolveServeAuth(dataDir: string, opts: { issuerFiles: string[]; audience?: string }): Promise<StoredAuth & { devKeyFile?: string }> {
  const stored = readStoredAuth(dataDir);
  if (opts.issuerFiles.length > 0) {
    if (opts.issuerFiles.length > MAX_ISSUERS) throw new AuthSetupError(`at most ${MAX_ISSUERS} --auth-issuer`);
    const config: AuthConfig = {
      audience: opts.audience ?? stored?.config.audience ?? DEFAULT_AUDIENCE,
      issuers: opts.issuerFiles.map((f) => {
        const i = readIssuerPublic(f);
        return { name: i.name, publicKey: i.publicKey };
      }),
    };
    if (stored && !sameAuth(stored.config, config)) {
      throw new AuthSetupError(
        `this vault was provisioned with another issuer set (${authConfigFile(dataDir)}); the enclave refuses to serve under a different one, and changing it needs the operator secret`,
      );
    }
    return { config, development: false };
  }
  if (stored) {
    if (opts.audience !== undefined && opts.audience !== stored.config.audience) {
      throw new AuthSetupError(`this vault was provisioned for audience ${JSON.stringify(stored.config.audience)}`);
    }
    return stored.development ? { ...stored, devKeyFile: path.join(dataDir, 'auth', 'issuer.key') } : stored;
  }
  const dir = path.join(dataDir, 'auth');
  const keyFile = path.join(dir, 'issuer.key');
  const pub = fs.existsSync(keyFile) ? readIssuerPublic(keyFile) : await generateIssuer(dir, 'bkv-development');
  return { config: { audience: opts.audience ?? DEFAULT_AUDIENCE, issuers: [{ name: pub.name, publicKey: pub.publicKey }] }, development: true, devKeyFile: keyFile };
}
