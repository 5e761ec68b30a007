/**
 * `bkv operator audit-verify --data DIR [--operator-key-file FILE] [--last N]`: checks
 * every partition's audit chain through its device, from the committed head (in NVRAM) back to
 * the first event (host/vault/audit-read.ts). With the operator secret the devices also open the
 * events, which the host stores sealed, and the newest N (default 20; 0 for all) are printed.
 * Run it while the vault is stopped. Exit 0 when every chain verifies, 1 when one does not.
 */
import { toHex } from '../../enclave/opaque/bytes.ts';
import { AUDIT_KIND_NAME } from '../vault/audit-read.ts';
import { VaultHost } from '../vault/vault-host.ts';
import { readStoredAuth } from '../auth/issuer.ts';
import { EnclaveCallError } from '../vault/engine.ts';
import { Lifecycle } from '../../enclave/api/codes.ts';
import { intOption, required } from './args.ts';
import type { Parsed } from './args.ts';
import { tokenPinSource } from './cmd-serve.ts';
import { readOperatorSecret } from './io.ts';
import { CliError, EXIT } from './exit-codes.ts';
import type { Output } from './output.ts';


/**
 * Runs an operator command's `fn` on an opened vault and closes it. An operator secret the
 * enclave refuses (none was provisioned, or another one) is a CliError (exit 1) that says so.
 */
export async function operatorCall<T>(host: VaultHost, fn: (h: VaultHost) => Promise<T>): Promise<T> {
  try {
    return await fn(host);
  } catch (e) {
    if (e instanceof EnclaveCallError && e.code === Lifecycle.OperatorAuthFailed) {
      throw new CliError(EXIT.failure, 'the vault refused the operator secret (none was provisioned, or another one)');
    }
    throw e;
  } finally {
    await host.close();
  }
}

export async function auditVerifyCommand(p: Parsed, out: Output): Promise<number> {
  const dataDir = required(p, 'data');
  const keyFile = p.opts.get('operator-key-file');
  const secret = keyFile === undefined ? undefined : readOperatorSecret(keyFile);
  const last = intOption(p, 'last', 0, Number.MAX_SAFE_INTEGER) ?? 20;
  const pins = tokenPinSource(p, dataDir);
  const stored = readStoredAuth(dataDir);
  const host = await VaultHost.open({ dataDir, tokenPins: pins.source, ...(stored && { auth: stored.config }) });
  const reports = await operatorCall(host, (h) =>
    h.auditVerify({
      ...(secret && { operatorSecret: secret }),
      keep: last === 0 ? Infinity : last,
      onProgress: out.progress ? (v, head) => process.stderr.write(`\rbkv: audit: ${v}/${head} events checked`) : undefined,
    }),
  );
  if (out.progress) process.stderr.write('\n');
  const kind = (k: number) => AUDIT_KIND_NAME.get(k) ?? `kind-${k}`;
  const ok = reports.every((r) => r.broken === null);
  out.set({
    opened: secret !== undefined,
    verifies: ok,
    partitions: reports.map((r) => ({
      partition: r.partition,
      headSeq: r.headSeq,
      verified: r.verified,
      broken: r.broken,
      entries: r.entries.map((e) => ({ seq: e.seq, time: new Date(e.time).toISOString(), kind: kind(e.kind), recordHash: toHex(e.recordHash), attemptsRemaining: e.attemptsRemaining })),
    })),
  });
  for (const r of reports) {
    if (r.broken) {
      console.error(`bkv: partition ${r.partition}: the audit chain is broken at event ${r.broken.seq} (${r.broken.reason}); ${r.verified} newer events verified, head ${r.headSeq}`);
    } else {
      console.error(`bkv: partition ${r.partition}: ${r.verified} events verified up to the committed head ${r.headSeq}`);
    }
    for (const e of r.entries) {
      console.log(`${r.partition}\t${e.seq}\t${new Date(e.time).toISOString()}\t${kind(e.kind)}\t${toHex(e.recordHash).slice(0, 16)}\t${e.attemptsRemaining}`);
    }
  }
  if (!secret) console.error('bkv: events verified only; --operator-key-file opens them');
  return ok ? EXIT.ok : EXIT.failure;
}
