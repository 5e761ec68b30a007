/**
 * Charter changes between member processes (docs/fleet.md, "Membership changes in the
 * processes"): 3 members serving the vault, under a load of registrations and wrong guesses
 * from an SDK client over every member, while
 *   1. `bkv fleet add` is refused with a member down (exit 1, fleet.json and the folders untouched),
 *      and POST /fleet/charter refuses what is not the operator's approval (a forged or another
 *      change's MAC, another operator secret's: 403; malformed, oversized, another method);
 *   2. `bkv fleet replace --member 0` adds member 3 (its folder, identity and grant; fleet.json
 *      names it), waits while the test starts it (it opens its grant, copies the rows, is
 *      admitted and applies batches), then removes member 0 (fleet.json marks it; it retires);
 *   3. the fleet of members 1, 2 and 3 serves with member 1 killed (2 of 3), a removed member
 *      started again does not start, and the added member SIGKILLed and started again serves;
 *   4. in a 5-member fleet with member 4 dead: `replace --member 4` removes it first (it does not
 *      answer), then adds member 5, started when its grant appears: members 0, 1, 2, 3 and 5 serve.
 * The ledger throughout: every acknowledged registration is found at the end and recovers with
 * its key; no record's attempts used went below its acknowledged wrong guesses (none refunded)
 * or above the guesses tried (none charged unasked).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { changeJson, charterApproval, foundingCharter, readIdentityFile } from '../../../hsm/fleet/device.ts';
import { checkFleetConfig } from '../../../host/fleet/config.ts';
import { CHARTER_PATH } from '../../../host/fleet/member-host.ts';
import { runBkvAsync } from '../../helpers/cli.ts';
import { fleetClient, ProcFleet, sleep, type MemberStatus } from '../../helpers/fleet-procs.ts';
import { freeFixedPort } from '../../helpers/tcp-proxy.ts';

let f: ProcFleet;
const te = new TextEncoder();
const KEY = new Uint8Array(32).fill(5);
const LIMIT = 10;
const FREE_GUESSES = 3;
const ARGS = ['--record-limit', 'off', '--address-limit', 'off'];

type Status = MemberStatus & { behind?: boolean; appliedBatch?: number; charter?: { serial: number; members: number[]; ids: number; committed: number } };
const fleetNow = () => checkFleetConfig(JSON.parse(readFileSync(f.fleetFile, 'utf8')));
const apiOf = (i: number) => `http://127.0.0.1:${fleetNow().members[i]!.api.port}`;
const statusOf = (i: number) => f.status(apiOf(i)) as Promise<Status | null>;

const sdk = (members: () => number[]) => fleetClient(f.root, members().map(apiOf));

/** The load and its ledger: registrations, then a wrong guess on each registered record, over and over. */
class Load {
  readonly registered = new Set<string>();
  /** Per record: wrong guesses acknowledged, and tried (acknowledged or not). */
  readonly acked = new Map<string, number>();
  readonly tried = new Map<string, number>();
  errors = 0;
  lastError = '';
  private stop = false;
  private done: Promise<void> | null = null;

  constructor(private readonly members: () => number[]) {}

  start(): void {
    this.done = (async () => {
      for (let k = 0; !this.stop; k++) {
        const c = await sdk(this.members);
        const id = `c-${k}`;
        try {
          await c.register(te.encode(id), te.encode('pw'), KEY, { attemptLimit: LIMIT });
          this.registered.add(id);
        } catch (e) {
          this.errors++;
          this.lastError = String(e);
        }
        const ids = [...this.registered];
        const g = ids[k % Math.max(1, ids.length)];
        // the default pacing lets the first 3 guesses after a success through at once (enclave/api/pacing.ts): 2 wrong ones per record, the third the right one at the end
        if (g === undefined || (this.tried.get(g) ?? 0) >= FREE_GUESSES - 1) continue;
        this.tried.set(g, (this.tried.get(g) ?? 0) + 1);
        try {
          const r = await c.recover(te.encode(g), te.encode('wrong'));
          if (!r.ok && r.outcome === 'wrong-password') this.acked.set(g, (this.acked.get(g) ?? 0) + 1);
        } catch {
          this.errors++;
        }
        await sleep(20);
      }
    })();
  }

