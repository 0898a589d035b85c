// End-to-end: the client against a real `convergence serve` (test/server.ts).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Client,
  codec,
  FrameSplitter,
  tcpConnector,
  type Connector,
  type SubscriptionEvent,
  type Subscription,
} from '../src/index.js';
import { TestServer } from './server.js';

/** The next `n` events of `sub`, failing after `ms`. */
async function take(sub: Subscription, n: number, ms = 10000): Promise<SubscriptionEvent[]> {
  const out: SubscriptionEvent[] = [];
  const deadline = setTimeout(() => sub.close(), ms);
  try {
    while (out.length < n) {
      const r = await sub.next();
      if (r.done) throw new Error(`subscription ended after ${out.length} of ${n} events`);
      out.push(r.value);
    }
  } finally {
    clearTimeout(deadline);
  }
  return out;
}

/** Events until (and with) the next snapshot_end. */
async function untilSnapshotEnd(sub: Subscription): Promise<SubscriptionEvent[]> {
  const out: SubscriptionEvent[] = [];
  for (;;) {
    const [e] = await take(sub, 1);
    out.push(e!);
    if (e!.type === 'snapshot_end') return out;
  }
}

describe('client against a server', () => {
  let server: TestServer;
  before(async () => {
    server = new TestServer();
    await server.start();
  });
  after(async () => server.dispose());

  test('query returns the converged record, and every live claim when asked', async () => {
    const a = await Client.connect({ port: server.port, source: 'qa' });
    const b = await Client.connect({ port: server.port, source: 'qb' });
    const r = await Client.connect({ port: server.port });
    try {
      await a.assert('player', 'q-1', { name: 'ann', x: 1.5, online: true }, { ts: 1000n });
      await b.patch('player', 'q-1', { x: 2.5, score: -7n }, { ts: 2000n });
      await Promise.all([a.sync(), b.sync()]);
      const plain = await r.query('player', 'q-1');
      assert.deepStrictEqual(plain, { record: { name: 'ann', x: 2.5, score: -7n, online: true } });
      const full = await r.query('player', 'q-1', { claims: true });
      assert.deepStrictEqual(full!.claims!.map((c) => [c.source, c.tsMax, c.record]).sort(), [
        ['qa', 1000n, { name: 'ann', x: 1.5, online: true }],
        ['qb', 2000n, { x: 2.5, score: -7n }],
      ]);
      assert.equal(await r.query('player', 'q-none'), null);
      await a.retract('player', 'q-1');
      await b.retract(1, 'q-1');
      await Promise.all([a.sync(), b.sync()]);
      assert.equal(await r.query(1n, 'q-1'), null);
      const stats = await r.stats();
      assert.ok((stats.get('queries') ?? 0n) >= 4n, 'STATS counts the queries');
    } finally {
      await Promise.all([a.close(), b.close(), r.close()]);
    }
  });

  test('include_prev: a change carries the record at the start of its window, null when new', async () => {
    const w = await Client.connect({ port: server.port, source: 'prev-w' });
    const r = await Client.connect({ port: server.port });
    try {
      const sub = r.subscribe('player', { prefix: 'ip-', includePrev: true, fields: ['x', 'name'] });
      const [end] = await take(sub, 1);
      assert.equal(end!.type, 'snapshot_end');
      await w.patch('player', 'ip-1', { x: 1, name: 'a', score: 3n });
      await w.sync();
      await w.patch('player', 'ip-1', { x: 2 });
      await w.sync();
      await w.retract('player', 'ip-1');
      await w.sync();
      const [c1, c2, c3] = await take(sub, 3);
      assert.ok(c1!.type === 'change' && c2!.type === 'change' && c3!.type === 'change');
      assert.equal(c1.kind, 'upsert');
      assert.equal(c1.prev, null);
      assert.deepStrictEqual(c1.record, { x: 1, name: 'a' }, 'only the subscribed fields');
      assert.deepStrictEqual(c1.changed, ['name', 'x']);
      assert.deepStrictEqual(c2.prev, { x: 1, name: 'a' });
      assert.deepStrictEqual(c2.record, { x: 2, name: 'a' });
      assert.deepStrictEqual(c2.changed, ['x']);
      assert.equal(c2.changedMask, 1n << 2n);
      assert.equal(c3.kind, 'delete');
      assert.deepStrictEqual(c3.prev, { x: 2, name: 'a' });
      assert.deepStrictEqual(c3.record, {});
      assert.ok(c2.window > c1.window && c3.window > c2.window);
      sub.close();
      assert.deepStrictEqual(await sub.next(), { value: undefined, done: true });
    } finally {
      await Promise.all([w.close(), r.close()]);
    }
  });

  test('a resume from a window the server does not know is answered with the full state, reset', async () => {
    const w = await Client.connect({ port: server.port, source: 'reset-w' });
    const r = await Client.connect({ port: server.port });
    try {
      await w.assert('player', 'rs-1', { level: 4n });
      await w.sync();
      const sub = r.subscribe('player', { prefix: 'rs-', resumeWindow: 1n << 40n });
      const events = await untilSnapshotEnd(sub);
      assert.deepStrictEqual(
        events.map((e) => (e.type === 'snapshot' ? [e.kind, e.id, e.record] : e.type === 'snapshot_end' ? [e.total, e.reset] : e.type)),
        [['upsert', 'rs-1', { level: 4n }], [1n, true]],
      );
      sub.close();
    } finally {
      await Promise.all([w.close(), r.close()]);
    }
  });

  test('flow control: never more unacknowledged ops on the wire than the credit', async () => {
    // A transport that watches both directions: ops written, ACKs, CREDITs and WELCOME's credit.
    let credit = 0n;
    let acked = 0n;
    let lastSeq = 0n;
    let maxOver = -Infinity;
    let ops = 0;
    const watch: Connector = async (handlers) => {
      const inbound = new FrameSplitter(1 << 26);
      const outbound = new FrameSplitter(1 << 26);
      const t = await tcpConnector({ host: '127.0.0.1', port: server.port, timeoutMs: 5000 })({
        onData: (chunk) => {
          inbound.push(chunk, (type, buf, s, e) => {
            if (type === codec.FrameType.ACK || type === codec.FrameType.CREDIT || type === codec.FrameType.WELCOME) {
              const f = codec.decodeFrame(type, buf, s, e);
              if (f.type === 'ACK') acked = f.seq;
              if (f.type === 'CREDIT' || f.type === 'WELCOME') credit = f.credit;
              if (f.type === 'WELCOME') acked = f.lastAppliedSeq;
            }
          });
          handlers.onData(chunk);
        },
        onClose: handlers.onClose,
      });
      return {
        write: (data) => {
          outbound.push(data, (type, buf, s) => {
            if (type === codec.FrameType.PATCH) {
              lastSeq = new codec.Reader().reset(buf, s, s + 10).varBig('seq');
              ops++;
              const over = Number(lastSeq - acked) - Number(credit);
              if (over > maxOver) maxOver = over;
            }
          });
          t.write(data);
        },
        pause: () => t.pause(),
        resume: () => t.resume(),
        close: () => t.close(),
      };
    };
    const w = await Client.connect({ connector: watch, source: 'flow-w' });
    try {
      const n = 60000;
      for (let i = 0; i < n; i++) await w.patch('player', `fc-${i % 500}`, { score: BigInt(i) });
      await w.sync();
      assert.equal(ops, n);
      assert.ok(maxOver <= 0, `in flight exceeded the credit by ${maxOver}`);
      assert.equal(w.unacknowledged, 0);
      // The writer used its credit: it was at the limit at some point.
      assert.equal(maxOver, 0);
    } finally {
      await w.close();
    }
  });
});
