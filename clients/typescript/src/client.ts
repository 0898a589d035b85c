// The client: one connection at a time to a convergence server, re-established by
// itself when it is lost. Writes are numbered for the user and kept until
// acknowledged, so that a reconnect resends exactly what the server may not have
// (docs/protocol.md, "Session rules" 3: ops at or below WELCOME's last_applied_seq
// are applied, the rest are sent again unchanged). Subscriptions resume from the
// last window received; requests in flight are sent again.
//
// Numbering: an ERROR names an op's seq, a request's req or a subscription's sub in
// one field, so every number this client puts in a frame comes from one increasing
// counter (seqs may have gaps): an ERROR's number always names one thing.

import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';

import {
  BadValueError,
  ClientClosedError,
  ConnectionLostError,
  ConvergenceError,
  ErrorCode,
  FrameTooLargeError,
  NotASourceError,
  NotOwnerError,
  ProtocolError,
  UnknownSchemaError,
  errorFromCode,
} from './errors.js';
import {
  FrameType,
  QUERY_INCLUDE_CLAIMS,
  SUBSCRIBE_BOOTSTRAP,
  SUBSCRIBE_INCLUDE_PREV,
  decodeFrame,
  encodeHello,
  encodeQuery,
  encodeReq,
  encodeRetract,
  encodeSubscribe,
  encodeWrite,
  frameTypeName,
  type Claim,
  type Frame,
  type WelcomeFrame,
} from './frames.js';
import type { Id, Schema, Values } from './schema.js';
import { Subscription, type SubscriptionOwner } from './subscription.js';
import { FrameSplitter, tcpConnector, websocketConnector, type Connector, type Transport } from './transport.js';
import { Encoder, Reader } from './wire.js';

/**
 * Runs `fn` once the current task and its microtasks are done, so that the writes of a
 * loop (awaited or not) go out together: setImmediate in Node.js, a MessageChannel
 * message in browsers (no 4 ms clamp, unlike setTimeout).
 */
const afterCurrentTask: (fn: () => void) => void =
  typeof setImmediate === 'function'
    ? (fn) => {
        setImmediate(fn);
      }
    : (() => {
        const channel = new MessageChannel();
        const queued: (() => void)[] = [];
        // The browser's MessagePort (Node.js types describe node:worker_threads' one).
        (channel.port1 as unknown as { onmessage: (() => void) | null }).onmessage = () => queued.shift()?.();
        return (fn: () => void) => {
          queued.push(fn);
          channel.port2.postMessage(null);
        };
      })();

/** A schema by name, or by id. */
export type SchemaRef = string | bigint | number;

export interface ClientOptions {
  /** Server host (default 127.0.0.1) and port (default 3727), for the TCP transport. */
  host?: string;
  port?: number;
  /**
   * Several servers instead of host and port, for the TCP transport: 'HOST:PORT,HOST:PORT'
   * or a list (an owner and its standbys, or replicas). The first connection tries them in
   * order, following not_owner answers to the owner they name, and fails naming every
   * address tried; a lost connection (a server killed, a deposed owner's not_owner) is
   * replaced by the owner it named or the next server of the list in turn.
   */
  servers?: string | readonly string[];
  /** WebSocket instead of TCP: ws://HOST:PORT/ of `serve --ws-listen` or `--console` (wss:// with --tls-cert), through globalThis.WebSocket. */
  url?: string;
  /** Another transport instead of TCP to host:port (e.g. websocketConnector with its own options). */
  connector?: Connector;
  /** TLS options (node:tls: `ca`, and `cert`/`key` for mutual TLS) for a server started with --tls-cert; the TCP transport only. */
  tls?: TlsConnectionOptions;
  /** The source this client writes as; without one the client only reads. */
  source?: string;
  /** The server's auth token, when it has one. */
  token?: string;
  /** When > 0, the source's claims are retracted once no connection of it has been back for this long. */
  leaseMs?: number | bigint;
  /** How long connecting and the handshake may take (default 10 s). */
  connectTimeoutMs?: number;
  /** Waits between reconnect attempts: from reconnectMinMs (default 50), doubling up to reconnectMaxMs (default 2000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** The largest frame accepted from the server (default 64 MiB). */
  maxFrame?: number;
  /** The largest write frame sent: a larger op is refused here with FrameTooLargeError (default 1 MiB, the server's default --max-frame). */
  maxWriteFrame?: number;
  /** Unread events per subscription past which the client stops reading the connection (default 65536). */
  subscriptionHighWater?: number;
  /** Called with each lost connection's cause (the server's ERROR as a typed error, or the transport's); the client reconnects. */
  onConnectionError?: (error: Error) => void;
  /** Called for each write the server refused (its error's `ref` is the op's seq). Without it, sync() rejects with them. */
  onOpError?: (error: ConvergenceError) => void;
}

export interface QueryResult {
  /** The converged record. */
  record: Values;
  /** Every live claim, ordered by the server's source id (when asked for). */
  claims?: Claim[];
}

