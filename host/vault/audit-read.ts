/**
 * Reads a partition's audit chain back through its device: the stored events (host/storage) are
 * checked by the enclave (AuditVerify) one run at a time, from the committed head back to the
 * first event, each run ending where the enclave anchored the previous one (enclave/vault/audit.ts).
 * With the operator secret the enclave also opens them: what each event says (kind, record hash,
 * attempts remaining) is sealed, and only the device opens it, only once it is committed.
 */
import { AUDIT_KIND, MAX_AUDIT_RUN } from '../../enclave/api/messages.ts';
import type { AuditEntry, AuditEvent, HostRequest, ResponseOf } from '../../enclave/api/messages.ts';
import type { RecordStore } from '../storage/types.ts';

export interface AuditReport {
  partition: number;
  /** Sequence number of the last committed event (0: none yet). */
  headSeq: number;
  /** Events the enclave checked, from the head back. */
  verified: number;
  /** The first event (lowest sequence number found so far, going back) that is missing or fails; null when the whole chain verifies. */
  broken: { seq: number; reason: string } | null;
  /** The opened events in sequence order (with the operator secret), at most `keep` of the newest. */
  entries: AuditEntry[];
}

export interface AuditReadOptions {
  /** The operator secret (32 bytes): the enclave opens the events. Without it they are only verified. */
  operatorSecret?: Uint8Array;
  /** Opened events to keep, newest first (default: all). */
  keep?: number;
  /** Events per AuditVerify (at most MAX_AUDIT_RUN). */
  runSize?: number;
  onProgress?: (verified: number, headSeq: number) => void;
}

/** The names of AUDIT_KIND by value. */
export const AUDIT_KIND_NAME: ReadonlyMap<number, string> = new Map(Object.entries(AUDIT_KIND).map(([k, v]) => [v, k]));

const ZERO = new Uint8Array(32);
const NONE = new Uint8Array(0);
const ALL_VERIFY = 0xffffffff;

type AuditVerify = Extract<HostRequest, { type: 'AuditVerify' }>;
/** The partition's typed call (PartitionEngine.call): an AuditResult, or it throws. */
type Call = (req: AuditVerify) => Promise<ResponseOf<AuditVerify>>;

export async function readAuditChain(call: Call, store: RecordStore, partition: number, opts: AuditReadOptions = {}): Promise<AuditReport> {
  const runSize = Math.min(MAX_AUDIT_RUN, Math.max(1, opts.runSize ?? MAX_AUDIT_RUN));
  const keep = opts.keep ?? Infinity;
  const auth = opts.operatorSecret ?? NONE;
  if (auth.length !== 0 && auth.length !== 32) throw new RangeError('the operator secret is 32 bytes');
  const verify = async (fromSeq: number, fromHead: Uint8Array, events: AuditEvent[], to: { seq: number; head: Uint8Array; anchor: Uint8Array }) =>
    call({ type: 'AuditVerify', fromSeq, fromHead, events, toSeq: to.seq, toHead: to.head, anchor: to.anchor, auth });
  // The head: an empty run that starts at 0 verifies only if there is no event yet.
  const head = await verify(0, ZERO, [], { seq: 0, head: ZERO, anchor: NONE });
  const report: AuditReport = { partition, headSeq: head.headSeq, verified: 0, broken: null, entries: [] };
  const opened: AuditEntry[][] = [];
  let kept = 0;
  // The end of the next run: the committed head itself first (no anchor), then each run's anchored start.
  let end: { seq: number; head: Uint8Array; anchor: Uint8Array } = { seq: head.headSeq, head: ZERO, anchor: NONE };
  while (end.seq > 0) {
    const first = Math.max(1, end.seq - runSize + 1);
    // The event before the run too: its MAC is where the run starts.
    const from = first - 1;
    const got = await store.auditEvents(partition, Math.max(1, from), end.seq - Math.max(1, from) + 1);
    const bySeq = new Map(got.map((e) => [e.seq, e]));
    const run: AuditEvent[] = [];
    for (let s = first; s <= end.seq; s++) {
      const e = bySeq.get(s);
      if (!e) {
        report.broken = { seq: s, reason: 'missing from storage' };
        break;
      }
      run.push(e);
    }
    if (report.broken) break;
    const prev = from === 0 ? null : bySeq.get(from);
    if (from > 0 && !prev) {
      report.broken = { seq: from, reason: 'missing from storage' };
      break;
    }
    const fromHead = prev ? prev.mac : ZERO;
    const r = await verify(from, fromHead, run, end);
    if (r.firstBad !== ALL_VERIFY) {
      report.broken =
        r.firstBad < run.length
          ? { seq: run[r.firstBad]!.seq, reason: 'does not verify' }
          : { seq: end.seq, reason: 'the stored chain does not reach the committed head' };
      break;
    }
    report.verified += run.length;
    if (r.entries.length && kept < keep) {
      const take = Math.min(r.entries.length, keep - kept);
      opened.push(r.entries.slice(r.entries.length - take));
      kept += take;
    }
    opts.onProgress?.(report.verified, report.headSeq);
    end = { seq: from, head: fromHead, anchor: r.anchor };
  }
  report.entries = opened.reverse().flat();
  return report;
}
