/**
 * Byte-level helpers for tests and fuzz targets that talk to a service process: a raw TCP
 * exchange (requests no HTTP client would send) and a reader of newline-delimited JSON logs.
 */
import { connect } from 'node:net';
import type { Readable } from 'node:stream';

/**
 * Writes `bytes` on a fresh connection and resolves with everything read until the server closes
 * (or `waitMs` passes). `end`: half-close after writing (the request is complete); without it the
 * connection stays open for writing, as a client that stalls mid-request.
 */
export function rawExchange(url: string, bytes: string | Uint8Array, waitMs: number, opts: { end?: boolean } = {}): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((done) => {
    const sock = connect(Number(port), hostname);
    let out = '';
    const timer = setTimeout(() => sock.destroy(), waitMs);
    sock.on('data', (d) => (out += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      done(out);
    });
    if (opts.end) sock.end(bytes);
    else sock.write(bytes);
  });
}

/** Calls `onLine` with each newline-terminated JSON object `stream` carries; other lines are skipped. */
export function onJsonLines(stream: Readable, onLine: (line: Record<string, any>) => void): void {
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let l: unknown;
      try {
        l = JSON.parse(text);
      } catch {
        continue; // not a log line
      }
      if (l !== null && typeof l === 'object') onLine(l as Record<string, any>);
    }
  });
}
