/**
 * A fleet member's device running the vault (docs/fleet-vault.md, "What the host of a member
 * runs"): the member's fleet core (enclave/fleet/member.ts, booted from state.bin), the vault's
 * seat on it (enclave/vault/fleet-seat.ts) and the vault's firmware (enclave/main.ts
 * `createEnclave(platform, { fleet: seat })`) on the member's vault token, with its NVRAM in the
 * member's folder (`nvram-0.bin`, hsm/nvram-file.ts). The host gets:
 *   - `device`: the enclave's one entry, request bytes in, response bytes out (enclave/api/device.ts);
 *   - `receive(msg, now)`, `tick(now)`: the other members' sealed messages and the timer, into the
 *     fleet core; `takeOutbox()`: what the member sends, sealed, with its receiver;
 *   - `fate(epoch)` of the leader's own batches and `nextToApply()` (a committed batch its vault
 *     has not applied) as plain data, and `status()`.
 * No key, secret or message key leaves. The fleet state is written to state.bin before anything
 * that depends on it leaves (the Member's persist; hsm/durable-file.ts).
 *
 * The vault's keys are the fleet's: `memberVaultKey` (device.ts) imported them into the token or
 * checked that the token's are this fleet's before this device opens it. The vault's own boot
 * (enclave/vault/keys.ts ensureTokenKeys without the fleet's root) would generate a P-256 key
 * pair on a token with EC, which no other member holds; so the token this device hands the
 * firmware offers no EC key generation, and the P-256 server key derives from bkv-derive as it
 * does on every member (the path tokens without EC take: docs/fleet-vault.md).
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { AuthConfig } from '../../enclave/api/auth.ts';
import type { Device, TokenPinSource } from '../../enclave/api/device.ts';
import { MAX_OPS_PER_ENTRY } from '../../enclave/fleet/codec.ts';
import { decodeDurable, encodeDurable } from '../../enclave/fleet/durable.ts';
import { genesis, type DurableState } from '../../enclave/fleet/log.ts';
import { Member } from '../../enclave/fleet/member.ts';
import { createEnclave } from '../../enclave/main.ts';
import { pooledRandom } from '../../enclave/opaque/bytes.ts';
import type { Platform } from '../../enclave/platform.ts';
import type { Token } from '../../enclave/token.ts';
import { Pkcs11Token } from '../../enclave/token-pkcs11.ts';
import { FleetSeat, type Fate } from '../../enclave/vault/fleet-seat.ts';
import { NVRAM_REGION_BYTES } from '../../enclave/vault/nvram-state.ts';
import { writeFileDurably } from '../durable-file.ts';
import { FileNvram } from '../nvram-file.ts';
import { DEFAULT_TOKEN_KIND, type TokenKind } from '../tokens/backends.ts';
import { openVaultToken } from '../tokens/open.ts';
import { pinRefusal, pinSourceOrDefault } from '../tokens/token-pins.ts';
import type { CharterState } from '../../enclave/fleet/messages.ts';
import { FILES, FleetDeviceError, memberStatus, opJson, provisionedHash, receiverOf, type DeviceStatus } from './device.ts';
import { CharterDesk, type JoinFile } from './charters.ts';
import { readMemberSecrets } from './member-secrets.ts';

/** The vault's NVRAM file in the member's folder (the single vault's partition 0 name: hsm/runner.ts). */
export const VAULT_NVRAM_FILE = 'nvram-0.bin';
/**
 * Committed entries a member's log keeps behind its commit point (enclave/fleet/log.ts compact):
 * a member that was down catches up by entries while the others hold the batches it missed;
 * further behind it gets a snapshot, which carries no vault rows, and its host catches it up by
 * stored rows (docs/fleet-vault.md "Catch-up with millions of records").
 */
export const VAULT_LOG_KEEP = 32;

export type { Fate };

/** A committed batch of the log, as the host hands it back in an Apply (plain data, copied). */
export interface BatchToApply {
  readonly epoch: number;
  readonly ops: { readonly recordId: Uint8Array; readonly change: number; readonly base: number; readonly limit: number }[];
  readonly writes: { readonly recordId: Uint8Array; readonly blob: Uint8Array }[];
}

export interface VaultDeviceStatus extends DeviceStatus {
  /** The last batch this member's vault committed (as leader) or applied (as follower). */
  readonly appliedBatch: number;
  /**
   * The log folded batches this vault never applied (a snapshot or a re-form): it neither applies
   * nor leads (leading a view, it hands the lead on) until its host copies rows from another
   * member (catch-up by stored rows: host/fleet/row-copy.ts).
   */
  readonly behind: boolean;
}

