// End-to-end across a server killed with SIGKILL and restarted on the same port and
// data directory: writes are resent exactly once, subscriptions resume.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client, type Id, type SubscriptionEvent, type Values } from '../src/index.js';
import { TestServer } from './server.js';

test('writes across a kill -9 and restart: resent after the reconnect, nothing lost or doubled', async () => {
  const server = new TestServer();
  await server.start();
  const lost: Error[] = [];
  const w = await Client.connect({ port: server.port, source: 'crash-w', onConnectionError: (e) => lost.push(e) });
  try {
    // ts 0 is the server's receive time: an op applied twice would be applied again
    // after the later ones and its value would win, so doubling shows in the state.
    const n = 40000;
    const entities = 200;
    let unackedAtKill = -1;
    let lastSeq = 0n;
    for (let i = 0; i < n; i++) {
      if (i === n / 2) {
        unackedAtKill = w.unacknowledged;
        await server.kill9();
        await server.start();
      }
      lastSeq = await w.patch('player', `c-${i % entities}`, { score: BigInt(i), name: `n${i}` });
    }
    await w.sync();
    assert.ok(unackedAtKill > 0, 'ops were in flight when the server was killed');
    assert.ok(lost.length >= 1, 'the client saw the connection go');
    assert.equal(w.unacknowledged, 0);

    const r = await Client.connect({ port: server.port });
    try {
      for (let e = 0; e < entities; e++) {
        const last = n - entities + e;
        const got = await r.query('player', `c-${e}`);
        assert.deepStrictEqual(got, { record: { score: BigInt(last), name: `n${last}` } }, `entity c-${e}`);
      }
      const stats = await r.stats();
      assert.equal(stats.get('duplicates'), 0n, 'only ops above last_applied_seq were resent');
      assert.equal(stats.get('entities'), BigInt(entities));
    } finally {
      await r.close();
    }
    await w.close();
    // The source's mark is the last op's seq: each seq was used once.
    const again = await Client.connect({ port: server.port, source: 'crash-w' });
    assert.equal(again.welcome.lastAppliedSeq, lastSeq);
    await again.close();
  } finally {
    await w.close();
    await server.dispose();
  }
});

function key(id: Id): string {
  return typeof id === 'string' ? id : Buffer.from(id).toString('hex');
}

test('bootstrap, then resume across a kill -9 and restart: the held state ends equal to the server', async () => {
  const server = new TestServer();
  await server.start();
  const w = await Client.connect({ port: server.port, source: 'resume-w' });
  const r = await Client.connect({ port: server.port, reconnectMaxMs: 200 });
  try {
    for (let i = 0; i < 300; i++) await w.assert('player', `s-${i}`, { level: BigInt(i) });
    await w.sync();
    const sub = r.subscribe('player', { prefix: 's-', bootstrap: true });
    const held = new Map<string, Values>();
    let sinceResume = new Set<string>();
    const events: SubscriptionEvent['type'][] = [];
    let ends = 0;
    let resetSeen = false;
    const apply = (e: SubscriptionEvent): void => {
      events.push(e.type);
      switch (e.type) {
        case 'resumed':
          sinceResume = new Set();
          break;
        case 'snapshot':
        case 'change':
          sinceResume.add(key(e.id));
          if (e.kind === 'delete') held.delete(key(e.id));
          else if (e.type === 'snapshot') held.set(key(e.id), e.record);
          else held.set(key(e.id), { ...held.get(key(e.id)), ...e.record });
          break;
        case 'snapshot_end':
          ends++;
          if (e.reset) {
            resetSeen = true;
            for (const k of [...held.keys()]) if (!sinceResume.has(k)) held.delete(k);
          }
          break;
      }
    };
    const reader = (async () => {
      for await (const e of sub) apply(e);
    })();
    const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 1000 && !cond(); i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok(cond(), what);
    };
    await waitFor(() => ends === 1, 'the bootstrap ended');
    assert.equal(held.size, 300);
    assert.ok(resetSeen, 'a bootstrap is a reset');
    resetSeen = false;

    for (let i = 0; i < 100; i++) await w.patch('player', `s-${i}`, { level: 1000n + BigInt(i) });
    await w.sync();
    await waitFor(() => held.get('s-99')?.['level'] === 1099n, 'the live changes arrived');
    const beforeKill = sub.window;
    assert.ok(beforeKill > 0n);

    await server.kill9();
    await server.start();
    // Written after the restart, while the subscriber reconnects: it gets them in its resume.
    for (let i = 100; i < 200; i++) await w.retract('player', `s-${i}`);
    await w.patch('player', 's-new', { level: 7n });
    await w.sync();

    await waitFor(() => ends === 2, 'the resume ended');
    assert.ok(events.includes('resumed'), 'the subscription said it resumed');
    assert.equal(resetSeen, false, 'a resume from a window the server has is not a reset');
    await waitFor(() => held.has('s-new') && !held.has('s-150'), 'the resume carried the changes');

    const q = await Client.connect({ port: server.port });
    try {
      const expected = new Map<string, Values>();
      for (let i = 0; i < 300; i++) {
        const got = await q.query('player', `s-${i}`);
        if (got !== null) expected.set(`s-${i}`, got.record);
      }
      expected.set('s-new', (await q.query('player', 's-new'))!.record);
      assert.deepStrictEqual(new Map([...held].sort()), new Map([...expected].sort()));
      assert.equal(held.size, 201);
    } finally {
      await q.close();
    }
    sub.close();
    await reader;
  } finally {
    await Promise.all([w.close(), r.close()]);
    await server.dispose();
  }
});

test('a subscription the server ends for holding too much resumes by itself and catches up', async () => {
  // An hourly interval merges every change; past 64 KiB of them the server ends the
  // subscription (ERROR(sub, overloaded)) and the client resumes from its last window.
  const server = new TestServer({ args: ['--subscriber-backlog', '65536'] });
  await server.start();
  const w = await Client.connect({ port: server.port, source: 'held-w' });
  const r = await Client.connect({ port: server.port });
  try {
    const sub = r.subscribe('player', { prefix: 'h-', intervalMs: 3_600_000 });
    const held = new Map<string, Values>();
    const events: SubscriptionEvent['type'][] = [];
    const reader = (async () => {
      for await (const e of sub) {
        events.push(e.type);
        if (e.type === 'snapshot' || e.type === 'change') held.set(key(e.id), e.record);
      }
    })();
    const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 1000 && !cond(); i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok(cond(), what);
    };
    await waitFor(() => events.includes('snapshot_end'), 'the subscription started');
    const name = 'n'.repeat(100);
    for (let i = 0; i < 2000; i++) w.assert('player', `h-${i}`, { level: BigInt(i), name });
    await w.sync();
    await waitFor(() => events.includes('resumed'), 'the subscription resumed');
    await waitFor(() => held.size === 2000, 'the resume brought every entity');
    assert.deepStrictEqual(held.get('h-1999'), { level: 1999n, name });
    assert.ok((await r.stats()).get('held_overflows')! >= 1n);
    sub.close();
    await reader;
  } finally {
    await w.close();
    await r.close();
    await server.dispose();
  }
});
