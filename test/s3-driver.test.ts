/**
 * S3 driver tests beyond the conformance suites: URL parsing, TLS with a private CA,
 * secrets kept out of errors and inspect output, error mapping, bounded memory for
 * streamed writes of unknown length, signed URLs fetched with undici, prefixes and
 * multipart abort on servers with and without AbortMultipartUpload. They run on this
 * process's lane (s3rver under `npm test`, radosgw under `npm run test:system`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  abortStaleMultipartUploads,
  createS3Driver,
  deleteKeys,
  parseS3Url,
  S3_LIMITS,
  s3DriverFromUrl,
  s3DriverStats,
  s3Error,
} from '../drivers/s3/index.js';
import type { Driver } from '../src/driver.js';
import { BlobcoreError } from '../src/errors.js';
import { openLane } from './fixtures/s3-servers.js';
import { codeOf, MiB } from './helpers.js';

// Servers share two cores with the rest of the suite: generous limits, no timed assertions.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const lane = await openLane();
const buckets: string[] = [];
const drivers: Driver[] = [];
afterAll(async () => {
  for (const driver of drivers) await driver.close?.();
  for (const bucket of buckets) await lane.removeBucket(bucket).catch(() => undefined);
  await lane.stop();
});

async function freshDriver(
  extra: Parameters<typeof lane.driverOptions>[1] = {},
): Promise<{ driver: Driver; bucket: string }> {
  const bucket = await lane.createBucket();
  buckets.push(bucket);
  const driver = createS3Driver(lane.driverOptions(bucket, extra));
  drivers.push(driver);
  return { driver, bucket };
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** A deterministic byte stream of `size` bytes in `chunk`-byte pieces, counting what was pulled. */
function source(size: number, chunk: number, seed = 7) {
  const hash = createHash('sha256');
  const state = { pulled: 0 };
  async function* generate(): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < size; at += chunk) {
      const n = Math.min(chunk, size - at);
      const bytes = Buffer.alloc(n, (at / chunk + seed) & 0xff);
      bytes.writeUInt32LE(at >>> 0, 0);
      hash.update(bytes);
      state.pulled += n;
      yield bytes;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return { body: generate(), state, digest: () => hash.digest('hex') };
}

const tls = fileURLToPath(new URL('./fixtures/s3-tls/', import.meta.url));

describe('s3 store URLs', () => {
  it('parses bucket, prefix and every option', () => {
    const options = parseS3Url(
      new URL(
        's3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=true' +
          '&caBundle=/etc/ssl/private-ca.pem&conditionalWrites=false&multipartAbort=false&partSize=16MiB' +
          '&concurrency=8&checksum=sha256&httpHandler=undici',
      ),
    );
    expect(options).toEqual({
      bucket: 'my-bucket',
      prefix: 'some/prefix/',
      endpoint: 'http://127.0.0.1:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
      caBundle: '/etc/ssl/private-ca.pem',
      conditionalWrites: false,
      multipartAbort: false,
      partSize: 16 * MiB,
      concurrency: 8,
      checksum: 'sha256',
      httpHandler: 'undici',
    });
    expect(parseS3Url(new URL('s3://bucket'))).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Url(new URL('s3://bucket/a/b/')).prefix).toBe('a/b/');
  });

  it('refuses credentials in the URL without echoing them', () => {
    for (const url of [
      's3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/p',
      's3://bucket/p?endpoint=https://u:wJalrXUtnFEMI@host',
    ]) {
      let error: unknown;
      try {
        parseS3Url(new URL(url));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(BlobcoreError);
      expect((error as BlobcoreError).code).toBe('UNSUPPORTED');
      expect(inspect(error, { depth: 5 })).not.toContain('wJalrXUtnFEMI');
    }
  });

  it('refuses unknown options (there is no switch that turns TLS verification off), bad buckets, prefixes and sizes', () => {
    const bad = [
      's3://bucket/p?insecure=true',
      's3://bucket/p?rejectUnauthorized=false',
      's3://bucket/p?tlsVerify=false',
      's3://bucket/p?forcePathStyle=maybe',
      's3://bucket/p?partSize=lots',
      's3://bucket/p?concurrency=0',
      's3://bucket/p?endpoint=ftp://host',
      's3://bucket/p?checksum=md5',
      's3://Bad_Bucket/p',
      's3://bucket:9000/p',
      's3://bucket/a//b',
    ];
    for (const url of bad) expect(() => parseS3Url(new URL(url)), url).toThrow(BlobcoreError);
    expect(() => createS3Driver({ bucket: 'b', partSize: MiB })).toThrow(/partSize/);
    expect(() => s3DriverFromUrl(new URL('s3://bucket/p?caBundle=/nonexistent/ca.pem'))).toThrow(/caBundle/);
  });

  it('opens a driver from a URL with S3 limits and the declared capabilities', () => {
    const driver = s3DriverFromUrl(new URL('s3://bucket/p?region=us-east-1&conditionalWrites=false'));
    expect(driver.limits).toEqual({ minPartSize: 5 * MiB, maxPartSize: 5 * 1024 * MiB, maxParts: 10_000 });
    expect(driver.limits).toEqual(S3_LIMITS);
    expect(driver.capabilities).toEqual({
      conditionalWrite: false,
      signedUrl: true,
      copy: true,
      link: false,
      usage: false,
    });
    expect(s3DriverFromUrl(new URL('s3://bucket')).capabilities.conditionalWrite).toBe(true);
  });
});

