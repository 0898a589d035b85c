// The byte stream under a client. The client needs only what TransportHandlers and
// Transport declare, so that another transport (a WebSocket, say) can be added
// beside the TCP one without touching the client.

import * as net from 'node:net';
import * as tls from 'node:tls';

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
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
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
