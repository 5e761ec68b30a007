/**
 * `bkv operator`: what only the holder of the operator secret may do.
 *   bkv operator keygen --out FILE
 *       a new operator secret: 64 hex digits (32 bytes), mode 0600. `bkv serve --operator-key-file
 *       FILE` provisions its SHA-256 into a new vault's NVRAM (it can not be added later).
 *   bkv operator set-issuers --data DIR --operator-key-file FILE --auth-issuer FILE.pub ... [--auth-audience A]
 *       replaces the vault's issuer set (the enclave's SetAuth, checked against the provisioned
 *       hash), then stores it in DIR/auth/config.json; run it while the vault is stopped. The
 *       devices then boot only under the new set.
 *   bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N] [--json]
 *       checks the audit chain of every partition through its device; with the secret the device
 *       opens the events (cmd-audit.ts). Run it while the vault is stopped.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { MAX_ISSUERS } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { AuthSetupError, readIssuerPublic, readStoredAuth, writeStoredAuth } from '../auth/issuer.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { tokenPinSource } from './cmd-serve.ts';
import { readOperatorSecret } from './io.ts';
import { auditVerifyCommand, operatorCall } from './cmd-audit.ts';

export const OPERATOR_USAGE = `bkv operator keygen --out FILE
  bkv operator set-issuers --data DIR --operator-key-file FILE --auth-issuer FILE.pub ... [--auth-audience A]
        [--token-pin-file F | --operator-dir DIR]   (the token's PINs, as for bkv serve)
  bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N] [--json]
        checks every partition's audit chain; with the secret, prints the newest N events (default 20, 0: all)`;

export async function operatorCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { options: ['out', 'data', 'operator-key-file', 'auth-issuer', 'auth-audience', 'token-pin-file', 'operator-dir', 'last'], flags: ['json'] });
  const verb = p.positional[0];
  if (p.positional.length !== 1) throw new UsageError(`usage: ${OPERATOR_USAGE}`);
  switch (verb) {
    case 'keygen': {
      const out = required(p, 'out');
      writeFileSync(out, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      console.error(`bkv: operator secret in ${out}: keep it apart from the data folder; bkv serve --operator-key-file ${out} provisions a new vault with it`);
      return 0;
    }
    case 'set-issuers': {
      const dataDir = required(p, 'data');
      const secret = readOperatorSecret(required(p, 'operator-key-file'));
      const files = p.all.get('auth-issuer') ?? [];
      if (files.length === 0 || files.length > MAX_ISSUERS) throw new UsageError(`--auth-issuer: 1..${MAX_ISSUERS} issuer public keys`);
      const stored = readStoredAuth(dataDir);
      if (!stored) throw new AuthSetupError(`${dataDir} holds no provisioned issuer set (auth/config.json): start it once with bkv serve`);
      const next: AuthConfig = {
        audience: p.opts.get('auth-audience') ?? stored.config.audience,
        issuers: files.map((f) => {
          const i = readIssuerPublic(f);
          return { name: i.name, publicKey: i.publicKey };
        }),
        minPacing: stored.config.minPacing,
      };
      const pins = tokenPinSource(p, dataDir);
      const host = await VaultHost.open({ dataDir, auth: stored.config, tokenPins: pins.source });
      if ((await operatorCall(host, (h) => h.setAuth(next, secret).then(() => true))) === null) return 1;
      writeStoredAuth(dataDir, { config: next, development: false });
      console.error(`bkv: the vault now accepts tokens of ${next.issuers.map((i) => i.name).join(', ')} for audience ${next.audience}; start it with the same --auth-issuer files`);
      return 0;
    }
    case 'audit-verify':
      return auditVerifyCommand(p);
    default:
      throw new UsageError(`usage: ${OPERATOR_USAGE}`);
  }
}