describe('s3 TLS with a private CA bundle', () => {
  const server = createServer(
    { key: readFileSync(`${tls}server.key`), cert: readFileSync(`${tls}server.pem`) },
    (req, res) => {
      // Enough of S3 for HeadObject: a 3-byte object everywhere.
      res.writeHead(200, { 'content-length': '3', etag: '"abc"', 'last-modified': new Date().toUTCString() });
      res.end(req.method === 'HEAD' ? undefined : 'abc');
    },
  );
  const listening = new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const credentials = { accessKeyId: 'AKIATLSTEST', secretAccessKey: 'tls-test-secret' };

  it('trusts the bundle given by path (URL option caBundle) or in memory, on top of the public roots', async () => {
    const port = await listening;
    const url = new URL(
      `s3://bucket/p?endpoint=https://127.0.0.1:${port}&forcePathStyle=true&caBundle=${tls}ca.pem`,
    );
    const fromUrl = createS3Driver({ ...parseS3Url(url), credentials, maxAttempts: 1 });
    expect(await fromUrl.stat('k')).toMatchObject({ size: 3, etag: '"abc"' });
    await fromUrl.close?.();
    const inMemory = createS3Driver({
      bucket: 'bucket',
      endpoint: `https://127.0.0.1:${port}`,
      forcePathStyle: true,
      ca: readFileSync(`${tls}ca.pem`),
      credentials,
      maxAttempts: 1,
    });
    expect((await readAll(await inMemory.read('k'))).toString()).toBe('abc');
    await inMemory.close?.();
    const viaUndici = createS3Driver({
      ...parseS3Url(url),
      httpHandler: 'undici',
      credentials,
      maxAttempts: 1,
    });
    expect(await viaUndici.stat('k')).toMatchObject({ size: 3, etag: '"abc"' });
    await viaUndici.close?.();
  });

  it('refuses the server without the bundle: UNAVAILABLE, certificate not trusted', async () => {
    const port = await listening;
    const driver = createS3Driver({
      bucket: 'bucket',
      endpoint: `https://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials,
      maxAttempts: 1,
    });
    expect(await codeOf(driver.stat('k'))).toBe('UNAVAILABLE');
    await driver.close?.();
    const viaUndici = createS3Driver({
      bucket: 'bucket',
      endpoint: `https://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials,
      maxAttempts: 1,
      httpHandler: 'undici',
    });
    expect(await codeOf(viaUndici.stat('k'))).toBe('UNAVAILABLE');
    await viaUndici.close?.();
  });
});

