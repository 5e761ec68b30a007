/**
 * The simulated device's boot and serve loop, shared by the worker-thread and child-process
 * entries: builds the firmware's Platform (node:crypto randomness, Date.now, the vault's
 * PKCS#11 token, PKCS#11 v2.40, as `Pkcs11Token`: the emulator token by default or SoftHSM2,
 * opened by hsm/tokens/open.ts; this partition's NVRAM as token data objects, or a file),
 * loads the firmware module by path, calls its `createEnclave`, then hands it requests in arrival
 * order (the firmware's `Device` takes them one at a time: enclave/api/device.ts).
 *
 * NVRAM: `nvram: 'file'` (the default, both tokens) keeps the partition's region in the device's
 * own file `nvram-<partition>.bin` in the data folder (hsm/nvram-file.ts: two checksummed slots,
 * fdatasync per write), with the same durability as the token's store and the same trust (the
 * emulator token's store is a host file too); one write costs a slot write and an fdatasync.
 * `nvram: 'token'` keeps it in two CKO_DATA objects of the token (hsm/nvram-token.ts), so that
 * attempt counters and rollback state live where the keys do, as on a real HSM; every write is a
 * destroy + create of a data object (the emulator re-encodes and fsyncs its whole store, twice).
 * A data folder whose partition already keeps its NVRAM in token objects (made before 'file'
 * was the default) and has no NVRAM file goes on using the token when `nvram` is not given.
 *
 * Messages with the host: enclave/api/device.ts `ToDevice` / `FromDevice`, each request to the
 * firmware's `Device.request` as it arrives.
 *
 * Failpoints: `platform.failpoint(name)` is a no-op unless `config.failpoint` names it; at that
 * hit (the `failpointHit`-th, default the first) the device dies at once: SIGKILL of its own
 * process in child-process mode, an immediate thread exit (code 137) in worker mode.
 */
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Platform } from '../enclave/platform.ts';
import { wholeBuffer } from '../enclave/api/device.ts';
import type { Device, DeviceConfig, FromDevice, ToDevice } from '../enclave/api/device.ts';
import { decodeAuthConfig } from '../enclave/api/auth.ts';
import { pooledRandom } from '../enclave/opaque/bytes.ts';
import { Pkcs11Token } from '../enclave/token-pkcs11.ts';
import { provisionedProfile } from '../enclave/token-profiles.ts';
import { NVRAM_REGION_BYTES } from '../enclave/vault/nvram-state.ts';
import { DEFAULT_TOKEN_KIND, TOKEN_KINDS, isTokenKind } from './tokens/backends.ts';
import type { TokenKind } from './tokens/backends.ts';
import { openVaultToken } from './tokens/open.ts';
import { checkPinSource, pinRefusal, pinSourceOrDefault } from './tokens/token-pins.ts';
import { FileNvram } from './nvram-file.ts';
import { TokenNvram, nvramLabel } from './nvram-token.ts';

export const DEFAULT_FIRMWARE = fileURLToPath(new URL('../enclave/main.ts', import.meta.url));
export const nvramFileName = (partition: number) => `nvram-${partition}.bin`;

/**
 * A DeviceConfig whose token names a backend this device has. `deviceNotes`: print the device's
 * start note (the token profile line, `bootFirmware`) to stderr; the host's channel sets it
 * (host/channel/channel.ts ChannelOptions `deviceNotes`, which `bkv serve` turns on), and without
 * it a device starts silently, as library and test vaults do.
 */
export type CheckedConfig = DeviceConfig & { token?: TokenKind; deviceNotes?: boolean };

/** The Platform this device gives its firmware (the failpoint hook is a device extra). */
export type HsmPlatform = Platform & { failpoint?: (name: string) => void };

/** How a device entry talks to its host and ends itself. */
export interface Transport {
  send(msg: FromDevice, transfer?: ArrayBuffer[]): void;
  onMessage(fn: (msg: unknown) => void): void;
  /** Ends the device after what was sent has left. */
  exit(code: number): void;
  /** Dies now, as from a power cut: nothing after this runs. */
  crash(): never;
}

