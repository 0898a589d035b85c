// Every error code of docs/protocol.md "Errors" the server can be made to send
// surfaces as its typed error with its code. Codes the Client never provokes by
// itself (it does not send malformed frames) are provoked over a raw transport and
// read through the same codec and errorFromCode.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  AuthFailedError,
  BadFrameError,
  BadIdError,
  BadValueError,
  Client,
  ClientClosedError,
  codec,
  ConvergenceError,
  errorFromCode,
  FrameSplitter,
  FrameTooLargeError,
  HandshakeRequiredError,
  NotASourceError,
  NotOwnerError,
  OverloadedError,
  ShuttingDownError,
  SourceTakenOverError,
  tcpConnector,
  UnknownSchemaError,
  UnknownSubscriptionError,
  UnsupportedVersionError,
  type Transport,
} from '../src/index.js';
import { repoRoot, TestServer } from './server.js';

/** A connection that sends raw frames and collects the ERROR frames it gets, until the server closes it. */
class Raw {
  errors: ConvergenceError[] = [];
  closed: Promise<void>;
  private t!: Transport;
  private markClosed!: () => void;

  private constructor() {
    this.closed = new Promise((resolve) => {
      this.markClosed = resolve;
    });
  }

  static async open(port: number): Promise<Raw> {
    const raw = new Raw();
    const splitter = new FrameSplitter(1 << 20);
    raw.t = await tcpConnector({ host: '127.0.0.1', port, timeoutMs: 5000 })({
      onData: (chunk) =>
        splitter.push(chunk, (type, buf, s, e) => {
          if (type !== codec.FrameType.ERROR) return;
          const f = codec.decodeFrame(type, buf, s, e);
          if (f.type === 'ERROR') raw.errors.push(errorFromCode(Number(f.code), f.message, f.seqOrReq));
        }),
      onClose: () => raw.markClosed(),
    });
    return raw;
  }

  send(build: (enc: codec.Encoder) => void): void {
    const enc = new codec.Encoder();
    build(enc);
    this.t.write(enc.take());
  }

  hello(source = ''): void {
    this.send((e) => codec.encodeHello(e, { sourceName: source, authToken: '', leaseMs: 0 }));
  }

  async errorWithin(ms: number): Promise<ConvergenceError> {
    for (let i = 0; i < ms / 10 && this.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(this.errors.length > 0, 'an ERROR arrived');
    return this.errors[0]!;
  }

  close(): void {
    this.t.close();
  }
}

function isTyped<T extends ConvergenceError>(cls: new (...a: never[]) => T, code: number, ref?: bigint): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof cls, `${String(e)} is a ${cls.name}`);
    assert.equal(e.code, code);
    if (ref !== undefined) assert.equal(e.ref, ref);
    return true;
  };
}

