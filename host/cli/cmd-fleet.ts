/**
 * `bkv fleet`: a fleet's folder, its member processes and their state (host/fleet/, docs/fleet.md).
 *   bkv fleet init --members 3|5|7 --dir DIR [--host 127.0.0.1] [--base-port 7400] [--auth-issuer FILE.pub ...] [--operator-key-file F]
 *                  [--store-template postgres://USER@HOST:PORT/bkv_fleet_{member}]
 *       writes DIR/fleet.json (the members, their client and peer addresses, their data folders
 *       DIR/member-<i>/, with --store-template each member's own PostgreSQL store, `{member}`
 *       replaced by its id; without, SQLite in each member's folder), without --auth-issuer a
 *       development issuer in DIR/auth/, and without --operator-key-file a development operator
 *       secret DIR/auth/operator.secret (mode 0600)
 *   bkv fleet up DIR [--operator-key-file F]
 *       every member as a child process (`bkv serve --fleet DIR/fleet.json --member I`), for
 *       development: prints where each listens, restarts none, SIGINT/SIGTERM stop them all
 *   bkv fleet add DIR [--host H] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]
 *   bkv fleet remove DIR --member I [--operator-key-file F] [--timeout S]
 *   bkv fleet replace DIR --member I [--host H] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]
 *       charter changes on a running fleet (docs/fleet.md "Membership changes in the processes"):
 *       the operator's approval to every member, the change committed by the fleet, fleet.json
 *       rewritten; an added member is then started by the operator and joins; replace adds, waits
 *       for the new member to serve, then removes
 *   bkv fleet reform DIR --without I[,J] [--operator-key-file F] [--timeout S]
 *       after a whole-fleet restart with members gone for good: the members left (a majority of
 *       the charter) re-form without them, on the operator's approval (docs/fleet.md "Re-form
 *       without some members")
 *   bkv fleet status DIR
 *       asks each member's GET /fleet/status; exit 0 when a majority is normal under one leader;
 *       --json rows carry each member's vault key fingerprint (`vaultKey`: equal on every member)
 * and `bkv serve --fleet DIR/fleet.json --member I` (`fleetServe`): one member's process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { DEFAULT_BASE_PORT, DEFAULT_FLEET_HOST, FLEET_FILE, FLEET_SIZES, FleetConfigError, checkHost, formatEndpoint, initFleet, memberDir, parseEndpoint, readFleetConfig, storesFromTemplate, type Endpoint, type LoadedFleet } from '../fleet/config.ts';
import { DEFAULT_SQLITE_FILE } from '../storage/index.ts';
import { MemberHost, memberLog, OperatorSecretError, readOperatorSecretFile, type MemberStatusJson } from '../fleet/member-host.ts';
import { intOption, parseArgs, required, UsageError, type Parsed } from './args.ts';
import { limit as rateLimit } from './cmd-serve.ts';
import { CliError, EXIT, describeError } from './exit-codes.ts';
import { unknownWord } from './help.ts';
import type { Output } from './output.ts';
import { scrubCredentials } from './redact.ts';

const usage = <T>(fn: () => T): T => {
  try {
    return fn();
  } catch (e) {
    throw e instanceof FleetConfigError || e instanceof OperatorSecretError ? new UsageError(e.message) : e;
  }
};

export async function fleetCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['members', 'dir', 'host', 'base-port', 'auth-issuer', 'operator-key-file', 'store-template', 'member', 'api-port', 'peer-port', 'store', 'timeout', 'without'] });
  const verb = p.positional[0];
  switch (verb) {
    case 'init':
      return init(p, out);
    case 'up':
      return up(p, out);
    case 'status':
      return status(p, out);
    case 'add':
    case 'remove':
    case 'replace':
    case 'reform':
      return (await import('./cmd-fleet-charter.ts'))[verb](p, out);
    default:
      throw unknownWord(verb, 'fleet');
  }
}

export function only(p: Parsed, verb: string, allowed: readonly string[], positional: number): void {
  for (const k of p.opts.keys()) if (!allowed.includes(k)) throw new UsageError(`--${k} does not go with bkv fleet ${verb}`);
  if (p.positional.length !== positional + 1) throw new UsageError(positional === 0 ? `unexpected ${p.positional.slice(1).join(' ')}` : `bkv fleet ${verb} takes the fleet folder: bkv fleet ${verb} DIR`);
}

async function init(p: Parsed, out: Output): Promise<number> {
  only(p, 'init', ['members', 'dir', 'host', 'base-port', 'auth-issuer', 'operator-key-file', 'store-template'], 0);
  const members = Number(required(p, 'members'));
  if (!FLEET_SIZES.includes(members)) throw new UsageError(`--members must be one of ${FLEET_SIZES.join(', ')}`);
  const dir = required(p, 'dir');
  const host = p.opts.get('host') ?? DEFAULT_FLEET_HOST;
  usage(() => checkHost(host, '--host'));
  const basePort = intOption(p, 'base-port', 1, 65535 - 2 * members + 1) ?? DEFAULT_BASE_PORT;
  const operatorKeyFile = p.opts.get('operator-key-file');
  if (operatorKeyFile !== undefined) usage(() => readOperatorSecretFile(operatorKeyFile));
  const storeTemplate = p.opts.get('store-template');
  if (storeTemplate !== undefined) usage(() => storesFromTemplate(storeTemplate, members));
  const { fleet, devIssuerKey, devOperatorSecret } = await initFleet({ dir, members, host, basePort, authIssuers: p.all.get('auth-issuer') ?? [], ...(operatorKeyFile !== undefined && { operatorKeyFile }), ...(storeTemplate !== undefined && { storeTemplate }) });
  const list = fleet.members.map((m) => ({ id: m.id, api: formatEndpoint(m.api), peer: formatEndpoint(m.peer), data: memberDir(fleet, m.id), ...(m.store !== undefined && { store: storeText(fleet, m.id) }) }));
  out.set({ file: fleet.file, fleetId: fleet.fleetId, members: list, ...(devIssuerKey && { devIssuerKey }), ...(devOperatorSecret && { devOperatorSecret }) });
  if (!out.json) {
    console.log(`fleet ${fleet.fleetId}: ${fleet.file}`);
    for (const m of list) console.log(`  member ${m.id}: clients ${m.api}, members ${m.peer}, data ${m.data}, store ${storeText(fleet, m.id)}`);
  }
  if (devIssuerKey) console.error(`bkv: development issuer (tokens: bkv auth token --issuer-key ${devIssuerKey} --id ID)`);
  if (devOperatorSecret) console.error(`bkv: development operator secret ${devOperatorSecret} (the members' key ceremony): keep your own apart from the fleet folder (--operator-key-file)`);
  return 0;
}

/** Member `id`'s store as printed: its PostgreSQL URL without user information, or its SQLite file (in --json only a PostgreSQL store is listed). */
function storeText(fleet: LoadedFleet, id: number): string {
  const store = fleet.members[id]!.store;
  return store === undefined ? path.join(memberDir(fleet, id), DEFAULT_SQLITE_FILE) : scrubCredentials(store);
}

