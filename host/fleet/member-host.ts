/**
 * One fleet member's host process (`bkv serve --fleet DIR/fleet.json --member I`, docs/fleet.md
 * "The member process"): it reads fleet.json (config.ts), runs the key ceremony over the members'
 * folders until its device holds its secrets (hsm/fleet/device.ts), boots the device from its
 * folder, ticks it on a timer, carries its messages over the transport (transport.ts) and answers
 * clients over HTTP on the member's api address:
 *
 *   GET  /fleet/status   member, status, epoch, view, leader (id and client URL), commit, tip,
 *                        incarnation prefix, each peer connection, refusals counted by name,
 *                        messages sent counted by type;
 *                        serving the vault, also its applied batch
 *   GET  /fleet/rows     serving the vault: its stored rows, for the other members' hosts only
 *                        (the fleet's peer secret, DIR/auth/peer.secret: rows-endpoint.ts)
 *   POST /fleet/ops      one intent as JSON ({"kind":"register","id":"r1","limit":10}; charge and
 *                        reset with "session"; replace with "limit"; touch; lock; delete):
 *                        200 {"index","hash","op"} once a majority made it durable; 421 NOT_LEADER (with "leader", the leader's URL,
 *                        when known); 409/400/503 with the fleet's refusal by name
 *                        ("Fleet.TransitionNotAllowed", ...)
 *
 * Once the ceremony is done, the device opens the member's vault token (in its folder, the
 * emulator by default, its PINs outside the folder: by default DIR/auth/member-<i>.operator/, the
 * development-mode operator folder of hsm/tokens/token-pins.ts beside the fleet's development
 * secrets) and imports the fleet's vault keys, or checks that the token's are this fleet's
 * (hsm/fleet/device.ts memberVaultKey); the host gets the public keys only and makes of them the
 * single vault's vault-key.pub text. `DIR/vault-key.pub` (what clients pin) is written once this
 * member is normal in a view (a majority formed it): created atomically when absent, left when
 * byte-equal; a member whose text differs refuses to start (VaultKeyFileError, exit 1), before it
 * joins the others when the file is there at its start, and by stopping when it appears later.
 * GET /fleet/status carries the text's fingerprint (`vaultKey`).
 *
 * Its vault's store (MemberHostOptions `storeUrl`, else fleet.json's `store`, else SQLite vault.db
 * in its folder): a PostgreSQL store is claimed before it opens and for as long as the member
 * runs (store-claim.ts), so a second process given the same database refuses to start.
 *
 * What it serves (MemberHostOptions `serve`): by default the vault's client API, the single vault's
 * routes over the member's vault with its batches on the fleet's log (vault-node.ts,
 * vault-routes.ts; docs/fleet-vault.md "The vault in the member process"), where POST /fleet/ops
 * answers 409; with `--replication-test`, the replication layer's test API above over a log of
 * abstract records (the two can not share one log's record ids). The host holds no key
 * and reads nothing of a message but its receiver; it can delay, drop or replay, which the
 * protocol tolerates. Every acknowledgement follows the device's durable write (the device writes
 * before it answers), so a SIGKILL loses nothing acknowledged.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TokenPinSource } from '../../enclave/api/device.ts';
import { DEFAULT_AUDIENCE, type AuthConfig } from '../../enclave/api/auth.ts';
import { ceremonyStep, ChangeFormatError, FILES, FleetDevice, FleetFault, fleetFaultName, IntentError, JOIN_FILE, joinCeremonyStep, memberVaultKey, parseChange, parseIntent, parseReformWithout, type DeviceAnswer, type DeviceOutput, type DeviceStatus, type JoinFile } from '../../hsm/fleet/device.ts';
import { createFileDurably } from '../../hsm/durable-file.ts';
import type { TokenKind } from '../../hsm/tokens/backends.ts';
import { readIssuerPublic } from '../auth/issuer.ts';
import { vaultKeyFileText } from '../cli/io.ts';
import type { RateLimits } from '../service/rate-limit.ts';
import { ErrorCode, ServiceError, type ErrorCodeName } from '../service/error-codes.ts';
import { DEV_OPERATOR_SECRET, formatEndpoint, foundingMembers, memberDir, readFleetConfig, type Endpoint, type LoadedFleet } from './config.ts';
import { Transport, type PeerStatus } from './transport.ts';
import { createPeerSecret, PEER_SECRET_FILE, PeerAuthVerifier, peerAuthKey, readPeerSecret } from './peer-auth.ts';
import { copySources } from './row-copy.ts';
import { ROWS_PATH, rowsEndpoint } from './rows-endpoint.ts';
import { FleetVaultNode } from './vault-node.ts';
import { fleetVaultRoutes, type FleetVaultRoutes } from './vault-routes.ts';
import { claimPostgresStore, type StoreClaim } from './store-claim.ts';
import { parseStoreUrl } from '../storage/index.ts';

/**
 * Ticks: 50 ms each; a view change after 20 quiet ticks (1 s, etcd's default election timeout:
 * a member's main thread runs its device with synchronous fsyncs, which a loaded disk stalls for
 * hundreds of milliseconds), a re-form vote from a member not admitted after 60 (3 s).
 */
