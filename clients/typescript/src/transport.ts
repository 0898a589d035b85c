// The byte stream under a client. The client needs only what TransportHandlers and
// Transport declare: TCP (Node.js) and WebSocket (browsers and Node.js) are the two
// transports. Nothing here imports a Node.js module at load time, so that the package
// loads in a browser; the TCP connector loads node:net and node:tls when it connects.

import type * as net from 'node:net';
import type * as tls from 'node:tls';

import { ConnectionLostError, ProtocolError } from './errors.js';

export interface TransportHandlers {
  /** Bytes arrived. The chunk is the handler's to keep. */
  onData(chunk: Uint8Array): void;
  /** The stream ended (called once); `error` when it ended abnormally. */
  onClose(error?: Error): void;
}

export interface Transport {
  /** Queues bytes for sending, in order. The caller keeps what it queues bounded. */
  write(data: Uint8Array): void;
  /** Stops delivering data until resume(), so that the peer is slowed by the stream's own flow control. */
  pause(): void;
  resume(): void;
  /** Ends the stream after what was written; onClose follows. */
  close(): void;
}

/** Opens a transport; rejects when the connection cannot be made. */
export type Connector = (handlers: TransportHandlers) => Promise<Transport>;

export interface TcpOptions {
  host: string;
  port: number;
  /** How long connecting may take (with TLS: and its handshake). */
  timeoutMs: number;
  /**
   * TLS (node:tls) below the framing, for a server started with --tls-cert: `ca` for
   * the server's CA, `cert` and `key` for mutual TLS. The server's certificate must
   * name `host`.
   */
  tls?: tls.ConnectionOptions;
}

