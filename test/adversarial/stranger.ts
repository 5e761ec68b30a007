/**
 * Strangers against a live service whose host skips its own checks (rate limits off, no early
 * token check): they know the victims' ids and the vault's public key, and send every client
 * operation with every kind of token short of a valid one for the victim's id: none, garbage,
 * their own valid token (for their own id), a token for the victim from an issuer the vault does
 * not know, a forged signature under the real issuer's kid, an expired one, one for another
 * vault. The enclave must refuse each with a sealed authorization fault, and afterwards every
 * victim must have all of its guesses, its registration and its key: 0 guesses charged.
 *
 *   npx tsx test/adversarial/stranger.ts [--rounds N] [--victims V] [--mode worker|process]
 * Exit 1 on a violation.
 */
import { randomBytes } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import { Handling, faultName } from '../../enclave/api/codes.ts';
import { SUITE_CODE } from '../../enclave/api/messages.ts';
import { clientLoginStart } from '../../enclave/opaque/client.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { newIssuer } from '../../host/auth/issuer.ts';
import { testIssuer } from '../helpers/auth.ts';
import { bump, isMain, newReport, parseArgs, runMain, tempDir, te } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { CONTEXT, describe, rng, sameBytes } from './lib/flows.ts';
import type { ClientOp } from './lib/flows.ts';
import { openService } from './lib/vaults.ts';

const AUTH_FAULTS: ReadonlySet<number> = new Set([Handling.AuthRequired, Handling.AuthInvalid, Handling.AuthExpired, Handling.AuthWrongSubject, Handling.AuthWrongAudience]);

export async function stranger(o: { rounds?: number; victims?: number; mode?: 'worker' | 'process'; log?: (l: string) => void } = {}): Promise<Report> {
  const rounds = o.rounds ?? 20;
  const report = newReport(`stranger (${o.mode ?? 'worker'} devices, ${rounds} rounds)`);
  const log = o.log ?? (() => undefined);
  const tmp = tempDir('stranger');
  const v = await openService({ dataDir: tmp.dir, mode: o.mode ?? 'worker', partitions: 2 });
  const issuer = await testIssuer();
  const rogue = await newIssuer(issuer.issuer.name);
  const limit = 3;
  try {
    const victims = Array.from({ length: o.victims ?? 4 }, (_, i) => ({
      id: te.encode(`victim-${i}-${randomBytes(3).toString('hex')}`),
      pw: te.encode(`pw-${i}`),
      key: new Uint8Array(randomBytes(32)),
    }));
    for (const u of victims) {
      const r = await v.client.register(u.id, u.pw, u.key, { attemptLimit: limit });
      if (!r.registered) throw new Error(`setup: registration of a victim failed: ${r.error ? describe(r.error) : r.finish?.type}`);
    }
    // Every token a stranger can come by, for a victim `id`.
    const nowS = () => Math.floor(Date.now() / 1000);
    const strangerId = 'stranger-' + randomBytes(3).toString('hex');
    const sign = async (key: typeof rogue, claims: Record<string, unknown>, kid = key.kid) =>
      te.encode(await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid }).sign(await importJWK(key.jwk, 'EdDSA')));
    const claims = (sub: string) => ({ iss: issuer.issuer.name, aud: issuer.config.audience, sub, iat: nowS(), exp: nowS() + 600, jti: randomBytes(8).toString('hex') });
    const tokens: [string, (id: string) => Promise<Uint8Array>][] = [
      ['none', async () => new Uint8Array(0)],
      ['garbage', async () => new Uint8Array(randomBytes(40))],
      ["the stranger's own", async () => issuer.tokenBytes(strangerId)],
      ['an unknown issuer', async (id) => sign(rogue, claims(id))],
      ["forged under the issuer's kid", async (id) => sign(rogue, claims(id), issuer.issuer.kid)],
      ['expired', async (id) => issuer.tokenBytes(id, Date.now() - 2 * 3600_000)],
      ['another vault', async (id) => issuer.tokenBytes(id, Date.now(), { audience: 'another-vault' })],
    ];
    const suite = v.client.suite;
    const ops = (): ClientOp[] => {
      const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng, ksf: identityKsf }, te.encode('guess'));
      return [
        { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 },
        { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 },
        { type: 'Status' },
        { type: 'Delete', authorization: undefined },
        { type: 'RegisterStart', suite: SUITE_CODE[suite.id], request: ke1.subarray(0, 32), attemptLimit: 255, ksf: identityKsf.params, pacing: 0 },
        { type: 'LoginFinish', sessionId: new Uint8Array(16), ke3: new Uint8Array(64) },
      ];
    };
    for (let round = 0; round < rounds; round++) {
      await Promise.all(
        victims.map(async (u) => {
          const idText = new TextDecoder().decode(u.id);
          for (const [kind, make] of tokens) {
            for (const op of ops()) {
              const a = await v.client.send(u.id, { ...op, auth: await make(idText) } as ClientOp);
              report.checks++;
              if (!a.ok) {
                report.violations.push(`${op.type} with ${kind} token: no answer (${describe(a.error)})`);
              } else if (a.res.type !== 'Fault' || !AUTH_FAULTS.has(a.res.code)) {
                report.violations.push(`${op.type} with ${kind} token: answered ${a.res.type === 'Fault' ? faultName(a.res.code) : a.res.type}`);
              } else {
                bump(report.faults, `${kind}: ${faultName(a.res.code)}`);
              }
            }
          }
        }),
      );
      log(`round ${round + 1}/${rounds}: ${report.checks} refusals checked`);
    }
    // Control: the same LoginStart with the victim's own valid token is charged, so the status
    // check below would see a charged guess.
    const control = victims[0]!;
    const { ke1 } = clientLoginStart({ suite, context: CONTEXT, rng, ksf: identityKsf }, te.encode('guess'));
    const c = await v.client.send(control.id, { type: 'LoginStart', suite: SUITE_CODE[suite.id], ke1 });
    const cs = await v.client.status(control.id);
    report.checks++;
    if (!c.ok || c.res.type !== 'LoginStarted' || !cs.ok || cs.res.type !== 'StatusResult' || cs.res.attemptsRemaining !== limit - 1) {
      report.violations.push('control: a LoginStart with a valid token was not charged as one guess');
    }
    const ok = await v.client.login(control.id, control.pw); // resets the count
    if (!sameBytes(ok.key, control.key)) report.violations.push('control: the victim could not recover after the control guess');
    // The victims: every guess left, registration and key intact.
    for (const u of victims) {
      const st = await v.client.status(u.id);
      report.checks++;
      if (!st.ok || st.res.type !== 'StatusResult' || st.res.attemptsRemaining !== limit || st.res.locked !== 0) {
        report.violations.push(`a victim's status after the strangers: ${st.ok ? JSON.stringify({ ...st.res, registrationId: undefined }) : describe(st.error)}`);
      }
      const l = await v.client.login(u.id, u.pw);
      report.checks++;
      if (!sameBytes(l.key, u.key)) report.violations.push("a victim's password no longer opens its key after the strangers");
    }
  } finally {
    await v.close();
    tmp.remove();
  }
  return report;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const a = parseArgs(process.argv.slice(2), ['rounds', 'victims', 'mode']);
    return stranger({ rounds: a.num('rounds', 20), victims: a.num('victims', 4), mode: a.get('mode') === 'process' ? 'process' : 'worker', log: (l) => console.log(l) });
  });
}