export const MEMBER_TIMING = { tickMs: 50, viewChangeTicks: 20, reformTicks: 60, resendTicks: 2 } as const;
/**
 * A positive control for the process tests only: the member runs with one of the simulation's
 * broken rules (enclave/fleet/core.ts BROKEN_RULES), and says so loudly. Never in a fleet that
 * holds anything.
 */
export const BROKEN_RULE_ENV = 'BKV_FLEET_BROKEN_RULE';
/** The largest client request body. */
export const MAX_OP_BODY = 4096;
/** Where the operator's approvals of charter changes arrive (`approve`). */
export const CHARTER_PATH = '/fleet/charter';
/** Where the operator's approvals of a re-form without some members arrive (`approveReform`). */
export const REFORM_PATH = '/fleet/reform';

/**
 * A member process's log line: its UTC time to the millisecond, then `bkv: member I: ` and the
 * line. A fleet's story (view changes, catch-ups, copies) is told across the members' logs, which
 * only their times put in one order.
 */
export function memberLogLine(member: number, line: string, at: Date = new Date()): string {
  return `${at.toISOString()} bkv: member ${member}: ${line}`;
}

/** Writes `memberLogLine`s to stderr: the member process's default log. */
export const memberLog =
  (member: number) =>
  (line: string): void =>
    console.error(memberLogLine(member, line));
/** How long a client waits for its operation's answer before hearing that the outcome is unknown. */
export const ANSWER_TIMEOUT_MS = 10_000;

/** The fleet's vault key file, in the fleet folder: what clients pin (host/cli/io.ts format). */
export const VAULT_KEY_FILE = 'vault-key.pub';

/** The development-mode operator folder of member `member`'s token PINs (hsm/tokens/token-pins.ts), in the fleet folder's auth/. */
export const memberTokenOperatorDir = (fleetDir: string, member: number): string => path.join(fleetDir, 'auth', `member-${member}.operator`);

/** A vault key file's fingerprint: SHA-256 of its text, the first 32 hex digits in groups of 4. */
export function vaultKeyFingerprint(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32).match(/.{4}/g)!.join('-');
}

/** DIR/vault-key.pub holds another vault key than this member's token gives: the member does not serve. */
export class VaultKeyFileError extends Error {
  override readonly name = 'VaultKeyFileError';
}

export interface MemberHostOptions {
  readonly fleetFile: string;
  readonly member: number;
  /** The member's vault token backend (hsm/tokens/backends.ts); default the emulator. */
  readonly token?: TokenKind;
  /** Where its PINs are; default the development-mode operator folder `memberTokenOperatorDir`. */
  readonly tokenPins?: TokenPinSource;
  /** Called when the member must stop after it started (its vault key file turned out to differ); the command exits. */
  readonly onFatal?: (e: Error) => void;
  /** Listen for the other members here instead of fleet.json's peer address (behind a proxy, a clone). */
  readonly peerListen?: Endpoint;
  /** Listen for clients here instead of fleet.json's api address. */
  readonly apiListen?: Endpoint;
  /** Reach member J at this address instead of fleet.json's (a proxy). */
  readonly peerVia?: ReadonlyMap<number, Endpoint>;
  /** The operator secret (64 hex digits); default DIR/auth/operator.secret. */
  readonly operatorKeyFile?: string;
  /**
   * What the member serves: 'vault' (the default), the vault's client API with its batches on the
   * fleet's log; or 'replication-test', the replication layer's test API (POST /fleet/ops) over a
   * log of abstract records. The two can not share one log (its record ids), so a member runs one.
   */
  readonly serve?: 'vault' | 'replication-test';
  /** The vault's storage URL (host/storage/index.ts); default the member's `store` in fleet.json, else SQLite vault.db in its folder. */
  readonly storeUrl?: string;
  /** The vault API's rate limits (host/service/rate-limit.ts); default the single vault's. */
  readonly rateLimits?: RateLimits;
  readonly log?: (line: string) => void;
}

export class OperatorSecretError extends Error {
  override readonly name = 'OperatorSecretError';
}

