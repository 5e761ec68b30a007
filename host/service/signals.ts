/**
 * Runs the vault service until SIGTERM or SIGINT. The first signal shuts down gracefully (stop
 * accepting, finish the requests already acknowledged, close the vault) and exits 0, or 1 if the
 * shutdown itself failed; a second signal exits at once (128 + signal number, as shells report).
 */
import type { Logger } from './logging.ts';
import { defaultLogger } from './logging.ts';
import { startService } from './server.ts';
import type { RunningService, ServiceOptions } from './server.ts';

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

export async function runUntilSignal(opts: ServiceOptions): Promise<RunningService> {
  const log: Logger = opts.logger ?? defaultLogger();
  const service = await startService({ ...opts, logger: log });
  let stopping = false;
  const onSignal = (signal: keyof typeof SIGNAL_EXIT) => {
    if (stopping) {
      log.warn({ msg: 'second signal: exiting now', signal });
      process.exit(SIGNAL_EXIT[signal]);
    }
    stopping = true;
    log.info({ msg: 'signal: graceful shutdown', signal });
    service.close().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ msg: 'shutdown failed', errName: e instanceof Error ? e.name : typeof e });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  return service;
}