/** The members fleet.json does not mark removed, in id order. */
export const active = (fleet: LoadedFleet) => fleet.members.filter((m) => m.removed === undefined);

/** DIR or DIR/fleet.json, read (a missing or damaged file: exit 1, FleetConfigError). */
export function fleetAt(arg: string): LoadedFleet {
  return readFleetConfig(arg.endsWith('.json') ? arg : path.join(arg, FLEET_FILE));
}

// ---- bkv fleet up ---------------------------------------------------------------------------------

async function up(p: Parsed, out: Output): Promise<number> {
  only(p, 'up', ['operator-key-file'], 1);
  const fleet = fleetAt(p.positional[1]!);
  const key = p.opts.get('operator-key-file');
  const children: ChildProcess[] = active(fleet).map((m) =>
    spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'serve', '--fleet', fleet.file, '--member', String(m.id), ...(key ? ['--operator-key-file', path.resolve(key)] : [])], { stdio: ['ignore', 'inherit', 'inherit'] }),
  );
  let stopping = false;
  const exited = children.map((c) => new Promise<number | null>((res) => c.on('exit', (code) => res(code))));
  children.forEach((c, i) =>
    c.on('exit', (code, signal) => {
      if (!stopping) console.error(`${new Date().toISOString()} bkv: member ${active(fleet)[i]!.id} exited (${signal ?? code}); not restarted`);
    }),
  );
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.error(`${new Date().toISOString()} bkv: ${signal}: stopping every member`);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  const list = active(fleet).map((m, i) => ({ id: m.id, api: `http://${formatEndpoint(m.api)}`, peer: formatEndpoint(m.peer), data: memberDir(fleet, m.id), ...(m.store !== undefined && { store: storeText(fleet, m.id) }), pid: children[i]!.pid }));
  for (const m of list) console.error(`bkv: member ${m.id} (pid ${m.pid}): clients ${m.api}, members ${m.peer}, data ${m.data}, store ${storeText(fleet, m.id)}`);
  console.error(`bkv: bkv fleet status ${fleet.dir} shows their state; Ctrl-C stops them all`);
  out.set({ status: 'started', file: fleet.file, members: list });
  out.emit({});
  void Promise.all(exited).then((codes) => process.exit(stopping && codes.every((c) => c === 0 || c === null) ? 0 : 1));
  return -1;
}

