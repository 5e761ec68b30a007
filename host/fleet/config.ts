/**
 * A fleet's configuration file, `DIR/fleet.json` (docs/fleet.md): who the members are, where each
 * listens for clients (`api`) and for the other members (`peer`), and where its data folder is;
 * and the issuers whose tokens every member accepts. `bkv fleet init` writes it; every member's
 * host reads it. It holds no secret: the fleet's keys are made inside the devices.
 *
 *   {
 *     "format": "bkv-fleet/1",
 *     "fleetId": "<32 hex digits>",
 *     "members": [ { "id": 0, "api": "127.0.0.1:7400", "peer": "127.0.0.1:7401", "data": "member-0" }, ... ],
 *     "auth": { "issuers": [ "auth/issuer.pub" ] }
 *   }
 *
 * A member may name its vault's store, a PostgreSQL database of its own ("store":
 * "postgres://USER@HOST:PORT/DATABASE[?schema=NAME]", host/storage/postgres.ts); without one its
 * store is SQLite vault.db in its data folder. `bkv fleet init --store-template URL` writes them,
 * `{member}` in the template replaced by each member's id (docs/fleet-vault.md "Each member's store").
 *
 * Relative paths are relative to the file's folder. Reading is strict: an unknown key, a member
 * count that is not 3, 5 or 7, ids out of order, an endpoint used twice, a data path that leaves
 * the folder or is shared, a store that is not a postgres:// URL, carries a password (the file
 * holds no secret: PGPASSWORD or ~/.pgpass) or is another member's database and schema: each is a
 * FleetConfigError naming the field.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { MAX_ISSUERS } from '../../enclave/api/auth.ts';
import { createFileDurably } from '../../hsm/durable-file.ts';
import { generateIssuer, readIssuerPublic } from '../auth/issuer.ts';
import { createPeerSecret } from './peer-auth.ts';

export const FLEET_FORMAT = 'bkv-fleet/1';
export const FLEET_FILE = 'fleet.json';
/** Member counts: odd (an even count adds a member and no fault tolerance), at least 3 (one loss tolerated). */
export const FLEET_SIZES: readonly number[] = [3, 5, 7];
const SIZES_TEXT = `${FLEET_SIZES.slice(0, -1).join(', ')} or ${FLEET_SIZES.at(-1)}`;
export const DEFAULT_BASE_PORT = 7400;
export const DEFAULT_FLEET_HOST = '127.0.0.1';
/**
 * Member ids a fleet gives at most in its life (enclave/fleet: a charter names ids 0..6; an id is
 * never given again), and the fewest members a charter change leaves (ceremony.ts CHARTER_SIZES).
 */
export const MAX_MEMBER_IDS = 7;
/** The fewest members not removed (enclave/fleet/log.ts MIN_MEMBERS: 2, the step that replaces a member of 3 gone for good). */
const MIN_ACTIVE = 2;
/** A bound for the file's serials: a fleet's ids (0..6) are each added and removed once at most, so its serials stay far below it. */
const MAX_CHARTER_SERIAL = 255;
/** The founding members: those without "joined" (the charter of the key ceremony). */
export const foundingMembers = (c: FleetConfig): readonly FleetMember[] => c.members.filter((m) => m.joined === undefined);
/** The development issuer `fleet init` makes when none is given (its key in DIR/auth/). */
export const DEV_FLEET_ISSUER = 'bkv-fleet-development';

