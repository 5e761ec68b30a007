/**
 * A fleet of vaults in one process (docs/fleet-vault.md, slice 1): three members, each its own
 * enclave, NVRAM, SQLite store and fleet core (the vault's FleetSeat, enclave/vault/fleet-seat.ts),
 * over a network this file simulates from a seed: it delays, drops, duplicates and reorders the
 * members' sealed messages, and cuts members off. Each member's host is played here:
 * - a leader's engine (host/vault/engine.ts) persists a batch only once the fleet committed the
 *   entry that carries it (its store's applyBatch waits for the seat's `fate`), then Commits;
 * - every member applies the committed batches its log carries and its vault has not (Apply,
 *   persist, Commit), in order.
 * The token is one for all members (it stands in for the fleet keys the ceremony puts into each
 * member's token). The clients reach the member that leads, and try again elsewhere when it can
 * not take their operation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createEnclave } from '../../enclave/main.ts';
import { Handling } from '../../enclave/api/codes.ts';
import { Member } from '../../enclave/fleet/member.ts';
import { genesis, type DurableState } from '../../enclave/fleet/log.ts';
import { readHeader } from '../../enclave/fleet/wire.ts';
import { MAX_OPS_PER_ENTRY } from '../../enclave/fleet/codec.ts';
import { FleetSeat } from '../../enclave/vault/fleet-seat.ts';
import { fastSuite } from '../../enclave/opaque/suites-fast.ts';
import { identityKsf } from '../../enclave/opaque/ksf.ts';
import { DEFAULT_KSF_BOUNDS, EscrowClient } from '../../client/escrow.ts';
import type { Relay } from '../../client/escrow.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import type { RecordStore } from '../../host/storage/types.ts';
import { EnclaveCallError, PartitionEngine } from '../../host/vault/engine.ts';
import { fuzzSecrets } from '../fuzz/targets/fleet-wire.ts';
import { testIssuer, type TestIssuer } from './auth.ts';
import { testPlatform, type TestPlatform } from './platform.ts';
import { CONTEXT } from './vault-harness.ts';

export interface VaultMember {
  readonly id: number;
  readonly platform: TestPlatform;
  readonly store: RecordStore;
  /** The member's durable fleet state (its NVRAM and storage for the fleet core). */
  disk: DurableState;
  seat: FleetSeat | null;
  engine: PartitionEngine | null;
  up: boolean;
  /** Batches this member applied as a follower. */
  applied: number;
  /** Apply refusals and failures of its host's apply loop. */
  applyErrors: string[];
  /** Its host does not apply committed batches (a test drives Apply itself). */
  pausedApply?: boolean;
}

interface InFlight {
  at: number;
  to: number;
  msg: Uint8Array;
}

