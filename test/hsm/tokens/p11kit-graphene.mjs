// Run by test/hsm/tokens/p11kit.test.ts in its own process, like p11kit-pkcs11js.mjs: graphene-pk11
// loads p11-kit-client.so, which reaches the server named by P11_KIT_SERVER_ADDRESS. Prints one
// JSON object with what each step returned.
import * as graphene from 'graphene-pk11';

const [modulePath, pin] = process.argv.slice(2);
const out = {};
const mod = graphene.Module.load(modulePath, 'p11-kit-client');
// p11-kit's client wants the OS locking flag (CKR_CANT_LOCK without it).
mod.initialize({ flags: 2 }); // CKF_OS_LOCKING_OK
const slot = mod.getSlots(true).items(0);
out.label = slot.getToken().label.trim();
out.mechanisms = slot.getMechanisms().length;
const session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
session.login(pin, graphene.UserType.USER);
const aes = session.generateKey(graphene.KeyGenMechanism.AES, { keyType: graphene.KeyType.AES, valueLen: 32, token: true, label: 'graphene-aes', encrypt: true, decrypt: true });
out.aesLabel = aes.getAttribute({ label: null }).label;
out.found = session.find({ class: graphene.ObjectClass.SECRET_KEY, label: 'graphene-aes' }).length;
const hmacKey = session.generateKey(graphene.KeyGenMechanism.GENERIC_SECRET, {
  keyType: graphene.KeyType.GENERIC_SECRET,
  valueLen: 32,
  token: false,
  sign: true,
  verify: true,
});
const mac = session.createSign('SHA256_HMAC', hmacKey).once(Buffer.from('graphene'));
out.macLength = mac.length;
out.verifies = session.createVerify('SHA256_HMAC', hmacKey).once(Buffer.from('graphene'), mac);
out.randomLength = session.generateRandom(20).length;
// ECDSA P-256 (CKM_ECDSA, PKCS#11 v2.40 §2.3.6): graphene's 'ECDSA' signs the bytes given (the hash).
const ec = session.generateKeyPair(
  graphene.KeyGenMechanism.EC,
  { keyType: graphene.KeyType.EC, paramsEC: graphene.NamedCurve.getByName('secp256r1').value, token: false, verify: true },
  { keyType: graphene.KeyType.EC, token: false, sign: true, sensitive: true, extractable: false },
);
const hash = Buffer.alloc(32, 0x42);
const ecSig = session.createSign('ECDSA', ec.privateKey).once(hash);
out.ecdsaLength = ecSig.length;
out.ecdsaSignature = ecSig.toString('hex');
out.ecPoint = ec.publicKey.getAttribute({ pointEC: null }).pointEC.toString('hex');
out.ecdsaVerifies = session.createVerify('ECDSA', ec.publicKey).once(hash, ecSig);
const tampered = Buffer.from(ecSig);
tampered[0] ^= 1;
try {
  out.ecdsaTampered = session.createVerify('ECDSA', ec.publicKey).once(hash, tampered);
} catch (e) {
  out.ecdsaTampered = String(e.message).match(/CKR_\w+/)?.[0] ?? String(e);
}
session.logout();
session.close();
mod.finalize();
console.log(JSON.stringify(out));
