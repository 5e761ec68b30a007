// Run by test/hsm/tokens/p11kit.test.ts in its own process (pkcs11js calls block their thread,
// and the server under test runs in the test's): pkcs11js loads p11-kit-client.so, which reaches
// the server named by P11_KIT_SERVER_ADDRESS. Prints one JSON object with what each step returned.
import pkcs11js from 'pkcs11js';

const [modulePath, pin] = process.argv.slice(2);
const out = {};
const code = (e) => (e && typeof e.message === 'string' ? e.message.split(':')[0] : String(e));
const p = new pkcs11js.PKCS11();
p.load(modulePath);
// p11-kit's client wants the OS locking flag (CKR_CANT_LOCK without it).
p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slots = p.C_GetSlotList(true);
out.slots = slots.length;
const info = p.C_GetTokenInfo(slots[0]);
out.label = info.label.trim();
out.tokenFlags = info.flags;
const s = p.C_OpenSession(slots[0], pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
p.C_Login(s, pkcs11js.CKU_USER, pin);
const aes = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
  { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
  { type: pkcs11js.CKA_ENCRYPT, value: true },
  { type: pkcs11js.CKA_DECRYPT, value: true },
  { type: pkcs11js.CKA_TOKEN, value: false },
]);
out.aesValueLen = p.C_GetAttributeValue(s, aes, [{ type: pkcs11js.CKA_VALUE_LEN }])[0].value.readUInt32LE(0);
try {
  p.C_GetAttributeValue(s, aes, [{ type: pkcs11js.CKA_VALUE }]);
  out.aesValue = 'readable';
} catch (e) {
  out.aesValue = code(e);
}
const gcm = { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, iv: Buffer.alloc(12, 7), aad: Buffer.from('aad'), ivBits: 96, tagBits: 128 } };
try {
  p.C_EncryptInit(s, gcm, aes);
  const ct = p.C_Encrypt(s, Buffer.from('backup key vault'), Buffer.alloc(64));
  p.C_DecryptInit(s, gcm, aes);
  out.gcm = p.C_Decrypt(s, ct, Buffer.alloc(64)).toString();
} catch (e) {
  out.gcm = code(e);
}
const hmacKey = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
  { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
  { type: pkcs11js.CKA_SIGN, value: true },
  { type: pkcs11js.CKA_VERIFY, value: true },
  { type: pkcs11js.CKA_TOKEN, value: false },
]);
p.C_SignInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, hmacKey);
const mac = p.C_Sign(s, Buffer.from('message'), Buffer.alloc(64));
out.macLength = mac.length;
p.C_VerifyInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, hmacKey);
out.verifies = p.C_Verify(s, Buffer.from('message'), mac);
p.C_VerifyInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, hmacKey);
try {
  out.verifiesTampered = p.C_Verify(s, Buffer.from('messagE'), mac);
} catch (e) {
  out.verifiesTampered = code(e);
}
out.randomLength = p.C_GenerateRandom(s, Buffer.alloc(48)).length;
const kp = p.C_GenerateKeyPair(
  s,
  { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
  [
    { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') },
    { type: pkcs11js.CKA_TOKEN, value: false },
  ],
  [
    { type: pkcs11js.CKA_DERIVE, value: true },
    { type: pkcs11js.CKA_TOKEN, value: false },
  ],
);
out.ecPointLength = p.C_GetAttributeValue(s, kp.publicKey, [{ type: pkcs11js.CKA_EC_POINT }])[0].value.length;
// CKM_ECDSA (0x1041; PKCS#11 v2.40 §2.3.6): the input is the hash, the signature r || s. The
// private key's CKA_SIGN and the public key's CKA_VERIFY default to true on this token.
const ecdsa = { mechanism: 0x1041 };
const hash = Buffer.alloc(32, 0xab);
p.C_SignInit(s, ecdsa, kp.privateKey);
const ecSig = p.C_Sign(s, hash, Buffer.alloc(128));
out.ecdsaLength = ecSig.length;
out.ecdsaSignature = ecSig.toString('hex');
out.ecPoint = p.C_GetAttributeValue(s, kp.publicKey, [{ type: pkcs11js.CKA_EC_POINT }])[0].value.toString('hex');
p.C_VerifyInit(s, ecdsa, kp.publicKey);
out.ecdsaVerifies = p.C_Verify(s, hash, ecSig);
const tampered = Buffer.from(ecSig);
tampered[63] ^= 1;
p.C_VerifyInit(s, ecdsa, kp.publicKey);
try {
  out.ecdsaTampered = p.C_Verify(s, hash, tampered);
} catch (e) {
  out.ecdsaTampered = code(e);
}
p.C_SignInit(s, ecdsa, kp.privateKey);
try {
  out.ecdsaShortBuffer = p.C_Sign(s, hash, Buffer.alloc(63)).length;
} catch (e) {
  out.ecdsaShortBuffer = code(e);
}
// the operation survives a short buffer (PKCS#11 v2.40 §5.2): the next C_Sign ends it
out.ecdsaAfterShortBuffer = p.C_Sign(s, hash, Buffer.alloc(64)).length;
try {
  p.C_SignInit(s, ecdsa, hmacKey);
  out.ecdsaOnHmacKey = 'CKR_OK';
} catch (e) {
  out.ecdsaOnHmacKey = code(e);
}
p.C_Logout(s);
p.C_CloseSession(s);
p.C_Finalize();
console.log(JSON.stringify(out));