// ---- bkv fleet status -----------------------------------------------------------------------------

export interface MemberRow {
  readonly member: number;
  readonly api: string;
  readonly reachable: boolean;
  readonly status: string;
  readonly epoch: number | null;
  readonly view: number | null;
  readonly leader: number | null;
  readonly commit: number | null;
  /** The leader's commit minus this member's (null without a leader or an answer). */
  readonly lag: number | null;
  /** The fingerprint of the vault key the member's token gives (host/fleet/member-host.ts vaultKeyFingerprint); null before its ceremony is done. */
  readonly vaultKey: string | null;
  /** Serving the vault: the last batch its vault committed or applied (null otherwise, or without an answer). */
  readonly appliedBatch: number | null;
  /** Serving the vault: its log folded batches its vault never applied, and its host copies rows (docs/fleet-vault.md). */
  readonly behind: boolean | null;
  /** The serial of the charter at its commit point (0: the founding one), and the member ids that charter names (docs/fleet.md "Membership changes"). */
  readonly charter: { readonly serial: number; readonly members: readonly number[] } | null;
  /** `behind`: normal in the log, but its vault serves nothing until it has copied another member's rows; `cut-off`: it leads but hears no majority of the members (it takes no client operation). */
  readonly health: 'ok' | 'lagging' | 'behind' | 'cut-off' | 'not-normal' | 'unreachable';
}

export async function ask(api: Endpoint): Promise<MemberStatusJson | null> {
  try {
    const r = await fetch(`http://${formatEndpoint(api)}/fleet/status`, { signal: AbortSignal.timeout(3000) });
    return r.ok ? ((await r.json()) as MemberStatusJson) : null;
  } catch {
    return null;
  }
}

/** The rows of `bkv fleet status` and whether a majority is normal under one leader that leads. */
export function summarize(fleet: LoadedFleet, answers: readonly (MemberStatusJson | null)[]): { rows: MemberRow[]; leader: number | null; healthy: boolean } {
  const normal = answers.filter((a): a is MemberStatusJson => a !== null && a.status === 'normal');
  const leaders = new Set(normal.map((a) => a.leader?.id));
  const leader = leaders.size === 1 ? (normal[0]!.leader?.id ?? null) : null;
  const lead = leader === null ? undefined : normal.find((a) => a.member === leader);
  const healthy = lead !== undefined && lead.cutOff !== true && normal.length > active(fleet).length / 2;
  const rows = active(fleet).map((m, i): MemberRow => {
    const a = answers[i];
    const api = `http://${formatEndpoint(m.api)}`;
    if (!a) return { member: m.id, api, reachable: false, status: 'unreachable', epoch: null, view: null, leader: null, commit: null, lag: null, vaultKey: null, appliedBatch: null, behind: null, charter: null, health: 'unreachable' };
    const lag = lead && a.commit !== undefined ? lead.commit! - a.commit : null;
    const health = a.status !== 'normal' ? 'not-normal' : a.behind === true ? 'behind' : a.cutOff === true ? 'cut-off' : lag !== null && lag > 0 ? 'lagging' : 'ok';
    const charter = a.charter ? { serial: a.charter.committed, members: a.charter.members } : null;
    return { member: m.id, api, reachable: true, status: a.status, epoch: a.epoch ?? null, view: a.view ?? null, leader: a.leader?.id ?? null, commit: a.commit ?? null, lag, vaultKey: a.vaultKey ?? null, appliedBatch: a.appliedBatch ?? null, behind: a.behind ?? null, charter, health };
  });
  return { rows, leader, healthy };
}

async function status(p: Parsed, out: Output): Promise<number> {
  only(p, 'status', [], 1);
  const fleet = fleetAt(p.positional[1]!);
  const answers = await Promise.all(active(fleet).map((m) => ask(m.api)));
  const { rows, leader, healthy } = summarize(fleet, answers);
  out.set({ file: fleet.file, fleetId: fleet.fleetId, leader, healthy, members: rows });
  if (!out.json) {
    const cell = (v: unknown) => (v === null || v === undefined ? '-' : String(v));
    console.log(['member', 'status', 'epoch', 'view', 'leader', 'commit', 'lag', 'applied', 'charter', 'health', 'api'].join('\t'));
    for (const r of rows) console.log([r.member, r.status, r.epoch, r.view, r.leader, r.commit, r.lag, r.appliedBatch, r.charter && `${r.charter.serial}:${r.charter.members.join(',')}`, r.health, r.api].map(cell).join('\t'));
  }
  if (!healthy) {
    // a re-form waits for the vote of every member: name the silent ones, and the way out if one is gone for good
    const reforming = rows.filter((r) => r.status === 'reform').map((r) => r.member);
    const silent = rows.filter((r) => !r.reachable).map((r) => r.member);
    const cut = rows.filter((r) => r.health === 'cut-off').map((r) => r.member);
    const hint =
      (reforming.length > 0 && silent.length > 0 ? `; member ${reforming.join(', ')} re-form and wait for member ${silent.join(', ')}: start it, or, if its machine is gone for good, bkv fleet reform ${fleet.dir} --without ${silent.join(',')}` : '') +
      (cut.length > 0 ? `; member ${cut.join(', ')} leads but hears no majority of the members (cut off: it takes no client operation; look at its network)` : '');
    throw new CliError(EXIT.failure, `the fleet has no majority of normal members under one leader (${rows.filter((r) => r.status === 'normal').length} of ${rows.length} normal)${hint}`);
  }
  return 0;
}

