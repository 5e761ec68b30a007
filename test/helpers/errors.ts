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
