/**
 * The vault served by a fleet of 3 member processes (`bkv serve --fleet ... --member I`, every
 * member reaching the others through a proxy the test controls), its batches on the fleet's log
 * (host/fleet/vault-node.ts, hsm/fleet/vault-device.ts), used through the real CLI client
 * (`bkv escrow ... --vault url0,url1,url2`) and the SDK (client/escrow.ts over client/http-relay.ts):
 *   1. once vault-key.pub is written: a key registered with a password (limit 5), 2 wrong recovers
 *      (3 attempts remaining; a login whose session was lost between LoginStart and LoginFinish
 *      is charged and started again, and the counts below follow: `recover`);
 *   2. the leader cut off alone: a wrong recover sent to it gets no outcome (an error, never
 *      wrong-password); healed, the record says 3 attempts remaining: nothing was charged;
 *   3. the leader SIGKILLed: through the other members the status says 3, the right password
 *      brings the key back;
 *   4. the killed member restarted catches up (its /fleet/status shows the leader's applied
 *      batch), and every member's store holds the same blob for the record;
 *   5. 2 of 3 killed: the survivor answers no charging operation; restarted, the whole fleet
 *      re-forms on the newest log, which may hold the survivor's unanswered LoginStart: the record
 *      says 5 attempts remaining (the reset of step 3), or 4 with that guess charged on every
 *      member, never another answer;
 *   6. the edge: a follower answers an operation 421 NOT_LEADER naming the leader before reading
 *      it, the leader refuses a malformed message (400), a truncated one (an unsealed fault, no
 *      outcome), a replayed one (409) and one without the issuer token (401); every member
 *      answers GET /v1/vault with the pinned key; /fleet/ops answers 409 on a vault member.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { EscrowClient } from '../../../client/escrow.ts';
import { FastSealer } from '../../../client/e2e-seal-node.ts';
import { httpRelay } from '../../../client/http-relay.ts';
import { encodeMessage } from '../../../enclave/api/codec.ts';
import { AUTH_TOKEN_HEADER, opsPath, toBase64url } from '../../../enclave/api/http.ts';
import { ClientRequests } from '../../../enclave/api/messages.ts';
import { VaultHttpError, VaultMembersError, VaultTransportError } from '../../../client/vault-errors.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { readVaultKeyFile } from '../../../host/cli/io.ts';
import { VAULT_KEY_FILE } from '../../../host/fleet/member-host.ts';
import { runBkvAsync } from '../../helpers/cli.ts';
import { escrowCli, expectCaughtUp, killLeader, settled as settledFleet } from '../../helpers/fleet-escrow.ts';
import { ProcFleet } from '../../helpers/fleet-procs.ts';

let f: ProcFleet;
const ID = 'alice';

beforeAll(async () => {
  f = await ProcFleet.create(3, {}, { vault: true, args: ['--record-limit', 'off'] });
  await Promise.all([0, 1, 2].map((i) => f.start(i)));
  await f.waitFor('vault-key.pub', async () => existsSync(join(f.root, VAULT_KEY_FILE)), 60_000);
  await f.allNormal();
  const tok = await runBkvAsync(f.root, ['auth', 'token', '--issuer-key', join('auth', 'issuer.key'), '--id', ID, '--out', 'alice.tok']);
  expect(tok.code, tok.err).toBe(0);
  const key = await runBkvAsync(f.root, ['key', 'new', '--out', 'my.key']);
  expect(key.code, key.err).toBe(0);
  writeFileSync(join(f.root, 'right.pw'), 'correct horse battery\n');
  writeFileSync(join(f.root, 'wrong.pw'), 'wrong horse\n');
}, 120_000);

afterAll(async () => {
  await f?.close();
});

const urls = () => f.apiPorts.map((p) => `http://127.0.0.1:${p}`);

/** `bkv escrow VERB ... --json` against `vault` (default every member), its JSON answer and exit code. */
const escrow = (verb: string, args: string[], vault = urls()) => escrowCli(f, ID, 'alice.tok', verb, args, vault);