// ---- bkv serve --fleet ----------------------------------------------------------------------------

const FLEET_SERVE_OPTIONS = ['fleet', 'member', 'peer-listen', 'api-listen', 'peer-via', 'operator-key-file', 'store', 'record-limit', 'address-limit'] as const;

/**
 * `bkv serve --fleet DIR/fleet.json --member I [--peer-listen H:P] [--api-listen H:P] [--peer-via J=H:P ...] [--operator-key-file F]
 * [--store URL] [--record-limit R/B|off] [--address-limit R/B|off] [--replication-test]`: one member, until SIGTERM or SIGINT.
 * Its store: `--store`, else the member's `store` in fleet.json, else SQLite vault.db in its folder.
 * It serves the vault's client API; `--replication-test` serves the replication layer's test API (/fleet/ops) instead.
 */
export async function fleetServe(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: [...FLEET_SERVE_OPTIONS], flags: ['replication-test'] });
  if (p.positional.length) throw new UsageError(`unexpected ${p.positional.join(' ')}`);
  const fleetFile = required(p, 'fleet');
  const fleet = fleetAt(fleetFile);
  const member = intOption(p, 'member', 0, fleet.members.length - 1);
  if (member === undefined) throw new UsageError('--member is required with --fleet');
  const endpoint = (name: string) => (p.opts.has(name) ? usage(() => parseEndpoint(p.opts.get(name), `--${name}`)) : undefined);
  const peerVia = new Map<number, Endpoint>();
  for (const v of p.all.get('peer-via') ?? []) {
    const m = /^(\d+)=(.+)$/.exec(v);
    const id = m ? Number(m[1]) : NaN;
    if (!m || !(id >= 0 && id < fleet.members.length) || id === member) throw new UsageError(`--peer-via wants J=HOST:PORT with J another member's id (0..${fleet.members.length - 1})`);
    peerVia.set(id, usage(() => parseEndpoint(m[2], '--peer-via')));
  }
  const key = p.opts.get('operator-key-file');
  if (key !== undefined) usage(() => readOperatorSecretFile(key));
  // A member that finds another vault key in DIR/vault-key.pub after it started stops (exit 1, as a refusal at start).
  const onFatal = (e: Error) => {
    console.error(`${new Date().toISOString()} ${describeError(e).line}`);
    process.exit(describeError(e).exitCode);
  };
  const replication = p.flags.has('replication-test');
  for (const o of ['store', 'record-limit', 'address-limit']) if (replication && p.opts.has(o)) throw new UsageError(`--${o} is the vault's: it does not go with --replication-test`);
  const store = p.opts.get('store');
  const log = memberLog(member);
  const host = new MemberHost({
    fleetFile: fleet.file,
    member,
    peerListen: endpoint('peer-listen'),
    apiListen: endpoint('api-listen'),
    peerVia,
    onFatal,
    log,
    ...(key !== undefined && { operatorKeyFile: key }),
    serve: replication ? 'replication-test' : 'vault',
    ...(store !== undefined && store !== '' && !replication && { storeUrl: store }),
    rateLimits: { record: rateLimit(p, 'record-limit'), address: rateLimit(p, 'address-limit') },
  });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    stopping = true;
    log(`${signal}: stopping`);
    host.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  await host.start();
  const me = fleet.members[member]!;
  console.error(`${new Date().toISOString()} bkv: fleet member ${member} listening: clients ${host.apiUrl}, members ${formatEndpoint({ host: (endpoint('peer-listen') ?? me.peer).host, port: host.peerPort })}`);
  out.set({ status: 'listening', member, fleetId: fleet.fleetId, url: host.apiUrl, peerPort: host.peerPort });
  out.emit({});
  return -1;
}