  async end(): Promise<void> {
    this.stop = true;
    await this.done;
  }

  /** Every acknowledged registration found, attempts within the ledger's bounds, and the key released. */
  async check(): Promise<void> {
    const c = await sdk(this.members);
    expect(this.registered.size).toBeGreaterThan(10);
    const ids = [...this.registered];
    // 16 records at a time: each check is two operations through the fleet
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let id = ids.pop(); id !== undefined; id = ids.pop()) {
          const s = await c.status(te.encode(id));
          expect(s.type, id).toBe('StatusResult');
          if (s.type !== 'StatusResult') continue;
          const used = LIMIT - s.attemptsRemaining;
          expect(used, `${id}: attempts used below the acknowledged wrong guesses (a refund)`).toBeGreaterThanOrEqual(this.acked.get(id) ?? 0);
          expect(used, `${id}: attempts used above the guesses tried`).toBeLessThanOrEqual(this.tried.get(id) ?? 0);
          const r = await c.recover(te.encode(id), te.encode('pw'));
          expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(KEY)), id).toBe(true);
        }
      }),
    );
  }
}

/** Every running member of `ids` normal under one leader, none behind, at the leader's applied batch. */
function settled(ids: number[], ms = 120_000): Promise<Status[]> {
  return f.waitFor(
    `members ${ids.join(', ')} to apply the leader's batches`,
    async () => {
      const all = await Promise.all(ids.map(statusOf));
      if (all.some((s) => s === null || s.status !== 'normal' || s.behind)) return null;
      const ok = all as Status[];
      const leader = ok.find((s) => s.leader?.id === s.member);
      if (!leader || ok.some((s) => s.leader?.id !== leader.member || s.appliedBatch !== leader.appliedBatch)) return null;
      return ok;
    },
    ms,
  );
}

