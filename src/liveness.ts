/**
 * Liveness: how a push and a concurrent GC agree on whether a blob survives.
 *
 * Whenever something starts relying on a blob that already exists (a dedup hit on put
 * or commit, a link, a mount, a manifest naming it as a child), it first rewrites the
 * blob's touch record (`touches/…`, ./layout.ts) and only then reads the blob's index.
 * GC sweeps a blob by first deleting its index and only then re-reading the touch
 * record, restoring the index if the touch changed since GC chose the blob.
 *
 * Both sides write, then read what the other writes. So at least one of them sees the
 * other: either the pusher finds the index gone (and re-uploads or fails with
 * BLOB_UNKNOWN, never pointing at deleted data), or GC sees the touch (and puts the
 * index back, deleting nothing). A touch also refreshes the blob's liveness time, which
 * keeps recently used blobs out of GC's candidates for the grace period.
 */
import type { Driver, SignalOptions } from './driver.js';
import { touchKey } from './layout.js';

/** Rewrites a blob's touch record. Callers then read the index (`referenceBlob`, ./blob-index.ts). */
export async function touch(driver: Driver, digest: string, options: SignalOptions = {}): Promise<void> {
  await driver.write(touchKey(digest), Buffer.from(`{"at":${Date.now()}}`), { signal: options.signal });
}
