/**
 * A fleet of member processes on loopback for tests (`bkv serve --fleet ... --member I`): a fleet
 * folder with free ports, every member reaching every other through a TCP proxy the test controls
 * (one per ordered pair, `--peer-via`), starting, killing and cloning members, reading their
 * status, and clients that follow the 421 NOT_LEADER hint. The ledger of what they acknowledged
 * is test/host/fleet/ledger.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFleetConfig, fleetJson, initFleet } from '../../host/fleet/config.ts';
import { bin, runBkvAsync, type BkvRun } from './cli.ts';
import { JOIN_FILE } from '../../hsm/fleet/charters.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../../client/escrow.ts';
import { httpRelay } from '../../client/http-relay.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { mintToken, readIssuerPrivate } from '../../host/auth/issuer.ts';
import { readVaultKeyFile } from '../../host/cli/io.ts';
import { freeFixedPort, tcpProxy, type TcpProxy } from './tcp-proxy.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Copies a member's folder while its process may run: each whole file as it is (the device
 * replaces files by rename, so each copy is one version), skipping the temp files of writes in
 * progress and files gone in between.
 */
export function copyFolder(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    if (name.endsWith('.tmp')) continue;
    try {
      copyFileSync(join(from, name), join(to, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

export interface MemberProc {
  readonly member: number;
  readonly child: ChildProcess;
  readonly api: string;
  readonly label: string;
  log: string;
}

export interface MemberStatus {
  member: number;
  status: string;
  view?: number;
  commit?: number;
  /** Serving the vault: the last batch its vault committed or applied. */
  appliedBatch?: number;
  leader: { id: number; api: string } | null;
  /** Messages sent since the process started, by type. */
  sent?: Record<string, number>;
}

export type Reply = { status: number; body: any } | null;

export interface AckedOp {
  readonly index: number;
  readonly hash: string;
  readonly op: Record<string, string | number>;
  readonly by: string;
}

export class ProcFleet {
  readonly apiPorts: number[] = [];
  readonly peerPorts: number[] = [];
  /** proxies[i][j]: member i's way to member j (null at i = j). */
  readonly proxies: (TcpProxy | null)[][] = [];
  /** The running primary process of each member id (null while it is down). */
  readonly procs: (MemberProc | null)[] = [];
  /** Other processes (clones). */
  readonly extra: MemberProc[] = [];
  /** Folders whose history.jsonl the ledger reads (member folders, their copies). */
  readonly trails = new Set<string>();
  readonly events: string[] = [];
  readonly fleetFile: string;

  private constructor(
    readonly root: string,
    readonly n: number,
    private readonly env: NodeJS.ProcessEnv,
    /** The members serve the vault (else the replication test API, `--replication-test`). */
    readonly vault: boolean,
    /** More arguments for every member (`--record-limit off`, ...). */
    private readonly extraArgs: readonly string[],
  ) {
    this.fleetFile = join(root, 'fleet.json');
  }

  /**
   * A fleet folder (bkv fleet init's) with free loopback ports and a proxy per ordered pair; no
   * member started yet. Its members serve the replication test API unless `o.vault`. `o.port`:
   * where the members' ports come from (default `freeFixedPort`: below the ephemeral range, where
   * no outgoing connection of another process takes a port between its pick and the member's bind;
   * CI once failed with EADDRINUSE on a port `freePort` gave).
   */
  static async create(n: number, env: NodeJS.ProcessEnv = {}, o: { vault?: boolean; args?: readonly string[]; port?: () => Promise<number> } = {}): Promise<ProcFleet> {
    const f = new ProcFleet(mkdtempSync(join(tmpdir(), 'bkv-fleet-proc-')), n, env, o.vault === true, o.args ?? []);
    const port = o.port ?? freeFixedPort;
    await initFleet({ dir: f.root, members: n });
    for (let i = 0; i < n; i++) {
      f.apiPorts.push(await port());
      f.peerPorts.push(await port());
    }
    const cfg = checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
    writeFileSync(f.fleetFile, fleetJson({ ...cfg, members: cfg.members.map((m, i) => ({ ...m, api: { host: '127.0.0.1', port: f.apiPorts[i]! }, peer: { host: '127.0.0.1', port: f.peerPorts[i]! } })) }));
    for (let i = 0; i < n; i++) {
      f.proxies.push([]);
      for (let j = 0; j < n; j++) f.proxies[i]!.push(i === j ? null : await tcpProxy({ host: '127.0.0.1', port: f.peerPorts[j]! }));
      f.trails.add(f.memberDir(i));
      f.procs.push(null);
    }
    return f;
  }

  /** The client port fleet.json gives member `i` (one a charter change added). */
  private addedApi(i: number): number {
    return checkFleetConfig(JSON.parse(readFileSync(this.fleetFile, 'utf8'))).members[i]!.api.port;
  }

  /** A fleet of `n` members serving the vault with `args`, every one started, vault-key.pub written, every member normal under one leader. */
  static async serving(n: number, args: readonly string[]): Promise<ProcFleet> {
    const f = await ProcFleet.create(n, {}, { vault: true, args });
    await Promise.all(Array.from({ length: n }, (_, i) => f.start(i)));
    await f.waitFor('vault-key.pub', async () => existsSync(join(f.root, 'vault-key.pub')), 60_000);
    await f.allNormal();
    return f;
  }

  note(s: string): void {
    this.events.push(`${new Date().toISOString().slice(11, 23)} ${s}`);
  }

  /**
   * What a failed test prints: the fleet's events, then the last `lines` of each running member's
   * log (a view change story needs more than a screen; BKV_TEST_PROC_LOGS=DIR keeps them whole).
   */
  failureReport(lines = 200): string {
    return `member logs:\n${this.events.join('\n')}\n${this.procs.map((p) => p && `${p.label}:\n${p.log.split('\n').slice(-lines).join('\n')}`).join('\n')}`;
  }

  memberDir(i: number, root = this.root): string {
    return join(root, `member-${i}`);
  }

  /** Starts member `i` (from `fleet`, default the fleet's file; `args` appended) and resolves once it listens (its key ceremony done). */
  async start(i: number, o: { fleet?: string; api?: number; peer?: number; label?: string; args?: readonly string[] } = {}): Promise<MemberProc> {
    // a member a charter change added (i >= n) reaches the others, and they it, directly (fleet.json's addresses)
    const via = i >= this.n ? [] : Array.from({ length: this.n }, (_, j) => j).filter((j) => j !== i).flatMap((j) => ['--peer-via', `${j}=127.0.0.1:${this.proxies[i]![j]!.port}`]);
    const args = [bin, 'serve', '--fleet', o.fleet ?? this.fleetFile, '--member', String(i), ...via, ...(this.vault ? [] : ['--replication-test']), ...this.extraArgs];
    if (o.api !== undefined) args.push('--api-listen', `127.0.0.1:${o.api}`);
    if (o.peer !== undefined) args.push('--peer-listen', `127.0.0.1:${o.peer}`);
    if (o.args) args.push(...o.args);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...this.env } });
    const p: MemberProc = { member: i, child, api: `http://127.0.0.1:${o.api ?? this.apiPorts[i] ?? this.addedApi(i)}`, label: o.label ?? `m${i}`, log: '' };
    child.stderr!.on('data', (d: Buffer) => (p.log += d.toString()));
    // BKV_TEST_PROC_LOGS=DIR keeps every member's whole log (for a failure that needs more than the tail a test prints)
    const keep = process.env.BKV_TEST_PROC_LOGS;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      const file = join(keep, `${this.root.split('/').pop()}-${p.label}.log`);
      child.stderr!.on('data', (d: Buffer) => appendFileSync(file, d));
    }
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`member ${i} did not start:\n${p.log}`)), 60_000);
      const onExit = (c: number | null) => {
        clearTimeout(t);
        rej(new Error(`member ${i} exited ${c}:\n${p.log}`));
      };
      const check = () => {
        if (!/fleet member \d+ listening/.test(p.log)) return;
        clearTimeout(t);
        child.stderr!.off('data', check);
        child.off('exit', onExit);
        res();
      };
      child.stderr!.on('data', check);
      child.on('exit', onExit);
    });
    this.note(`started ${p.label} (pid ${child.pid})`);
    if (o.label === undefined) this.procs[i] = p;
    else this.extra.push(p);
    return p;
  }

  async kill(p: MemberProc, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      const done = new Promise((r) => p.child.once('exit', r));
      p.child.kill(signal);
      await done;
      this.note(`${signal} ${p.label}`);
    }
    if (this.procs[p.member] === p) this.procs[p.member] = null;
  }

  async status(api: string): Promise<MemberStatus | null> {
    try {
      const r = await fetch(`${api}/fleet/status`, { signal: AbortSignal.timeout(2000) });
      return r.ok ? ((await r.json()) as MemberStatus) : null;
    } catch {
      return null;
    }
  }

  /** The member that leads a majority of the running primaries (it says so, and a majority follow it), or null. */
  async leader(): Promise<number | null> {
    const all = await Promise.all(this.procs.map((p) => (p ? this.status(p.api) : null)));
    const normal = all.filter((s): s is MemberStatus => s?.status === 'normal' && s.leader !== null);
    for (const s of normal) if (s.leader!.id === s.member && normal.filter((t) => t.leader!.id === s.member).length > this.n / 2) return s.member;
    return null;
  }

  async waitFor<T>(what: string, fn: () => Promise<T | null | false>, ms = 30_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== null && v !== false) return v;
      if (Date.now() > end) {
        const logs = [...this.procs, ...this.extra].map((p) => p && `${p.label}:\n${p.log.split('\n').slice(-12).join('\n')}`);
        throw new Error(`timed out waiting for ${what}\n${this.events.slice(-20).join('\n')}\n${logs.join('\n---\n')}`);
      }
      await sleep(100);
    }
  }

  /**
   * While `run` (`bkv fleet add` or `replace`) runs, waits for the grant its addition writes into
   * member `id`'s folder; an end of the command before it is an error with its output.
   */
  async grantFor(run: Promise<BkvRun>, id: number): Promise<void> {
    let ended: BkvRun | null = null;
    void run.then((r) => (ended = r));
    await this.waitFor(`the grant to member ${id}`, async () => {
      if (ended) throw new Error(`bkv fleet ended (${ended.code}) before the grant to member ${id}:\n${ended.err}`);
      return existsSync(join(this.root, `member-${id}`, JOIN_FILE));
    }, 120_000);
  }

  /**
   * `bkv fleet replace --member gone --json` (new ports for the member it adds), the member it adds
   * (`added`) started once its grant appears, as the command asks; the command's run once it ends.
   */
  async replaceWith(gone: number, added: number): Promise<BkvRun> {
    const [api, peer] = [await freeFixedPort(), await freeFixedPort()];
    const replacing = runBkvAsync(this.root, ['fleet', 'replace', this.root, '--member', String(gone), '--api-port', String(api), '--peer-port', String(peer), '--timeout', '120', '--json']);
    await this.grantFor(replacing, added);
    await this.start(added);
    return replacing;
  }

  /** Resolves once every primary member is normal under one leader. */
  allNormal(): Promise<unknown> {
    return this.waitFor('every member normal under one leader', async () => {
      const all = await Promise.all(this.procs.map((p) => (p ? this.status(p.api) : null)));
      const ids = new Set(all.map((s) => (s?.status === 'normal' ? s.leader?.id : -1)));
      return ids.size === 1 && !ids.has(-1) && !ids.has(undefined) ? all : null;
    });
  }

  /** Every proxy to and from member `m`. */
  linksOf(m: number): TcpProxy[] {
    return this.proxies.flatMap((row, i) => row.filter((p, j): p is TcpProxy => p !== null && (i === m || j === m)));
  }

  /** A copy of member `m`'s folder, kept for a later restore; its trail joins the ledger. */
  copyOf(m: number, name: string): string {
    const copy = join(this.root, name);
    copyFolder(this.memberDir(m), copy);
    this.trails.add(copy);
    return copy;
  }

  /** Replaces member `m`'s folder (it must be down) with `copy`. */
  restore(m: number, copy: string): void {
    rmSync(this.memberDir(m), { recursive: true, force: true });
    cpSync(copy, this.memberDir(m), { recursive: true });
    this.note(`restored m${m} from ${copy}`);
  }

  /** A fleet folder holding a copy of member `m`'s folder (with fleet.json and auth/), for a second process of `m`. */
  cloneFolder(m: number, name: string): string {
    const root = join(this.root, name);
    mkdirSync(root);
    cpSync(this.fleetFile, join(root, 'fleet.json'));
    cpSync(join(this.root, 'auth'), join(root, 'auth'), { recursive: true });
    copyFolder(this.memberDir(m), this.memberDir(m, root));
    this.trails.add(this.memberDir(m, root));
    return join(root, 'fleet.json');
  }

  trailTexts(): { name: string; text: string }[] {
    return [...this.trails].filter((d) => existsSync(join(d, 'history.jsonl'))).map((d) => ({ name: d, text: readFileSync(join(d, 'history.jsonl'), 'utf8') }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.procs, ...this.extra].map((p) => (p ? this.kill(p) : undefined)));
    await Promise.all(this.proxies.flat().map((p) => p?.close()));
    if (!process.env.BKV_KEEP) rmSync(this.root, { recursive: true, force: true });
  }
}

export async function postOp(api: string, intent: unknown): Promise<Reply> {
  try {
    const r = await fetch(`${api}/fleet/ops`, { method: 'POST', body: JSON.stringify(intent), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(12_000) });
    return { status: r.status, body: await r.json() };
  } catch {
    return null;
  }
}

/** An SDK client of the fleet in `root` over `baseUrl` (its members' client URLs): the identity KSF (no stretching: many registrations), tokens from the fleet's development issuer, the pinned vault-key.pub. */
export async function fleetClient(root: string, baseUrl: string[]): Promise<EscrowClient> {
  const pinned = readVaultKeyFile(join(root, 'vault-key.pub'));
  const issuer = readIssuerPrivate(join(root, 'auth', 'issuer.key'));
  return new EscrowClient({
    relay: httpRelay({ baseUrl, enclavePublicKey: pinned.enclavePublicKey, timeoutMs: 15_000 }),
    enclavePublicKey: pinned.enclavePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: pinned.opaqueContext,
    ksf: identityKsf,
    ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
    auth: (recordId) => mintToken(issuer, { subject: new TextDecoder().decode(recordId) }),
  });
}