export interface SubscribeOptions {
  /** Only entities whose id starts with this (default: all). */
  prefix?: Id;
  /** Only these fields (default: all). */
  fields?: readonly string[];
  /** Start with a snapshot of every matching entity. */
  bootstrap?: boolean;
  /** Each change carries the record at the start of its window (`prev`). */
  includePrev?: boolean;
  /** Start with the changes after this window, as kept from an earlier subscription. */
  resumeWindow?: bigint;
  /** At most one change per entity per interval (0: every window). */
  intervalMs?: number;
}

/** A credit of 0 (never sent to a writer) is taken as 1, so that a writer can always make progress. */
const MIN_CREDIT = 1;
const OUT_CHUNK = 256 * 1024;
const FLUSH_BYTES = 64 * 1024;

interface AdmitWaiter {
  seq: bigint;
  bytes: Uint8Array;
  resolve: (seq: bigint) => void;
  reject: (e: unknown) => void;
}

interface Request {
  kind: 'query' | 'sync' | 'stats';
  encode: (enc: Encoder, id: bigint) => void;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  schema?: Schema;
  claims?: boolean;
  /** sync: the last op seq it covers, and whether SYNCED arrived. */
  afterSeq?: bigint;
  synced?: boolean;
}

const fatalCodes = new Set<number>([
  ErrorCode.bad_frame,
  ErrorCode.frame_too_large,
  ErrorCode.unsupported_version,
  ErrorCode.auth_failed,
  ErrorCode.bad_value,
  ErrorCode.bad_id,
  ErrorCode.source_taken_over,
  ErrorCode.handshake_required,
  ErrorCode.not_owner, // the same replica answers the same: connect to the owner it names
]);

/** A connection-level error after which reconnecting cannot help. */
function isFatal(e: unknown): boolean {
  return (e instanceof ConvergenceError && fatalCodes.has(e.code)) || e instanceof ProtocolError;
}

/** not_owner answers followed from one address of a server list before the next is tried. */
const MAX_OWNER_REDIRECTS = 3;

/**
 * Splits a server list ('HOST:PORT,HOST:PORT' or a list of 'HOST:PORT'); throws a
 * RangeError naming the entry that is wrong.
 */
export function parseServers(servers: string | readonly string[]): { address: string; host: string; port: number }[] {
  const entries = typeof servers === 'string' ? servers.split(',') : [...servers];
  const text = typeof servers === 'string' ? servers : entries.join(',');
  if (entries.length === 0 || (entries.length === 1 && entries[0] === '')) {
    throw new RangeError('the server list is empty; give HOST:PORT[,HOST:PORT...]');
  }
  return entries.map((address, i) => {
    const colon = address.lastIndexOf(':');
    const portText = colon < 0 ? '' : address.slice(colon + 1);
    const host = colon < 0 ? '' : address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(portText);
    if (address === '') throw new RangeError(`servers '${text}': entry ${i + 1} is empty; give HOST:PORT[,HOST:PORT...]`);
    if (host === '' || !/^\d+$/.test(portText) || port > 65535) {
      throw new RangeError(`servers '${text}': entry ${i + 1}: '${address}' is not HOST:PORT (a port from 0 to 65535)`);
    }
    return { address, host, port };
  });
}

export class Client implements SubscriptionOwner {
  private readonly connector: Connector;
  /** The servers of `servers`, each with its connector; empty without that option. */
  private readonly servers: { address: string; connector: Connector }[] = [];
  private readonly opts: ClientOptions;
  /** The address of the current connection (with `servers`). */
  private serverAddress = '';
  /** The owner a deposed owner's not_owner named: the next connection tries it first. */
  private redirect = '';
  private readonly isWriter: boolean;
  private readonly maxWriteFrame: number;
  private readonly highWater: number;

  private transport: Transport | null = null;
  private gen = 0;
  private welcomeFrame!: WelcomeFrame;
  private schemasById = new Map<bigint, Schema>();
  private schemasByName = new Map<string, Schema>();
  private splitter: FrameSplitter;
  private readonly reader = new Reader();
  private out = new Encoder(OUT_CHUNK);
  private flushFrom = 0;
  private flushScheduled = false;
  private paused = false;

  /** The last number put in a frame (op seq, req or sub). */
  private lastId = 0n;
  /** The seq of the last op admitted or waiting. */
  private lastOpSeq = 0n;
  /** Unacknowledged ops in seq order, [opHead, length); the first `sent` of them are on the current connection. */
  private opSeqs: bigint[] = [];
  private opBytes: (Uint8Array | undefined)[] = [];
  private opHead = 0;
  private sent = 0;
  private credit = 0;
  private waiters: AdmitWaiter[] = [];
  private waitHead = 0;
  /** Resend from this seq (an op refused for a full disk), when the timer fires. */
  private resendFrom: bigint | null = null;
  private resendTimer: ReturnType<typeof setTimeout> | null = null;
  private resendDelay = 0;

