/**
 * One process of test/hsm/tokens/softhsm-processes.test.ts on the SoftHSM2 token of a data
 * folder (argv: role, data folder, milliseconds), printing one JSON line of what it did:
 * - `login`: another device's login, as Pkcs11Token does it (session, C_Login, C_Logout) under the
 *   data folder's token lock; SoftHSM2 writes the token's flags on every login;
 * - `open`: Pkcs11Token made and closed over and over with the lock it gets on a device
 *   (lockObjectStore, as hsm/runner.ts buildPlatform passes for SoftHSM2);
 * - `raw`: the control: the slot lookup of Pkcs11Token's constructor without the lock.
 */
import * as P from '../../../enclave/api/pkcs11.ts';
import { Pkcs11Token } from '../../../enclave/token-pkcs11.ts';
import { openVaultToken } from '../../../hsm/tokens/open.ts';

const [role, dir, ms] = process.argv.slice(2);
const opened = openVaultToken(dir!, 'softhsm');
const m = opened.module;
const end = Date.now() + Number(ms);
let done = 0;
const errors = new Map<string, number>();
// the loop's slot, looked up under the token lock: this setup races the other process's logins
// like any lookup (an `open` child died here with CKR_GENERAL_ERROR on a loaded machine), and is not what the
// roles measure
const slot = opened.exclusive(() => m.C_GetSlotList(true).find((s) => P.trimLabel(m.C_GetTokenInfo(s).label) === opened.label)!);
while (Date.now() < end) {
  try {
    if (role === 'login') {
      opened.exclusive(() => {
        const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
        try {
          m.C_Login(s, P.CKU_USER, opened.userPin);
          m.C_Logout(s);
        } finally {
          m.C_CloseSession(s);
        }
      });
    } else if (role === 'open') {
      new Pkcs11Token({ module: m, label: opened.label, userPin: opened.userPin, exclusive: opened.exclusive, lockObjectStore: opened.lockObjectStore, profiles: opened.profiles }).close();
    } else {
      for (const s of m.C_GetSlotList(true)) m.C_GetTokenInfo(s);
    }
    done++;
  } catch (e) {
    const k = `${(e as Error).name}: ${(e as Error).message}`;
    errors.set(k, (errors.get(k) ?? 0) + 1);
  }
}
console.log(JSON.stringify({ role, done, errors: Object.fromEntries(errors) }));
