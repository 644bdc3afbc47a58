/**
 * BlobStore: a verified, content-addressed store over one driver.
 *
 * put: bytes stream once to a fresh data key while being hashed; the blob becomes
 *      reachable by digest only when its index record is written, after the digest
 *      (and size) matched. A wrong digest, a wrong size, an aborted source or signal
 *      leave nothing reachable; a crash leaves at most an unreferenced data key that
 *      GC removes. Layout: ./layout.ts. Index records: ./blob-index.ts.
 * get: reads the index, then streams the data key; a full read with `verify` fails
 *      the stream with DIGEST_INVALID instead of ending it when the bytes are corrupt.
 * uploads: resumable chunked uploads, see ./upload.ts.
 */
import { createHash } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import { type BlobIndex, findBlob, publishIndex, readIndex } from './blob-index.js';
import { collectBody } from './bytes.js';
import { type Digest, type DigestAlgorithm, formatDigest, parseDigest } from './digest.js';
import type { Body, Driver, SignalOptions } from './driver.js';
import { guardDriver } from './driver.js';
import { blobError, isBlobcoreError, throwIfAborted } from './errors.js';
import { collectGarbage, type GcOptions, type GcReport } from './gc.js';
import { createDigestTap } from './hash/digest-tap.js';
import {
  CATALOG_MARKER,
  CATALOG_PREFIX,
  FORMAT_KEY,
  indexKey,
  newDataKey,
  pinKey,
  STORE_FORMAT,
  uploadStateKey,
} from './layout.js';
import { type PruneOptions, type PruneReport, prune } from './prune.js';
import { listAll } from './records.js';
import { type PageOptions, Repository } from './repository.js';
import { type ScrubOptions, type ScrubReport, scrub } from './scrub.js';
import { openDriver } from './store-url.js';
import { HashTap, verifyingTransform } from './stream/hashing.js';
import { type StoreCounters, UploadManager } from './upload.js';
import { type StoreUsage, usage } from './usage.js';

export interface StoreOptions {
  /**
   * How long an upload's claim on its next append or commit lasts before another
   * instance may take over (after a crash). Renewed at every part. Default 60 s.
   */
  uploadLeaseMs?: number;
  /** Appends of unknown length are cut into parts of this size, buffered in memory. Default 8 MiB. */
  partSize?: number;
  /**
   * Re-read and hash an upload's assembled bytes before committing: 'auto' does it when
   * the driver cannot enforce conditional writes (two writers could interleave parts)
   * or when the hash state was lost. Default 'auto'.
   */
  verifyCommit?: 'auto' | 'always';
}

export interface PutOptions extends SignalOptions {
  /** The digest the bytes must have; DIGEST_INVALID otherwise and nothing is stored. */
  expected?: string | undefined;
  /** The size the bytes must have; SIZE_INVALID otherwise and nothing is stored. */
  size?: number | undefined;
}

export interface PutResult {
  digest: string;
  size: number;
  /** True when the digest was already stored and no new copy was kept. */
  deduplicated: boolean;
}

export interface BlobInfo {
  digest: string;
  size: number;
}

export interface GetOptions extends SignalOptions {
  offset?: number | undefined;
  length?: number | undefined;
  /** Hash a full read and fail the stream (DIGEST_INVALID) if it does not match. Ranged reads are never verified. */
  verify?: boolean | undefined;
}

/** Where the store keeps things on its driver; for tools and tests that inspect the backend. */
export interface StoreLayout {
  /** Driver key holding a stored blob's bytes; BLOB_UNKNOWN if the digest is not stored. */
  dataKey(digest: string): Promise<string>;
  indexKey(digest: string): string;
  uploadStateKey(id: string): string;
}

const DEFAULTS: Required<StoreOptions> = {
  uploadLeaseMs: 60_000,
  partSize: 8 * 1024 * 1024,
  verifyCommit: 'auto',
};

function checkCount(code: 'SIZE_INVALID' | 'RANGE_INVALID', name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
    throw blobError(code, `${name} must be a non-negative integer, got ${value}`);
  }
}

