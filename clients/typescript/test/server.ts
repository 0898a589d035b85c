// Starts a real `convergence serve` for a test: a free loopback port, a temporary
// data directory, and the same port again after a restart. The binary is
// $CONVERGENCE_BIN, else build/src/cmd/convergence under the repository root.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test → clients/typescript → clients → repository root
export const repoRoot = path.resolve(here, '..', '..', '..', '..');

export function serverBinary(): string {
  const bin = process.env['CONVERGENCE_BIN'] ?? path.join(repoRoot, 'build', 'src', 'cmd', 'convergence');
  if (!existsSync(bin)) throw new Error(`no server binary at ${bin}: build it or set CONVERGENCE_BIN`);
  return bin;
}

export interface ServerOptions {
  /** Extra `serve` arguments. */
  args?: string[];
  /** Schema file contents (--schema-file). */
  schemas?: string;
  /** Auth token (--auth-token-file). */
  token?: string;
  /** Also serve WebSocket (--ws-listen): wsPort, the same again after a restart. */
  ws?: boolean;
  /** Another server's data directory (one serve at a time: it holds the directory's lock). */
  dataDir?: string;
}

export class TestServer {
  readonly dataDir: string;
  private readonly dir: string;
  port = 0;
  wsPort = 0;
  private readonly ws: boolean;
  private proc: ChildProcess | null = null;
  private exited: Promise<number | null> | null = null;
  private readonly args: string[];

  constructor(opts: ServerOptions = {}) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'conv-ts-'));
    this.dataDir = opts.dataDir ?? path.join(this.dir, 'data');
    this.args = [...(opts.args ?? [])];
    this.ws = opts.ws ?? false;
    if (opts.schemas !== undefined) {
      const f = path.join(this.dir, 'schemas.txt');
      writeFileSync(f, opts.schemas);
      this.args.push('--schema-file', f);
    }
    if (opts.token !== undefined) {
      const f = path.join(this.dir, 'token');
      writeFileSync(f, opts.token);
      chmodSync(f, 0o600);
      this.args.push('--auth-token-file', f);
    }
  }

  /** Starts the server (on the port it had before, after a restart) and waits until it listens. */
  async start(): Promise<void> {
    const listen = `127.0.0.1:${this.port}`;
    const ws = this.ws ? ['--ws-listen', `127.0.0.1:${this.wsPort}`] : [];
    const proc = spawn(serverBinary(), ['serve', '--listen', listen, '--data-dir', this.dataDir, '--log-level', 'warn', ...ws, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`server did not start within 10 s: ${stderr}`)), 10000);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on [^\n]*:(\d+)\n/.exec(out);
        const w = /websocket on [^\n]*:(\d+)\/\n/.exec(out);
        if (m && (!this.ws || w)) {
          clearTimeout(timer);
          this.port = Number(m[1]);
          if (w) this.wsPort = Number(w[1]);
          resolve();
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code} before listening: ${stderr}`));
      });
    });
  }

  /** kill -9, and wait until the process is gone. */
  async kill9(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
    this.proc = null;
  }

  /** SIGTERM (a graceful stop); resolves with the exit code. */
  async stop(): Promise<number | null> {
    if (this.proc === null) return null;
    this.proc.kill('SIGTERM');
    const code = await this.exited;
    this.proc = null;
    return code;
  }

  /** The ws:// URL of --ws-listen. */
  get wsUrl(): string {
    return `ws://127.0.0.1:${this.wsPort}/`;
  }

  /** Stops the server (kill -9 if it is still running) and removes its files. */
  async dispose(): Promise<void> {
    if (this.proc !== null) await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
