import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../drivers/memory/index.js';
import { BlobcoreError, blobError, ErrorCodes, isBlobcoreError } from '../src/errors.js';
import { validateKey, validatePrefix } from '../src/keys.js';

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isBlobcoreError(error) ? error.code : `not a BlobcoreError: ${String(error)}`;
  }
}

describe('key guard', () => {
  it.each(['a', 'a/b/c', '.abc', 'A-b_c.d~e=f+g@h', 'a--b', `${'x/'.repeat(300)}y`, 'x'.repeat(255)])(
    'accepts %s',
    (key) => {
      expect(validateKey(key)).toBe(key);
    },
  );

  const bad = [
    '',
    '/',
    '/a',
    'a/',
    '//x',
    'a//b',
    '.',
    '..',
    'a/../b',
    './a',
    'a/.',
    'a\0b',
    'a\\b',
    'a b',
    'a:b',
    'ä',
    'x'.repeat(256),
    `${'ab/'.repeat(342)}c`,
  ];
  it.each(bad)('rejects %j with KEY_INVALID on every driver method', async (key) => {
    expect(() => validateKey(key)).toThrow(BlobcoreError);
    const driver = createMemoryDriver();
    const handle = { key, uploadId: 'x' };
    const calls: Promise<unknown>[] = [
      driver.stat(key),
      driver.read(key),
      driver.write(key, new Uint8Array(1)),
      driver.delete(key),
      driver.createMultipart(key),
      driver.uploadPart(handle, 1, 0, new Uint8Array(1), 1),
      driver.completeMultipart(handle, []),
      driver.abortMultipart(handle),
    ];
    for (const call of calls) expect(await codeOf(call)).toBe('KEY_INVALID');
  });

  it('accepts prefixes that end mid-segment or with a slash, and rejects broken ones', () => {
    for (const prefix of ['', 'a', 'a/', 'a/b', 'd/f', 'a/.']) expect(validatePrefix(prefix)).toBe(prefix);
    for (const prefix of ['/', '/a', 'a//', '../a', 'a\\'])
      expect(() => validatePrefix(prefix)).toThrow(BlobcoreError);
  });
});

describe('write barrier (notBefore) in the guard, for drivers without writeBarrier', () => {
  const never = new Promise<void>(() => {});

  it('a body of the wrong size fails at once, not after the barrier', async () => {
    const driver = createMemoryDriver();
    expect(await codeOf(driver.write('k', Buffer.from('abc'), { size: 4, notBefore: never }))).toBe(
      'SIZE_INVALID',
    );
  });

  it('an abort while waiting gives ABORTED at once and writes nothing', async () => {
    const driver = createMemoryDriver();
    const controller = new AbortController();
    const writing = codeOf(
      driver.write('k', Buffer.from('abc'), { notBefore: never, signal: controller.signal }),
    );
    controller.abort();
    expect(await writing).toBe('ABORTED');
    expect(await driver.stat('k')).toBeNull();
  });

  it('a streamed body behind a rejected barrier is let go (its stream destroyed)', async () => {
    const driver = createMemoryDriver();
    const body = Readable.from([Buffer.from('abc')]);
    const refused = blobError('UNAVAILABLE', 'what the write depended on was lost');
    await expect(driver.write('k', body, { notBefore: Promise.reject(refused) })).rejects.toBe(refused);
    expect(body.destroyed).toBe(true);
    expect(await driver.stat('k')).toBeNull();
  });
});

describe('errors', () => {
  it('carry code, driver, retryable and cause', () => {
    const cause = new Error('socket hang up');
    const error = blobError('UNAVAILABLE', 'backend down', { driver: 's3', cause });
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.driver).toBe('s3');
    expect(error.retryable).toBe(true);
    expect(error.cause).toBe(cause);
    expect(blobError('NOT_FOUND', 'x').retryable).toBe(false);
    expect(ErrorCodes).toContain('INSUFFICIENT_STORAGE');
  });

  it('instanceof works across two copies of the module', async () => {
    // A query string makes vitest load a second, independent instance of the module.
    const secondCopy = '../src/errors.js?second-copy';
    const copy = (await import(/* @vite-ignore */ secondCopy)) as typeof import('../src/errors.js');
    expect(copy.BlobcoreError).not.toBe(BlobcoreError);
    const fromCopy = copy.blobError('BLOB_UNKNOWN', 'x');
    expect(fromCopy instanceof BlobcoreError).toBe(true);
    expect(blobError('BLOB_UNKNOWN', 'x') instanceof copy.BlobcoreError).toBe(true);
    expect(new Error('plain') instanceof BlobcoreError).toBe(false);
    expect(isBlobcoreError(fromCopy, 'BLOB_UNKNOWN')).toBe(true);
  });

  it('tags driver errors with the driver name', async () => {
    const driver = createMemoryDriver();
    try {
      await driver.read('missing');
      expect.unreachable();
    } catch (error) {
      expect(isBlobcoreError(error, 'NOT_FOUND')).toBe(true);
      expect((error as BlobcoreError).driver).toBe('memory');
    }
  });
});
