/**
 * Where the store keeps things on a driver (store format 1).
 *
 *   blobcore-format                        {"store":1}, written on first open
 *   blobs/<alg>/<h0h1>/<h2h3>/<hex>        blob index: small JSON {v, digest, size, data, created}
 *   data/<i0i1>/<i2i3>/<id>                blob bytes, under a random id (never a digest:
 *                                          bytes become reachable by digest only after
 *                                          they were verified, by writing the index)
 *   uploads/<id>/state                     upload state record, rewritten with CAS
 *   uploads/<id>/tail/<offset>-<rand>      chunks held back until a part is big enough
 *   touches/<alg>/<h0h1>/<h2h3>/<hex>      liveness record, rewritten whenever something
 *                                          references an existing blob (see ./liveness.ts)
 *   catalog/<name>/_repo                   one marker per repository (the catalog)
 *   repositories/<name>/_blobs/<alg>/<hex>       blob link {digest, size, linked}
 *   repositories/<name>/_manifests/<alg>/<hex>   manifest revision {digest, mediaType, size, created, ...}
 *   repositories/<name>/_tags/<tag>               current tag {tag, digest, updated}
 *   repositories/<name>/_history/<tag>/<ms>-<rand> tag revision {digest, at}
 *   repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>  referrer descriptor
 *   pins/<alg>/<hex>                       GC root until a time {digest, until}
 *   pending/<rand>                         digests a manifest push is about to reference
 *   gc/lock                                one GC at a time, with a lease
 *   gc/intents/<run>-<batch>               a sweep in progress: a batch of candidates (see ./gc.ts)
 *
 * Repository name segments start with [a-z0-9], so `_blobs`, `_tags`, … can never
 * collide with a nested repository's name.
 *
 * Two levels of two hex digits keep every directory of a filesystem backend small:
 * 10M blobs spread over 65,536 leaf directories is ~150 entries each.
 * Commit is O(1) in blob size on every backend: uploads assemble their bytes at a data
 * key and commit by writing the small index object that names it.
 */
import { randomBytes } from 'node:crypto';
import { DIGEST_ALGORITHMS, type Digest, parseDigest } from './digest.js';

export const STORE_FORMAT = 1;
export const FORMAT_KEY = 'blobcore-format';
export const UPLOADS_PREFIX = 'uploads/';

function shard(hex: string): string {
  return `${hex.slice(0, 2)}/${hex.slice(2, 4)}`;
}

export function indexKey(digest: string | Digest): string {
  const parsed = typeof digest === 'string' ? parseDigest(digest) : digest;
  return `blobs/${parsed.algorithm}/${shard(parsed.hex)}/${parsed.hex}`;
}

/** A fresh, unguessable data key. */
export function newDataKey(): string {
  const id = randomBytes(16).toString('hex');
  return `data/${shard(id)}/${id}`;
}

export function newUploadId(): string {
  return randomBytes(16).toString('hex');
}

const UPLOAD_ID = /^[0-9a-f]{32}$/;

export function isUploadId(id: unknown): id is string {
  return typeof id === 'string' && UPLOAD_ID.test(id);
}

export function uploadPrefix(id: string): string {
  return `${UPLOADS_PREFIX}${id}/`;
}

export function uploadStateKey(id: string): string {
  return `${uploadPrefix(id)}state`;
}

export function touchKey(digest: string | Digest): string {
  const parsed = typeof digest === 'string' ? parseDigest(digest) : digest;
  return `touches/${parsed.algorithm}/${shard(parsed.hex)}/${parsed.hex}`;
}

export const CATALOG_PREFIX = 'catalog/';
export const CATALOG_MARKER = '_repo';

export function catalogKey(repository: string): string {
  return `${CATALOG_PREFIX}${repository}/${CATALOG_MARKER}`;
}

export function repositoryPrefix(repository: string): string {
  return `repositories/${repository}/`;
}

export function blobLinkKey(repository: string, digest: Digest): string {
  return `${repositoryPrefix(repository)}_blobs/${digest.algorithm}/${digest.hex}`;
}

export function manifestKey(repository: string, digest: Digest): string {
  return `${repositoryPrefix(repository)}_manifests/${digest.algorithm}/${digest.hex}`;
}

export function tagKey(repository: string, tag: string): string {
  return `${repositoryPrefix(repository)}_tags/${tag}`;
}

export function tagHistoryPrefix(repository: string, tag: string): string {
  return `${repositoryPrefix(repository)}_history/${tag}/`;
}

export function tagHistoryKey(repository: string, tag: string, at: number): string {
  return `${tagHistoryPrefix(repository, tag)}${at.toString().padStart(15, '0')}-${randomBytes(3).toString('hex')}`;
}

export function referrersPrefix(repository: string, subject: Digest): string {
  return `${repositoryPrefix(repository)}_referrers/${subject.algorithm}/${subject.hex}/`;
}

export function referrerKey(repository: string, subject: Digest, referrer: Digest): string {
  return `${referrersPrefix(repository, subject)}${referrer.algorithm}-${referrer.hex}`;
}

export const PINS_PREFIX = 'pins/';

export function pinKey(digest: Digest): string {
  return `${PINS_PREFIX}${digest.algorithm}/${digest.hex}`;
}

export const PENDING_PREFIX = 'pending/';

export function newPendingKey(): string {
  return `${PENDING_PREFIX}${Date.now().toString().padStart(15, '0')}-${randomBytes(8).toString('hex')}`;
}

export const GC_LOCK_KEY = 'gc/lock';
export const GC_INTENTS_PREFIX = 'gc/intents/';

/** One batch of a GC run's candidates. (GCs before batching wrote `gc/intents/<alg>-<hex>`.) */
export function gcIntentKey(run: string, batch: number): string {
  return `${GC_INTENTS_PREFIX}${run}-${batch.toString().padStart(6, '0')}`;
}

const HEX_DIGITS = [...'0123456789abcdef'];

/**
 * Prefixes that together hold every index (`blobs/`) or touch (`touches/`) key: one per
 * algorithm and first hex digit, so a scan can list them in parallel. Complete by
 * construction: `indexKey` and `touchKey` only ever write `<root><alg>/<hex shard>/…`.
 */
export function digestShardPrefixes(root: 'blobs/' | 'touches/'): string[] {
  return DIGEST_ALGORITHMS.flatMap((algorithm) => HEX_DIGITS.map((digit) => `${root}${algorithm}/${digit}`));
}

/** Prefixes that together hold every data key `newDataKey` makes: one per first hex digit. */
export function dataShardPrefixes(): string[] {
  return HEX_DIGITS.map((digit) => `data/${digit}`);
}

/** Digest back from the last segments of an index, link or touch key (`…/<alg>/…/<hex>`). */
export function digestFromKey(key: string): string {
  const segments = key.split('/');
  const hex = segments[segments.length - 1] as string;
  const algorithm = hex.length === 128 ? 'sha512' : 'sha256';
  return `${algorithm}:${hex}`;
}

export function tailKey(id: string, offset: number): string {
  return `${uploadPrefix(id)}tail/${offset.toString().padStart(16, '0')}-${randomBytes(4).toString('hex')}`;
}