describe('charter changes between member processes', () => {
  let members = [0, 1, 2];
  const load = new Load(() => members);

  beforeAll(async () => {
    f = await ProcFleet.serving(3, ARGS);
  }, 180_000);

  afterAll(async () => {
    await load.end();
    await f?.close();
  });

  it('refuses an addition while a member is down, and any approval that is not the operator\'s', async () => {
    onTestFailed(() => console.error(f.events.slice(-30).join('\n')));
    const before = readFileSync(f.fleetFile, 'utf8');
    await f.kill(f.procs[2]!);
    const r = await runBkvAsync(f.root, ['fleet', 'add', f.root, '--timeout', '5']);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/member 2 does not answer/);
    expect(readFileSync(f.fleetFile, 'utf8')).toBe(before);
    expect(readdirSync(f.root).filter((x) => x.startsWith('member-'))).toEqual(['member-0', 'member-1', 'member-2']);
    await f.start(2);
    await f.allNormal();

    // approvals: a change for a made-up member, approved under another operator secret, another change's, cut short
    const fleet = fleetNow();
    const founding = foundingCharter([0, 1, 2].map((i) => f.memberDir(i)), Uint8Array.from(Buffer.from(fleet.fleetId, 'hex')))!;
    const keys = [0, 1, 2].map((i) => readIdentityFile(f.memberDir(i), i)!);
    const change = { serial: 1, identities: [...keys, new Uint8Array(32).fill(0x42)] };
    const secret = Uint8Array.from(Buffer.from(readFileSync(join(f.root, 'auth', 'operator.secret'), 'utf8').trim(), 'hex'));
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const post = (body: string, method = 'POST') => fetch(`${apiOf(0)}${CHARTER_PATH}`, { method, headers: { 'content-type': 'application/json' }, ...(method === 'POST' && { body }) });
    for (const approval of [charterApproval(new Uint8Array(32).fill(1), founding, change), charterApproval(secret, founding, { ...change, serial: 2 })]) {
      const res = await post(JSON.stringify({ ...changeJson(change), approval: hex(approval) }));
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('Fleet.CharterNotApproved');
    }
    const good = hex(charterApproval(secret, founding, change));
    for (const [body, status] of [
      ['{', 400],
      ['[]', 400],
      [JSON.stringify({ ...changeJson(change), approval: good.slice(2) }), 400],
      [JSON.stringify({ ...changeJson(change), approval: good, extra: 1 }), 400],
      [JSON.stringify({ serial: 0, identities: changeJson(change).identities, approval: good }), 400],
      [JSON.stringify({ serial: 1, identities: [...changeJson(change).identities, ...changeJson(change).identities], approval: good }), 400],
      [JSON.stringify({ ...changeJson(change), approval: good, pad: 'x'.repeat(5000) }), 413],
    ] as const) {
      expect((await post(body)).status, body.slice(0, 60)).toBe(status);
    }
    expect((await post('', 'GET')).status).toBe(405);
    // nothing was approved or proposed by any of it
    for (const i of [0, 1, 2]) expect((await statusOf(i))!.charter).toEqual({ serial: 0, members: [0, 1, 2], ids: 3, committed: 0 });
  }, 180_000);

  it('replaces member 0 under load: member 3 added, started, caught up and admitted; member 0 removed and retired', async () => {
    onTestFailed(() => console.error(f.events.slice(-30).join('\n'), [...f.procs, ...f.extra].map((p) => p && `${p.label}:\n${p.log.split('\n').slice(-15).join('\n')}`).join('\n---\n')));
    load.start();
    await sleep(3000);
    const [api, peer] = [await freeFixedPort(), await freeFixedPort()];
    const replacing = runBkvAsync(f.root, ['fleet', 'replace', f.root, '--member', '0', '--api-port', String(api), '--peer-port', String(peer), '--timeout', '120', '--json']);
    // the addition commits and a member writes the grant; then the test starts member 3, as the command asks
    await f.grantFor(replacing, 3);
    expect(fleetNow().members[3]).toEqual(expect.objectContaining({ id: 3, joined: 1, api: { host: '127.0.0.1', port: api } }));
    await f.start(3);
    members = [0, 1, 2, 3];
    const r = await replacing;
    f.note(`bkv fleet replace:\n${r.err}`);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toEqual(expect.objectContaining({ added: 3, removed: 0, serial: 2 }));
    expect(fleetNow().members[0]).toEqual(expect.objectContaining({ removed: 2 }));
    members = [1, 2, 3];
    // member 0 learns its removal and retires; the others hold charter 2: members 1, 2, 3
    await f.waitFor('member 0 to retire', async () => (await statusOf(0))?.status === 'retired', 30_000);
    const s = await settled([1, 2, 3]);
    for (const x of s) expect(x.charter).toEqual({ serial: 2, members: [1, 2, 3], ids: 4, committed: 2 });
    await f.kill(f.procs[0]!);
    // the approval of change 1 replayed to every member: taken (the same change), nothing proposed again, the charter unchanged
    const fleet = fleetNow();
    const founding = foundingCharter([0, 1, 2].map((i) => f.memberDir(i)), Uint8Array.from(Buffer.from(fleet.fleetId, 'hex')))!;
    const change1 = { serial: 1, identities: [0, 1, 2, 3].map((i) => readIdentityFile(f.memberDir(i), i)!) };
    const secret = Uint8Array.from(Buffer.from(readFileSync(join(f.root, 'auth', 'operator.secret'), 'utf8').trim(), 'hex'));
    const body = JSON.stringify({ ...changeJson(change1), approval: Buffer.from(charterApproval(secret, founding, change1)).toString('hex') });
    for (const i of [1, 2, 3]) expect((await fetch(`${apiOf(i)}${CHARTER_PATH}`, { method: 'POST', body })).status).toBe(200);
    await sleep(1500);
    for (const i of [1, 2, 3]) expect((await statusOf(i))!.charter).toEqual({ serial: 2, members: [1, 2, 3], ids: 4, committed: 2 });
  }, 300_000);

  it('serves on the new charter with one of its members down; a removed member started again serves nothing; the added member restarts', async () => {
    onTestFailed(async () => console.error(f.events.slice(-30).join('\n'), JSON.stringify(await Promise.all([2, 3].map(statusOf))), load.lastError, [...f.procs, ...f.extra].map((p) => p && `${p.label}:\n${p.log.split('\n').filter((l) => !/connected/.test(l)).slice(-25).join('\n')}`).join('\n---\n')));
    await f.kill(f.procs[1]!);
    members = [2, 3];
    await f.waitFor('a leader among members 2 and 3', async () => {
      const s = await Promise.all([2, 3].map(statusOf));
      return s.every((x) => x?.status === 'normal' && x.leader !== null && x.leader.id !== 1) ? s : null;
    }, 60_000);
    const before = load.registered.size;
    await f.waitFor('registrations on members 2 and 3', async () => load.registered.size > before + 3, 60_000);
    // the removed member started again: it does not start (fleet.json marks it removed)
    await expect(f.start(0)).rejects.toThrow(/removed/);
    const m1 = await f.start(1);
    members = [1, 2, 3];
    await settled([1, 2, 3]);
    // behind on its return (the log moved on without it), it copies member 3's rows: never refused
    // (its host waits until its log names the copy's batch committed; before, it copied a batch
    // ahead of its written log and the device refused copy after copy under load)
    expect(m1.log).not.toMatch(/the device refused/);
    // the added member SIGKILLed under load and started again from its folder (its secrets of version 2, its state)
    await f.kill(f.procs[3]!);
    await f.start(3);
    await load.end();
    await settled([1, 2, 3]);
    await load.check();
  }, 300_000);
});

