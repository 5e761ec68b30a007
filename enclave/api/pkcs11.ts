/**
 * PKCS#11 (Cryptoki) v2.40 base specification, with the v3.0 additions this project uses
 * (CKA_DESTROYABLE, CKR_ACTION_PROHIBITED): the constants, types and the module interface that
 * every token of the vault implements, shaped on the `pkcs11js` `PKCS11` class so that the same
 * caller code (and graphene-pk11's Module) drives the emulator token and SoftHSM2 alike.
 *
 * Conventions, as in pkcs11js: handles (slots, sessions, objects) are 8-byte little-endian
 * Buffers; attribute values go in as number (CK_ULONG), boolean (CK_BBOOL), string (UTF-8) or
 * Buffer and come out as Buffers (CK_ULONG 8 bytes little-endian, CK_BBOOL 1 byte); output
 * buffers are passed in and the call returns the filled subarray. Every failure is a
 * `Pkcs11Error` whose `message` is the CKR_ name and `code` its number (v2.40 §11.1 / §5.1).
 * `normalizePkcs11Error` turns what pkcs11js throws (sometimes a plain `Error('CKR_X:N')`) into one.
 *
 * Numeric values equal PKCS#11 v2.40 pkcs11t.h (v3.0 pkcs11t.h for the v3.0 additions).
 */

// ---- return values (v2.40 §5.1 / pkcs11t.h) ----
export const CKR = {
  CKR_OK: 0x0,
  CKR_CANCEL: 0x1,
  CKR_HOST_MEMORY: 0x2,
  CKR_SLOT_ID_INVALID: 0x3,
  CKR_GENERAL_ERROR: 0x5,
  CKR_FUNCTION_FAILED: 0x6,
  CKR_ARGUMENTS_BAD: 0x7,
  CKR_ATTRIBUTE_READ_ONLY: 0x10,
  CKR_ATTRIBUTE_SENSITIVE: 0x11,
  CKR_ATTRIBUTE_TYPE_INVALID: 0x12,
  CKR_ATTRIBUTE_VALUE_INVALID: 0x13,
  CKR_ACTION_PROHIBITED: 0x1b,
  CKR_DATA_INVALID: 0x20,
  CKR_DATA_LEN_RANGE: 0x21,
  CKR_DEVICE_ERROR: 0x30,
  CKR_DEVICE_MEMORY: 0x31,
  CKR_DEVICE_REMOVED: 0x32,
  CKR_ENCRYPTED_DATA_INVALID: 0x40,
  CKR_ENCRYPTED_DATA_LEN_RANGE: 0x41,
  CKR_FUNCTION_NOT_SUPPORTED: 0x54,
  CKR_KEY_HANDLE_INVALID: 0x60,
  CKR_KEY_SIZE_RANGE: 0x62,
  CKR_KEY_TYPE_INCONSISTENT: 0x63,
  CKR_KEY_FUNCTION_NOT_PERMITTED: 0x68,
  CKR_KEY_NOT_WRAPPABLE: 0x69,
  CKR_KEY_UNEXTRACTABLE: 0x6a,
  CKR_MECHANISM_INVALID: 0x70,
  CKR_MECHANISM_PARAM_INVALID: 0x71,
  CKR_OBJECT_HANDLE_INVALID: 0x82,
  CKR_OPERATION_ACTIVE: 0x90,
  CKR_OPERATION_NOT_INITIALIZED: 0x91,
  CKR_PIN_INCORRECT: 0xa0,
  CKR_PIN_INVALID: 0xa1,
  CKR_PIN_LEN_RANGE: 0xa2,
  CKR_PIN_EXPIRED: 0xa3,
  CKR_PIN_LOCKED: 0xa4,
  CKR_SESSION_CLOSED: 0xb0,
  CKR_SESSION_COUNT: 0xb1,
  CKR_SESSION_HANDLE_INVALID: 0xb3,
  CKR_SESSION_PARALLEL_NOT_SUPPORTED: 0xb4,
  CKR_SESSION_READ_ONLY: 0xb5,
  CKR_SESSION_EXISTS: 0xb6,
  CKR_SESSION_READ_ONLY_EXISTS: 0xb7,
  CKR_SESSION_READ_WRITE_SO_EXISTS: 0xb8,
  CKR_SIGNATURE_INVALID: 0xc0,
  CKR_SIGNATURE_LEN_RANGE: 0xc1,
  CKR_TEMPLATE_INCOMPLETE: 0xd0,
  CKR_TEMPLATE_INCONSISTENT: 0xd1,
  CKR_TOKEN_NOT_PRESENT: 0xe0,
  CKR_TOKEN_NOT_RECOGNIZED: 0xe1,
  CKR_TOKEN_WRITE_PROTECTED: 0xe2,
  CKR_UNWRAPPING_KEY_HANDLE_INVALID: 0xf0,
  CKR_UNWRAPPING_KEY_SIZE_RANGE: 0xf1,
  CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: 0xf2,
  CKR_USER_ALREADY_LOGGED_IN: 0x100,
  CKR_USER_NOT_LOGGED_IN: 0x101,
  CKR_USER_PIN_NOT_INITIALIZED: 0x102,
  CKR_USER_TYPE_INVALID: 0x103,
  CKR_USER_ANOTHER_ALREADY_LOGGED_IN: 0x104,
  CKR_USER_TOO_MANY_TYPES: 0x105,
  CKR_WRAPPED_KEY_INVALID: 0x110,
  CKR_WRAPPED_KEY_LEN_RANGE: 0x112,
  CKR_WRAPPING_KEY_HANDLE_INVALID: 0x113,
  CKR_WRAPPING_KEY_SIZE_RANGE: 0x114,
  CKR_WRAPPING_KEY_TYPE_INCONSISTENT: 0x115,
  CKR_RANDOM_SEED_NOT_SUPPORTED: 0x120,
  CKR_RANDOM_NO_RNG: 0x121,
  CKR_DOMAIN_PARAMS_INVALID: 0x130,
  CKR_CURVE_NOT_SUPPORTED: 0x140,
  CKR_BUFFER_TOO_SMALL: 0x150,
  CKR_CRYPTOKI_NOT_INITIALIZED: 0x190,
  CKR_CRYPTOKI_ALREADY_INITIALIZED: 0x191,
  CKR_FIPS_SELF_TEST_FAILED: 0x1b6,
  CKR_PIN_TOO_WEAK: 0x1b8,
  CKR_PUBLIC_KEY_INVALID: 0x1b9,
  CKR_FUNCTION_REJECTED: 0x200,
} as const;
export type CkrName = keyof typeof CKR;

