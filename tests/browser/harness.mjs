// Shared by the browser tests and the benchmark: a real `convergence serve` with
// --console on free loopback ports (the same ports again after a restart), headless
// Chromium through playwright-core, and the TypeScript client (clients/typescript,
// built by its `npm ci`) for writers over TCP.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const buildDir = path.join(repoRoot, 'build');
const clientDist = path.join(repoRoot, 'clients', 'typescript', 'dist', 'src');

export async function loadClient() {
  const entry = path.join(clientDist, 'index.js');
  if (!existsSync(entry)) throw new Error(`no TypeScript client at ${entry}: run npm ci in clients/typescript`);
  return import(entry);
}

export function clientDistDir() {
  return clientDist;
}

export class Server {
  constructor(args = []) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'conv-browser-'));
    this.args = args;
    this.port = 0;
    this.consolePort = 0;
    this.proc = null;
  }

  async start() {
    const bin = process.env.CONVERGENCE_BIN ?? path.join(buildDir, 'src', 'cmd', 'convergence');
    if (!existsSync(bin)) throw new Error(`no server binary at ${bin}`);
    const proc = spawn(bin, ['serve', '--listen', `127.0.0.1:${this.port}`, '--console', `127.0.0.1:${this.consolePort}`,
      '--data-dir', path.join(this.dir, 'data'), '--log-level', 'warn', ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on('exit', resolve));
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`server did not start within 10 s: ${stderr}`)), 10000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /listening on [^\n]*:(\d+)\n/.exec(out);
        const c = /console on [^\n]*:(\d+)\/\n/.exec(out);
        if (m && c) {
          clearTimeout(timer);
          this.port = Number(m[1]);
          this.consolePort = Number(c[1]);
          resolve();
        }
      });
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${stderr}`)); });
    });
  }

  get consoleUrl() { return `http://127.0.0.1:${this.consolePort}/`; }
  get wsUrl() { return `ws://127.0.0.1:${this.consolePort}/`; }

  async stop() {
    if (this.proc === null) return;
    this.proc.kill('SIGTERM');
    await this.exited;
    this.proc = null;
  }

  async dispose() {
    if (this.proc !== null) {
      this.proc.kill('SIGKILL');
      await this.exited;
      this.proc = null;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath} (Debian package chromium, or set CHROMIUM)`);
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

// Polls `fn` in the page until it returns a truthy value; that value, or an error
// naming `what` after `timeoutMs`.
export async function waitInPage(page, fn, arg, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function p95(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))];
}
