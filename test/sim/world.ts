/**
 * The simulated world of one schedule: every member of a fleet in one process, over a network and
 * a clock driven by one seed. The network drops, delays, duplicates, reorders, replays and
 * partitions; processes crash, restart from their disk or from an old image of it, and are
 * cloned (a second running copy of a member's disk). Clients send intents to any member. The
 * oracle (oracle.ts) checks the invariants after every step. Same seed, same options: the same
 * run, step for step.
 */
import { bytesToHex } from '@noble/hashes/utils.js';
import { genesis, recordsAt, type DurableState } from '../../enclave/fleet/log.ts';
import { Member, type BrokenRule, type Output } from '../../enclave/fleet/member.ts';
import type { Intent } from '../../enclave/fleet/rules.ts';
import { GENESIS_HASH, replicationKey, wireBytes, type Entry, type Envelope } from '../../enclave/fleet/wire.ts';
import { Oracle, type ProcView } from './oracle.ts';
import { Rng } from './rng.ts';

export const FAULTS = ['drop', 'duplicate', 'delay', 'replay', 'partition', 'crash', 'restore', 'clone'] as const;
export type FaultKind = (typeof FAULTS)[number];

export interface ScheduleOptions {
  readonly seed: number;
  /** Members: 3 or 5 (default: chosen by the seed). */
  readonly n?: 3 | 5;
  /** Ticks of faults, then `quiet` ticks without (default 240 + 60). */
  readonly steps?: number;
  readonly quiet?: number;
  readonly faults?: readonly FaultKind[];
  readonly broken?: BrokenRule;
  /** Keep a trace of every step (for a failing seed). */
  readonly trace?: boolean;
  /** Only consequences count as violations (no direct quorum check at commit): for positive controls. */
  readonly effectsOnly?: boolean;
  /** Count wire bytes of every message sent. */
  readonly measure?: boolean;
}

export interface ScheduleResult {
  readonly seed: number;
  readonly n: number;
  readonly violations: readonly string[];
  /** The tick of the first violation, or -1. */
  readonly failedAt: number;
  readonly trace: readonly string[];
  readonly stats: {
    acked: number;
    committed: number;
    messages: number;
    bytes: number;
    refused: Record<string, number>;
    reforms: number;
    crashes: number;
    restores: number;
    clones: number;
    partitions: number;
    durableWrites: number;
  };
}

interface Disk {
  state: DurableState;
  images: DurableState[];
}
interface Proc extends ProcView {
  member: Member | null;
  readonly disk: Disk;
  side: number;
  extra: boolean;
  readonly appended: Set<string>;
  readonly startedAt: number;
}
interface InFlight {
  at: number;
  order: number;
  env: Envelope;
  fromPid: number;
}

const FLEET_SECRET = new Uint8Array(32).fill(7);

