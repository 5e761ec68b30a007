/**
 * enclave/api/messages.ts HOST_REQUEST_VIEWS, HOST_RESPONSE_VIEWS and CLIENT_REQUEST_VIEWS: the byte fields each side
 * decodes as views into the message (codec.ts decodeMessage `views`). Each path names a byte field
 * of its family (a misspelt path would silently copy again); the listed fields are views of the
 * message's buffer and every other byte field, record ids of requests included, is a copy; and
 * the strict decoder refuses malformed input with views exactly as without.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../../enclave/api/codec.ts';
import type { Family, Kind, Schema } from '../../../enclave/api/codec.ts';
import { Codec, EnclaveFault } from '../../../enclave/api/codes.ts';
import { AUDIT_EVENT_LEN, CLIENT_REQUEST_VIEWS, ClientRequests, HOST_REQUEST_VIEWS, HOST_RESPONSE_VIEWS, HostRequests, HostResponses } from '../../../enclave/api/messages.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));

/** The paths of every byte field (fixed or bytes, also inside lists and options) of a family. */
function bytePaths(fam: Family<Record<string, Schema>>): Set<string> {
  const out = new Set<string>();
  const walk = (schema: Schema, prefix: string) => {
    for (const [name, kind] of schema) visit(kind, prefix ? `${prefix}.${name}` : name);
  };
  const visit = (kind: Kind, path: string) => {
    if (kind.k === 'fixed' || kind.k === 'bytes') out.add(path);
    else if (kind.k === 'list') walk(kind.of, path);
    else if (kind.k === 'opt') visit(kind.of, path);
  };
  for (const schema of Object.values(fam.schemas)) walk(schema, '');
  return out;
}

const shares = (field: Uint8Array, msg: Uint8Array) => field.buffer === msg.buffer;

