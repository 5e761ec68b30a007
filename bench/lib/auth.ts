/**
 * Issuer tokens for the benches (per-user authorization, enclave/api/auth.ts): a real issuer key
 * pair (host/auth/issuer.ts) whose set the vault is provisioned with, and one token per record id,
 * minted the first time it is asked for and reused, as a client reuses its token across its
 * LoginStart and LoginFinish (and across logins while it is valid). So the enclave path pays what
 * it pays in production: one signature verification per token (at its first operation), then a
 * cache hit per operation.
 *
 * Tokens carry the claims of `mintToken` (iss, aud, sub, iat, exp, jti; EdDSA, the issuer's kid),
 * signed here with node:crypto synchronously, so that load generators can prepare thousands of
 * messages in a loop; a token is minted again when half its lifetime has passed.
 */
import { PACING } from '../../enclave/api/pacing.ts';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { DEFAULT_AUDIENCE, base64url } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { generateIssuer, newIssuer, readIssuerPrivate } from '../../host/auth/issuer.ts';
import type { IssuerPrivate } from '../../host/auth/issuer.ts';

const te = new TextEncoder();
const td = new TextDecoder();

export class BenchTokens {
  private readonly key: KeyObject;
  private readonly header: string;
  private readonly tokens = new Map<string, { text: string; bytes: Uint8Array; atMs: number }>();

  private constructor(
    readonly issuer: IssuerPrivate,
    readonly ttlS = 600,
    readonly audience = DEFAULT_AUDIENCE,
  ) {
    this.key = createPrivateKey({ key: { ...issuer.jwk }, format: 'jwk' });
    this.header = base64url(te.encode(JSON.stringify({ alg: 'EdDSA', kid: issuer.kid, typ: 'JWT' })));
  }

  /** An issuer in memory (in-process vaults: pass `config` to VaultHost.open or the platform). */
  static async create(name = 'bkv-bench'): Promise<BenchTokens> {
    return new BenchTokens(await newIssuer(name));
  }

  /** An issuer whose key files are written to `dir` (`bkv serve --auth-issuer DIR/issuer.pub`). */
  static async inDir(dir: string, name = 'bkv-bench'): Promise<{ tokens: BenchTokens; pubFile: string }> {
    await generateIssuer(dir, name);
    return { tokens: new BenchTokens(readIssuerPrivate(join(dir, 'issuer.key'))), pubFile: join(dir, 'issuer.pub') };
  }

  /** The issuer set a vault is provisioned with. */
  get config(): AuthConfig {
    return { audience: this.audience, issuers: [{ name: this.issuer.name, publicKey: this.issuer.publicKey }], minPacing: PACING.none };
  }

  /** A fresh token for `recordId` (not cached): what a client gets for each new session. */
  mint(recordId: Uint8Array, nowMs = Date.now()): string {
    const iat = Math.floor(nowMs / 1000);
    const claims = { iss: this.issuer.name, aud: this.audience, sub: td.decode(recordId), iat, exp: iat + this.ttlS, jti: base64url(randomBytes(12)) };
    const input = `${this.header}.${base64url(te.encode(JSON.stringify(claims)))}`;
    return `${input}.${base64url(new Uint8Array(sign(null, Buffer.from(input), this.key)))}`;
  }

  private entry(recordId: Uint8Array) {
    const k = Buffer.from(recordId).toString('latin1');
    const now = Date.now();
    let e = this.tokens.get(k);
    if (!e || now - e.atMs > (this.ttlS * 1000) / 2) {
      const text = this.mint(recordId, now);
      e = { text, bytes: te.encode(text), atMs: now };
      this.tokens.set(k, e);
    }
    return e;
  }

  /** The token of `recordId` (minted once, reused). */
  token(recordId: Uint8Array): string {
    return this.entry(recordId).text;
  }

  /** The same, as the bytes of a client request's `auth` field. */
  bytes(recordId: Uint8Array): Uint8Array {
    return this.entry(recordId).bytes;
  }
}