const CKR_NAMES = new Map<number, CkrName>(Object.entries(CKR).map(([k, v]) => [v, k as CkrName]));

/** The CKR_ name of a return value (unknown values as `CKR_0x...`). */
export function ckrName(code: number): string {
  return CKR_NAMES.get(code) ?? `CKR_0x${code.toString(16)}`;
}

// ---- object classes, key types, attributes (v2.40 §4, §10) ----
export const CKO_DATA = 0x0;
export const CKO_PUBLIC_KEY = 0x2;
export const CKO_PRIVATE_KEY = 0x3;
export const CKO_SECRET_KEY = 0x4;
export const CKO_VENDOR_DEFINED = 0x80000000;

export const CKK_EC = 0x3;
export const CKK_GENERIC_SECRET = 0x10;
export const CKK_AES = 0x1f;
export const CKK_SHA256_HMAC = 0x2b;
export const CKK_SHA512_HMAC = 0x2d;
export const CKK_VENDOR_DEFINED = 0x80000000;

export const CKA_CLASS = 0x0;
export const CKA_TOKEN = 0x1;
export const CKA_PRIVATE = 0x2;
export const CKA_LABEL = 0x3;
export const CKA_APPLICATION = 0x10;
export const CKA_VALUE = 0x11;
export const CKA_OBJECT_ID = 0x12;
export const CKA_TRUSTED = 0x86;
export const CKA_CHECK_VALUE = 0x90;
export const CKA_KEY_TYPE = 0x100;
export const CKA_SUBJECT = 0x101;
export const CKA_ID = 0x102;
export const CKA_SENSITIVE = 0x103;
export const CKA_ENCRYPT = 0x104;
export const CKA_DECRYPT = 0x105;
export const CKA_WRAP = 0x106;
export const CKA_UNWRAP = 0x107;
export const CKA_SIGN = 0x108;
export const CKA_SIGN_RECOVER = 0x109;
export const CKA_VERIFY = 0x10a;
export const CKA_VERIFY_RECOVER = 0x10b;
export const CKA_DERIVE = 0x10c;
export const CKA_START_DATE = 0x110;
export const CKA_END_DATE = 0x111;
export const CKA_VALUE_BITS = 0x160;
export const CKA_VALUE_LEN = 0x161;
export const CKA_EXTRACTABLE = 0x162;
export const CKA_LOCAL = 0x163;
export const CKA_NEVER_EXTRACTABLE = 0x164;
export const CKA_ALWAYS_SENSITIVE = 0x165;
export const CKA_KEY_GEN_MECHANISM = 0x166;
export const CKA_MODIFIABLE = 0x170;
export const CKA_COPYABLE = 0x171;
export const CKA_DESTROYABLE = 0x172;
export const CKA_EC_PARAMS = 0x180;
export const CKA_EC_POINT = 0x181;
export const CKA_ALWAYS_AUTHENTICATE = 0x202;
export const CKA_WRAP_WITH_TRUSTED = 0x210;
export const CKA_WRAP_TEMPLATE = 0x40000211;
export const CKA_UNWRAP_TEMPLATE = 0x40000212;
export const CKA_ALLOWED_MECHANISMS = 0x40000600;
export const CKA_VENDOR_DEFINED = 0x80000000;