describe('the decoders’ view sets', () => {
  it('name byte fields of their own family', () => {
    expect(HOST_REQUEST_VIEWS.size).toBeGreaterThan(0);
    expect(HOST_RESPONSE_VIEWS.size).toBeGreaterThan(0);
    const req = bytePaths(HostRequests);
    const res = bytePaths(HostResponses);
    for (const p of HOST_REQUEST_VIEWS) expect(req.has(p), p).toBe(true);
    for (const p of HOST_RESPONSE_VIEWS) expect(res.has(p), p).toBe(true);
    expect(CLIENT_REQUEST_VIEWS.size).toBeGreaterThan(0);
    const client = bytePaths(ClientRequests);
    for (const p of CLIENT_REQUEST_VIEWS) expect(client.has(p), p).toBe(true);
  });

  it('a client request: the token, KE1 and KE3 are views of the plaintext; what sessions or records keep is a copy', () => {
    const auth = rnd(300);
    const start = encodeMessage(ClientRequests, { type: 'LoginStart', auth, suite: 1, ke1: rnd(96) });
    const s = decodeMessage(ClientRequests, start, { views: CLIENT_REQUEST_VIEWS });
    if (s.type !== 'LoginStart') throw new Error(s.type);
    expect(s.auth).toEqual(auth);
    expect(shares(s.auth, start) && shares(s.ke1, start)).toBe(true);
    const finish = encodeMessage(ClientRequests, { type: 'LoginFinish', auth, sessionId: rnd(16), ke3: rnd(64) });
    const f = decodeMessage(ClientRequests, finish, { views: CLIENT_REQUEST_VIEWS });
    if (f.type !== 'LoginFinish') throw new Error(f.type);
    expect(shares(f.ke3, finish)).toBe(true);
    expect(shares(f.sessionId, finish)).toBe(false);
    const reg = encodeMessage(ClientRequests, { type: 'RegisterFinish', auth, stageId: rnd(16), record: rnd(192), backupKey: rnd(32), authorization: rnd(64) });
    const r = decodeMessage(ClientRequests, reg, { views: CLIENT_REQUEST_VIEWS });
    if (r.type !== 'RegisterFinish') throw new Error(r.type);
    expect(shares(r.auth, reg)).toBe(true);
    for (const [name, field] of Object.entries({ stageId: r.stageId, record: r.record, backupKey: r.backupKey!, authorization: r.authorization! })) expect(shares(field, reg), name).toBe(false);
  });

  it('a Batch: the stored blobs and requests are views of the message, the record ids copies', () => {
    const ops = Array.from({ length: 3 }, (_, i) => ({ opId: i, recordId: rnd(20), stored: rnd(300), request: rnd(500) }));
    const msg = encodeMessage(HostRequests, { type: 'Batch', epoch: 7, ops });
    const d = decodeMessage(HostRequests, msg, { views: HOST_REQUEST_VIEWS });
    if (d.type !== 'Batch') throw new Error(d.type);
    for (const [i, op] of d.ops.entries()) {
      expect(op.stored).toEqual(ops[i]!.stored);
      expect(op.request).toEqual(ops[i]!.request);
      expect(op.recordId).toEqual(ops[i]!.recordId);
      expect(shares(op.stored, msg) && shares(op.request, msg)).toBe(true);
      expect(shares(op.recordId, msg)).toBe(false);
    }
    // What a view means: a change to the message shows through it, and never through a copy.
    const before = Uint8Array.from(d.ops[0]!.recordId);
    msg.fill(0xee);
    expect(d.ops[0]!.request.every((x) => x === 0xee)).toBe(true);
    expect(d.ops[0]!.recordId).toEqual(before);
    // Without the set every byte field is a copy.
    const copy = decodeMessage(HostRequests, encodeMessage(HostRequests, { type: 'Batch', epoch: 7, ops }));
    if (copy.type !== 'Batch') throw new Error(copy.type);
    expect(copy.ops.some((op) => op.stored.buffer.byteLength !== op.stored.length)).toBe(false);
  });

  it('a Prepared and a Committed: blobs, audit bytes and responses are views on the host side', () => {
    const writes = [{ recordId: rnd(20), blob: rnd(300) }];
    const audit = [{ seq: 1, bytes: rnd(AUDIT_EVENT_LEN) }];
    const prepared = encodeMessage(HostResponses, { type: 'Prepared', epoch: 3, writes, audit, ops: [] });
    const p = decodeMessage(HostResponses, prepared, { views: HOST_RESPONSE_VIEWS });
    if (p.type !== 'Prepared') throw new Error(p.type);
    expect(p.writes[0]!.blob).toEqual(writes[0]!.blob);
    expect(p.audit[0]!.bytes).toEqual(audit[0]!.bytes);
    expect(shares(p.writes[0]!.blob, prepared) && shares(p.writes[0]!.recordId, prepared) && shares(p.audit[0]!.bytes, prepared)).toBe(true);
    const committed = encodeMessage(HostResponses, { type: 'Committed', epoch: 3, results: [{ opId: 0, sealed: 1, response: rnd(400) }] });
    const c = decodeMessage(HostResponses, committed, { views: HOST_RESPONSE_VIEWS });
    if (c.type !== 'Committed') throw new Error(c.type);
    expect(shares(c.results[0]!.response, committed)).toBe(true);
  });

  it('refuses truncated, overlong and trailing input with views as without: the same typed fault', () => {
    const msg = encodeMessage(HostRequests, { type: 'Batch', epoch: 7, ops: [{ opId: 1, recordId: rnd(20), stored: rnd(300), request: rnd(500) }] });
    const faultOf = (b: Uint8Array, views?: ReadonlySet<string>) => {
      try {
        decodeMessage(HostRequests, b, views ? { views } : undefined);
      } catch (e) {
        expect(e).toBeInstanceOf(EnclaveFault);
        return [(e as EnclaveFault).code, (e as EnclaveFault).field];
      }
      return null;
    };
    const bad = [msg.subarray(0, msg.length - 1), msg.subarray(0, 40), Uint8Array.of(...msg, 0)];
    // The request's length prefix raised past the end of the message.
    const long = Uint8Array.from(msg);
    const at = msg.length - 500 - 2;
    long[at] = 0x0f;
    bad.push(long);
    for (const b of bad) {
      const f = faultOf(b, HOST_REQUEST_VIEWS);
      expect(f).not.toBeNull();
      expect(f).toEqual(faultOf(b));
    }
    expect(faultOf(msg.subarray(0, msg.length - 1), HOST_REQUEST_VIEWS)![0]).toBe(Codec.Truncated);
    expect(faultOf(Uint8Array.of(...msg, 0), HOST_REQUEST_VIEWS)![0]).toBe(Codec.TrailingBytes);
  });
});