/** An SDK client that asks only `vault` (one or more member URLs). */
async function sdk(vault: string[]): Promise<EscrowClient> {
  const pinned = readVaultKeyFile(join(f.root, VAULT_KEY_FILE));
  return new EscrowClient({
    relay: httpRelay({ baseUrl: vault, enclavePublicKey: pinned.enclavePublicKey, timeoutMs: 15_000 }),
    enclavePublicKey: pinned.enclavePublicKey,
    suite: await fastSuite('ristretto255-SHA512'),
    rng: (n) => new Uint8Array(randomBytes(n)),
    context: pinned.opaqueContext,
    auth: readFileSync(join(f.root, 'alice.tok'), 'utf8').trim(),
  });
}

/** Guesses charged so far (each wrong recover's LoginStart; the right one resets them). */
let charged = 0;
/** Two-step operations whose first step's state was gone at the second (the lead moved, or the leader's device rebooted): a login's guess stays charged; the client starts again. */
let sessionLosses = 0;
const MAX_SESSION_LOSSES = 2;

/**
 * `bkv escrow recover` with `pw`, once more when its login lost its session (Handling.UnknownSession:
 * the LoginFinish reached a vault that did not hold it, after the lead moved or the leader's device
 * rebooted; its guess stays charged: docs/fleet-vault.md "What the host of a member runs"), at most
 * MAX_SESSION_LOSSES in the file: a loaded machine makes a view change (10 quiet ticks) likelier.
 */
async function recover(pw: string, extra: string[] = []): Promise<{ code: number | null; json: Record<string, any>; err: string }> {
  const r = await again('recover', ['--password-file', pw, ...extra], 'Handling.UnknownSession');
  // a login started again after a lost session is one more wrong guess: the record's guess pacing
  // (standard) may then ask the next one to wait; wait as a client would, once
  if (r.json.outcome !== 'paced' || sessionLosses === 0) return r;
  f.note(`recover paced for ${r.json.retryAfterSeconds} s after a lost session; waiting`);
  await new Promise((done) => setTimeout(done, (Number(r.json.retryAfterSeconds) + 1) * 1000));
  return again('recover', ['--password-file', pw, ...extra], 'Handling.UnknownSession');
}

/** `bkv escrow VERB`, once more when the session or registration stage of its first step was gone at its second (`lost`). */
async function again(verb: string, args: string[], lost: 'Handling.UnknownSession' | 'Handling.UnknownStage'): Promise<{ code: number | null; json: Record<string, any>; err: string }> {
  for (;;) {
    const r = await escrow(verb, args);
    if (r.json.error?.fault?.name !== lost) return r;
    expect(++sessionLosses, `more than ${MAX_SESSION_LOSSES} operations lost their session or stage:\n${r.err}\n${f.events.join('\n')}\n${f.procs.map((p) => p && `${p.label}:\n${p.log.split('\n').slice(-15).join('\n')}`).join('\n')}`).toBeLessThanOrEqual(MAX_SESSION_LOSSES);
    if (verb === 'recover') charged++; // the LoginStart charged; a lost registration stage charged nothing
    f.note(`${verb} lost its session or stage (${r.json.error.message}); charged, started again`);
    console.log(`${verb} lost its session or stage; member logs:\n${f.procs.map((p) => p && `${p.label}:\n${p.log.split('\n').slice(-8).join('\n')}`).join('\n')}`);
  }
}

const settled = () => settledFleet(f);

/** The record's stored blob in member `i`'s store (SQLite vault.db in its folder), read-only. */
function storedBlob(i: number): Buffer | null {
  const db = new Database(join(f.memberDir(i), 'vault.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT blob FROM records WHERE partition = 0 AND record_id = ?').get(Buffer.from(ID)) as { blob: Buffer } | undefined;
    return row?.blob ?? null;
  } finally {
    db.close();
  }
}

