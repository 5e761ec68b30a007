/**
 * Fuzz target: the NVRAM state decoder (`decodeNvramState`, enclave/vault/nvram-state.ts) and an
 * enclave booting on the image. Input: one mode byte, then the region's contents (at most 256).
 *   mode bit 0 = 1: also boot an enclave on the image (the token holds the planted keys, so
 *                   images derived from a real one pass the key check), then answer Info and
 *                   try to load an empty store.
 * Oracle: the decoder returns null only for an empty or all-zero region, throws only EnclaveFault
 * NvramCorrupt, and a state it accepts re-encodes to the image (up to zero padding; an image of
 * layout 2, from before the issuer hash, is compared with the layout-2 encoding of the state); a
 * boot on any image (the device provisioned with the fuzz issuer set, lib/auth.ts) answers every
 * request with a decodable response, never lets an untyped exception reach its fault conversion,
 * never reports ready on an image whose key check is not the token's, nor on one that holds the
 * hash of another issuer set (a host can not swap the issuers a vault trusts).
 * Seeds: test/fuzz/seeds/nvram-state/ (a fresh state, one with an intent, a zeroized one, a
 * layout-2 image, and the image of a running canary vault).
 */
import { createHash } from 'node:crypto';
import { encodeAuthConfig } from '../../../enclave/api/auth.ts';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import { EnclaveFault, PlatformFault } from '../../../enclave/api/codes.ts';
import { HostRequests, HostResponses } from '../../../enclave/api/messages.ts';
import type { HostRequest } from '../../../enclave/api/messages.ts';
import { createEnclave } from '../../../enclave/main.ts';
import { decodeNvramState, encodeNvramState } from '../../../enclave/vault/nvram-state.ts';
import { LABEL_DERIVE, LABEL_OPRF, LABEL_SEAL } from '../../../enclave/vault/keys.ts';
import { FUZZ_AUTH, FUZZ_EPOCH_MS } from '../lib/auth.ts';
import { CanaryToken, drbg, FuzzNvram } from '../lib/canary.ts';
import { equalBytes, hex, typed, UntypedProbe, violation } from '../lib/oracle.ts';

export const name = 'nvram-state';
export const maxInputLength = 1 + 256;

let last: string | undefined;
const probe = UntypedProbe.install();
let bootSeq = 0;
let tokenKeyCheck: Uint8Array | null = null;
/** The NVRAM's fingerprint of the issuer set the boots are provisioned with (enclave/vault/vault.ts authHashOf). */
const AUTH_HASH = new Uint8Array(createHash('sha256').update(encodeAuthConfig(FUZZ_AUTH)).digest()).subarray(0, 16);

/** The key check of the planted token keys: what a fresh boot provisions into an empty region. */
export async function setup(): Promise<void> {
  const token = new CanaryToken(drbg('nvram-keycheck', 0));
  const nvram = new FuzzNvram(256);
  await createEnclave({ random: drbg('nvram-keycheck-platform', 0), now: () => FUZZ_EPOCH_MS, nvram, token, partition: 0, partitions: 1, auth: FUZZ_AUTH });
  tokenKeyCheck = decodeNvramState(nvram.read())!.keyCheck;
}

export function outcome(): string | undefined {
  return last;
}

export async function fuzz(data: Buffer | Uint8Array): Promise<void> {
  const input = new Uint8Array(data);
  const mode = input[0] ?? 0;
  const image = input.subarray(1, 257);
  const r = typed('decodeNvramState', () => decodeNvramState(image));
  let label: string;
  if (!r.ok) {
    if (!(r.error instanceof EnclaveFault) || r.error.code !== PlatformFault.NvramCorrupt) violation('wrong-error', `decodeNvramState failed with ${r.error.message}`);
    label = 'corrupt';
  } else if (r.value === null) {
    if (!image.every((x) => x === 0)) violation('oracle', 'decodeNvramState called a non-zero region unwritten');
    label = 'empty';
  } else {
    let enc = encodeNvramState(r.value);
    if (image[4] === 2) {
      // Layout 2 (no issuer hash, read as an all-zero one): its encoding is layout 3's without the last field.
      enc = enc.slice(0, enc.length - 16);
      enc[4] = 2;
    }
    if (!equalBytes(enc, image.subarray(0, enc.length)) || !image.subarray(enc.length).every((x) => x === 0)) {
      violation('round-trip', `an accepted NVRAM state does not re-encode to its image: ${hex(enc)} vs ${hex(image)}`);
    }
    label = `state:${r.value.flags}:${r.value.intent ? 'intent' : 'no-intent'}`;
  }
  if (mode & 1) {
    if (!tokenKeyCheck) await setup();
    const outcome = await boot(image);
    if (outcome.ready && r.ok && r.value && !equalBytes(r.value.keyCheck, tokenKeyCheck!)) {
      violation('wrong-keys', 'the enclave became ready on an NVRAM image provisioned for other token keys');
    }
    if (outcome.ready && r.ok && r.value && !r.value.authHash.every((x) => x === 0) && !equalBytes(r.value.authHash, AUTH_HASH)) {
      violation('auth-config-swapped', 'the enclave became ready on an NVRAM image provisioned with another issuer set');
    }
    label += `/${outcome.label}`;
  }
  last = label;
}

async function boot(image: Uint8Array): Promise<{ ready: boolean; label: string }> {
  const token = new CanaryToken(drbg('nvram-boot', bootSeq++));
  token.generateAesKey(LABEL_SEAL);
  token.generateHmacKey(LABEL_OPRF, 64);
  token.generateHmacKey(LABEL_DERIVE, 32);
  const nvram = new FuzzNvram(256);
  nvram.data = Uint8Array.from(image);
  const rng = drbg('nvram-boot-platform', bootSeq);
  probe.drain();
  const enclave = await createEnclave({ random: rng, now: () => FUZZ_EPOCH_MS, nvram, token, partition: 0, partitions: 1, auth: FUZZ_AUTH });
  const ask = async (req: HostRequest) => {
    const out = await enclave.request(encodeMessage(HostRequests, req));
    try {
      return decodeMessage(HostResponses, out);
    } catch (e) {
      violation('bad-response', `the enclave answered ${req.type} with bytes that do not decode: ${String(e)}`);
    }
  };
  const info = await ask({ type: 'Info' });
  const loaded = await ask({ type: 'LoadEnd' });
  const after = await ask({ type: 'Info' });
  probe.check('a boot on a fuzzed NVRAM image');
  const state = after.type === 'InfoResult' ? after.state : -1;
  return { ready: state === 0, label: `${info.type === 'InfoResult' ? info.state : info.type}:${loaded.type === 'Fault' ? `F${loaded.code}` : loaded.type}:${state}` };
}