export function checkConfig(c: unknown): CheckedConfig {
  const cfg = c as CheckedConfig;
  if (!cfg || typeof cfg !== 'object') throw new Error('device config: expected an object');
  if (typeof cfg.dataDir !== 'string' || cfg.dataDir === '') throw new Error('device config: dataDir missing');
  if (!Number.isInteger(cfg.partitions) || cfg.partitions < 1 || cfg.partitions > 65535) {
    throw new Error(`device config: partitions must be 1..65535, got ${cfg.partitions}`);
  }
  if (!Number.isInteger(cfg.partition) || cfg.partition < 0 || cfg.partition >= cfg.partitions) {
    throw new Error(`device config: partition ${cfg.partition} out of 0..${cfg.partitions - 1}`);
  }
  if (cfg.token !== undefined && !isTokenKind(cfg.token)) throw new Error(`device config: token must be ${TOKEN_KINDS.map((k) => `'${k}'`).join(' or ')}, got ${String(cfg.token)}`);
  if (cfg.tokenPins !== undefined) checkPinSource(cfg.tokenPins);
  if (cfg.nvram !== undefined && cfg.nvram !== 'token' && cfg.nvram !== 'file') throw new Error(`device config: nvram must be 'token' or 'file', got ${String(cfg.nvram)}`);
  if (cfg.deviceNotes !== undefined && typeof cfg.deviceNotes !== 'boolean') throw new Error(`device config: deviceNotes must be a boolean, got ${String(cfg.deviceNotes)}`);
  if (cfg.operatorKeyHash !== undefined && !/^[0-9a-f]{64}$/i.test(cfg.operatorKeyHash)) {
    throw new Error('device config: operatorKeyHash must be 64 hex digits');
  }
  if (cfg.auth !== undefined && (typeof cfg.auth !== 'string' || !/^[A-Za-z0-9_-]+$/.test(cfg.auth))) throw new Error('device config: auth must be base64url');
  return cfg;
}

/**
 * The partition's NVRAM: `cfg.nvram` when given; otherwise the file, unless the data folder has
 * no NVRAM file for this partition and its token holds the partition's NVRAM objects (a folder
 * provisioned with token NVRAM before 'file' became the default): then the token, as before.
 */
export function openNvram(cfg: CheckedConfig, token: Pkcs11Token, size: number): FileNvram | TokenNvram {
  const file = path.join(cfg.dataDir, nvramFileName(cfg.partition));
  const label = nvramLabel(cfg.partition);
  let kind = cfg.nvram;
  if (kind === undefined) {
    kind = 'file';
    if (!fs.existsSync(file) && (token.readData(`${label}/0`).length > 0 || token.readData(`${label}/1`).length > 0)) kind = 'token';
  }
  return kind === 'file' ? new FileNvram(file, { size }) : new TokenNvram(token, label, size);
}

export function buildPlatform(cfg: CheckedConfig, crash: () => never): HsmPlatform {
  fs.mkdirSync(cfg.dataDir, { recursive: true });
  const pins = pinSourceOrDefault(cfg.dataDir, cfg.tokenPins);
  const opened = openVaultToken(cfg.dataDir, cfg.token ?? DEFAULT_TOKEN_KIND, { pins, log: (line) => console.error(`bkv device ${cfg.partition}: ${line}`) });
  let token: Pkcs11Token;
  try {
    token = new Pkcs11Token({
      module: opened.module,
      label: opened.label,
      userPin: opened.userPin,
      exclusive: opened.exclusive,
      lockObjectStore: opened.lockObjectStore,
      profiles: opened.profiles,
    });
  } catch (e) {
    throw pinRefusal(e, pins) ?? e; // a wrong or locked user PIN: a TokenPinError that says so
  }
  const size = cfg.nvramSize ?? NVRAM_REGION_BYTES;
  const platform: HsmPlatform = {
    random: pooledRandom((b) => void randomFillSync(b)),
    now: () => Date.now(),
    nvram: openNvram(cfg, token, size),
    token,
    partition: cfg.partition,
    partitions: cfg.partitions,
  };
  if (cfg.operatorKeyHash !== undefined) platform.operatorKeyHash = Uint8Array.from(Buffer.from(cfg.operatorKeyHash, 'hex'));
  if (cfg.auth !== undefined) platform.auth = decodeAuthConfig(Uint8Array.from(Buffer.from(cfg.auth, 'base64url')));
  let hits = 0;
  const target = cfg.failpoint;
  const hit = cfg.failpointHit ?? 1;
  platform.failpoint = (name: string) => {
    if (target !== undefined && name === target && ++hits >= hit) crash();
  };
  return platform;
}

