/**
 * enclave/api/expect.ts: `expectResponse` passes the expected type through (narrowed) and refuses
 * every other answer with an `UnexpectedResponse` naming what was expected and what came.
 */
import { describe, expect, it } from 'vitest';
import { Handling } from '../../../enclave/api/codes.ts';
import { UnexpectedResponse, expectResponse } from '../../../enclave/api/expect.ts';
import type { ClientResponse, HostResponse } from '../../../enclave/api/messages.ts';

const te = new TextEncoder();
const status: ClientResponse = { type: 'StatusResult', attemptsRemaining: 7, locked: 0 } as ClientResponse;
const fault: ClientResponse = { type: 'Fault', code: Handling.UnknownSession, field: te.encode('sessionId') } as ClientResponse;

function thrown(f: () => unknown): UnexpectedResponse {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UnexpectedResponse);
    return e as UnexpectedResponse;
  }
  throw new Error('expectResponse did not throw');
}

describe('expectResponse', () => {
  it('returns the answer itself when its type is the one expected', () => {
    const r = expectResponse(status, 'StatusResult', 'Status');
    expect(r).toBe(status);
    // Narrowed: the StatusResult fields are readable without a cast.
    expect(r.attemptsRemaining).toBe(7);
  });

  it('accepts any type of a list', () => {
    const staged = { type: 'Staged' } as unknown as HostResponse;
    expect(expectResponse(staged, ['Prepared', 'Staged'], 'Batch')).toBe(staged);
  });

  it('refuses another type and names both', () => {
    const e = thrown(() => expectResponse(status, 'Registered', 'register alice'));
    expect(e.expected).toEqual(['Registered']);
    expect(e.actual).toBe('StatusResult');
    expect(e.faultCode).toBeUndefined();
    expect(e.message).toBe('register alice: expected Registered, got StatusResult');
  });

  it('refuses a Fault with its code, name and field', () => {
    const e = thrown(() => expectResponse(fault, 'Recovered', 'finish'));
    expect(e.actual).toBe('Fault');
    expect(e.faultCode).toBe(Handling.UnknownSession);
    expect(e.faultField).toBe('sessionId');
    expect(e.message).toBe(`finish: expected Recovered, got Fault ${Handling.UnknownSession} (Handling.UnknownSession, field sessionId)`);
  });

  it('refuses a host Fault with its text', () => {
    const hostFault = { type: 'Fault', code: Handling.UnknownSession, field: new Uint8Array(0), message: te.encode('no such batch') } as HostResponse;
    const e = thrown(() => expectResponse(hostFault, 'Committed', 'Commit'));
    expect(e.faultField).toBeUndefined();
    expect(e.faultMessage).toBe('no such batch');
    expect(e.message).toBe(`Commit: expected Committed, got Fault ${Handling.UnknownSession} (Handling.UnknownSession: no such batch)`);
  });

  it('refuses no answer at all', () => {
    const e = thrown(() => expectResponse(undefined as HostResponse | undefined, ['Prepared', 'Staged'], 'Batch'));
    expect(e.actual).toBeUndefined();
    expect(e.message).toBe('Batch: expected Prepared or Staged, got no answer');
    expect(thrown(() => expectResponse(null as HostResponse | null, 'Loaded', 'LoadEnd')).message).toBe('LoadEnd: expected Loaded, got no answer');
  });
});
