/**
 * Every (suite, backend) combination the tests run against. Each backend must pass the same
 * vectors and properties; add a backend here and every parameterised test picks it up.
 */
import type { Suite, SuiteId } from '../../enclave/opaque/suite.ts';
import { SUITE_IDS } from '../../enclave/opaque/suite.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { portableSuite } from '../../enclave/opaque/suites-portable.ts';

export interface NamedSuite {
  name: string;
  suite: Suite;
}

export async function allSuites(): Promise<NamedSuite[]> {
  const out: NamedSuite[] = [];
  for (const id of SUITE_IDS) out.push({ name: `${id}/noble`, suite: portableSuite(id) });
  for (const id of SUITE_IDS) out.push({ name: `${id}/fast`, suite: await fastSuite(id) });
  return out;
}

export async function suitesFor(id: SuiteId): Promise<NamedSuite[]> {
  return (await allSuites()).filter((s) => s.suite.id === id);
}
