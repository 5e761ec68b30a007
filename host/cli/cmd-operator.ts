/**
 * `bkv operator`: what only the holder of the operator secret may do.
 *   bkv operator keygen --out FILE
 *       a new operator secret: 64 hex digits (32 bytes), mode 0600. `bkv serve --operator-key-file
 *       FILE` provisions its SHA-256 into a new vault's NVRAM (it can not be added later).
 *   bkv operator set-issuers --data DIR --operator-key-file FILE --auth-issuer FILE.pub ... [--auth-audience A]
 *       replaces the vault's issuer set (the enclave's SetAuth, checked against the provisioned
 *       hash), then stores it in DIR/auth/config.json; run it while the vault is stopped. The
 *       devices then boot only under the new set.
 *   bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N]
 *       checks the audit chain of every partition through its device; with the secret the device
 *       opens the events (cmd-audit.ts). Run it while the vault is stopped.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MAX_ISSUERS } from '../../enclave/api/auth.ts';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import { AuthSetupError, readIssuerPublic, readStoredAuth, writeStoredAuth } from '../auth/issuer.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { tokenPinSource } from './cmd-serve.ts';
import { readOperatorSecret } from './io.ts';
import { auditVerifyCommand, operatorCall } from './cmd-audit.ts';
import { CliError, EXIT } from './exit-codes.ts';
import { unknownWord, usageOf } from './help.ts';
import type { Output } from './output.ts';

export const OPERATOR_USAGE = usageOf('operator');

export async function operatorCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['out', 'data', 'operator-key-file', 'auth-issuer', 'auth-audience', 'token-pin-file', 'operator-dir', 'last'] });
  const verb = p.positional[0];
  if (p.positional.length !== 1) throw p.positional.length === 0 ? unknownWord(verb, 'operator') : new UsageError(`usage: ${OPERATOR_USAGE}`);
  switch (verb) {
    case 'keygen': {
      const file = required(p, 'out');
      writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      out.set({ path: resolve(file) });
      console.error(`bkv: operator secret in ${file}: keep it apart from the data folder; bkv serve --operator-key-file ${file} provisions a new vault with it`);
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
      await operatorCall(host, (h) => h.setAuth(next, secret));
      writeStoredAuth(dataDir, { config: next, development: false });
      out.set({ issuers: next.issuers.map((i) => i.name), audience: next.audience });
      console.error(`bkv: the vault now accepts tokens of ${next.issuers.map((i) => i.name).join(', ')} for audience ${next.audience}; start it with the same --auth-issuer files`);
      return 0;
    }
    case 'audit-verify':
      return auditVerifyCommand(p, out);
    default:
      throw unknownWord(verb, 'operator');
  }
}
