/**
 * The copier's side of a catch-up by stored rows (docs/fleet-vault.md, "Catch-up by stored rows"):
 * which members to ask (`copySources`: normal, not behind, further than this member) and the
 * download of one member's `GET /fleet/rows` (rows-endpoint.ts) into a staging SQLite file beside
 * the member's store (`downloadRows`), with bounded memory: the stream is read line by line
 * (each at most MAX_LINE_BYTES), rows go to the staging file 256 at a time.
 *
 * The download checks the framing only: the header first, each row's id and blob within the
 * vault's bounds, ids strictly increasing (so none twice), the end line with the row count last.
 * A copy that fails any of it is deleted and the member's own store is never touched. Whether
 * the rows are the fleet's state is the device's to say when it loads them (vault-node.ts).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { MAX_RECORD_ID, MAX_SEALED_RECORD } from '../../enclave/api/messages.ts';
import { fsyncDir } from '../../hsm/durable-file.ts';
import { openSqliteStore } from '../storage/sqlite.ts';
import type { BatchWrite } from '../storage/types.ts';
import { peerCredential } from './peer-auth.ts';
import { ROWS_CONTENT_TYPE, ROWS_FORMAT, ROWS_PATH } from './rows-endpoint.ts';
import path from 'node:path';

/** The longest line taken: a row's JSON with the largest id and blob, in base64url. */
export const MAX_LINE_BYTES = 64 + Math.ceil(((MAX_RECORD_ID + MAX_SEALED_RECORD) * 4) / 3);
/** A long copy reports its progress every this many rows (`downloadRows`' `onProgress`). */
export const PROGRESS_ROWS = 100_000;
/** A download that receives nothing for this long is given up. */
export const IDLE_TIMEOUT_MS = 30_000;
const WRITE_CHUNK = 256;

/** The staging file of a copy, and the mark that it arrived whole, in the member's folder. */
export const STAGING_FILE = 'rows-copy.db';
export const STAGING_DONE = 'rows-copy.done';

export class RowCopyError extends Error {
  override readonly name = 'RowCopyError';
}

export interface Peer {
  readonly member: number;
  readonly api: string;
}

interface PeerStatusJson {
  member?: unknown;
  status?: unknown;
  behind?: unknown;
  appliedBatch?: unknown;
  leader?: { id?: unknown } | null;
}

/**
 * The members worth asking for a copy, best first: normal, not behind, and with an applied batch
 * past `ownBatch` (followers first: a leader's store serves its clients' batches meanwhile; then
 * the furthest).
 */
export async function copySources(peers: readonly Peer[], ownBatch: number): Promise<(Peer & { appliedBatch: number })[]> {
  const all = await Promise.all(
    peers.map(async (p) => {
      try {
        const r = await fetch(`${p.api}/fleet/status`, { signal: AbortSignal.timeout(2000) });
        if (!r.ok) return null;
        const s = (await r.json()) as PeerStatusJson;
        if (s.status !== 'normal' || s.behind === true || typeof s.appliedBatch !== 'number' || s.appliedBatch <= ownBatch) return null;
        return { ...p, appliedBatch: s.appliedBatch, leads: s.leader?.id === s.member };
      } catch {
        return null;
      }
    }),
  );
  return all
    .filter((x): x is Peer & { appliedBatch: number; leads: boolean } => x !== null)
    .sort((a, b) => Number(a.leads) - Number(b.leads) || b.appliedBatch - a.appliedBatch)
    .map(({ member, api, appliedBatch }) => ({ member, api, appliedBatch }));
}

export const stagingPath = (dir: string): string => path.join(dir, STAGING_FILE);

/** Removes a staging copy (its SQLite file, journal files and done mark). */
export function removeStaging(dir: string): void {
  rmSync(path.join(dir, STAGING_DONE), { force: true });
  for (const s of ['', '-wal', '-shm', '-journal']) rmSync(stagingPath(dir) + s, { force: true });
}

const ID_B64 = /^[A-Za-z0-9_-]+$/;

function decodeField(v: unknown, what: string, max: number, line: number): Uint8Array {
  if (typeof v !== 'string' || !ID_B64.test(v)) throw new RowCopyError(`line ${line}: "${what}" is not base64url`);
  const b = Buffer.from(v, 'base64url');
  if (b.length === 0 || b.length > max || b.toString('base64url') !== v) throw new RowCopyError(`line ${line}: "${what}" is not 1..${max} bytes of canonical base64url`);
  return new Uint8Array(b);
}

/**
 * Downloads member `from`'s rows into `dir`'s staging file (replacing any), then writes the done
 * mark. Resolves with the batch the copy is at and its row count; a RowCopyError (the staging
 * file removed) for a refusal, a broken stream or a framing fault. `onProgress` hears the count
 * of rows taken every `every` rows.
 */
