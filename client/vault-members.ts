/**
 * A vault's members (docs/fleet.md: each member of a fleet serves clients on its own URL) and the
 * rule for moving between them, which never costs the user a guess: the next member is asked only
 * when this one certainly did not take the request.
 *
 * - The connection could not be made (`VaultTransportError.unsent`): nothing left the client.
 * - 421 NOT_LEADER (host/service/error-codes.ts): the member does not lead the fleet now. The
 *   `leader` it names (host/fleet/member-host.ts; openapi.yaml `Error.error.leader`) is asked
 *   next only if it is one of the configured members: a member's hint, or a forged 421, never
 *   takes a client to a URL the user did not give. fetch itself resends a request answered 421
 *   once, on a new connection (the Fetch standard's HTTP-network-or-cache fetch): the answer seen
 *   here is the second, a refusal too, so the member took neither. An error body is read up to
 *   MAX_ERROR_BODY_BYTES (client/http-relay.ts): a longer 421 names no leader and moves nothing.
 * - 503 NOT_READY or SHUTTING_DOWN: the service refuses before the request reaches its enclave
 *   (host/service/server.ts while draining; routes.ts; a partition whose device failed to boot or
 *   load: host/vault/vault-host.ts). 503 UNAVAILABLE moves a read-only request
 *   only: the service also answers it when the device died with the request inside
 *   (`toServiceError`: ChannelError Crashed or Closed), after a guess may have been charged.
 * - Any other failure after the request left (timeout, reset, a body that is not the API's JSON)
 *   moves a read-only request (Status, GET /v1/vault) and ends one that charges or changes a
 *   record (LoginStart, LoginFinish, registration, delete): the caller gets the typed error and
 *   retries knowingly.
 *
 * Order: the member that last answered first, then the others as given, each asked once in this
 * pass; a configured leader named by a 421 goes first, and may be asked once more that way (it
 * may have taken the lead since it was asked). So a request is asked of at most twice as many
 * members as there are, whatever the members answer: a 421 that names a member already followed
 * (two members naming each other) moves on in the pass, never round a loop. Before its first operation (and again after an answer from it was lost)
 * a member is probed with a read-only request (GET /v1/vault, its key checked against the pinned
 * one by the caller), so a member that is down is found without risking an operation on it.
 * Browser-safe.
 */
import { VaultHttpError, VaultMembersError, VaultTransportError, VaultUrlError } from './vault-errors.ts';

/** At most this many members in a list (a fleet has 3, 5 or 7: docs/fleet.md). */
export const MAX_VAULT_URLS = 16;

/** 503 codes that say the service refused before its enclave saw the request. */
const NOT_SERVING: ReadonlySet<string> = new Set(['NOT_READY', 'SHUTTING_DOWN']);

/** A member URL's canonical form (scheme, lower-case host, port unless default, path without trailing `/`), or undefined. */
export function canonicalVaultUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return undefined;
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/**
 * The members of `spec`: one URL, a comma-separated list (`--vault a,b`), or an array. Each an
 * absolute http(s) base URL without user info, query or fragment; no empty item, no member twice,
 * 1 to MAX_VAULT_URLS. Throws VaultUrlError naming the item.
 */
export function parseVaultUrls(spec: string | readonly string[]): string[] {
  const items = typeof spec === 'string' ? spec.split(',') : [...spec];
  if (items.length > MAX_VAULT_URLS) throw new VaultUrlError(`at most ${MAX_VAULT_URLS} vault URLs (got ${items.length})`);
  const out: string[] = [];
  for (const [i, raw] of items.entries()) {
    const item = raw.trim();
    if (item === '') throw new VaultUrlError(`vault URL ${i + 1} of ${items.length} is empty`);
    const c = canonicalVaultUrl(item);
    if (c === undefined) throw new VaultUrlError(`${JSON.stringify(item)} is not an http(s) base URL (no user info, query or fragment)`);
    if (out.includes(c)) throw new VaultUrlError(`${item} is listed twice`);
    out.push(c);
  }
  if (out.length === 0) throw new VaultUrlError('no vault URL');
  return out;
}

/** Whether a member's failure proves it did not take the request. */
export function notTaken(e: unknown, readOnly: boolean): boolean {
  if (e instanceof VaultTransportError) return readOnly || e.unsent;
  if (e instanceof VaultHttpError) {
    if (e.status === 421 && e.code === 'NOT_LEADER') return true;
    if (e.status === 503) return NOT_SERVING.has(e.code) || (readOnly && e.code === 'UNAVAILABLE');
  }
  return false;
}

/** The members of one vault, with the one that last answered. */
export class VaultMembers {
  readonly urls: readonly string[];
  private preferred = 0;
  /** Members probed since their last lost answer. */
  private readonly probed = new Set<number>();

  /** A string is one URL, used as given (a relative one too, in a browser); an array is checked by parseVaultUrls. */
  constructor(spec: string | readonly string[]) {
    this.urls = typeof spec === 'string' ? [spec.replace(/\/+$/, '')] : parseVaultUrls(spec);
  }

  /** The index of `url` among the members, or -1. */
  indexOf(url: string): number {
    const c = canonicalVaultUrl(url);
    return c === undefined ? -1 : this.urls.findIndex((m) => canonicalVaultUrl(m) === c);
  }

  /**
   * Runs `run` on one member after another (the rule above) until one takes it. `probe`, when
   * given, runs first on a member not probed since its last lost answer (read-only; what it
   * throws other than a not-taken failure, a key mismatch included, ends the request). One
   * attempt failing: its own error; several: VaultMembersError with each one's, in order.
   */
  async use<T>(readOnly: boolean, run: (base: string) => Promise<T>, probe?: (base: string) => Promise<void>): Promise<T> {
    const pass = [this.preferred, ...this.urls.keys()];
    /** Members asked so far (in the pass, or as a leader before their turn in it): the pass skips them. */
    const asked = new Set<number>();
    /** Members asked because a 421 named them the leader: at most once each. */
    const followed = new Set<number>();
    let lead: number | undefined;
    const failed: { member: string; error: Error }[] = [];
    for (;;) {
      let i = lead;
      lead = undefined;
      if (i === undefined) {
        while (pass.length && asked.has(pass[0]!)) pass.shift();
        i = pass.shift();
        if (i === undefined) break;
      }
      asked.add(i);
      const base = this.urls[i]!;
      let phase: 'probe' | 'run' = 'probe';
      try {
        if (probe && !this.probed.has(i)) {
          await probe(base);
          this.probed.add(i);
        }
        phase = 'run';
        const r = await run(base);
        this.preferred = i;
        return r;
      } catch (e) {
        if (e instanceof VaultTransportError) this.probed.delete(i);
        if (!notTaken(e, readOnly || phase === 'probe')) {
          if (e instanceof VaultHttpError) this.preferred = i;
          throw e;
        }
        failed.push({ member: base, error: e as Error });
        const leader = e instanceof VaultHttpError && e.leader !== undefined ? this.indexOf(e.leader) : -1;
        if (leader >= 0 && leader !== i && !followed.has(leader)) {
          followed.add(leader);
          lead = leader;
        }
      }
    }
    if (failed.length === 1) throw failed[0]!.error;
    throw new VaultMembersError(failed);
  }
}
