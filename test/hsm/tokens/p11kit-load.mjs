// One client process of test/hsm/tokens/p11kit-concurrency.test.ts: M worker threads, each with
// its own pkcs11js instance loading p11-kit-client.so. Each load is its own module instance with
// its own connection to the server named by P11_KIT_SERVER_ADDRESS (p11-kit client.c: every
// C_GetFunctionList reads the variable and makes a new RPC transport), and the server gives each
// connection its own module (hsm/tokens/p11kit/connection.ts): sessions and the login state are
// per thread here, the token store is shared by all. A login is per application, not per session
// (PKCS#11 v2.40 §5.6): each thread's first C_Login must succeed, and the sessions it opens later
// are in the user state already.
//
//   node p11kit-load.mjs run CLIENT PIN THREADS MS TAG   one JSON line: per-thread counts and errors
//   node p11kit-load.mjs count CLIENT PIN TAG            one JSON line: token objects tagged TAG
//
// Every answer is checked; a wrong one is recorded as an error (never thrown away), and a thread
// stops at its first error.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';

const K = pkcs11js;
const code = (e) => (e && typeof e.message === 'string' ? e.message.split(':')[0] : String(e));
const RW = K.CKF_SERIAL_SESSION | K.CKF_RW_SESSION;

/** CKS_RW_USER_FUNCTIONS (PKCS#11 v2.40 §5.6; pkcs11js exports no CKS_ names). */
const CKS_RW_USER_FUNCTIONS = 3;

/** p11-kit's client wants CKF_OS_LOCKING_OK (CKR_CANT_LOCK without it). */
function library(client) {
  const p = new K.PKCS11();
  p.load(client);
  p.C_Initialize({ flags: K.CKF_OS_LOCKING_OK });
  return p;
}

function userState(p, s) {
  const state = p.C_GetSessionInfo(s).state;
  if (state !== CKS_RW_USER_FUNCTIONS) throw new Error(`wrong answer: session state ${state}, not CKS_RW_USER_FUNCTIONS`);
}

function check(cond, what) {
  if (!cond) throw new Error(`wrong answer: ${what}`);
}

function find(p, s, template) {
  p.C_FindObjectsInit(s, template);
  const out = [];
  for (;;) {
    const got = p.C_FindObjects(s, 64);
    if (got.length === 0) break;
    out.push(...got);
  }
  p.C_FindObjectsFinal(s);
  return out;
}

const slotOf = (p) => p.C_GetSlotList(true)[0];

