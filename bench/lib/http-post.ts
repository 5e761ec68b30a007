/**
 * A cheap HTTP client for load generation: node:http with a keep-alive agent (one socket per
 * request in flight), JSON in and out. fetch (undici) costs several times more CPU per request,
 * and on a 2-core machine the load generator competes with the service it measures.
 */
import * as http from 'node:http';

export interface JsonAnswer {
  status: number;
  body: unknown;
}

export function jsonPoster(base: string, maxSockets: number): { post(path: string, body: unknown, headers?: Record<string, string>): Promise<JsonAnswer>; close(): void } {
  const url = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  const post = (path: string, body: unknown, extra: Record<string, string> = {}) =>
    new Promise<JsonAnswer>((resolve, reject) => {
      const data = Buffer.from(JSON.stringify(body));
      const req = http.request(
        { agent, host: url.hostname, port: url.port, path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': data.length, ...extra } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            try {
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
            } catch (e) {
              reject(new Error(`HTTP ${res.statusCode}: answer is not JSON (${(e as Error).message})`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  return { post, close: () => agent.destroy() };
}
