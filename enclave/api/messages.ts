/**
 * The enclave message API, version 1: what crosses the boundary between the host and the
 * enclave firmware, and between a client and the enclave (end-to-end, inside HPKE).
 *
 * Two layers:
 * - `HostRequest` / `HostResponse`: the host talks to the enclave. Record operations travel in
 *   batches: `Batch` carries each operation with the sealed record the host holds for it; the
 *   enclave answers `Prepared` (the sealed writes and audit events the host must persist), the
 *   host persists them and sends `Commit`; only then does the enclave write its NVRAM and answer
 *   `Committed` with the operation results. A response that depends on a charged guess is never
 *   released before its batch is durable.
 * - `ClientRequest` / `ClientResponse`: one operation from a client, carried inside a batch
 *   entry, sealed with HPKE (RFC 9180) to the enclave's public key; the response is sealed back
 *   under a key exported from the same HPKE context. The host relays ciphertext only.
 *
 * Every decoder is strict (see codec.ts): unknown version or tag, truncation, bad lengths and
 * trailing bytes are faults before any handler runs.
 */
import { bytes, defineFamily, fixed, list, opt, u16, u32, u53, u8 } from './codec.ts';
import type { Decoded, Message } from './codec.ts';
import { MAX_AUTH_TOKEN } from './auth.ts';

export const API_VERSION = 1;

/** The vault's OPAQUE context string (RFC 9807 §6.1) unless provisioned otherwise; clients must use the same. */
export const DEFAULT_OPAQUE_CONTEXT = new TextEncoder().encode('BackupKeyVault-v1');

/** Suite codes on the wire. */
export const SUITE_CODE = { 'ristretto255-SHA512': 1, 'P256-SHA256': 2 } as const;

export const MAX_RECORD_ID = 64;
export const MAX_SEALED_RECORD = 2048;
export const MAX_CLIENT_MESSAGE = 4096;
export const MAX_BATCH_OPS = 256;
export const MAX_LOAD_ENTRIES = 512;
export const STAGE_ID_LEN = 16;
export const SESSION_ID_LEN = 16;

const recordId = bytes(1, MAX_RECORD_ID);
const sealed = bytes(0, MAX_SEALED_RECORD);
/** One write's change as a fleet member names it (enclave/vault/fleet-change.ts): the record, the change's op tag, the version it read, a register's limit. */
const CHANGE_OP = [['recordId', recordId], ['change', u8], ['base', u53], ['limit', u8]] as const;

/** An audit event's sealed part: kind (1) | record hash (32) | attempts remaining (1), AES-256-CTR (enclave/vault/audit.ts). */
export const AUDIT_SEALED_LEN = 34;
export const AUDIT_NONCE_LEN = 16;

/**
 * An audit event as the host stores it. What it says (kind, record, attempts) is sealed for the
 * operator: the host sees its sequence number and time only, so the events of a batch it holds
 * before Commit do not tell it which ops succeeded.
 */
export const AuditEventSchema = [
  ['seq', u53],
  ['time', u53],
  ['nonce', fixed(AUDIT_NONCE_LEN)],
  ['sealed', fixed(AUDIT_SEALED_LEN)],
  ['mac', fixed(32)],
] as const;
export type AuditEvent = Decoded<typeof AuditEventSchema>;

/** The length of an audit event's encoding (AuditEventSchema): seq 8, time 8, nonce, sealed part, mac 32. */
export const AUDIT_EVENT_LEN = 8 + 8 + AUDIT_NONCE_LEN + AUDIT_SEALED_LEN + 32;

/**
 * An audit event as Prepared carries it to the host and the host stores it: its sequence number
 * (the store's key) and its encoding (AuditEventSchema, starting with that same seq), which the
 * enclave makes once (enclave/vault/audit.ts) and the host stores as it is, never decoding it.
 */
export const StoredAuditSchema = [
  ['seq', u53],
  ['bytes', fixed(AUDIT_EVENT_LEN)],
] as const;
export type StoredAuditEvent = Decoded<typeof StoredAuditSchema>;