describe('a dead member of a 5-member fleet: replace removes it first, then adds a member', () => {
  beforeAll(async () => {
    f = await ProcFleet.serving(5, ARGS);
  }, 180_000);

  afterAll(async () => {
    await f?.close();
  });

  it('member 4 SIGKILLed for good: replace --member 4 removes it (5 -> 4), adds member 5 (4 -> 5) and waits for it to serve', async () => {
    onTestFailed(() => console.error(f.events.slice(-30).join('\n')));
    await f.kill(f.procs[4]!);
    const rep = await f.replaceWith(4, 5);
    expect(fleetNow().members[4]).toEqual(expect.objectContaining({ removed: 1 }));
    expect(fleetNow().members[5]).toEqual(expect.objectContaining({ id: 5, joined: 2 }));
    expect(rep.code, rep.err).toBe(0);
    expect(rep.err).toMatch(/member 4 does not answer: removed first \(charter change 1\); the 4 left add its replacement/);
    expect(JSON.parse(rep.out)).toEqual(expect.objectContaining({ added: 5, removed: 4, serial: 1 }));
    const s = await settled([0, 1, 2, 3, 5]);
    for (const x of s) expect(x.charter).toEqual({ serial: 2, members: [0, 1, 2, 3, 5], ids: 6, committed: 2 });
    // the fleet serves on its new charter: a registration and its recovery
    const c = await fleetClient(f.root, [0, 1, 2, 3, 5].map(apiOf));
    await c.register(te.encode('after'), te.encode('pw'), KEY, { attemptLimit: LIMIT });
    const r = await c.recover(te.encode('after'), te.encode('pw'));
    expect(r.ok && Buffer.from(r.backupKey).equals(Buffer.from(KEY))).toBe(true);
  }, 300_000);
});
