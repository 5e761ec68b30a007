/**
 * Rollback storm: rounds of load during which older copies are taken at random points, then
 * rollbacks of one of them, each refused, then the current state put back and the ledger
 * checked (lib/ledger.ts: every acknowledged registration recovers, no guess refunded).
 *
 * Copies, taken while the load runs:
 *   record    the sealed blob of a random record (read from the store);
 *   database  the whole SQLite database (SQLite's online backup: a consistent snapshot);
 *   nvram     the device's NVRAM files (`nvram-<partition>.bin`, hsm/nvram-file.ts, the
 *             default) and the token's store file (where NVRAM lives with `nvram: 'token'`), at
 *             a quiet moment (load paused, nothing in flight). The keys never change after
 *             provisioning (the enclave public key is checked to be the same), so older copies
 *             of these files are an older NVRAM beside the current database.
 * Rollbacks, one or two per round, on the closed vault, then a reopen that must be refused with
 * Integrity.RollbackDetected whenever the copy differs from the current state:
 *   record    the older blob written over the current one;
 *   database  the older database file in place of the current one;
 *   nvram     the older NVRAM and token files in place of the current ones.
 * And on the live vault (refused at first use): older blobs of 1..5 records written over the
 * current ones while it serves: every operation on them is refused (no KE2, nothing released),
 * the other records are served; then the current blobs are put back and the records work with
 * their counts unchanged.
 * Control (every third round): the database and NVRAM rolled back together (a physical attack on
 * one device, out of the vault's scope: README "Rollback protection"). The vault accepts it and
 * a guess charged after the copy is refunded; the ledger must see that refund, which shows its
 * check works. Not a violation.
 *
 *   npx tsx test/adversarial/rollback-storm.ts [--rounds N] [--seed S] [--mode worker|process]
 * Exit 1 on a violation.
 */
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Integrity, faultName } from '../../enclave/api/codes.ts';
import { openSqliteStore } from '../../host/storage/sqlite.ts';
import { EMULATOR_STORE_FILE } from '../../hsm/tokens/emulator/backend.ts';
import { nvramFileName } from '../../hsm/runner.ts';
import { EnclaveCallError } from '../../host/vault/engine.ts';
import type { VaultHost } from '../../host/vault/vault-host.ts';
import { Rng, bump, isMain, note, runMain, sleep } from './lib/common.ts';
import type { Report } from './lib/common.ts';
import { describe, hex, sameBytes } from './lib/flows.ts';
import type { VaultClient } from './lib/flows.ts';
import { finishStorm, startStorm, stormArgs } from './lib/storm.ts';
import type { StormKnobs } from './lib/storm.ts';
import { Ledger, driveLoad } from './lib/ledger.ts';
import type { Entry } from './lib/ledger.ts';
import { openHost } from './lib/vaults.ts';

export interface RollbackStormOptions extends StormKnobs<'worker' | 'process'> {
  rounds: number;
  loadMs?: number;
}

const DB = 'vault.db';
const DB_FILES = [DB, `${DB}-wal`, `${DB}-shm`];
/** Where a device's NVRAM can live: its own file per partition (the default) or the token's store. */
const NVRAM_FILES = [EMULATOR_STORE_FILE, ...Array.from({ length: 16 }, (_, p) => nvramFileName(p))];

/** Copies the NVRAM files present in `from` to `to` (replacing those of `to`). */
function copyNvram(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of NVRAM_FILES) {
    rmSync(join(to, f), { force: true });
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f));
  }
}

interface RecordCopy {
  entry: Entry;
  partition: number;
  blob: Uint8Array;
}

/** Every row of a database file: partition/record id -> blob (hex). */
function rows(file: string): Map<string, string> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const out = new Map<string, string>();
    for (const r of db.prepare('SELECT partition, record_id, blob FROM records').all() as { partition: number; record_id: Buffer; blob: Buffer }[]) {
      out.set(`${r.partition}/${r.record_id.toString('hex')}`, r.blob.toString('hex'));
    }
    return out;
  } finally {
    db.close();
  }
}