describe('s3 errors', () => {
  const ctx = { operation: 'GetObject', bucket: 'bkt', key: 'k' };
  const sdk = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error('server said no'), {
      name,
      ...(status === undefined ? {} : { $metadata: { httpStatusCode: status, requestId: 'req-1' } }),
      ...extra,
    });

  it('maps by error name and HTTP status, not by message', () => {
    const cases: [Error, string, boolean, Partial<typeof ctx & { multipart: boolean }>?][] = [
      [sdk('NoSuchKey', 404), 'NOT_FOUND', false],
      [sdk('NotFound', 404), 'NOT_FOUND', false],
      [sdk('UnknownError', 404), 'NOT_FOUND', false],
      [sdk('NoSuchUpload', 404), 'BLOB_UPLOAD_UNKNOWN', false],
      [sdk('NoSuchKey', 404), 'BLOB_UPLOAD_UNKNOWN', false, { multipart: true }],
      [sdk('PreconditionFailed', 412), 'PRECONDITION_FAILED', false],
      [sdk('ConditionalRequestConflict', 409), 'PRECONDITION_FAILED', false],
      [sdk('InvalidRange', 416), 'RANGE_INVALID', false],
      [sdk('EntityTooSmall', 400), 'BLOB_UPLOAD_INVALID', false],
      [sdk('InvalidPart', 400), 'BLOB_UPLOAD_INVALID', false],
      [sdk('KeyTooLongError', 400), 'KEY_INVALID', false],
      [sdk('EntityTooLarge', 400), 'SIZE_INVALID', false],
      [sdk('QuotaExceeded', 403), 'INSUFFICIENT_STORAGE', false],
      [sdk('AccessDenied', 403), 'UNAVAILABLE', false],
      [sdk('SignatureDoesNotMatch', 403), 'UNAVAILABLE', false],
      [sdk('NoSuchBucket', 404), 'UNAVAILABLE', false],
      [sdk('SlowDown', 503), 'UNAVAILABLE', true],
      [sdk('InternalError', 500), 'UNAVAILABLE', true],
      [sdk('ServiceUnavailable', 503), 'UNAVAILABLE', true],
      [sdk('TimeoutError'), 'UNAVAILABLE', true],
      [sdk('Error', undefined, { code: 'ECONNRESET' }), 'UNAVAILABLE', true],
      [sdk('Error', undefined, { code: 'ECONNREFUSED' }), 'UNAVAILABLE', true],
      [sdk('AbortError'), 'ABORTED', false],
    ];
    for (const [error, code, retryable, more] of cases) {
      const mapped = s3Error(error, { ...ctx, ...more });
      expect(
        mapped.code,
        `${error.name} ${(error as { $metadata?: unknown }).$metadata ? 'with status' : ''}`,
      ).toBe(code);
      expect(mapped.retryable, `${error.name} retryable`).toBe(retryable);
      if (code !== 'ABORTED') expect(mapped.message).toContain('s3://bkt/k');
      expect(mapped.message).not.toContain('server said no');
    }
    expect(s3Error(sdk('EntityTooSmall', 400), ctx).message).toMatch(/BUG/);
    expect(s3Error(sdk('AccessDenied', 403), ctx).message).toMatch(/access denied/);
    const controller = new AbortController();
    controller.abort();
    expect(s3Error(sdk('Whatever', 500), { ...ctx, signal: controller.signal }).code).toBe('ABORTED');
  });

  it('a missing bucket is UNAVAILABLE (not a missing key) on stat, read, delete and list', async () => {
    const driver = createS3Driver(lane.driverOptions('bc-no-such-bucket-0000', { maxAttempts: 1 }));
    drivers.push(driver);
    expect(await codeOf(driver.stat('k'))).toBe('UNAVAILABLE');
    expect(await codeOf(driver.read('k'))).toBe('UNAVAILABLE');
    expect(await codeOf(driver.delete('k'))).toBe('UNAVAILABLE');
    expect(await codeOf(driver.list(''))).toBe('UNAVAILABLE');
  });

  it('wrong credentials: UNAVAILABLE, not retryable, names the bucket, and no secret or signature anywhere', async () => {
    const secret = 'wr0ng+Secret/Key0000000000000000000000000';
    const bucket = await lane.createBucket();
    buckets.push(bucket);
    const driver = createS3Driver({
      ...lane.driverOptions(bucket, { maxAttempts: 1 }),
      credentials: { accessKeyId: 'AKIAWRONGKEY00000000', secretAccessKey: secret },
    });
    drivers.push(driver);
    let error: unknown;
    try {
      await driver.write('k', Buffer.from('x'));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BlobcoreError);
    const e = error as BlobcoreError;
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.retryable).toBe(false);
    expect(e.message).toContain(bucket);
    const shown = [
      inspect(e, { depth: 10, showHidden: true }),
      JSON.stringify(e),
      String(e.stack),
      inspect(driver, { depth: 10 }),
    ];
    for (const text of shown) {
      expect(text).not.toContain(secret);
      expect(text).not.toMatch(/Signature=|X-Amz-Signature|Credential=/);
    }
    expect(inspect(driver)).not.toContain('AKIAWRONGKEY');
  });

  it('inspect and JSON of a driver with static credentials show no secret', async () => {
    const inner = createS3Driver({
      bucket: 'b',
      credentials: { accessKeyId: 'AKIAINSPECT', secretAccessKey: 'inspect-me-not' },
    });
    for (const text of [inspect(inner, { depth: 20, showHidden: true }), JSON.stringify(inner)]) {
      expect(text).not.toContain('inspect-me-not');
    }
    await inner.close?.();
  });

  it('a refused connection is UNAVAILABLE and retryable', async () => {
    const driver = createS3Driver({
      bucket: 'b',
      endpoint: 'http://127.0.0.1:1',
      forcePathStyle: true,
      credentials: lane.credentials,
      maxAttempts: 1,
    });
    const error = await driver.stat('k').catch((e: unknown) => e);
    expect((error as BlobcoreError).code).toBe('UNAVAILABLE');
    expect((error as BlobcoreError).retryable).toBe(true);
    await driver.close?.();
  });
});

