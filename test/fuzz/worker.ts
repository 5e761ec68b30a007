/**
 * Fuzzing: one target in a worker thread, driven by test/fuzz/run.ts. Runs the loop of
 * lib/engine.ts for its time share and reports findings and totals to the driver. Before each
 * input it publishes the input and its index in shared memory, so the driver can name the input
 * when the worker hangs synchronously (the driver then terminates it) or runs out of heap.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadCorpus, loadTarget, runTarget, skipReason, targetNameOf } from './lib/engine.ts';
import { SHARED_HEADER } from './lib/engine.ts';
import type { WorkerData, WorkerMessage } from './lib/engine.ts';

const d = workerData as WorkerData;
const port = parentPort!;
const head = new Int32Array(d.shared, 0, 3);
const body = new Uint8Array(d.shared, SHARED_HEADER);

async function main(): Promise<void> {
  const t0 = performance.now();
  const t = await loadTarget(d.file);
  const reason = await skipReason(t);
  if (reason) {
    port.postMessage({ type: 'skip', reason } satisfies WorkerMessage);
    return;
  }
  await (t.setup as ((o: { seed: number }) => Promise<void>) | undefined)?.({ seed: d.seed });
  const corpus = loadCorpus(targetNameOf(d.file));
  port.postMessage({ type: 'ready', setupMs: performance.now() - t0, corpus: corpus.length } satisfies WorkerMessage);
  let heapMb = 0;
  const stats = await runTarget(t, {
    seed: d.seed,
    timeMs: d.timeMs,
    runs: d.runs,
    startIndex: d.startIndex,
    timeoutMs: d.timeoutMs,
    corpus,
    onInput(index, data) {
      const n = Math.min(data.length, body.length);
      body.set(data.subarray(0, n));
      Atomics.store(head, 2, n);
      Atomics.store(head, 0, index);
    },
    onDone(next) {
      Atomics.store(head, 1, next);
      if ((next & 255) === 0) heapMb = Math.max(heapMb, process.memoryUsage().heapUsed / 2 ** 20);
    },
    onFinding(f) {
      port.postMessage({ type: 'finding', finding: f } satisfies WorkerMessage);
    },
  });
  await t.teardown?.();
  heapMb = Math.max(heapMb, process.memoryUsage().heapUsed / 2 ** 20);
  port.postMessage({ type: 'done', stats: { ...stats, findings: [] }, heapMb } satisfies WorkerMessage);
}

await main();
