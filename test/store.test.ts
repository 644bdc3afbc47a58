import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../drivers/memory/index.js';
import { collectBody } from '../src/bytes.js';
import type { Driver } from '../src/driver.js';
import { blobError } from '../src/errors.js';
import { readRecord } from '../src/records.js';
import { openStore } from '../src/store.js';
import { codeOf, MiB, sha256, streamOf } from './helpers.js';

/** Every key under data/ and blobs/: what a failed put must not leave behind. */
async function storedKeys(driver: Driver): Promise<string[]> {
  const data = await driver.list('data/');
  const blobs = await driver.list('blobs/');
  return [...data.keys, ...blobs.keys];
}

/** Counts bytes written through a driver, to prove dedup writes nothing. */
function countingDriver(inner: Driver): Driver & { written: number } {
  const counted = Object.create(inner) as Driver & { written: number };
  counted.written = 0;
  counted.write = async (key, body, options) => {
    const result = await inner.write(key, body, options);
    if (key.startsWith('data/')) counted.written += result.size;
    return result;
  };
  return counted;
}

describe('store put/get', () => {
  it.each([0, 1, 1000, MiB + 7])('round-trips %i bytes, verified, with stat', async (size) => {
    const store = await openStore('memory:');
    const bytes = randomBytes(size);
    const result = await store.put(bytes);
    expect(result).toEqual({ digest: sha256(bytes), size, deduplicated: false });
    expect(await store.stat(result.digest)).toEqual({ digest: sha256(bytes), size });
    const back = await collectBody(await store.get(result.digest, { verify: true }));
    expect(back.equals(bytes)).toBe(true);
  });

  it('streams a body of unknown length and checks expected digest and size', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(5 * MiB + 3);
    const result = await store.put(streamOf(bytes), { expected: sha256(bytes), size: bytes.length });
    expect(result.digest).toBe(sha256(bytes));
    expect(sha256(await collectBody(await store.get(result.digest)))).toBe(sha256(bytes));
  });

  it('serves ranges and rejects bad ones', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(96);
    const { digest } = await store.put(bytes);
    for (const offset of [0, 32, 64]) {
      expect((await collectBody(await store.get(digest, { offset }))).equals(bytes.subarray(offset))).toBe(
        true,
      );
    }
    expect(
      (await collectBody(await store.get(digest, { offset: 95, length: 10 }))).equals(bytes.subarray(95)),
    ).toBe(true);
    expect((await collectBody(await store.get(digest, { offset: 96 }))).length).toBe(0);
    expect(await codeOf(store.get(digest, { offset: 97 }))).toBe('RANGE_INVALID');
    expect(await codeOf(store.get(digest, { offset: -1 }))).toBe('RANGE_INVALID');
    expect(await codeOf(store.get(digest, { length: 1.5 }))).toBe('RANGE_INVALID');
  });

  it('gives BLOB_UNKNOWN for a missing blob and DIGEST_INVALID for a bad digest', async () => {
    const store = await openStore('memory:');
    const missing = sha256(Buffer.from('missing'));
    expect(await codeOf(store.get(missing))).toBe('BLOB_UNKNOWN');
    expect(await store.stat(missing)).toBeNull();
    expect(await store.delete(missing)).toBe(false);
    expect(await codeOf(store.get('sha256:abc'))).toBe('DIGEST_INVALID');
    expect(await codeOf(store.put(Buffer.from('x'), { expected: 'SHA256:00' }))).toBe('DIGEST_INVALID');
  });

  it('rejects a wrong expected digest or size and leaves nothing behind', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(3 * MiB);
    const other = sha256(Buffer.from('other'));
    expect(await codeOf(store.put(bytes, { expected: other }))).toBe('DIGEST_INVALID');
    expect(await codeOf(store.put(streamOf(bytes), { expected: other }))).toBe('DIGEST_INVALID');
    expect(await codeOf(store.put(bytes, { size: bytes.length - 1 }))).toBe('SIZE_INVALID');
    expect(await codeOf(store.put(streamOf(bytes), { size: bytes.length + 1 }))).toBe('SIZE_INVALID');
    expect(await codeOf(store.put(streamOf(bytes), { size: 10 }))).toBe('SIZE_INVALID');
    expect(await store.stat(sha256(bytes))).toBeNull();
    expect(await storedKeys(store.driver)).toEqual([]);
  });

  it('leaves nothing when the source stream fails or the signal fires mid-put', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(4 * MiB);
    const failing = await store.put(streamOf(bytes, 64 * 1024, 2 * MiB)).catch((error: Error) => error);
    expect(failing).toBeInstanceOf(Error);
    expect((failing as Error).message).toContain('source failed on purpose');
    const controller = new AbortController();
    const source = streamOf(bytes);
    source.once('data', () => controller.abort(new Error('client went away')));
    expect(await codeOf(store.put(source, { signal: controller.signal }))).toBe('ABORTED');
    expect(await codeOf(store.put(bytes, { signal: AbortSignal.abort() }))).toBe('ABORTED');
    expect(await storedKeys(store.driver)).toEqual([]);
  });

  it('dedups: a second put of the same bytes writes no data', async () => {
    const driver = countingDriver(createMemoryDriver());
    const store = await openStore(driver);
    const bytes = randomBytes(2 * MiB);
    expect((await store.put(bytes)).deduplicated).toBe(false);
    const written = driver.written;
    expect(written).toBe(bytes.length);
    expect((await store.put(bytes)).deduplicated).toBe(true);
    expect((await store.put(streamOf(bytes), { expected: sha256(bytes) })).deduplicated).toBe(true);
    expect(driver.written).toBe(written);
    expect((await store.driver.list('data/')).keys).toHaveLength(1);
    // A duplicate that claims the digest but brings other bytes is still refused.
    const wrong = Buffer.from(bytes);
    wrong[0] = (wrong[0] ?? 0) ^ 1;
    expect(await codeOf(store.put(streamOf(wrong), { expected: sha256(bytes) }))).toBe('DIGEST_INVALID');
  });

  it('fails a verified get of corrupted bytes with DIGEST_INVALID', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(2 * MiB);
    const { digest } = await store.put(bytes);
    const corrupt = Buffer.from(bytes);
    corrupt[MiB] = (corrupt[MiB] ?? 0) ^ 0xff;
    await store.driver.write(await store.layout.dataKey(digest), corrupt);
    expect(await codeOf(collectBody(await store.get(digest, { verify: true })))).toBe('DIGEST_INVALID');
    // Unverified reads hand out what is stored; that is what verify is for.
    expect((await collectBody(await store.get(digest))).equals(corrupt)).toBe(true);
  });

  it('deletes blobs: index first, then bytes', async () => {
    const store = await openStore('memory:');
    const { digest } = await store.put(randomBytes(100));
    expect(await store.delete(digest)).toBe(true);
    expect(await store.stat(digest)).toBeNull();
    expect(await storedKeys(store.driver)).toEqual([]);
  });

  it('reads a record again when its read is cut short by the network, and not when it is refused', async () => {
    const inner = createMemoryDriver();
    await inner.write('uploads/u/state', Buffer.from('{"offset":7}'));
    let failures = 0;
    const reset = blobError('UNAVAILABLE', 'GetObject (body): ECONNRESET'); // retryable
    const denied = blobError('UNAVAILABLE', 'access denied', { retryable: false });
    let next = reset;
    const driver: Driver = {
      ...inner,
      read: async (key, options) => {
        if (failures > 0) {
          failures--;
          throw next;
        }
        return inner.read(key, options);
      },
    };
    failures = 2;
    const record = await readRecord<{ offset: number }>(driver, 'uploads/u/state');
    expect(record?.value).toEqual({ offset: 7 });
    expect(failures).toBe(0);
    failures = 100;
    expect(await readRecord(driver, 'uploads/u/state').catch((error: unknown) => error)).toBe(reset);
    failures = 1;
    next = denied;
    expect(await readRecord(driver, 'uploads/u/state').catch((error: unknown) => error)).toBe(denied);
  });

  it('refuses a backend written by another store format', async () => {
    const driver = createMemoryDriver();
    await driver.write('blobcore-format', Buffer.from('{"store":99}'));
    expect(await codeOf(openStore(driver))).toBe('UNSUPPORTED');
  });
});