describe(`s3 driver on ${lane.name}`, () => {
  it('streamed writes of unknown length hold at most partSize × concurrency bytes', async () => {
    const partSize = 5 * MiB;
    const concurrency = 2;
    const { driver } = await freshDriver({ partSize, concurrency });
    const size = 64 * MiB + 12_345;
    const { body, digest } = source(size, 256 * 1024 + 3);
    const result = await driver.write('big/unknown', body);
    expect(result.size).toBe(size);
    const stats = s3DriverStats(driver);
    expect(stats?.bufferedBytes).toBe(0);
    expect(stats?.peakBufferedBytes).toBeGreaterThan(0);
    expect(stats?.peakBufferedBytes).toBeLessThanOrEqual(partSize * concurrency);
    const back = createHash('sha256');
    for await (const chunk of await driver.read('big/unknown')) back.update(chunk as Buffer);
    expect(back.digest('hex')).toBe(digest());
  });

  it('a stream ending exactly on a part boundary, and one exactly one part long', async () => {
    const partSize = 5 * MiB;
    const { driver } = await freshDriver({ partSize });
    for (const size of [partSize, 3 * partSize]) {
      const { body, digest } = source(size, 1024 * 1024);
      expect((await driver.write(`edge/${size}`, body)).size).toBe(size);
      const back = createHash('sha256').update(await readAll(await driver.read(`edge/${size}`)));
      expect(back.digest('hex')).toBe(digest());
    }
  });

  it('a streamed body longer than its declared size publishes nothing (also conditional, over one part)', async () => {
    const partSize = 5 * MiB;
    const { driver } = await freshDriver({ partSize });
    for (const options of [{}, { ifNoneMatch: '*' as const }]) {
      const declared = 2 * partSize + 10;
      const { body } = source(declared + 1, MiB);
      expect(await codeOf(driver.write('long/body', body, { size: declared, ...options }))).toBe(
        'SIZE_INVALID',
      );
      expect(await driver.stat('long/body')).toBeNull();
      const { body: short } = source(declared - 1, MiB);
      expect(await codeOf(driver.write('long/body', short, { size: declared, ...options }))).toBe(
        'SIZE_INVALID',
      );
      expect(await driver.stat('long/body')).toBeNull();
    }
    expect((await driver.list('')).keys).toEqual([]);
  });

  it('signed URLs: undici GET returns the bytes; an expired one is refused', async () => {
    const { driver } = await freshDriver();
    const bytes = Buffer.from('signed bytes for undici '.repeat(1000));
    await driver.write('signed/obj', bytes);
    const url = await (driver.signedUrl as NonNullable<Driver['signedUrl']>)('signed/obj', {
      expiresIn: 120,
    });
    const response = await request(url);
    expect(response.statusCode).toBe(200);
    expect(Buffer.from(await response.body.arrayBuffer()).equals(bytes)).toBe(true);
    expect(
      await codeOf(
        (driver.signedUrl as NonNullable<Driver['signedUrl']>)('signed/obj', { expiresIn: 8 * 86400 }),
      ),
    ).toBe('RANGE_INVALID');
    const short = await (driver.signedUrl as NonNullable<Driver['signedUrl']>)('signed/obj', {
      expiresIn: 1,
    });
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const expired = await request(short);
    await expired.body.arrayBuffer();
    expect(expired.statusCode).toBe(403);
  });

  it('keys live under the URL prefix; list strips it; a key too long with the prefix is KEY_INVALID', async () => {
    const bucket = await lane.createBucket();
    buckets.push(bucket);
    const driver = createS3Driver(lane.driverOptions(bucket, { prefix: 'tenant/a' }));
    drivers.push(driver);
    await driver.write('x/y', Buffer.from('1'));
    const raw = await lane.admin.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect((raw.Contents ?? []).map((c) => c.Key)).toEqual(['tenant/a/x/y']);
    expect((await driver.list('')).keys).toEqual(['x/y']);
    expect((await driver.list('x/')).keys).toEqual(['x/y']);
    const z = 'z'.repeat(255);
    const long = `k/${z}/${z}/${z}/${'z'.repeat(250)}`; // 1,020 bytes: valid alone, 1,029 with the prefix
    expect(long.length).toBe(1020);
    expect(await codeOf(driver.write(long, Buffer.from('x')))).toBe('KEY_INVALID');
  });

  it(`abortMultipart on ${lane.name}: ${lane.multipartAbort ? 'native AbortMultipartUpload' : 'a hidden tombstone'}; completion then fails BLOB_UPLOAD_UNKNOWN`, async () => {
    const { driver, bucket } = await freshDriver();
    const handle = await driver.createMultipart('mp/x');
    const part = await driver.uploadPart(handle, 1, 0, Buffer.from('tail'), 4);
    await driver.abortMultipart(handle);
    await driver.abortMultipart(handle); // twice is fine
    expect(await codeOf(driver.completeMultipart(handle, [part]))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(await driver.stat('mp/x')).toBeNull();
    expect((await driver.list('')).keys).toEqual([]);
    const raw = await lane.admin.send(new ListObjectsV2Command({ Bucket: bucket }));
    const hidden = (raw.Contents ?? []).map((c) => c.Key as string);
    if (lane.multipartAbort) expect(hidden).toEqual([]);
    else expect(hidden).toEqual([expect.stringMatching(/^:blobcore\/aborted\/[0-9a-f]{40}$/)]);
  });

  it(`orphaned multipart uploads are aborted by age where ListMultipartUploads exists (${lane.name}: ${lane.multipartAbort ? 'yes' : 'no'})`, async () => {
    const { driver } = await freshDriver();
    const old = await driver.createMultipart('orphan/a');
    const part = await driver.uploadPart(old, 1, 0, Buffer.from('x'), 1);
    const before = await abortStaleMultipartUploads(driver, { olderThan: new Date(Date.now() - 3_600_000) });
    expect(before.aborted).toBe(0);
    const result = await abortStaleMultipartUploads(driver, { olderThan: new Date(Date.now() + 60_000) });
    if (lane.multipartAbort) {
      expect(result).toEqual({ aborted: 1, supported: true });
      expect(await codeOf(driver.completeMultipart(old, [part]))).toBe('BLOB_UPLOAD_UNKNOWN');
    } else {
      expect(result).toEqual({ aborted: 0, supported: false });
    }
  });

  it('ranged reads use explicit ranges and clip to what was asked (offset 0 length 1, last byte, over the end)', async () => {
    const { driver, bucket } = await freshDriver();
    const bytes = Buffer.from(Array.from({ length: 200 }, (_, i) => i));
    await driver.write('r', bytes);
    expect([...(await readAll(await driver.read('r', { offset: 0, length: 1 })))]).toEqual([0]);
    expect([...(await readAll(await driver.read('r', { offset: 199 })))]).toEqual([199]);
    expect(
      (await readAll(await driver.read('r', { offset: 150, length: 1000 }))).equals(bytes.subarray(150)),
    ).toBe(true);
    // the raw SDK agrees on what is stored
    const raw = await lane.admin.send(new GetObjectCommand({ Bucket: bucket, Key: 'r' }));
    expect(
      Buffer.from(
        await (raw.Body as Readable & { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      ).equals(bytes),
    ).toBe(true);
  });

  it('the undici HTTP handler (httpHandler: undici) round-trips, ranges, streams, maps errors and aborts', async () => {
    const { driver } = await freshDriver({ httpHandler: 'undici', partSize: 5 * MiB });
    const { body, digest } = source(12 * MiB + 5, 512 * 1024);
    expect((await driver.write('u/big', body)).size).toBe(12 * MiB + 5);
    expect(
      createHash('sha256')
        .update(await readAll(await driver.read('u/big')))
        .digest('hex'),
    ).toBe(digest());
    const bytes = Buffer.from('0123456789');
    await driver.write('u/small', bytes);
    expect((await readAll(await driver.read('u/small', { offset: 3, length: 4 }))).toString()).toBe('3456');
    expect((await readAll(await driver.read('u/small', { offset: 10 }))).length).toBe(0);
    expect(await codeOf(driver.read('u/small', { offset: 11 }))).toBe('RANGE_INVALID');
    expect(await codeOf(driver.read('u/missing'))).toBe('NOT_FOUND');
    expect(await driver.stat('u/missing')).toBeNull();
    expect((await driver.list('u/')).keys).toEqual(['u/big', 'u/small']);
    const controller = new AbortController();
    const pending = driver.write('u/aborted', source(64 * MiB, MiB).body, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    expect(await codeOf(pending)).toBe('ABORTED');
    expect(await driver.stat('u/aborted')).toBeNull();
  });

  it('deleteKeys removes 1,234 keys in batches of at most 1,000, missing keys included', async () => {
    const { driver } = await freshDriver();
    const keys = Array.from({ length: 1234 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
    const written = keys.filter((_, i) => i % 3 !== 0);
    for (let at = 0; at < written.length; at += 64) {
      await Promise.all(written.slice(at, at + 64).map((key) => driver.write(key, Buffer.from(key))));
    }
    await driver.write('keep/me', Buffer.from('kept'));
    expect(await deleteKeys(driver, keys)).toBe(1234);
    expect((await driver.list('')).keys).toEqual(['keep/me']);
    expect(await codeOf(deleteKeys(driver, ['ok', 'a/../b']))).toBe('KEY_INVALID');
  }, 120_000);

  it('checksum: sha256 sends x-amz-checksum-sha256 with single PUTs; the server accepts or ignores it', async () => {
    const { driver } = await freshDriver({ checksum: 'sha256' });
    const bytes = Buffer.from('checksummed '.repeat(100));
    expect((await driver.write('sum/one', bytes)).size).toBe(bytes.length);
    expect((await readAll(await driver.read('sum/one'))).equals(bytes)).toBe(true);
  });

  it('copy keeps the source and makes an independent object', async () => {
    const { driver } = await freshDriver();
    await driver.write('c/src', Buffer.from('copy me'));
    const result = await (driver.copy as NonNullable<Driver['copy']>)('c/src', 'c/dst');
    expect(result.size).toBe(7);
    expect((await readAll(await driver.read('c/dst'))).toString()).toBe('copy me');
    expect(await codeOf((driver.copy as NonNullable<Driver['copy']>)('c/missing', 'c/x'))).toBe('NOT_FOUND');
  });

  it('conditional writes are declared as the server behaves', async () => {
    const { driver } = await freshDriver();
    expect(driver.capabilities.conditionalWrite).toBe(lane.conditionalWrites);
    const first = await driver.write('cond', Buffer.from('1'), { ifNoneMatch: '*' });
    expect(await codeOf(driver.write('cond', Buffer.from('2'), { ifNoneMatch: '*' }))).toBe(
      'PRECONDITION_FAILED',
    );
    const second = await driver.write('cond', Buffer.from('3'), { ifMatch: first.etag });
    expect(await codeOf(driver.write('cond', Buffer.from('4'), { ifMatch: first.etag }))).toBe(
      'PRECONDITION_FAILED',
    );
    expect((await driver.stat('cond'))?.etag).toBe(second.etag);
  });
});