export async function downloadRows(dir: string, from: Peer, self: number, key: Uint8Array, onProgress?: (rows: number) => void, every = PROGRESS_ROWS): Promise<{ appliedBatch: number; rows: number }> {
  removeStaging(dir);
  const ac = new AbortController();
  let idle = setTimeout(() => ac.abort(), IDLE_TIMEOUT_MS);
  const alive = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ac.abort(), IDLE_TIMEOUT_MS);
  };
  const staging = await openSqliteStore(stagingPath(dir));
  let ok = false;
  try {
    let r: Response;
    try {
      r = await fetch(`${from.api}${ROWS_PATH}`, { headers: { authorization: peerCredential(key, self, 'GET', ROWS_PATH) }, signal: ac.signal });
    } catch (e) {
      throw new RowCopyError(`member ${from.member} could not be reached: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (r.status !== 200) {
      const text = (await r.text().catch(() => '')).slice(0, 300);
      throw new RowCopyError(`member ${from.member} answered ${r.status}: ${text}`);
    }
    if (!(r.headers.get('content-type') ?? '').startsWith(ROWS_CONTENT_TYPE) || !r.body) throw new RowCopyError(`member ${from.member} answered no ${ROWS_CONTENT_TYPE}`);
    let header: { appliedBatch: number } | null = null;
    let end: number | null = null;
    let count = 0;
    let lineNo = 0;
    let last: Buffer | null = null;
    let pending: BatchWrite[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      await staging.applyBatch(0, header!.appliedBatch, pending, []);
      pending = [];
    };
    const take = async (text: string) => {
      lineNo++;
      if (end !== null) throw new RowCopyError(`line ${lineNo}: after the end line`);
      let v: Record<string, unknown>;
      try {
        v = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw new RowCopyError(`line ${lineNo}: not JSON`);
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new RowCopyError(`line ${lineNo}: not an object`);
      if (header === null) {
        if (v.format !== ROWS_FORMAT || v.partition !== 0 || v.member !== from.member || !Number.isSafeInteger(v.appliedBatch) || (v.appliedBatch as number) < 0) throw new RowCopyError(`line 1: not a ${ROWS_FORMAT} header of member ${from.member}`);
        header = { appliedBatch: v.appliedBatch as number };
        return;
      }
      if (v.end === true) {
        if (v.rows !== count) throw new RowCopyError(`the end line counts ${String(v.rows)} rows, ${count} arrived`);
        end = count;
        return;
      }
      if (Object.keys(v).length !== 2) throw new RowCopyError(`line ${lineNo}: a row is {"id","blob"}`);
      const id = decodeField(v.id, 'id', MAX_RECORD_ID, lineNo);
      const blob = decodeField(v.blob, 'blob', MAX_SEALED_RECORD, lineNo);
      const idb = Buffer.from(id);
      if (last !== null && Buffer.compare(last, idb) >= 0) throw new RowCopyError(`line ${lineNo}: record ids out of order (or repeated)`);
      last = idb;
      count++;
      if (onProgress && count % every === 0) onProgress(count);
      pending.push({ recordId: id, blob });
      if (pending.length >= WRITE_CHUNK) await flush();
    };
    let buf = Buffer.alloc(0);
    try {
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        alive();
        buf = buf.length ? Buffer.concat([buf, chunk]) : Buffer.from(chunk);
        for (;;) {
          const nl = buf.indexOf(0x0a);
          if (nl < 0) break;
          if (nl > MAX_LINE_BYTES) throw new RowCopyError(`line ${lineNo + 1}: longer than ${MAX_LINE_BYTES} bytes`);
          const line = buf.subarray(0, nl).toString('utf8');
          buf = buf.subarray(nl + 1);
          await take(line);
        }
        if (buf.length > MAX_LINE_BYTES) throw new RowCopyError(`line ${lineNo + 1}: longer than ${MAX_LINE_BYTES} bytes`);
      }
    } catch (e) {
      if (e instanceof RowCopyError) throw e;
      throw new RowCopyError(`the copy from member ${from.member} broke off after ${count} rows: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (buf.length > 0 || header === null || end === null) throw new RowCopyError(`the copy from member ${from.member} is truncated (${count} rows, no end line)`);
    await flush();
    // the staging file holds the source's applied batch even with no rows
    if (count === 0) await staging.applyBatch(0, (header as { appliedBatch: number }).appliedBatch, [], []);
    await staging.close();
    writeFileSync(path.join(dir, STAGING_DONE), JSON.stringify({ from: from.member, appliedBatch: (header as { appliedBatch: number }).appliedBatch, rows: count }) + '\n', { mode: 0o600, flush: true });
    fsyncDir(dir);
    ok = true;
    return { appliedBatch: (header as { appliedBatch: number }).appliedBatch, rows: count };
  } finally {
    clearTimeout(idle);
    if (!ok) {
      ac.abort();
      await staging.close();
      removeStaging(dir);
    }
  }
}
