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
import { touch } from './liveness.js';

export interface BlobIndex {
  v: 1;
  digest: string;
  size: number;
  /** Driver key holding the bytes. */
  data: string;
  /** When these bytes were first committed (ISO 8601). */
  created: string;
  /** Set by scrub when the bytes failed verification: reads give BLOB_UNKNOWN and a new push replaces it. */
  quarantined?: string;
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

/** The index of a blob in service: null when missing or quarantined. */
export async function readIndex(
  driver: Driver,
  digest: string,
  options: SignalOptions = {},
): Promise<BlobIndex | null> {
  const record = await readIndexRecord(driver, digest, options);
  return record && !record.quarantined ? record : null;
}

/** The index record as stored, quarantined or not. */
export async function readIndexRecord(
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
 * The index of `digest`, referenced (touched, re-read) when it is stored; null when not.
 * A miss costs one read and no write: nothing can sweep a digest that is not stored, and
 * a caller that goes on to store it meets any copy published meanwhile in `publishIndex`,
 * which references that one. Only a hit pays for the touch, as the protocol requires.
 */
export async function findBlob(
  driver: Driver,
  digest: string,
  options: SignalOptions = {},
): Promise<BlobIndex | null> {
  if ((await readIndex(driver, digest, options)) === null) return null;
  return referenceBlob(driver, digest, options);
}

/** Touches, then reads the index: the pusher's half of the liveness protocol. Null if gone. */
export async function referenceBlob(
  driver: Driver,
  digest: string,
  options: SignalOptions = {},
): Promise<BlobIndex | null> {
  await touch(driver, digest, options);
  return readIndex(driver, digest, options);
}

const PUBLISH_ATTEMPTS = 4;

/**
 * Publishes `record` unless the digest is already indexed.
 * Returns the record that is in effect and whether this call created it.
 *
 * An existing digest is referenced through the liveness protocol (./liveness.ts): if
 * GC swept it meanwhile, this publishes our copy after all. A quarantined index (bytes
 * that failed scrub) is replaced by the fresh, verified copy.
 */
export async function publishIndex(
  driver: Driver,
  record: BlobIndex,
  options: SignalOptions = {},
): Promise<{ created: boolean; record: BlobIndex }> {
  const key = indexKey(record.digest);
  const body = Buffer.from(JSON.stringify(record));
  for (let attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
    // Without enforced create-only writes, look first (best effort).
    const exists = !driver.capabilities.conditionalWrite && (await driver.stat(key, options)) !== null;
    if (!exists) {
      try {
        await driver.write(key, body, { ifNoneMatch: '*', signal: options.signal });
        return { created: true, record };
      } catch (error) {
        if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
      }
    }
    const existing = await referenceBlob(driver, record.digest, options);
    if (existing) return { created: false, record: existing };
    const quarantined = await driver.stat(key, options);
    if (quarantined) {
      // Still there but not in service: replace it with this verified copy, unless someone else did.
      try {
        await driver.write(key, body, { ifMatch: quarantined.etag, signal: options.signal });
        return { created: true, record };
      } catch (error) {
        if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
      }
    }
  }
  throw blobError('UNAVAILABLE', `could not publish ${record.digest}: its index kept changing`);
}
