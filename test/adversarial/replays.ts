/**
 * Replays that gain nothing, through a VaultHost directly (no host replay guard: the enclave's
 * own rules are what is tested; the service's guard answers 409 to a byte-identical copy, see
 * test/host/service/service.test.ts). What test/enclave/api/api.test.ts and test/host/service/service.test.ts already cover
 * (a replayed RegisterFinish, LoginFinish and LoginStart right after their own operation, a
 * ciphertext moved to another record) is not repeated; this adds replays after later changes:
 *
 *   registration pair   RegisterStart + RegisterFinish of the first registration, replayed after a
 *                       password change (and after a delete): no re-registration, no resurrection,
 *                       the current password still the only one, nothing charged;
 *   password change     the change's messages replayed after a second change;
 *   delete              a Delete with proof of the backup key, and one with proof of the password,
 *                       replayed after the record was registered again: NotAuthorized, the new
 *                       registration intact;
 *   KE3                 a LoginFinish replayed after a later login, and after a password change;
 *   KE1                 a LoginStart replayed after a password change: at most the one guess any
 *                       login start costs, and its KE2 (sealed to the original client) finishes
 *                       nothing with the old password;
 *   restart             every finishing message replayed after a restart of the vault.
 *
 *   npx tsx test/adversarial/replays.ts [--mode worker|process]
 * Exit 1 on a violation.
 */
import { randomBytes } from 'node:crypto';
import { Handling, faultName } from '../../enclave/api/codes.ts';
import type { ClientResponse } from '../../enclave/api/messages.ts';
import { bump, isMain, newReport, parseArgs, runMain, tempDir, te } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { VaultClient, describe, sameBytes } from './lib/flows.ts';
import type { Sent } from './lib/flows.ts';
import { openHost } from './lib/vaults.ts';
import { expectResponse } from '../../enclave/api/expect.ts';

function show(a: { ok: true; res: ClientResponse } | { ok: false; error: unknown }): string {
  if (!a.ok) return `no answer (${describe(a.error)})`;
  return a.res.type === 'Fault' ? `Fault ${faultName(a.res.code)}` : a.res.type;
}

