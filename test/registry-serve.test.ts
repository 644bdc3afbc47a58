/**
 * `blobcore serve` as a process: TLS through node:https (verified by skopeo against the
 * test CA, refused without it), htpasswd users with access rules, upload sessions
 * continued by another process sharing the store (including after the first one was
 * killed), the redirect fallback on a driver that cannot sign, clean shutdown, bad
 * arguments.
 *
 * test/fixtures/registry-tls/ holds a self-signed certificate for 127.0.0.1 and its key,
 * made for these tests only (openssl req -x509, EC P-256, CA:TRUE so it can be its own root).
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addImage, type BuiltImage, verifyImage } from '../scripts/registry/oci-layout.js';
import {
  blobcoreCommand,
  type RunningRegistry,
  run,
  skopeo,
  startBlobcore,
} from '../scripts/registry/servers.js';
import { parseListen, serve as serveCommand } from '../src/cli/serve.js';
import { basic, call } from './fixtures/registry-harness.js';
import { random, sha256 } from './helpers.js';

const TLS_DIR = fileURLToPath(new URL('./fixtures/registry-tls/', import.meta.url));
const CERT = join(TLS_DIR, 'cert.pem');
const KEY = join(TLS_DIR, 'key.pem');

let work: string;
const running: RunningRegistry[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'blobcore-serve-'));
});
afterAll(async () => {
  for (const server of running) await server.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function serve(storeUrl: string, args: string[] = []): Promise<RunningRegistry> {
  const server = await startBlobcore(storeUrl, args);
  running.push(server);
  return server;
}

function bytesOf(size: number, seed: number): Buffer {
  const next = random(seed);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(next() * 256);
  return out;
}

describe('blobcore serve', () => {
  it('serves HTTPS with htpasswd users and access rules; skopeo verifies the certificate', async () => {
    const htpasswd = join(work, 'htpasswd');
    const access = join(work, 'access');
    await writeFile(
      htpasswd,
      `editor:${bcrypt.hashSync('edit-pw', 5).replace(/^\$2b\$/, '$2y$')}\nviewer:${bcrypt.hashSync('view-pw', 5)}\n`,
    );
    await writeFile(access, 'editor  apps/*  push\nviewer  apps/*  pull\n');
    const server = await serve(`file://${join(work, 'tls-store')}?durability=none`, [
      '--tls-cert',
      CERT,
      '--tls-key',
      KEY,
      '--htpasswd',
      htpasswd,
      '--access',
      access,
      '--realm',
      'serve-test',
    ]);
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await (await import('node:fs/promises')).readFile(CERT);
    const dispatcher = new Agent({ connect: { ca } });
    const anonymous = await call(server.url, '/v2/', { dispatcher });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="serve-test", charset="UTF-8"');
    expect((await call(server.url, '/v2/', { dispatcher, headers: basic('viewer', 'view-pw') })).status).toBe(
      200,
    );
    await dispatcher.close();

    const layout = join(work, 'tls-layout');
    const image = await addImage(layout, 'v1', [
      { size: 3 * 1024 * 1024, seed: 1 },
      { size: 5000, seed: 2 },
    ]);
    const certs = join(work, 'certs');
    await mkdir(certs, { recursive: true });
    await copyFile(CERT, join(certs, 'ca.crt'));
    const target = `docker://${server.host}/apps/web:v1`;
    // without the CA, TLS verification fails: the connection really is TLS with this certificate
    const untrusted = await skopeo(['copy', '--dest-creds', 'editor:edit-pw', `oci:${layout}:v1`, target]);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate|x509/i);
    const denied = await skopeo([
      'copy',
      '--dest-cert-dir',
      certs,
      '--dest-creds',
      'viewer:view-pw',
      `oci:${layout}:v1`,
      target,
    ]);
    expect(denied.code).not.toBe(0);
    const pushed = await skopeo([
      'copy',
      '--preserve-digests',
      '--dest-cert-dir',
      certs,
      '--dest-creds',
      'editor:edit-pw',
      `oci:${layout}:v1`,
      target,
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const pulledDir = join(work, 'tls-pulled');
    const pulled = await skopeo([
      'copy',
      '--preserve-digests',
      '--src-cert-dir',
      certs,
      '--src-creds',
      'viewer:view-pw',
      target,
      `oci:${pulledDir}:v1`,
    ]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const back: BuiltImage = await verifyImage(pulledDir, 'v1');
    expect(back.manifest.digest).toBe(image.manifest.digest);
  }, 120_000);

  it('continues an upload session in another process, also after the first one was killed', async () => {
    const storeUrl = `file://${join(work, 'shared-store')}`;
    const [a, b] = await Promise.all([serve(storeUrl), serve(storeUrl)]);
    const bytes = bytesOf(3 * 1024 * 1024 + 123, 5);
    const digest = sha256(bytes);
    const started = await call(a.url, '/v2/team/app/blobs/uploads/', { method: 'POST' });
    expect(started.status).toBe(202);
    const location = started.headers.location as string;
    const cut = [0, 1_000_000, 2_000_000, 2_500_000, bytes.length];
    const chunk = (i: number) => ({
      method: 'PATCH' as const,
      headers: { 'content-range': `${cut[i]}-${(cut[i + 1] as number) - 1}` },
      body: bytes.subarray(cut[i], cut[i + 1]),
    });
    expect((await call(a.url, location, chunk(0))).headers.range).toBe('0-999999');
    // the other process sees the session and continues it
    expect((await call(b.url, location)).headers.range).toBe('0-999999');
    expect((await call(b.url, location, chunk(1))).headers.range).toBe('0-1999999');
    // out of order on the first process: 416 with the offset the second one reached
    const stale = await call(a.url, location, chunk(0));
    expect(stale.status).toBe(416);
    expect(stale.headers.range).toBe('0-1999999');
    expect((await call(a.url, location, chunk(2))).headers.range).toBe('0-2499999');
    // kill the process that wrote last, without warning; a third one finishes the upload
    process.kill(a.pid, 'SIGKILL');
    const c = await serve(storeUrl);
    expect((await call(c.url, location)).headers.range).toBe('0-2499999');
    const put = await call(c.url, `${location}?digest=${digest}`, { ...chunk(3), method: 'PUT' });
    expect(put.status, put.body.toString()).toBe(201);
    for (const server of [b, c]) {
      const got = await call(server.url, `/v2/team/app/blobs/${digest}`);
      expect(got.body.equals(bytes)).toBe(true);
    }
  }, 120_000);

  it('--redirect on a driver that cannot sign URLs streams the bytes itself', async () => {
    const server = await serve(`file://${join(work, 'redirect-store')}?durability=none`, ['--redirect']);
    const bytes = bytesOf(10_000, 9);
    const digest = sha256(bytes);
    const put = await call(server.url, `/v2/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: bytes,
    });
    expect(put.status).toBe(201);
    const got = await call(server.url, `/v2/app/blobs/${digest}`);
    expect(got.status).toBe(200);
    expect(got.body.equals(bytes)).toBe(true);
  }, 60_000);

  it('stops cleanly on SIGTERM and refuses bad arguments', async () => {
    const server = await startBlobcore('memory:', ['--log', '--no-delete']);
    const digest = sha256(Buffer.from('x'));
    await call(server.url, `/v2/app/blobs/uploads/?digest=${digest}`, { method: 'POST', body: 'x' });
    expect((await call(server.url, `/v2/app/blobs/${digest}`, { method: 'DELETE' })).status).toBe(405);
    await server.stop();
    expect(server.output()).toMatch(/POST \/v2\/app\/blobs\/uploads\/\?digest=\S+ 201/);
    expect(server.output()).toContain('SIGTERM, stopping');

    // argument errors, in process: serve() returns 2 for usage, throws for bad values
    const stderr = process.stderr.write;
    let usage = '';
    process.stderr.write = ((text: string) => {
      usage += text;
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await serveCommand(['serve-me', 'too-many'])).toBe(2);
      expect(await serveCommand([])).toBe(2);
    } finally {
      process.stderr.write = stderr;
    }
    expect(usage).toContain('usage: blobcore serve');
    await expect(serveCommand(['memory:', '--tls-cert', CERT])).rejects.toThrow(
      '--tls-cert and --tls-key go together',
    );
    await expect(serveCommand(['memory:', '--listen', 'nowhere'])).rejects.toThrow(
      '--listen needs host:port',
    );
    await expect(serveCommand(['memory:', '--access', 'x'])).rejects.toThrow('--access needs --htpasswd');
    await expect(serveCommand(['memory:', '--redirect', '--redirect-expires=0'])).rejects.toThrow('seconds');
    const md5 = join(work, 'md5-htpasswd');
    await writeFile(md5, 'old:$apr1$abcdefgh$0123456789012345678901\n');
    await expect(serveCommand(['memory:', '--htpasswd', md5])).rejects.toThrow('bcrypt');
    // the process form reports a thrown error on stderr with exit code 1
    const failed = await run(process.execPath, blobcoreCommand(['serve', 'memory:', '--listen', 'nowhere']));
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('--listen needs host:port');
  }, 60_000);

  it('parses --listen forms', () => {
    expect(parseListen('127.0.0.1:5000')).toEqual({ host: '127.0.0.1', port: 5000 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen(':8080')).toEqual({ host: undefined, port: 8080 });
    for (const bad of ['5000', 'host:', 'host:70000', '[::1]', 'a:b:c']) {
      expect(() => parseListen(bad), bad).toThrow(/--listen/);
    }
  });
});
