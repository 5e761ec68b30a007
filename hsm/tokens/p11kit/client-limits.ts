/**
 * What p11-kit 0.24.1's client (Debian 12's p11-kit-client.so) can not carry to this server: it
 * serializes a mechanism's parameters only for the mechanisms in its own table (p11-kit
 * rpc-message.c `p11_rpc_mechanism_is_supported`), drops the others from C_GetMechanismList and
 * answers CKR_MECHANISM_INVALID for them itself, before anything reaches the server. The server
 * handles AES-GCM and ECDH1 parameters for clients that send them (test/hsm/tokens/p11kit.test.ts).
 */
import * as P from '../../../enclave/api/pkcs11.ts';

const REFUSED = { CKM_AES_GCM: P.CKM_AES_GCM, CKM_ECDH1_DERIVE: P.CKM_ECDH1_DERIVE, CKM_AES_KEY_WRAP: P.CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD: P.CKM_AES_KEY_WRAP_PAD };

/** The token's mechanisms that p11-kit 0.24.1's client refuses itself. */
export const P11KIT_CLIENT_REFUSES: readonly number[] = Object.values(REFUSED);

/** The CKM_ name of a mechanism the client refuses; null for one it carries. */
export function p11kitRefuses(mechanism: number): string | null {
  return Object.entries(REFUSED).find(([, v]) => v === mechanism)?.[0] ?? null;
}
