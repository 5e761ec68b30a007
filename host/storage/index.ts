/**
 * Chooses and opens the record store from a storage URL:
 *   undefined or ''               -> SQLite at DATA/vault.db
 *   sqlite:PATH, sqlite://PATH    -> SQLite at PATH (sqlite:///abs/path for an absolute one)
 *   a plain file path             -> SQLite at that path
 *   postgres://..., postgresql:// -> PostgreSQL (see postgres.ts; `?schema=NAME` picks the schema)
 * Error messages never repeat the URL: it may carry a password.
 */
import { join } from 'node:path';
import { openPostgresStore } from './postgres.ts';
import type { PostgresStoreOptions } from './postgres.ts';
import { openSqliteStore } from './sqlite.ts';
import type { SqliteStoreOptions } from './sqlite.ts';
import { StorageCode, StorageError } from './types.ts';
import type { RecordStore } from './types.ts';

export * from './types.ts';
export { openSqliteStore, SQLITE_SCHEMA_VERSION } from './sqlite.ts';
export type { SqliteStoreOptions } from './sqlite.ts';
export { openPostgresStore, POSTGRES_SCHEMA_VERSION } from './postgres.ts';
export type { PostgresRecordStore, PostgresServerInfo, PostgresStoreOptions } from './postgres.ts';

export const DEFAULT_SQLITE_FILE = 'vault.db';

export type StoreLocation = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string };

/** Parses a storage URL (see the header) without opening anything. */
export function parseStoreUrl(url: string | undefined, dataDir: string): StoreLocation {
  if (url === undefined || url.trim() === '') return { backend: 'sqlite', path: join(dataDir, DEFAULT_SQLITE_FILE) };
  if (/^postgres(ql)?:\/\//i.test(url)) return { backend: 'postgres', url };
  const sqlite = /^sqlite:(?:\/\/)?(.*)$/i.exec(url);
  if (sqlite) {
    const path = sqlite[1]!;
    if (path === '') throw new StorageError(StorageCode.InvalidArgument, 'storage URL: sqlite: needs a path');
    return { backend: 'sqlite', path };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme) {
    throw new StorageError(
      StorageCode.InvalidArgument,
      `storage URL: unknown scheme ${scheme[1]!} (use sqlite:, postgres:// or a file path)`,
    );
  }
  return { backend: 'sqlite', path: url };
}

export async function openStore(
  url: string | undefined,
  dataDir: string,
  opts: { sqlite?: SqliteStoreOptions; postgres?: PostgresStoreOptions } = {},
): Promise<RecordStore> {
  const loc = parseStoreUrl(url, dataDir);
  if (loc.backend === 'postgres') return openPostgresStore(loc.url, opts.postgres);
  return openSqliteStore(loc.path, opts.sqlite);
}
