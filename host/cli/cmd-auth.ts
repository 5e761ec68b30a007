/**
 * `bkv auth keygen|token`: the issuer's tools (enclave/api/auth.ts has the token rules).
 *   bkv auth keygen --out DIR [--name NAME]    writes DIR/issuer.key (0600) and DIR/issuer.pub
 *   bkv auth token --issuer-key FILE --id ID [--ttl 10m] [--audience A] [--out FILE]
 * A vault accepts the tokens of the issuers it was provisioned with (`bkv serve --auth-issuer
 * DIR/issuer.pub`); `bkv escrow ... --auth-token FILE` sends one with every operation.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MAX_RECORD_ID } from '../../enclave/api/messages.ts';
import { AuthSetupError, generateIssuer, mintToken, parseTtl, readIssuerPrivate } from '../auth/issuer.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { unknownWord } from './help.ts';
import type { Output } from './output.ts';

export async function authCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['out', 'name', 'issuer-key', 'id', 'ttl', 'audience'] });
  const verb = p.positional[0];
  if (verb !== 'keygen' && verb !== 'token') throw unknownWord(verb, 'auth');
  if (p.positional.length !== 1) throw new UsageError(`unexpected ${p.positional.slice(1).join(' ')}`);
  switch (verb) {
    case 'keygen': {
      for (const o of ['issuer-key', 'id', 'ttl', 'audience']) if (p.opts.has(o)) throw new UsageError(`--${o} is not an option of keygen`);
      const dir = required(p, 'out');
      const i = await generateIssuer(dir, p.opts.get('name') ?? 'bkv-issuer');
      out.set({ name: i.name, kid: i.kid, privateKey: resolve(join(dir, 'issuer.key')), publicKey: resolve(join(dir, 'issuer.pub')) });
      console.error(`bkv: issuer ${i.name} (kid ${i.kid}): private key ${dir}/issuer.key, public key ${dir}/issuer.pub`);
      return 0;
    }
    case 'token': {
      if (p.opts.has('name')) throw new UsageError('--name is not an option of token');
      const issuer = readIssuerPrivate(required(p, 'issuer-key'));
      const id = required(p, 'id');
      if (new TextEncoder().encode(id).length > MAX_RECORD_ID || id.length === 0) throw new UsageError(`--id: 1..${MAX_RECORD_ID} bytes`);
      let ttl = 600;
      try {
        if (p.opts.has('ttl')) ttl = parseTtl(p.opts.get('ttl')!);
      } catch (e) {
        throw e instanceof AuthSetupError ? new UsageError(e.message) : e;
      }
      const nowS = Math.floor(Date.now() / 1000);
      const token = await mintToken(issuer, { subject: id, ttlS: ttl, nowS, ...(p.opts.has('audience') && { audience: p.opts.get('audience')! }) });
      out.set({ id, issuer: issuer.name, ttlSeconds: ttl, expiresAt: new Date((nowS + ttl) * 1000).toISOString() });
      const file = p.opts.get('out');
      if (file) {
        writeFileSync(file, token + '\n', { mode: 0o600 });
        out.set({ path: resolve(file) });
      } else if (out.json) out.set({ token });
      else console.log(token);
      return 0;
    }
  }
}
