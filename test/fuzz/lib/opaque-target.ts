/**
 * Fuzzing: the shared body of the RFC 9807 message targets (test/fuzz/targets/opaque-*.ts).
 *
 * Each input goes through the message's decoder on both suites and both group backends
 * (`portableSuite`, @noble; `fastSuite`, libsodium / node:crypto), and, where the message is an
 * input to a protocol step, through that step on the fast backend:
 *   RegistrationRequest -> serverRegistrationResponse; RegistrationResponse -> clientRegistrationFinish;
 *   RegistrationRecord  -> serverLoginStart (as the stored record); KE1 -> serverLoginStart (real and
 *   fake record); KE2 -> clientLoginFinish; KE3 -> serverLoginFinish (on a state expecting the
 *   fixture's KE3).
 * Oracle: only OpaqueError escapes; the two backends of a suite agree (both accept with the same
 * fields, or both refuse with the same code and field); an accepted message re-encodes to the
 * same bytes; a protocol step never succeeds on bytes other than the valid message it expects
 * (a KE3 other than the right one is a wrong password, never a session key).
 */
import { randomBytes } from 'node:crypto';
import type { MessageName } from '../../../enclave/opaque/encoding.ts';
import { clientLoginFinish, clientLoginStart, clientRegistrationFinish, clientRegistrationStart } from '../../../enclave/opaque/client.ts';
import { generateServerKeys, serverLoginFinish, serverLoginStart, serverLoginStateDecode, serverRegistrationResponse } from '../../../enclave/opaque/server.ts';
import type { ServerKeys } from '../../../enclave/opaque/server.ts';
import { OpaqueError } from '../../../enclave/opaque/errors.ts';
import type { Suite, SuiteId } from '../../../enclave/opaque/suite.ts';
import { SUITE_IDS } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { portableSuite } from '../../../enclave/opaque/suites-portable.ts';
import { equalBytes, hex, typed, typedAsync, violation } from './oracle.ts';
import { drbg } from './canary.ts';
import { MESSAGE_DECODERS, MESSAGE_ENCODERS, opaqueMessages } from '../../helpers/opaque.ts';

const te = new TextEncoder();
export const OPAQUE_CONTEXT = te.encode('bkv-fuzz-opaque');
export const OPAQUE_PASSWORD = te.encode('bkv-fuzz opaque password');
export const OPAQUE_ID = te.encode('bkv-fuzz-credential');

/** A fixed server and a valid run of every message, per suite (deterministic). */
export interface OpaqueFixture {
  suite: Suite;
  portable: Suite;
  keys: ServerKeys;
  messages: Record<MessageName, Uint8Array>;
}

export async function opaqueFixture(id: SuiteId): Promise<OpaqueFixture> {
  const suite = await fastSuite(id);
  const rng = drbg(`opaque-fixture/${id}`, 0);
  const keys = generateServerKeys(suite, rng);
  const messages = await opaqueMessages({ suite, context: OPAQUE_CONTEXT, rng }, keys, OPAQUE_PASSWORD, OPAQUE_ID);
  return { suite, portable: portableSuite(id), keys, messages };
}

function outcomeOf(r: { ok: true; value: unknown } | { ok: false; error: Error }): string {
  if (r.ok) return 'ok';
  const e = r.error as OpaqueError;
  return `${e.code}:${e.field ?? ''}`;
}

