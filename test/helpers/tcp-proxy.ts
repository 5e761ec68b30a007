/**
 * A TCP proxy a test controls: it listens on a free loopback port and forwards each connection to
 * `target`; `cut()` closes every connection and refuses new ones (a partition), `heal()` lets them
 * through again, `retarget(port)` sends new connections elsewhere (another process took the address).
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  cut(): void;
  heal(): void;
  /** Forwards new connections to `port` from now on (open ones are closed). */
  retarget(port: number): void;
  readonly isCut: boolean;
  /** Connections made through it so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function tcpProxy(target: { host: string; port: number }, listenPort = 0): Promise<TcpProxy> {
  const open = new Set<net.Socket>();
  let cut = false;
  let connections = 0;
  let to = { ...target };
  const server = net.createServer((client) => {
    if (cut) return void client.destroy();
    connections++;
    const up = net.connect(to);
    open.add(client);
    open.add(up);
    client.pipe(up);
    up.pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
    };
    for (const s of [client, up]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((res) => server.listen(listenPort, '127.0.0.1', res));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    cut() {
      cut = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    heal() {
      cut = false;
    },
    retarget(port: number) {
      to = { ...to, port };
      for (const s of open) s.destroy();
      open.clear();
    },
    get isCut() {
      return cut;
    },
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((res) => {
        cut = true;
        for (const s of open) s.destroy();
        server.close(() => res());
      }),
  };
}

/** A free loopback port (bound then released: another process may take it in between, rarely). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

const handedOut = new Set<number>();

/**
 * A free loopback port below Linux's default ephemeral range (32768-60999), for a process that
 * is killed and started again on the same port: a port of the ephemeral range may meanwhile
 * become the local port of some outgoing connection (the kernel hands those out from that range),
 * and the restart then fails with EADDRINUSE. Bound then released, like `freePort`.
 */
export async function freeFixedPort(lo = 20_000, hi = 32_767): Promise<number> {
  for (let i = 0; i < 64; i++) {
    const port = lo + Math.floor(Math.random() * (hi - lo + 1));
    // a port handed out before is not handed out again by this process (it is free only until its taker binds it)
    if (handedOut.has(port)) continue;
    const s = net.createServer();
    const ok = await new Promise<boolean>((res) => {
      s.once('error', () => res(false));
      s.listen(port, '127.0.0.1', () => res(true));
    });
    if (ok) {
      await new Promise<void>((res) => s.close(() => res()));
      handedOut.add(port);
      if (handedOut.size > 4096) handedOut.delete(handedOut.values().next().value!);
      return port;
    }
  }
  throw new Error(`no free loopback port in ${lo}..${hi} after 64 tries`);
}

