/**
 * The check of the issuer's token (the rules are in auth.ts), the enclave's and the host's: signature
 * through `jose` (EdDSA, RFC 8037), claims against the provisioned issuer set and audience, the
 * record id and the platform clock. Every client operation passes here before it runs, so a host
 * that skips its own checks still can not get a guess charged, a record changed or a status read.
 * The vault service runs the same check early (host/service/routes.ts), with the host's clock, to
 * shed a stranger's load before it takes a record's rate-limit bucket; nothing depends on it.
 *
 * A token that verified is cached (by its exact text) until it expires, so a login pays one
 * signature verification for its LoginStart and none for its LoginFinish; a cache hit still
 * checks the subject and the expiry against the platform clock.
 */
import { compactVerify, importJWK } from 'jose';
import { EnclaveFault, Handling } from './codes.ts';
import { CLOCK_SKEW_S, MAX_AUTH_TOKEN, MAX_TOKEN_LIFETIME_S, base64url, issuerKid } from './auth.ts';
import type { AuthConfig } from './auth.ts';

/** Verified tokens kept (each a few hundred bytes): enough for every login in flight on a partition. */
const CACHE_MAX = 8192;

type JoseKey = Awaited<ReturnType<typeof importJWK>>;

interface Issuer {
  name: string;
  key: JoseKey;
}
interface Verified {
  /** The subject's bytes as a string of char codes (a cheap exact compare with the record id). */
  sub: string;
  expMs: number;
}

const td = new TextDecoder('utf-8', { fatal: true });
const fault = (code: number, msg: string) => new EnclaveFault(code, msg, 'auth');

function subjectKey(recordId: Uint8Array): string {
  let s = '';
  for (const b of recordId) s += String.fromCharCode(b);
  return s;
}

export class TokenVerifier {
  private readonly cache = new Map<string, Verified>();

  private constructor(
    private readonly audience: string,
    private readonly issuers: Map<string, Issuer>,
  ) {}

  /** `config` null: no issuer provisioned, and every operation is refused. */
  static async create(config: AuthConfig | null): Promise<TokenVerifier> {
    const issuers = new Map<string, Issuer>();
    for (const i of config?.issuers ?? []) {
      const key = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: base64url(i.publicKey) }, 'EdDSA');
      issuers.set(issuerKid(i.publicKey), { name: i.name, key });
    }
    return new TokenVerifier(config?.audience ?? '', issuers);
  }

  get issuerCount(): number {
    return this.issuers.size;
  }

  /**
   * Resolves when `token` authorizes an operation on `recordId` at `nowMs`; otherwise rejects with
   * an EnclaveFault (AuthRequired, AuthInvalid, AuthExpired, AuthWrongSubject, AuthWrongAudience).
   */
  async check(token: Uint8Array, recordId: Uint8Array, nowMs: number): Promise<void> {
    if (this.issuers.size === 0) throw fault(Handling.AuthRequired, 'this vault has no issuer provisioned');
    if (token.length === 0) throw fault(Handling.AuthRequired, 'the operation carries no token');
    if (token.length > MAX_AUTH_TOKEN) throw fault(Handling.AuthInvalid, 'token too long');
    let text: string;
    try {
      text = td.decode(token);
    } catch {
      throw fault(Handling.AuthInvalid, 'token is not text');
    }
    const sub = subjectKey(recordId);
    const hit = this.cache.get(text);
    if (hit) {
      if (nowMs >= hit.expMs + CLOCK_SKEW_S * 1000) {
        this.cache.delete(text);
        throw fault(Handling.AuthExpired, 'token expired');
      }
      if (hit.sub !== sub) throw fault(Handling.AuthWrongSubject, 'token is for another record');
      return;
    }
    const v = await this.verify(text, nowMs);
    if (v.sub !== sub) throw fault(Handling.AuthWrongSubject, 'token is for another record');
    if (this.cache.size >= CACHE_MAX) this.evict(nowMs);
    this.cache.set(text, v);
  }

  /** Drops expired entries; if none expired, the oldest quarter (insertion order). */
  private evict(nowMs: number): void {
    for (const [k, v] of this.cache) if (nowMs >= v.expMs + CLOCK_SKEW_S * 1000) this.cache.delete(k);
    if (this.cache.size < CACHE_MAX) return;
    let drop = CACHE_MAX >> 2;
    for (const k of this.cache.keys()) {
      if (drop-- <= 0) break;
      this.cache.delete(k);
    }
  }

  private async verify(text: string, nowMs: number): Promise<Verified> {
    let issuer: Issuer | undefined;
    let payload: Uint8Array;
    try {
      const r = await compactVerify(
        text,
        (header) => {
          issuer = typeof header.kid === 'string' ? this.issuers.get(header.kid) : undefined;
          if (!issuer) throw new Error('unknown key');
          return issuer.key;
        },
        { algorithms: ['EdDSA'] },
      );
      payload = r.payload;
    } catch {
      throw fault(Handling.AuthInvalid, 'token signature does not verify under a provisioned issuer key');
    }
    let c: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(td.decode(payload));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      c = parsed as Record<string, unknown>;
    } catch {
      throw fault(Handling.AuthInvalid, 'token claims are not a JSON object');
    }
    if (c.iss !== issuer!.name) throw fault(Handling.AuthInvalid, 'token issuer does not match its key');
    const aud = c.aud;
    if (!(aud === this.audience || (Array.isArray(aud) && aud.includes(this.audience)))) {
      throw fault(Handling.AuthWrongAudience, 'token is for another vault');
    }
    const { sub, iat, exp, nbf, jti } = c;
    if (typeof sub !== 'string' || sub.length === 0) throw fault(Handling.AuthInvalid, 'token has no subject');
    if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw fault(Handling.AuthInvalid, 'token needs integer iat and exp');
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 128) throw fault(Handling.AuthInvalid, 'token needs a jti');
    if (nbf !== undefined && !Number.isSafeInteger(nbf)) throw fault(Handling.AuthInvalid, 'token nbf is not an integer');
    const iatS = iat as number;
    const expS = exp as number;
    if (expS <= iatS || expS - iatS > MAX_TOKEN_LIFETIME_S) throw fault(Handling.AuthInvalid, 'token lifetime out of bounds');
    const nowS = nowMs / 1000;
    if (iatS > nowS + CLOCK_SKEW_S || (nbf !== undefined && (nbf as number) > nowS + CLOCK_SKEW_S)) {
      throw fault(Handling.AuthInvalid, 'token is not valid yet');
    }
    if (nowS >= expS + CLOCK_SKEW_S) throw fault(Handling.AuthExpired, 'token expired');
    return { sub: subjectKey(new TextEncoder().encode(sub)), expMs: expS * 1000 };
  }
}