export function runSchedule(o: ScheduleOptions): ScheduleResult {
  const rng = new Rng(o.seed);
  const n = o.n ?? (rng.chance(0.5) ? 3 : 5);
  const f = Math.floor((n - 1) / 2);
  const on = new Set<FaultKind>(o.faults ?? FAULTS);
  const steps = o.steps ?? 240;
  const quiet = o.quiet ?? 60;
  const key = replicationKey(FLEET_SECRET);
  const oracle = new Oracle(n, GENESIS_HASH, o.effectsOnly);
  const procs: Proc[] = [];
  const trace: string[] = [];
  const stats: ScheduleResult['stats'] = { acked: 0, committed: 0, messages: 0, bytes: 0, refused: {}, reforms: 0, crashes: 0, restores: 0, clones: 0, partitions: 0, durableWrites: 0 };
  let net: InFlight[] = [];
  let order = 0;
  const sent: Envelope[] = [];
  let now = 0;
  let partitioned = false;
  let failedAt = -1;
  let session = 0;
  const sessions: number[] = [];
  const restored = new Map<number, number>();
  const log = (s: string): void => {
    if (o.trace) trace.push(`t=${now} ${s}`);
  };

  const boot = (id: number, disk: Disk, extra: boolean, side: number): Proc => {
    const appended = new Set<string>();
    const note = (s: DurableState): void => {
      appended.add(`${s.base.index}:${bytesToHex(s.base.hash)}`);
      for (const e of s.entries) appended.add(`${e.index}:${bytesToHex(e.hash)}`);
    };
    note(disk.state);
    const platform = {
      random: (k: number) => rng.bytes(k),
      persist: (s: DurableState) => {
        disk.state = s;
        stats.durableWrites++;
        note(s);
      },
    };
    const member = new Member(disk.state, platform, { n, replicationKey: key, broken: o.broken }, now);
    const p: Proc = { pid: procs.length, id, inc: bytesToHex(member.incarnation), member, disk, side, extra, appended, startedAt: now };
    procs.push(p);
    log(`boot p${p.pid} (member ${id}${extra ? ', clone' : ''}) inc ${p.inc.slice(0, 6)} at entry ${disk.state.commit}`);
    return p;
  };
  for (let id = 0; id < n; id++) boot(id, { state: genesis(id, n), images: [] }, false, 0);

  const alive = (): Proc[] => procs.filter((p) => p.member !== null);
  const aliveOf = (id: number): Proc[] => procs.filter((p) => p.member !== null && p.id === id);
  const primaryOf = (id: number): Proc => {
    let last: Proc | undefined;
    for (const p of procs) if (p.id === id && !p.extra) last = p;
    return last!;
  };

  const handle = (p: Proc, before: DurableState, out: Output, got: readonly Entry[]): void => {
    const who = `p${p.pid}(m${p.id})`;
    for (const fl of out.faults) {
      const k = String(fl.code);
      stats.refused[k] = (stats.refused[k] ?? 0) + 1;
    }
    oracle.observe(who, before, p.member?.durable ?? p.disk.state, got);
    for (const ev of out.events) {
      if (ev.type === 'reform') {
        stats.reforms++;
        log(`${who} re-formed epoch ${ev.epoch} at entry ${ev.tip.index}`);
      } else log(`${who} committed entry ${ev.index} (view ${ev.view}, counted ${ev.counted.join(',')})`);
      oracle.event(who, ev, procs);
    }
    for (const a of out.answers) {
      if (a.ok) {
        stats.acked++;
        if (a.op.kind === 'charge') sessions.push(a.op.session);
        log(`${who} answered ${a.op.kind} ${a.op.id} at entry ${a.index}`);
      }
      oracle.answer(who, a);
    }
    for (const env of out.send) {
      stats.messages++;
      if (o.measure) stats.bytes += wireBytes(env);
      if (sent.length < 400) sent.push(env);
      else if (rng.chance(0.2)) sent[rng.int(sent.length)] = env;
      if (on.has('drop') && rng.chance(0.05)) continue;
      const delay = on.has('delay') && rng.chance(0.08) ? 2 + rng.int(10) : 1 + rng.int(2);
      net.push({ at: now + delay, order: order++, env, fromPid: p.pid });
      if (on.has('duplicate') && rng.chance(0.03)) net.push({ at: now + 1 + rng.int(6), order: order++, env, fromPid: p.pid });
    }
    if (failedAt < 0 && oracle.violations.length > 0) failedAt = now;
  };

  const call = (p: Proc, fn: (m: Member) => Output, got: readonly Entry[] = []): void => {
    const m = p.member!;
    const before = m.durable;
    handle(p, before, fn(m), got);
  };

  const deliver = (msg: InFlight): void => {
    const from = msg.fromPid >= 0 ? procs[msg.fromPid]! : null;
    const targets = aliveOf(msg.env.to).filter((p) => !partitioned || !from || p.side === from.side);
    if (targets.length === 0) return;
    const chosen = targets.length > 1 && rng.chance(0.3) ? targets : [rng.pick(targets)];
    for (const p of chosen) {
      log(`deliver ${msg.env.body.type} m${msg.env.from}:${bytesToHex(msg.env.fromInc).slice(0, 6)}->p${p.pid}(m${p.id})`);
      call(p, (m) => m.receive(msg.env, now), msg.env.body.type === 'catchup' ? msg.env.body.entries : []);
    }
  };

  const intent = (): Intent => {
    const id = `r${rng.int(3)}`;
    const r = rng.next();
    if (r < 0.45) return { kind: 'charge', id, session: ++session };
    if (r < 0.62) return { kind: 'reset', id, session: sessions.length > 0 ? rng.pick(sessions) : 0 };
    if (r < 0.8) return { kind: 'register', id, limit: 1 + rng.int(4) };
    if (r < 0.93) return { kind: 'lock', id };
    return { kind: 'delete', id };
  };

  const damaged = (): Set<number> => {
    const d = new Set<number>();
    const cfg = oracle.configFor(oracle.historyTop + 1);
    for (let id = 0; id < n; id++) {
      if (aliveOf(id).length > 1) d.add(id);
      const since = restored.get(id);
      if (since !== undefined) {
        const healed = procs.some((p) => p.id === id && p.startedAt >= since && cfg.admitted[id] === p.inc);
        if (healed) restored.delete(id);
        else d.add(id);
      }
    }
    return d;
  };
  const mayDamage = (id: number): boolean => {
    const d = damaged();
    d.add(id);
    return d.size <= f;
  };

  const faultStep = (): void => {
    if (on.has('replay') && sent.length > 0 && rng.chance(0.2)) {
      const env = rng.pick(sent);
      log(`replay ${env.body.type} m${env.from}->m${env.to}`);
      net.push({ at: now, order: order++, env, fromPid: -1 });
    }
    if (on.has('partition')) {
      if (!partitioned && rng.chance(0.015)) {
        partitioned = true;
        stats.partitions++;
        for (const p of procs) p.side = rng.int(2);
        log(`partition ${procs.filter((p) => p.member).map((p) => `p${p.pid}:${p.side}`).join(' ')}`);
      } else if (partitioned && rng.chance(0.06)) {
        partitioned = false;
        log('heal');
      }
    }
    const live = alive();
    if (on.has('crash') && live.length > 0 && rng.chance(0.012)) {
      const p = rng.pick(live);
      p.member = null;
      stats.crashes++;
      log(`crash p${p.pid}(m${p.id})`);
    }
    for (const p of alive()) {
      if (p.extra && rng.chance(0.01)) {
        p.member = null;
        log(`crash clone p${p.pid}(m${p.id})`);
      }
    }
    for (let id = 0; id < n; id++) {
      const prim = primaryOf(id);
      if (prim.member === null && aliveOf(id).length === 0 && rng.chance(0.08)) {
        const old = prim.disk.images;
        if (on.has('restore') && old.length > 0 && rng.chance(0.35) && mayDamage(id)) {
          const img = rng.pick(old);
          const disk: Disk = { state: img, images: [...old] };
          restored.set(id, now);
          stats.restores++;
          log(`restore m${id} from an image at entry ${img.commit}`);
          boot(id, disk, false, prim.side);
        } else if (on.has('crash')) boot(id, prim.disk, false, prim.side);
      }
    }
    if (on.has('clone') && rng.chance(0.006)) {
      const src = rng.pick(alive());
      if (src && mayDamage(src.id)) {
        stats.clones++;
        log(`clone p${src.pid}(m${src.id})`);
        boot(src.id, { state: src.disk.state, images: [] }, true, rng.int(2));
      }
    }
    if ((on.has('restore') || on.has('clone')) && rng.chance(0.05)) {
      const p = primaryOf(rng.int(n));
      if (p.disk.images.length < 5) p.disk.images.push(p.disk.state);
      else p.disk.images[rng.int(5)] = p.disk.state;
    }
    // a clone whose incarnation the history admits becomes its member's primary; the other copy is the extra now
    const cfg = oracle.configFor(oracle.historyTop + 1);
    for (const p of alive()) {
      if (p.extra && cfg.admitted[p.id] === p.inc) {
        for (const q of procs) if (q.id === p.id && q !== p) q.extra = true;
        p.extra = false;
      }
    }
  };

  for (now = 1; now <= steps + quiet && failedAt < 0; now++) {
    if (now <= steps) faultStep();
    else if (partitioned) {
      partitioned = false;
      log('heal (quiet phase)');
    }
    if (rng.chance(0.6)) {
      const live = alive();
      const leaders = live.filter((p) => p.member!.isLeader());
      const p = leaders.length > 0 && rng.chance(0.7) ? rng.pick(leaders) : live.length > 0 ? rng.pick(live) : null;
      if (p) call(p, (m) => m.submit(intent(), now));
    }
    const due = net.filter((m) => m.at <= now).sort((a, b) => a.at - b.at || a.order - b.order);
    net = net.filter((m) => m.at > now);
    // reorder within a tick
    if (on.has('delay')) for (let i = due.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    for (const m of due) if (failedAt < 0) deliver(m);
    for (const p of alive()) if (failedAt < 0) call(p, (m) => m.tick(now));
  }

  // every running member whose commit point is the history's end holds the oracle's records
  if (failedAt < 0) {
    for (const p of alive()) {
      const d = p.member!.durable;
      if (d.commit !== oracle.historyTop) continue;
      const recs = recordsAt(d, d.commit);
      for (const id of ['r0', 'r1', 'r2']) {
        const a = recs.get(id);
        const b = oracle.modelOf(id);
        const same = (!a && !b) || (a && b && a.status === b.status && a.used === b.used && a.total === b.total && a.limit === b.limit);
        if (!same) oracle.violations.push(`p${p.pid}(m${p.id}): record ${id} differs from the model at entry ${d.commit}`);
      }
    }
    if (oracle.violations.length > 0) failedAt = now;
  }
  stats.committed = oracle.committed;
  return { seed: o.seed, n, violations: oracle.violations, failedAt, trace, stats };
}
