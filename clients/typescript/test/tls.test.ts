// The client over TLS (`tls` option) against a real `convergence serve --tls-cert`,
// with certificates the openssl command makes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client, ConnectionLostError } from '../src/index.js';
import { TestServer } from './server.js';

/** ca.pem/ca.key and server.pem/server.key (for localhost and 127.0.0.1) in `dir`. */
function makeCerts(dir: string): void {
  const f = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '30', '-subj', '/CN=ca']);
  openssl(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '30', '-extfile', f('ext')]);
}

describe('client over TLS', () => {
  let server: TestServer;
  let dir: string;
  let ca: Buffer;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'conv-ts-tls-'));
    makeCerts(dir);
    ca = readFileSync(path.join(dir, 'ca.pem'));
    server = new TestServer({ args: ['--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key')] });
    await server.start();
  });
  after(async () => {
    await server.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('writes, QUERY and a subscription work over TLS', async () => {
    const w = await Client.connect({ port: server.port, source: 'tls-w', tls: { ca } });
    const r = await Client.connect({ host: 'localhost', port: server.port, tls: { ca } });
    try {
      const sub = r.subscribe('player', { prefix: 'tls-' });
      const end = await sub[Symbol.asyncIterator]().next();
      assert.equal(end.value.type, 'snapshot_end');
      await w.patch('player', 'tls-1', { name: 'over tls', score: 5n });
      await w.sync();
      assert.deepStrictEqual(await r.query('player', 'tls-1'), { record: { name: 'over tls', score: 5n } });
      const change = await sub[Symbol.asyncIterator]().next();
      assert.equal(change.value.type, 'change');
      assert.equal(change.value.id, 'tls-1');
    } finally {
      await Promise.all([w.close(), r.close()]);
    }
  });

  test('a client that does not trust the server\'s CA cannot connect', async () => {
    await assert.rejects(
      Client.connect({ port: server.port, tls: {}, connectTimeoutMs: 5000 }),
      (e: unknown) => !(e instanceof ConnectionLostError && /WELCOME/.test(e.message)) && /certificate/.test(String((e as Error).message)),
    );
  });
});