describe('errors from a server', () => {
  let server: TestServer;
  before(async () => {
    server = new TestServer({ args: ['--max-frame', '4096', '--handshake-timeout', '1s'] });
    await server.start();
  });
  after(async () => server.dispose());

  test('bad_frame (1): an unknown frame type closes the connection', async () => {
    const raw = await Raw.open(server.port);
    raw.hello();
    raw.send((e) => {
      const f = e.beginFrame(0x7f);
      e.endFrame(f);
    });
    await raw.closed;
    assert.ok(isTyped(BadFrameError, 1, 0n)(await raw.errorWithin(2000)));
  });

  test('frame_too_large (2): a write over --max-frame ends the client with the typed error', async () => {
    const w = await Client.connect({ port: server.port, source: 'big-w', maxWriteFrame: 1 << 20 });
    await w.patch('player', 'big', { name: 'x'.repeat(10000) });
    await assert.rejects(w.sync(), isTyped(FrameTooLargeError, 2, 0n));
    await assert.rejects(w.patch('player', 'p', { x: 1 }), (e: unknown) => e instanceof ClientClosedError && e.cause instanceof FrameTooLargeError);
    // The client refuses such a write itself when its maxWriteFrame says so (the default: 1 MiB).
    const w2 = await Client.connect({ port: server.port, source: 'big-w2', maxWriteFrame: 4096 });
    await assert.rejects(w2.patch('player', 'big', { name: 'x'.repeat(10000) }), isTyped(FrameTooLargeError, 2));
    await w2.sync();
    await w2.close();
  });

  test('unsupported_version (3): HELLO version 2', async () => {
    const raw = await Raw.open(server.port);
    raw.send((e) => codec.encodeHello(e, { version: 2n, sourceName: '', authToken: '', leaseMs: 0 }));
    await raw.closed;
    assert.ok(isTyped(UnsupportedVersionError, 3, 0n)(await raw.errorWithin(2000)));
  });

  test('not_a_source (5): a write without a source name, from the server and refused by the client', async () => {
    const raw = await Raw.open(server.port);
    raw.hello();
    raw.send((e) => codec.encodeRetract(e, 5n, 0n, 1n, 'x'));
    assert.ok(isTyped(NotASourceError, 5, 5n)(await raw.errorWithin(2000)));
    raw.close();
    const r = await Client.connect({ port: server.port });
    await assert.rejects(r.patch('player', 'x', { x: 1 }), isTyped(NotASourceError, 5));
    await r.close();
  });

  test('unknown_schema (6): a query, a retract and a subscription of schema 99', async () => {
    const w = await Client.connect({ port: server.port, source: 'us-w' });
    try {
      await assert.rejects(w.query(99, 'x'), isTyped(UnknownSchemaError, 6));
      const seq = await w.retract(99, 'x');
      await assert.rejects(w.sync(), (e: unknown) => {
        assert.ok(e instanceof AggregateError);
        assert.equal(e.errors.length, 1);
        return isTyped(UnknownSchemaError, 6, seq)(e.errors[0]);
      });
      const sub = w.subscribe(99);
      await assert.rejects(sub.next(), isTyped(UnknownSchemaError, 6));
      // A schema name the server does not have is refused before sending.
      await assert.rejects(w.patch('nope', 'x', { x: 1 }), isTyped(UnknownSchemaError, 6, 0n));
      await w.sync();
    } finally {
      await w.close();
    }
  });

  test('bad_value (7): a ts too far ahead, a bad subscription, a lease over 7 days', async () => {
    const opErrors: ConvergenceError[] = [];
    const w = await Client.connect({ port: server.port, source: 'bv-w', onOpError: (e) => opErrors.push(e) });
    try {
      const future = BigInt(Date.now() + 3600_000) * 1000n;
      const seq = await w.patch('player', 'bv', { x: 1 }, { ts: future });
      await w.sync();
      assert.equal(opErrors.length, 1);
      assert.ok(isTyped(BadValueError, 7, seq)(opErrors[0]));
      const sub = w.subscribe('player', { intervalMs: 3_600_001 });
      await assert.rejects(sub.next(), isTyped(BadValueError, 7));
    } finally {
      await w.close();
    }
    await assert.rejects(Client.connect({ port: server.port, source: 'lease-w', leaseMs: 604_800_001 }), isTyped(BadValueError, 7, 0n));
  });

  test('bad_id (8): an empty id and a prefix over 255 bytes', async () => {
    const w = await Client.connect({ port: server.port, source: 'bid-w' });
    try {
      const seq = await w.patch('player', '', { x: 1 });
      await assert.rejects(w.sync(), (e: unknown) => e instanceof AggregateError && isTyped(BadIdError, 8, seq)(e.errors[0]));
      const sub = w.subscribe('player', { prefix: 'p'.repeat(256) });
      await assert.rejects(sub.next(), isTyped(BadIdError, 8));
    } finally {
      await w.close();
    }
  });

  test('unknown_subscription (9): UNSUBSCRIBE of a sub that is not live', async () => {
    const raw = await Raw.open(server.port);
    raw.hello();
    raw.send((e) => codec.encodeReq(e, codec.FrameType.UNSUBSCRIBE, 42n));
    assert.ok(isTyped(UnknownSubscriptionError, 9, 42n)(await raw.errorWithin(2000)));
    raw.close();
  });

  test('overloaded (10): a subscription past 1,024 on one connection', async () => {
    const r = await Client.connect({ port: server.port });
    try {
      const subs = Array.from({ length: 1025 }, () => r.subscribe('player', { prefix: 'none-' }));
      const firsts = await Promise.allSettled(subs.map((s) => s.next()));
      const refused = firsts.filter((f) => f.status === 'rejected');
      assert.equal(refused.length, 1);
      assert.ok(isTyped(OverloadedError, 10)((refused[0] as PromiseRejectedResult).reason));
      for (const s of subs) s.close();
    } finally {
      await r.close();
    }
  });

  test('source_taken_over (12): a second client of the same source ends the first', async () => {
    const seen: Error[] = [];
    const a = await Client.connect({ port: server.port, source: 'taken', onConnectionError: (e) => seen.push(e) });
    const pending = a.sync();
    const b = await Client.connect({ port: server.port, source: 'taken' });
    await assert.rejects(
      (async () => {
        await pending;
        await a.sync();
      })(),
      (e: unknown) => (e instanceof SourceTakenOverError ? isTyped(SourceTakenOverError, 12, 0n)(e) : e instanceof ClientClosedError && e.cause instanceof SourceTakenOverError),
    );
    assert.ok(seen.some((e) => e instanceof SourceTakenOverError && e.code === 12));
    await b.close();
    await a.close();
  });

  test('handshake_required (13): a first frame that is not HELLO, and no HELLO in time', async () => {
    const raw = await Raw.open(server.port);
    raw.send((e) => codec.encodeReq(e, codec.FrameType.PING, 1n));
    await raw.closed;
    assert.ok(isTyped(HandshakeRequiredError, 13, 0n)(await raw.errorWithin(2000)));
    const silent = await Raw.open(server.port);
    await silent.closed;
    assert.ok(isTyped(HandshakeRequiredError, 13, 0n)(await silent.errorWithin(100)));
  });
});

