/**
 * `bkv demo --fleet` (host/cli/demo-fleet.ts) on the real command: three member processes, a key
 * escrowed, a wrong password, the leader SIGKILLed, the key recovered through the others, the
 * killed member restarted and caught up; it exits 0 and says so in its --json object, and leaves
 * no member process behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runBkvAsync } from '../../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'bkv-demo-fleet-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bkv demo --fleet', () => {
  it('tells the story through the loss of the leader and exits 0', async () => {
    const r = await runBkvAsync(dir, ['demo', '--fleet', '--json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, any>;
    expect(j).toMatchObject({ ok: true, command: 'demo', recovered: true });
    expect(j.leaderAfter).not.toBe(j.killed);
    expect(j.appliedBatch).toBeGreaterThan(0);
    expect(r.err).toMatch(/the charged guess survived the leader/);
    expect(r.err).toMatch(/the escrowed key: yes/);
  }, 240_000);
});
