import { EnclaveCallError } from '../../host/vault/engine.ts';

/**
 * What a call throws, for tests that check a refusal's class, code and message together. Both
 * fail the test when nothing is thrown: a refusal that does not happen is never read as one.
 */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a refusal, and the call returned');
}

/** The rejection of `p` (see `thrownBy`). */
export async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a refusal, and the promise resolved');
}

/** The code of an enclave's refusal of a host request (an EnclaveCallError); anything else, or no refusal, fails. */
export async function refusalCode(p: Promise<unknown>): Promise<number> {
  const e = await rejectionOf(p);
  if (e instanceof EnclaveCallError) return e.code;
  throw e;
}