describe('not_owner (14)', () => {
  test('names the owner a writer should connect to', () => {
    const e = errorFromCode(14, 'this server is a read replica; the owner is at 10.0.0.7:3727');
    assert.ok(e instanceof NotOwnerError);
    assert.equal(e.codeName, 'not_owner');
    assert.equal((e as NotOwnerError).owner, '10.0.0.7:3727');
    const unknown = errorFromCode(14, 'this server is a read replica; the owner is not known yet');
    assert.equal((unknown as NotOwnerError).owner, '');
  });

  test('a writer whose reconnect is answered with not_owner stops, naming the owner', async () => {
    // A stand-in server: WELCOME, then the connection drops; the reconnect gets
    // ERROR not_owner (both frames from the conformance vectors).
    const vectors = JSON.parse(readFileSync(path.join(repoRoot, 'tests', 'vectors', 'frames.json'), 'utf8')) as {
      frames: { name: string; hex: string }[];
    };
    const frame = (name: string) => Buffer.from(vectors.frames.find((f) => f.name === name)!.hex, 'hex');
    let connections = 0;
    const fake = net.createServer((sock) => {
      const n = ++connections;
      sock.once('data', () => {
        if (n === 1) {
          sock.write(frame('welcome: writer, credit 1024, three schemas'));
          setTimeout(() => sock.destroy(), 20);
        } else {
          sock.end(frame('error: not_owner (14)'));
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const port = (fake.address() as net.AddressInfo).port;
    const c = await Client.connect({ port, source: 'w', reconnectMinMs: 10 });
    try {
      await assert.rejects(c.sync(), (e: unknown) => {
        const cause = e instanceof ClientClosedError ? e.cause : e;
        return cause instanceof NotOwnerError && cause.owner === '10.0.0.7:3727';
      });
      assert.equal(connections, 2); // not tried again: the same server would answer the same
    } finally {
      await c.close();
      fake.close();
    }
  });
});

describe('errors from servers with other settings', () => {
  test('auth_failed (4): a wrong token', async () => {
    const server = new TestServer({ token: 'right-token' });
    await server.start();
    try {
      await assert.rejects(Client.connect({ port: server.port, token: 'wrong' }), isTyped(AuthFailedError, 4, 0n));
      await assert.rejects(Client.connect({ port: server.port }), isTyped(AuthFailedError, 4, 0n));
      const ok = await Client.connect({ port: server.port, token: 'right-token' });
      await ok.close();
    } finally {
      await server.dispose();
    }
  });

  test('overloaded (10) over --max-connections, and shutting_down (11) on a graceful stop, then the client reconnects', async () => {
    const server = new TestServer({ args: ['--max-connections', '1'] });
    await server.start();
    try {
      const seen: Error[] = [];
      const w = await Client.connect({ port: server.port, source: 'stop-w', onConnectionError: (e) => seen.push(e), reconnectMaxMs: 100 });
      await assert.rejects(Client.connect({ port: server.port }), isTyped(OverloadedError, 10, 0n));
      await w.patch('player', 'st', { level: 1n });
      await w.sync();
      assert.equal(await server.stop(), 0);
      assert.ok(seen.some((e) => isTyped(ShuttingDownError, 11, 0n)(e)), 'shutting_down was reported');
      await server.start();
      await w.patch('player', 'st', { level: 2n });
      await w.sync();
      // The only connection slot is the writer's: query through it.
      assert.deepStrictEqual(await w.query('player', 'st'), { record: { level: 2n } });
      await w.close();
    } finally {
      await server.dispose();
    }
  });
});
