/**
 * The p11-kit RPC call table as p11-kit 0.24.1 (Debian 12) speaks it, protocol version 0
 * (p11-kit rpc-message.h `p11_rpc_calls`): a call's id is its index, and each message carries
 * its call's request or response signature string, which the receiver checks byte for byte.
 * p11-kit 0.24.1 knows the PKCS#11 v2.40 functions only (ids 1-65); a later id is an unknown
 * call there and here.
 *
 * Signature letters (rpc-message.h): `u` CK_ULONG as 8 bytes big-endian; `y` one byte; `ay` a
 * byte array (a presence byte, then a length-prefixed array, or the length alone); `fy` the size
 * of the caller's output buffer; `au` / `fu` the same for CK_ULONG arrays; `aA` a template of
 * attributes with values; `fA` a template of attribute buffer sizes; `M` a mechanism; `s` a
 * blank-padded string of fixed length; `v` a CK_VERSION (two bytes); `z` a string without its NUL.
 */

export interface RpcCall {
  readonly id: number;
  readonly name: string;
  readonly request: string;
  readonly response: string;
}

/** The protocol version this server speaks (p11-kit 0.24.1 `P11_RPC_PROTOCOL_VERSION_MAXIMUM`). */
export const RPC_PROTOCOL_VERSION = 0;

/** The string C_Initialize carries (rpc-message.h `P11_RPC_HANDSHAKE`). */
export const RPC_HANDSHAKE = Buffer.from('PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1', 'latin1');

/** The id of the error response: its one field is the CKR_ value (`u`). */
export const CALL_ERROR = 0;

// [name, request signature, response signature], in id order from 1 (rpc-message.h).
const TABLE: ReadonlyArray<readonly [string, string, string]> = [
  ['C_Initialize', 'ayyay', ''],
  ['C_Finalize', '', ''],
  ['C_GetInfo', '', 'vsusv'],
  ['C_GetSlotList', 'yfu', 'au'],
  ['C_GetSlotInfo', 'u', 'ssuvv'],
  ['C_GetTokenInfo', 'u', 'ssssuuuuuuuuuuuvvs'],
  ['C_GetMechanismList', 'ufu', 'au'],
  ['C_GetMechanismInfo', 'uu', 'uuu'],
  ['C_InitToken', 'uayz', ''],
  ['C_OpenSession', 'uu', 'u'],
  ['C_CloseSession', 'u', ''],
  ['C_CloseAllSessions', 'u', ''],
  ['C_GetSessionInfo', 'u', 'uuuu'],
  ['C_InitPIN', 'uay', ''],
  ['C_SetPIN', 'uayay', ''],
  ['C_GetOperationState', 'ufy', 'ay'],
  ['C_SetOperationState', 'uayuu', ''],
  ['C_Login', 'uuay', ''],
  ['C_Logout', 'u', ''],
  ['C_CreateObject', 'uaA', 'u'],
  ['C_CopyObject', 'uuaA', 'u'],
  ['C_DestroyObject', 'uu', ''],
  ['C_GetObjectSize', 'uu', 'u'],
  ['C_GetAttributeValue', 'uufA', 'aAu'],
  ['C_SetAttributeValue', 'uuaA', ''],
  ['C_FindObjectsInit', 'uaA', ''],
  ['C_FindObjects', 'ufu', 'au'],
  ['C_FindObjectsFinal', 'u', ''],
  ['C_EncryptInit', 'uMu', ''],
  ['C_Encrypt', 'uayfy', 'ay'],
  ['C_EncryptUpdate', 'uayfy', 'ay'],
  ['C_EncryptFinal', 'ufy', 'ay'],
  ['C_DecryptInit', 'uMu', ''],
  ['C_Decrypt', 'uayfy', 'ay'],
  ['C_DecryptUpdate', 'uayfy', 'ay'],
  ['C_DecryptFinal', 'ufy', 'ay'],
  ['C_DigestInit', 'uM', ''],
  ['C_Digest', 'uayfy', 'ay'],
  ['C_DigestUpdate', 'uay', ''],
  ['C_DigestKey', 'uu', ''],
  ['C_DigestFinal', 'ufy', 'ay'],
  ['C_SignInit', 'uMu', ''],
  ['C_Sign', 'uayfy', 'ay'],
  ['C_SignUpdate', 'uay', ''],
  ['C_SignFinal', 'ufy', 'ay'],
  ['C_SignRecoverInit', 'uMu', ''],
  ['C_SignRecover', 'uayfy', 'ay'],
  ['C_VerifyInit', 'uMu', ''],
  ['C_Verify', 'uayay', ''],
  ['C_VerifyUpdate', 'uay', ''],
  ['C_VerifyFinal', 'uay', ''],
  ['C_VerifyRecoverInit', 'uMu', ''],
  ['C_VerifyRecover', 'uayfy', 'ay'],
  ['C_DigestEncryptUpdate', 'uayfy', 'ay'],
  ['C_DecryptDigestUpdate', 'uayfy', 'ay'],
  ['C_SignEncryptUpdate', 'uayfy', 'ay'],
  ['C_DecryptVerifyUpdate', 'uayfy', 'ay'],
  ['C_GenerateKey', 'uMaA', 'u'],
  ['C_GenerateKeyPair', 'uMaAaA', 'uu'],
  ['C_WrapKey', 'uMuufy', 'ay'],
  ['C_UnwrapKey', 'uMuayaA', 'u'],
  ['C_DeriveKey', 'uMuaA', 'u'],
  ['C_SeedRandom', 'uay', ''],
  ['C_GenerateRandom', 'ufy', 'ay'],
  ['C_WaitForSlotEvent', 'u', 'u'],
];

/** Every call by id (index 0 is the error response). */
export const RPC_CALLS: readonly RpcCall[] = [
  { id: CALL_ERROR, name: 'ERROR', request: '', response: 'u' },
  ...TABLE.map(([name, request, response], i) => ({ id: i + 1, name, request, response })),
];

/** One past the last call id (rpc-message.h `P11_RPC_CALL_MAX` of p11-kit 0.24.1). */
export const RPC_CALL_MAX = RPC_CALLS.length;

const BY_NAME = new Map(RPC_CALLS.map((c) => [c.name, c]));

/** A call by its PKCS#11 function name; throws for a name not in the table (a programming error). */
export function callNamed(name: string): RpcCall {
  const c = BY_NAME.get(name);
  if (!c) throw new Error(`no RPC call ${name}`);
  return c;
}