export class FleetConfigError extends Error {
  override readonly name = 'FleetConfigError';
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface FleetMember {
  readonly id: number;
  /** Where the member's vault service answers clients (HTTP). */
  readonly api: Endpoint;
  /** Where it takes the other members' messages. */
  readonly peer: Endpoint;
  /** Its data folder (device NVRAM, token, storage), as written in the file. */
  readonly data: string;
  /** Its vault's store, a PostgreSQL URL (absent: SQLite vault.db in its data folder). */
  readonly store?: string;
  /** The serial of the charter change that added it (`bkv fleet add`); absent for a founding member. */
  readonly joined?: number;
  /** The serial of the charter change that removed it (`bkv fleet remove`); its id is never given again. */
  readonly removed?: number;
}

export interface FleetConfig {
  readonly format: typeof FLEET_FORMAT;
  readonly fleetId: string;
  readonly members: readonly FleetMember[];
  readonly auth: { readonly issuers: readonly string[] };
}

/** A read configuration with the folder its relative paths start from. */
export interface LoadedFleet extends FleetConfig {
  readonly dir: string;
  readonly file: string;
}

const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** An IP address or a DNS name (RFC 1123 §2.1 labels). */
export function checkHost(host: string, what: string): string {
  if (isIP(host) === 0 && !HOSTNAME.test(host)) throw new FleetConfigError(`${what}: "${host}" is not an IP address or a host name`);
  return host;
}

/** `host:port`, `[v6]:port` for an IPv6 address. */
export const formatEndpoint = (e: Endpoint): string => (isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);

/** `host:port` or `[v6]:port`. */
export function parseEndpoint(s: unknown, what: string): Endpoint {
  if (typeof s !== 'string') throw new FleetConfigError(`${what}: expected "host:port"`);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new FleetConfigError(`${what}: "${s}" is not "host:port" with a port in 1..65535`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) throw new FleetConfigError(`${what}: "${s}": only an IPv6 address goes in brackets`);
  return { host: checkHost(host, what), port };
}

/** The member data folder `data` of the file in `dir`, refused when it leaves `dir`. */
export function memberDir(fleet: LoadedFleet, id: number): string {
  const m = fleet.members[id];
  if (!m) throw new FleetConfigError(`member ${id}: the fleet has members 0..${fleet.members.length - 1}`);
  return path.resolve(fleet.dir, m.data);
}

function checkDataPath(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 255) throw new FleetConfigError(`${what}: expected a folder name (1..255 characters)`);
  if (path.isAbsolute(v) || v.split(/[\\/]/).some((seg) => seg === '..' || seg === '')) {
    throw new FleetConfigError(`${what}: "${v}" must be a relative path inside the fleet folder (no "..", no empty segment)`);
  }
  return v;
}

/** The placeholder of `--store-template`: each member's id. */
export const STORE_TEMPLATE_MEMBER = '{member}';

/**
 * Where a member's PostgreSQL store lives: server, database and schema (host/storage/postgres.ts:
 * `schema` defaults to public). Two members whose stores have the same place would write one
 * records table: every member's store must be its own.
 */
export function storePlace(url: string, what: string): string {
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//i.test(url) || url.length > 1000) throw new FleetConfigError(`${what}: expected a postgres:// URL (a member's store; without one, SQLite in its data folder)`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // the URL parser's message repeats the input: not shown (it may carry a password)
    throw new FleetConfigError(`${what}: not a valid postgres:// URL`);
  }
  if (u.password !== '' || u.searchParams.has('password')) throw new FleetConfigError(`${what}: the URL carries a password; fleet.json holds no secret (give it through PGPASSWORD or ~/.pgpass)`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '' || database.includes('/')) throw new FleetConfigError(`${what}: the URL names no database (postgres://USER@HOST:PORT/DATABASE)`);
  const schema = u.searchParams.get('schema') ?? 'public';
  return `${u.hostname.toLowerCase()}:${u.port || '5432'}/${database}?schema=${schema}`;
}

/**
 * Each member's store from `template`, `{member}` replaced by its id; refused without `{member}`
 * or when two members still get one database and schema (`{member}` only in another parameter).
 */
export function storesFromTemplate(template: string, members: number): string[] {
  if (!template.includes(STORE_TEMPLATE_MEMBER)) {
    throw new FleetConfigError(`--store-template: "${STORE_TEMPLATE_MEMBER}" is missing: every member needs a database of its own (postgres://USER@HOST/bkv_fleet_${STORE_TEMPLATE_MEMBER})`);
  }
  const stores = Array.from({ length: members }, (_, i) => template.split(STORE_TEMPLATE_MEMBER).join(String(i)));
  const places = stores.map((s, i) => storePlace(s, `--store-template (member ${i})`));
  if (new Set(places).size !== places.length) {
    throw new FleetConfigError(`--store-template: two members get the same database and schema (${places.join(', ')}): put ${STORE_TEMPLATE_MEMBER} in the database name or in ?schema=`);
  }
  return stores;
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new FleetConfigError(`${what}: unknown key "${k}"`);
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FleetConfigError(`${what}: expected an object`);
  return v as Record<string, unknown>;
}

