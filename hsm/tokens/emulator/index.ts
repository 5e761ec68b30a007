/**
 * The emulator token: a pure TypeScript PKCS#11 v2.40 module (enclave/api/pkcs11.ts `Pkcs11`)
 * that behaves like SoftHSM2 on this project's subset and adds what real HSMs have: PIN
 * lockout, power-on self-tests and zeroization. See module.ts for the map of its parts.
 */
export { EmulatorModule } from './module.ts';
export type { EmulatorOptions } from './module.ts';
export { runSelfTests, SELF_TESTS } from './kat.ts';
export type { SelfTestReport } from './kat.ts';
