/**
 * What a `bkv` command reports. For a person: its answer on stdout, messages on stderr. With
 * `--json`: exactly one JSON object on stdout and every message on stderr (`claimStdout`), with
 * the same exit code. Commands add their fields (`set`); bkv.ts prints the object once:
 *
 *   {"ok": true|false, "exitCode": N, "command": "escrow recover", ...fields, "elapsedMs": N}
 *   {"ok": false, "exitCode": N, "command": ..., ...fields, "error": {"code", "name", "message", ...}}
 *
 * `bkv serve` prints its object when it listens (no exit code yet); its log lines follow.
 */
import type { ErrorReport } from './exit-codes.ts';

export class Output {
  private readonly fields: Record<string, unknown> = {};
  private emitted = false;
  private readonly t0 = performance.now();

  constructor(
    readonly json: boolean,
    readonly command: string,
  ) {}

  /** Progress lines on stderr: only on a terminal, and never with --json. */
  get progress(): boolean {
    return !this.json && process.stderr.isTTY === true;
  }

  set(fields: Record<string, unknown>): void {
    Object.assign(this.fields, fields);
  }

  /** Prints the JSON object (once; only with --json). */
  emit(end: { exitCode?: number; error?: Omit<ErrorReport, 'exitCode'> }): void {
    if (!this.json || this.emitted) return;
    this.emitted = true;
    const { exitCode, error } = end;
    const obj = {
      ok: error === undefined && (exitCode === undefined || exitCode === 0),
      ...(exitCode !== undefined && { exitCode }),
      command: this.command,
      ...this.fields,
      ...(error !== undefined && { error }),
      elapsedMs: Math.round(performance.now() - this.t0),
    };
    process.stdout.write(JSON.stringify(obj) + '\n');
  }
}

/** With --json, stdout belongs to the one JSON object: whatever a command logs goes to stderr. */
export function claimStdout(): void {
  console.log = console.error;
  console.info = console.error;
}