/** One thread's run: iterations until the deadline; returns its counts. */
function thread({ client, pin, ms, tag, id }) {
  const stats = { id, iterations: 0, ops: 0, kept: 0, errors: [] };
  const seen = new Set();
  const op = (fn) => {
    const r = fn();
    stats.ops++;
    return r;
  };
  let p;
  try {
    p = library(client);
    const slot = slotOf(p);
    // A session held for the whole run keeps this connection logged in.
    const anchor = op(() => p.C_OpenSession(slot, RW));
    op(() => p.C_Login(anchor, K.CKU_USER, pin));
    userState(p, anchor);
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const i = stats.iterations;
      const s = op(() => p.C_OpenSession(slot, RW));
      op(() => userState(p, s));
      let again;
      try {
        again = op(() => p.C_Login(s, K.CKU_USER, pin));
      } catch (e) {
        again = code(e);
      }
      check(again === 'CKR_USER_ALREADY_LOGGED_IN', `a second login on one connection: ${again}`);
      // Session objects, found again by this session's own application tag, and only those.
      const app = `${tag}/${process.pid}/${id}/${i}`;
      const objs = [];
      for (let k = 0; k < 4; k++) {
        objs.push(op(() => p.C_CreateObject(s, [{ type: K.CKA_CLASS, value: K.CKO_DATA }, { type: K.CKA_TOKEN, value: false }, { type: K.CKA_APPLICATION, value: app }, { type: K.CKA_VALUE, value: Buffer.from(`${app}/${k}`) }])));
      }
      const found = op(() => find(p, s, [{ type: K.CKA_APPLICATION, value: app }]));
      check(found.length === 4 && objs.every((o) => found.some((f) => f.equals(o))), `find of ${app}: ${found.length} objects`);
      check(op(() => p.C_GetAttributeValue(s, objs[2], [{ type: K.CKA_VALUE }]))[0].value.toString() === `${app}/2`, 'CKA_VALUE read back');
      // A token object (the shared store): every fifth kept, the others destroyed.
      const tok = op(() => p.C_CreateObject(s, [{ type: K.CKA_CLASS, value: K.CKO_DATA }, { type: K.CKA_TOKEN, value: true }, { type: K.CKA_PRIVATE, value: true }, { type: K.CKA_APPLICATION, value: tag }, { type: K.CKA_LABEL, value: app }]));
      if (i % 5 === 0) stats.kept++;
      else op(() => p.C_DestroyObject(s, tok));
      // HMAC-SHA256 under a key of known value: the MAC is node:crypto's; verify accepts it and refuses a flipped byte.
      const kv = randomBytes(32);
      const mk = op(() => p.C_CreateObject(s, [{ type: K.CKA_CLASS, value: K.CKO_SECRET_KEY }, { type: K.CKA_KEY_TYPE, value: K.CKK_GENERIC_SECRET }, { type: K.CKA_TOKEN, value: false }, { type: K.CKA_SIGN, value: true }, { type: K.CKA_VERIFY, value: true }, { type: K.CKA_VALUE, value: kv }]));
      const data = Buffer.from(`data ${app}`);
      op(() => p.C_SignInit(s, { mechanism: K.CKM_SHA256_HMAC }, mk));
      const mac = op(() => p.C_Sign(s, data, Buffer.alloc(32)));
      check(mac.equals(createHmac('sha256', kv).update(data).digest()), 'HMAC-SHA256 value');
      op(() => p.C_VerifyInit(s, { mechanism: K.CKM_SHA256_HMAC }, mk));
      check(op(() => p.C_Verify(s, data, mac)) === true, 'verify of a good MAC');
      // A generated key: sign, then verify; a tampered MAC is CKR_SIGNATURE_INVALID.
      const gk = op(() => p.C_GenerateKey(s, { mechanism: K.CKM_GENERIC_SECRET_KEY_GEN }, [{ type: K.CKA_CLASS, value: K.CKO_SECRET_KEY }, { type: K.CKA_KEY_TYPE, value: K.CKK_GENERIC_SECRET }, { type: K.CKA_VALUE_LEN, value: 32 }, { type: K.CKA_TOKEN, value: false }, { type: K.CKA_SIGN, value: true }, { type: K.CKA_VERIFY, value: true }]));
      op(() => p.C_SignInit(s, { mechanism: K.CKM_SHA256_HMAC }, gk));
      const gmac = Buffer.from(op(() => p.C_Sign(s, data, Buffer.alloc(32))));
      op(() => p.C_VerifyInit(s, { mechanism: K.CKM_SHA256_HMAC }, gk));
      check(op(() => p.C_Verify(s, data, gmac)) === true, 'verify under a generated key');
      gmac[0] ^= 1;
      op(() => p.C_VerifyInit(s, { mechanism: K.CKM_SHA256_HMAC }, gk));
      let tampered;
      try {
        tampered = op(() => p.C_Verify(s, data, gmac));
      } catch (e) {
        tampered = code(e);
      }
      check(tampered === 'CKR_SIGNATURE_INVALID' || tampered === false, `verify of a tampered MAC: ${tampered}`);
      // Random: 32 bytes, never seen before in this thread.
      const rnd = op(() => p.C_GenerateRandom(s, Buffer.alloc(32)));
      const h = createHash('sha256').update(rnd).digest('hex');
      check(!seen.has(h) && !rnd.equals(Buffer.alloc(32)), 'random bytes repeat');
      seen.add(h);
      for (const o of [...objs, mk, gk]) op(() => p.C_DestroyObject(s, o));
      check(op(() => find(p, s, [{ type: K.CKA_APPLICATION, value: app }])).length === 0, 'objects left after destroy');
      op(() => p.C_CloseSession(s));
      stats.iterations++;
    }
    op(() => p.C_Logout(anchor));
    op(() => p.C_CloseSession(anchor));
    p.C_Finalize();
  } catch (e) {
    stats.errors.push(`${e && e.message ? e.message : String(e)} (iteration ${stats.iterations})`);
  }
  return stats;
}

async function run([client, pin, threads, ms, tag]) {
  const t0 = Date.now();
  const results = await Promise.all(
    Array.from({ length: Number(threads) }, (_, id) => {
      const w = new Worker(new URL(import.meta.url), { workerData: { client, pin, ms: Number(ms), tag, id } });
      return new Promise((resolve) => {
        w.once('message', resolve);
        w.once('error', (e) => resolve({ id, iterations: 0, ops: 0, kept: 0, errors: [`thread failed: ${e.message}`] }));
        w.once('exit', (c) => c !== 0 && resolve({ id, iterations: 0, ops: 0, kept: 0, errors: [`thread exited ${c}`] }));
      });
    }),
  );
  const elapsedMs = Date.now() - t0;
  console.log(JSON.stringify({ pid: process.pid, elapsedMs, threads: results }));
}

function count([client, pin, tag]) {
  const p = library(client);
  const s = p.C_OpenSession(slotOf(p), RW);
  p.C_Login(s, K.CKU_USER, pin);
  const found = find(p, s, [{ type: K.CKA_CLASS, value: K.CKO_DATA }, { type: K.CKA_APPLICATION, value: tag }]);
  const labels = found.map((h) => p.C_GetAttributeValue(s, h, [{ type: K.CKA_LABEL }])[0].value.toString());
  p.C_CloseSession(s);
  p.C_Finalize();
  console.log(JSON.stringify({ count: found.length, distinct: new Set(labels).size }));
}

if (!isMainThread) parentPort.postMessage(thread(workerData));
else {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'run') await run(rest);
  else if (mode === 'count') count(rest);
  else throw new Error(`mode must be run or count, not ${mode}`);
}