export async function bootFirmware(cfg: CheckedConfig, platform: HsmPlatform): Promise<Device> {
  const file = cfg.firmware ?? DEFAULT_FIRMWARE;
  const mod = (await import(pathToFileURL(file).href)) as { createEnclave?: unknown };
  if (typeof mod.createEnclave !== 'function') throw new Error(`firmware ${file} exports no createEnclave function`);
  const enclave = (await (mod.createEnclave as (p: Platform) => Promise<Device>)(platform)) as Device | undefined;
  if (!enclave || typeof enclave.request !== 'function') throw new Error(`firmware ${file}: createEnclave returned no request()`);
  if (cfg.partition === 0 && cfg.deviceNotes === true) {
    // Which firmware token profile the vault's keys are of (enclave/token-profiles.ts), once per
    // start of the vault's first device, for its operator (`bkv serve`).
    let profile: string;
    try {
      profile = provisionedProfile(platform.token) ?? 'none (no keys: zeroized)';
    } catch (e) {
      profile = `unreadable (${(e as Error).message})`;
    }
    console.error(`bkv device 0: token profile ${profile}; the token meets ${platform.token.profiles?.().join(', ') ?? 'gcm-ecdh'}`);
  }
  return enclave;
}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const detail = (e as { detail?: unknown }).detail;
    return `${e.name}: ${e.message}${typeof detail === 'string' ? ` (${detail})` : ''}`;
  }
  return String(e);
}

/** An ArrayBuffer holding exactly `b`, to transfer: `b`'s own when it spans all of it (the codec's output does), else a copy. */
function ownBuffer(b: Uint8Array): ArrayBuffer {
  const whole = wholeBuffer(b);
  if (whole) return whole;
  const out = new ArrayBuffer(b.byteLength);
  new Uint8Array(out).set(b);
  return out;
}

/**
 * Boots the firmware and serves the host until told to stop. Requests go to the firmware as they
 * arrive; the device's one queue is the firmware's own (enclave/api/device.ts, `Device`: one at a
 * time, in call order), so answers leave in that order too. `last` is only the latest request's
 * answer, which `stop` waits for.
 */
export function serve(config: unknown, t: Transport): void {
  let booted: Promise<Device | undefined>;
  try {
    const cfg = checkConfig(config);
    const platform = buildPlatform(cfg, () => t.crash());
    booted = bootFirmware(cfg, platform).then(
      (e) => {
        t.send({ t: 'ready' });
        return e;
      },
      (e: unknown) => {
        t.send({ t: 'boot-error', message: describeError(e) });
        t.exit(1);
        return undefined;
      },
    );
  } catch (e) {
    t.send({ t: 'boot-error', message: describeError(e) });
    t.exit(1);
    return;
  }
  let last: Promise<unknown> = booted;
  t.onMessage((raw) => {
    const msg = raw as ToDevice;
    if (msg?.t === 'req' && typeof msg.id === 'number' && msg.buf instanceof ArrayBuffer) {
      const { id, buf } = msg;
      last = booted.then(async (enclave) => {
        if (!enclave) return; // boot failed; the host fails its requests
        try {
          const res = await enclave.request(new Uint8Array(buf));
          if (!(res instanceof Uint8Array)) throw new Error('request() returned no bytes');
          const out = ownBuffer(res);
          t.send({ t: 'res', id, buf: out }, [out]);
        } catch (e) {
          t.send({ t: 'fail', id, message: describeError(e) });
        }
      });
    } else if (msg?.t === 'stop') {
      void last.then(() => t.exit(0));
    }
  });
}