/** Checks a parsed fleet.json; returns it typed. */
export function checkFleetConfig(v: unknown, file = FLEET_FILE): FleetConfig {
  const o = object(v, file);
  onlyKeys(o, ['format', 'fleetId', 'members', 'auth'], file);
  if (o.format !== FLEET_FORMAT) throw new FleetConfigError(`${file}: "format" must be "${FLEET_FORMAT}"`);
  if (typeof o.fleetId !== 'string' || !/^[0-9a-f]{32}$/.test(o.fleetId)) throw new FleetConfigError(`${file}: "fleetId" must be 32 lower-case hex digits`);
  if (!Array.isArray(o.members) || o.members.length > MAX_MEMBER_IDS) throw new FleetConfigError(`${file}: "members" must list at most ${MAX_MEMBER_IDS} members`);
  const founding = o.members.filter((m) => !(typeof m === 'object' && m !== null && (m as Record<string, unknown>).joined !== undefined)).length;
  if (!FLEET_SIZES.includes(founding)) throw new FleetConfigError(`${file}: "members" must list ${SIZES_TEXT} founding members (without "joined")`);
  const endpoints = new Set<string>();
  const datas = new Set<string>();
  const stores = new Map<string, number>();
  const members = o.members.map((raw, i): FleetMember => {
    const what = `${file}: members[${i}]`;
    const m = object(raw, what);
    onlyKeys(m, ['id', 'api', 'peer', 'data', 'store', 'joined', 'removed'], what);
    if (m.id !== i) throw new FleetConfigError(`${what}: "id" must be ${i} (members are listed in id order from 0)`);
    // founding members first; each added member by the next charter change after the one before it
    const serial = (k: string) => m[k] === undefined || (Number.isInteger(m[k]) && (m[k] as number) >= 1 && (m[k] as number) <= MAX_CHARTER_SERIAL);
    if (!serial('joined') || !serial('removed')) throw new FleetConfigError(`${what}: "joined" and "removed" must be charter serials (1..${MAX_CHARTER_SERIAL})`);
    const joined = m.joined as number | undefined;
    const removed = m.removed as number | undefined;
    if ((joined === undefined) !== (i < founding)) throw new FleetConfigError(`${what}: the ${founding} founding members come first, without "joined"; an added member has "joined"`);
    if (joined !== undefined && i > founding && !(joined > ((o.members as Record<string, unknown>[])[i - 1]!.joined as number))) throw new FleetConfigError(`${what}: "joined" must follow the member before it's`);
    if (removed !== undefined && joined !== undefined && removed <= joined) throw new FleetConfigError(`${what}: "removed" must follow "joined"`);
    const change = { ...(joined !== undefined && { joined }), ...(removed !== undefined && { removed }) };
    const api = parseEndpoint(m.api, `${what}.api`);
    const peer = parseEndpoint(m.peer, `${what}.peer`);
    for (const e of [api, peer]) {
      const k = formatEndpoint(e);
      if (endpoints.has(k)) throw new FleetConfigError(`${what}: the endpoint ${k} is used twice`);
      endpoints.add(k);
    }
    const data = checkDataPath(m.data, `${what}.data`);
    const norm = path.normalize(data);
    if (datas.has(norm)) throw new FleetConfigError(`${what}: the data folder "${data}" is another member's`);
    datas.add(norm);
    if (m.store === undefined) return { id: i, api, peer, data, ...change };
    const store = m.store as string;
    const place = storePlace(store, `${what}.store`);
    const other = stores.get(place);
    if (other !== undefined) throw new FleetConfigError(`${what}.store: member ${other}'s database and schema (${place}): every member's store must be its own`);
    stores.set(place, i);
    return { id: i, api, peer, data, store, ...change };
  });
  const active = members.filter((m) => m.removed === undefined).length;
  if (active < MIN_ACTIVE || active > MAX_MEMBER_IDS) throw new FleetConfigError(`${file}: ${active} members not removed: a fleet has ${MIN_ACTIVE} to ${MAX_MEMBER_IDS}`);
  const auth = object(o.auth, `${file}: auth`);
  onlyKeys(auth, ['issuers'], `${file}: auth`);
  if (!Array.isArray(auth.issuers) || auth.issuers.length === 0 || auth.issuers.length > MAX_ISSUERS || !auth.issuers.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new FleetConfigError(`${file}: "auth.issuers" must list 1..${MAX_ISSUERS} issuer public key files`);
  }
  return { format: FLEET_FORMAT, fleetId: o.fleetId, members, auth: { issuers: auth.issuers as string[] } };
}

/** The file's JSON form (endpoints as "host:port"). */
export function fleetJson(c: FleetConfig): string {
  const members = c.members.map((m) => ({
    id: m.id,
    api: formatEndpoint(m.api),
    peer: formatEndpoint(m.peer),
    data: m.data,
    ...(m.store !== undefined && { store: m.store }),
    ...(m.joined !== undefined && { joined: m.joined }),
    ...(m.removed !== undefined && { removed: m.removed }),
  }));
  return JSON.stringify({ format: c.format, fleetId: c.fleetId, members, auth: { issuers: c.auth.issuers } }, null, 2) + '\n';
}

