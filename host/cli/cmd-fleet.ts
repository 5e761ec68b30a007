/**
 * `bkv fleet init`: a new fleet folder (host/fleet/config.ts, docs/fleet.md).
 *   bkv fleet init --members 3|5|7 --dir DIR [--host 127.0.0.1] [--base-port 7400] [--auth-issuer FILE.pub ...]
 * writes DIR/fleet.json (the members, their client and peer addresses, their data folders
 * DIR/member-<i>/) and, without --auth-issuer, a development issuer in DIR/auth/ for
 * `bkv auth token --issuer-key DIR/auth/issuer.key`.
 */
import { DEFAULT_BASE_PORT, DEFAULT_FLEET_HOST, FLEET_SIZES, FleetConfigError, checkHost, formatEndpoint, initFleet, memberDir } from '../fleet/config.ts';
import { intOption, parseArgs, required, UsageError } from './args.ts';
import { unknownWord } from './help.ts';
import type { Output } from './output.ts';

export async function fleetCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['members', 'dir', 'host', 'base-port', 'auth-issuer'] });
  const verb = p.positional[0];
  if (verb !== 'init') throw unknownWord(verb, 'fleet');
  if (p.positional.length !== 1) throw new UsageError(`unexpected ${p.positional.slice(1).join(' ')}`);
  const members = Number(required(p, 'members'));
  if (!FLEET_SIZES.includes(members)) throw new UsageError(`--members must be one of ${FLEET_SIZES.join(', ')}`);
  const dir = required(p, 'dir');
  const host = p.opts.get('host') ?? DEFAULT_FLEET_HOST;
  try {
    checkHost(host, '--host');
  } catch (e) {
    throw e instanceof FleetConfigError ? new UsageError(e.message) : e;
  }
  const basePort = intOption(p, 'base-port', 1, 65535 - 2 * members + 1) ?? DEFAULT_BASE_PORT;
  const { fleet, devIssuerKey } = await initFleet({ dir, members, host, basePort, authIssuers: p.all.get('auth-issuer') ?? [] });
  const list = fleet.members.map((m) => ({ id: m.id, api: formatEndpoint(m.api), peer: formatEndpoint(m.peer), data: memberDir(fleet, m.id) }));
  out.set({ file: fleet.file, fleetId: fleet.fleetId, members: list, ...(devIssuerKey && { devIssuerKey }) });
  if (!out.json) {
    console.log(`fleet ${fleet.fleetId}: ${fleet.file}`);
    for (const m of list) console.log(`  member ${m.id}: clients ${m.api}, members ${m.peer}, data ${m.data}`);
  }
  if (devIssuerKey) console.error(`bkv: development issuer (tokens: bkv auth token --issuer-key ${devIssuerKey} --id ID)`);
  return 0;
}
