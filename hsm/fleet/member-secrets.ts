/**
 * A member's kept secrets (`secrets.bin`: enclave/fleet/durable.ts MemberSecrets: its charter,
 * identity seed and the fleet secret), read strictly. Device-side only: this file is not among
 * the hsm/ files host/ may import (test/boundary.test.ts), so the secrets reach no host code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSecrets } from '../../enclave/fleet/durable.ts';
import type { MemberSecrets } from '../../enclave/fleet/keys.ts';

export const SECRETS_FILE = 'secrets.bin';

/** The member's secrets; null before the key ceremony's end. */
export function readMemberSecrets(dir: string, member: number): MemberSecrets | null {
  const file = join(dir, SECRETS_FILE);
  return existsSync(file) ? decodeSecrets(new Uint8Array(readFileSync(file)), member) : null;
}