/** An audit event opened by the enclave for the operator (AuditVerify with the operator secret). */
export const AuditEntrySchema = [
  ['seq', u53],
  ['time', u53],
  ['kind', u8],
  ['recordHash', fixed(32)],
  ['attemptsRemaining', u8],
] as const;
export type AuditEntry = Decoded<typeof AuditEntrySchema>;

/** Events per AuditVerify request (and opened entries per answer). */
export const MAX_AUDIT_RUN = 1024;

export const AUDIT_KIND = {
  registered: 1,
  guessUsed: 2,
  recovered: 3,
  locked: 4,
  deleted: 5,
  passwordChanged: 6,
  zeroized: 7,
  /** A LoginStart or LoginFinish for an id with no record (the fake path): the same work as a real one. */
  unknownId: 8,
  /** A LoginFinish whose KE3 did not verify, or whose session's registration is gone or locked. */
  wrongPassword: 9,
} as const;

// ---- host <-> enclave ----------------------------------------------------------------------

export const HostRequests = defineFamily(
  API_VERSION,
  { Info: 0x01, LoadChunk: 0x02, LoadEnd: 0x03, Batch: 0x10, Commit: 0x11, Abort: 0x12, Prepare: 0x13, Apply: 0x14, Zeroize: 0x20, SetAuth: 0x21, AuditVerify: 0x30, Census: 0x31 },
  {
    Info: [],
    /** Startup: the host streams every stored record of the partition. */
    LoadChunk: [['entries', list([['recordId', recordId], ['blob', sealed]] as const, MAX_LOAD_ENTRIES)]],
    LoadEnd: [],
    Batch: [
      ['epoch', u53],
      [
        'ops',
        list(
          [
            ['opId', u32],
            ['recordId', recordId],
            ['stored', sealed],
            ['request', bytes(1, MAX_CLIENT_MESSAGE)],
          ] as const,
          MAX_BATCH_OPS,
        ),
      ],
    ],
    Commit: [['epoch', u53]],
    Abort: [['epoch', u53]],
    /** The batch staged behind the one just committed (a Batch sent while that one was pending): its intent, then Prepared. */
    Prepare: [['epoch', u53]],
    /**
     * A fleet follower's replicated batch (enclave/vault/apply.ts, docs/fleet-vault.md): the ops
     * of the leader's batch (its change, as enclave/vault/fleet-change.ts names it, on the version
     * it names; `limit` for a register or replace, else 0), one write per record with this
     * member's stored blob and the leader's new one. Answered Prepared; then Commit as for a Batch.
     */
    Apply: [
      ['epoch', u53],
      ['ops', list(CHANGE_OP, MAX_BATCH_OPS)],
      ['writes', list([['recordId', recordId], ['stored', sealed], ['blob', sealed]] as const, MAX_BATCH_OPS)],
    ],
    Zeroize: [['auth', fixed(32)]],
    /** Replaces the provisioned issuer set (enclave/api/auth.ts encodeAuthConfig), authorized by the operator secret. */
    SetAuth: [
      ['config', bytes(1, 4096)],
      ['auth', fixed(32)],
    ],
    /**
     * Checks a run of stored audit events that starts after (fromSeq, fromHead) and ends at the
     * committed NVRAM head, or, with `anchor` (an AuditResult's), at (toSeq, toHead): reading a
     * long chain backwards from the head one run at a time. With the operator secret in `auth`
     * (empty: verify only), a run that verifies is also opened.
     */
    AuditVerify: [
      ['fromSeq', u53],
      ['fromHead', fixed(32)],
      ['events', list(AuditEventSchema, MAX_AUDIT_RUN)],
      ['toSeq', u53],
      ['toHead', fixed(32)],
      ['anchor', bytes(0, 32)],
      ['auth', bytes(0, 32)],
    ],
    /**
     * The operator's count of locked records: the host streams the partition's stored rows (as for
     * a load) with the operator secret; the enclave opens each row that is the live version of its
     * record and counts the locked ones. Only with the secret: a record's lock is sealed, and a
     * count the host could read at will would tell it when one locks.
     */
    Census: [
      ['entries', list([['recordId', recordId], ['blob', sealed]] as const, MAX_LOAD_ENTRIES)],
      ['auth', fixed(32)],
    ],
  } as const,
  4 + MAX_BATCH_OPS * (4 + 2 + MAX_RECORD_ID + 2 + MAX_SEALED_RECORD + 2 + MAX_CLIENT_MESSAGE) + 64,
);
export type HostRequest = Message<typeof HostRequests.schemas>;