function flatten(v: unknown): string {
  if (v instanceof Uint8Array) return hex(v);
  if (v && typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${flatten(x)}`).join(',');
  return String(v);
}

export function opaqueMessageTarget(message: MessageName) {
  let fixtures: OpaqueFixture[] = [];
  let last: string | undefined;
  const rng = (n: number) => new Uint8Array(randomBytes(n));

  async function setup(): Promise<void> {
    fixtures = [];
    for (const id of SUITE_IDS) fixtures.push(await opaqueFixture(id));
  }

  async function step(f: OpaqueFixture, data: Uint8Array): Promise<string> {
    const suite = f.suite;
    const o = { suite, context: OPAQUE_CONTEXT, rng };
    const where = `${message} step (${suite.id})`;
    switch (message) {
      case 'RegistrationRequest':
        return outcomeOf(typed(where, () => serverRegistrationResponse(o, f.keys, data, OPAQUE_ID)));
      case 'RegistrationRecord': {
        const r = typed(where, () => serverLoginStart(o, f.keys, f.messages.KE1, OPAQUE_ID, data));
        return outcomeOf(r);
      }
      case 'KE1': {
        const a = typed(where, () => serverLoginStart(o, f.keys, data, OPAQUE_ID, f.messages.RegistrationRecord));
        const b = typed(`${where} (fake record)`, () => serverLoginStart(o, f.keys, data, OPAQUE_ID, null));
        if (a.ok !== b.ok) violation('oracle', `${where}: the real and the fake record disagree on accepting the KE1`);
        return outcomeOf(a);
      }
      case 'KE3': {
        // A server state whose expected client MAC is the fixture's KE3 (restored from its bytes,
        // so no login is run per input).
        const right = f.messages.KE3;
        const code = suite.id === 'ristretto255-SHA512' ? 1 : 2;
        const state = serverLoginStateDecode(suite, Uint8Array.of(1, code, ...right, ...new Uint8Array(suite.Nx).fill(7)));
        const r = typed(where, () => serverLoginFinish(o, state, data));
        if (r.ok && r.value.ok && !equalBytes(data, right)) violation('auth-bypass', `${where}: serverLoginFinish accepted a KE3 that is not the client's`);
        if (r.ok && !r.value.ok && equalBytes(data, right)) violation('oracle', `${where}: the right KE3 was refused`);
        return r.ok ? (r.value.ok ? 'session' : 'wrong') : outcomeOf(r);
      }
      case 'RegistrationResponse': {
        const { state } = clientRegistrationStart(o, OPAQUE_PASSWORD);
        const r = await typedAsync(where, () => clientRegistrationFinish(o, state, OPAQUE_PASSWORD, data));
        return outcomeOf(r);
      }
      case 'KE2': {
        const { state } = clientLoginStart(o, OPAQUE_PASSWORD);
        const r = await typedAsync(where, () => clientLoginFinish(o, state, OPAQUE_PASSWORD, data));
        // The KE2 answers another client state: it must never authenticate.
        if (r.ok && r.value.ok) violation('auth-bypass', `${where}: a KE2 for another login state authenticated`);
        return r.ok ? (r.value.ok ? 'session' : r.value.outcome) : outcomeOf(r);
      }
      default:
        return '-';
    }
  }

  async function fuzz(data: Buffer | Uint8Array): Promise<void> {
    if (!fixtures.length) await setup();
    const input = new Uint8Array(data);
    const parts: string[] = [];
    for (const f of fixtures) {
      const fast = typed(`decode${message} (${f.suite.id}, fast)`, () => MESSAGE_DECODERS[message](f.suite, input));
      const slow = typed(`decode${message} (${f.suite.id}, noble)`, () => MESSAGE_DECODERS[message](f.portable, input));
      if (outcomeOf(fast) !== outcomeOf(slow)) {
        violation('backend-disagree', `decode${message} (${f.suite.id}): fast backend ${outcomeOf(fast)}, noble backend ${outcomeOf(slow)}`);
      }
      if (fast.ok && slow.ok && flatten(fast.value) !== flatten(slow.value)) {
        violation('backend-disagree', `decode${message} (${f.suite.id}): the backends decode different fields`);
      }
      if (fast.ok) {
        const re = typed(`encode${message} (${f.suite.id})`, () => MESSAGE_ENCODERS[message](f.suite, fast.value as never));
        if (!re.ok) violation('round-trip', `encode${message} (${f.suite.id}) refused what decode${message} accepted: ${re.error.message}`);
        if (!equalBytes(re.value, input)) violation('round-trip', `encode${message}(decode${message}(x)) differs from x (${f.suite.id})`);
      }
      parts.push(`${f.suite.id}:${outcomeOf(fast)}:${await step(f, input)}`);
    }
    last = parts.join('|');
  }

  return { setup, fuzz, outcome: () => last, fixtures: () => fixtures };
}