/** CK_UNAVAILABLE_INFORMATION as an 8-byte CK_ULONG (v2.40 §2.1). */
export const CK_UNAVAILABLE_INFORMATION = 0xffffffffffffffffn;

// ---- mechanisms (v2.40 Current Mechanisms) ----
export const CKM_SHA256 = 0x250;
export const CKM_SHA256_HMAC = 0x251;
export const CKM_SHA512 = 0x270;
export const CKM_SHA512_HMAC = 0x271;
export const CKM_GENERIC_SECRET_KEY_GEN = 0x350;
export const CKM_EC_KEY_PAIR_GEN = 0x1040;
/** Raw ECDSA (v2.40 Current Mechanisms §2.3.6): the input is the hash, the signature r || s. */
export const CKM_ECDSA = 0x1041;
export const CKM_ECDH1_DERIVE = 0x1050;
export const CKM_AES_KEY_GEN = 0x1080;
export const CKM_AES_ECB = 0x1081;
export const CKM_AES_GCM = 0x1087;
export const CKM_AES_KEY_WRAP = 0x2109;
/** RFC 5649 in SoftHSM2 and in this project (v3.0 calls RFC 5649 CKM_AES_KEY_WRAP_KWP, 0x210b). */
export const CKM_AES_KEY_WRAP_PAD = 0x210a;
export const CKM_VENDOR_DEFINED = 0x80000000;

export const CKD_NULL = 0x1;
export const CKD_SHA256_KDF = 0x6;

// ---- flags, user types, session states (v2.40 §3) ----
export const CKF_TOKEN_PRESENT = 0x1;
export const CKF_REMOVABLE_DEVICE = 0x2;
export const CKF_HW_SLOT = 0x4;

export const CKF_RNG = 0x1;
export const CKF_WRITE_PROTECTED = 0x2;
export const CKF_LOGIN_REQUIRED = 0x4;
export const CKF_USER_PIN_INITIALIZED = 0x8;
export const CKF_RESTORE_KEY_NOT_NEEDED = 0x20;
export const CKF_CLOCK_ON_TOKEN = 0x40;
export const CKF_TOKEN_INITIALIZED = 0x400;
export const CKF_USER_PIN_COUNT_LOW = 0x10000;
export const CKF_USER_PIN_FINAL_TRY = 0x20000;
export const CKF_USER_PIN_LOCKED = 0x40000;
export const CKF_USER_PIN_TO_BE_CHANGED = 0x80000;
export const CKF_SO_PIN_COUNT_LOW = 0x100000;
export const CKF_SO_PIN_FINAL_TRY = 0x200000;
export const CKF_SO_PIN_LOCKED = 0x400000;
export const CKF_SO_PIN_TO_BE_CHANGED = 0x800000;
export const CKF_ERROR_STATE = 0x1000000;

