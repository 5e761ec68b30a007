/** Types of bin/bundle.mjs (plain JavaScript: bin/bkv.mjs runs it before any loader exists). */
export interface ProjectBundle {
  /** The build folder. */
  dir: string;
  /** host/cli/bkv.ts bundled. */
  cli: string;
  /** hsm/worker-main.ts bundled: the worker-thread device entry. */
  worker: string;
  /** hsm/process-main.ts bundled: the child-process device entry. */
  process: string;
  /** enclave/main.ts bundled: the default firmware. */
  firmware: string;
}
export function projectRoot(): string;
export function bundleEnabled(): boolean;
export function projectBundle(rebuild?: boolean): ProjectBundle | undefined;
export function buildBundle(): ProjectBundle;
export const BKV_NODE_FLAGS: readonly string[];
/** One file or folder a build read: [path from the project root, size (0 for a folder), mtime in ms]. */
export type Stamp = [string, number, number];
export function stampsOf(top: string, files: readonly string[], alone?: readonly string[]): Stamp[];
export function stampsMatch(top: string, stamps: readonly Stamp[]): boolean;
export function freshBundle(): ProjectBundle | undefined;
