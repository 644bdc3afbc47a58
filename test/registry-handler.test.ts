/**
 * The registry endpoint over real HTTP: node:http on 127.0.0.1, undici as the client.
 * Every endpoint, every error body, ranges, paging, streaming both ways, and sessions
 * that survive a client cut off mid-PATCH.
 */
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Body, Driver } from '../src/driver.js';
import { blobError, ErrorCodes } from '../src/errors.js';
import { MediaTypes } from '../src/manifest.js';
import { errorBody, toHttpError } from '../src/registry/index.js';
import { type BlobStore, openStore, type StoreOptions } from '../src/store.js';
import { call, startRegistry, type TestRegistry } from './fixtures/registry-harness.js';
import { MiB, random, sha256 } from './helpers.js';
import { blob, imageManifest, indexManifest } from './oci.js';

// Real sockets and a shared 2-core machine: generous limits; the tests wait on events, not on time.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let registry: TestRegistry | undefined;
afterEach(async () => {
  await registry?.close();
  registry = undefined;
});

async function serve(store?: BlobStore, options: Parameters<typeof startRegistry>[1] = {}) {
  const opened = store ?? (await openStore('memory:'));
  registry = await startRegistry(opened, options);
  return { store: opened, url: registry.url, registry };
}

function bytesOf(size: number, seed = 1): Buffer {
  const next = random(seed);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(next() * 256);
  return out;
}

async function pushBlob(url: string, name: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const reply = await call(url, `/v2/${name}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: bytes,
  });
  expect(reply.status, reply.body.toString()).toBe(201);
  return digest;
}

async function pushImage(url: string, name: string, tag: string, text = tag) {
  const config = blob(`{"config":"${text}"}`);
  const layer = blob(`layer of ${text}`);
  await pushBlob(url, name, config.bytes);
  await pushBlob(url, name, layer.bytes);
  const manifest = imageManifest(config, [layer]);
  const reply = await call(url, `/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': MediaTypes.ociManifest },
    body: manifest,
  });
  expect(reply.status, reply.body.toString()).toBe(201);
  return { config, layer, manifest, digest: sha256(manifest) };
}