/** 64 hex digits, as `bkv operator keygen` writes. */
export function readOperatorSecretFile(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new OperatorSecretError(`the operator secret ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new OperatorSecretError(`the operator secret ${file}: expected 64 hex digits (bkv operator keygen)`);
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

export interface MemberStatusJson extends Partial<Omit<DeviceStatus, 'leader'>> {
  readonly member: number;
  readonly fleetId: string;
  readonly status: string;
  readonly leader: { readonly id: number; readonly api: string } | null;
  readonly waiting?: string;
  readonly secretCheck?: string;
  /** The fingerprint of this member's vault key file text (vaultKeyFingerprint), once its token holds the fleet's keys. */
  readonly vaultKey?: string;
  /** Whether this member wrote, or found byte-equal, DIR/vault-key.pub. */
  readonly vaultKeyFile?: boolean;
  readonly peers: readonly PeerStatus[];
  readonly refused: Readonly<Record<string, number>>;
  /** Messages sent since the process started, by type (transport.ts `sent`). */
  readonly sent: Readonly<Record<string, number>>;
  /** 'vault' or 'replication-test' (MemberHostOptions `serve`). */
  readonly serving: 'vault' | 'replication-test';
  /** The last vault batch this member's vault committed or applied (serving the vault). */
  readonly appliedBatch?: number;
  /** Serving the vault: its log folded batches its vault never applied (it waits for a catch-up by stored rows). */
  readonly behind?: boolean;
  /** The last failure applying a committed batch, while it lasts. */
  readonly applyError?: string;
}

type Reply = { status: number; body: unknown };

const badRequest = (message: string): Reply => ({ status: 400, body: { error: { code: 'BAD_REQUEST', num: ErrorCode.BAD_REQUEST.num, message } } });

/**
 * An operator approval's body (POST /fleet/charter, /fleet/reform): a JSON object with the keys
 * `keys` and "approval" (64 lower-case hex digits, the MAC) and no other; the fields as parsed and
 * the MAC's bytes, or the 400 to answer.
 */
function approvalBody(body: Buffer, keys: readonly string[]): { v: Record<string, unknown>; mac: Uint8Array } | { reply: Reply } {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return { reply: serviceError('MALFORMED_JSON') };
  }
  const all = [...keys, 'approval'];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { reply: badRequest(`expected {${all.map((k) => `"${k}"`).join(', ')}}`) };
  const extra = Object.keys(v).filter((k) => !all.includes(k));
  if (extra.length) return { reply: badRequest(`unknown key ${extra[0]}`) };
  if (typeof v.approval !== 'string' || !/^[0-9a-f]{64}$/.test(v.approval)) return { reply: badRequest('"approval" must be 64 lower-case hex digits') };
  return { v, mac: Uint8Array.from(Buffer.from(v.approval, 'hex')) };
}

function serviceError(code: ErrorCodeName, extra: Record<string, unknown> = {}): Reply {
  const e = new ServiceError(code);
  return { status: e.status, body: { error: { ...e.toJSON().error, ...extra } } };
}

/** A fleet refusal as the client sees it: its name, number and an HTTP status by kind. */
function refusal(a: Extract<DeviceAnswer, { ok: false }>, leaderUrl: string | null): Reply {
  if (a.name === 'Fleet.NotLeader') return serviceError('NOT_LEADER', leaderUrl ? { leader: leaderUrl } : {});
  const status = a.name === 'Fleet.BadValue' ? 400 : a.name === 'Fleet.TransitionNotAllowed' || a.name === 'Fleet.BaseVersion' ? 409 : 503;
  const message = a.code === 0 ? 'the member left the lead before the operation committed: it may still commit; ask again' : 'the fleet refused the operation';
  return { status, body: { error: { code: a.name, num: a.code, message } } };
}

export class MemberHost {
  private fleetNow: LoadedFleet;
  /** When fleet.json was last read (its mtime), to take a rewrite by `bkv fleet add|remove`. */
  private fleetMtime = 0;
  /** The other members whose hosts may ask for this member's rows (rows-endpoint.ts): grows with fleet.json. */
  private readonly rowPeers = new Set<number>();
  private operatorSecret: Uint8Array | null = null;
  private granting = false;
  private device: FleetDevice | null = null;
  private vault: FleetVaultNode | null = null;
  private routes: FleetVaultRoutes | null = null;
  private rows: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null = null;
  private transport: Transport | null = null;
  private claim: StoreClaim | null = null;
  private server: http.Server | null = null;
  private timer: NodeJS.Timeout | null = null;
  private now = 0;
  private waiting = 'the key ceremony';
  private secretCheck: string | undefined;
  private vaultKey: { text: string; fingerprint: string } | null = null;
  private vaultKeyFiled = false;
  private readonly answers = new Map<number, (a: DeviceAnswer) => void>();
  private readonly refused: Record<string, number> = {};
  private lastLine = '';
  private closed = false;
  private readonly log: (line: string) => void;

  constructor(private readonly o: MemberHostOptions) {
    this.fleetNow = readFleetConfig(o.fleetFile);
    this.fleetMtime = statSync(o.fleetFile).mtimeMs;
    if (!Number.isInteger(o.member) || o.member < 0 || o.member >= this.fleet.members.length) throw new Error(`--member: the fleet has members 0..${this.fleet.members.length - 1}`);
    const removed = this.fleet.members[o.member]!.removed;
    if (removed !== undefined) throw new Error(`--member: member ${o.member} was removed from the fleet (charter change ${removed}); its id is never given again`);
    this.log = o.log ?? memberLog(o.member);
  }

  /** fleet.json as last read (a charter change rewrites it: `refreshFleet`). */
  get fleet(): LoadedFleet {
    return this.fleetNow;
  }

  /** The founding members (the key ceremony's charter): their count is the devices' `n`. */
  private get founders(): LoadedFleet['members'] {
    return foundingMembers(this.fleet);
  }

  /**
   * fleet.json again if it changed (`bkv fleet add|remove` rewrote it): a member it adds is
   * connected to and may ask for rows. What the devices count is their log's charter, never this file.
   */
  private refreshFleet(): void {
    let mtime: number;
    try {
      mtime = statSync(this.o.fleetFile).mtimeMs;
    } catch {
      return;
    }
    if (mtime === this.fleetMtime) return;
    let next: LoadedFleet;
    try {
      next = readFleetConfig(this.o.fleetFile);
    } catch (e) {
      this.log(`fleet.json changed and does not read (${(e as Error).message}): keeping the one read before`);
      this.fleetMtime = mtime;
      return;
    }
    this.fleetMtime = mtime;
    if (next.fleetId !== this.fleet.fleetId) {
      this.log(`fleet.json now names another fleet (${next.fleetId}): ignored`);
      return;
    }
    for (const m of next.members.slice(this.fleet.members.length)) {
      this.log(`fleet.json names member ${m.id} (added by charter change ${m.joined}): connecting to it at ${formatEndpoint(m.peer)}`);
      this.transport?.addPeer(m.id, this.o.peerVia?.get(m.id) ?? m.peer);
      this.rowPeers.add(m.id);
    }
    this.fleetNow = next;
  }

  /**
   * A grant for each added member of fleet.json whose folder has none yet, once this member's
   * device has its change committed (hsm/fleet/charters.ts): written as join.json (an exclusive
   * create: another member's grant, written first, stays).
   */
  private async grantJoiners(grant: (joiner: number) => Promise<JoinFile | null>): Promise<void> {
    if (this.granting) return;
    this.granting = true;
    try {
      for (const m of this.fleet.members) {
        if (m.joined === undefined || m.removed !== undefined || m.id === this.o.member) continue;
        const dir = memberDir(this.fleet, m.id);
        const file = path.join(dir, JOIN_FILE);
        if (!existsSync(dir) || existsSync(file) || existsSync(path.join(dir, FILES.secrets))) continue;
        const g = await grant(m.id);
        if (g && createFileDurably(file, JSON.stringify(g) + '\n')) this.log(`granted member ${m.id} the fleet secret (${file})`);
      }
    } catch (e) {
      this.log(`granting an added member failed: ${(e as Error).message}`);
    } finally {
      this.granting = false;
    }
  }

  /** Every 20 ticks (1 s): fleet.json re-read, grants to added members. */
  private housekeeping(grant: (joiner: number) => Promise<JoinFile | null>): void {
    if (this.now % 20 !== 0) return;
    this.refreshFleet();
    void this.grantJoiners(grant);
  }

  private get serving(): 'vault' | 'replication-test' {
    return this.o.serve ?? 'vault';
  }

  get apiUrl(): string {
    const a = this.server?.address() as AddressInfo | null;
    const host = (this.o.apiListen ?? this.fleet.members[this.o.member]!.api).host;
    return `http://${formatEndpoint({ host, port: a?.port ?? 0 })}`;
  }
  get peerPort(): number {
    return this.transport?.port ?? 0;
  }

  /** Listens for clients, runs the ceremony until done, boots the device and joins the fleet. */
  async start(): Promise<void> {
    const me = this.fleet.members[this.o.member]!;
    const api = this.o.apiListen ?? me.api;
    const server = http.createServer((req, res) => this.handle(req, res));
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(api.port, api.host, () => res());
    });
    this.server = server;
    const operatorSecret = readOperatorSecretFile(this.o.operatorKeyFile ?? path.join(this.fleet.dir, DEV_OPERATOR_SECRET));
    this.operatorSecret = operatorSecret;
    const founders = this.founders.map((m) => memberDir(this.fleet, m.id));
    const ownDir = memberDir(this.fleet, this.o.member);
    const fleetId = Uint8Array.from(Buffer.from(this.fleet.fleetId, 'hex'));
    const joiner = me.joined !== undefined;
    let said = '';
    for (;;) {
      if (this.closed) return;
      const step = joiner
        ? await joinCeremonyStep({ founders, dir: ownDir, member: this.o.member, fleetId, operatorSecret })
        : await ceremonyStep({ dirs: founders, member: this.o.member, fleetId, operatorSecret });
      if (step.done) {
        this.secretCheck = step.check;
        break;
      }
      if (step.waiting !== said) this.log(`key ceremony: waiting for ${step.waiting}`);
      said = step.waiting;
      this.waiting = `key ceremony: ${step.waiting}`;
      await new Promise((r) => setTimeout(r, 200));
    }
    const operatorKeyHash = new Uint8Array(createHash('sha256').update(operatorSecret).digest());
    this.log(`key ceremony done (secret check ${this.secretCheck})`);
    const key = await memberVaultKey(ownDir, this.o.member, {
      ...(this.o.token && { token: this.o.token }),
      pins: this.o.tokenPins ?? { operatorDir: memberTokenOperatorDir(this.fleet.dir, this.o.member) },
      log: this.log,
    });
    const text = vaultKeyFileText({ enclavePublicKey: key.enclavePublicKey, opaqueContext: key.opaqueContext, serverPublicKeys: key.serverPublicKeys });
    this.vaultKey = { text, fingerprint: vaultKeyFingerprint(text) };
    this.log(`vault keys ${key.imported ? 'imported into' : 'checked in'} the member's token (profile ${key.profile}; vault key ${this.vaultKey.fingerprint})`);
    if (existsSync(this.vaultKeyFile) && !this.vaultKeyFileHolds(text)) throw this.otherVaultKey();
    if (this.serving === 'vault') return this.startVault(me, ownDir, operatorKeyHash);
    const broken = process.env[BROKEN_RULE_ENV] || undefined;
    if (broken) this.log(`UNSAFE: ${BROKEN_RULE_ENV}=${broken}: this member breaks a rule of the protocol on purpose (a test's positive control)`);
    const device = new FleetDevice({ dir: ownDir, member: this.o.member, n: this.founders.length, ...MEMBER_TIMING, operatorSecret, ...(broken && { broken }) }, this.now);
    const peers = this.fleet.members.map((m) => this.o.peerVia?.get(m.id) ?? m.peer);
    const transport = new Transport({
      self: this.o.member,
      listen: this.o.peerListen ?? me.peer,
      peers,
      onMessage: (msg) => this.route(device.receive(msg, this.now)),
      onEvent: (e) => this.log(`${e.peer !== undefined ? `member ${e.peer} ` : ''}${e.event}${e.detail ? `: ${e.detail}` : ''}`),
    });
    await transport.start();
    this.device = device;
    this.transport = transport;
    this.waiting = '';
    this.timer = setInterval(() => {
      this.now++;
      this.route(device.tick(this.now));
      this.housekeeping((j) => device.grantJoiner(j));
    }, MEMBER_TIMING.tickMs);
  }

  /** The issuers of fleet.json, for the vault's audience (the single vault's default). */
  private authConfig(): AuthConfig {
    return { audience: DEFAULT_AUDIENCE, issuers: this.fleet.auth.issuers.map((f) => readIssuerPublic(path.resolve(this.fleet.dir, f))).map((i) => ({ name: i.name, publicKey: i.publicKey })) };
  }

  /** The vault on the fleet's log: the device with its seat, the store, the engine and the apply loop (vault-node.ts), the client API (vault-routes.ts). */
  private async startVault(me: LoadedFleet['members'][number], dir: string, operatorKeyHash: Uint8Array): Promise<void> {
    const auth = this.authConfig();
    const storeUrl = this.o.storeUrl ?? me.store;
    // a PostgreSQL store is this member's alone while it runs (store-claim.ts); SQLite lives in its own folder
    if (storeUrl !== undefined && parseStoreUrl(storeUrl, dir).backend === 'postgres') {
      this.claim = await claimPostgresStore(storeUrl, `bkv fleet member ${this.o.member} (fleet ${this.fleet.fleetId.slice(0, 8)})`, (e) => this.log(`the claim on its store was lost (${e.message}): another process could now take the same database`));
    }
    try {
      await this.openVault(me, dir, operatorKeyHash, auth, storeUrl);
    } catch (e) {
      await this.claim?.release();
      throw e;
    }
    if (this.closed) await this.claim?.release(); // closed while it started: close() found no claim yet
  }

  private async openVault(me: LoadedFleet['members'][number], dir: string, operatorKeyHash: Uint8Array, auth: AuthConfig, storeUrl: string | undefined): Promise<void> {
    if (this.closed) return;
    // the fleet's peer secret: written by fleet init; a fleet made before it gets one here (an exclusive create, so members sharing the folder read one)
    if (createPeerSecret(this.fleet.dir)) this.log(`wrote ${path.join(this.fleet.dir, PEER_SECRET_FILE)} (the members' hosts authenticate to each other with it: every member's machine needs this file)`);
    const peerKey = peerAuthKey(readPeerSecret(this.fleet.dir));
    for (const m of this.fleet.members) if (m.id !== this.o.member) this.rowPeers.add(m.id);
    // where a catch-up copies rows from: every other member fleet.json names now (a removed one's rows are as good as its last batch)
    const others = () => this.fleet.members.filter((m) => m.id !== this.o.member).map((m) => ({ member: m.id, api: `http://${formatEndpoint(m.api)}` }));
    this.rows = rowsEndpoint(this.o.member, () => this.vault, new PeerAuthVerifier(peerKey, this.rowPeers), this.log);
    const node = await FleetVaultNode.open(
      {
        device: { dir, member: this.o.member, n: this.founders.length, ...MEMBER_TIMING, auth, operatorKeyHash, ...(this.operatorSecret && { operatorSecret: this.operatorSecret }), ...(this.o.token && { token: this.o.token }), pins: this.o.tokenPins ?? { operatorDir: memberTokenOperatorDir(this.fleet.dir, this.o.member) }, log: this.log },
        ...(storeUrl !== undefined && { storeUrl }),
        send: (_to, msg) => this.transport?.send(msg),
        onFault: (f) => (this.refused[f] = (this.refused[f] ?? 0) + 1),
        leaderUrl: () => this.leaderUrl(this.vault?.status() ?? undefined),
        catchUp: { key: peerKey, sources: (own) => copySources(others(), own) },
        log: this.log,
      },
      this.now,
    );
    if (this.closed) {
      await node.close();
      return;
    }
    this.vault = node;
    this.routes = await fleetVaultRoutes(node, { auth, ...(this.o.rateLimits && { rateLimits: this.o.rateLimits }), log: this.log });
    const peers = this.fleet.members.map((m) => this.o.peerVia?.get(m.id) ?? m.peer);
    const transport = new Transport({
      self: this.o.member,
      listen: this.o.peerListen ?? me.peer,
      peers,
      onMessage: (msg) => {
        node.receive(msg, this.now);
        this.noteStatus(node.status());
      },
      onEvent: (e) => this.log(`${e.peer !== undefined ? `member ${e.peer} ` : ''}${e.event}${e.detail ? `: ${e.detail}` : ''}`),
    });
    this.transport = transport;
    await transport.start();
    this.waiting = '';
    this.log(`vault loaded (${node.info.records} records, batch ${node.status()?.appliedBatch ?? 0})`);
    this.timer = setInterval(() => {
      this.now++;
      node.tick(this.now);
      this.noteStatus(node.status());
      this.housekeeping((j) => node.grantJoiner(j));
    }, MEMBER_TIMING.tickMs);
  }

  private get vaultKeyFile(): string {
    return path.join(this.fleet.dir, VAULT_KEY_FILE);
  }

  private vaultKeyFileHolds(text: string): boolean {
    return readFileSync(this.vaultKeyFile).equals(Buffer.from(text));
  }

  private otherVaultKey(): VaultKeyFileError {
    return new VaultKeyFileError(`${this.vaultKeyFile} holds another vault key than member ${this.o.member}'s token gives (${this.vaultKey?.fingerprint}): this member does not serve another fleet's clients`);
  }

  /** DIR/vault-key.pub: created when absent, left when byte-equal; another text stops this member. */
  private fileVaultKey(): void {
    const text = this.vaultKey?.text;
    if (text === undefined || this.vaultKeyFiled || this.closed) return;
    if (createFileDurably(this.vaultKeyFile, text)) {
      chmodSync(this.vaultKeyFile, 0o644); // public: what the operator hands to clients
      this.log(`wrote ${this.vaultKeyFile}`);
    }
    else if (!this.vaultKeyFileHolds(text)) {
      const e = this.otherVaultKey();
      this.log(e.message);
      void this.close();
      this.o.onFatal?.(e);
      return;
    }
    this.vaultKeyFiled = true;
  }

  private route(out: DeviceOutput): void {
    for (const { msg } of out.send) this.transport?.send(msg);
    for (const a of out.answers) {
      const done = this.answers.get(a.ticket);
      this.answers.delete(a.ticket);
      done?.(a);
    }
    for (const f of out.faults) this.refused[f] = (this.refused[f] ?? 0) + 1;
    this.noteStatus(this.device?.status() ?? null);
  }

  /** A line when the member's status changes; DIR/vault-key.pub once it is normal in a view. */
  private noteStatus(s: DeviceStatus | null): void {
    if (s) {
      const line = `${s.status} epoch ${s.epoch} view ${s.view}${s.leader === null ? '' : s.leader === s.member ? ' (leader)' : ` (leader ${s.leader})`}`;
      if (line !== this.lastLine) this.log(line);
      this.lastLine = line;
      // normal in a view: a majority of the members formed it
      if (s.status === 'normal') this.fileVaultKey();
    }
  }

  private leaderUrl(s: DeviceStatus | undefined): string | null {
    if (!s || s.leader === null || s.leader === s.member) return null;
    return this.memberUrl(s.leader);
  }

  /** Member `id`'s client URL; null for an id this host's fleet.json does not name yet (added a moment ago). */
  private memberUrl(id: number): string | null {
    const m = this.fleet.members[id];
    return m ? `http://${formatEndpoint(m.api)}` : null;
  }

  status(): MemberStatusJson {
    const v = this.vault?.status() ?? undefined;
    const s: DeviceStatus | undefined = v ?? this.device?.status();
    const base = {
      serving: this.serving,
      ...(v && { appliedBatch: v.appliedBatch }),
      ...(this.vault?.applyError && { applyError: this.vault.applyError }),
      member: this.o.member,
      fleetId: this.fleet.fleetId,
      peers: this.transport?.status() ?? [],
      refused: { ...this.refused },
      sent: { ...this.transport?.sent },
      ...(this.secretCheck && { secretCheck: this.secretCheck }),
      ...(this.vaultKey && { vaultKey: this.vaultKey.fingerprint, vaultKeyFile: this.vaultKeyFiled }),
    };
    if (!s) return { ...base, status: 'ceremony', leader: null, waiting: this.waiting };
    const api = s.leader === null ? null : this.memberUrl(s.leader);
    return { ...base, ...s, leader: s.leader === null || api === null ? null : { id: s.leader, api } };
  }

  private async op(body: Buffer): Promise<Reply> {
    let v: unknown;
    try {
      v = JSON.parse(body.toString('utf8'));
    } catch {
      return serviceError('MALFORMED_JSON');
    }
    let intent;
    try {
      intent = parseIntent(v);
    } catch (e) {
      if (e instanceof IntentError) return { status: 400, body: { error: { code: 'BAD_REQUEST', num: ErrorCode.BAD_REQUEST.num, message: e.message } } };
      throw e;
    }
    const device = this.device;
    if (!device) return serviceError('UNAVAILABLE');
    const { ticket, out } = device.submit(intent, this.now);
    const answer = new Promise<DeviceAnswer | null>((res) => {
      const t = setTimeout(() => {
        this.answers.delete(ticket);
        res(null);
      }, ANSWER_TIMEOUT_MS);
      this.answers.set(ticket, (a) => {
        clearTimeout(t);
        res(a);
      });
    });
    this.route(out);
    const a = await answer;
    if (a === null) return { status: 503, body: { error: { code: 'Fleet.Unanswered', num: 0, message: 'no answer in time: the operation may still commit; ask again' } } };
    if (a.ok) return { status: 200, body: { index: a.index, hash: a.hash, op: a.op } };
    return refusal(a, this.leaderUrl(device.status()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const reply = (r: Reply) => {
      if (res.headersSent) return;
      const text = JSON.stringify(r.body);
      res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
    };
    const url = (req.url ?? '').split('?')[0];
    if (this.closed) return reply(serviceError('SHUTTING_DOWN'));
    if (url === '/fleet/status') {
      if (req.method !== 'GET') return reply(serviceError('METHOD_NOT_ALLOWED'));
      return reply({ status: 200, body: this.status() });
    }
    if (url === CHARTER_PATH) {
      if (req.method !== 'POST') return reply(serviceError('METHOD_NOT_ALLOWED'));
      return this.body(req, res, reply, (b) => reply(this.approve(b)));
    }
    if (url === REFORM_PATH) {
      if (req.method !== 'POST') return reply(serviceError('METHOD_NOT_ALLOWED'));
      return this.body(req, res, reply, (b) => reply(this.approveReform(b)));
    }
    if (this.serving === 'vault') {
      if (url === ROWS_PATH) return this.rows ? this.rows(req, res) : reply(serviceError('NOT_READY'));
      if (url === '/fleet/ops') return reply({ status: 409, body: { error: { code: 'VAULT_SERVED', num: 0, message: 'this member serves the vault, whose batches are its log\'s entries: the replication test API (/fleet/ops) runs only on a member started with --replication-test' } } });
      if (!this.routes) return reply(serviceError('NOT_READY'));
      return this.routes.listener(req, res);
    }
    if (url !== '/fleet/ops') return reply(serviceError('NOT_FOUND'));
    if (req.method !== 'POST') return reply(serviceError('METHOD_NOT_ALLOWED'));
    this.body(req, res, reply, (b) => this.op(b).then(reply, () => reply(serviceError('INTERNAL'))));
  }

  /** A request body of at most MAX_OP_BODY bytes to `then`; a larger one is answered 413 and the connection closed once the answer is out (the rest is never read). */
  private body(req: http.IncomingMessage, res: http.ServerResponse, reply: (r: Reply) => void, then: (b: Buffer) => void): void {
    const tooLarge = () => {
      res.setHeader('connection', 'close');
      res.once('finish', () => req.destroy());
      reply(serviceError('PAYLOAD_TOO_LARGE'));
    };
    if (Number(req.headers['content-length'] ?? 0) > MAX_OP_BODY) return tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_OP_BODY) {
        if (!res.headersSent) tooLarge();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size <= MAX_OP_BODY) then(Buffer.concat(chunks));
    });
  }

  /**
   * POST /fleet/charter: the operator's approval of one charter change, for this member's device
   * (`bkv fleet add|remove` sends it to every member): {"serial", "identities": [hex|null, ...],
   * "approval": 64 hex digits (hsm/fleet/charters.ts charterApproval)}. 200 {"approved": serial,
   * "charter"} once the device holds it (leading, it proposes the change); 403 with the device's
   * refusal (Fleet.CharterNotApproved: not the operator's MAC for this change; Fleet.NoOperatorSecret);
   * 400 for a malformed body; 503 before the device runs. Anyone may call it: without the operator
   * secret a caller makes only refusals, and a replayed approval approves that same change again.
   */
  private approve(body: Buffer): Reply {
    const read = approvalBody(body, ['serial', 'identities']);
    if ('reply' in read) return read.reply;
    const { v, mac } = read;
    let change;
    try {
      change = parseChange({ serial: v.serial, identities: v.identities });
    } catch (e) {
      if (e instanceof ChangeFormatError) return badRequest(e.message);
      throw e;
    }
    const target = this.vault ?? this.device;
    if (!target) return serviceError('NOT_READY');
    try {
      target.approveCharter(change, mac);
    } catch (e) {
      if (e instanceof FleetFault) return { status: 403, body: { error: { code: fleetFaultName(e.code), num: e.code, message: e.message } } };
      return serviceError('NOT_READY');
    }
    this.log(`the operator approved charter change ${change.serial}`);
    return { status: 200, body: { approved: change.serial, charter: this.status().charter } };
  }

  /**
   * POST /fleet/reform: the operator's approval of a re-form without some members, for this
   * member's device (`bkv fleet reform` sends it to every member it keeps): {"fromEpoch",
   * "without": [ids], "kept": [{"member", "incarnation": 32 hex digits}], "approval": 64 hex digits
   * (hsm/fleet/charters.ts reformApproval)}. 200 {"reformApproval": {fromEpoch, without, kept,
   * applies}} once the device holds it; 403 with the device's refusal (Fleet.CharterNotApproved:
   * not the operator's MAC for these fields; Fleet.NoOperatorSecret); 400 for a malformed body;
   * 503 before the device runs. Anyone may call it: without the operator secret a caller makes only
   * refusals, and a replayed approval applies only to the boots of the kept members it names while
   * their configuration is of that epoch.
   */
  private approveReform(body: Buffer): Reply {
    const read = approvalBody(body, ['fromEpoch', 'without', 'kept']);
    if ('reply' in read) return read.reply;
    const { v, mac } = read;
    let r;
    try {
      r = parseReformWithout(v.fromEpoch, v.without, v.kept);
    } catch (e) {
      if (e instanceof ChangeFormatError) return badRequest(e.message);
      throw e;
    }
    try {
      if (this.vault) this.vault.approveReform(r.fromEpoch, r.without, r.kept, mac);
      else if (this.device) this.route(this.device.approveReform(r.fromEpoch, r.without, r.kept, mac, this.now));
      else return serviceError('NOT_READY');
    } catch (e) {
      if (e instanceof FleetFault) return { status: 403, body: { error: { code: fleetFaultName(e.code), num: e.code, message: e.message } } };
      return serviceError('NOT_READY');
    }
    this.log(`the operator approved a re-form from epoch ${r.fromEpoch} without member ${r.without.join(', ')}`);
    return { status: 200, body: { reformApproval: this.status().reformApproval ?? null } };
  }

  /** Stops ticking and listening; the device's state is on disk after every write. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.transport?.close();
    this.routes?.close();
    await this.vault?.close();
    await this.claim?.release();
    const server = this.server;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  }
}
