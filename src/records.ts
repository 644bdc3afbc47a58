/**
 * Small JSON records on a driver: CAS-rewritten records (upload state), plain JSON
 * objects (links, tags, revisions) and paged listing of everything under a prefix.
 *
 * `readRecord` returns the content together with the etag of exactly that version:
 * the driver's read does not report an etag, so it reads between two stats and retries
 * when they differ. Drivers promise a new etag on every rewrite, so equal etags before
 * and after mean the bytes belong to that version.
 */
import { collectBody } from './bytes.js';
import type { Driver, SignalOptions, WriteOptions } from './driver.js';
import { blobError, isBlobcoreError } from './errors.js';

export interface VersionedRecord<T> {
  value: T;
  etag: string;
}

const READ_ATTEMPTS = 8;

export async function readRecord<T>(
  driver: Driver,
  key: string,
  options: SignalOptions = {},
): Promise<VersionedRecord<T> | null> {
  const signal = { signal: options.signal };
  let cutShort: unknown;
  for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
    const before = await driver.stat(key, signal);
    if (!before) return null;
    let bytes: Buffer;
    try {
      bytes = await collectBody(await driver.read(key, signal));
    } catch (error) {
      if (isBlobcoreError(error, 'NOT_FOUND')) return null;
      // A read cut short by the network (a connection reset mid-body: HTTP clients retry
      // requests, not bodies) is a small record read again.
      if (isBlobcoreError(error, 'UNAVAILABLE') && error.retryable === true) {
        cutShort = error;
        continue;
      }
      throw error;
    }
    cutShort = undefined;
    const after = await driver.stat(key, signal);
    if (!after) return null;
    if (after.etag !== before.etag) continue;
    try {
      return { value: JSON.parse(bytes.toString('utf8')) as T, etag: after.etag };
    } catch (cause) {
      throw blobError('BLOB_UPLOAD_INVALID', `record ${key} is not valid JSON`, { cause });
    }
  }
  if (cutShort) throw cutShort;
  throw blobError('UNAVAILABLE', `record ${key} kept changing while being read`);
}

/**
 * Writes `value` if the record is still at `etag` (or, with etag null, does not exist).
 * Returns the new etag, or null when another writer got there first. With `notBefore`
 * the new record is published only once that fulfils (see WriteOptions).
 */
export async function swapRecord(
  driver: Driver,
  key: string,
  value: unknown,
  etag: string | null,
  options: SignalOptions & Pick<WriteOptions, 'notBefore'> = {},
): Promise<string | null> {
  const body = Buffer.from(JSON.stringify(value));
  try {
    const condition = etag === null ? { ifNoneMatch: '*' as const } : { ifMatch: etag };
    const result = await driver.write(key, body, {
      ...condition,
      signal: options.signal,
      notBefore: options.notBefore,
    });
    return result.etag;
  } catch (error) {
    if (isBlobcoreError(error, 'PRECONDITION_FAILED')) return null;
    throw error;
  }
}

/** A small JSON object, or null when the key is missing. */
export async function readJsonKey<T>(
  driver: Driver,
  key: string,
  options: SignalOptions = {},
): Promise<T | null> {
  try {
    const bytes = await collectBody(await driver.read(key, { signal: options.signal }));
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (error) {
    if (isBlobcoreError(error, 'NOT_FOUND')) return null;
    throw error;
  }
}

export function writeJson(driver: Driver, key: string, value: unknown, options: SignalOptions = {}) {
  return driver.write(key, Buffer.from(JSON.stringify(value)), { signal: options.signal });
}

/** Lists every key under a prefix, page by page. */
export async function* listAll(
  driver: Driver,
  prefix: string,
  options: SignalOptions = {},
): AsyncGenerator<string> {
  let cursor: string | undefined;
  do {
    const page = await driver.list(prefix, { startAfter: cursor, signal: options.signal });
    yield* page.keys;
    cursor = page.cursor;
  } while (cursor !== undefined);
}
