// Benchmarks (not tests): pipelined writes from one process, and subscriber decode.
//
//   npm run build && node bench.mjs [--ops N] [--changes N] [--runs R]
//
// Starts `convergence serve` ($CONVERGENCE_BIN, else build/src/cmd/convergence; use a
// Release build) on a free loopback port with a temporary data directory.
//
// writes: one client patches N ops (two fields, 10,000 entities) as fast as its
//   credit allows and waits for sync(); ops/s = N / (first write to sync resolved).
// decode: a subscriber receives C changes (C distinct entities) from a live writer
//   while its transport records the bytes; the recording is then replayed through a
//   Client over an in-memory transport and read with `for await`; changes/s = C /
//   (connect to last change read). The live rate is printed too, but it is bound by
//   the server and the writer, not by decoding.
// Each figure is the median of R runs.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';

import { Client, tcpConnector } from './dist/src/index.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const OPS = opt('--ops', 1_000_000);
const CHANGES = opt('--changes', 1_000_000);
const RUNS = opt('--runs', 3);

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.env.CONVERGENCE_BIN ?? path.join(here, '..', '..', 'build', 'src', 'cmd', 'convergence');
const dir = mkdtempSync(path.join(tmpdir(), 'conv-bench-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x) => Math.round(x).toLocaleString('en-US');

const server = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data'), '--log-level', 'warn'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const port = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = /listening on [^\n]*:(\d+)\n/.exec(out);
    if (m) resolve(Number(m[1]));
  });
  server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
});

async function writes(run) {
  const w = await Client.connect({ port, source: `bench-w-${run}` });
  const t0 = performance.now();
  for (let i = 0; i < OPS; i++) await w.patch('player', `e-${i % 10000}`, { x: i * 0.5, score: i });
  await w.sync();
  const secs = (performance.now() - t0) / 1000;
  await w.close();
  return OPS / secs;
}

async function recordChanges(run) {
  const chunks = [];
  const recording = (handlers) =>
    tcpConnector({ host: '127.0.0.1', port, timeoutMs: 5000 })({
      onData: (chunk) => {
        chunks.push(chunk);
        handlers.onData(chunk);
      },
      onClose: handlers.onClose,
    });
  const r = await Client.connect({ connector: recording });
  const sub = r.subscribe('player', { prefix: `d${run}-` });
  // Live changes start after the window SNAPSHOT_END names: write after it.
  const first = await sub.next();
  if (first.value?.type !== 'snapshot_end') throw new Error(`expected snapshot_end, got ${first.value?.type}`);
  const w = await Client.connect({ port, source: `bench-d-${run}` });
  const got = (async () => {
    let n = 0;
    const t0 = performance.now();
    for await (const e of sub) {
      if (e.type === 'change' && ++n === CHANGES) break;
    }
    return CHANGES / ((performance.now() - t0) / 1000);
  })();
  for (let i = 0; i < CHANGES; i++) await w.patch('player', `d${run}-${i}`, { x: i * 0.5, score: i, name: 'bench' });
  await w.sync();
  const live = await got;
  await Promise.all([w.close(), r.close()]);
  return { chunks, live };
}

async function replay(chunks) {
  const replaying = async (handlers) => {
    // The first chunk (WELCOME) answers HELLO; the rest follows the client's SUBSCRIBE.
    let paused = false;
    let i = 0;
    let writes = 0;
    const pump = () => {
      while (!paused && i < chunks.length && (i === 0 || writes > 1)) handlers.onData(chunks[i++]);
    };
    return {
      write: () => {
        writes++;
        setImmediate(pump);
      },
      pause: () => {
        paused = true;
      },
      resume: () => {
        paused = false;
        setImmediate(pump);
      },
      close: () => setImmediate(() => handlers.onClose()),
    };
  };
  const t0 = performance.now();
  const r = await Client.connect({ connector: replaying });
  const sub = r.subscribe('player');
  let n = 0;
  for await (const e of sub) {
    if (e.type === 'change' && ++n === CHANGES) break;
  }
  const rate = CHANGES / ((performance.now() - t0) / 1000);
  await r.close();
  return rate;
}

try {
  const w = [];
  for (let run = 0; run < RUNS; run++) {
    w.push(await writes(run));
    console.log(`writes run ${run + 1}: ${fmt(w.at(-1))} ops/s`);
  }
  console.log(`writes: median ${fmt(median(w))} ops/s (${OPS} ops per run, ${RUNS} runs)`);

  const { chunks, live } = await recordChanges(0);
  console.log(`decode: live subscriber ${fmt(live)} changes/s (bound by the server and the writer)`);
  const d = [];
  for (let run = 0; run < RUNS; run++) {
    d.push(await replay(chunks));
    console.log(`decode run ${run + 1}: ${fmt(d.at(-1))} changes/s`);
  }
  console.log(`decode: median ${fmt(median(d))} changes/s (${CHANGES} changes per run, ${RUNS} runs)`);
} finally {
  server.kill('SIGTERM');
  await new Promise((resolve) => server.on('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
}