export const HostResponses = defineFamily(
  API_VERSION,
  { InfoResult: 0x81, Loading: 0x82, Loaded: 0x83, Prepared: 0x90, Committed: 0x91, Aborted: 0x92, Staged: 0x93, ZeroizeDone: 0xa0, AuthSet: 0xa1, AuditResult: 0xb0, CensusResult: 0xb1, Fault: 0xff },
  {
    InfoResult: [
      ['state', u8],
      ['partition', u16],
      ['epoch', u53],
      ['records', u32],
      ['hpkePublicKey', bytes(0, 133)],
      ['suites', list([['suite', u8], ['serverPublicKey', bytes(0, 65)]] as const, 8)],
      /** 1 when an operator secret's hash is provisioned in NVRAM (zeroize, SetAuth and opened audit events need it). */
      ['operatorKey', u8],
      /** SELF_TEST: the boot's power-on self-tests; `failure` names the ones that failed. */
      ['selfTest', u8],
      ['failure', bytes(0, 128)],
      /** The NVRAM state's encoded size and the partition's NVRAM region (its budget), in bytes. */
      ['nvramUsed', u16],
      ['nvramSize', u32],
    ],
    Loading: [['accepted', u32]],
    Loaded: [
      ['epoch', u53],
      ['records', u32],
      /** 1 when storage held a batch whose intent was in NVRAM and the enclave committed it now. */
      ['rolledForward', u8],
    ],
    Prepared: [
      ['epoch', u53],
      ['writes', list([['recordId', recordId], ['blob', sealed]] as const, MAX_BATCH_OPS)],
      ['audit', list(StoredAuditSchema, MAX_BATCH_OPS * 2)],
      /** A fleet member's batch: each write's change for the fleet's log (enclave/vault/fleet-change.ts); empty otherwise. */
      ['ops', list(CHANGE_OP, MAX_BATCH_OPS)],
    ],
    Committed: [
      ['epoch', u53],
      /**
       * `sealed` 1: `response` is the client's HPKE-protected answer. `sealed` 0: the request never
       * opened (bad ciphertext, wrong partition, rollback detected) and `response` is a plain
       * ClientResponses Fault, which carries a code and nothing else.
       */
      ['results', list([['opId', u32], ['sealed', u8], ['response', bytes(0, MAX_CLIENT_MESSAGE)]] as const, MAX_BATCH_OPS)],
    ],
    Aborted: [['epoch', u53]],
    /** A Batch sent while another was pending: computed and held; Prepare (after that one's Commit) prepares it. */
    Staged: [['epoch', u53]],
    ZeroizeDone: [],
    AuthSet: [['issuers', u8]],
    /**
     * `firstBad` = index of the first event that fails, the number of events if the run stops
     * short of its end, or 0xffffffff if all verify. `anchor`: for a run that verified, the
     * enclave's word that (fromSeq, fromHead) is on the committed chain (an AuditVerify may end
     * there); empty otherwise. `entries`: the run opened, when the operator secret came with it.
     */
    AuditResult: [
      ['firstBad', u32],
      ['headSeq', u53],
      ['anchor', bytes(0, 32)],
      ['entries', list(AuditEntrySchema, MAX_AUDIT_RUN)],
    ],
    /** Of a Census chunk: the rows that were live records (opened), and how many of them are locked. */
    CensusResult: [
      ['live', u32],
      ['locked', u32],
    ],
    Fault: [
      ['code', u16],
      ['field', bytes(0, 64)],
      ['message', bytes(0, 256)],
    ],
  } as const,
  1 << 22,
);
export type HostResponse = Message<typeof HostResponses.schemas>;