/** Large bodies go through the native SHA-256 (see writeVerified); small ones need no setup. */
function hashOf(algorithm: DigestAlgorithm, bytes: Uint8Array): string {
  if (bytes.byteLength < 64 * 1024)
    return formatDigest(algorithm, createHash(algorithm).update(bytes).digest());
  const hash = createDigestTap(algorithm);
  hash.update(bytes);
  return hash.digest();
}

export class BlobStore {
  readonly driver: Driver;
  readonly uploads: UploadManager;
  readonly layout: StoreLayout;
  /** Work done that a caller may want to watch, e.g. bytes re-read to rebuild a lost hash state. */
  readonly counters: StoreCounters = { rehashedBytes: 0 };
  private readonly options: Required<StoreOptions>;

  constructor(driver: Driver, options: StoreOptions = {}) {
    this.driver = guardDriver(driver);
    this.options = { ...DEFAULTS, ...options };
    this.uploads = new UploadManager(this.driver, this.options, this.counters, (name, digest, size, signal) =>
      this.repository(name).blobs.writeLink(parseDigest(digest), size, { signal }),
    );
    this.layout = {
      dataKey: async (digest) => (await this.requireIndex(digest)).data,
      indexKey: (digest) => indexKey(digest),
      uploadStateKey: (id) => uploadStateKey(id),
    };
  }

  /** Stores bytes, verifying them on the way. */
  async put(source: Body, options: PutOptions = {}): Promise<PutResult> {
    throwIfAborted(options.signal);
    const expected = options.expected === undefined ? undefined : parseDigest(options.expected);
    checkCount('SIZE_INVALID', 'size', options.size);
    if (source instanceof Uint8Array) {
      if (options.size !== undefined && options.size !== source.byteLength) {
        throw blobError('SIZE_INVALID', `body has ${source.byteLength} bytes, expected ${options.size}`);
      }
      // In memory and no digest given: hash first so a duplicate writes nothing.
      if (expected === undefined) {
        const digest = hashOf('sha256', source);
        return this.putKnown(source, parseDigest(digest), source.byteLength, options.signal);
      }
    }
    if (expected) {
      const existing = await findBlob(this.driver, expected.value, options);
      if (existing) return this.confirmDuplicate(source, expected, existing, options);
    }
    return this.writeVerified(source, expected, options.size, options.signal);
  }

  /** Bytes already hashed to `digest`: write them unless the digest is stored. */
  private async putKnown(
    bytes: Uint8Array,
    digest: Digest,
    size: number,
    signal?: AbortSignal,
  ): Promise<PutResult> {
    const existing = await findBlob(this.driver, digest.value, { signal });
    if (existing) return { digest: digest.value, size: existing.size, deduplicated: true };
    const dataKey = newDataKey();
    await this.driver.write(dataKey, bytes, this.dataWriteOptions(size, signal));
    return this.commitData(digest.value, size, dataKey, signal);
  }

  /**
   * The digest is stored already: check the offered bytes really have it (hashing
   * without writing), so bad input still gets DIGEST_INVALID/SIZE_INVALID.
   */
  private async confirmDuplicate(
    source: Body,
    expected: Digest,
    existing: BlobIndex,
    options: PutOptions,
  ): Promise<PutResult> {
    const hash = createDigestTap(expected.algorithm);
    const tap = new HashTap([hash]);
    await tap.stopOnFailure(async () => {
      for await (const _ of tap.wrap(source)) throwIfAborted(options.signal);
    });
    const size = tap.finish();
    this.checkResult(expected, hash.digest(), options.size, size);
    if (size !== existing.size) {
      throw blobError(
        'SIZE_INVALID',
        `stored ${expected.value} has ${existing.size} bytes, body has ${size}`,
      );
    }
    return { digest: expected.value, size, deduplicated: true };
  }

  private checkResult(
    expected: Digest | undefined,
    actual: string,
    declared: number | undefined,
    size: number,
  ): void {
    if (declared !== undefined && declared !== size) {
      throw blobError('SIZE_INVALID', `body has ${size} bytes, expected ${declared}`);
    }
    if (expected && expected.value !== actual) {
      throw blobError('DIGEST_INVALID', `body hashes to ${actual}, expected ${expected.value}`);
    }
  }