export async function replays(o: { mode?: 'worker' | 'process'; log?: (l: string) => void } = {}): Promise<Report> {
  const report = newReport(`replays (${o.mode ?? 'worker'} devices)`);
  const log = o.log ?? (() => undefined);
  const tmp = tempDir('replays');
  let v = await openHost({ dataDir: tmp.dir, mode: o.mode ?? 'worker', partitions: 2 });
  const c = (): VaultClient => v.client;
  const fail = (what: string) => report.violations.push(what);
  const expectAnswer = (what: string, a: Awaited<ReturnType<VaultClient['send']>>, ok: (r: ClientResponse) => boolean) => {
    report.checks++;
    if (!a.ok || !ok(a.res)) fail(`${what}: answered ${show(a)}`);
  };
  const remaining = async (id: Uint8Array): Promise<number | string> => {
    const st = await c().status(id);
    return st.ok && st.res.type === 'StatusResult' ? st.res.attemptsRemaining : show(st);
  };
  const opens = async (id: Uint8Array, pw: Uint8Array) => (await c().login(id, pw)).key;
  const isFault = (code: number) => (r: ClientResponse) => r.type === 'Fault' && r.code === code;
  const pw = (s: string) => te.encode(`${s}-${randomBytes(4).toString('hex')}`);
  const replayed: Sent[] = [];
  const rp = (s: Sent) => {
    bump(report.faults, `replayed ${s.type}`);
    return c().replay(s);
  };
  const expected: { sent: Sent; code: number; what: string }[] = [];
  try {
    // ---- a registration pair, replayed after a password change ----
    {
      const id = te.encode(`replay-reg-${randomBytes(4).toString('hex')}`);
      const key = new Uint8Array(randomBytes(32));
      const [a, b] = [pw('a'), pw('b')];
      const reg = await c().register(id, a, key, { attemptLimit: 7 });
      const [rs, rf] = reg.sent;
      const change = await c().changePassword(id, a, b);
      if (!change.register?.registered) throw new Error('setup: password change failed');
      const before = await remaining(id);
      expectAnswer('replayed RegisterFinish (first registration) after a password change', await rp(rf!), isFault(Handling.UnknownStage));
      expectAnswer('replayed RegisterStart (first registration) after a password change', await rp(rs!), (r) => r.type === 'RegisterStarted');
      expectAnswer('replayed RegisterFinish after its RegisterStart was replayed', await rp(rf!), isFault(Handling.UnknownStage));
      report.checks += 3;
      if ((await remaining(id)) !== before) fail(`registration replays changed the count: ${before} -> ${await remaining(id)}`);
      if (await opens(id, a)) fail('the first password opens the record again after its registration was replayed');
      const k = await opens(id, b);
      if (!sameBytes(k, key)) fail('the current password no longer opens the record (with its key) after registration replays');
      // The change's own messages, replayed after a second change.
      const cpw = pw('c');
      const second = await c().changePassword(id, b, cpw);
      if (!second.register?.registered) throw new Error('setup: second change failed');
      const [crs, crf] = change.register.sent;
      expectAnswer('replayed password-change RegisterFinish after a second change', await rp(crf!), isFault(Handling.UnknownStage));
      expectAnswer('replayed password-change RegisterStart after a second change', await rp(crs!), (r) => r.type === 'RegisterStarted');
      report.checks += 2;
      if (await opens(id, b)) fail('the second password opens the record after the change was replayed');
      if (!sameBytes(await opens(id, cpw), key)) fail('the third password does not open the record after replays of the second change');
      // After a delete: the first registration replayed does not bring the record back.
      const del = await c().deleteWithKey(id, key);
      if (!del.ok) throw del.error;
      expectResponse(del.res, 'Deleted', 'setup: delete');
      expectAnswer('replayed RegisterFinish (first registration) after a delete', await rp(rf!), isFault(Handling.UnknownStage));
      expectAnswer('replayed password-change RegisterFinish after a delete', await rp(crf!), isFault(Handling.UnknownStage));
      const st = await c().status(id);
      report.checks++;
      if (!st.ok || st.res.type !== 'NotRegistered') fail(`a deleted record after registration replays: Status ${show(st)}`);
      replayed.push(rf!, crf!);
      expected.push({ sent: rf!, code: Handling.UnknownStage, what: 'RegisterFinish' }, { sent: crf!, code: Handling.UnknownStage, what: 'password-change RegisterFinish' });
      log('registration and password-change replays done');
    }

    // ---- a Delete, replayed after the record was registered again ----
    for (const proof of ['key', 'password'] as const) {
      const id = te.encode(`replay-del-${proof}-${randomBytes(4).toString('hex')}`);
      const key = new Uint8Array(randomBytes(32));
      const p1 = pw('p1');
      await c().register(id, p1, key, { attemptLimit: 5 });
      const sent: Sent[] = [];
      const del = proof === 'key' ? await c().deleteWithKey(id, key, sent) : await c().deleteWithPassword(id, p1, sent);
      if (!del.ok) throw del.error;
      expectResponse(del.res, 'Deleted', `setup: delete with ${proof}`);
      const d = sent.find((s) => s.type === 'Delete')!;
      expectAnswer(`replayed Delete (${proof} proof) of a deleted record`, await rp(d), (r) => r.type === 'NotRegistered');
      // Registered again: by the same user with the same key, and by someone else.
      const p2 = pw('p2');
      const again = await c().register(id, p2, key, { attemptLimit: 5 });
      if (!again.registered) throw new Error('setup: registration after delete failed');
      expectAnswer(`replayed Delete (${proof} proof) after the record was registered again`, await rp(d), isFault(Handling.NotAuthorized));
      report.checks++;
      if (!sameBytes(await opens(id, p2), key)) fail(`the new registration does not open after a replayed Delete (${proof} proof)`);
      if ((await remaining(id)) !== 5) fail(`a replayed Delete (${proof} proof) changed the count`);
      replayed.push(d);
      expected.push({ sent: d, code: Handling.NotAuthorized, what: `Delete (${proof} proof)` });
    }
    log('delete replays done');

    // ---- KE3 and KE1, replayed after later logins and a password change ----
    {
      const id = te.encode(`replay-login-${randomBytes(4).toString('hex')}`);
      const key = new Uint8Array(randomBytes(32));
      const [a, b] = [pw('a'), pw('b')];
      await c().register(id, a, key, { attemptLimit: 6 });
      const first = await c().login(id, a);
      const [ke1, ke3] = first.sent;
      await c().login(id, a); // a later login
      expectAnswer('replayed LoginFinish after a later login', await rp(ke3!), isFault(Handling.UnknownSession));
      report.checks++;
      if ((await remaining(id)) !== 6) fail('a replayed LoginFinish changed the count');
      await c().changePassword(id, a, b);
      expectAnswer('replayed LoginFinish after a password change', await rp(ke3!), isFault(Handling.UnknownSession));
      // KE1 replayed after the change: a new session on the new record, one guess at most.
      const before = await remaining(id);
      const r = await rp(ke1!);
      report.checks += 2;
      if (!r.ok || (r.res.type !== 'LoginStarted' && r.res.type !== 'Fault')) fail(`replayed LoginStart after a password change: ${show(r)}`);
      const after = await remaining(id);
      if (typeof before === 'number' && typeof after === 'number' && before - after > 1) fail(`a replayed LoginStart charged ${before - after} guesses`);
      if (r.ok && r.res.type === 'LoginStarted') {
        // Its session (readable only by the original sender) finishes nothing without a valid KE3.
        const fin = await c().send(id, { type: 'LoginFinish', sessionId: r.res.sessionId, ke3: new Uint8Array(c().suite.Nm) });
        expectAnswer('LoginFinish of the session a replayed KE1 opened', fin, (x) => x.type === 'WrongPassword');
      }
      if (!sameBytes(await opens(id, b), key)) fail('the record does not open with its current password after login replays');
      replayed.push(ke3!);
      expected.push({ sent: ke3!, code: Handling.UnknownSession, what: 'LoginFinish' });
      log('login replays done');
    }

    // ---- after a restart: every finishing message still refused ----
    await v.close();
    v = await openHost({ dataDir: tmp.dir, mode: o.mode ?? 'worker' });
    for (const e of expected) {
      const r = await rp(e.sent);
      report.checks++;
      if (!r.ok || r.res.type === 'Registered' || r.res.type === 'Deleted' || r.res.type === 'Recovered') fail(`replayed ${e.what} after a restart: ${show(r)}`);
    }
    log('replays after a restart done');
  } finally {
    await v.close();
    tmp.remove();
  }
  report.stats['messages replayed again after a restart'] = replayed.length;
  return report;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['mode']);
    return replays({ mode: a.get('mode') === 'process' ? 'process' : 'worker', log: (l) => console.log(l) });
  });
}
