/**
 * Blob GET redirects: on a driver that signs URLs (S3, here the s3rver emulator that
 * `npm test` runs, whose patched signature check verifies presigned requests strictly),
 * the registry answers 307 to a signed URL and the backend serves the bytes; without the
 * option, or for HEAD, the registry answers itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Driver } from '../drivers/s3/index.js';
import { openStore } from '../src/store.js';
import { call, startRegistry, type TestRegistry } from './fixtures/registry-harness.js';
import { openLane, type S3Lane } from './fixtures/s3-servers.js';
import { random, sha256 } from './helpers.js';

let lane: S3Lane;
let bucket: string;
const registries: TestRegistry[] = [];

beforeAll(async () => {
  lane = await openLane();
  bucket = await lane.createBucket();
}, 60_000);

afterAll(async () => {
  for (const registry of registries) await registry.close();
  if (bucket) await lane.removeBucket(bucket);
  await lane?.stop();
});

function bytesOf(size: number, seed: number): Buffer {
  const next = random(seed);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(next() * 256);
  return out;
}

describe('registry redirects to signed URLs', () => {
  it('answers a blob GET with 307 to a signed URL that serves the bytes; HEAD and plain mode answer directly', async () => {
    const store = await openStore(createS3Driver(lane.driverOptions(bucket)));
    expect(store.driver.capabilities.signedUrl).toBe(true);
    const redirecting = await startRegistry(store, { redirect: { expiresIn: 120 } });
    const plain = await startRegistry(store);
    registries.push(redirecting, plain);
    const bytes = bytesOf(200_000, 3);
    const digest = sha256(bytes);
    const put = await call(redirecting.url, `/v2/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: bytes,
    });
    expect(put.status).toBe(201);

    const redirect = await call(redirecting.url, `/v2/app/blobs/${digest}`);
    expect(redirect.status).toBe(307);
    expect(redirect.headers['docker-content-digest']).toBe(digest);
    const location = redirect.headers.location as string;
    expect(location.startsWith(lane.endpoint)).toBe(true);
    expect(location).toMatch(/X-Amz-Signature=/);
    expect(location).toMatch(/X-Amz-Expires=120/);
    const fetched = await fetch(location);
    expect(fetched.status).toBe(200);
    expect(Buffer.from(await fetched.arrayBuffer()).equals(bytes)).toBe(true);
    // a ranged GET is redirected as well; the backend honours the Range
    const ranged = await fetch(location, { headers: { range: 'bytes=10-19' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(10, 20))).toBe(true);
    // a tampered signature is refused by the backend: the URL is really signed
    // (flip the first hex digit to another one: a fixed replacement is a no-op 1 time in 16)
    const tampered = await fetch(
      location.replace(
        /X-Amz-Signature=([0-9a-f])/,
        (_, digit: string) => `X-Amz-Signature=${digit === '0' ? '1' : '0'}`,
      ),
    );
    expect(tampered.status).toBe(403);
    await tampered.arrayBuffer();

    const head = await call(redirecting.url, `/v2/app/blobs/${digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('200000');
    // repository visibility is checked before any URL is handed out
    expect((await call(redirecting.url, `/v2/other/blobs/${digest}`)).status).toBe(404);
    const direct = await call(plain.url, `/v2/app/blobs/${digest}`);
    expect(direct.status).toBe(200);
    expect(direct.body.equals(bytes)).toBe(true);
  }, 120_000);
});
