/**
 * `bkv fleet add|remove|replace`: charter changes on a running fleet (docs/fleet.md, "Membership
 * changes in the processes").
 *
 *   bkv fleet add DIR [--host H] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]
 *   bkv fleet remove DIR --member I [--operator-key-file F] [--timeout S]
 *   bkv fleet replace DIR --member I [--host H] [--api-port P] [--peer-port Q] [--store URL] [--operator-key-file F] [--timeout S]
 *   bkv fleet reform DIR --without I[,J] [--operator-key-file F] [--timeout S]
 *
 * Each one: every member asked first (a change is refused unless every member it keeps is up,
 * normal under one leader, not behind, with no change in flight); the change (the next serial,
 * the identity at each id) and the operator's approval of it (a MAC under the operator secret:
 * hsm/fleet/charters.ts) sent to every member until a majority of the changed charter has it
 * committed (the leader's device proposes it); fleet.json rewritten. `add` makes the new member's
 * folder and identity first and, after the commit, waits for a member's grant in its folder; the
 * operator then starts it (`bkv serve --fleet DIR/fleet.json --member K`): it opens the grant,
 * catches up and is admitted. `remove` marks the member removed (its process retires on its own).
 * `replace` adds, waits for the new member to serve, then removes member I; a member I that does
 * not answer it removes first, then adds and waits. `reform` (not a
 * charter change): the members left after a whole-fleet restart re-form without members gone for
 * good.
 *
 * Exit 0 done; 1 refused by the fleet's state (a member down, a change in flight, the timeout, the
 * devices' refusal of the approval: another operator secret) with what to do; 2 usage.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { writeFileDurably } from '../../hsm/durable-file.ts';
import { changeJson, charterApproval, ensureIdentity, foundingCharter, JOIN_FILE, keptJson, readIdentityFile, reformApproval, type CharterState } from '../../hsm/fleet/device.ts';
import { checkFleetConfig, checkHost, DEV_OPERATOR_SECRET, fleetJson, formatEndpoint, foundingMembers, MAX_MEMBER_IDS, memberDir, type FleetMember, type LoadedFleet } from '../fleet/config.ts';
import { CHARTER_PATH, readOperatorSecretFile, REFORM_PATH, type MemberStatusJson } from '../fleet/member-host.ts';
import { intOption, required, UsageError, type Parsed } from './args.ts';
import { active, ask, fleetAt, only } from './cmd-fleet.ts';
import { CliError, EXIT } from './exit-codes.ts';
import type { Output } from './output.ts';

const DEFAULT_TIMEOUT_S = 60;
const ADD_OPTIONS = ['host', 'api-port', 'peer-port', 'store', 'operator-key-file', 'timeout'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => console.error(`bkv: ${line}`);
const refuse = (why: string) => new CliError(EXIT.failure, why);

interface Setting {
  fleet: LoadedFleet;
  secret: Uint8Array;
  timeoutMs: number;
}

function setting(p: Parsed): Setting {
  const fleet = fleetAt(p.positional[1]!);
  const file = p.opts.get('operator-key-file') ?? path.join(fleet.dir, DEV_OPERATOR_SECRET);
  let secret: Uint8Array;
  try {
    secret = readOperatorSecretFile(file);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return { fleet, secret, timeoutMs: (intOption(p, 'timeout', 1, 3600) ?? DEFAULT_TIMEOUT_S) * 1000 };
}

/** The fleet's charter as its members report it, once every member it keeps (all but `except`) is up, normal under one leader, not behind, with no change in flight. */
async function survey(fleet: LoadedFleet, except?: number): Promise<{ serial: number; members: number[]; ids: number }> {
  const list = active(fleet);
  const answers = await Promise.all(list.map((m) => ask(m.api)));
  const kept = list.map((m, i) => ({ m, a: answers[i]! })).filter((x) => x.m.id !== except);
  const down = kept.filter((x) => x.a === null).map((x) => x.m.id);
  if (down.length) throw refuse(`member ${down.join(', ')} does not answer (${down.map((id) => `http://${formatEndpoint(fleet.members[id]!.api)}`).join(', ')}): a charter change needs every member it keeps up (docs/fleet.md "Membership changes")`);
  const notReady = kept.filter((x) => x.a.status !== 'normal' || x.a.behind === true || !x.a.charter);
  if (notReady.length) throw refuse(`member ${notReady.map((x) => `${x.m.id} is ${x.a.behind ? 'behind (copying rows)' : x.a.status}`).join(', ')}: try again once every member is normal (bkv fleet status ${fleet.dir})`);
  const leaders = new Set(kept.map((x) => x.a.leader?.id));
  if (leaders.size !== 1) throw refuse('the members do not follow one leader yet: try again in a moment');
  const c = kept.map((x) => x.a.charter!);
  const serial = c[0]!.committed;
  if (c.some((x) => x.committed !== serial || x.serial !== serial)) throw refuse(`a charter change is in flight (serials ${c.map((x) => `${x.serial}/${x.committed}`).join(', ')}): try again once it committed`);
  return { serial, members: [...c[0]!.members], ids: c[0]!.ids };
}

/** The identity at each id of `ids` from the members' identity.pub files (one machine: every folder is here). */
function identitiesOf(fleet: LoadedFleet, ids: readonly number[]): Map<number, Uint8Array> {
  const keys = new Map<number, Uint8Array>();
  for (const id of ids) {
    const k = readIdentityFile(memberDir(fleet, id), id);
    if (!k) throw refuse(`member ${id}'s identity.pub is not in ${memberDir(fleet, id)}: copy it there from its machine`);
    keys.set(id, k);
  }
  return keys;
}

/** The change: the identity at each id the charter gave (`ids`, removed ones none) and at a new id. */
function changeOf(serial: number, ids: number, keys: Map<number, Uint8Array>): CharterState {
  const length = Math.max(ids, Math.max(...keys.keys()) + 1);
  return { serial, identities: Array.from({ length }, (_, i) => keys.get(i) ?? null) };
}

/** POSTs the approval of `change` to every member of `to` until a majority of the changed charter reports it committed. */
async function commit(s: Setting, change: CharterState, to: readonly FleetMember[]): Promise<void> {
  const founding = foundingCharter(
    foundingMembers(s.fleet).map((m) => memberDir(s.fleet, m.id)),
    Uint8Array.from(Buffer.from(s.fleet.fleetId, 'hex')),
  );
  if (!founding) throw refuse('a founding member\'s identity.pub is missing from its folder: copy it there from its machine');
  const body = JSON.stringify({ ...changeJson(change), approval: Buffer.from(charterApproval(s.secret, founding, change)).toString('hex') });
  const members = change.identities.flatMap((k, i) => (k ? [i] : []));
  const end = Date.now() + s.timeoutMs;
  let said = 0;
  for (;;) {
    const approved = await Promise.all(
      to.map(async (m) => {
        try {
          const r = await fetch(`http://${formatEndpoint(m.api)}${CHARTER_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(3000) });
          const j = (await r.json()) as { error?: { code: string; message: string } };
          if (r.status === 403) throw refuse(`member ${m.id} refused the approval (${j.error?.code}: ${j.error?.message}): is --operator-key-file the secret the fleet was made with?`);
          return r.ok;
        } catch (e) {
          if (e instanceof CliError) throw e;
          return false;
        }
      }),
    );
    const answers = await Promise.all(members.map((id) => (s.fleet.members[id] ? ask(s.fleet.members[id]!.api) : null)));
    const done = answers.filter((a) => a?.charter && a.charter.committed >= change.serial).length;
    if (done > members.length / 2) return;
    if (Date.now() > end) {
      const why = [...new Set(answers.flatMap((a) => (a?.charter?.refused ? [a.charter.refused] : [])))];
      throw refuse(`charter change ${change.serial} was not committed in ${s.timeoutMs / 1000} s (approved by ${approved.filter(Boolean).length} of ${to.length} members; committed on ${done} of ${members.length}${why.length ? `; the leader's proposal refused: ${why.join(', ')}` : ''}): see bkv fleet status ${s.fleet.dir}; running the command again resumes it`);
    }
    if (Date.now() - said > 5000) {
      say(`waiting for the fleet to commit charter change ${change.serial} (approved by ${approved.filter(Boolean).length} of ${to.length} members)`);
      said = Date.now();
    }
    await sleep(500);
  }
}

function writeFleet(fleet: LoadedFleet, members: FleetMember[]): void {
  const text = fleetJson({ format: fleet.format, fleetId: fleet.fleetId, members, auth: fleet.auth });
  checkFleetConfig(JSON.parse(text), fleet.file);
  writeFileDurably(fleet.file, text);
}

const startCommand = (fleet: LoadedFleet, id: number) => `bkv serve --fleet ${fleet.file} --member ${id}`;

/** What `add` and `replace` take for the new member, checked before anything is asked or written. */
interface AddOptions {
  readonly host?: string;
  readonly apiPort?: number;
  readonly peerPort?: number;
  readonly store?: string;
}

function addOptions(p: Parsed): AddOptions {
  const host = p.opts.get('host');
  if (host !== undefined) {
    try {
      checkHost(host, '--host');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const apiPort = intOption(p, 'api-port', 1, 65535);
  const peerPort = intOption(p, 'peer-port', 1, 65535);
  const store = p.opts.get('store');
  return { ...(host !== undefined && { host }), ...(apiPort !== undefined && { apiPort }), ...(peerPort !== undefined && { peerPort }), ...(store !== undefined && { store }) };
}

/** The addition: the new member's entry and identity, the change committed, its grant written. */
async function addMember(a: AddOptions, s: Setting): Promise<FleetMember> {
  const { fleet } = s;
  const cur = await survey(fleet);
  const last = fleet.members.at(-1)!;
  let entry: FleetMember;
  if (last.joined !== undefined && last.removed === undefined && !cur.members.includes(last.id)) {
    // fleet.json names a member whose change never committed: the same change again
    if (last.joined !== cur.serial + 1) throw refuse(`fleet.json names member ${last.id} as added by charter change ${last.joined}, but the fleet is at change ${cur.serial}: fix fleet.json`);
    if (Object.keys(a).length) throw new UsageError(`member ${last.id}'s addition is being resumed: --host, --api-port, --peer-port and --store do not apply (fleet.json has its addresses)`);
    say(`resuming the addition of member ${last.id} (charter change ${last.joined})`);
    entry = last;
  } else {
    if (fleet.members.length >= MAX_MEMBER_IDS) throw refuse(`the fleet has given all ${MAX_MEMBER_IDS} member ids (an id is never given twice)`);
    // an added member takes the next id the charter gives: fleet.json must list every id given so far
    if (fleet.members.length !== cur.ids) throw refuse(`fleet.json lists ${fleet.members.length} member ids but the fleet's charter has given ${cur.ids}: fleet.json is not this fleet's as it stands`);
    if (cur.members.length >= MAX_MEMBER_IDS) throw refuse(`the fleet has ${cur.members.length} members, the most a charter names`);
    const id = fleet.members.length;
    const host = a.host ?? fleet.members[0]!.api.host;
    const top = Math.max(...fleet.members.flatMap((m) => [m.api.port, m.peer.port]));
    const apiPort = a.apiPort ?? top + 1;
    const peerPort = a.peerPort ?? apiPort + 1;
    const store = a.store;
    entry = { id, api: { host, port: apiPort }, peer: { host, port: peerPort }, data: `member-${id}`, ...(store !== undefined && { store }), joined: cur.serial + 1 };
    try {
      checkFleetConfig(JSON.parse(fleetJson({ ...fleet, members: [...fleet.members, entry] })), fleet.file);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const dir = path.resolve(fleet.dir, entry.data);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // the new member's device makes its identity (in this slice the device is code in the process that runs it)
    await ensureIdentity(dir, id, s.secret);
    writeFleet(fleet, [...fleet.members, entry]);
    say(`member ${id}: clients ${formatEndpoint(entry.api)}, members ${formatEndpoint(entry.peer)}, data ${dir}`);
  }
  const now = fleetAt(fleet.file);
  const change = changeOf(cur.serial + 1, cur.ids, identitiesOf(now, [...cur.members, entry.id]));
  await commit({ ...s, fleet: now }, change, active(now).filter((m) => m.id !== entry.id));
  const grant = path.join(memberDir(now, entry.id), JOIN_FILE);
  const end = Date.now() + s.timeoutMs;
  while (!existsSync(grant)) {
    if (Date.now() > end) throw refuse(`charter change ${change.serial} committed, but no member wrote ${grant} in ${s.timeoutMs / 1000} s: see the members' logs`);
    await sleep(200);
  }
  return entry;
}

export async function add(p: Parsed, out: Output): Promise<number> {
  only(p, 'add', ADD_OPTIONS, 1);
  const a = addOptions(p);
  const s = setting(p);
  const m = await addMember(a, s);
  const res = { member: m.id, serial: m.joined, api: `http://${formatEndpoint(m.api)}`, peer: formatEndpoint(m.peer), data: memberDir(fleetAt(s.fleet.file), m.id), start: startCommand(s.fleet, m.id) };
  out.set(res);
  if (!out.json) console.log(`member ${m.id} added (charter change ${m.joined}); start it: ${res.start}`);
  return 0;
}

async function removeMember(s: Setting, id: number): Promise<number> {
  const fleet = fleetAt(s.fleet.file);
  const cur = await survey(fleet, id);
  if (!cur.members.includes(id)) throw refuse(`member ${id} is not in the fleet's charter (members ${cur.members.join(', ')})`);
  // a fleet of 3 goes to 2 only to replace a member that is gone (it does not answer): the two left
  // need each other, as the three did with one gone; with all three up it keeps its tolerance
  if (cur.members.length <= 2) throw refuse(`the fleet has ${cur.members.length} members, the fewest a charter keeps: add one first (bkv fleet add ${fleet.dir})`);
  if (cur.members.length === 3 && (await ask(fleet.members[id]!.api))) throw refuse(`the fleet has 3 members and member ${id} answers: removing it would leave 2, which need each other; add one first (bkv fleet replace ${fleet.dir} --member ${id})`);
  const serial = cur.serial + 1;
  await commit({ ...s, fleet }, changeOf(serial, cur.ids, identitiesOf(fleet, cur.members.filter((m) => m !== id))), active(fleet));
  writeFleet(fleet, fleet.members.map((m) => (m.id === id ? { ...m, removed: serial } : m)));
  return serial;
}

export async function remove(p: Parsed, out: Output): Promise<number> {
  only(p, 'remove', ['member', 'operator-key-file', 'timeout'], 1);
  const id = Number(required(p, 'member'));
  if (!Number.isInteger(id) || id < 0 || id >= MAX_MEMBER_IDS) throw new UsageError(`--member must be a member id (0..${MAX_MEMBER_IDS - 1})`);
  const s = setting(p);
  if (!s.fleet.members[id] || s.fleet.members[id]!.removed !== undefined) throw new UsageError(`--member ${id}: fleet.json names no such member, or it was removed`);
  const serial = await removeMember(s, id);
  out.set({ removed: id, serial });
  if (!out.json) console.log(`member ${id} removed (charter change ${serial}); it retires on its own: stop its process`);
  return 0;
}

/** An added member serving: normal, not behind, under the leader the others follow. */
async function serving(m: FleetMember): Promise<MemberStatusJson | null> {
  const a = await ask(m.api);
  return a && a.status === 'normal' && a.behind !== true ? a : null;
}

export async function replace(p: Parsed, out: Output): Promise<number> {
  only(p, 'replace', ['member', ...ADD_OPTIONS], 1);
  const a = addOptions(p);
  const id = Number(required(p, 'member'));
  if (!Number.isInteger(id) || id < 0 || id >= MAX_MEMBER_IDS) throw new UsageError(`--member must be a member id (0..${MAX_MEMBER_IDS - 1})`);
  const s = setting(p);
  if (!s.fleet.members[id] || s.fleet.members[id]!.removed !== undefined) throw new UsageError(`--member ${id}: fleet.json names no such member, or it was removed`);
  // a member I that is gone (does not answer) is removed first, then its replacement added
  // (3 -> 2 -> 3, 5 -> 4 -> 5): an addition needs every other member up until the new one is
  // admitted (docs/fleet.md "Membership changes"), so adding first would wait on member I
  const cur = await survey(s.fleet, id);
  let removedFirst: number | null = null;
  if (cur.members.includes(id) && !(await ask(s.fleet.members[id]!.api))) {
    removedFirst = await removeMember(s, id);
    say(`member ${id} does not answer: removed first (charter change ${removedFirst}); the ${cur.members.length - 1} left add its replacement`);
  }
  const m = await addMember(a, { ...s, fleet: fleetAt(s.fleet.file) });
  say(`member ${m.id} added (charter change ${m.joined}); start it now: ${startCommand(s.fleet, m.id)}`);
  const end = Date.now() + s.timeoutMs;
  let said = Date.now();
  while (!(await serving(m))) {
    if (Date.now() > end) throw refuse(`member ${m.id} was added but did not serve within ${s.timeoutMs / 1000} s: start it (${startCommand(s.fleet, m.id)})${removedFirst === null ? `, then bkv fleet remove ${s.fleet.dir} --member ${id}` : ''}`);
    if (Date.now() - said > 5000) {
      say(`waiting for member ${m.id} to start, catch up and be admitted`);
      said = Date.now();
    }
    await sleep(500);
  }
  const serial = removedFirst ?? (await removeMember(s, id));
  out.set({ added: m.id, removed: id, serial, start: startCommand(s.fleet, m.id) });
  if (!out.json) console.log(`member ${id} replaced by member ${m.id} (charter changes ${removedFirst === null ? `${m.joined} and ${serial}` : `${serial} and ${m.joined}`}); stop member ${id}'s process`);
  return 0;
}

// ---- bkv fleet reform ---------------------------------------------------------------------------

/** `--without I[,J...]`: distinct member ids fleet.json names and has not removed. */
function withoutOption(p: Parsed, fleet: LoadedFleet): number[] {
  const raw = required(p, 'without');
  const ids = raw.split(',').map((x) => (/^\d+$/.test(x.trim()) ? Number(x.trim()) : NaN));
  if (ids.some((m) => !Number.isInteger(m) || m >= MAX_MEMBER_IDS) || new Set(ids).size !== ids.length) throw new UsageError(`--without must list distinct member ids (0..${MAX_MEMBER_IDS - 1}), comma-separated: got ${raw}`);
  for (const m of ids) if (!fleet.members[m] || fleet.members[m]!.removed !== undefined) throw new UsageError(`--without ${m}: fleet.json names no such member, or it was removed`);
  return ids.sort((a, b) => a - b);
}

/**
 * `bkv fleet reform DIR --without I[,J]`: after a whole-fleet restart with members gone for good,
 * the members left re-form without them (docs/fleet.md "Re-form without some members"). Refused
 * unless every member it keeps answers and none serves under a leader, every member it leaves out
 * is silent, the kept ones report one epoch and keep a majority of the charter at each one's tip.
 * The operator's approval (a MAC under the operator secret over the epoch, the ids and each kept
 * member's boot: hsm/fleet/charters.ts reformApproval) goes to every kept member until they are
 * all normal under one leader in a later epoch.
 */
export async function reform(p: Parsed, out: Output): Promise<number> {
  only(p, 'reform', ['without', 'operator-key-file', 'timeout'], 1);
  const s = setting(p);
  const { fleet } = s;
  const without = withoutOption(p, fleet);
  const list = active(fleet);
  const answers = await Promise.all(list.map((m) => ask(m.api)));
  const of = new Map(list.map((m, i) => [m.id, answers[i] ?? null]));
  const up = without.filter((id) => of.get(id));
  if (up.length) throw refuse(`member ${up.map((id) => `${id} answers (${of.get(id)!.status})`).join(', ')}: a re-form goes without a member that is not running; with every member running the fleet re-forms on its own (docs/fleet.md "Re-form"). To leave out a member whose folder is not current (restored from an old copy), stop its process first`);
  const kept = list.filter((m) => !without.includes(m.id));
  const down = kept.filter((m) => !of.get(m.id)).map((m) => m.id);
  if (down.length) throw refuse(`member ${down.join(', ')} does not answer (${down.map((id) => `http://${formatEndpoint(fleet.members[id]!.api)}`).join(', ')}): a re-form needs the vote of every member it keeps; start it, or name it in --without too if it is gone for good`);
  const ka = kept.map((m) => of.get(m.id)!);
  const leaders = new Set(ka.map((a) => (a.status === 'normal' ? a.leader?.id : undefined)));
  if (ka.every((a) => a.status === 'normal') && leaders.size === 1 && !leaders.has(undefined)) {
    throw refuse(`the fleet serves (leader ${[...leaders][0]}, epoch ${ka[0]!.epoch}): nothing to re-form; take a dead member out with bkv fleet remove ${fleet.dir} --member I (or replace)`);
  }
  // the charter at each kept member's tip (they may differ: an addition not committed, on some
  // logs only): without the ids named it must keep a majority, every one of them a kept member
  const charters = ka.map((a) => a.charter?.members ?? []);
  const members = [...new Set(charters.flat())].sort((a, b) => a - b);
  const stray = without.filter((id) => !members.includes(id));
  if (stray.length) throw refuse(`member ${stray.join(', ')} is not in the fleet's charter (members ${members.join(', ')})`);
  const keptNow = new Set(kept.map((m) => m.id));
  for (const [i, c] of charters.entries()) {
    const k = c.filter((id) => !without.includes(id));
    if (2 * k.length <= c.length) throw refuse(`member ${k.join(', ')} are ${k.length} of the ${c.length} members of member ${kept[i]!.id}'s charter (${c.join(', ')}): a re-form without some members keeps a majority (every committed entry is on one of them)`);
    const missing = k.filter((id) => !keptNow.has(id));
    if (missing.length) throw refuse(`member ${kept[i]!.id}'s charter names member ${missing.join(', ')}, which fleet.json does not list as running: name it in --without too if it is gone for good`);
  }
  const epochs = [...new Set(ka.map((a) => a.epoch))];
  if (epochs.length !== 1 || typeof epochs[0] !== 'number') throw refuse(`the members report epochs ${ka.map((a, i) => `${kept[i]!.id}: ${a.epoch}`).join(', ')}: a re-form without some members is approved out of one epoch; try again in a moment`);
  const fromEpoch = epochs[0];
  const founding = foundingCharter(
    foundingMembers(fleet).map((m) => memberDir(fleet, m.id)),
    Uint8Array.from(Buffer.from(fleet.fleetId, 'hex')),
  );
  if (!founding) throw refuse('a founding member\'s identity.pub is missing from its folder: copy it there from its machine');
  // the approval names this boot (incarnation) of each kept member, as its status reports it: one
  // made for boots that have since restarted applies to nothing, so each round reads them again
  const approvalFor = (answers: readonly (MemberStatusJson | null)[]): string | null => {
    const boots = new Map<number, Uint8Array>();
    for (const [i, a] of answers.entries()) {
      if (!a || typeof a.incarnation !== 'string' || !/^[0-9a-f]{32}$/.test(a.incarnation)) return null;
      boots.set(kept[i]!.id, Uint8Array.from(Buffer.from(a.incarnation, 'hex')));
    }
    return JSON.stringify({ fromEpoch, without, kept: keptJson(boots), approval: Buffer.from(reformApproval(s.secret, founding, fromEpoch, without, boots)).toString('hex') });
  };
  say(`approving a re-form out of epoch ${fromEpoch} without member ${without.join(', ')} at member ${kept.map((m) => m.id).join(', ')}`);
  const end = Date.now() + s.timeoutMs;
  let said = Date.now();
  let current: (MemberStatusJson | null)[] = ka;
  for (;;) {
    const body = approvalFor(current);
    if (body !== null) {
      await Promise.all(
        kept.map(async (m) => {
          try {
            const r = await fetch(`http://${formatEndpoint(m.api)}${REFORM_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(3000) });
            const j = (await r.json()) as { error?: { code: string; message: string } };
            if (r.status === 403) throw refuse(`member ${m.id} refused the approval (${j.error?.code}: ${j.error?.message}): is --operator-key-file the secret the fleet was made with?`);
          } catch (e) {
            if (e instanceof CliError) throw e;
          }
        }),
      );
    }
    const now = await Promise.all(kept.map((m) => ask(m.api)));
    current = now;
    const lead = now[0]?.leader?.id;
    if (now.every((a) => a && a.status === 'normal' && a.leader?.id === lead && (a.epoch ?? 0) > fromEpoch) && lead !== undefined) {
      const epoch = now[0]!.epoch!;
      out.set({ fromEpoch, epoch, without, members: kept.map((m) => m.id), leader: lead });
      if (!out.json) console.log(`the fleet re-formed without member ${without.join(', ')} (epoch ${fromEpoch} -> ${epoch}), leader ${lead}`);
      say(`member ${without.join(', ')} stays in the charter: started again from its folder, it rejoins; gone for good, it is taken out with bkv fleet remove${members.length > 3 ? '' : ' once the fleet has more than 3 members'}`);
      return 0;
    }
    const line = now.map((a, i) => `member ${kept[i]!.id}: ${a ? `${a.status} epoch ${a.epoch}${a.reformApproval ? `, approval ${a.reformApproval.applies ? 'applies' : 'does not apply'}` : ''}` : 'no answer'}`).join('; ');
    if (Date.now() > end) throw refuse(`the fleet did not re-form in ${s.timeoutMs / 1000} s (${line}): see bkv fleet status ${fleet.dir}; running the command again resumes it`);
    if (Date.now() - said > 5000) {
      say(`waiting for the re-form (${line})`);
      said = Date.now();
    }
    await sleep(500);
  }
}