  /** Streams to a fresh data key, hashing while the driver writes; publishes only a match. */
  private async writeVerified(
    source: Body,
    expected: Digest | undefined,
    size: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<PutResult> {
    // The native SHA-256 where there is one: it prefetches what it hashes next (hash_bytes
    // in native/sha256.c), ~1.6 GB/s from memory against node:crypto's ~1.15.
    const hash = createDigestTap(expected?.algorithm ?? 'sha256');
    const tap = new HashTap([hash]);
    const dataKey = newDataKey();
    await tap.stopOnFailure(() =>
      this.driver.write(dataKey, tap.wrap(source), this.dataWriteOptions(size, signal)),
    );
    const written = tap.finish();
    const digest = hash.digest();
    try {
      this.checkResult(expected, digest, size, written);
    } catch (error) {
      await this.driver.delete(dataKey, { lazy: true }).catch(() => false);
      throw error;
    }
    return this.commitData(digest, written, dataKey, signal);
  }

  /**
   * Data keys are fresh random names, so their writes are create-only where the backend
   * enforces that for free: a (vanishingly unlikely) name collision fails instead of
   * overwriting, and the fs driver publishes with one link() instead of taking a key lock.
   * Where create-only would cost a look-up first (no conditional writes), it is left out.
   */
  private dataWriteOptions(size: number | undefined, signal: AbortSignal | undefined) {
    return this.driver.capabilities.conditionalWrite
      ? { size, signal, ifNoneMatch: '*' as const }
      : { size, signal };
  }

  /** Publishes verified bytes at `dataKey` under `digest`, or drops them if it exists. */
  private async commitData(
    digest: string,
    size: number,
    dataKey: string,
    signal?: AbortSignal,
  ): Promise<PutResult> {
    try {
      const { created, record } = await publishIndex(
        this.driver,
        { v: 1, digest, size, data: dataKey, created: new Date().toISOString() },
        { signal },
      );
      // Bytes no index names: if a crash undoes the delete, GC removes them as an orphan.
      if (!created) await this.driver.delete(dataKey, { lazy: true }).catch(() => false);
      return { digest, size: record.size, deduplicated: !created };
    } catch (error) {
      await this.driver.delete(dataKey, { lazy: true }).catch(() => false);
      throw error;
    }
  }

  private async requireIndex(digest: string, options: SignalOptions = {}): Promise<BlobIndex> {
    const index = await readIndex(this.driver, parseDigest(digest).value, options);
    if (!index) throw blobError('BLOB_UNKNOWN', `blob ${digest} is not stored`);
    return index;
  }

  async stat(digest: string, options: SignalOptions = {}): Promise<BlobInfo | null> {
    const index = await readIndex(this.driver, parseDigest(digest).value, options);
    return index ? { digest: index.digest, size: index.size } : null;
  }

  async get(digest: string, options: GetOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    checkCount('RANGE_INVALID', 'offset', options.offset);
    checkCount('RANGE_INVALID', 'length', options.length);
    const parsed = parseDigest(digest);
    const index = await this.requireIndex(parsed.value, options);
    const offset = options.offset ?? 0;
    if (offset > index.size) {
      throw blobError('RANGE_INVALID', `offset ${offset} is past the end of ${digest} (${index.size} bytes)`);
    }
    const whole = offset === 0 && (options.length === undefined || options.length >= index.size);
    const verify = options.verify === true && whole;
    // A driver that can feed a tap hashes as it reads (fs, pvc: on the read's own worker);
    // for the others the check transform hashes the stream.
    const hash = verify ? createDigestTap(parsed.algorithm) : undefined;
    const tap = this.driver.capabilities.readTap === true ? hash : undefined;
    let stream: Readable;
    try {
      stream = await this.driver.read(index.data, {
        offset,
        length: options.length,
        signal: options.signal,
        tap,
      });
    } catch (error) {
      // The index names bytes that are gone: deleted concurrently, or the backend lost them.
      if (isBlobcoreError(error, 'NOT_FOUND'))
        throw blobError('BLOB_UNKNOWN', `blob ${digest} is not stored`);
      throw error;
    }
    if (!hash) return stream;
    const check = verifyingTransform(hash, parsed.value, index.size, tap === undefined);
    return pipeline(stream, check, () => {});
  }

  /** Removes a blob. Resolves false when it was not stored. */
  async delete(digest: string, options: SignalOptions = {}): Promise<boolean> {
    const index = await readIndex(this.driver, parseDigest(digest).value, options);
    if (!index) return false;
    // Index first: from here on the blob is unreachable, then its bytes go.
    const removed = await this.driver.delete(indexKey(digest), options);
    await this.driver.delete(index.data, options);
    return removed;
  }

  /** A repository (namespace) of this store. NAME_INVALID for names outside the OCI grammar. */
  repository(name: string): Repository {
    return new Repository(this, name);
  }

  /** Repository names, lexical, paged with `last` and `n` (the registry catalog). */
  async repositories(page: PageOptions = {}, options: SignalOptions = {}): Promise<string[]> {
    const names: string[] = [];
    for await (const key of listAll(this.driver, CATALOG_PREFIX, options)) {
      if (key.endsWith(`/${CATALOG_MARKER}`))
        names.push(key.slice(CATALOG_PREFIX.length, -CATALOG_MARKER.length - 1));
    }
    // Keys sort `a/_repo` after `a/0/_repo`, names sort `a` first: order by name.
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const after = page.last === undefined ? names : names.filter((name) => name > (page.last as string));
    return page.n === undefined ? after : after.slice(0, page.n);
  }

  /** Keeps a blob alive through GC until `until` (a GC root). */
  async pin(digest: string, options: { until: Date } & SignalOptions): Promise<void> {
    const parsed = parseDigest(digest);
    const record = { digest: parsed.value, until: options.until.toISOString() };
    await this.driver.write(pinKey(parsed), Buffer.from(JSON.stringify(record)), { signal: options.signal });
  }

  async unpin(digest: string, options: SignalOptions = {}): Promise<boolean> {
    return this.driver.delete(pinKey(parseDigest(digest)), options);
  }

  /** Online garbage collection (./gc.ts): safe while pushes continue. */
  gc(options: GcOptions = {}): Promise<GcReport> {
    return collectGarbage(this, options);
  }

  /** Retention: trims tag history and old untagged manifests (./prune.ts); GC then frees the bytes. */
  prune(options: PruneOptions = {}): Promise<PruneReport> {
    return prune(this, options);
  }

  /** Re-hashes every blob and reports (optionally quarantines) corrupt ones (./scrub.ts). */
  scrub(options: ScrubOptions = {}): Promise<ScrubReport> {
    return scrub(this, options);
  }

  /** Physical vs logical bytes and the dedup ratio (./usage.ts). */
  usage(options: SignalOptions = {}): Promise<StoreUsage> {
    return usage(this, options);
  }

  async close(): Promise<void> {
    await this.driver.close?.();
  }
}

/**
 * Opens a store on a driver or a store URL (`memory:`, `memory://name`, `file:///abs/path`, ...).
 * Records the store format on first use and refuses a backend written by a newer format.
 */
export async function openStore(
  target: string | URL | Driver,
  options: StoreOptions = {},
): Promise<BlobStore> {
  const driver = typeof target === 'string' || target instanceof URL ? await openDriver(target) : target;
  const store = new BlobStore(driver, options);
  await checkFormat(store.driver);
  return store;
}

async function checkFormat(driver: Driver): Promise<void> {
  const marker = Buffer.from(JSON.stringify({ store: STORE_FORMAT }));
  if (!(await driver.stat(FORMAT_KEY))) {
    try {
      await driver.write(FORMAT_KEY, marker, { ifNoneMatch: '*' });
      return;
    } catch (error) {
      if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
    }
  }
  const format = JSON.parse((await collectBody(await driver.read(FORMAT_KEY))).toString('utf8')) as {
    store?: unknown;
  };
  if (format.store !== STORE_FORMAT) {
    throw blobError(
      'UNSUPPORTED',
      `backend holds store format ${String(format.store)}; this blobcore reads ${STORE_FORMAT}`,
    );
  }
}
