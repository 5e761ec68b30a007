/**
 * The fleet's peer secret and the credential one member's host shows another's (docs/fleet-vault.md,
 * "Catch-up by stored rows"): `DIR/auth/peer.secret`, 32 random bytes as 64 hex digits (mode 0600),
 * written by `bkv fleet init`, or by the first member host that starts in a fleet folder without
 * one (an exclusive create: members sharing the folder read the same file; members on other
 * machines need a copy of it, like the rest of auth/).
 *
 * A request carries `authorization: BKV-Peer member=<i>,ts=<ms>,nonce=<22 base64url>,mac=<43 base64url>`:
 *
 *   key = HKDF-SHA256(IKM = peer secret, salt = empty, info = "bkv/fleet/peer-auth/v1", 32)
 *   mac = HMAC-SHA256(key, "bkv/fleet/peer-auth/v1" 0x0a method 0x0a path 0x0a member 0x0a ts 0x0a nonce)
 *
 * The secret never crosses the wire (the members speak plain HTTP: a capture shows a MAC bound to
 * one method, path, member and time), a timestamp more than 60 s from the receiver's clock is
 * refused, and a nonce is taken once within that window (a captured request can not be replayed).
 * MACs are compared with crypto.timingSafeEqual. Missing or malformed: 401 PEER_AUTH_REQUIRED;
 * wrong MAC, stale time, replayed nonce: 403 PEER_AUTH_REFUSED.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createFileDurably } from '../../hsm/durable-file.ts';

/** The peer secret file, relative to the fleet folder. */
export const PEER_SECRET_FILE = path.join('auth', 'peer.secret');
export const PEER_AUTH_SCHEME = 'BKV-Peer';
const LABEL = 'bkv/fleet/peer-auth/v1';
/** How far a credential's timestamp may be from the receiver's clock. */
export const PEER_AUTH_WINDOW_MS = 60_000;
/** The most nonces remembered at once; when full, a fresh credential is refused (503) rather than a replay missed. */
export const MAX_NONCES = 100_000;
/** The longest authorization header taken. */
export const MAX_AUTH_HEADER = 256;

export class PeerSecretError extends Error {
  override readonly name = 'PeerSecretError';
}

/** Writes a new peer secret unless one is there; returns whether this call wrote it. */
export function createPeerSecret(fleetDir: string): boolean {
  mkdirSync(path.join(fleetDir, path.dirname(PEER_SECRET_FILE)), { recursive: true, mode: 0o700 });
  return createFileDurably(path.join(fleetDir, PEER_SECRET_FILE), randomBytes(32).toString('hex') + '\n');
}

/** Reads DIR/auth/peer.secret (64 hex digits). */
export function readPeerSecret(fleetDir: string): Uint8Array {
  const file = path.join(fleetDir, PEER_SECRET_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new PeerSecretError(`the fleet's peer secret ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new PeerSecretError(`the fleet's peer secret ${file}: expected 64 hex digits`);
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

/** The MAC key of the peer credentials (the secret itself is used for nothing else). */
export function peerAuthKey(secret: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), LABEL, 32));
}

function mac(key: Uint8Array, method: string, urlPath: string, member: number, ts: number, nonce: string): Buffer {
  return createHmac('sha256', key).update([LABEL, method, urlPath, String(member), String(ts), nonce].join('\n')).digest();
}

/** The authorization header value for one request of member `member`. */
export function peerCredential(key: Uint8Array, member: number, method: string, urlPath: string, now = Date.now()): string {
  const nonce = randomBytes(16).toString('base64url');
  const ts = Math.floor(now);
  return `${PEER_AUTH_SCHEME} member=${member},ts=${ts},nonce=${nonce},mac=${mac(key, method, urlPath, member, ts, nonce).toString('base64url')}`;
}

export type PeerAuthResult = { ok: true; member: number } | { ok: false; code: 'PEER_AUTH_REQUIRED' | 'PEER_AUTH_REFUSED' | 'PEER_AUTH_BUSY'; why: string };

const CREDENTIAL = /^BKV-Peer member=(\d{1,2}),ts=(\d{1,15}),nonce=([A-Za-z0-9_-]{22}),mac=([A-Za-z0-9_-]{43})$/;

/** Checks credentials as a receiver: the MAC, the time window, each nonce once. */
export class PeerAuthVerifier {
  private readonly nonces = new Map<string, number>();

  constructor(
    private readonly key: Uint8Array,
    /** Member ids that may ask (every other member of the fleet). */
    private readonly members: ReadonlySet<number>,
    private readonly clock: () => number = Date.now,
  ) {}

  check(header: string | undefined, method: string, urlPath: string): PeerAuthResult {
    if (header === undefined || header.length === 0) return { ok: false, code: 'PEER_AUTH_REQUIRED', why: 'no authorization header' };
    if (header.length > MAX_AUTH_HEADER) return { ok: false, code: 'PEER_AUTH_REQUIRED', why: 'authorization header too long' };
    const m = CREDENTIAL.exec(header);
    if (!m) return { ok: false, code: 'PEER_AUTH_REQUIRED', why: `authorization is not "${PEER_AUTH_SCHEME} member=..,ts=..,nonce=..,mac=.."` };
    const member = Number(m[1]);
    const ts = Number(m[2]);
    const nonce = m[3]!;
    const given = Buffer.from(m[4]!, 'base64url');
    // the MAC first: nothing of an unauthenticated request is remembered
    const want = mac(this.key, method, urlPath, member, ts, nonce);
    if (given.length !== want.length || !timingSafeEqual(given, want)) return { ok: false, code: 'PEER_AUTH_REFUSED', why: 'wrong credential' };
    if (!this.members.has(member)) return { ok: false, code: 'PEER_AUTH_REFUSED', why: `member ${member} may not ask` };
    const now = this.clock();
    if (Math.abs(now - ts) > PEER_AUTH_WINDOW_MS) return { ok: false, code: 'PEER_AUTH_REFUSED', why: 'credential outside the time window (clocks more than 60 s apart?)' };
    this.sweep(now);
    if (this.nonces.has(nonce)) return { ok: false, code: 'PEER_AUTH_REFUSED', why: 'credential replayed' };
    if (this.nonces.size >= MAX_NONCES) return { ok: false, code: 'PEER_AUTH_BUSY', why: 'too many credentials in the window' };
    this.nonces.set(nonce, ts + PEER_AUTH_WINDOW_MS);
    return { ok: true, member };
  }

  /** Forgets nonces whose credential can no longer pass the time check. */
  private sweep(now: number): void {
    for (const [n, until] of this.nonces) if (until < now) this.nonces.delete(n);
  }
}