  private requests = new Map<bigint, Request>();
  private syncs = new Set<Request>();
  private subs = new Set<Subscription>();
  private subsById = new Map<bigint, Subscription>();
  /** Subs closed by the user on this connection: an ERROR for one (it ended meanwhile) is no one's. */
  private closedSubIds = new Set<bigint>();
  private opErrors: ConvergenceError[] = [];
  private opErrorsDropped = 0;

  private closedBy: Error | null = null;
  private connErr: Error | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private closeWaiters: (() => void)[] = [];
  /** The current connection got its WELCOME. */
  private ready = false;
  private handshake: { resolve: () => void; reject: (e: unknown) => void } | null = null;

  private constructor(opts: ClientOptions) {
    this.opts = opts;
    const tcp = (host: string, port: number): Connector =>
      tcpConnector({ host, port, timeoutMs: opts.connectTimeoutMs ?? 10000, ...(opts.tls === undefined ? {} : { tls: opts.tls }) });
    if (opts.servers !== undefined) {
      for (const s of parseServers(opts.servers)) this.servers.push({ address: s.address, connector: tcp(s.host, s.port) });
    }
    this.connector =
      opts.connector ??
      (opts.url !== undefined ? websocketConnector({ url: opts.url, timeoutMs: opts.connectTimeoutMs ?? 10000 }) : undefined) ??
      tcpConnector({
        host: opts.host ?? '127.0.0.1',
        port: opts.port ?? 3727,
        timeoutMs: opts.connectTimeoutMs ?? 10000,
        ...(opts.tls === undefined ? {} : { tls: opts.tls }),
      });
    this.isWriter = (opts.source ?? '') !== '';
    this.maxWriteFrame = opts.maxWriteFrame ?? 1 << 20;
    this.highWater = opts.subscriptionHighWater ?? 65536;
    this.splitter = new FrameSplitter(opts.maxFrame ?? 64 << 20);
  }

  /**
   * Connects and says HELLO. Rejects with the server's error (AuthFailedError,
   * OverloadedError, ...) or the transport's when the first connection fails; once
   * connected, the client reconnects by itself until close().
   */
  static async connect(opts: ClientOptions = {}): Promise<Client> {
    const c = new Client(opts);
    try {
      await c.openAny();
    } catch (e) {
      // Nothing to reconnect for: this client was never handed out.
      c.closedBy = new ClientClosedError('the first connection failed', { cause: e });
      c.transport?.close();
      throw e;
    }
    return c;
  }

  /** The address of the server connected to, with `servers` ('' without). */
  get server(): string {
    return this.serverAddress;
  }

  /**
   * Connects to the one server, or, with `servers`, to the first of them that says
   * WELCOME (the owner a not_owner named first), following not_owner answers; fails
   * naming every address tried and its error.
   */
  private async openAny(): Promise<void> {
    if (this.servers.length === 0) return this.open(this.connector);
    const failures = new Map<string, string>();
    const order = this.redirect === '' ? [] : [this.redirect];
    for (const s of this.servers) if (s.address !== this.redirect) order.push(s.address);
    this.redirect = '';
    for (const address of order) {
      let target = address;
      for (let hop = 0; ; hop++) {
        try {
          await this.open(this.connectorFor(target));
          this.serverAddress = target;
          return;
        } catch (e) {
          if (this.closedBy !== null) throw e;
          failures.delete(target);
          failures.set(target, e instanceof Error ? e.message : String(e));
          if (e instanceof NotOwnerError && e.owner !== '' && hop < MAX_OWNER_REDIRECTS) {
            target = e.owner;
            continue;
          }
          if (isFatal(e) && !(e instanceof NotOwnerError)) throw e;
          break;
        }
      }
    }
    const why = [...failures].map(([a, m]) => `${a}: ${m}`).join('; ');
    throw new ConnectionLostError(`no server of ${this.servers.map((s) => s.address).join(',')} took the connection: ${why}`);
  }

  private connectorFor(address: string): Connector {
    const known = this.servers.find((s) => s.address === address);
    if (known !== undefined) return known.connector;
    const [s] = parseServers(address);
    return tcpConnector({
      host: s!.host,
      port: s!.port,
      timeoutMs: this.opts.connectTimeoutMs ?? 10000,
      ...(this.opts.tls === undefined ? {} : { tls: this.opts.tls }),
    });
  }

  /** The schemas of the server, as its last WELCOME announced them. */
  get schemas(): readonly Schema[] {
    return this.welcomeFrame.schemas;
  }

  /** The last WELCOME (server name, window length, partitions, last applied seq, credit). */
  get welcome(): WelcomeFrame {
    return this.welcomeFrame;
  }

  /** Ops written and not yet acknowledged. */
  get unacknowledged(): number {
    return this.opSeqs.length - this.opHead + (this.waiters.length - this.waitHead);
  }

  /** The schema named or numbered `ref`; throws UnknownSchemaError. */
  schema(ref: SchemaRef): Schema {
    const s = this.findSchema(ref);
    if (s === undefined) throw new UnknownSchemaError(ErrorCode.unknown_schema, `the server has no schema ${JSON.stringify(String(ref))}`);
    return s;
  }

