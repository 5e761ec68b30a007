/**
 * `backup-key-vault/pkcs11`: the emulator token as a PKCS#11 v2.40 module with pkcs11js's
 * shape (`C_Initialize`, `C_GetSlotList`, `C_OpenSession`, `C_Login`, `C_GenerateKey`,
 * `C_Encrypt`, ... on Buffers; errors carry a `CKR_` name and code), in pure TypeScript. It
 * behaves like SoftHSM2 2.6.1 on the subset this project uses (AES-GCM, AES key wrap, HMAC, P-256
 * ECDH and ECDSA, data objects) and adds PIN lockout, power-on self-tests and zeroization.
 * Tokens live in one file (`storeFile`) or in memory.
 *
 * The `CK*` constants and the `Pkcs11` interface the module implements are exported here too.
 *
 * @example
 * ```ts
 * import { EmulatorModule, CKF_SERIAL_SESSION, CKF_RW_SESSION, CKU_SO } from 'backup-key-vault/pkcs11';
 * const p11 = new EmulatorModule({ storeFile: null });
 * p11.C_Initialize();
 * const [slot] = p11.C_GetSlotList(false);
 * p11.C_InitToken(slot, '12345678', 'my-token');
 * ```
 * @module backup-key-vault/pkcs11
 */
export { EmulatorModule, type EmulatorOptions, runSelfTests, SELF_TESTS, type SelfTestReport } from './tokens/emulator/index.ts';
export * from '../enclave/api/pkcs11.ts';