export const CKF_RW_SESSION = 0x2;
export const CKF_SERIAL_SESSION = 0x4;

export const CKF_HW = 0x1;
export const CKF_ENCRYPT = 0x100;
export const CKF_DECRYPT = 0x200;
export const CKF_DIGEST = 0x400;
export const CKF_SIGN = 0x800;
export const CKF_VERIFY = 0x2000;
export const CKF_GENERATE = 0x8000;
export const CKF_GENERATE_KEY_PAIR = 0x10000;
export const CKF_WRAP = 0x20000;
export const CKF_UNWRAP = 0x40000;
export const CKF_DERIVE = 0x80000;
export const CKF_EC_F_P = 0x100000;
export const CKF_EC_NAMEDCURVE = 0x800000;
export const CKF_EC_UNCOMPRESS = 0x1000000;
export const CKF_EC_COMPRESS = 0x2000000;

export const CKF_OS_LOCKING_OK = 0x2;

export const CKU_SO = 0;
export const CKU_USER = 1;
export const CKU_CONTEXT_SPECIFIC = 2;

export const CKS_RO_PUBLIC_SESSION = 0;
export const CKS_RO_USER_FUNCTIONS = 1;
export const CKS_RW_PUBLIC_SESSION = 2;
export const CKS_RW_USER_FUNCTIONS = 3;
export const CKS_RW_SO_FUNCTIONS = 4;

// ---- pkcs11js mechanism parameter kinds (pkcs11js `CK_PARAMS_*`) ----
export const CK_PARAMS_AES_GCM = 3;
export const CK_PARAMS_EC_DH = 6;
export const CK_PARAMS_AES_GCM_v240 = 7;
export const CK_PARAMS_GCM = 25;

/** DER of the P-256 named curve OID 1.2.840.10045.3.1.7 (CKA_EC_PARAMS). */
export const EC_PARAMS_P256 = Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07);

// ---- types (pkcs11js index.d.ts shapes) ----
export type Handle = Buffer;

export interface Version {
  major: number;
  minor: number;
}
export interface ModuleInfo {
  cryptokiVersion: Version;
  manufacturerID: string;
  flags: number;
  libraryDescription: string;
  libraryVersion: Version;
}
export interface SlotInfo {
  slotDescription: string;
  manufacturerID: string;
  flags: number;
  hardwareVersion: Version;
  firmwareVersion: Version;
}
export interface TokenInfo {
  label: string;
  manufacturerID: string;
  model: string;
  serialNumber: string;
  flags: number;
  maxSessionCount: number;
  sessionCount: number;
  maxRwSessionCount: number;
  rwSessionCount: number;
  maxPinLen: number;
  minPinLen: number;
  hardwareVersion: Version;
  firmwareVersion: Version;
  utcTime: string;
  totalPublicMemory: number | bigint;
  freePublicMemory: number | bigint;
  totalPrivateMemory: number | bigint;
  freePrivateMemory: number | bigint;
}
export interface MechanismInfo {
  minKeySize: number;
  maxKeySize: number;
  flags: number;
}
export interface SessionInfo {
  slotID: Buffer;
  state: number;
  flags: number;
  deviceError: number;
}
export interface Attribute {
  type: number;
  value?: number | boolean | string | Buffer;
}
export type Template = Attribute[];
export interface AttributeResult {
  type: number;
  value: Buffer;
}
export interface GcmParams {
  type: typeof CK_PARAMS_AES_GCM | typeof CK_PARAMS_GCM | typeof CK_PARAMS_AES_GCM_v240;
  iv?: Buffer;
  aad?: Buffer;
  ivBits?: number;
  tagBits?: number;
}
export interface EcdhParams {
  type: typeof CK_PARAMS_EC_DH;
  kdf: number;
  sharedData?: Buffer;
  publicData: Buffer;
}
export interface Mechanism {
  mechanism: number;
  parameter?: Buffer | number | GcmParams | EcdhParams | { type: number };
}
export interface KeyPair {
  privateKey: Handle;
  publicKey: Handle;
}
export interface InitializationOptions {
  libraryParameters?: string;
  flags?: number;
}