  private findSchema(ref: SchemaRef): Schema | undefined {
    if (typeof ref === 'string') return this.schemasByName.get(ref);
    return this.schemasById.get(BigInt(ref));
  }

  // ------------------------------------------------------------------ writes

  /** ASSERT: the source's claim on the entity becomes exactly these fields. Resolves with the op's seq once it is sent (within the credit). */
  assert(schema: SchemaRef, id: Id, values: Values, opts?: { ts?: bigint | number }): Promise<bigint> {
    return this.write(FrameType.ASSERT, schema, id, values, opts?.ts ?? 0);
  }

  /** PATCH: sets these fields in the source's claim. Resolves with the op's seq once it is sent (within the credit). */
  patch(schema: SchemaRef, id: Id, values: Values, opts?: { ts?: bigint | number }): Promise<bigint> {
    return this.write(FrameType.PATCH, schema, id, values, opts?.ts ?? 0);
  }

  /** RETRACT: removes the source's claim. Resolves with the op's seq once it is sent (within the credit). */
  retract(schema: SchemaRef, id: Id, opts?: { ts?: bigint | number }): Promise<bigint> {
    return this.write(FrameType.RETRACT, schema, id, undefined, opts?.ts ?? 0);
  }

  private write(type: number, schemaRef: SchemaRef, id: Id, values: Values | undefined, ts: bigint | number): Promise<bigint> {
    if (this.closedBy !== null) return Promise.reject(this.closedError());
    if (!this.isWriter) {
      return Promise.reject(new NotASourceError(ErrorCode.not_a_source, 'this client connected without a source name: it cannot write'));
    }
    const schema = this.findSchema(schemaRef);
    let schemaId: bigint;
    if (schema !== undefined) schemaId = schema.id;
    else if (values === undefined && typeof schemaRef !== 'string') schemaId = BigInt(schemaRef);
    else return Promise.reject(this.unknownSchema(schemaRef));
    const seq = this.lastId + 1n;
    const direct =
      this.waitHead === this.waiters.length &&
      this.opSeqs.length - this.opHead < this.credit &&
      this.transport !== null &&
      this.handshake === null &&
      this.sent === this.opSeqs.length - this.opHead;
    const enc = direct ? this.out : new Encoder(64);
    const start = enc.pos;
    try {
      if (values === undefined) encodeRetract(enc, seq, ts, schemaId, id);
      else encodeWrite(enc, type, seq, ts, schema!, id, values);
    } catch (e) {
      return Promise.reject(e instanceof RangeError ? new BadValueError(ErrorCode.bad_value, e.message) : e);
    }
    if (enc.pos - start - 4 > this.maxWriteFrame) {
      enc.pos = start;
      return Promise.reject(
        new FrameTooLargeError(
          ErrorCode.frame_too_large,
          `${frameTypeName(type)} of ${id.length}-byte id is ${enc.pos - start - 4} bytes, over maxWriteFrame ${this.maxWriteFrame}`,
        ),
      );
    }
    this.lastId = seq;
    this.lastOpSeq = seq;
    if (direct) {
      this.opSeqs.push(seq);
      this.opBytes.push(enc.buf.subarray(start, enc.pos));
      this.sent++;
      if (enc.pos - this.flushFrom >= FLUSH_BYTES) this.flush();
      else this.scheduleFlush();
      return Promise.resolve(seq);
    }
    const bytes = enc.buf.subarray(start, enc.pos);
    if (this.waitHead === this.waiters.length && this.opSeqs.length - this.opHead < this.credit) {
      this.opSeqs.push(seq);
      this.opBytes.push(bytes);
      this.sendQueued();
      return Promise.resolve(seq);
    }
    return new Promise((resolve, reject) => this.waiters.push({ seq, bytes, resolve, reject }));
  }

  /**
   * Resolves once every op written before it is applied and durable (docs/protocol.md,
   * SYNC), across reconnects. Rejects with an AggregateError of the writes the server
   * refused since the last sync(), unless onOpError takes them.
   */
  sync(): Promise<void> {
    return this.request({ kind: 'sync', encode: (enc, id) => encodeReq(enc, FrameType.SYNC, id), afterSeq: this.lastOpSeq, synced: false }) as Promise<void>;
  }

  /** The converged record of the entity, or null when it does not exist. With claims: every live claim too. */
  query(schema: SchemaRef, id: Id, opts?: { claims?: boolean }): Promise<QueryResult | null> {
    const s = this.findSchema(schema);
    if (s === undefined && typeof schema === 'string') return Promise.reject(this.unknownSchema(schema));
    const schemaId = s?.id ?? BigInt(schema);
    const claims = opts?.claims === true;
    const flags = claims ? QUERY_INCLUDE_CLAIMS : 0;
    const req: Request = {
      kind: 'query',
      encode: (enc, reqId) => encodeQuery(enc, reqId, schemaId, id, flags),
      resolve: () => {},
      reject: () => {},
      claims,
    };
    if (s !== undefined) req.schema = s;
    return this.request(req) as Promise<QueryResult | null>;
  }

