/**
 * Scrub: re-hash every stored blob and report the ones whose bytes no longer match
 * their digest (or are missing). With `quarantine`, such a blob is taken out of
 * service: its index is marked, reads and stats treat it as absent (BLOB_UNKNOWN), and
 * the next push of the same digest replaces it with a verified copy.
 */
import { createHash } from 'node:crypto';
import { readIndexRecord } from './blob-index.js';
import { formatDigest, parseDigest } from './digest.js';
import type { SignalOptions } from './driver.js';
import { isBlobcoreError, throwIfAborted } from './errors.js';
import { digestFromKey, indexKey } from './layout.js';
import { listAll } from './records.js';
import type { BlobStore } from './store.js';

export interface ScrubOptions extends SignalOptions {
  quarantine?: boolean | undefined;
  onProgress?: ((progress: { checked: number; bytes: number }) => void) | undefined;
}

export interface ScrubReport {
  checked: number;
  bytes: number;
  corrupt: string[];
  quarantined: number;
  durationMs: number;
}

export async function scrub(store: BlobStore, options: ScrubOptions = {}): Promise<ScrubReport> {
  const started = Date.now();
  const report: ScrubReport = { checked: 0, bytes: 0, corrupt: [], quarantined: 0, durationMs: 0 };
  const { driver } = store;
  for await (const key of listAll(driver, 'blobs/', options)) {
    throwIfAborted(options.signal);
    const digest = digestFromKey(key);
    const stat = await driver.stat(key, options);
    const record = await readIndexRecord(driver, digest, options);
    if (!record || !stat || record.quarantined) continue;
    const hash = createHash(parseDigest(digest).algorithm);
    let size = 0;
    try {
      for await (const chunk of await driver.read(record.data, { signal: options.signal })) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    } catch (error) {
      if (!isBlobcoreError(error, 'NOT_FOUND')) throw error;
      size = -1; // bytes missing: as bad as corrupt
    }
    report.checked += 1;
    report.bytes += Math.max(size, 0);
    options.onProgress?.({ checked: report.checked, bytes: report.bytes });
    if (size === record.size && formatDigest(parseDigest(digest).algorithm, hash.digest()) === digest)
      continue;
    report.corrupt.push(digest);
    if (options.quarantine) {
      const marked = { ...record, quarantined: new Date().toISOString() };
      try {
        await driver.write(indexKey(digest), Buffer.from(JSON.stringify(marked)), {
          ifMatch: stat.etag,
          signal: options.signal,
        });
        report.quarantined += 1;
      } catch (error) {
        if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error; // replaced meanwhile: leave it
      }
    }
  }
  report.durationMs = Date.now() - started;
  return report;
}