export interface VaultDeviceOptions {
  readonly dir: string;
  readonly member: number;
  readonly n: number;
  readonly viewChangeTicks: number;
  readonly reformTicks: number;
  readonly resendTicks: number;
  /** The issuers whose tokens authorize client operations (the fleet's, from fleet.json). */
  readonly auth: AuthConfig;
  /** SHA-256 of the operator secret (zeroization). */
  readonly operatorKeyHash?: Uint8Array;
  /** The operator secret, for charter changes (device.ts DeviceOptions `operatorSecret`). */
  readonly operatorSecret?: Uint8Array;
  /** The token backend (hsm/tokens/backends.ts); default the emulator in the member's folder. */
  readonly token?: TokenKind;
  readonly pins?: TokenPinSource;
  readonly log?: (line: string) => void;
}

/** The token as the firmware sees it on a fleet member: no EC key generation (the header says why). */
function fleetMemberToken(t: Pkcs11Token): Token {
  return new Proxy(t, {
    get(target, k) {
      if (k === 'generateEcKeyPair') return undefined;
      const v = Reflect.get(target, k, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as unknown as Token;
}

export class FleetVaultDevice {
  private outbox: { to: number; msg: Uint8Array }[] = [];
  private journaled: number;

  private constructor(
    private readonly o: VaultDeviceOptions,
    private readonly member: Member,
    private readonly seat: FleetSeat,
    private readonly desk: CharterDesk,
    /** The enclave's entry: request bytes in, response bytes out. */
    readonly device: Device,
    private readonly token: Pkcs11Token,
    private readonly nvram: FileNvram,
    private readonly finalize: () => void,
    /** The seat's clock: the host's tick count, as the device last heard it. */
    private readonly clock: { now: number },
  ) {
    this.journaled = member.durable.commit;
  }

  /** Boots the device from the member's folder (the ceremony done, the token holding the fleet's keys: memberVaultKey). */
  static async open(o: VaultDeviceOptions, now: number): Promise<FleetVaultDevice> {
    const secrets = readMemberSecrets(o.dir, o.member);
    if (!secrets) throw new FleetDeviceError(`${join(o.dir, FILES.secrets)}: no secrets: the key ceremony has not finished`);
    const stateFile = join(o.dir, FILES.state);
    const state = existsSync(stateFile) ? decodeDurable(new Uint8Array(readFileSync(stateFile)), o.member, o.n) : genesis(o.member, secrets.charter.identities);
    const persist = (s: DurableState) => writeFileDurably(stateFile, encodeDurable(s));
    const member = new Member(state, { random: (k) => new Uint8Array(randomBytes(k)), persist }, { n: o.n, secrets, viewChangeTicks: o.viewChangeTicks, reformTicks: o.reformTicks, resendTicks: o.resendTicks, maxBatch: MAX_OPS_PER_ENTRY, keep: VAULT_LOG_KEEP }, now);
    const clock = { now };
    const seat = new FleetSeat(member, () => clock.now);
    const pins = pinSourceOrDefault(o.dir, o.pins);
    const opened = openVaultToken(o.dir, o.token ?? DEFAULT_TOKEN_KIND, { pins, ...(o.log && { log: o.log }) });
    const finalize = () => {
      try {
        opened.module.C_Finalize();
      } catch {
        // already finalized
      }
    };
    let token: Pkcs11Token;
    try {
      token = new Pkcs11Token({ module: opened.module, label: opened.label, userPin: opened.userPin, exclusive: opened.exclusive, lockObjectStore: opened.lockObjectStore, profiles: opened.profiles });
    } catch (e) {
      finalize();
      throw pinRefusal(e, pins) ?? e;
    }
    const nvram = new FileNvram(join(o.dir, VAULT_NVRAM_FILE), { size: NVRAM_REGION_BYTES });
    const platform: Platform = {
      random: pooledRandom((b) => void randomFillSync(b)),
      now: () => Date.now(),
      nvram,
      token: fleetMemberToken(token),
      partition: 0,
      partitions: 1,
      auth: o.auth,
      ...(o.operatorKeyHash && { operatorKeyHash: o.operatorKeyHash }),
    };
    let device: Device;
    try {
      device = await createEnclave(platform, { fleet: seat });
    } catch (e) {
      nvram.close();
      token.close();
      finalize();
      throw e;
    }
    return new FleetVaultDevice(o, member, seat, new CharterDesk(member, secrets, o.operatorSecret ?? null, provisionedHash(o.dir)), device, token, nvram, finalize, clock);
  }

  /** A message from the network; then, leading, the approved charter change proposed once its turn comes (charters.ts). */
  receive(msg: Uint8Array, now: number): void {
    this.clock.now = now;
    this.seat.receive(msg);
    this.proposeCharter(now);
    this.journal();
  }

  tick(now: number): void {
    this.clock.now = now;
    this.seat.tick();
    this.proposeCharter(now);
    this.journal();
  }

  private proposeCharter(now: number): void {
    const out = this.desk.propose(now);
    if (out) this.seat.takeOutput(out);
  }

  /** The operator's approval of a charter change (device.ts FleetDevice.approveCharter). */
  approveCharter(change: CharterState, approval: Uint8Array): void {
    this.desk.approve(change, approval);
  }

  /** The operator's approval of a re-form without some members (device.ts FleetDevice.approveReform); its messages go out with the next outbox. */
  approveReform(fromEpoch: number, without: readonly number[], kept: ReadonlyMap<number, Uint8Array>, approval: Uint8Array, now: number): void {
    this.seat.takeOutput(this.desk.approveReform(fromEpoch, without, kept, approval, now));
  }

  /** The grant to an added member (device.ts FleetDevice.grantJoiner). */
  grantJoiner(joiner: number): Promise<JoinFile | null> {
    return this.desk.grant(joiner);
  }

  /** The sealed messages the member sends (after a receive, a tick, or a batch it proposed), with their receiver. */
  takeOutbox(): { to: number; msg: Uint8Array }[] {
    for (const msg of this.seat.takeOutbox()) {
      const to = receiverOf(msg);
      if (to !== null) this.outbox.push({ to, msg });
    }
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** Refusals of messages from other members since the last call, by fault name. */
  takeFaults(): string[] {
    return this.seat.faults.splice(0).map((f) => f.name);
  }

  /** What became of this member's own batch `epoch`: committed, pending, or lost to a view change. */
  fate(epoch: number): Fate {
    return this.seat.fate(epoch);
  }

  /** The next committed batch of the log the vault has not applied (a follower's Apply), copied; null when none. */
  nextToApply(): BatchToApply | null {
    const b = this.seat.nextToApply();
    if (!b) return null;
    return {
      epoch: b.epoch,
      ops: b.ops.map((op) => ({ recordId: Uint8Array.from(op.recordId), change: op.change, base: op.base, limit: op.limit })),
      writes: b.writes.map((w) => ({ recordId: Uint8Array.from(w.recordId), blob: Uint8Array.from(w.blob) })),
    };
  }

  /** Whether this member's written log names batch `epoch` committed (FleetSeat.namesCommitted): a copy of stored rows at that batch can be checked. */
  namesCommitted(epoch: number): boolean {
    return this.seat.namesCommitted(epoch);
  }

  isLeader(): boolean {
    return this.member.isLeader();
  }

  /** Leading, it heard fewer than a majority for its view-change wait (Member.cutOff). */
  cutOff(): boolean {
    return this.member.cutOff;
  }

  status(): VaultDeviceStatus {
    return {
      ...memberStatus(this.member, this.desk),
      appliedBatch: this.seat.appliedEpoch,
      behind: this.seat.behind(),
    };
  }

  /** The NVRAM file and the token closed; the fleet state is on disk after every write. */
  close(): void {
    try {
      this.nvram.close();
      this.token.close();
    } finally {
      this.finalize();
    }
  }

  /** history.jsonl: the entries this member learned committed (as FleetDevice keeps it). */
  private journal(): void {
    const s = this.member.durable;
    if (s.commit <= this.journaled) return;
    const lines = s.entries.filter((e) => e.index > this.journaled && e.index <= s.commit).map((e) => JSON.stringify({ index: e.index, hash: bytesToHex(e.hash), ops: e.ops.map(opJson) }) + '\n');
    if (lines.length) appendFileSync(join(this.o.dir, FILES.history), lines.join(''));
    this.journaled = s.commit;
  }
}

/** The most ops a vault batch of a fleet member carries: one log entry's bound (enclave/fleet/codec.ts MAX_OPS_PER_ENTRY). */
export const MAX_OPS_PER_BATCH = MAX_OPS_PER_ENTRY;