async function startSession(url: string, name: string): Promise<string> {
  const reply = await call(url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
  expect(reply.status).toBe(202);
  return reply.headers.location as string;
}

function chunked(...parts: Buffer[]): AsyncIterable<Uint8Array> {
  return (async function* () {
    for (const part of parts) yield part;
  })();
}

describe('registry: API root, routing, error bodies', () => {
  it('answers GET /v2/ with 200 {} and the API version header', async () => {
    const { url } = await serve();
    for (const path of ['/v2/', '/v2']) {
      const reply = await call(url, path);
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({});
      expect(reply.headers['docker-distribution-api-version']).toBe('registry/2.0');
    }
    expect((await call(url, '/v2/', { method: 'HEAD' })).status).toBe(200);
  });

  it('answers unknown endpoints with 404 and unsupported methods with 405 and Allow', async () => {
    const { url } = await serve();
    const unknown = await call(url, '/v3/');
    expect(unknown.status).toBe(404);
    expect(unknown.code).toBe('UNSUPPORTED');
    expect((await call(url, '/v2/a/b/c')).status).toBe(404);
    const post = await call(url, '/v2/app/manifests/v1', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.code).toBe('UNSUPPORTED');
    expect(post.headers.allow).toBe('GET, HEAD, PUT, DELETE');
    const patchStart = await call(url, '/v2/app/blobs/uploads/', { method: 'PATCH' });
    expect(patchStart.status).toBe(405);
    expect(patchStart.headers.allow).toBe('POST');
    const postSession = await call(url, `/v2/app/blobs/uploads/${'0'.repeat(32)}`, { method: 'POST' });
    expect(postSession.status).toBe(405);
    expect(postSession.headers.allow).toBe('GET, PATCH, PUT, DELETE');
  });

  it('rejects malformed names and digests with NAME_INVALID and DIGEST_INVALID', async () => {
    const { url } = await serve();
    const good = sha256(Buffer.from('x'));
    for (const name of ['UPPER', 'a//b', 'a..b', '-a', `${'a'.repeat(256)}`]) {
      const reply = await call(url, `/v2/${name}/blobs/${good}`);
      expect(reply.status, name).toBe(400);
      expect(reply.code, name).toBe('NAME_INVALID');
    }
    for (const digest of [
      'sha256:abc',
      `SHA256:${'a'.repeat(64)}`,
      `md5:${'a'.repeat(32)}`,
      `sha256:${'A'.repeat(64)}`,
    ]) {
      const reply = await call(url, `/v2/app/blobs/${digest}`);
      expect(reply.status, digest).toBe(400);
      expect(reply.code, digest).toBe('DIGEST_INVALID');
      expect((reply.json as { errors: { detail: { blobcore: string } }[] }).errors[0]?.detail.blobcore).toBe(
        'DIGEST_INVALID',
      );
    }
    // percent-encoded digests (some clients escape the colon) are decoded
    const digest = await pushBlob(url, 'app', Buffer.from('x'));
    expect((await call(url, `/v2/app/blobs/${digest.replace(':', '%3A')}`)).status).toBe(200);
  });

  it('maps every blobcore error code to a status and a spec code, keeping the blobcore code', () => {
    const expected: Record<string, [number, string]> = {
      BLOB_UNKNOWN: [404, 'BLOB_UNKNOWN'],
      BLOB_UPLOAD_UNKNOWN: [404, 'BLOB_UPLOAD_UNKNOWN'],
      BLOB_UPLOAD_INVALID: [400, 'BLOB_UPLOAD_INVALID'],
      DIGEST_INVALID: [400, 'DIGEST_INVALID'],
      SIZE_INVALID: [400, 'SIZE_INVALID'],
      NAME_INVALID: [400, 'NAME_INVALID'],
      TAG_INVALID: [400, 'MANIFEST_INVALID'],
      MANIFEST_INVALID: [400, 'MANIFEST_INVALID'],
      MANIFEST_BLOB_UNKNOWN: [400, 'MANIFEST_BLOB_UNKNOWN'],
      MANIFEST_UNKNOWN: [404, 'MANIFEST_UNKNOWN'],
      RANGE_INVALID: [416, 'BLOB_UPLOAD_INVALID'],
      UNSUPPORTED: [405, 'UNSUPPORTED'],
      NOT_FOUND: [500, 'NOT_FOUND'],
      KEY_INVALID: [500, 'KEY_INVALID'],
      PRECONDITION_FAILED: [503, 'PRECONDITION_FAILED'],
      INSUFFICIENT_STORAGE: [507, 'INSUFFICIENT_STORAGE'],
      UNAVAILABLE: [503, 'UNAVAILABLE'],
      ABORTED: [503, 'ABORTED'],
    };
    expect(Object.keys(expected).sort()).toEqual([...ErrorCodes].sort());
    const spec = new Set([
      'BLOB_UNKNOWN',
      'BLOB_UPLOAD_INVALID',
      'BLOB_UPLOAD_UNKNOWN',
      'DIGEST_INVALID',
      'MANIFEST_BLOB_UNKNOWN',
      'MANIFEST_INVALID',
      'MANIFEST_UNKNOWN',
      'NAME_INVALID',
      'NAME_UNKNOWN',
      'SIZE_INVALID',
      'UNAUTHORIZED',
      'DENIED',
      'UNSUPPORTED',
      'TOOMANYREQUESTS',
    ]);
    for (const code of ErrorCodes) {
      const mapped = toHttpError(blobError(code, `a ${code}`, { detail: { offset: 3 } }), 'upload');
      expect([mapped.status, mapped.code], code).toEqual(expected[code]);
      if (mapped.status < 500) expect(spec.has(mapped.code), code).toBe(true);
      const body = JSON.parse(errorBody(mapped)) as {
        errors: { code: string; message: string; detail: object }[];
      };
      expect(body.errors[0]).toEqual({
        code: mapped.code,
        message: `a ${code}`,
        detail: { blobcore: code, offset: 3 },
      });
      if (mapped.status === 503) expect(mapped.headers['Retry-After']).toBe('1');
    }
    expect(toHttpError(blobError('RANGE_INVALID', 'r'), 'blob').code).toBe('SIZE_INVALID');
    expect(toHttpError(blobError('RANGE_INVALID', 'r'), 'list').status).toBe(400);
    expect(toHttpError(new Error('boom'), 'other')).toMatchObject({ status: 500, code: 'UNKNOWN' });
  });

  it('answers a failing backend with 503 UNAVAILABLE (Retry-After) and a full one with 507', async () => {
    const inner = (await openStore('memory:')).driver;
    let fail: 'read' | 'write' | null = null;
    const faulty = proxyDriver(inner, {
      read: async (key, options) => {
        if (fail === 'read' && key.startsWith('repositories/'))
          throw blobError('UNAVAILABLE', 'backend down');
        return inner.read(key, options);
      },
      write: (key, body, options) => {
        if (fail === 'write' && key.startsWith('data/')) throw blobError('INSUFFICIENT_STORAGE', 'disk full');
        return inner.write(key, body, options);
      },
    });
    const { url } = await serve(await openStore(faulty));
    const digest = await pushBlob(url, 'app', Buffer.from('hello'));
    fail = 'read';
    const down = await call(url, `/v2/app/blobs/${digest}`, { method: 'GET' });
    expect(down.status).toBe(503);
    expect(down.code).toBe('UNAVAILABLE');
    expect(down.headers['retry-after']).toBe('1');
    fail = 'write';
    const full = await call(url, `/v2/app/blobs/uploads/?digest=${sha256(Buffer.from('more'))}`, {
      method: 'POST',
      body: Buffer.from('more'),
    });
    expect(full.status).toBe(507);
    expect(full.code).toBe('INSUFFICIENT_STORAGE');
  });
});

/** A driver that routes some calls to overrides and the rest to `inner`. */
function proxyDriver(inner: Driver, overrides: Partial<Driver>): Driver {
  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property in overrides) return overrides[property as keyof Driver];
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('registry: blobs', () => {
  it('serves a blob with HEAD and GET, digest and length headers, only in its repository', async () => {
    const { url } = await serve();
    const bytes = bytesOf(100_000);
    const digest = await pushBlob(url, 'team/app', bytes);
    const head = await call(url, `/v2/team/app/blobs/${digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('100000');
    expect(head.headers['docker-content-digest']).toBe(digest);
    expect(head.body.length).toBe(0);
    const get = await call(url, `/v2/team/app/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(get.headers['content-type']).toBe('application/octet-stream');
    expect(get.body.equals(bytes)).toBe(true);
    for (const method of ['GET', 'HEAD'] as const) {
      const other = await call(url, `/v2/team/other/blobs/${digest}`, { method });
      expect(other.status).toBe(404);
      if (method === 'GET') expect(other.code).toBe('BLOB_UNKNOWN');
    }
    expect((await call(url, `/v2/team/app/blobs/${sha256(Buffer.from('never'))}`)).code).toBe('BLOB_UNKNOWN');
  });

  it('serves single byte ranges with 206 and refuses bad ones with 416 and Content-Range */size', async () => {
    const { url } = await serve();
    const bytes = bytesOf(1000);
    const digest = await pushBlob(url, 'app', bytes);
    const path = `/v2/app/blobs/${digest}`;
    const cases: [string, number, number][] = [
      ['bytes=0-9', 0, 9],
      ['bytes=990-', 990, 999],
      ['bytes=-10', 990, 999],
      ['bytes=500-5000', 500, 999],
      ['bytes=999-999', 999, 999],
      ['bytes=-5000', 0, 999],
    ];
    for (const [range, start, end] of cases) {
      const reply = await call(url, path, { headers: { range } });
      expect(reply.status, range).toBe(206);
      expect(reply.headers['content-range'], range).toBe(`bytes ${start}-${end}/1000`);
      expect(reply.body.equals(bytes.subarray(start, end + 1)), range).toBe(true);
    }
    for (const range of [
      'bytes=1000-',
      'bytes=5000-6000',
      'bytes=9-3',
      'bytes=-0',
      'bytes=-',
      'bytes=0-1,5-6',
      'bytes=x-y',
      'bytes=99999999999999999999-',
      'bytes=--5',
    ]) {
      const reply = await call(url, path, { headers: { range } });
      expect(reply.status, range).toBe(416);
      expect(reply.code, range).toBe('SIZE_INVALID');
      expect(reply.headers['content-range'], range).toBe('bytes */1000');
    }
    const otherUnit = await call(url, path, { headers: { range: 'items=0-1' } });
    expect(otherUnit.status).toBe(200);
    expect(otherUnit.body.length).toBe(1000);
  });

  it('deletes a blob from a repository (202, then 404) and refuses when deletes are disabled', async () => {
    const { url } = await serve();
    const digest = await pushBlob(url, 'app', Buffer.from('to delete'));
    await pushBlob(url, 'keep', Buffer.from('to delete'));
    expect((await call(url, `/v2/app/blobs/${digest}`, { method: 'DELETE' })).status).toBe(202);
    expect((await call(url, `/v2/app/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
    const again = await call(url, `/v2/app/blobs/${digest}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(again.code).toBe('BLOB_UNKNOWN');
    expect((await call(url, `/v2/keep/blobs/${digest}`)).status).toBe(200);
    await registry?.close();
    const locked = await serve(undefined, { deleteEnabled: false });
    const kept = await pushBlob(locked.url, 'app', Buffer.from('kept'));
    const refused = await call(locked.url, `/v2/app/blobs/${kept}`, { method: 'DELETE' });
    expect(refused.status).toBe(405);
    expect(refused.code).toBe('UNSUPPORTED');
  });

  it('streams a blob GET: bytes reach the client before the store has read the whole blob', async () => {
    const memory = await openStore('memory:');
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let readStarted = false;
    const gated = proxyDriver(memory.driver, {
      read: async (key, options) => {
        const inner = await memory.driver.read(key, options);
        if (!key.startsWith('data/')) return inner;
        readStarted = true;
        return Readable.from(
          (async function* () {
            let sent = 0;
            for await (const chunk of inner) {
              yield chunk as Buffer;
              sent += (chunk as Buffer).length;
              if (sent >= MiB) await gate; // hold the rest until the client saw bytes
            }
          })(),
        );
      },
    });
    const { url } = await serve(await openStore(gated));
    const bytes = bytesOf(4 * MiB, 7);
    const digest = await pushBlob(url, 'app', bytes);
    readStarted = false;
    const response = await request(`${url}/v2/app/blobs/${digest}`);
    expect(response.statusCode).toBe(200);
    expect(readStarted).toBe(true);
    const received: Buffer[] = [];
    let total = 0;
    const timeout = setTimeout(release, 10_000);
    let releasedByClient = false;
    for await (const chunk of response.body) {
      received.push(chunk as Buffer);
      total += (chunk as Buffer).length;
      if (total >= MiB / 2 && !releasedByClient) {
        releasedByClient = true;
        release();
      }
    }
    clearTimeout(timeout);
    expect(releasedByClient).toBe(true);
    expect(Buffer.concat(received).equals(bytes)).toBe(true);
  });
});

describe('registry: uploads', () => {
  it('monolithic POST ?digest= stores the body (201) and refuses a wrong digest, storing nothing', async () => {
    const { url, store } = await serve();
    const bytes = bytesOf(300_000, 3);
    const digest = sha256(bytes);
    const created = await call(url, `/v2/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: bytes,
    });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`/v2/app/blobs/${digest}`);
    expect(created.headers['docker-content-digest']).toBe(digest);
    const before = (await store.driver.list('data/')).keys;
    const wrong = await call(url, `/v2/app/blobs/uploads/?digest=${sha256(Buffer.from('other'))}`, {
      method: 'POST',
      body: bytesOf(1000, 4),
    });
    expect(wrong.status).toBe(400);
    expect(wrong.code).toBe('DIGEST_INVALID');
    expect((await store.driver.list('data/')).keys).toEqual(before);
    const bad = await call(url, '/v2/app/blobs/uploads/?digest=sha256:zz', { method: 'POST', body: 'x' });
    expect(bad.code).toBe('DIGEST_INVALID');
    // chunked transfer (no Content-Length) works too
    const streamed = bytesOf(200_000, 5);
    const viaStream = await call(url, `/v2/app/blobs/uploads/?digest=${sha256(streamed)}`, {
      method: 'POST',
      body: chunked(streamed.subarray(0, 70_000), streamed.subarray(70_000)),
    });
    expect(viaStream.status).toBe(201);
    expect((await call(url, `/v2/app/blobs/${sha256(streamed)}`)).body.equals(streamed)).toBe(true);
  });

  it('POST starts a session; PATCH streamed; GET status; PUT ?digest= commits', async () => {
    const { url } = await serve();
    const bytes = bytesOf(500_000, 9);
    const started = await call(url, '/v2/app/blobs/uploads/', { method: 'POST' });
    expect(started.status).toBe(202);
    expect(started.headers.range).toBe('0-0');
    const location = started.headers.location as string;
    const id = started.headers['docker-upload-uuid'] as string;
    expect(location).toBe(`/v2/app/blobs/uploads/${id}`);
    const patched = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream' },
      body: chunked(bytes.subarray(0, 100_000), bytes.subarray(100_000, 300_000)),
    });
    expect(patched.status).toBe(202);
    expect(patched.headers.range).toBe('0-299999');
    expect(patched.headers.location).toBe(location);
    const status = await call(url, location);
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe('0-299999');
    const second = await call(url, location, { method: 'PATCH', body: bytes.subarray(300_000) });
    expect(second.headers.range).toBe('0-499999');
    const put = await call(url, `${location}?digest=${sha256(bytes)}`, { method: 'PUT' });
    expect(put.status).toBe(201);
    expect(put.headers.location).toBe(`/v2/app/blobs/${sha256(bytes)}`);
    expect(put.headers['docker-content-digest']).toBe(sha256(bytes));
    expect((await call(url, `/v2/app/blobs/${sha256(bytes)}`)).body.equals(bytes)).toBe(true);
    const gone = await call(url, location);
    expect(gone.status).toBe(404);
    expect(gone.code).toBe('BLOB_UPLOAD_UNKNOWN');
    // POST without the trailing slash starts a session too
    const bare = await call(url, '/v2/app/blobs/uploads', { method: 'POST' });
    expect(bare.status).toBe(202);
    expect(bare.headers.location).toMatch(/^\/v2\/app\/blobs\/uploads\/[0-9a-f]{32}$/);
  });

  it('chunked PATCH with Content-Range; out of order → 416 with the current Range; PUT with the last chunk', async () => {
    const { url } = await serve();
    const bytes = bytesOf(250_000, 11);
    const location = await startSession(url, 'app');
    const first = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-range': '0-99999', 'content-length': '100000' },
      body: bytes.subarray(0, 100_000),
    });
    expect(first.status).toBe(202);
    expect(first.headers.range).toBe('0-99999');
    for (const range of ['0-99999', '150000-159999', '99999-109998']) {
      const [start, end] = range.split('-').map(Number) as [number, number];
      const reply = await call(url, location, {
        method: 'PATCH',
        headers: { 'content-range': range },
        body: bytes.subarray(start, end + 1),
      });
      expect(reply.status, range).toBe(416);
      expect(reply.code, range).toBe('BLOB_UPLOAD_INVALID');
      expect(reply.headers.range, range).toBe('0-99999');
      expect(reply.headers.location, range).toBe(location);
      expect((reply.json as { errors: { detail: { offset: number } }[] }).errors[0]?.detail.offset).toBe(
        100_000,
      );
    }
    for (const range of ['bytes', '5-2', '-5', '1-x', '99999999999999999999-99999999999999999999']) {
      const reply = await call(url, location, {
        method: 'PATCH',
        headers: { 'content-range': range },
        body: 'abc',
      });
      expect(reply.status, range).toBe(416);
      expect(reply.headers.range, range).toBe('0-99999');
    }
    const mismatch = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-range': '100000-100009' },
      body: Buffer.alloc(5),
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.code).toBe('SIZE_INVALID');
    // the spec's form and the `bytes ` form clients also send
    const second = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-range': 'bytes 100000-199999/*' },
      body: bytes.subarray(100_000, 200_000),
    });
    expect(second.headers.range).toBe('0-199999');
    expect((await call(url, location)).headers.range).toBe('0-199999');
    const put = await call(url, `${location}?digest=${sha256(bytes)}`, {
      method: 'PUT',
      headers: { 'content-range': '200000-249999', 'content-type': 'application/octet-stream' },
      body: bytes.subarray(200_000),
    });
    expect(put.status).toBe(201);
    expect((await call(url, `/v2/app/blobs/${sha256(bytes)}`)).body.equals(bytes)).toBe(true);
  });

  it('POST then PUT with the whole body; PUT needs ?digest=; a wrong digest leaves the session resumable', async () => {
    const { url } = await serve();
    const bytes = bytesOf(70_000, 12);
    const location = await startSession(url, 'app');
    const noDigest = await call(url, location, { method: 'PUT', body: bytes });
    expect(noDigest.status).toBe(400);
    expect(noDigest.code).toBe('DIGEST_INVALID');
    const wrong = await call(url, `${location}?digest=${sha256(Buffer.from('nope'))}`, {
      method: 'PUT',
      body: bytes,
    });
    expect(wrong.status).toBe(400);
    expect(wrong.code).toBe('DIGEST_INVALID');
    const status = await call(url, location);
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe('0-69999'); // the bytes of the failed PUT stay: commit with the right digest
    const right = await call(url, `${location}?digest=${sha256(bytes)}`, { method: 'PUT' });
    expect(right.status).toBe(201);
    // an empty blob
    const empty = await startSession(url, 'app');
    expect((await call(url, `${empty}?digest=${sha256(Buffer.alloc(0))}`, { method: 'PUT' })).status).toBe(
      201,
    );
    expect((await call(url, `/v2/app/blobs/${sha256(Buffer.alloc(0))}`)).body.length).toBe(0);
  });

  it('DELETE cancels a session; unknown, malformed and foreign session ids are BLOB_UPLOAD_UNKNOWN', async () => {
    const { url, store } = await serve();
    const location = await startSession(url, 'app');
    await call(url, location, { method: 'PATCH', body: bytesOf(100_000) });
    expect((await call(url, location, { method: 'DELETE' })).status).toBe(204);
    for (const method of ['GET', 'PATCH', 'PUT', 'DELETE'] as const) {
      const reply = await call(url, `${location}?digest=${sha256(Buffer.from('x'))}`, {
        method,
        body: method === 'PATCH' ? 'x' : null,
      });
      expect(reply.status, method).toBe(404);
      expect(reply.code, method).toBe('BLOB_UPLOAD_UNKNOWN');
    }
    expect((await store.driver.list('uploads/')).keys).toEqual([]);
    for (const id of ['f'.repeat(32), 'not-an-id', '../../x', 'A'.repeat(32)]) {
      const reply = await call(url, `/v2/app/blobs/uploads/${encodeURIComponent(id)}`);
      expect(reply.status, id).toBe(404);
      expect(reply.code, id).toBe('BLOB_UPLOAD_UNKNOWN');
    }
    const other = await startSession(url, 'app');
    const foreign = await call(url, other.replace('/v2/app/', '/v2/elsewhere/'));
    expect(foreign.code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('streams a PATCH: the store receives bytes before the client has sent them all', async () => {
    const memory = await openStore('memory:');
    let received = 0;
    const counting = proxyDriver(memory.driver, {
      uploadPart: (handle, part, offset, body, size, options) =>
        memory.driver.uploadPart(handle, part, offset, countBytes(body), size, options),
    });
    function countBytes(body: Body): Body {
      if (body instanceof Uint8Array) {
        received += body.length;
        return body;
      }
      return (async function* () {
        for await (const chunk of body) {
          received += chunk.length;
          yield chunk;
        }
      })();
    }
    const { url } = await serve(await openStore(counting));
    const bytes = bytesOf(8 * MiB, 21);
    const location = await startSession(url, 'app');
    let sawStreaming = false;
    const body = (async function* () {
      for (let at = 0; at < 4 * MiB; at += 256 * 1024) yield bytes.subarray(at, at + 256 * 1024);
      // Hold the second half until the store has taken some of the first.
      const deadline = Date.now() + 10_000;
      while (received < MiB && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      sawStreaming = received >= MiB;
      for (let at = 4 * MiB; at < bytes.length; at += 256 * 1024) yield bytes.subarray(at, at + 256 * 1024);
    })();
    const reply = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-length': String(bytes.length) },
      body,
    });
    expect(reply.status).toBe(202);
    expect(sawStreaming).toBe(true);
    expect((await call(url, `${location}?digest=${sha256(bytes)}`, { method: 'PUT' })).status).toBe(201);
  });

  it('two PATCHes racing at one offset: one wins, the other gets 416 with the winner’s Range', async () => {
    const { url } = await serve();
    const a = bytesOf(400_000, 31);
    const b = bytesOf(400_000, 32);
    const location = await startSession(url, 'app');
    const send = (bytes: Buffer) =>
      call(url, location, {
        method: 'PATCH',
        headers: { 'content-range': `0-${bytes.length - 1}` },
        body: bytes,
      });
    const [ra, rb] = await Promise.all([send(a), send(b)]);
    expect([ra.status, rb.status].sort()).toEqual([202, 416]);
    const winner = ra.status === 202 ? a : b;
    const loser = ra.status === 202 ? rb : ra;
    expect(loser.headers.range).toBe('0-399999');
    expect((await call(url, `${location}?digest=${sha256(winner)}`, { method: 'PUT' })).status).toBe(201);
    expect((await call(url, `/v2/app/blobs/${sha256(winner)}`)).body.equals(winner)).toBe(true);
  });
});

/** Sends `sent` of `total` declared bytes of a PATCH, waits for `until`, then cuts the connection. */
async function cutPatch(
  url: string,
  location: string,
  bytes: Buffer,
  options: { declared: number | 'chunked'; until: () => Promise<boolean> },
): Promise<void> {
  const target = new URL(location, url);
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (options.declared !== 'chunked') headers['content-length'] = String(options.declared);
  const req = httpRequest(target, { method: 'PATCH', headers });
  req.on('error', () => {}); // the cut is the point
  for (let at = 0; at < bytes.length; at += 64 * 1024) {
    if (!req.write(bytes.subarray(at, at + 64 * 1024)))
      await new Promise((resolve) => req.once('drain', resolve));
  }
  const deadline = Date.now() + 15_000;
  while (!(await options.until()) && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
  req.destroy();
}

async function settledOffset(url: string, location: string): Promise<number> {
  // The server notices the cut asynchronously; wait until the session reports a stable offset.
  let last = -1;
  for (let i = 0; i < 100; i++) {
    const status = await call(url, location);
    const offset = Number((status.headers.range as string).split('-')[1]) + 1;
    const value = status.headers.range === '0-0' ? 0 : offset;
    if (value === last) return value;
    last = value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return last;
}

describe('registry: a client cut off mid-PATCH', () => {
  it('a chunk of known length is dropped whole; the session resumes from where it was', async () => {
    const { url, registry: reg } = await serve();
    const bytes = bytesOf(2 * MiB, 41);
    const location = await startSession(url, 'app');
    await call(url, location, { method: 'PATCH', body: bytes.subarray(0, 200_000) });
    await cutPatch(url, location, bytes.subarray(200_000, 900_000), {
      declared: bytes.length - 200_000,
      until: async () => true,
    });
    // wait for the server to log the cut request
    for (let i = 0; i < 100 && !reg.log.some((e) => e.method === 'PATCH' && !e.completed); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await settledOffset(url, location)).toBe(200_000);
    const rest = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-range': `200000-${bytes.length - 1}` },
      body: bytes.subarray(200_000),
    });
    expect(rest.status, rest.body.toString()).toBe(202);
    expect((await call(url, `${location}?digest=${sha256(bytes)}`, { method: 'PUT' })).status).toBe(201);
    expect((await call(url, `/v2/app/blobs/${sha256(bytes)}`)).body.equals(bytes)).toBe(true);
  });

  it('a streamed chunk keeps its finished parts as a resumable prefix', async () => {
    const options: StoreOptions = { partSize: 256 * 1024 };
    const { url } = await serve(await openStore('memory:', options));
    const bytes = bytesOf(2 * MiB, 42);
    const location = await startSession(url, 'app');
    const sent = MiB + 100_000;
    await cutPatch(url, location, bytes.subarray(0, sent), {
      declared: 'chunked',
      until: async () => {
        const status = await call(url, location);
        return status.headers.range === `0-${MiB - 1}`;
      },
    });
    const offset = await settledOffset(url, location);
    expect(offset).toBe(MiB); // four whole parts kept, the partial fifth dropped
    const rest = await call(url, location, {
      method: 'PATCH',
      headers: { 'content-range': `${offset}-${bytes.length - 1}` },
      body: bytes.subarray(offset),
    });
    expect(rest.status).toBe(202);
    expect((await call(url, `${location}?digest=${sha256(bytes)}`, { method: 'PUT' })).status).toBe(201);
    expect((await call(url, `/v2/app/blobs/${sha256(bytes)}`)).body.equals(bytes)).toBe(true);
  });
});

describe('registry: cross-repository mount', () => {
  it('mounts from a repository holding the blob (201) and falls back to a session otherwise (202)', async () => {
    const { url, store } = await serve();
    const bytes = bytesOf(50_000, 51);
    const digest = await pushBlob(url, 'source/app', bytes);
    const dataBefore = (await store.driver.list('data/')).keys;
    const mounted = await call(url, `/v2/target/app/blobs/uploads/?mount=${digest}&from=source/app`, {
      method: 'POST',
    });
    expect(mounted.status).toBe(201);
    expect(mounted.headers.location).toBe(`/v2/target/app/blobs/${digest}`);
    expect(mounted.headers['docker-content-digest']).toBe(digest);
    expect((await call(url, `/v2/target/app/blobs/${digest}`)).body.equals(bytes)).toBe(true);
    expect((await store.driver.list('data/')).keys).toEqual(dataBefore); // no data moved
    const other = sha256(Buffer.from('not anywhere'));
    for (const query of [
      `mount=${other}&from=source/app`,
      `mount=${digest}&from=empty/repo`,
      `mount=${digest}&from=NOT..VALID`,
      `mount=${digest}`,
    ]) {
      const reply = await call(url, `/v2/third/blobs/uploads/?${query}`, { method: 'POST' });
      expect(reply.status, query).toBe(202);
      expect(reply.headers.location, query).toMatch(/^\/v2\/third\/blobs\/uploads\/[0-9a-f]{32}$/);
    }
    expect((await call(url, `/v2/third/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
    const badDigest = await call(url, '/v2/third/blobs/uploads/?mount=sha256:1&from=source/app', {
      method: 'POST',
    });
    expect(badDigest.code).toBe('DIGEST_INVALID');
  });
});

describe('registry: manifests', () => {
  it('PUT by tag and by digest; GET and HEAD by tag and digest, byte-exact, with Content-Type and digest', async () => {
    const { url } = await serve();
    const image = await pushImage(url, 'app', 'v1');
    for (const reference of ['v1', image.digest]) {
      const get = await call(url, `/v2/app/manifests/${reference}`);
      expect(get.status).toBe(200);
      expect(get.body.equals(image.manifest)).toBe(true);
      expect(get.headers['content-type']).toBe(MediaTypes.ociManifest);
      expect(get.headers['docker-content-digest']).toBe(image.digest);
      const head = await call(url, `/v2/app/manifests/${reference}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe(String(image.manifest.length));
      expect(head.headers['content-type']).toBe(MediaTypes.ociManifest);
      expect(head.headers['docker-content-digest']).toBe(image.digest);
    }
    // by digest, with odd whitespace kept byte for byte and a Content-Type with parameters
    const bytes = Buffer.concat([
      imageManifest(image.config, [image.layer], { annotations: { a: 'b' } }),
      Buffer.from('\n\n'),
    ]);
    const digest = sha256(bytes);
    const put = await call(url, `/v2/app/manifests/${digest}`, {
      method: 'PUT',
      headers: { 'content-type': `${MediaTypes.ociManifest}; charset=utf-8` },
      body: bytes,
    });
    expect(put.status).toBe(201);
    expect(put.headers.location).toBe(`/v2/app/manifests/${digest}`);
    expect(put.headers['docker-content-digest']).toBe(digest);
    expect((await call(url, `/v2/app/manifests/${digest}`)).body.equals(bytes)).toBe(true);
    // no Content-Type: the body's mediaType
    const untyped = imageManifest(image.config, [], { annotations: { untyped: 'yes' } });
    expect((await call(url, '/v2/app/manifests/untyped', { method: 'PUT', body: untyped })).status).toBe(201);
    // Docker schema 2
    const docker = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.dockerManifest,
        config: {
          mediaType: 'application/vnd.docker.container.image.v1+json',
          digest: image.config.digest,
          size: image.config.bytes.length,
        },
        layers: [],
      }),
    );
    const dockerPut = await call(url, '/v2/app/manifests/docker', {
      method: 'PUT',
      headers: { 'content-type': MediaTypes.dockerManifest },
      body: docker,
    });
    expect(dockerPut.status).toBe(201);
    expect((await call(url, '/v2/app/manifests/docker')).headers['content-type']).toBe(
      MediaTypes.dockerManifest,
    );
  });

  it('refuses bad manifests: wrong digest, missing children, invalid JSON or type, bad tag, over 4 MiB', async () => {
    const { url, store } = await serve();
    const image = await pushImage(url, 'app', 'v1');
    const before = (await store.driver.list('')).keys.filter((k) => !k.startsWith('touches/'));
    const put = (
      reference: string,
      body: Buffer | string | AsyncIterable<Uint8Array>,
      type: string = MediaTypes.ociManifest,
    ) =>
      call(url, `/v2/app/manifests/${reference}`, { method: 'PUT', headers: { 'content-type': type }, body });
    const wrongDigest = await put(sha256(Buffer.from('other')), image.manifest);
    expect([wrongDigest.status, wrongDigest.code]).toEqual([400, 'DIGEST_INVALID']);
    const missing = await put('v2', imageManifest(image.config, [blob('never pushed')]));
    expect([missing.status, missing.code]).toEqual([400, 'MANIFEST_BLOB_UNKNOWN']);
    const missingChild = await put(
      'idx',
      indexManifest([{ digest: sha256(Buffer.from('nope')), size: 4 }]),
      MediaTypes.ociIndex,
    );
    expect([missingChild.status, missingChild.code]).toEqual([400, 'MANIFEST_BLOB_UNKNOWN']);
    const notJson = await put('v2', '{not json');
    expect([notJson.status, notJson.code]).toEqual([400, 'MANIFEST_INVALID']);
    const wrongType = await put('v2', image.manifest, 'application/json');
    expect([wrongType.status, wrongType.code]).toEqual([400, 'MANIFEST_INVALID']);
    const noType = await call(url, '/v2/app/manifests/v2', { method: 'PUT', body: '{"schemaVersion":2}' });
    expect([noType.status, noType.code]).toEqual([400, 'MANIFEST_INVALID']);
    const badTag = await put('-bad', image.manifest);
    expect([badTag.status, badTag.code]).toEqual([400, 'MANIFEST_INVALID']);
    const tooBig = Buffer.alloc(4 * MiB + 1, 0x20);
    const big = await put('big', tooBig);
    expect([big.status, big.code]).toEqual([413, 'MANIFEST_INVALID']);
    const bigChunked = await put('big', chunked(tooBig.subarray(0, 2 * MiB), tooBig.subarray(2 * MiB)));
    expect([bigChunked.status, bigChunked.code]).toEqual([413, 'MANIFEST_INVALID']);
    const sha512 = await put(`sha512:${'a'.repeat(128)}`, image.manifest);
    expect(sha512.code).toBe('DIGEST_INVALID');
    const after = (await store.driver.list('')).keys.filter((k) => !k.startsWith('touches/'));
    expect(after).toEqual(before);
    // exactly 4 MiB passes the size check (and then fails as JSON, not as size)
    const limit = await put('limit', Buffer.alloc(4 * MiB, 0x20));
    expect([limit.status, limit.code]).toEqual([400, 'MANIFEST_INVALID']);
  });

  it('answers unknown manifests with 404 MANIFEST_UNKNOWN and bad references with 400', async () => {
    const { url } = await serve();
    await pushImage(url, 'app', 'v1');
    for (const method of ['GET', 'HEAD'] as const) {
      expect((await call(url, '/v2/app/manifests/nope', { method })).status).toBe(404);
      expect((await call(url, `/v2/app/manifests/${sha256(Buffer.from('x'))}`, { method })).status).toBe(404);
      expect((await call(url, '/v2/missing/manifests/v1', { method })).status).toBe(404);
    }
    expect((await call(url, '/v2/app/manifests/nope')).code).toBe('MANIFEST_UNKNOWN');
    expect((await call(url, '/v2/app/manifests/sha256:123')).code).toBe('DIGEST_INVALID');
    expect((await call(url, '/v2/app/manifests/.bad')).status).toBe(400);
  });

  it('DELETE by tag removes the tag only; by digest removes the manifest and its tags', async () => {
    const { url } = await serve();
    const image = await pushImage(url, 'app', 'v1');
    await call(url, '/v2/app/manifests/v2', {
      method: 'PUT',
      headers: { 'content-type': MediaTypes.ociManifest },
      body: image.manifest,
    });
    expect((await call(url, '/v2/app/manifests/v1', { method: 'DELETE' })).status).toBe(202);
    expect((await call(url, '/v2/app/manifests/v1')).status).toBe(404);
    expect((await call(url, `/v2/app/manifests/${image.digest}`)).status).toBe(200);
    expect((await call(url, '/v2/app/manifests/v1', { method: 'DELETE' })).code).toBe('MANIFEST_UNKNOWN');
    expect((await call(url, `/v2/app/manifests/${image.digest}`, { method: 'DELETE' })).status).toBe(202);
    expect((await call(url, `/v2/app/manifests/${image.digest}`)).code).toBe('MANIFEST_UNKNOWN');
    expect((await call(url, '/v2/app/manifests/v2')).status).toBe(404);
    expect((await call(url, `/v2/app/manifests/${image.digest}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('index manifests, subjects (OCI-Subject) and the referrers API with an artifactType filter', async () => {
    const { url } = await serve();
    const image = await pushImage(url, 'app', 'v1');
    const index = indexManifest([{ digest: image.digest, size: image.manifest.length }]);
    const indexPut = await call(url, '/v2/app/manifests/multi', {
      method: 'PUT',
      headers: { 'content-type': MediaTypes.ociIndex },
      body: index,
    });
    expect(indexPut.status).toBe(201);
    expect(indexPut.headers['oci-subject']).toBeUndefined();
    const empty = await call(url, `/v2/app/referrers/${image.digest}`);
    expect(empty.status).toBe(200);
    expect(empty.headers['content-type']).toBe(MediaTypes.ociIndex);
    expect(empty.json).toEqual({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] });
    const subject = { mediaType: MediaTypes.ociManifest, digest: image.digest, size: image.manifest.length };
    const referrer = (artifactType: string, note: string) =>
      imageManifest(image.config, [], { artifactType, subject, annotations: { note } });
    const sbom = referrer('application/spdx+json', 'sbom');
    const sig = referrer('application/vnd.example.sig', 'sig');
    for (const body of [sbom, sig]) {
      const reply = await call(url, `/v2/app/manifests/${sha256(body)}`, {
        method: 'PUT',
        headers: { 'content-type': MediaTypes.ociManifest },
        body,
      });
      expect(reply.status).toBe(201);
      expect(reply.headers['oci-subject']).toBe(image.digest);
    }
    const all = await call(url, `/v2/app/referrers/${image.digest}`);
    const manifests = (
      all.json as { manifests: { digest: string; artifactType: string; annotations: object }[] }
    ).manifests;
    expect(manifests.map((m) => m.digest).sort()).toEqual([sha256(sbom), sha256(sig)].sort());
    expect(manifests.find((m) => m.digest === sha256(sbom))).toMatchObject({
      artifactType: 'application/spdx+json',
      annotations: { note: 'sbom' },
      mediaType: MediaTypes.ociManifest,
      size: sbom.length,
    });
    expect(all.headers['oci-filters-applied']).toBeUndefined();
    const filtered = await call(
      url,
      `/v2/app/referrers/${image.digest}?artifactType=${encodeURIComponent('application/spdx+json')}`,
    );
    expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
    expect((filtered.json as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([
      sha256(sbom),
    ]);
    expect((await call(url, `/v2/unknown/referrers/${image.digest}`)).status).toBe(200);
    const bad = await call(url, '/v2/app/referrers/sha256:nope');
    expect([bad.status, bad.code]).toEqual([400, 'DIGEST_INVALID']);
  });
});

describe('registry: tags and catalog', () => {
  it('lists tags in order, pages with n/last and a Link header, n=0 is empty; unknown repository → NAME_UNKNOWN', async () => {
    const { url } = await serve();
    const image = await pushImage(url, 'app', 'v1');
    for (const tag of ['b', 'a', 'c', 'latest', 'B']) {
      await call(url, `/v2/app/manifests/${tag}`, {
        method: 'PUT',
        headers: { 'content-type': MediaTypes.ociManifest },
        body: image.manifest,
      });
    }
    const all = await call(url, '/v2/app/tags/list');
    expect(all.json).toEqual({ name: 'app', tags: ['B', 'a', 'b', 'c', 'latest', 'v1'] });
    expect(all.headers.link).toBeUndefined();
    const first = await call(url, '/v2/app/tags/list?n=2');
    expect(first.json).toEqual({ name: 'app', tags: ['B', 'a'] });
    expect(first.headers.link).toBe('</v2/app/tags/list?n=2&last=a>; rel="next"');
    const second = await call(url, '/v2/app/tags/list?n=2&last=a');
    expect((second.json as { tags: string[] }).tags).toEqual(['b', 'c']);
    const third = await call(url, '/v2/app/tags/list?n=2&last=c');
    expect((third.json as { tags: string[] }).tags).toEqual(['latest', 'v1']);
    expect(third.headers.link).toBeUndefined(); // nothing after this page
    expect((await call(url, '/v2/app/tags/list?last=c')).json).toEqual({
      name: 'app',
      tags: ['latest', 'v1'],
    });
    const none = await call(url, '/v2/app/tags/list?n=0');
    expect(none.json).toEqual({ name: 'app', tags: [] });
    expect(none.headers.link).toBeUndefined();
    const unknown = await call(url, '/v2/nothing/here/tags/list');
    expect([unknown.status, unknown.code]).toEqual([404, 'NAME_UNKNOWN']);
    for (const n of ['-1', 'x', '1.5', '99999999999']) {
      const reply = await call(url, `/v2/app/tags/list?n=${n}`);
      expect(reply.status, n).toBe(400);
    }
    // a repository with blobs but no tags exists: an empty list
    await pushBlob(url, 'blobs/only', Buffer.from('b'));
    expect((await call(url, '/v2/blobs/only/tags/list')).json).toEqual({ name: 'blobs/only', tags: [] });
  });

  it('caps a page at pageLimit with a Link to the rest', async () => {
    const { url } = await serve(undefined, { pageLimit: 3 });
    const image = await pushImage(url, 'app', 't0');
    for (let i = 1; i < 7; i++) {
      await call(url, `/v2/app/manifests/t${i}`, {
        method: 'PUT',
        headers: { 'content-type': MediaTypes.ociManifest },
        body: image.manifest,
      });
    }
    const page = await call(url, '/v2/app/tags/list?n=100');
    expect((page.json as { tags: string[] }).tags).toEqual(['t0', 't1', 't2']);
    expect(page.headers.link).toBe('</v2/app/tags/list?n=3&last=t2>; rel="next"');
  });

  it('lists repositories in the catalog with n/last paging and Link', async () => {
    const { url } = await serve();
    for (const name of ['zeta', 'alpha/one', 'alpha', 'beta']) await pushBlob(url, name, Buffer.from(name));
    const all = await call(url, '/v2/_catalog');
    expect(all.json).toEqual({ repositories: ['alpha', 'alpha/one', 'beta', 'zeta'] });
    const first = await call(url, '/v2/_catalog?n=2');
    expect(first.json).toEqual({ repositories: ['alpha', 'alpha/one'] });
    expect(first.headers.link).toBe(`</v2/_catalog?n=2&last=${encodeURIComponent('alpha/one')}>; rel="next"`);
    const second = await call(url, `/v2/_catalog?n=2&last=${encodeURIComponent('alpha/one')}`);
    expect(second.json).toEqual({ repositories: ['beta', 'zeta'] });
    expect(second.headers.link).toBeUndefined();
    expect((await call(url, '/v2/_catalog?n=0')).json).toEqual({ repositories: [] });
    expect((await call(url, '/v2/_catalog?n=abc')).status).toBe(400);
  });
});