/** Reads and checks `file` (a fleet.json), and each issuer key it names. */
export function readFleetConfig(file: string): LoadedFleet {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new FleetConfigError(`${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new FleetConfigError(`${file}: not JSON`);
  }
  const c = checkFleetConfig(v, file);
  const dir = path.dirname(path.resolve(file));
  for (const f of c.auth.issuers) readIssuerPublic(path.resolve(dir, f));
  return { ...c, dir, file: path.resolve(file) };
}

export interface InitOptions {
  dir: string;
  members: number;
  host?: string;
  basePort?: number;
  /** Issuer public key files; none: a development issuer is made in DIR/auth/. */
  authIssuers?: string[];
  /** The operator has a secret (64 hex digits) for the members' key ceremony; none: a development one is written to DIR/auth/operator.secret. */
  operatorKeyFile?: string;
  /** Each member's PostgreSQL store: a postgres:// URL with `{member}` (storesFromTemplate); none: SQLite in each member's folder. */
  storeTemplate?: string;
}

export interface InitResult {
  fleet: LoadedFleet;
  /** The development issuer's private key, when one was made (or found from an interrupted init). */
  devIssuerKey?: string;
  /** The development operator secret, when one was written (or found from an interrupted init). */
  devOperatorSecret?: string;
}

/** Where `bkv fleet init` writes a development operator secret (64 hex digits, mode 0600), relative to the fleet folder. */
export const DEV_OPERATOR_SECRET = path.join('auth', 'operator.secret');

/**
 * Writes a new fleet folder: DIR/member-<i>/ for each member, the development issuer unless
 * issuers are given, the development operator secret (DIR/auth/operator.secret, for the members'
 * key ceremony) unless the operator has one, the fleet's peer secret (DIR/auth/peer.secret, 0600:
 * the members' hosts authenticate to each other with it, peer-auth.ts), and DIR/fleet.json last (its presence says the folder is complete). Member i
 * listens on base+2i (api) and base+2i+1 (peer). Never overwrites a fleet.json; a run that was
 * interrupted before writing it can be run again (it reuses a development issuer it finds).
 */
export async function initFleet(o: InitOptions): Promise<InitResult> {
  if (!FLEET_SIZES.includes(o.members)) throw new FleetConfigError(`--members must be ${SIZES_TEXT}`);
  const host = checkHost(o.host ?? DEFAULT_FLEET_HOST, '--host');
  const base = o.basePort ?? DEFAULT_BASE_PORT;
  if (!Number.isInteger(base) || base < 1 || base + 2 * o.members - 1 > 65535) {
    throw new FleetConfigError(`--base-port: ${o.members} members need ports ${base}..${base + 2 * o.members - 1}, within 1..65535`);
  }
  // checked before anything is written
  const stores = o.storeTemplate === undefined ? undefined : storesFromTemplate(o.storeTemplate, o.members);
  const dir = path.resolve(o.dir);
  const file = path.join(dir, FLEET_FILE);
  if (fs.existsSync(file)) throw new FleetConfigError(`${file} exists; not overwriting a fleet`);
  const given = (o.authIssuers ?? []).map((f) => path.resolve(f));
  for (const f of given) readIssuerPublic(f);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const members: FleetMember[] = [];
  for (let i = 0; i < o.members; i++) {
    const data = `member-${i}`;
    fs.mkdirSync(path.join(dir, data), { recursive: true, mode: 0o700 });
    members.push({ id: i, api: { host, port: base + 2 * i }, peer: { host, port: base + 2 * i + 1 }, data, ...(stores && { store: stores[i]! }) });
  }
  let devIssuerKey: string | undefined;
  let issuers = given;
  if (!given.length) {
    const authDir = path.join(dir, 'auth');
    devIssuerKey = path.join(authDir, 'issuer.key');
    const pub = path.join(authDir, 'issuer.pub');
    if (fs.existsSync(devIssuerKey) && fs.existsSync(pub)) readIssuerPublic(pub);
    else await generateIssuer(authDir, DEV_FLEET_ISSUER);
    issuers = [path.join('auth', 'issuer.pub')];
  }
  let devOperatorSecret: string | undefined;
  if (o.operatorKeyFile === undefined) {
    devOperatorSecret = path.join(dir, DEV_OPERATOR_SECRET);
    fs.mkdirSync(path.dirname(devOperatorSecret), { recursive: true, mode: 0o700 });
    // kept when an interrupted init already wrote one (members may have provisioned its hash)
    createFileDurably(devOperatorSecret, randomBytes(32).toString('hex') + '\n');
  }
  createPeerSecret(dir); // kept when an interrupted init already wrote one
  const config: FleetConfig = { format: FLEET_FORMAT, fleetId: randomBytes(16).toString('hex'), members, auth: { issuers } };
  if (!createFileDurably(file, fleetJson(config))) throw new FleetConfigError(`${file} exists; not overwriting a fleet`);
  return { fleet: { ...config, dir, file }, ...(devIssuerKey && { devIssuerKey }), ...(devOperatorSecret && { devOperatorSecret }) };
}
