// Several servers (ClientOptions.servers): tried in order, not_owner answers followed,
// a lost writer moved to the next server with its unacknowledged ops resent, and an
// error naming every address when none answers.

import assert from 'node:assert/strict';
import { createServer, type Server as NetServer } from 'node:net';
import { test } from 'node:test';

import { Client, ConnectionLostError, parseServers } from '../src/index.js';
import { TestServer } from './server.js';

/** A loopback port nothing listens on (bound, then released). */
async function closedAddress(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** Answers every HELLO with ERROR not_owner naming `owner`, as a read replica does. */
async function notOwnerServer(owner: string): Promise<{ address: string; server: NetServer }> {
  const message = Buffer.from(`this server is a read replica; the owner is at ${owner}`);
  // ERROR: seq_or_req 0, code 14 (not_owner), str message (varint length; < 128 here).
  const payload = Buffer.concat([Buffer.from([0, 14, message.length]), message]);
  const frame = Buffer.alloc(5);
  frame.writeUInt32LE(payload.length + 1, 0);
  frame[4] = 0x03;
  const reply = Buffer.concat([frame, payload]);
  const server = createServer((sock) => {
    sock.once('data', () => sock.end(reply));
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

test('a server list is split, a wrong entry named by its position', () => {
  assert.deepStrictEqual(
    parseServers('a:1,[::1]:2').map((s) => [s.host, s.port]),
    [
      ['a', 1],
      ['::1', 2],
    ],
  );
  assert.deepStrictEqual(parseServers(['a:1']).map((s) => s.address), ['a:1']);
  assert.throws(() => parseServers(''), /the server list is empty/);
  assert.throws(() => parseServers('a:1,,b:2'), /servers 'a:1,,b:2': entry 2 is empty/);
  assert.throws(() => parseServers('a:1,b'), /servers 'a:1,b': entry 2: 'b' is not HOST:PORT/);
  assert.throws(() => parseServers(['a:1', 'b:70000']), /entry 2: 'b:70000' is not HOST:PORT/);
});

test('the first server down, the next one of the list takes the connection', async () => {
  const server = new TestServer();
  await server.start();
  try {
    const live = `127.0.0.1:${server.port}`;
    const c = await Client.connect({ servers: [await closedAddress(), live], source: 'w' });
    assert.equal(c.server, live);
    await c.patch('player', 'p', { score: 1n });
    await c.sync();
    await c.close();
  } finally {
    await server.dispose();
  }
});

test('every server down: the error names each address', async () => {
  const a = await closedAddress();
  const b = await closedAddress();
  await assert.rejects(Client.connect({ servers: `${a},${b}` }), (e: unknown) => {
    assert.ok(e instanceof ConnectionLostError);
    assert.match(e.message, new RegExp(`^no server of ${a},${b} took the connection: ${a}: .*ECONNREFUSED.*; ${b}: `));
    return true;
  });
});

test('not_owner is followed to the owner it names', async () => {
  const server = new TestServer();
  await server.start();
  const replica = await notOwnerServer(`127.0.0.1:${server.port}`);
  const gone = await closedAddress();
  const stale = await notOwnerServer(gone);
  try {
    const c = await Client.connect({ servers: replica.address, source: 'w' });
    assert.equal(c.server, `127.0.0.1:${server.port}`);
    await c.close();
    await assert.rejects(Client.connect({ servers: stale.address, source: 'w' }), (e: unknown) => {
      assert.ok(e instanceof ConnectionLostError);
      assert.ok(e.message.includes(`${stale.address}: not_owner (14): this server is a read replica; the owner is at ${gone}`), e.message);
      assert.ok(e.message.includes(`; ${gone}: `), e.message);
      return true;
    });
  } finally {
    replica.server.close();
    stale.server.close();
    await server.dispose();
  }
});

test('a writer moves to the next server after a kill -9 and resends, each op once', async () => {
  const first = new TestServer();
  await first.start();
  // The second server of the list: the same data dir on another port, started after
  // the kill (what a standby is after a takeover, as far as the client can tell).
  const second = new TestServer({ dataDir: first.dataDir });
  second.port = Number((await closedAddress()).split(':')[1]);
  const lost: Error[] = [];
  const w = await Client.connect({
    servers: [`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`],
    source: 'fo-w',
    onConnectionError: (e) => lost.push(e),
  });
  try {
    const n = 20000;
    const entities = 100;
    let lastSeq = 0n;
    for (let i = 0; i < n; i++) {
      if (i === n / 2) {
        await first.kill9();
        await second.start();
      }
      lastSeq = await w.patch('player', `c-${i % entities}`, { score: BigInt(i), name: `n${i}` });
    }
    await w.sync();
    assert.ok(lost.length >= 1, 'the client saw the connection go');
    assert.equal(w.server, `127.0.0.1:${second.port}`);
    assert.equal(w.unacknowledged, 0);
    for (let e = 0; e < entities; e++) {
      const last = n - entities + e;
      assert.deepStrictEqual(await w.query('player', `c-${e}`), { record: { score: BigInt(last), name: `n${last}` } });
    }
    await w.close();
    const again = await Client.connect({ servers: [`127.0.0.1:${second.port}`], source: 'fo-w' });
    assert.equal(again.welcome.lastAppliedSeq, lastSeq);
    await again.close();
  } finally {
    await w.close();
    await second.dispose();
    await first.dispose();
  }
});
