/**
 * `bkv key new` and `bkv backup encrypt|decrypt`: a new backup key, and backup files encrypted
 * with it (client/backup-file.ts: AES-256-GCM in authenticated chunks, bounded memory).
 */
import { resolve } from 'node:path';
import { generateBackupKey, formatBackupKey } from '../../client/backup-key.ts';
import { decryptFile, encryptFile, nodeAead } from '../../client/backup-file-node.ts';
import { parseArgs, required, UsageError } from './args.ts';
import { progressBar, readKeyFile, writeKeyFile } from './io.ts';
import { unknownWord } from './help.ts';
import type { Output } from './output.ts';

export async function keyCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['out'], flags: ['checked'] });
  if (p.positional[0] !== 'new') throw unknownWord(p.positional[0], 'key');
  if (p.positional.length !== 1) throw new UsageError(`unexpected ${p.positional.slice(1).join(' ')}`);
  const key = generateBackupKey();
  const file = p.opts.get('out');
  if (file) {
    writeKeyFile(file, key);
    out.set({ path: resolve(file) });
    console.log(`wrote a new backup key to ${file} (mode 0600). Keep it safe: it opens your backups.`);
  } else {
    const text = formatBackupKey(key, { checked: p.flags.has('checked') });
    if (out.json) out.set({ key: text });
    else console.log(text);
  }
  key.fill(0);
  return 0;
}

export async function backupCommand(argv: string[], out: Output): Promise<number> {
  const p = parseArgs(argv, { options: ['key-file'], flags: ['overwrite'] });
  const [verb, input, output] = p.positional;
  if (verb !== 'encrypt' && verb !== 'decrypt') throw unknownWord(verb, 'backup');
  if (!input || !output || p.positional.length !== 3) throw new UsageError(`bkv backup ${verb} takes IN and OUT`);
  const key = readKeyFile(required(p, 'key-file'));
  const bar = progressBar(verb === 'encrypt' ? 'encrypting' : 'decrypting', out.progress);
  const opts = {
    aead: nodeAead,
    overwrite: p.flags.has('overwrite'),
    onProgress: (x: { bytesDone: number; totalBytes: number | undefined }) => bar.update(x.bytesDone, x.totalBytes),
  };
  const t0 = performance.now();
  try {
    const r = verb === 'encrypt' ? await encryptFile(key, input, output, opts) : await decryptFile(key, input, output, opts);
    bar.end();
    const ms = performance.now() - t0;
    out.set({ input: resolve(input), output: resolve(output), bytesIn: r.bytesIn, bytesOut: r.bytesOut, ms: Math.round(ms), bytesPerSecond: Math.round(r.bytesIn / Math.max(ms / 1000, 1e-3)) });
    console.log(`${verb}ed ${input} (${r.bytesIn} bytes) to ${output} (${r.bytesOut} bytes) in ${(ms / 1000).toFixed(2)} s`);
    return 0;
  } finally {
    key.fill(0);
  }
}
