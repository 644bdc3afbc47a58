/**
 * Blob index records: the small object that makes verified bytes reachable by digest.
 *
 * Writing the index is the commit point of every put and upload. It is written
 * create-only, so of two writers committing the same digest exactly one publishes its
 * data key; the other learns the digest exists (dedup) and drops its own bytes. On a
 * driver without enforced conditional writes both may "win"; either data key then
 * holds the same verified bytes, and the one not named ends up an orphan for GC.
 */
import { collectBody } from './bytes.js';
import type { Driver, SignalOptions } from './driver.js';
import { blobError, isBlobcoreError } from './errors.js';
import { indexKey } from './layout.js';

export interface BlobIndex {
  v: 1;
  digest: string;
  size: number;
  /** Driver key holding the bytes. */
  data: string;
  /** When these bytes were first committed (ISO 8601). */
  created: string;
}

function decodeIndex(bytes: Buffer, digest: string): BlobIndex {
  let record: Partial<BlobIndex>;
  try {
    record = JSON.parse(bytes.toString('utf8')) as Partial<BlobIndex>;
  } catch (cause) {
    throw blobError('DIGEST_INVALID', `index record of ${digest} is corrupt`, { cause });
  }
  if (
    record.v !== 1 ||
    record.digest !== digest ||
    typeof record.data !== 'string' ||
    typeof record.size !== 'number' ||
    !Number.isSafeInteger(record.size) ||
    record.size < 0
  ) {
    throw blobError('DIGEST_INVALID', `index record of ${digest} is corrupt`);
  }
  return record as BlobIndex;
}

export async function readIndex(
  driver: Driver,
  digest: string,
  options: SignalOptions = {},
): Promise<BlobIndex | null> {
  try {
    const stream = await driver.read(indexKey(digest), { signal: options.signal });
    return decodeIndex(await collectBody(stream), digest);
  } catch (error) {
    if (isBlobcoreError(error, 'NOT_FOUND')) return null;
    throw error;
  }
}

/**
 * Publishes `record` unless the digest is already indexed.
 * Returns the record that is in effect and whether this call created it.
 */
export async function publishIndex(
  driver: Driver,
  record: BlobIndex,
  options: SignalOptions = {},
): Promise<{ created: boolean; record: BlobIndex }> {
  const key = indexKey(record.digest);
  if (!driver.capabilities.conditionalWrite) {
    // Best effort without enforced create-only writes: look first.
    const existing = await readIndex(driver, record.digest, options);
    if (existing) return { created: false, record: existing };
  }
  try {
    await driver.write(key, Buffer.from(JSON.stringify(record)), {
      ifNoneMatch: '*',
      signal: options.signal,
    });
    return { created: true, record };
  } catch (error) {
    if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
    const existing = await readIndex(driver, record.digest, options);
    if (!existing) throw error; // deleted between our write and read: let the caller retry
    return { created: false, record: existing };
  }
}
