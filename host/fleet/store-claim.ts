/**
 * A fleet member's claim on its PostgreSQL store (docs/fleet-vault.md "Each member's store"): a
 * session-level advisory lock (PostgreSQL manual §9.27.10, "Advisory Lock Functions") on one key
 * per database and schema, held on a connection of its own for as long as the member runs.
 *
 * Every member's store must be its own: the members' blobs are byte for byte the same, so two
 * members writing one records table would each find, when they apply a batch, rows the other
 * already rewrote, which their devices refuse as the wrong stored rows (the follower stops
 * applying; docs/fleet-vault.md). fleet.json refuses two members naming one database and schema
 * (config.ts); this claim refuses the rest at start: a `--store` that names another running
 * member's database, or a second process of the same member.
 *
 * The lock goes with its connection (the process exits or is killed): a restarted member takes
 * it again, after waiting up to CLAIM_WAIT_MS for its predecessor's session to end. A database
 * that does not exist is refused with its name (the member does not create databases).
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { pgToStorageError } from '../storage/postgres.ts';

/** How long a member waits for a claim held by a session that may be ending (its predecessor killed). */
export const CLAIM_WAIT_MS = 3000;
/** The advisory lock's first key: this claim's own namespace ("bkv" in ASCII). */
const CLAIM_CLASS = 0x626b76;

export class StoreClaimError extends Error {
  override readonly name = 'StoreClaimError';
}

export interface StoreClaim {
  /** Ends the claim (closes its connection). */
  release(): Promise<void>;
}

/** The second key: 31 bits of SHA-256 of the schema name (advisory locks are per database already). */
function claimKey(schema: string): number {
  return createHash('sha256').update(`backup-key-vault/fleet-store:${schema}`).digest().readUInt32BE(0) & 0x7fffffff;
}

/**
 * Claims the store at `url` (postgres://...) for `holder` (its name in pg_stat_activity, shown to
 * whoever finds the claim taken). Rejects with StoreClaimError when another session holds it
 * after CLAIM_WAIT_MS or the database does not exist, with a StorageError when the server can
 * not be reached. No message carries the URL's credentials.
 */
export async function claimPostgresStore(url: string, holder: string, onLost: (e: Error) => void): Promise<StoreClaim> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // no cause: the URL parser's error carries the input, password included
    throw new StoreClaimError('the store URL is not a valid postgres:// URL');
  }
  const decoded = (v: string) => {
    try {
      return decodeURIComponent(v);
    } catch {
      return v; // a malformed escape: kept as written
    }
  };
  const schema = u.searchParams.get('schema') ?? 'public';
  u.searchParams.delete('schema');
  const database = decoded(u.pathname.replace(/^\//, ''));
  const secrets = u.password === '' ? [] : [u.password, decoded(u.password)];
  const key = claimKey(schema);
  const client = new pg.Client({ connectionString: u.toString(), application_name: holder.slice(0, 63), connectionTimeoutMillis: 10_000, keepAlive: true });
  let released = false;
  client.on('error', (e) => {
    if (!released) onLost(pgToStorageError(e, 'the store claim', secrets));
  });
  try {
    await client.connect();
  } catch (e) {
    const se = pgToStorageError(e, 'the store claim', secrets);
    if (se.detail === '3D000') throw new StoreClaimError(`the store database "${database}" does not exist on its server: create it (createdb ${database}), or give the member another store (fleet.json "store", bkv fleet init --store-template, --store)`, { cause: se });
    throw se;
  }
  try {
    const end = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::integer, $2::integer) AS ok', [CLAIM_CLASS, key]);
      if (rows[0]?.ok) break;
      if (Date.now() >= end) {
        // the holder's name, when this login may read it (its own sessions, or pg_read_all_stats)
        const who = await client
          .query<{ name: string | null }>(
            `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2`,
            [CLAIM_CLASS, key],
          )
          .then((r) => r.rows[0]?.name || null, () => null);
        throw new StoreClaimError(
          `the store database "${database}" (schema ${schema}) is in use by another process${who ? ` (${who})` : ''}: every fleet member's store must be its own database or schema`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    released = true;
    await client.end().catch(() => undefined);
    throw e instanceof StoreClaimError ? e : pgToStorageError(e, 'the store claim', secrets);
  }
  return {
    async release() {
      if (released) return;
      released = true;
      await client.end().catch(() => undefined);
    },
  };
}
