/**
 * The multi-process test's ledger (ledger.ts) reports what it must: a consistent history with
 * its acknowledgements passes; a lost acknowledged operation, a fork between two trails, a guess
 * acknowledged to two sessions, a guess number taken back, a charge past the limit and a reset
 * with nothing charged are each reported.
 */
import { describe, expect, it } from 'vitest';
import { checkLedger, type Ack, type OpJson } from './ledger.ts';

const line = (index: number, hash: string, ...ops: OpJson[]) => JSON.stringify({ index, hash, ops });
const reg = (base = 0): OpJson => ({ kind: 'register', id: 'r', base, limit: 2 });
const charge = (base: number, guess: number, session: number): OpJson => ({ kind: 'charge', id: 'r', base, guess, session });
const reset = (base: number, session: number): OpJson => ({ kind: 'reset', id: 'r', base, session });
const ack = (index: number, hash: string, op: OpJson): Ack => ({ index, hash, op, by: 'm0' });

const good = [line(1, 'h1', reg()), line(2, 'h2', charge(1, 1, 10)), line(3, 'h3', reset(2, 10)), line(4, 'h4', charge(3, 2, 11))].join('\n');
const goodAcks = [ack(1, 'h1', reg()), ack(2, 'h2', charge(1, 1, 10)), ack(4, 'h4', charge(3, 2, 11))];

describe('the fleet ledger', () => {
  it('passes a history and acknowledgements that agree; two trails that overlap agree', () => {
    const r = checkLedger([{ name: 'a', text: good }, { name: 'b', text: good.split('\n').slice(1, 3).join('\n') }], goodAcks);
    expect(r.violations).toEqual([]);
    expect(r.entries).toBe(4);
  });

  it('reports an acknowledged operation the history lost, or holds elsewhere', () => {
    expect(checkLedger([{ name: 'a', text: good }], [...goodAcks, ack(5, 'h5', charge(4, 3, 12))]).violations).toEqual([expect.stringMatching(/in no member's committed history/)]);
    expect(checkLedger([{ name: 'a', text: good }], [ack(2, 'h2', charge(1, 1, 99))]).violations).toEqual([expect.stringMatching(/not what the history holds/)]);
  });

  it('reports a fork between two trails', () => {
    const other = line(2, 'x2', charge(1, 1, 20));
    expect(checkLedger([{ name: 'a', text: good }, { name: 'b', text: other }], []).violations).toEqual([expect.stringMatching(/fork at entry 2/)]);
  });

  it('reports a guess acknowledged to two sessions, a guess number taken back, a charge past the limit, a reset with nothing charged', () => {
    expect(checkLedger([{ name: 'a', text: good }], [ack(2, 'h2', charge(1, 1, 10)), { ...ack(2, 'h2', charge(1, 1, 10)), op: charge(1, 1, 77) }]).violations).toContainEqual(expect.stringMatching(/acknowledged to sessions 10 and 77/));
    const back = [line(1, 'h1', reg()), line(2, 'h2', charge(1, 1, 10)), line(3, 'h3', charge(2, 1, 11))].join('\n');
    expect(checkLedger([{ name: 'a', text: back }], []).violations).toEqual([expect.stringMatching(/guess 1 of r after guess 1/)]);
    const past = [line(1, 'h1', reg()), line(2, 'h2', charge(1, 1, 10)), line(3, 'h3', charge(2, 2, 11)), line(4, 'h4', charge(3, 3, 12))].join('\n');
    expect(checkLedger([{ name: 'a', text: past }], []).violations).toEqual([expect.stringMatching(/past its limit/)]);
    const empty = [line(1, 'h1', reg()), line(2, 'h2', reset(1, 10))].join('\n');
    expect(checkLedger([{ name: 'a', text: empty }], []).violations).toEqual([expect.stringMatching(/nothing charged/)]);
  });
});
