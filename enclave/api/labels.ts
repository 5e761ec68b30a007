/**
 * Every domain-separation label of the project in one table: HKDF infos, HMAC labels, the HPKE
 * info and export label, the AAD prefixes of the end-to-end envelope. A label names one purpose:
 * never reuse one for another, never change one (the keys and MACs they separate are in golden
 * files and in every stored record). ASCII; each user encodes it once (UTF-8 = ASCII here).
 *
 * Who derives what:
 *   enclave/vault/keys.ts       the enclave's keys, HMAC(derive key, label) on the token
 *   enclave/vault/audit.ts      the audit chain's MAC labels
 *   enclave/vault/ops.ts        the fake record of an unknown id (prefix + suite id)
 *   enclave/api/authorize.ts    authorization proofs and the release key (client side, @noble)
 *   enclave/vault/release.ts    the same keys on node:crypto (enclave side)
 *   enclave/vault/e2e-open.ts   the end-to-end envelope, enclave side (node:crypto)
 *   client/e2e-seal.ts          the end-to-end envelope, client side (@hpke/core)
 *   client/backup-key.ts        the backup key's check group and the backup file keys
 *   enclave/fleet/wire.ts       the fleet's message MACs, entry and configuration hashes
 *   enclave/fleet/keys.ts       the fleet's pairwise message keys (and the one replication key of the positive control shared-key)
 *   enclave/fleet/vault-keys.ts the vault keys every member of a fleet imports into its token, and their check
 */
export const LABELS = {
  // enclave keys (enclave/vault/keys.ts); the first two are prefixes of the suite id
  oprfSeedPrefix: 'bkv/oprf-seed/',
  opaqueServerKeyPrefix: 'bkv/opaque-server-key/',
  e2eKey: 'bkv/e2e-key',
  fakeRecord: 'bkv/fake-record',
  index: 'bkv/index',
  audit: 'bkv/audit',
  auditSeal: 'bkv/audit/seal',
  keyCheck: 'bkv/key-check',
  // the fake record of an unknown id (enclave/vault/ops.ts): a prefix of the suite id
  fakePrefix: 'bkv/fake/',
  // the audit chain (enclave/vault/audit.ts)
  auditRecord: 'bkv/audit/record',
  auditAnchor: 'bkv/audit/anchor',
  // authorization and release (enclave/api/authorize.ts, enclave/vault/release.ts)
  authorizeReplace: 'bkv/authorize/v1',
  authorizeDelete: 'bkv/delete/v1',
  authorizeKey: 'bkv/authorize/key',
  authorizeSession: 'bkv/authorize/session',
  release: 'bkv/release',
  // the end-to-end envelope (HPKE info, export label, AAD prefixes before the record id)
  e2eInfo: 'bkv/e2e/v1',
  e2eResponse: 'bkv/e2e/response',
  e2eRequestAad: 'req',
  e2eResponseAad: 'resp',
  // backup key and backup files (client/backup-key.ts)
  backupKeyCheck: 'bkv/backup-key/check/v1',
  backupFileKey: 'bkv/backup/v1/file-key',
  backupHeaderKey: 'bkv/backup/v1/header-key',
  backupKeyCheckValue: 'bkv/backup/v1/key-check',
  // the fleet (enclave/fleet/wire.ts): message MACs, entry and configuration hashes; the replication key (HKDF info) only in keys.ts's positive control
  fleetReplicationKey: 'bkv/fleet/replication/v1',
  fleetMessage: 'bkv/fleet/message/v1',
  fleetEntry: 'bkv/fleet/entry/v1',
  fleetConfig: 'bkv/fleet/config/v1',
  // the fleet's key ceremony (enclave/fleet/ceremony.ts): identity fingerprints, the charter hash, grant HPKE info, the secret's check
  fleetIdentity: 'bkv/fleet/identity/v1',
  fleetCharter: 'bkv/fleet/charter/v1',
  fleetGrant: 'bkv/fleet/grant/v1',
  fleetSecretCheck: 'bkv/fleet/secret-check/v1',
  // charter changes (enclave/fleet/ceremony.ts): the hash of a changed charter, the HPKE info of a grant to a member it adds
  fleetCharterChange: 'bkv/fleet/charter-change/v1',
  fleetJoinGrant: 'bkv/fleet/join-grant/v1',
  // the fleet's pairwise message keys (enclave/fleet/keys.ts): HKDF info prefix, before the charter hash, sender and receiver
  fleetMessageKey: 'bkv/fleet/message-key/v1',
  // the fleet's vault keys (enclave/fleet/vault-keys.ts): HKDF info prefix, before the charter hash and the key's token label; the check a token's keys are this fleet's
  fleetVaultKey: 'bkv/fleet/vault-key/v1',
  fleetVaultKeyCheck: 'bkv/fleet/vault-key-check/v1',
} as const;

/** The AAD of one direction of the end-to-end envelope: its prefix (`req` or `resp`) || record id. */
export function e2eAad(prefix: Uint8Array, recordId: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + recordId.length);
  out.set(prefix, 0);
  out.set(recordId, prefix.length);
  return out;
}