function sameRows(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** A copy of the vault's files (database and token), taken while it is closed. */
function saveFiles(dir: string, to: string): void {
  for (const f of [...DB_FILES, ...NVRAM_FILES]) {
    rmSync(join(to, f), { force: true });
    if (existsSync(join(dir, f))) copyFileSync(join(dir, f), join(to, f));
  }
}
function restoreFiles(from: string, dir: string): void {
  for (const f of [...DB_FILES, ...NVRAM_FILES]) {
    rmSync(join(dir, f), { force: true });
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(dir, f));
  }
}

/** Installs an older database file (a SQLite backup: no WAL of its own). */
function installDatabase(dir: string, file: string): void {
  for (const f of DB_FILES) rmSync(join(dir, f), { force: true });
  copyFileSync(file, join(dir, DB));
}

/** Waits until no operation of the ledger is in flight. */
async function quiet(ledger: Ledger): Promise<void> {
  while (ledger.entries.some((e) => e.busy)) await sleep(5);
}

export async function rollbackStorm(o: RollbackStormOptions): Promise<Report> {
  const s = startStorm(o, { mode: 'worker', concurrency: 10, tmp: 'rollback' }, (seed, mode) => `rollback storm (${o.rounds} rounds, ${mode} devices, seed ${seed})`);
  const { rng, mode, partitions, concurrency, log, report, tmp } = s;
  const ledger = new Ledger(report, 'rb');
  const dataDir = join(tmp.dir, 'vault');
  const keep = join(tmp.dir, 'current');
  const copies = join(tmp.dir, 'copies');
  for (const d of [keep, copies]) mkdirSync(d, { recursive: true });
  let ops = 0;
  let pk: Uint8Array | undefined;
  const refusedAtLoad: Record<string, number> = {};
  try {
    for (let round = 1; round <= o.rounds; round++) {
      const v = await openHost({ dataDir, mode, partitions });
      pk ??= v.host.info.enclavePublicKey;
      if (!sameBytes(v.host.info.enclavePublicKey, pk)) report.violations.push(`round ${round}: the enclave public key changed`);
      const host = v.host;
      const acked = new Map<number, number>(); // partition -> acknowledged writes
      ledger.onAck = (e) => acked.set(host.partitionOf(e.id), (acked.get(host.partitionOf(e.id)) ?? 0) + 1);
      if (ledger.registered().length < 12) {
        await driveLoad(ledger, v.client, { rng, concurrency, stop: () => ledger.registered().length >= 12, mix: { register: 1, right: 0 } });
      }
      // Load, with copies taken at random points.
      const recordCopies: RecordCopy[] = [];
      const dbCopies: { file: string; acked: Map<number, number> }[] = [];
      let nvramCopy: { file: string; db: string; acked: Map<number, number> } | undefined;
      let stop = false;
      let paused = false;
      let loads = [driveLoad(ledger, v.client, { rng, concurrency, stop: () => stop || paused })];
      const loadMs = o.loadMs ?? rng.int(1200, 2500);
      const nvramAt = rng.int(100, Math.max(150, loadMs - 100));
      const start = performance.now();
      // The control's record: set aside at the NVRAM copy, charged once after it.
      let control: Entry | undefined;
      while (performance.now() - start < loadMs || !nvramCopy) {
        await sleep(rng.int(50, 250));
        if (!nvramCopy && performance.now() - start >= nvramAt) {
          // A quiet moment: nothing in flight, so NVRAM and database agree; both copied.
          paused = true;
          for (const s of await Promise.all(loads)) ops += s.ops;
          await quiet(ledger);
          const file = join(copies, `nvram-${round}`);
          copyNvram(dataDir, file);
          const db = join(copies, `pair-${round}.sqlite`);
          const src = new Database(join(dataDir, DB), { fileMustExist: true });
          try {
            await src.backup(db);
          } finally {
            src.close();
          }
          nvramCopy = { file, db, acked: new Map(acked) };
          const candidates = ledger.registered().filter((e) => e.lo >= 3 && !e.busy);
          if (candidates.length) {
            control = rng.pick(candidates);
            control.busy = true;
          }
          paused = false;
          loads = [driveLoad(ledger, v.client, { rng, concurrency, stop: () => stop || paused })];
          continue;
        }
        if (rng.chance(2 / 3)) {
          const e = rng.pick(ledger.registered());
          const p = host.partitionOf(e.id);
          const got = (await host.store.getMany(p, [e.id]))[0];
          if (got && got.blob.length) recordCopies.push({ entry: e, partition: p, blob: Uint8Array.from(got.blob) });
        } else {
          const file = join(copies, `db-${round}-${dbCopies.length}.sqlite`);
          const src = new Database(join(dataDir, DB), { fileMustExist: true });
          try {
            await src.backup(file);
          } finally {
            src.close();
          }
          dbCopies.push({ file, acked: new Map(acked) });
        }
      }
      stop = true;
      for (const s of await Promise.all(loads)) ops += s.ops;
      // A guess charged after every copy, on the control's record.
      if (control) {
        await ledger.login(v.client, control, false);
        control.busy = false;
      }

      // ---- rollback of records on the live vault: refused at first use ----
      await liveRecordRollback(report, ledger, host, v.client, recordCopies, rng);

      await v.close();
      saveFiles(dataDir, keep);
      const current = rows(join(keep, DB));

      // ---- rollbacks of the closed vault: refused at load ----
      const trials = rng.int(1, 2);
      for (let t = 0; t < trials; t++) {
        const kind = rng.pick(['record', 'database', 'nvram'] as const);
        let expectRefused: boolean | 'maybe' = false;
        let label: string = kind;
        if (kind === 'record') {
          const stale = recordCopies.filter((c) => current.get(`${c.partition}/${hex(c.entry.id)}`) !== Buffer.from(c.blob).toString('hex'));
          if (!stale.length) continue;
          const c = rng.pick(stale);
          const store = await openSqliteStore(join(dataDir, DB));
          try {
            await store.applyBatch(c.partition, 0, [{ recordId: c.entry.id, blob: c.blob }], []);
          } finally {
            await store.close();
          }
          expectRefused = true;
          label = `record ${c.entry.name}`;
        } else if (kind === 'database') {
          if (!dbCopies.length) continue;
          const c = rng.pick(dbCopies);
          installDatabase(dataDir, c.file);
          expectRefused = !sameRows(rows(c.file), current);
          label = `database (${expectRefused ? 'older' : 'unchanged since the copy'})`;
        } else {
          if (!nvramCopy) continue;
          copyNvram(nvramCopy.file, dataDir);
          const after = [...acked].some(([p, n]) => n > (nvramCopy!.acked.get(p) ?? 0));
          expectRefused = after ? true : 'maybe';
          label = `nvram (${after ? 'writes acknowledged since the copy' : 'no write acknowledged since'})`;
        }
        bump(report.faults, `${kind} rolled back (closed vault)`);
        await expectRefusal(report, ledger, dataDir, mode, `round ${round}: ${label}`, expectRefused, refusedAtLoad);
        restoreFiles(keep, dataDir);
      }

      // ---- control: database and NVRAM rolled back together (out of scope: a refund) ----
      if (round % 3 === 0 && nvramCopy && control) {
        const charged = control;
        installDatabase(dataDir, nvramCopy.db);
        copyNvram(nvramCopy.file, dataDir);
        bump(report.faults, 'control: database + NVRAM rolled back together');
        try {
          const c = await openHost({ dataDir, mode, partitions });
          try {
            const st = await c.client.status(charged.id);
            const r = st.ok && st.res.type === 'StatusResult' ? st.res.attemptsRemaining : undefined;
            report.checks++;
            if (r !== undefined && r > charged.hi) note(report, 'control: database and NVRAM rolled back together are accepted and refund a guess, as documented (README: a fleet defends against it); the ledger sees the refund');
            else if (st.ok && st.res.type === 'NotRegistered') note(report, 'control: the record charged after the copy did not exist at the copy');
            else report.violations.push(`control: after rolling back database and NVRAM together the charged record says ${r ?? (st.ok ? st.res.type : describe(st.error))} remaining (ledger ${charged.lo}..${charged.hi}): the ledger's refund check did not fire`);
          } finally {
            await c.close();
          }
        } catch (e) {
          note(report, `control: the paired rollback was refused (${describe(e)})`);
        }
        restoreFiles(keep, dataDir);
      }

      // ---- the current state back: serves, and the ledger holds ----
      let back;
      try {
        back = await openHost({ dataDir, mode, partitions });
      } catch (e) {
        report.violations.push(`round ${round}: the vault with its current files put back does not open: ${describe(e)}`);
        break;
      }
      try {
        await ledger.verify(back.client, { recover: (e) => e.touched || round === o.rounds || rng.chance(0.1) });
      } finally {
        await back.close();
      }
      log(`round ${round}/${o.rounds}: records ${ledger.registered().length}, copies record=${recordCopies.length} database=${dbCopies.length} nvram=${nvramCopy ? 1 : 0}, violations ${report.violations.length}`);
    }
  } finally {
    tmp.remove();
  }
  report.stats['operations'] = ops;
  report.stats['refused at load'] = Object.entries(refusedAtLoad).map(([k, n]) => `${k}=${n}`).join(' ') || 'none';
  return finishStorm(s, ledger);
}