/**
 * The module interface: the pkcs11js `PKCS11` method subset this project uses, same names,
 * arguments, results and errors. `C_FindObjects(session)` returns one handle or null;
 * `C_FindObjects(session, max)` returns up to `max` handles.
 */
export interface Pkcs11 {
  C_Initialize(options?: InitializationOptions): void;
  C_Finalize(): void;
  C_GetInfo(): ModuleInfo;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetSlotInfo(slot: Handle): SlotInfo;
  C_GetTokenInfo(slot: Handle): TokenInfo;
  C_GetMechanismList(slot: Handle): number[];
  C_GetMechanismInfo(slot: Handle, mech: number): MechanismInfo;
  C_InitToken(slot: Handle, pin?: string, label?: string): string | void;
  C_InitPIN(session: Handle, pin?: string): void;
  C_SetPIN(session: Handle, oldPin: string, newPin: string): void;
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_CloseAllSessions(slot: Handle): void;
  C_GetSessionInfo(session: Handle): SessionInfo;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_Logout(session: Handle): void;
  C_CreateObject(session: Handle, template: Template): Handle;
  C_CopyObject(session: Handle, object: Handle, template: Template): Handle;
  C_DestroyObject(session: Handle, object: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Template): AttributeResult[];
  C_SetAttributeValue(session: Handle, object: Handle, template: Template): void;
  C_FindObjectsInit(session: Handle, template: Template): void;
  C_FindObjects(session: Handle): Handle | null;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_EncryptInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Encrypt(session: Handle, inData: Buffer, outData: Buffer): Buffer;
  C_EncryptUpdate(session: Handle, inData: Buffer, outData: Buffer): Buffer;
  C_EncryptFinal(session: Handle, outData: Buffer): Buffer;
  C_DecryptInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Decrypt(session: Handle, inData: Buffer, outData: Buffer): Buffer;
  C_DecryptUpdate(session: Handle, inData: Buffer, outData: Buffer): Buffer;
  C_DecryptFinal(session: Handle, outData: Buffer): Buffer;
  C_SignInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Sign(session: Handle, inData: Buffer, outData: Buffer): Buffer;
  C_SignUpdate(session: Handle, inData: Buffer): void;
  C_SignFinal(session: Handle, outData: Buffer): Buffer;
  C_VerifyInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Verify(session: Handle, inData: Buffer, signature: Buffer): boolean;
  C_VerifyUpdate(session: Handle, inData: Buffer): void;
  C_VerifyFinal(session: Handle, signature: Buffer): boolean;
  C_GenerateKey(session: Handle, mechanism: Mechanism, template: Template): Handle;
  C_GenerateKeyPair(session: Handle, mechanism: Mechanism, publicKeyTemplate: Template, privateKeyTemplate: Template): KeyPair;
  C_WrapKey(session: Handle, mechanism: Mechanism, wrappingKey: Handle, key: Handle, wrappedKey: Buffer): Buffer;
  C_UnwrapKey(session: Handle, mechanism: Mechanism, unwrappingKey: Handle, wrappedKey: Buffer, template: Template): Handle;
  C_DeriveKey(session: Handle, mechanism: Mechanism, key: Handle, template: Template): Handle;
  C_GenerateRandom(session: Handle, buf: Buffer): Buffer;
}

// ---- errors ----
export class Pkcs11Error extends Error {
  override readonly name = 'Pkcs11Error';
  constructor(
    readonly code: number,
    readonly method = '',
  ) {
    super(ckrName(code));
  }
}

/** Throws the Pkcs11Error for a return value. */
export function fail(code: number, method?: string): never {
  throw new Pkcs11Error(code, method);
}

/**
 * The Pkcs11Error for anything a module threw: pkcs11js's Pkcs11Error (`code` set), or its plain
 * `Error('CKR_X:N')` (C_CreateObject, C_CopyObject, C_SetAttributeValue, C_FindObjects), or
 * `Error('CKR_X')`. Anything else (a TypeError for a bad argument, say) is returned unchanged.
 */