/**
 * The answers each host request has besides a Fault: the request-to-response map, as data (so
 * the host checks an answer at run time) and as the type `ResponseOf`. A Batch is Prepared, or
 * Staged when another batch is pending (its Prepared comes with the Prepare after that one's Commit).
 */
export const HOST_RESPONSE_OF = {
  Info: ['InfoResult'],
  LoadChunk: ['Loading'],
  LoadEnd: ['Loaded'],
  Batch: ['Prepared', 'Staged'],
  Commit: ['Committed'],
  Abort: ['Aborted'],
  Prepare: ['Prepared'],
  Apply: ['Prepared'],
  Zeroize: ['ZeroizeDone'],
  SetAuth: ['AuthSet'],
  AuditVerify: ['AuditResult'],
  Census: ['CensusResult'],
} as const satisfies { [K in HostRequest['type']]: readonly Exclude<HostResponse['type'], 'Fault'>[] };

/**
 * Byte fields decoded as views into the message instead of copies (codec.ts decodeMessage
 * `views`), one set per side, declared here once. A view is safe only where the message's buffer
 * is the reader's alone and nobody writes it while a view lives (not a SharedArrayBuffer: the
 * enclave copies one first) and the reader keeps no view past its use.
 * - HOST_REQUEST_VIEWS (the enclave, enclave/main.ts): fields the vault only reads, synchronously,
 *   while it handles the request. Record ids, which end up in session state, stay copies.
 * - HOST_RESPONSE_VIEWS (the host, host/vault/engine.ts: the answer is a buffer the channel gives
 *   the engine alone): the sealed blobs and the audit events' bytes go to storage, which copies
 *   them (the events as the enclave encoded them, never decoded there), and the responses to their
 *   clients, read-only.
 */
export const HOST_REQUEST_VIEWS: ReadonlySet<string> = new Set(['ops.stored', 'ops.request', 'entries.blob']);
export const HOST_RESPONSE_VIEWS: ReadonlySet<string> = new Set(['writes.recordId', 'writes.blob', 'audit.bytes', 'results.response']);
/**
 * CLIENT_REQUEST_VIEWS (the enclave, enclave/vault/compute.ts `admit`: the request is the plaintext
 * its e2e open made for this op alone): the issuer token, read once by the token check (which
 * keeps only a string made from it), and the KE1 and KE3, read by the OPAQUE server while the op
 * runs (its login state keeps only the MAC and session key it derives). Fields that sessions or
 * records keep (stage ids, records, backup keys, authorizations) stay copies.
 */
export const CLIENT_REQUEST_VIEWS: ReadonlySet<string> = new Set(['auth', 'ke1', 'ke3']);

/** The response a host request `R` gets when it does not fail. */
export type ResponseOf<R extends HostRequest> = Extract<HostResponse, { type: (typeof HOST_RESPONSE_OF)[R['type']][number] }>;

/** `InfoResult.state` */
export const ENCLAVE_STATE = { ready: 0, selfTestFailed: 1, zeroized: 2, notLoaded: 3 } as const;

/** `InfoResult.selfTest`: a zeroized device boots without running them. */
export const SELF_TEST = { notRun: 0, passed: 1, failed: 2 } as const;

// ---- client <-> enclave (inside HPKE) --------------------------------------------------------

const ksfParams = bytes(1, 32);
/**
 * The issuer's token for this record (enclave/api/auth.ts): the first field of every client
 * operation, checked by the enclave before the operation runs. Empty only to be refused.
 */
const authToken = ['auth', bytes(0, MAX_AUTH_TOKEN)] as const;

