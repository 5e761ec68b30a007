// Bootstrap of a bench worker thread: registers tsx's loader (the bench is TypeScript), then
// loads the module named in workerData.module. Plain JavaScript so Node starts it with no loader.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.module);