/** Opens the rolled-back vault: it must refuse (RollbackDetected) when `expect` is true. */
async function expectRefusal(report: Report, ledger: Ledger, dataDir: string, mode: 'worker' | 'process', label: string, expect: boolean | 'maybe', refused: Record<string, number>): Promise<void> {
  report.checks++;
  let v;
  try {
    v = await openHost({ dataDir, mode });
  } catch (e) {
    const code = e instanceof EnclaveCallError ? e.code : undefined;
    bump(refused, code === undefined ? 'other' : faultName(code));
    if (code !== Integrity.RollbackDetected) report.violations.push(`${label}: refused, but not as a rollback: ${describe(e)}`);
    else if (expect === false) report.violations.push(`${label}: a copy identical to the current state was refused as a rollback`);
    return;
  }
  try {
    if (expect === true) {
      report.violations.push(`${label}: the rollback was not detected: the vault opened on it`);
      // How bad: any record above its ledger bound (status only; nothing is changed).
      for (const e of ledger.registered()) {
        const st = await v.client.status(e.id);
        if (st.ok && st.res.type === 'StatusResult' && st.res.attemptsRemaining > e.hi) report.violations.push(`${label}: [${e.name}] ${st.res.attemptsRemaining} remaining above the ledger's ${e.hi}: a refunded guess`);
      }
    } else {
      note(report, `${label.replace(/^round \d+: /, '')}: accepted (no acknowledged change since the copy)`);
    }
  } finally {
    await v.close();
  }
}

