/**
 * GET /fleet/rows (host/fleet/rows-endpoint.ts) in this process, against a store of 4,000 rows of
 * 2 KiB read by a copier that pauses: the stream waits for the socket to drain hundreds of times,
 * and each wait takes its listeners off the response again (no MaxListenersExceededWarning, the
 * response's listener counts back to where they started), the copy arrives whole and in order,
 * and the store's snapshot is closed at the end; a copier that goes away midway gets its snapshot
 * closed too, and a store that can not be read answers 409 ROWS_NOT_SERVED without its error.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerCredential, PeerAuthVerifier } from '../../../host/fleet/peer-auth.ts';
import { ROWS_PATH, rowsEndpoint, type RowsSource } from '../../../host/fleet/rows-endpoint.ts';
import type { StoredRecord, StoreSnapshot } from '../../../host/storage/types.ts';

const KEY = new Uint8Array(32).fill(9);
const ROWS = 4000;
const BLOB = 2048;

function rowOf(i: number): StoredRecord {
  const recordId = new TextEncoder().encode(`user-${String(i).padStart(6, '0')}`);
  return { recordId, blob: new Uint8Array(BLOB).fill(i & 0xff) } as StoredRecord;
}

let opened = 0;
let closed = 0;
/** The next snapshot fails to open (a store that can not be read). */
let failing = false;
/** What the endpoint reads of a store: a snapshot's applied batch and its scan in record id order. */
function snapshot(): StoreSnapshot {
  opened++;
  return {
    appliedEpoch: 77,
    async *scan(chunk: number) {
      for (let i = 0; i < ROWS; i += chunk) yield Array.from({ length: Math.min(chunk, ROWS - i) }, (_, k) => rowOf(i + k));
    },
    close: async () => void closed++,
  };
}

let server: http.Server;
let url: string;
/** Per response: how many times a 'drain' listener was added (a wait), and the most 'close' and 'drain' listeners it held at once. */
const watched: { waits: number; close: number; drain: number; base: { close: number; drain: number } }[] = [];
const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);

beforeAll(async () => {
  const source: RowsSource = {
    rowsRefusal: () => null,
    rowsSnapshot: async () => {
      if (failing) throw new Error('SQLITE_IOERR at /secret/path/vault.db');
      return snapshot();
    },
  };
  const handle = rowsEndpoint(1, () => source, new PeerAuthVerifier(KEY, new Set([2])), () => {});
  server = http.createServer((req, res) => {
    const w = { waits: 0, close: 0, drain: 0, base: { close: res.listenerCount('close'), drain: res.listenerCount('drain') } };
    watched.push(w);
    res.on('newListener', (ev: string | symbol) => {
      // called before the listener is added: count it in
      if (ev === 'drain') w.waits++;
      if (ev === 'close') w.close = Math.max(w.close, res.listenerCount('close') + 1);
      if (ev === 'drain') w.drain = Math.max(w.drain, res.listenerCount('drain') + 1);
    });
    handle(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.on('warning', onWarning);
});

afterAll(async () => {
  process.off('warning', onWarning);
  await new Promise((r) => server.close(r));
});

describe('the rows endpoint streaming to a slow copier', () => {
  it('waits for the copier without piling up listeners, and the copy arrives whole', async () => {
    const res = await fetch(`${url}${ROWS_PATH}`, { headers: { authorization: peerCredential(KEY, 2, 'GET', ROWS_PATH) } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const chunks: Uint8Array[] = [];
    for (let n = 0; ; n++) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      // a copier that stops now and then: the server's socket buffer fills, its writes wait
      if (n % 4 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const lines = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n');
    expect(JSON.parse(lines[0]!)).toEqual({ format: 'bkv-rows/1', member: 1, partition: 0, appliedBatch: 77 });
    expect(lines).toHaveLength(ROWS + 2);
    expect(JSON.parse(lines.at(-1)!)).toEqual({ end: true, rows: ROWS });
    const ids = lines.slice(1, -1).map((l) => Buffer.from((JSON.parse(l) as { id: string }).id, 'base64url').toString());
    expect(ids).toEqual(Array.from({ length: ROWS }, (_, i) => `user-${String(i).padStart(6, '0')}`));
    // the stream did wait (a copy this size does not fit the socket buffers), yet the listeners never piled up
    const w = watched.at(-1)!;
    expect(w.waits, 'the stream never waited for the copier').toBeGreaterThan(20);
    expect(w.close).toBeLessThanOrEqual(w.base.close + 2);
    expect(w.drain).toBeLessThanOrEqual(w.base.drain + 1);
    expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
    expect([opened, closed]).toEqual([1, 1]);
  });

  it('closes the snapshot when the copier goes away midway', async () => {
    const ac = new AbortController();
    const res = await fetch(`${url}${ROWS_PATH}`, { headers: { authorization: peerCredential(KEY, 2, 'GET', ROWS_PATH) }, signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.read().catch(() => undefined);
    for (let k = 0; k < 200 && closed < opened; k++) await new Promise((r) => setTimeout(r, 10));
    expect([opened, closed]).toEqual([2, 2]);
  });

  it('answers 409 ROWS_NOT_SERVED when the store can not be read, without its error', async () => {
    failing = true;
    try {
      const res = await fetch(`${url}${ROWS_PATH}`, { headers: { authorization: peerCredential(KEY, 2, 'GET', ROWS_PATH) } });
      expect(res.status).toBe(409);
      const body = await res.text();
      expect((JSON.parse(body) as { error: { code: string } }).error.code).toBe('ROWS_NOT_SERVED');
      expect(body).not.toMatch(/SQLITE|secret/);
    } finally {
      failing = false;
    }
    expect(opened).toBe(2);
  });
});
