// Benchmarks of the console and the WebSocket transport (docs/performance.md,
// "Browsers and WebSocket"), against the Release binary:
//  1. A console page in headless Chromium subscribed over WebSocket to the player
//     schema while `convergence load` writes --rate ops/s of PATCHes over TCP to
//     --entities players: changes received per second and the page's frame time
//     (time between animation frames, measured in the page) p50 / p95 / max.
//  2. The TypeScript client's pipelined writes (the console test's write scenario:
//     PATCHes of name, team, score, level, online over 10,000 players, then sync()),
//     over TCP and over WebSocket from Node.js, and over WebSocket from the page; the
//     ratio WebSocket / TCP from the same run.
// Usage: node --experimental-websocket bench.mjs [--runs 3] [--rate 110000]
//        [--entities 10000] [--seconds 10] [--ops 200000] [--no-writes]
// (110,000 PATCHes/s over 10,000 players make about 104,000 entity changes/s: a few
// land on an entity already changed in the same window.)

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { Server, buildDir, clientDistDir, launchBrowser, loadClient, p95, waitInPage } from './harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const skipWrites = args.includes("--no-writes");
const runs = opt('runs', 3);
const rate = opt('rate', 110000);
const entities = opt('entities', 10000);
const seconds = opt('seconds', 10);
const ops = opt('ops', 200000);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * q))]; };

function runLoad(port) {
  const bin = process.env.CONVERGENCE_BIN ?? path.join(buildDir, 'src', 'cmd', 'convergence');
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['load', '--server', `127.0.0.1:${port}`, '--workers', '2', '--entities', String(entities), '--rate', String(rate),
      '--mix', '0/100/0', '--duration', `${seconds}s`, '--quiet', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load exited with ${code}`))));
  });
}

async function subscriberRun(browser) {
  const server = new Server();
  await server.start();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(server.consoleUrl);
    await waitInPage(page, () => window.__console.snapshot().connected, null, 'connect');
    await page.selectOption('#schema', { label: 'player (9 fields)' });
    await page.click('#bootstrap');
    await waitInPage(page, () => window.__console.snapshot().subscribed, null, 'subscribed');
    const load = runLoad(server.port);
    // Measure the middle of the run: from 1 s in to 1 s before the end.
    await new Promise((r) => setTimeout(r, 1000));
    await page.evaluate(() => window.__console.resetPerf());
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, (seconds - 2) * 1000));
    const m = await page.evaluate(() => ({ frames: window.__console.frameTimes(), renders: window.__console.renderTimes(), decodes: window.__console.decodeTimes(), changes: window.__console.snapshot().changes }));
    const elapsed = (Date.now() - t0) / 1000;
    const report = await load;
    await page.close();
    return {
      changesPerSec: m.changes / elapsed,
      frameP50: pct(m.frames, 0.5), frameP95: p95(m.frames), frameMax: Math.max(...m.frames),
      renderP95: p95(m.renders), frames: m.frames.length,
      decodeP95: p95(m.decodes), decodeMax: Math.max(...m.decodes), messages: m.decodes.length,
      loadOpsPerSec: report.ops_per_sec,
    };
  } finally {
    await server.dispose();
  }
}

const scenario = (n) => (c) => {
  for (let i = 0; i < n; i++) c.patch('player', `p-${String(i % 10000).padStart(5, '0')}`, { name: `player ${i}`, team: i % 2 ? 'red' : 'blue', score: BigInt(i), level: 1n, online: true });
  return c.sync();
};

async function writeRun(browser, Client) {
  const server = new Server();
  await server.start();
  try {
    const out = {};
    for (const [name, options] of [['tcp', { port: server.port }], ['ws', { url: server.wsUrl }]]) {
      const c = await Client.connect({ ...options, source: `bench-${name}` });
      const t0 = performance.now();
      await scenario(ops)(c);
      out[`node_${name}`] = ops / ((performance.now() - t0) / 1000);
      await c.close();
    }
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    const dist = clientDistDir();
    await page.route(`${server.consoleUrl}client/**`, (route) => {
      const rel = new URL(route.request().url()).pathname.replace(/^\/client\//, '');
      route.fulfill({ contentType: 'text/javascript', body: readFileSync(path.join(dist, rel)) });
    });
    await page.goto(server.consoleUrl);
    out.browser_ws = await page.evaluate(async ([url, n]) => {
      const { Client } = await import('/client/index.js');
      const c = await Client.connect({ url, source: 'bench-browser' });
      const t0 = performance.now();
      for (let i = 0; i < n; i++) c.patch('player', `p-${String(i % 10000).padStart(5, '0')}`, { name: `player ${i}`, team: i % 2 ? 'red' : 'blue', score: BigInt(i), level: 1n, online: true });
      await c.sync();
      const rate = n / ((performance.now() - t0) / 1000);
      await c.close();
      return rate;
    }, [server.wsUrl, ops]);
    await context.close();
    return out;
  } finally {
    await server.dispose();
  }
}

const { Client } = await loadClient();
const browser = await launchBrowser();
try {
  const subs = [];
  for (let i = 0; i < runs; i++) {
    const r = await subscriberRun(browser);
    console.log(`subscriber run ${i + 1}: writers ${Math.round(r.loadOpsPerSec)} ops/s, ${Math.round(r.changesPerSec)} changes/s received, frame time p50 ${r.frameP50.toFixed(1)} ms, p95 ${r.frameP95.toFixed(1)} ms, max ${r.frameMax.toFixed(1)} ms (${r.frames} frames), render p95 ${r.renderP95.toFixed(2)} ms, ${r.messages} messages decoded in p95 ${r.decodeP95.toFixed(2)} ms, max ${r.decodeMax.toFixed(1)} ms`);
    subs.push(r);
  }
  console.log(`subscriber medians: ${Math.round(median(subs.map((r) => r.changesPerSec)))} changes/s, frame time p95 ${median(subs.map((r) => r.frameP95)).toFixed(1)} ms`);
  const writes = [];
  if (skipWrites) process.exit(0);
  for (let i = 0; i < runs; i++) {
    const r = await writeRun(browser, Client);
    console.log(`write run ${i + 1}: Node TCP ${Math.round(r.node_tcp)} ops/s, Node WebSocket ${Math.round(r.node_ws)} ops/s (${(r.node_ws / r.node_tcp).toFixed(2)}x), browser WebSocket ${Math.round(r.browser_ws)} ops/s (${(r.browser_ws / r.node_tcp).toFixed(2)}x)`);
    writes.push(r);
  }
  console.log(`write medians: Node TCP ${Math.round(median(writes.map((r) => r.node_tcp)))} ops/s, Node WebSocket ${Math.round(median(writes.map((r) => r.node_ws)))} ops/s, browser WebSocket ${Math.round(median(writes.map((r) => r.browser_ws)))} ops/s; WebSocket/TCP per run (median) Node ${median(writes.map((r) => r.node_ws / r.node_tcp)).toFixed(2)}, browser ${median(writes.map((r) => r.browser_ws / r.node_tcp)).toFixed(2)}`);
} finally {
  await browser.close();
}
