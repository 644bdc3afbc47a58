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
 *
 * Two levels of two hex digits keep every directory of a filesystem backend small:
 * 10M blobs spread over 65,536 leaf directories is ~150 entries each.
 * Commit is O(1) in blob size on every backend: uploads assemble their bytes at a data
 * key and commit by writing the small index object that names it.
 */
import { randomBytes } from 'node:crypto';
import { type Digest, parseDigest } from './digest.js';

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

export function tailKey(id: string, offset: number): string {
  return `${uploadPrefix(id)}tail/${offset.toString().padStart(16, '0')}-${randomBytes(4).toString('hex')}`;
}
