// The client over WebSocket (`url` option, websocketConnector) against a real
// `convergence serve --ws-listen`: the same API and results as over TCP, messages cut
// anywhere, reconnection across a kill -9, and the errors of a refused connection.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, ConnectionLostError, websocketConnector } from '../src/index.js';
import { TestServer } from './server.js';

describe('client over WebSocket', () => {
  let server: TestServer;
  before(async () => {
    server = new TestServer({ ws: true });
    await server.start();
  });
  after(async () => {
    await server.dispose();
  });

  test('writes, QUERY with claims, STATS and a subscription work as over TCP', async () => {
    const w = await Client.connect({ url: server.wsUrl, source: 'ws-w' });
    const r = await Client.connect({ url: server.wsUrl });
    const tcp = await Client.connect({ port: server.port });
    try {
      const sub = r.subscribe('player', { prefix: 'ws-' });
      const it = sub[Symbol.asyncIterator]();
      assert.equal((await it.next()).value.type, 'snapshot_end');
      await w.patch('player', 'ws-1', { name: 'over websocket', score: 5n });
      await w.sync();
      assert.deepStrictEqual(await r.query('player', 'ws-1'), { record: { name: 'over websocket', score: 5n } });
      assert.deepStrictEqual(await tcp.query('player', 'ws-1'), { record: { name: 'over websocket', score: 5n } });
      const claims = await r.query('player', 'ws-1', { claims: true });
      assert.equal(claims?.claims?.[0]?.source, 'ws-w');
      const change = await it.next();
      assert.equal(change.value.type, 'change');
      assert.equal(change.value.id, 'ws-1');
      assert.ok((await r.stats()).get('connections')! >= 3n);
    } finally {
      await Promise.all([w.close(), r.close(), tcp.close()]);
    }
  });

  test('bytes cut into tiny messages anywhere arrive as one stream', async () => {
    const w = await Client.connect({ connector: websocketConnector({ url: server.wsUrl, timeoutMs: 5000, maxMessage: 7 }), source: 'ws-tiny' });
    try {
      for (let i = 0; i < 200; i++) await w.patch('player', `tiny-${i % 10}`, { score: BigInt(i) });
      await w.sync();
      assert.deepStrictEqual(await w.query('player', 'tiny-9'), { record: { score: 199n } });
    } finally {
      await w.close();
    }
  });

  test('a refused upgrade rejects connect with the transport\'s error', async () => {
    await assert.rejects(
      Client.connect({ url: `ws://127.0.0.1:${server.port}/`, connectTimeoutMs: 5000 }),
      (e: unknown) => e instanceof ConnectionLostError,
    );
  });

  test('without a WebSocket class the connector says what to do', async () => {
    const connect = websocketConnector({ url: server.wsUrl, timeoutMs: 1000, WebSocket: undefined });
    const saved = (globalThis as { WebSocket?: unknown }).WebSocket;
    Object.defineProperty(globalThis, 'WebSocket', { value: undefined, configurable: true, writable: true });
    try {
      await assert.rejects(connect({ onData: () => {}, onClose: () => {} }), /no WebSocket/);
    } finally {
      Object.defineProperty(globalThis, 'WebSocket', { value: saved, configurable: true, writable: true });
    }
  });
});

test('over WebSocket, writes survive a kill -9 and restart exactly once', async () => {
  const server = new TestServer({ ws: true });
  await server.start();
  const lost: Error[] = [];
  const w = await Client.connect({ url: server.wsUrl, source: 'ws-crash', onConnectionError: (e) => lost.push(e) });
  try {
    const n = 4000;
    for (let i = 0; i < n; i++) {
      if (i === n / 2) {
        await server.kill9();
        await server.start();
      }
      await w.patch('player', `k-${i % 50}`, { score: BigInt(i) });
    }
    await w.sync();
    assert.ok(lost.length >= 1, 'the client saw the connection go');
    const r = await Client.connect({ url: server.wsUrl });
    try {
      for (let e = 0; e < 50; e++) {
        const last = n - 50 + e;
        assert.deepStrictEqual(await r.query('player', `k-${e}`), { record: { score: BigInt(last) } });
      }
      assert.equal((await r.stats()).get('duplicates'), 0n);
    } finally {
      await r.close();
    }
  } finally {
    await w.close();
    await server.dispose();
  }
});
