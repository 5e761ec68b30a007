/**
 * `bkv key new` and `bkv backup encrypt|decrypt`: a new backup key, and backup files encrypted
 * with it (client/backup-file.ts: AES-256-GCM in authenticated chunks, bounded memory).
 */
import { generateBackupKey, formatBackupKey } from '../../client/backup-key.ts';
import { decryptFile, encryptFile, nodeAead } from '../../client/backup-file-node.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { progressBar, readKeyFile, writeKeyFile } from './io.ts';

export async function keyCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { options: ['out'], flags: ['checked'] });
  if (p.positional[0] !== 'new' || p.positional.length !== 1) throw new UsageError('usage: bkv key new [--out FILE] [--checked]');
  const key = generateBackupKey();
  const out = p.opts.get('out');
  if (out) {
    writeKeyFile(out, key);
    console.log(`wrote a new backup key to ${out} (mode 0600). Keep it safe: it opens your backups.`);
  } else {
    console.log(formatBackupKey(key, { checked: p.flags.has('checked') }));
  }
  key.fill(0);
  return 0;
}

export async function backupCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, { options: ['key-file'], flags: ['overwrite'] });
  const [verb, input, output] = p.positional;
  if ((verb !== 'encrypt' && verb !== 'decrypt') || !input || !output || p.positional.length !== 3) {
    throw new UsageError('usage: bkv backup encrypt|decrypt IN OUT --key-file F [--overwrite]');
  }
  const key = readKeyFile(required(p, 'key-file'));
  const bar = progressBar(verb === 'encrypt' ? 'encrypting' : 'decrypting');
  const opts = {
    aead: nodeAead,
    overwrite: p.flags.has('overwrite'),
    onProgress: (x: { bytesDone: number; totalBytes: number | undefined }) => bar.update(x.bytesDone, x.totalBytes),
  };
  const t0 = performance.now();
  try {
    const r = verb === 'encrypt' ? await encryptFile(key, input, output, opts) : await decryptFile(key, input, output, opts);
    bar.end();
    const s = (performance.now() - t0) / 1000;
    console.log(`${verb}ed ${input} (${r.bytesIn} bytes) to ${output} (${r.bytesOut} bytes) in ${s.toFixed(2)} s`);
    return 0;
  } finally {
    key.fill(0);
  }
}