/** Older blobs of some records written over the current ones on the live vault. */
async function liveRecordRollback(report: Report, ledger: Ledger, host: VaultHost, client: VaultClient, copies: RecordCopy[], rng: Rng): Promise<void> {
  const byRecord = new Map<string, RecordCopy>();
  for (const c of copies) {
    const cur = (await host.store.getMany(c.partition, [c.entry.id]))[0];
    if (cur && !sameBytes(cur.blob, c.blob) && c.entry.lo >= 2) byRecord.set(c.entry.name, c);
  }
  if (!byRecord.size) {
    // No copied record changed during the load (a short or slow round): make one change after a
    // copy, so every round rolls at least one record back on the live vault.
    const e = ledger.registered().find((x) => x.lo >= 3 && !x.busy);
    if (e) {
      const partition = host.partitionOf(e.id);
      const got = (await host.store.getMany(partition, [e.id]))[0];
      if (got && got.blob.length) {
        const copy = { entry: e, partition, blob: Uint8Array.from(got.blob) };
        await ledger.login(client, e, false); // a wrong password: the record is rewritten, charged
        const cur = (await host.store.getMany(partition, [e.id]))[0];
        if (cur && !sameBytes(cur.blob, copy.blob) && e.lo >= 2) byRecord.set(e.name, copy);
      }
    }
  }
  const chosen = [...byRecord.values()].slice(0, rng.int(1, 5));
  if (!chosen.length) {
    note(report, 'live record rollback: no registered record with guesses left to change');
    return;
  }
  const currents = new Map<string, Uint8Array>();
  for (const c of chosen) {
    const cur = (await host.store.getMany(c.partition, [c.entry.id]))[0]!;
    currents.set(c.entry.name, Uint8Array.from(cur.blob));
    await host.store.applyBatch(c.partition, 0, [{ recordId: c.entry.id, blob: c.blob }], []);
    bump(report.faults, 'record rolled back (live vault)');
  }
  ledger.integrityIsViolation = false;
  try {
    for (const c of chosen) {
      const e = c.entry;
      const before = { lo: e.lo, hi: e.hi };
      const login = await ledger.login(client, e, true);
      report.checks++;
      const refused = login.start?.type === 'Fault' && login.start.code === Integrity.RollbackDetected;
      if (!refused) report.violations.push(`[${e.name}] live rollback of its record not refused at first use: LoginStart answered ${login.start?.type ?? `nothing (${describe(login.error)})`}`);
      if (login.ke2 || login.key) report.violations.push(`[${e.name}] a KE2 or a key was given on a rolled-back record`);
      const st = await client.status(e.id);
      report.checks++;
      if (!(st.ok && st.res.type === 'Fault' && st.res.code === Integrity.RollbackDetected)) report.violations.push(`[${e.name}] Status of a rolled-back record answered ${st.ok ? st.res.type : describe(st.error)}`);
      e.lo = before.lo;
      e.hi = before.hi;
    }
    // Others are served meanwhile.
    const others = ledger.registered().filter((e) => !chosen.some((c) => c.entry === e) && e.lo >= 1);
    if (others.length) {
      const e = rng.pick(others);
      const ok = await ledger.login(client, e, true);
      report.checks++;
      if (!ok.key) report.violations.push(`[${e.name}] another record was not served while some were rolled back: ${ok.start?.type}/${ok.finish?.type}`);
    }
  } finally {
    ledger.integrityIsViolation = true;
  }
  // The current blobs back: the records work, counts unchanged.
  for (const c of chosen) await host.store.applyBatch(c.partition, 0, [{ recordId: c.entry.id, blob: currents.get(c.entry.name)! }], []);
  for (const c of chosen) {
    const st = await client.status(c.entry.id);
    report.checks++;
    const r = st.ok && st.res.type === 'StatusResult' ? st.res.attemptsRemaining : undefined;
    if (r === undefined || r < c.entry.lo || r > c.entry.hi) report.violations.push(`[${c.entry.name}] after its current blob was put back: ${r ?? (st.ok ? st.res.type : describe(st.error))} remaining, ledger ${c.entry.lo}..${c.entry.hi}`);
    else c.entry.lo = c.entry.hi = r;
  }
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    return rollbackStorm(stormArgs(process.argv.slice(2), { rounds: 10, concurrency: 10, modes: ['worker', 'process'] as const }).knobs);
  });
}