export function normalizePkcs11Error(e: unknown, method = ''): unknown {
  if (e instanceof Pkcs11Error) return e;
  if (!(e instanceof Error)) return e;
  const m = /(CKR_[A-Z0-9_]+):(\d+)/.exec(e.message) ?? /(CKR_[A-Z0-9_]+):(\d+)/.exec(e.stack ?? '');
  if (m) return new Pkcs11Error(Number(m[2]), method || ((e as { method?: string }).method ?? ''));
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'number' && /^CKR_/.test(e.message)) return new Pkcs11Error(code, method);
  const byName = /^(CKR_[A-Z0-9_]+)$/.exec(e.message);
  if (byName && byName[1]! in CKR) return new Pkcs11Error(CKR[byName[1] as CkrName], method);
  return e;
}

/** Wraps a module so that every C_ call throws only Pkcs11Error (or the caller's own TypeErrors). */
export function normalizedModule<T extends object>(mod: T): T {
  // One wrapper per C_ function, made at first use and reused while the property still holds
  // the same function (a test may replace a method): no closure per call.
  const wrappers = new Map<string, { fn: unknown; wrapper: (this: unknown) => unknown }>();
  return new Proxy(mod, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string' || !prop.startsWith('C_')) return v;
      const cached = wrappers.get(prop);
      if (cached !== undefined && cached.fn === v) return cached.wrapper;
      const f = v as (...a: unknown[]) => unknown;
      // `arguments` passed straight to apply: no array per call, and the callee sees the same argument count.
      const wrapper = function (this: unknown): unknown {
        try {
          // eslint-disable-next-line prefer-rest-params
          return f.apply(target, arguments as unknown as unknown[]);
        } catch (e) {
          throw normalizePkcs11Error(e, prop);
        }
      };
      wrappers.set(prop, { fn: v, wrapper });
      return wrapper;
    },
  });
}

// ---- handle and attribute value helpers ----
const TWO32 = 2 ** 32;
/** The highest word of a handle that keeps it within Number.MAX_SAFE_INTEGER (2^53 - 1). */
const MAX_SAFE_HIGH = 2 ** 21 - 1;

export function handleOf(n: number | bigint): Handle {
  const b = Buffer.alloc(8);
  if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) {
    b.writeUInt32LE(n % TWO32, 0);
    b.writeUInt32LE(Math.floor(n / TWO32), 4);
  } else {
    b.writeBigUInt64LE(BigInt(n));
  }
  return b;
}

export function handleNumber(h: Handle): number {
  if (!Buffer.isBuffer(h) || h.length !== 8) return -1;
  const high = h.readUInt32LE(4);
  return high > MAX_SAFE_HIGH ? -1 : high * TWO32 + h.readUInt32LE(0);
}

/** A CK_ULONG attribute value (8 bytes little-endian) as a number (or bigint when larger than 2^53). */
export function ulongOf(b: Buffer): number {
  if (b.length === 8) return Number(b.readBigUInt64LE(0));
  if (b.length === 4) return b.readUInt32LE(0);
  return -1;
}

export function boolOf(b: Buffer): boolean {
  return b.length > 0 && b[0] !== 0;
}

/** The bytes a template value stands for, as pkcs11js encodes it. */
export function encodeAttributeValue(v: Attribute['value']): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'boolean') return Buffer.from([v ? 1 : 0]);
  if (typeof v === 'number') {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  }
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  throw new TypeError('attribute value must be a number, boolean, string or Buffer');
}

/** A label padded with blanks to 32 bytes, as CK_TOKEN_INFO holds it (v2.40 §3.2). */
export function padLabel(label: string, len = 32): string {
  const b = Buffer.from(label, 'utf8');
  if (b.length > len) throw new RangeError(`label longer than ${len} bytes`);
  return label + ' '.repeat(len - b.length);
}

/** A blank- or NUL-padded label without its padding. */
export function trimLabel(label: string): string {
  return label.replace(/[ \0]+$/, '');
}
