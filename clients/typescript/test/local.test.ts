// The client's own error paths, over an in-memory transport that plays the server.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BadValueError,
  Client,
  ClientClosedError,
  codec,
  ConnectionLostError,
  ProtocolError,
  type Connector,
  type TransportHandlers,
} from '../src/index.js';

/** A connector whose peer answers HELLO with `reply` (or nothing) and records what it got. */
function fake(reply: (() => Uint8Array) | null): { connector: Connector; peer: () => TransportHandlers } {
  let handlers: TransportHandlers | null = null;
  const connector: Connector = async (h) => {
    handlers = h;
    let first = true;
    return {
      write: () => {
        if (first && reply !== null) setImmediate(() => h.onData(reply()));
        first = false;
      },
      pause: () => {},
      resume: () => {},
      close: () => setImmediate(() => h.onClose()),
    };
  };
  return { connector, peer: () => handlers! };
}

/** A WELCOME for a writer: schema 1 'player' with x:f64 and score:i64. */
function properWelcome(): Uint8Array {
  const e = new codec.Encoder();
  const f = e.beginFrame(codec.FrameType.WELCOME);
  e.varint(1, 'version');
  e.str('fake');
  e.varint(0, 'last_applied_seq');
  e.varint(10000, 'window_us');
  e.varint(1, 'partitions');
  e.varint(1024, 'credit');
  e.varint(1, 'n_schemas');
  e.varint(1, 'id');
  e.str('player');
  e.varint(2, 'n_fields');
  e.str('x');
  e.u8(2);
  e.str('score');
  e.u8(1);
  e.endFrame(f);
  return e.take();
}

/** properWelcome() with one byte more in its payload. */
function longWelcome(): Uint8Array {
  const w = properWelcome();
  const out = new Uint8Array(w.length + 1);
  out.set(w);
  new DataView(out.buffer).setUint32(0, w.length - 3, true);
  return out;
}

test('local: a WELCOME that does not parse fails connect() with a ProtocolError', async () => {
  const { connector } = fake(longWelcome);
  await assert.rejects(Client.connect({ connector, source: 'w' }), (e: unknown) => e instanceof ProtocolError && /WELCOME: 1 bytes left over/.test(e.message));
});

test('local: no WELCOME within connectTimeoutMs fails connect()', async () => {
  const { connector } = fake(null);
  await assert.rejects(Client.connect({ connector, source: 'w', connectTimeoutMs: 100 }), (e: unknown) => e instanceof ConnectionLostError && /no WELCOME within 100 ms/.test(e.message));
});

test('local: a malformed frame after WELCOME closes the client with the ProtocolError', async () => {
  const { connector, peer } = fake(properWelcome);
  const seen: Error[] = [];
  const c = await Client.connect({ connector, source: 'w', onConnectionError: (e) => seen.push(e) });
  const pending = c.sync();
  // ACK with a varint over 64 bits.
  peer().onData(new Uint8Array([11, 0, 0, 0, 0x13, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]));
  await assert.rejects(pending, (e: unknown) => e instanceof ProtocolError && /seq: varint over 64 bits/.test(e.message));
  await assert.rejects(c.patch('player', 'p', { x: 1 }), (e: unknown) => e instanceof ClientClosedError && e.cause instanceof ProtocolError);
  assert.ok(seen.some((e) => e instanceof ProtocolError));
  await c.close();
});

test('local: values, ts and subscription fields the schema refuses are BadValueErrors before sending', async () => {
  const { connector } = fake(properWelcome);
  const c = await Client.connect({ connector, source: 'w' });
  await assert.rejects(c.patch('player', 'p', { x: 'no' }), (e: unknown) => e instanceof BadValueError && /field 'x' of schema 'player' is f64: got a string/.test(e.message));
  await assert.rejects(c.patch('player', 'p', { x: 1 }, { ts: -5 }), (e: unknown) => e instanceof BadValueError && e.code === 7 && /ts: -5/.test(e.message));
  assert.throws(() => c.subscribe('player', { fields: ['x', 'nope'] }), (e: unknown) => e instanceof BadValueError && /schema 'player' has no field 'nope'/.test(e.message));
  assert.equal(c.unacknowledged, 0, 'nothing refused was queued');
  await c.close();
  await assert.rejects(c.sync(), ClientClosedError);
  assert.throws(() => c.subscribe('player'), ClientClosedError);
});
