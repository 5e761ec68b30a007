/**
 * A vault service in its own process, for the adversarial scripts (killed with SIGKILL by
 * crash-storm.ts, measured by soak.ts and timing.ts). Configuration from the environment:
 *   BKV_DATA_DIR (required), BKV_MODE worker|process, BKV_PARTITIONS, BKV_REPLAY_WINDOW_MS,
 *   BKV_AUTH_CONFIG (required: the issuer set, enclave/api/auth.ts encodeAuthConfig, base64url).
 * Host rate limits and the host's early issuer-token check are off (the drivers are the only
 * clients, and the enclave's own checks are what they test). Logs at warn level; one JSON line
 * `{"msg":"listening","url":...}` on stdout when it serves. SIGTERM / SIGINT shut it down
 * gracefully (host/service/signals.ts).
 */
import { pino } from 'pino';
import { decodeAuthConfig, fromBase64url } from '../../../enclave/api/auth.ts';
import { runUntilSignal } from '../../../host/service/signals.ts';

const dataDir = process.env.BKV_DATA_DIR;
if (!dataDir) {
  console.error('BKV_DATA_DIR is required');
  process.exit(2);
}
if (!process.env.BKV_AUTH_CONFIG) {
  console.error('BKV_AUTH_CONFIG is required');
  process.exit(2);
}
const auth = decodeAuthConfig(fromBase64url(process.env.BKV_AUTH_CONFIG));
const mode = process.env.BKV_MODE === 'process' ? 'process' : 'worker';
const partitions = Number(process.env.BKV_PARTITIONS ?? 2);
const replayWindowMs = process.env.BKV_REPLAY_WINDOW_MS === undefined ? undefined : Number(process.env.BKV_REPLAY_WINDOW_MS);

const service = await runUntilSignal({
  dataDir,
  port: 0,
  mode,
  partitions,
  rateLimits: { record: false, address: false },
  auth,
  // A host that skips its own checks: only the enclave checks the issuer tokens.
  earlyAuth: false,
  logger: pino({ level: process.env.BKV_LOG_LEVEL ?? 'warn' }),
  ...(replayWindowMs !== undefined && { replayWindowMs }),
});
process.stdout.write(`${JSON.stringify({ msg: 'listening', url: service.url, pid: process.pid })}\n`);