/** A small seeded generator (mulberry32): the network's choices reproduce from the seed. */
function rngOf(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface NetOptions {
  /** Chance that a message is dropped. */
  drop?: number;
  /** Chance that a message is delivered twice. */
  dup?: number;
  /** Delivery delay in ticks, 0..maxDelay (different delays reorder). */
  maxDelay?: number;
}

export class FleetVaultWorld {
  readonly members: VaultMember[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'bkv-fleet-vault-'));
  now = 0;
  issuer!: TestIssuer;
  hpkePublicKey!: Uint8Array;
  /** Members cut off from every other (their messages in and out are lost). */
  readonly cut = new Set<number>();
  private flight: InFlight[] = [];
  private readonly rng: () => number;
  private driver: Promise<void> | null = null;
  private stopped = false;
  private applying = new Set<number>();
  delivered = 0;
  dropped = 0;

  private constructor(
    readonly n: number,
    seed: number,
    readonly net: NetOptions,
  ) {
    this.rng = rngOf(seed);
  }

  static async open(opts: { n?: number; seed?: number; net?: NetOptions } = {}): Promise<FleetVaultWorld> {
    const w = new FleetVaultWorld(opts.n ?? 3, opts.seed ?? 1, opts.net ?? {});
    w.issuer = await testIssuer();
    let token: TestPlatform['token'] | undefined;
    let clock: TestPlatform['clock'] | undefined;
    let tokenKind: TestPlatform['tokenKind'] | undefined;
    for (let id = 0; id < w.n; id++) {
      const platform = testPlatform({ token, tokenKind });
      platform.auth = w.issuer.config;
      if (clock) platform.clock = clock;
      token = platform.token;
      tokenKind = platform.tokenKind;
      clock = platform.clock;
      const store = await openSqliteStore(join(w.dir, `member-${id}.db`));
      w.members.push({ id, platform, store, disk: genesis(id, fuzzSecrets(id).charter.identities), seat: null, engine: null, up: false, applied: 0, applyErrors: [] });
    }
    for (const m of w.members) await w.boot(m.id);
    w.driver = w.drive();
    await w.until(() => w.leader() !== null, 'the fleet to form');
    return w;
  }

  /** Boots member `id` from what it holds durably: its fleet state, NVRAM and store (a new incarnation). */
  async boot(id: number): Promise<void> {
    const m = this.members[id]!;
    const member = new Member(m.disk, { random: (k) => new Uint8Array(randomBytes(k)), persist: (d) => (m.disk = d) }, { n: this.n, secrets: fuzzSecrets(id), maxBatch: MAX_OPS_PER_ENTRY, keep: 8 }, this.now);
    m.seat = new FleetSeat(member, () => this.now);
    m.up = true;
    await this.loadVault(id);
  }

  /**
   * A new vault on the member's seat: the device reloads its vault from NVRAM and the stored rows
   * (as after an engine failure, or once its host copied rows to catch up) while its fleet core
   * runs on, with what it learned in RAM (the commit point is not written at every commit).
   */
  async loadVault(id: number): Promise<void> {
    const m = this.members[id]!;
    const seat = m.seat!;
    void m.engine?.close();
    m.engine = null;
    const device = await createEnclave(m.platform, { fleet: seat });
    // The leader's host persists a batch only once the fleet holds it on a majority.
    const store = new Proxy(m.store, {
      get: (t, k) => {
        if (k === 'applyBatch') {
          return async (...args: Parameters<RecordStore['applyBatch']>) => {
            const epoch = args[1];
            await this.until(() => !m.up || m.seat !== seat || seat.fate(epoch) !== 'pending', `batch ${epoch} of member ${id} to commit or be lost`, 20_000);
            if (!m.up || m.seat !== seat || seat.fate(epoch) !== 'committed') throw new Error(`member ${id}: the fleet did not commit batch ${epoch}`);
            return t.applyBatch(...args);
          };
        }
        const v = (t as unknown as Record<string | symbol, unknown>)[k];
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    const engine = new PartitionEngine(device, store, 0, 10_000, MAX_OPS_PER_ENTRY);
    m.engine = engine;
    engine.onFailure = (e) => {
      if (process.env.BKV_FLEET_DEBUG) console.error(`member ${id} engine failed`, e);
      // a batch the fleet lost (a view change): the vault reloads, as a host restarts its partition
      if (m.engine === engine && m.up) void this.loadVault(id).catch((err: unknown) => m.applyErrors.push(`reload: ${String(err)}`));
    };
    const info = await engine.start();
    this.hpkePublicKey = info.hpkePublicKey;
  }

  /** A crash: everything in RAM is gone (sessions, the fleet core's incarnation); disk, NVRAM and store stay. */
  kill(id: number): void {
    const m = this.members[id]!;
    m.up = false;
    const e = m.engine;
    m.engine = null;
    m.seat = null;
    void e?.close();
  }

  async restart(id: number): Promise<void> {
    this.kill(id);
    await this.boot(id);
  }

  /**
   * Catch-up by stored rows (docs/fleet-vault.md): member `to`'s host copies every row of member
   * `from`'s store over its own (rows `from` no longer holds become empty: deleted), then reboots
   * its device, which takes them only as the fleet's latest committed state its log names.
   */
  async copyRows(from: number, to: number): Promise<void> {
    const src = new Map<string, { recordId: Uint8Array; blob: Uint8Array }>();
    for await (const chunk of this.members[from]!.store.scan(0, 512)) for (const r of chunk) src.set(Buffer.from(r.recordId).toString('hex'), { recordId: r.recordId, blob: r.blob });
    const writes = [...src.values()];
    for await (const chunk of this.members[to]!.store.scan(0, 512)) {
      for (const r of chunk) if (!src.has(Buffer.from(r.recordId).toString('hex'))) writes.push({ recordId: r.recordId, blob: new Uint8Array(0) });
    }
    const epoch = (await this.members[from]!.store.appliedEpoch(0)) ?? 0;
    for (let i = 0; i < writes.length; i += 256) await this.members[to]!.store.applyBatch(0, epoch, writes.slice(i, i + 256), []);
  }

  leader(): VaultMember | null {
    return this.members.find((m) => m.up && m.seat?.member.isLeader() && !this.cut.has(m.id)) ?? null;
  }

  /** Waits (the network and the members' hosts running) until `cond` holds. */
  async until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Runs until every up member that is not cut off or behind has applied every committed batch of the leader. */
  async settle(): Promise<void> {
    await this.until(
      () => {
        const l = this.leader();
        if (!l) return false;
        const top = l.seat!.appliedEpoch;
        // a member that is behind (its log folded batches its vault never applied) waits for a catch-up by rows
        return this.members.every((m) => !m.up || this.cut.has(m.id) || m.seat!.behind() || (m.seat!.appliedEpoch === top && m.seat!.nextToApply() === null));
      },
      'the members to settle',
    ).catch((e: unknown) => {
      // what each member is at, for the failure's story
      const at = this.members.map((m) => `m${m.id} ${m.up ? (m.seat ? `${m.seat.member.status} view ${m.seat.member.view} leader=${m.seat.member.isLeader()} cut=${this.cut.has(m.id)} behind=${m.seat.behind()} applied=${m.seat.appliedEpoch} next=${m.seat.nextToApply()?.epoch ?? 'none'} commit=${m.seat.member.durable.commit}` : 'no seat') : 'down'}`);
      throw new Error(`${e instanceof Error ? e.message : String(e)}: ${at.join('; ')}`);
    });
  }

  private async drive(): Promise<void> {
    while (!this.stopped) {
      this.step();
      for (const m of this.members) if (m.up && !m.pausedApply && !this.applying.has(m.id)) void this.applyLoop(m);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** One tick: due messages delivered, every member's timers, what they send put in flight. */
  private step(): void {
    this.now++;
    const due = this.flight.filter((f) => f.at <= this.now);
    this.flight = this.flight.filter((f) => f.at > this.now);
    for (const f of due) {
      const m = this.members[f.to];
      if (!m?.up || !m.seat || this.cut.has(f.to)) continue;
      this.delivered++;
      m.seat.receive(f.msg);
    }
    for (const m of this.members) if (m.up && m.seat) m.seat.tick();
    for (const m of this.members) {
      if (!m.up || !m.seat) continue;
      for (const msg of m.seat.takeOutbox()) this.send(m.id, msg);
    }
  }

  private send(from: number, msg: Uint8Array): void {
    const to = readHeader(msg).to;
    if (this.cut.has(from) || this.cut.has(to) || this.rng() < (this.net.drop ?? 0)) {
      this.dropped++;
      return;
    }
    const copies = this.rng() < (this.net.dup ?? 0) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.flight.push({ at: this.now + 1 + Math.floor(this.rng() * ((this.net.maxDelay ?? 0) + 1)), to, msg });
  }

  /** A member's host applies the committed batches its vault has not: Apply, persist, Commit, in order. */
  private async applyLoop(m: VaultMember): Promise<void> {
    this.applying.add(m.id);
    const engine = m.engine;
    try {
      for (;;) {
        const b = m.seat?.nextToApply();
        if (!b || !engine || m.engine !== engine) return;
        const stored = await m.store.getMany(0, b.writes.map((w) => w.recordId));
        let prepared;
        try {
          prepared = await engine.call({ type: 'Apply', epoch: b.epoch, ops: [...b.ops], writes: b.writes.map((w, i) => ({ recordId: w.recordId, stored: stored[i]?.blob ?? new Uint8Array(0), blob: w.blob })) });
        } catch (e) {
          // a batch of its own still pending in the vault (the engine commits it), or out of order: try on the next tick
          if (e instanceof EnclaveCallError && (e.code === Handling.BatchOutOfOrder || e.code === Handling.NoBatchPending)) return;
          throw e;
        }
        await m.store.applyBatch(0, b.epoch, prepared.writes, prepared.audit);
        await engine.call({ type: 'Commit', epoch: b.epoch });
        m.applied++;
      }
    } catch (e) {
      m.applyErrors.push(e instanceof Error ? e.message : String(e));
    } finally {
      this.applying.delete(m.id);
    }
  }

  /**
   * A client that sends each operation to the member that leads now; when that member can not
   * take it (it stopped leading, its batch was lost to a view change, it is behind), it asks
   * again, at most `tries` times.
   */
  async client(tries = 200): Promise<EscrowClient> {
    const relay: Relay = async (recordId, message) => {
      let last: unknown;
      for (let i = 0; i < tries; i++) {
        const l = this.leader();
        if (l?.engine) {
          try {
            return await l.engine.submit(recordId, message);
          } catch (e) {
            last = e;
          }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      throw last instanceof Error ? last : new Error('no member took the operation');
    };
    return new EscrowClient({
      relay,
      enclavePublicKey: this.hpkePublicKey,
      suite: await fastSuite('ristretto255-SHA512'),
      rng: (n) => new Uint8Array(randomBytes(n)),
      context: CONTEXT,
      ksf: identityKsf,
      ksfBounds: { ...DEFAULT_KSF_BOUNDS, allowIdentity: true },
      pacing: 'none',
      auth: (recordId) => this.issuer.token(recordId, this.members[0]!.platform.clock.t),
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.driver;
    for (const m of this.members) {
      await m.engine?.close();
      await m.store.close();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
