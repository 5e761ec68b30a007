/**
 * `GET /fleet/rows` on a member's api address: its stored vault rows, for another member's host
 * that catches up by stored rows (docs/fleet-vault.md, "Catch-up by stored rows"). Record ids are
 * the users' ids: only a member's host holding the fleet's peer secret is answered
 * (peer-auth.ts), before anything else is read or said.
 *
 * The answer is one consistent copy at one applied batch: the rows are read from a snapshot of
 * the member's store (RecordStore.snapshot), exactly the state after the batch the header names,
 * while its writes go on (a leader's batches, a follower's apply loop). A member that is behind
 * itself, or whose vault is not up, answers 409 ROWS_NOT_SERVED; the copier asks another. One
 * copy at a time (503 ROWS_BUSY). The stream, NDJSON (`application/x-ndjson`), live rows in
 * record id order:
 *
 *   {"format":"bkv-rows/1","member":1,"partition":0,"appliedBatch":41}
 *   {"id":"<base64url>","blob":"<base64url>"}            one per stored row with a blob
 *   {"end":true,"rows":2}                                 the framing's end: a copy without it is truncated
 *
 * Nothing here is trusted by the receiver: its device takes the rows only if their record index
 * is a batch its own log holds committed (enclave/vault/vault.ts loadEnd).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { StoreSnapshot } from '../storage/types.ts';
import { ErrorCode, ServiceError } from '../service/error-codes.ts';
import { sendError, sendJson } from '../service/http.ts';
import { PEER_AUTH_SCHEME, type PeerAuthVerifier } from './peer-auth.ts';

export const ROWS_PATH = '/fleet/rows';
export const ROWS_FORMAT = 'bkv-rows/1';
export const ROWS_CONTENT_TYPE = 'application/x-ndjson';
/**
 * Rows read from the snapshot at once while streaming: each read holds the member's host thread
 * (its batches wait), so a small one (128 rows of SQLite: about a millisecond; bench/storage.ts
 * "a copy from a snapshot while batches go on").
 */
export const SCAN_CHUNK = 128;
/** A copier that reads nothing for this long is cut off (a snapshot held open keeps SQLite's WAL from being checkpointed). */
export const STALL_TIMEOUT_MS = 30_000;

/** The rows endpoint's refusals (host/service/error-codes.ts, 6024-6028): `{ error: { code, num, message } }`. */
export type RowsErrorName = 'PEER_AUTH_REQUIRED' | 'PEER_AUTH_REFUSED' | 'PEER_AUTH_BUSY' | 'ROWS_NOT_SERVED' | 'ROWS_BUSY';

export function sendRowsError(res: ServerResponse, code: RowsErrorName, why?: string): void {
  const e = ErrorCode[code];
  const headers: Record<string, string> = { connection: 'close' };
  if (e.status === 401) headers['www-authenticate'] = PEER_AUTH_SCHEME;
  if (e.status === 503) headers['retry-after'] = '1';
  sendJson(res, e.status, { error: { code, num: e.num, message: why ? `${e.message} (${why})` : e.message } }, headers);
}

/** What the endpoint needs of the member's vault (vault-node.ts FleetVaultNode). */
export interface RowsSource {
  /** Why this member serves no copy now (it is behind, its vault is not up), or null. */
  rowsRefusal(): string | null;
  /** One consistent read of the member's stored rows while its writes go on. */
  rowsSnapshot(): Promise<StoreSnapshot>;
}

export function rowsEndpoint(self: number, source: () => RowsSource | null, verifier: PeerAuthVerifier, log: (line: string) => void): (req: IncomingMessage, res: ServerResponse) => void {
  let serving = false;
  return (req, res) => {
    const method = req.method ?? 'GET';
    const raw = req.url ?? '';
    // the credential before anything else: a stranger learns nothing but 401/403
    const header = req.headers.authorization;
    const auth = verifier.check(Array.isArray(header) ? header[0] : header, method, raw);
    if (!auth.ok) return sendRowsError(res, auth.code, auth.why);
    if (method !== 'GET') return sendError(res, new ServiceError('METHOD_NOT_ALLOWED', { allow: 'GET' }), true);
    if (raw !== ROWS_PATH) return sendError(res, new ServiceError('BAD_REQUEST', { field: 'query' }), true);
    if (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) !== 0) return sendError(res, new ServiceError('PAYLOAD_TOO_LARGE'), true);
    const s = source();
    const why = s ? s.rowsRefusal() : 'the vault is not up';
    if (why !== null || !s) return sendRowsError(res, 'ROWS_NOT_SERVED', why ?? undefined);
    if (serving) return sendRowsError(res, 'ROWS_BUSY');
    serving = true;
    void stream(s, self, auth.member, res, log).finally(() => (serving = false));
  };
}

async function stream(s: RowsSource, self: number, to: number, res: ServerResponse, log: (line: string) => void): Promise<void> {
  let snap: StoreSnapshot;
  try {
    snap = await s.rowsSnapshot();
  } catch (e) {
    log(`a copy of the stored rows for member ${to} was not served: its store could not be read (${e instanceof Error ? e.message : String(e)})`);
    return sendRowsError(res, 'ROWS_NOT_SERVED', 'its store could not be read now');
  }
  let rows = 0;
  try {
    const appliedBatch = snap.appliedEpoch ?? 0;
    res.writeHead(200, { 'content-type': ROWS_CONTENT_TYPE, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    const write = async (line: string) => {
      if (!res.write(line + '\n')) {
        let timer: NodeJS.Timeout | undefined;
        const stalled = new Promise<'stalled'>((r) => (timer = setTimeout(() => r('stalled'), STALL_TIMEOUT_MS)));
        // each wait takes its listeners off again (a long copy waits thousands of times)
        const ac = new AbortController();
        const ended = (ev: string) => once(res, ev, { signal: ac.signal }).then(() => ev, () => 'aborted');
        const why = await Promise.race([ended('drain'), ended('close'), stalled]);
        ac.abort();
        clearTimeout(timer);
        if (why === 'stalled') throw new Error(`the copier read nothing for ${STALL_TIMEOUT_MS / 1000} s`);
        if (res.destroyed) throw new Error('the copier went away');
      }
    };
    await write(JSON.stringify({ format: ROWS_FORMAT, member: self, partition: 0, appliedBatch }));
    for await (const chunk of snap.scan(SCAN_CHUNK)) {
      for (const r of chunk) {
        if (r.blob.length === 0) continue; // a tombstone: absent at the copier too
        await write(JSON.stringify({ id: Buffer.from(r.recordId).toString('base64url'), blob: Buffer.from(r.blob).toString('base64url') }));
        rows++;
      }
    }
    await write(JSON.stringify({ end: true, rows }));
    res.end();
    log(`served a copy of ${rows} stored rows at batch ${appliedBatch} to member ${to}`);
  } catch (e) {
    log(`a copy of the stored rows for member ${to} stopped after ${rows} rows: ${e instanceof Error ? e.message : String(e)}`);
    res.destroy();
  } finally {
    await snap.close().catch((e: unknown) => log(`closing the snapshot of a copy failed: ${e instanceof Error ? e.message : String(e)}`));
  }
}