/** A Connector over TCP (node:net), Nagle off; over TLS when `opts.tls` is given. */
export function tcpConnector(opts: TcpOptions): Connector {
  return async (handlers) => {
    const [net, tls] = await Promise.all([import('node:net'), import('node:tls')]);
    return new Promise<Transport>((resolve, reject) => {
      const socket: net.Socket =
        opts.tls === undefined
          ? net.createConnection({ host: opts.host, port: opts.port, noDelay: true })
          : tls.connect({
              ...opts.tls,
              host: opts.host,
              port: opts.port,
              minVersion: 'TLSv1.2',
              // SNI takes a name, never an IP address.
              servername: net.isIP(opts.host) === 0 ? opts.host : '',
            });
      socket.setNoDelay(true);
      let error: Error | undefined;
      let connected = false;
      const timer = setTimeout(() => {
        socket.destroy(new ConnectionLostError(`connecting to ${opts.host}:${opts.port} took over ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
      socket.on('error', (e) => {
        error ??= e;
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (!connected) {
          reject(error ?? new ConnectionLostError(`connection to ${opts.host}:${opts.port} closed`));
          return;
        }
        handlers.onClose(error);
      });
      socket.on('data', (chunk: Buffer) => handlers.onData(chunk));
      socket.on(opts.tls === undefined ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        connected = true;
        resolve({
          write: (data) => {
            socket.write(data);
          },
          pause: () => socket.pause(),
          resume: () => socket.resume(),
          close: () => {
            socket.end();
            // The peer may not close its side; the socket goes after a grace period.
            setTimeout(() => socket.destroy(), 2000).unref();
          },
        });
      });
    });
  };
}

/** The part of the WebSocket API (WHATWG, as in browsers and Node.js 22) the transport uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WebSocketOptions {
  /** ws://HOST:PORT/ of `serve --ws-listen` or `--console` (wss:// with --tls-cert). */
  url: string;
  /** How long the connection and its upgrade may take. */
  timeoutMs: number;
  /**
   * The WebSocket class; default globalThis.WebSocket (browsers, Node.js 22 and later,
   * Node.js 20 with --experimental-websocket).
   */
  WebSocket?: WebSocketConstructor;
  /**
   * The largest message sent (default 65536 bytes): written bytes are cut into
   * messages of at most this size, anywhere (the server joins them into one stream,
   * docs/protocol.md "WebSocket"). At most the server's --max-frame plus 4.
   */
  maxMessage?: number;
}

/**
 * A Connector over WebSocket: the protocol's bytes in binary messages. pause() holds
 * what arrives until resume() (the WebSocket API cannot stop reading: a subscriber
 * that falls behind is caught up by the server's conflation, not slowed down).
 */
export function websocketConnector(opts: WebSocketOptions): Connector {
  const maxMessage = opts.maxMessage ?? 65536;
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
      const Ctor = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (Ctor === undefined) {
        reject(new ConnectionLostError('this runtime has no WebSocket: use Node.js 22 or later, node --experimental-websocket, or pass opts.WebSocket'));
        return;
      }
      let ws: WebSocketLike;
      try {
        ws = new Ctor(opts.url);
      } catch (e) {
        reject(new ConnectionLostError(`cannot open a WebSocket to ${opts.url}: ${(e as Error).message}`));
        return;
      }
      ws.binaryType = 'arraybuffer';
      let connected = false;
      let closed = false;
      let paused = false;
      let held: Uint8Array[] = [];
      let error: Error | undefined;
      const timer = setTimeout(() => {
        error = new ConnectionLostError(`connecting to ${opts.url} took over ${opts.timeoutMs} ms`);
        ws.close();
      }, opts.timeoutMs);
      ws.onerror = () => {
        error ??= new ConnectionLostError(`WebSocket to ${opts.url} failed`);
        // A refused upgrade may end with this event alone (no close event follows).
        if (!connected) {
          clearTimeout(timer);
          reject(error);
        }
      };
      ws.onmessage = (ev) => {
        if (closed || !(ev.data instanceof ArrayBuffer)) return;
        const chunk = new Uint8Array(ev.data);
        if (paused) held.push(chunk);
        else handlers.onData(chunk);
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!connected) {
          reject(error ?? new ConnectionLostError(`WebSocket to ${opts.url} closed (${ev.code}) before it opened`));
          return;
        }
        if (closed) return;
        closed = true;
        // What arrived while paused is delivered first.
        for (const chunk of held) handlers.onData(chunk);
        held = [];
        const clean = ev.code === 1000 || ev.code === 1001;
        handlers.onClose(clean ? undefined : (error ?? new ConnectionLostError(`WebSocket closed with code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`)));
      };
      ws.onopen = () => {
        clearTimeout(timer);
        connected = true;
        resolve({
          write: (data) => {
            for (let p = 0; p < data.length; p += maxMessage) ws.send(data.subarray(p, Math.min(data.length, p + maxMessage)));
          },
          pause: () => {
            paused = true;
          },
          resume: () => {
            paused = false;
            while (held.length > 0 && !paused && !closed) handlers.onData(held.shift()!);
          },
          close: () => ws.close(1000),
        });
      };
    });
}

/**
 * Cuts frames (u32 length, u8 type, payload) out of a byte stream. A declared
 * length of 0 or over `maxFrame` is a ProtocolError as soon as the length has
 * arrived, before anything of the frame is buffered.
 */
export class FrameSplitter {
  private rest: Uint8Array | null = null;
  private parts: Uint8Array[] = [];
  private partsBytes = 0;
  private need = 0;

  constructor(private readonly maxFrame: number) {}

  /**
   * Feeds a chunk; calls onFrame(type, buf, start, end) for each whole frame, with
   * the payload at buf[start, end). The bytes are valid during the call only if
   * the caller reuses chunks; this class keeps no reference to delivered frames.
   */
  push(chunk: Uint8Array, onFrame: (type: number, buf: Uint8Array, start: number, end: number) => void): void {
    let buf: Uint8Array;
    if (this.rest === null) {
      buf = chunk;
    } else {
      if (this.partsBytes + chunk.length < this.need) {
        this.parts.push(chunk);
        this.partsBytes += chunk.length;
        return;
      }
      buf = new Uint8Array(this.partsBytes + chunk.length);
      let off = 0;
      for (const p of this.parts) {
        buf.set(p, off);
        off += p.length;
      }
      buf.set(chunk, off);
      this.rest = null;
      this.parts = [];
      this.partsBytes = 0;
    }
    let p = 0;
    const n = buf.length;
    while (n - p >= 4) {
      const len = (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16)) + buf[p + 3]! * 0x1000000;
      if (len === 0) throw new ProtocolError('frame of length 0', p);
      if (len > this.maxFrame) throw new ProtocolError(`frame of ${len} bytes is over the limit of ${this.maxFrame}`, p);
      if (n - p - 4 < len) {
        this.need = 4 + len;
        break;
      }
      onFrame(buf[p + 4]!, buf, p + 5, p + 4 + len);
      p += 4 + len;
    }
    if (p < n) {
      if (n - p < 4) this.need = 4;
      this.rest = buf.subarray(p);
      this.parts = [this.rest];
      this.partsBytes = n - p;
    }
  }
}
