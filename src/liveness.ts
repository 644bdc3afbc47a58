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
 *
 * That covers a blob referenced *after* GC chose its candidates. A manifest push that
 * checked its children *before* GC chose them, and writes its tag after GC marked,
 * would otherwise depend on the grace period being longer than the push. So a push
 * first writes a pending record naming every digest it is about to reference, and GC
 * reads the pending records after choosing candidates and spares what they name:
 * pending written before that read → spared; written after → its touches come after
 * the candidates were chosen → resurrected. No timing assumption is left.
 */
import type { Driver, SignalOptions } from './driver.js';
import { newPendingKey, touchKey } from './layout.js';

/** Rewrites a blob's touch record. Callers then read the index (`referenceBlob`, ./blob-index.ts). */
export async function touch(driver: Driver, digest: string, options: SignalOptions = {}): Promise<void> {
  await driver.write(touchKey(digest), Buffer.from(`{"at":${Date.now()}}`), { signal: options.signal });
}

/** Records that a push is about to reference `digests`; call the returned function when done. */
export async function announceReferences(
  driver: Driver,
  digests: string[],
  options: SignalOptions = {},
): Promise<() => Promise<void>> {
  const key = newPendingKey();
  await driver.write(key, Buffer.from(JSON.stringify({ digests, at: Date.now() })), {
    signal: options.signal,
  });
  return async () => {
    await driver.delete(key).catch(() => false);
  };
}
