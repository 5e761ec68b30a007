/**
 * Guess pacing: besides its attempt limit, a record allows its next charged guess only a while
 * after its last one, a while that grows with the guesses charged since its last success. The
 * enclave enforces it with its platform clock and the time of the last charged guess kept in the
 * sealed record (enclave/vault/record.ts); a LoginStart that comes too soon is answered
 * `RetryLater` and charges nothing. The schedules are the firmware's; a registration picks one
 * (`RegisterStart.pacing`), no laxer than the vault's provisioned floor (`AuthConfig.minPacing`).
 *
 *   none      (0): no pacing, the attempt limit only
 *   standard  (1): the first 3 guesses after a success are free; then 1 min, 5 min, 15 min, and
 *                  1 h before each further one
 * A larger code is at least as strict as a smaller one.
 */
export const PACING = { none: 0, standard: 1 } as const;
export type PacingName = keyof typeof PACING;

const SCHEDULES: readonly { free: number; stepsS: readonly number[] }[] = [
  { free: Infinity, stepsS: [] },
  { free: 3, stepsS: [60, 300, 900, 3600] },
];

export function isPacing(code: number): boolean {
  return Number.isInteger(code) && code >= 0 && code < SCHEDULES.length;
}

/**
 * How long (ms) after the last charged guess the next may be charged, for a record whose
 * schedule is `code` with `attemptsUsed` guesses charged since its last success.
 */
export function pacingDelayMs(code: number, attemptsUsed: number): number {
  const s = SCHEDULES[code];
  if (!s || attemptsUsed < s.free) return 0;
  const steps = s.stepsS;
  return steps[Math.min(attemptsUsed - s.free, steps.length - 1)]! * 1000;
}