  /** The server's counters (docs/operations.md). */
  stats(): Promise<Map<string, bigint>> {
    return this.request({ kind: 'stats', encode: (enc, id) => encodeReq(enc, FrameType.STATS, id) }) as Promise<Map<string, bigint>>;
  }

  private request(r: Omit<Request, 'resolve' | 'reject'> & Partial<Request>): Promise<unknown> {
    if (this.closedBy !== null) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      const req = r as Request;
      req.resolve = resolve;
      req.reject = reject;
      if (req.kind === 'sync') this.syncs.add(req);
      this.sendRequest(req);
    });
  }

  private sendRequest(req: Request): void {
    const id = ++this.lastId;
    this.requests.set(id, req);
    if (this.transport === null || this.handshake !== null) return;
    req.encode(this.out, id);
    this.scheduleFlush();
  }

  // ----------------------------------------------------------- subscriptions

  /**
   * Subscribes to the entities of `schema`: an async iterator of snapshot entries,
   * snapshot_end, changes, and 'resumed' after a reconnect. The subscription is
   * sent again after every reconnect, resuming after the last window received;
   * its errors (UnknownSchemaError, BadValueError, BadIdError, OverloadedError)
   * end it and are thrown by the iterator. Leave the loop or call close() to end it.
   */
  subscribe(schema: SchemaRef, opts: SubscribeOptions = {}): Subscription {
    if (this.closedBy !== null) throw this.closedError();
    const s = this.findSchema(schema) ?? null;
    if (s === null && typeof schema === 'string') throw this.unknownSchema(schema);
    let mask = 0n;
    if (opts.fields !== undefined && opts.fields.length > 0) {
      if (s === null) throw this.unknownSchema(schema);
      try {
        mask = s.maskOf(opts.fields);
      } catch (e) {
        throw new BadValueError(ErrorCode.bad_value, (e as Error).message);
      }
    }
    const flags = (opts.bootstrap ? SUBSCRIBE_BOOTSTRAP : 0) | (opts.includePrev ? SUBSCRIBE_INCLUDE_PREV : 0);
    const sub = new Subscription(
      this,
      s,
      s?.id ?? BigInt(schema),
      opts.prefix ?? '',
      mask,
      flags,
      opts.resumeWindow ?? 0n,
      BigInt(opts.intervalMs ?? 0),
      this.highWater,
    );
    this.subs.add(sub);
    if (this.transport !== null && this.handshake === null) {
      this.sendSubscribe(sub);
      this.scheduleFlush();
    }
    return sub;
  }

  private sendSubscribe(sub: Subscription): void {
    const id = ++this.lastId;
    const resume = sub.window !== 0n ? sub.window : sub.firstResumeWindow;
    if (sub.sentBefore) sub.push({ type: 'resumed', window: resume });
    sub.sentBefore = true;
    sub.heard = false;
    sub.subId = id;
    this.subsById.set(id, sub);
    encodeSubscribe(this.out, {
      sub: id,
      schemaId: sub.schemaId,
      idPrefix: sub.idPrefix,
      fieldMask: sub.fieldMask,
      flags: sub.flags,
      resumeWindow: resume,
      intervalMs: sub.intervalMs,
    });
  }

  /** @internal SubscriptionOwner */
  unsubscribe(sub: Subscription): void {
    this.subs.delete(sub);
    const id = sub.subId;
    if (id === null) return;
    this.subsById.delete(id);
    this.closedSubIds.add(id);
    if (this.transport !== null && this.handshake === null) {
      encodeReq(this.out, FrameType.UNSUBSCRIBE, id);
      this.scheduleFlush();
    }
  }

  /** @internal SubscriptionOwner */
  drained(): void {
    if (!this.paused || this.transport === null) return;
    for (const s of this.subs) if (!s.underLowWater()) return;
    this.paused = false;
    this.transport.resume();
  }

  // -------------------------------------------------------------- connection

  /** Connects, says HELLO and waits for WELCOME, then restores what the last connection had. */
  private async open(connector: Connector): Promise<void> {
    const gen = ++this.gen;
    this.splitter = new FrameSplitter(this.opts.maxFrame ?? 64 << 20);
    const handshake = new Promise<void>((resolve, reject) => {
      this.handshake = { resolve, reject };
    });
    let transport: Transport;
    try {
      transport = await connector({
        onData: (chunk) => this.onData(gen, chunk),
        onClose: (error) => this.onClose(gen, error),
      });
    } catch (e) {
      this.handshake = null;
      throw e;
    }
    if (this.closedBy !== null) {
      transport.close();
      throw this.closedError();
    }
    this.transport = transport;
    this.paused = false;
    this.out = new Encoder(OUT_CHUNK);
    this.flushFrom = 0;
    const hello = new Encoder(64);
    encodeHello(hello, { sourceName: this.opts.source ?? '', authToken: this.opts.token ?? '', leaseMs: this.opts.leaseMs ?? 0 });
    transport.write(hello.take());
    const timeoutMs = this.opts.connectTimeoutMs ?? 10000;
    const pending = this.handshake;
    const timer = setTimeout(() => {
      if (this.handshake !== pending || pending === null) return;
      this.handshake = null;
      pending.reject(new ConnectionLostError(`no WELCOME within ${timeoutMs} ms`));
      transport.close();
    }, timeoutMs);
    try {
      await handshake;
    } finally {
      clearTimeout(timer);
    }
  }

  private onWelcome(w: WelcomeFrame): void {
    this.welcomeFrame = w;
    this.schemasById = new Map(w.schemas.map((s) => [s.id, s]));
    this.schemasByName = new Map(w.schemas.map((s) => [s.name, s]));
    if (this.isWriter) {
      this.credit = Math.max(MIN_CREDIT, Number(w.credit));
      // Everything at or below last_applied_seq is applied and durable.
      this.popOps(w.lastAppliedSeq);
      if (w.lastAppliedSeq > this.lastId) {
        this.lastId = w.lastAppliedSeq;
        this.lastOpSeq = w.lastAppliedSeq;
      }
    }
    const h = this.handshake!;
    this.handshake = null;
    this.ready = true;
    h.resolve();
    this.restore();
  }

  /** After WELCOME: resend unacknowledged ops within the credit, subscriptions and requests. */
  private restore(): void {
    this.sent = 0;
    this.resendFrom = null;
    this.sendQueued();
    for (const sub of this.subs) this.sendSubscribe(sub);
    const reqs = [...this.requests.values()];
    this.requests.clear();
    for (const r of reqs) this.sendRequest(r);
    this.checkSyncs();
    this.flush();
  }

  private onClose(gen: number, error: Error | undefined): void {
    if (gen !== this.gen) return;
    this.transport = null;
    const wasReady = this.ready;
    this.ready = false;
    this.sent = 0;
    this.subsById.clear();
    this.closedSubIds.clear();
    for (const s of this.subs) s.subId = null;
    const cause =
      this.connErr ?? error ?? new ConnectionLostError('the server closed the connection');
    this.connErr = null;
    if (this.closedBy !== null) {
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    if (this.handshake !== null) {
      // open() reports it (and its caller reconnects or gives up).
      const h = this.handshake;
      this.handshake = null;
      h.reject(cause);
      return;
    }
    if (!wasReady) return; // the handshake failed: open() reported it
    if (cause instanceof NotOwnerError && this.servers.length > 0) {
      // A deposed owner names the new one: connect there first.
      this.redirect = cause.owner;
    } else if (isFatal(cause)) {
      this.shutdown(cause);
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    this.opts.onConnectionError?.(cause);
    this.reconnect(this.opts.reconnectMinMs ?? 50);
  }

  private reconnect(delay: number): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closedBy !== null) return;
      this.openAny().catch((e: unknown) => {
        if (this.closedBy !== null) return;
        const err = e instanceof Error ? e : new ConnectionLostError(String(e));
        if (isFatal(err)) {
          this.shutdown(err);
          return;
        }
        this.opts.onConnectionError?.(err);
        this.reconnect(Math.min(delay * 2, this.opts.reconnectMaxMs ?? 2000));
      });
    }, delay);
  }

  /**
   * Closes the client: pending requests and writes waiting for credit reject with
   * ClientClosedError, subscriptions end. Ops written and not acknowledged are not
   * waited for: sync() first to know they are durable.
   */
  close(): Promise<void> {
    if (this.closedBy !== null && this.transport === null) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    if (this.closedBy === null) this.shutdown(new ClientClosedError());
    if (this.transport === null) for (const w of this.closeWaiters.splice(0)) w();
    return done;
  }

  private closedError(): Error {
    const by = this.closedBy!;
    return by instanceof ClientClosedError ? by : new ClientClosedError(`client closed: ${by.message}`, { cause: by });
  }

  /** Ends everything with `cause` (ClientClosedError: a close() by the user). */
  private shutdown(cause: Error): void {
    this.closedBy = cause;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    if (this.resendTimer !== null) clearTimeout(this.resendTimer);
    for (let i = this.waitHead; i < this.waiters.length; i++) this.waiters[i]!.reject(cause);
    this.waiters = [];
    this.waitHead = 0;
    for (const r of this.requests.values()) r.reject(cause);
    this.requests.clear();
    this.syncs.clear();
    for (const s of this.subs) {
      if (cause instanceof ClientClosedError) s.finish();
      else s.fail(cause);
    }
    this.subs.clear();
    if (!(cause instanceof ClientClosedError)) this.opts.onConnectionError?.(cause);
    if (this.transport !== null) {
      this.flush();
      this.transport.close();
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    afterCurrentTask(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const t = this.transport;
    if (t === null) return;
    const out = this.out;
    if (out.pos > this.flushFrom) {
      t.write(out.buf.subarray(this.flushFrom, out.pos));
      this.flushFrom = out.pos;
    }
    // Sent bytes are never overwritten (unacknowledged ops keep views of them): a full chunk is replaced.
    if (out.pos > OUT_CHUNK - FLUSH_BYTES) {
      this.out = new Encoder(OUT_CHUNK);
      this.flushFrom = 0;
    }
  }

  // ------------------------------------------------------------------- ops

  /** Sends queued ops within the credit, then admits waiting writes. */
  private sendQueued(): void {
    const connected = this.transport !== null && this.handshake === null;
    const queued = this.opSeqs.length - this.opHead;
    if (connected) {
      while (this.sent < queued && this.sent < this.credit) {
        const b = this.opBytes[this.opHead + this.sent]!;
        this.out.reserve(b.length);
        this.out.buf.set(b, this.out.pos);
        this.out.pos += b.length;
        this.sent++;
      }
    }
    while (this.waitHead < this.waiters.length && this.opSeqs.length - this.opHead < this.credit) {
      const w = this.waiters[this.waitHead]!;
      this.waiters[this.waitHead++] = undefined as unknown as AdmitWaiter;
      this.opSeqs.push(w.seq);
      this.opBytes.push(w.bytes);
      if (connected && this.sent === this.opSeqs.length - this.opHead - 1) {
        this.out.reserve(w.bytes.length);
        this.out.buf.set(w.bytes, this.out.pos);
        this.out.pos += w.bytes.length;
        this.sent++;
      }
      w.resolve(w.seq);
    }
    if (this.waitHead === this.waiters.length) {
      this.waiters = [];
      this.waitHead = 0;
    }
    if (connected) this.scheduleFlush();
  }

  /** Drops the ops at or below `seq` (acknowledged, or applied per WELCOME). */
  private popOps(seq: bigint): void {
    const seqs = this.opSeqs;
    let h = this.opHead;
    const start = h;
    while (h < seqs.length && seqs[h]! <= seq) {
      this.opBytes[h] = undefined;
      h++;
    }
    this.sent = Math.max(0, this.sent - (h - start));
    if (h === seqs.length) {
      this.opSeqs = [];
      this.opBytes = [];
      this.opHead = 0;
    } else if (h > 4096 && h * 2 > seqs.length) {
      this.opSeqs = seqs.slice(h);
      this.opBytes = this.opBytes.slice(h);
      this.opHead = 0;
    } else {
      this.opHead = h;
    }
  }

  private onAck(seq: bigint): void {
    this.popOps(seq);
    this.sendQueued();
    this.checkSyncs();
  }

  /** The seq of the oldest op not yet acknowledged, or null. */
  private oldestUnacked(): bigint | null {
    if (this.opHead < this.opSeqs.length) return this.opSeqs[this.opHead]!;
    if (this.waitHead < this.waiters.length) return this.waiters[this.waitHead]!.seq;
    return null;
  }

  private checkSyncs(): void {
    if (this.syncs.size === 0) return;
    const oldest = this.oldestUnacked();
    for (const r of this.syncs) {
      if (!r.synced || (oldest !== null && oldest <= r.afterSeq!)) continue;
      this.syncs.delete(r);
      if (this.opErrors.length > 0) {
        const errors = this.opErrors;
        const dropped = this.opErrorsDropped;
        this.opErrors = [];
        this.opErrorsDropped = 0;
        r.reject(new AggregateError(errors, `${errors.length + dropped} writes were refused${dropped > 0 ? ` (the first ${errors.length} listed)` : ''}`));
      } else {
        r.resolve(undefined);
      }
    }
  }

  private onOpError(err: ConvergenceError): void {
    if (err.code === ErrorCode.overloaded) {
      // A full disk: the op was not consumed. Send it and every later op again after a pause.
      if (this.resendFrom === null || err.ref < this.resendFrom) this.resendFrom = err.ref;
      if (this.resendTimer === null) {
        this.resendDelay = Math.min(Math.max(this.resendDelay * 2, 100), 2000);
        this.resendTimer = setTimeout(() => this.resendRefused(), this.resendDelay);
      }
      return;
    }
    if (this.opts.onOpError !== undefined) {
      this.opts.onOpError(err);
      return;
    }
    if (this.opErrors.length < 1000) this.opErrors.push(err);
    else this.opErrorsDropped++;
  }

  private resendRefused(): void {
    this.resendTimer = null;
    const from = this.resendFrom;
    this.resendFrom = null;
    if (from === null || this.transport === null || this.handshake !== null) return;
    for (let i = this.opHead; i < this.opHead + this.sent; i++) {
      if (this.opSeqs[i]! < from) continue;
      const b = this.opBytes[i]!;
      this.out.reserve(b.length);
      this.out.buf.set(b, this.out.pos);
      this.out.pos += b.length;
    }
    this.flush();
  }

  // ---------------------------------------------------------------- frames

  private onData(gen: number, chunk: Uint8Array): void {
    if (gen !== this.gen) return;
    try {
      this.splitter.push(chunk, this.onFrame);
    } catch (e) {
      this.connErr = e instanceof Error ? e : new ProtocolError(String(e));
      this.transport?.close();
    }
  }

  private readonly onFrame = (type: number, buf: Uint8Array, start: number, end: number): void => {
    const r = this.reader;
    switch (type) {
      case FrameType.NOTIFY:
      case FrameType.SNAPSHOT: {
        const subId = r.reset(buf, start, end).varBig('sub');
        const sub = this.subsById.get(subId);
        if (sub === undefined || sub.schema === null) return; // unsubscribed: frames queued before may still arrive
        const f = decodeFrame(type, buf, start, end, { schema: sub.schema, includePrev: (sub.flags & SUBSCRIBE_INCLUDE_PREV) !== 0 }, r);
        sub.heard = true;
        if (f.type === 'NOTIFY') {
          sub.window = f.window;
          sub.pushAll(f.changes);
        } else if (f.type === 'SNAPSHOT') {
          sub.pushAll(f.entries);
        }
        if (!this.paused && sub.overHighWater() && this.transport !== null) {
          this.paused = true;
          this.transport.pause();
        }
        return;
      }
      case FrameType.ACK:
        this.onAck(r.reset(buf, start, end).varBig('seq'));
        r.done('ACK');
        return;
      default:
        this.onOtherFrame(type, buf, start, end);
    }
  };

  private onOtherFrame(type: number, buf: Uint8Array, start: number, end: number): void {
    let f: Frame;
    if (type === FrameType.RESULT) {
      const req = this.requests.get(this.reader.reset(buf, start, end).varBig('req'));
      f = decodeFrame(type, buf, start, end, req?.schema ? { schema: req.schema, claims: req.claims === true } : {}, this.reader);
    } else {
      f = decodeFrame(type, buf, start, end, undefined, this.reader);
    }
    switch (f.type) {
      case 'WELCOME':
        if (this.handshake === null) throw new ProtocolError('a second WELCOME');
        this.onWelcome(f);
        return;
      case 'ERROR':
        this.onError(errorFromCode(Number(f.code), f.message, f.seqOrReq));
        return;
      case 'CREDIT':
        this.credit = Math.max(MIN_CREDIT, Number(f.credit));
        this.sendQueued();
        return;
      case 'SNAPSHOT_END': {
        const sub = this.subsById.get(f.sub);
        if (sub === undefined) return;
        sub.heard = true;
        sub.window = f.window;
        sub.push({ type: 'snapshot_end', total: f.total, window: f.window, reset: f.reset });
        return;
      }
      case 'RESULT': {
        const req = this.takeRequest(f.req, 'query');
        req.resolve(f.found ? (f.claims !== undefined ? { record: f.record!, claims: f.claims } : { record: f.record! }) : null);
        return;
      }
      case 'STATS_REPLY': {
        const req = this.takeRequest(f.req, 'stats');
        req.resolve(new Map(f.stats.map((s) => [s.name, s.value])));
        return;
      }
      case 'SYNCED': {
        const req = this.takeRequest(f.req, 'sync');
        req.synced = true;
        this.checkSyncs();
        return;
      }
      default:
        throw new ProtocolError(`the server sent a ${f.type} frame, which a server never sends`);
    }
  }

  private takeRequest(id: bigint, kind: Request['kind']): Request {
    const req = this.requests.get(id);
    if (req === undefined || req.kind !== kind) throw new ProtocolError(`reply to req ${id}, which is no pending ${kind}`);
    this.requests.delete(id);
    return req;
  }

  private onError(err: ConvergenceError): void {
    const ref = err.ref;
    if (ref === 0n) {
      // Connection-level: the server closes the connection after it.
      this.connErr = err;
      if (this.handshake !== null) {
        const h = this.handshake;
        this.handshake = null;
        h.reject(err);
      }
      return;
    }
    const req = this.requests.get(ref);
    if (req !== undefined) {
      this.requests.delete(ref);
      this.syncs.delete(req);
      req.reject(err);
      return;
    }
    const sub = this.subsById.get(ref);
    if (sub !== undefined) {
      this.subsById.delete(ref);
      if (err.code === ErrorCode.overloaded && sub.heard && this.transport !== null) {
        // The server ended an accepted subscription (a snapshot not read for 30 s, or
        // more merged changes held than its limit): resume from the last window seen.
        this.sendSubscribe(sub);
        this.scheduleFlush();
        return;
      }
      this.subs.delete(sub);
      sub.fail(err);
      return;
    }
    if (this.closedSubIds.delete(ref)) return;
    this.onOpError(err);
  }

  private unknownSchema(ref: SchemaRef): UnknownSchemaError {
    const known = [...this.schemasByName.keys()].join(', ');
    return new UnknownSchemaError(ErrorCode.unknown_schema, `the server has no schema ${JSON.stringify(String(ref))} (it has: ${known})`);
  }
}
