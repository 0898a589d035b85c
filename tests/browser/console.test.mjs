// The console page in headless Chromium against a real server: it bootstraps 10,000
// players, shows a change made by a TCP writer within 1 s, survives a server restart
// without a reload, shows the claims of a row, and writes build/console.png; the
// TypeScript client's WebSocket transport, loaded as ES modules into a page; an id
// prefix, and a server with an auth token.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';

import { Server, buildDir, clientDistDir, launchBrowser, loadClient, waitInPage } from './harness.mjs';

const PLAYERS = 10000;
let server;
let browser;
let Client;

before(async () => {
  ({ Client } = await loadClient());
  server = new Server();
  await server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const id = (i) => `p-${String(i).padStart(5, '0')}`;

async function cell(page, entity, field) {
  return page.evaluate(([entity, field]) => {
    const head = [...document.querySelectorAll('#head th')].map((th) => th.textContent);
    const row = document.querySelector(`#body tr[data-id="${entity}"]`);
    if (row === null) return null;
    const td = row.children[head.indexOf(field)];
    return { text: td.textContent, hot: td.classList.contains('hot') };
  }, [entity, field]);
}

test('the console bootstraps 10,000 players, shows live changes, resumes after a restart', async () => {
  const w = await Client.connect({ port: server.port, source: 'tcp-writer' });
  try {
    for (let i = 0; i < PLAYERS; i++) w.patch('player', id(i), { name: `player ${i}`, team: i % 2 ? 'red' : 'blue', score: BigInt(i), level: 1n, online: true });
    await w.sync();

    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.consoleUrl);
    await waitInPage(page, () => window.__console.snapshot().connected, null, 'the page to connect');
    await page.selectOption('#schema', { label: 'player (9 fields)' });
    await page.click('#bootstrap');
    const t0 = Date.now();
    await waitInPage(page, (n) => { const s = window.__console.snapshot(); return s.subscribed && s.entities === n; }, PLAYERS, '10,000 players');
    console.log(`# bootstrap of ${PLAYERS} players shown in ${Date.now() - t0} ms`);
    await waitInPage(page, (e) => document.querySelector(`#body tr[data-id="${e}"]`) !== null, id(0), 'the first row drawn');
    assert.equal((await cell(page, id(0), 'name')).text, 'player 0');

    // A change by the TCP writer, found with the page's filter.
    await page.fill('#filter', id(4242));
    await waitInPage(page, (e) => document.querySelector(`#body tr[data-id="${e}"]`) !== null, id(4242), 'the filtered row');
    const sent = Date.now();
    await w.patch('player', id(4242), { score: 999999n });
    await waitInPage(page, (e) => document.querySelector(`#body tr[data-id="${e}"]`)?.textContent.includes('999999'), id(4242), 'the change', 1000);
    const shownMs = Date.now() - sent;
    const c = await cell(page, id(4242), 'score');
    assert.equal(c.text, '999999');
    assert.ok(c.hot, 'the changed field is highlighted');
    assert.equal((await cell(page, id(4242), 'name')).hot, false, 'fields that did not change are not');
    console.log(`# a TCP writer's change appeared in the table after ${shownMs} ms`);
    assert.ok(shownMs < 1000);

    // Claims of the selected entity: a second source claims it too.
    const w2 = await Client.connect({ port: server.port, source: 'second-writer' });
    await w2.patch('player', id(4242), { team: 'green' });
    await w2.sync();
    await page.click(`#body tr[data-id="${id(4242)}"]`);
    await waitInPage(page, () => document.querySelectorAll('#claims tbody tr').length === 2, null, 'two claims');
    const claims = await page.evaluate(() => [...document.querySelectorAll('#claims tbody tr')].map((tr) => tr.children[0].textContent));
    assert.deepEqual(claims.sort(), ['second-writer', 'tcp-writer']);
    await w2.close();

    // Charts fill from STATS once a second; then the screenshot people look at.
    await page.fill('#filter', '');
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < 2000; i++) w.patch('player', id((i * 7 + k) % PLAYERS), { score: BigInt(k * 100000 + i) });
      await w.sync();
      await new Promise((r) => setTimeout(r, 1000));
    }
    for (let i = 0; i < 30; i++) w.patch('player', id(i), { level: 2n });
    await w.sync();
    await waitInPage(page, () => document.querySelector('#body td.hot') !== null, null, 'highlighted cells');
    await page.screenshot({ path: path.join(buildDir, 'console.png') });
    console.log(`# screenshot: ${path.join(buildDir, 'console.png')}`);

    // A restart: the page reconnects and resumes its subscription, without a reload.
    await page.evaluate(() => { window.__notReloaded = true; });
    const before = await page.evaluate(() => window.__console.snapshot());
    await server.stop();
    await waitInPage(page, () => !window.__console.snapshot().connected, null, 'the page to see the server go', 10000);
    await server.start();
    await waitInPage(page, (n) => { const s = window.__console.snapshot(); return s.connected && s.reconnects > n && s.subscribed; }, before.reconnects, 'the page to reconnect', 20000);
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
    assert.equal((await page.evaluate(() => window.__console.snapshot())).entities, PLAYERS);
    await page.fill('#filter', id(7));
    const w3 = await Client.connect({ port: server.port, source: 'after-restart' });
    await w3.patch('player', id(7), { name: 'after restart' });
    await waitInPage(page, (e) => document.querySelector(`#body tr[data-id="${e}"]`)?.textContent.includes('after restart'), id(7), 'a change after the restart', 5000);
    await w3.close();
    assert.deepEqual(errors, []);
    assert.deepEqual((await page.evaluate(() => window.__console.snapshot())).errors, []);
    await page.close();
  } finally {
    await w.close();
  }
});

