import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Three token backends (docs/testing.md): the emulator in-process, the emulator through
 * p11-kit-client.so (`p11kit`) and SoftHSM2. Project `all` runs every test file but ALONE_FILES
 * (below; project `alone` runs those); the suites that
 * iterate over tokens (test/helpers/tokens.ts describeTokens: vault, integrity, model, sealing per
 * profile, token conformance, requirements, differential, VaultHost) run there on every backend.
 * The firmware test files below run on one token, the first under test (test/helpers/platform.ts
 * defaultTokenKind, the emulator by default): projects `softhsm` and `p11kit` run them again with
 * BKV_TOKEN naming that backend, so every test file that touches the token runs on all three
 * without the whole suite three times. Those two projects run where their module is installed, and
 * always in CI (CI=true, where a missing module fails); not when BKV_TOKEN already names one kind.
 */
const TOKEN_FILES = [
  'test/enclave/vault/audit.test.ts',
  'test/enclave/vault/auth.test.ts',
  'test/enclave/vault/capacity.test.ts',
  'test/enclave/vault/record-codec.test.ts',
  'test/enclave/api/api.test.ts',
  'test/enclave/api/pacing.test.ts',
  'test/client/escrow.test.ts',
  'test/host/vault/engine-pipeline.test.ts',
  'test/enclave/vault/apply.test.ts',
];

const ci = process.env.CI === 'true' || process.env.CI === '1';
const MODULES = { softhsm: '/usr/lib/softhsm/libsofthsm2.so', p11kit: '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so' } as const;
const extra = process.env.BKV_TOKEN ? [] : (['softhsm', 'p11kit'] as const).filter((k) => ci || existsSync(MODULES[k]));

/**
 * Two test files at a time at least: most of a file's time is spent waiting on the processes,
 * servers and disk it drives, and vitest's default (cores - 1) runs one file at a time on a
 * 2-core machine. The six slowest files (adversarial, cli, cli-contract, sim, fleet processes,
 * rows-catchup) took 448 s one at a time in a CI rehearsal (`.ci/run` on a clean clone) and 270 s
 * two at a time (`npx vitest run --project all --maxWorkers=2` of those six files).
 */
const WORKERS = Math.max(2, availableParallelism() - 1);

/**
 * Files that run alone, one at a time after all the others (project `alone`): fleets of member
 * processes, whose views change when a member misses a second of heartbeats (etcd's election
 * timeout), so that a machine busy with another file's processes turns their waits into
 * timeouts (a CI rehearsal with every file two at a time: rows-catchup's members went from view
 * 44 to 57 while it waited, and the copy it waited for never came).
 */
const ALONE_FILES = [
  'test/adversarial.test.ts',
  'test/host/cli/fleet.test.ts',
  'test/host/fleet/charter.test.ts',
  'test/host/fleet/demo-fleet.test.ts',
  'test/host/fleet/prevote-procs.test.ts',
  'test/host/fleet/reform-procs.test.ts',
  'test/host/fleet/replace-gone.test.ts',
  'test/host/fleet/processes.test.ts',
  'test/host/fleet/rows-catchup.test.ts',
  'test/host/fleet/vault-key.test.ts',
  'test/host/fleet/vault-pg.test.ts',
  'test/host/fleet/vault-serve.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true as const, test: { name: 'all', include: ['test/**/*.test.ts'], exclude: ALONE_FILES, maxWorkers: WORKERS } },
      ...extra.map((k) => ({ extends: true as const, test: { name: k, include: TOKEN_FILES, env: { BKV_TOKEN: k }, maxWorkers: WORKERS } })),
      { extends: true as const, test: { name: 'alone', include: ALONE_FILES, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
