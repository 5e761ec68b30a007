/**
 * The headless Chromium that the browser tests launch through playwright-core
 * (test/client/browser.test.ts, and test/package.test.ts for the installed tarball's client).
 * Debian's chromium at /usr/bin/chromium (scripts/ci-chromium.sh installs it in CI);
 * BKV_CHROMIUM names another binary. Without it a browser test is skipped with a printed
 * reason, except with CI=true, where it fails.
 */
import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.BKV_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
export const haveChromium = existsSync(CHROMIUM);
const ci = process.env.CI === 'true';

/**
 * Whether a browser test runs: with Chromium, or under CI=true (where its missing Chromium must
 * fail the test: call `requireChromium` first). Prints why it is skipped otherwise.
 */
export function browserRuns(who: string): boolean {
  if (!haveChromium && !ci) console.warn(`${who}: skipping the browser run: ${CHROMIUM} is missing (install it with scripts/ci-chromium.sh)`);
  return haveChromium || ci;
}

/** Throws under CI=true when Chromium is missing (the CI job must install it first). */
export function requireChromium(): void {
  if (!haveChromium) throw new Error(`CI=true and ${CHROMIUM} is missing: .ci/run must run scripts/ci-chromium.sh before the tests`);
}