test('the TypeScript client works in the browser over WebSocket', async () => {
  // The client's compiled modules, served under the console's origin and imported
  // into the console page (its Content-Security-Policy allows only its own script).
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  const dist = clientDistDir();
  await page.route(`${server.consoleUrl}client/**`, (route) => {
    const rel = new URL(route.request().url()).pathname.replace(/^\/client\//, '');
    route.fulfill({ contentType: 'text/javascript', body: readFileSync(path.join(dist, rel)) });
  });
  await page.goto(server.consoleUrl);
  const got = await page.evaluate(async (url) => {
    const { Client } = await import('/client/index.js');
    const w = await Client.connect({ url, source: 'browser-writer' });
    const r = await Client.connect({ url });
    const sub = r.subscribe('player', { prefix: 'b-' });
    const it = sub[Symbol.asyncIterator]();
    await it.next();
    await w.patch('player', 'b-1', { name: 'from a browser', score: 42n });
    await w.sync();
    const change = (await it.next()).value;
    const q = await r.query('player', 'b-1');
    await w.close();
    await r.close();
    return { id: change.id, name: q.record.name, score: String(q.record.score) };
  }, server.wsUrl);
  assert.deepEqual(got, { id: 'b-1', name: 'from a browser', score: '42' });
  await context.close();
});

test('the console bootstraps an id prefix only, and needs the server\'s token', async () => {
  const page = await browser.newPage();
  await page.goto(server.consoleUrl);
  await waitInPage(page, () => window.__console.snapshot().connected, null, 'the page to connect');
  await page.fill('#prefix', 'p-0001');
  await page.selectOption('#schema', { label: 'player (9 fields)' });
  await page.click('#bootstrap');
  await waitInPage(page, () => { const s = window.__console.snapshot(); return s.subscribed && s.entities === 10; }, null, 'the 10 players of prefix p-0001');
  // The table is drawn at the next animation frame, after the snapshot counts the rows.
  const ids = await waitInPage(page, () => { const r = [...document.querySelectorAll('#body tr')].map((tr) => tr.dataset.id); return r.length === 10 && r; }, null, 'the 10 rows drawn');
  assert.deepEqual(ids, Array.from({ length: 10 }, (_, i) => id(10 + i)));
  await page.close();

  // A server with a token: the page reads nothing without it, and connects with it
  // given in the URL's fragment.
  const dir = mkdtempSync(path.join(tmpdir(), 'conv-console-token-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'console-secret', { mode: 0o600 });
  const guarded = new Server(['--auth-token-file', tokenFile]);
  try {
    await guarded.start();
    const refused = await browser.newPage();
    await refused.goto(guarded.consoleUrl);
    const errors = await waitInPage(refused, () => { const e = window.__console.snapshot().errors; return e.length > 0 && e; }, null, 'the refusal');
    assert.match(errors[0], /server error 4: /);
    assert.equal(await refused.evaluate(() => window.__console.snapshot().connected), false);
    await refused.close();
    const allowed = await browser.newPage();
    await allowed.goto(`${guarded.consoleUrl}#token=console-secret`);
    await waitInPage(allowed, () => window.__console.snapshot().connected, null, 'the page to connect with the token');
    await allowed.close();
  } finally {
    await guarded.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
