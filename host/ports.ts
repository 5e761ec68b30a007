/**
 * Free loopback ports for processes this project starts on one machine (`bkv demo --fleet`, the
 * benches). Each is released before the process binds it, so another program can still take it in
 * between (rarely); the ports of one call are distinct.
 */
import { createServer, type Server } from 'node:net';

/**
 * `n` distinct free ports on 127.0.0.1: all n are held open together before any is released (one
 * bind closed at once after another can be handed the port just closed: two fleet members were
 * given one port, and fleet.json was refused, CI 2026-12-07).
 */
export async function freePorts(n: number): Promise<number[]> {
  const held = await Promise.allSettled(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const servers = held.flatMap((h) => (h.status === 'fulfilled' ? [h.value] : []));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  const failed = held.find((h): h is PromiseRejectedResult => h.status === 'rejected');
  if (failed) throw failed.reason;
  return ports;
}
