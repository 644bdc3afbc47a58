/**
 * Usage: physical bytes (one copy per digest) against logical bytes (what every
 * repository holds, counting shared blobs once per repository).
 */
import { readIndex } from './blob-index.js';
import type { SignalOptions } from './driver.js';
import { digestFromKey, repositoryPrefix } from './layout.js';
import { listAll, readJsonKey } from './records.js';
import type { BlobLink, ManifestRevision } from './repository.js';
import type { BlobStore } from './store.js';

export interface StoreUsage {
  blobs: number;
  physicalBytes: number;
  logicalBytes: number;
  /** logical / physical; 1 when empty. */
  dedupRatio: number;
  repositories: number;
}

export async function usage(store: BlobStore, options: SignalOptions = {}): Promise<StoreUsage> {
  const { driver } = store;
  let blobs = 0;
  let physicalBytes = 0;
  for await (const key of listAll(driver, 'blobs/', options)) {
    const index = await readIndex(driver, digestFromKey(key), options);
    if (!index) continue;
    blobs += 1;
    physicalBytes += index.size;
  }
  let logicalBytes = 0;
  const names = await store.repositories({}, options);
  for (const name of names) {
    const prefix = repositoryPrefix(name);
    for await (const key of listAll(driver, `${prefix}_blobs/`, options)) {
      logicalBytes += (await readJsonKey<BlobLink>(driver, key, options))?.size ?? 0;
    }
    for await (const key of listAll(driver, `${prefix}_manifests/`, options)) {
      logicalBytes += (await readJsonKey<ManifestRevision>(driver, key, options))?.size ?? 0;
    }
  }
  return {
    blobs,
    physicalBytes,
    logicalBytes,
    dedupRatio: physicalBytes === 0 ? 1 : logicalBytes / physicalBytes,
    repositories: names.length,
  };
}