export const ClientRequests = defineFamily(
  API_VERSION,
  {
    RegisterStart: 0x01,
    RegisterFinish: 0x02,
    LoginStart: 0x03,
    LoginFinish: 0x04,
    Status: 0x05,
    Delete: 0x06,
  },
  {
    RegisterStart: [
      authToken,
      ['suite', u8],
      ['request', bytes(32, 33)],
      ['attemptLimit', u8],
      ['ksf', ksfParams],
      /** The guess pacing schedule (api/pacing.ts), no laxer than the vault's floor. */
      ['pacing', u8],
    ],
    /**
     * `backupKey` absent: keep the current key (a password change). Replacing a live record
     * needs `authorization`: a MAC proving the current password (a recovered session) or the
     * current backup key.
     */
    RegisterFinish: [
      authToken,
      ['stageId', fixed(STAGE_ID_LEN)],
      ['record', bytes(129, 192)], // RFC 9807 RegistrationRecord: 129 (P-256) or 192 (ristretto255)
      ['backupKey', opt(fixed(32))],
      ['authorization', opt(bytes(1, 128))],
    ],
    LoginStart: [
      authToken,
      ['suite', u8],
      ['ke1', bytes(96, 98)], // KE1: 96 (ristretto255) or 98 (P-256)
    ],
    LoginFinish: [
      authToken,
      ['sessionId', fixed(SESSION_ID_LEN)],
      ['ke3', bytes(32, 64)],
    ],
    Status: [authToken],
    /**
     * Deleting a live record destroys its backup key, so it needs the same proof as replacing it:
     * of the current backup key (over the record's registration id, from StatusResult) or of the
     * current password (a recovered session, used once). A locked record needs none.
     */
    Delete: [authToken, ['authorization', opt(bytes(1, 128))]],
  } as const,
  MAX_CLIENT_MESSAGE,
);
export type ClientRequest = Message<typeof ClientRequests.schemas>;

export const ClientResponses = defineFamily(
  API_VERSION,
  {
    RegisterStarted: 0x81,
    Registered: 0x82,
    LoginStarted: 0x83,
    Recovered: 0x84,
    WrongPassword: 0x85,
    Locked: 0x86,
    NotRegistered: 0x87,
    StatusResult: 0x88,
    Deleted: 0x89,
    RetryLater: 0x8a,
    Fault: 0xff,
  },
  {
    RegisterStarted: [
      ['stageId', fixed(STAGE_ID_LEN)],
      ['response', bytes(64, 66)],
    ],
    Registered: [
      ['attemptsRemaining', u8],
      ['attemptLimit', u8],
    ],
    LoginStarted: [
      ['sessionId', fixed(SESSION_ID_LEN)],
      ['ke2', bytes(227, 320)], // KE2: 320 (ristretto255) or 227 (P-256)
      ['ksf', ksfParams],
      ['attemptsRemaining', u8],
    ],
    /** The backup key, AES-256-GCM under a key derived from the OPAQUE session key. */
    Recovered: [
      ['wrappedKey', fixed(12 + 32 + 16)],
      ['attemptsRemaining', u8],
    ],
    WrongPassword: [
      ['attemptsRemaining', u8],
      ['locked', u8],
    ],
    Locked: [],
    NotRegistered: [],
    StatusResult: [
      ['registered', u8],
      ['locked', u8],
      ['attemptsRemaining', u8],
      ['attemptLimit', u8],
      ['suite', u8],
      /** Random per registration (not secret): what a backup-key proof of deletion is bound to. */
      ['registrationId', fixed(16)],
    ],
    Deleted: [],
    /** A LoginStart that came before the record's pacing allows its next guess: nothing charged. */
    RetryLater: [
      ['retryAfterSeconds', u32],
      ['attemptsRemaining', u8],
    ],
    Fault: [
      ['code', u16],
      ['field', bytes(0, 64)],
    ],
  } as const,
  MAX_CLIENT_MESSAGE,
);
export type ClientResponse = Message<typeof ClientResponses.schemas>;