const te = new TextEncoder();

/** What `p` rejects with: the relay's typed errors only (an HTTP refusal, a transport failure, or several of them). */
async function refusedWith(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    (v) => {
      throw new Error(`expected no outcome, got ${JSON.stringify(v)}`);
    },
    (err: unknown) => err as Error,
  );
  expect(e instanceof VaultHttpError || e instanceof VaultTransportError || e instanceof VaultMembersError, String(e)).toBe(true);
  return e;
}

const keyText = (file: string) => readFileSync(join(f.root, file), 'utf8').replace(/\s+/g, '');

describe('the vault served by 3 member processes', () => {
  it('registers, charges wrong passwords, refuses on a leader cut off alone, survives the leader\'s SIGKILL, and a restarted member catches up to the same stored blob', async () => {
    onTestFailed(() => console.log(f.failureReport()));
    const reg = await again('register', ['--key-file', 'my.key', '--password-file', 'right.pw', '--attempts', '5'], 'Handling.UnknownStage');
    expect(reg.json, reg.err).toMatchObject({ ok: true, outcome: 'registered', attemptLimit: 5, attemptsRemaining: 5 });
    for (let k = 0; k < 2; k++) {
      const r = await recover('wrong.pw');
      expect(r.code, r.err).toBe(3);
      charged++;
      expect(r.json).toMatchObject({ outcome: 'wrong-password', attemptsRemaining: 5 - charged, destroyed: false });
    }

    // the leader cut off alone: what reaches it is answered by no majority
    const cut = await f.waitFor('a leader', () => f.leader());
    const alone = await sdk([urls()[cut]!]);
    // positive control, before the cut: the same client through that member alone gets the record's status
    expect(await alone.status(te.encode(ID))).toMatchObject({ type: 'StatusResult', attemptsRemaining: 5 - charged });
    for (const p of f.linksOf(cut)) p.cut();
    f.note(`cut m${cut}`);
    f.note(`cut-off answer: ${(await refusedWith(alone.recover(te.encode(ID), te.encode('wrong horse')))).message}`);
    await f.waitFor('a leader on the other side', async () => {
      const l = await f.leader();
      return l !== null && l !== cut ? l : null;
    });
    for (const p of f.linksOf(cut)) p.heal();
    f.note(`healed m${cut}`);
    await settled();
    const afterCut = await escrow('status', []);
    expect(afterCut.json, afterCut.err).toMatchObject({ outcome: 'registered', attemptsRemaining: 5 - charged, attemptLimit: 5 });

    // the leader SIGKILLed: the others go on, with the 2 charged guesses
    const leader = await killLeader(f);
    const st = await escrow('status', []);
    expect(st.json, st.err).toMatchObject({ outcome: 'registered', attemptsRemaining: 5 - charged });
    const rec = await recover('right.pw', ['--out', 'got.key']);
    expect(rec.json, rec.err).toMatchObject({ ok: true, outcome: 'recovered', attemptsRemaining: 5 });
    charged = 0;
    expect(keyText('got.key')).toBe(keyText('my.key'));

    // restarted, it catches up: the same applied batch, the same stored blob everywhere
    await expectCaughtUp(f, leader, storedBlob);

    // every line a member writes as a member begins with its UTC time (memberLogLine), in order:
    // the leader's cut and its kill above leave view changes in every log
    for (const p of f.procs) {
      const lines = p!.log.split('\n').filter((l) => /(^| )bkv: (fleet )?member \d+/.test(l));
      expect(lines.length, p!.label).toBeGreaterThan(3);
      const times = lines.map((l) => {
        expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z bkv: (fleet )?member \d+/);
        return Date.parse(l.slice(0, 24));
      });
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(Math.abs(times.at(-1)! - Date.now())).toBeLessThan(300_000);
    }
  }, 300_000);

  it('with 2 of 3 members killed the survivor answers no charging operation; its pending charge is dropped or kept everywhere, never refunded', async () => {
    await settled();
    const survivor = 0;
    for (const i of [1, 2]) await f.kill(f.procs[i]!);
    const client = await sdk(urls());
    await refusedWith(client.recover(te.encode(ID), te.encode('wrong horse')));
    expect(f.procs[survivor]).not.toBeNull();
    for (const i of [1, 2]) await f.start(i);
    await settled();
    // the survivor's log held the LoginStart it could not commit; when the whole fleet re-forms on
    // the newest log, that entry is committed with it (docs/fleet.md "Re-form"): the guess is
    // charged on every member, though its KE2 never left (the safe side); a view change that
    // dropped it would leave 5. Never more than 5, never a member that disagrees.
    const st = await escrow('status', []);
    expect(st.json, st.err).toMatchObject({ outcome: 'registered', attemptLimit: 5 });
    expect([4, 5], st.err).toContain(st.json.attemptsRemaining);
    charged = 5 - (st.json.attemptsRemaining as number);
  }, 300_000);

  it('refuses at the edge: a follower 421 with the leader, a malformed, truncated, replayed or unauthorized message on the leader; /fleet/ops 409', async () => {
    await settled();
    const leader = await f.waitFor('a leader', () => f.leader());
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const pinned = readVaultKeyFile(join(f.root, VAULT_KEY_FILE));
    const token = readFileSync(join(f.root, 'alice.tok'), 'utf8').trim();
    const id = te.encode(ID);
    const sealed = () => toBase64url(new FastSealer(pinned.enclavePublicKey).seal(id, encodeMessage(ClientRequests, { type: 'Status', auth: te.encode(token) })).message);
    const post = async (i: number, message: string, headers: Record<string, string> = { [AUTH_TOKEN_HEADER]: token }) => {
      const r = await fetch(urls()[i] + opsPath(id), { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ message }) });
      return { status: r.status, body: (await r.json()) as any };
    };
    // positive control: a fresh sealed Status through the leader is answered sealed
    expect(await post(leader, sealed())).toMatchObject({ status: 200, body: { sealed: true } });
    expect(await post(follower, sealed())).toMatchObject({ status: 421, body: { error: { code: 'NOT_LEADER', leader: urls()[leader] } } });
    expect(await post(leader, '!!not base64url')).toMatchObject({ status: 400, body: { error: { code: 'BAD_MESSAGE' } } });
    // truncated: the device can not open it, and answers an unsealed fault (no outcome of the record)
    expect(await post(leader, sealed().slice(0, 40))).toMatchObject({ status: 200, body: { sealed: false } });
    const once = sealed();
    expect(await post(leader, once)).toMatchObject({ status: 200, body: { sealed: true } });
    expect(await post(leader, once)).toMatchObject({ status: 409, body: { error: { code: 'REPLAYED' } } });
    expect(await post(leader, sealed(), {})).toMatchObject({ status: 401, body: { error: { code: 'AUTH_TOKEN_REQUIRED' } } });
    for (const u of urls()) {
      const info = (await (await fetch(`${u}/v1/vault`)).json()) as { enclavePublicKey: string; partitions: number };
      expect(info).toMatchObject({ enclavePublicKey: toBase64url(pinned.enclavePublicKey), partitions: 1 });
    }
    const ops = await fetch(`${urls()[leader]}/fleet/ops`, { method: 'POST', body: JSON.stringify({ kind: 'touch', id: 'x' }) });
    expect(ops.status).toBe(409);
    expect(((await ops.json()) as any).error.code).toBe('VAULT_SERVED');
    // nothing of the above charged a guess
    const st = await escrow('status', []);
    expect(st.json, st.err).toMatchObject({ outcome: 'registered', attemptsRemaining: 5 - charged });
  }, 120_000);
});
