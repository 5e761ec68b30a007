/**
 * Fuzz target: the server login state decoder (`serverLoginStateDecode`, enclave/opaque/server.ts),
 * the secret bytes an enclave may keep between KE2 and KE3, on both suites.
 * Oracle: only OpaqueError escapes; an accepted state is single use (a second serverLoginFinish
 * is StateReused) and authenticates only the KE3 whose MAC it holds.
 * Seeds: test/fuzz/seeds/opaque-login-state/ (an encoded state of each suite).
 */
import { serverLoginFinish, serverLoginStateDecode } from '../../../enclave/opaque/server.ts';
import { OpaqueErrorCode } from '../../../enclave/opaque/errors.ts';
import type { OpaqueError } from '../../../enclave/opaque/errors.ts';
import type { Suite } from '../../../enclave/opaque/suite.ts';
import { SUITE_IDS } from '../../../enclave/opaque/suite.ts';
import { fastSuite } from '../../../enclave/opaque/suites-fast.ts';
import { typed, violation } from '../lib/oracle.ts';
import { OPAQUE_CONTEXT } from '../lib/opaque-target.ts';

export const name = 'opaque-login-state';
export const maxInputLength = 512;

let suites: Suite[] = [];
let last: string | undefined;

export async function setup(): Promise<void> {
  suites = [];
  for (const id of SUITE_IDS) suites.push(await fastSuite(id));
}

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  if (!suites.length) await setup();
  const input = new Uint8Array(data);
  const parts: string[] = [];
  for (const suite of suites) {
    const r = typed(`serverLoginStateDecode (${suite.id})`, () => serverLoginStateDecode(suite, input));
    if (!r.ok) {
      parts.push(`${suite.id}:${(r.error as OpaqueError).code}`);
      continue;
    }
    const o = { suite, context: OPAQUE_CONTEXT, rng: () => new Uint8Array(0) };
    const mac = input.slice(2, 2 + suite.Nm);
    const first = typed('serverLoginFinish', () => serverLoginFinish(o, r.value, mac));
    if (!first.ok || !first.value.ok) violation('oracle', `${suite.id}: a decoded state refused the KE3 whose MAC it holds`);
    const again = typed('serverLoginFinish (again)', () => serverLoginFinish(o, r.value, mac));
    if (again.ok || (again.error as OpaqueError).code !== OpaqueErrorCode.StateReused) violation('state-reuse', `${suite.id}: a login state was usable twice`);
    parts.push(`${suite.id}:ok`);
  }
  last = parts.join('|');
}
