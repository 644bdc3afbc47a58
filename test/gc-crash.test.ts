/**
 * A GC process killed (SIGKILL) at each phase leaves the store consistent, and the next
 * GC completes and frees what the dead one chose. Real child processes on the fs driver.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { collectBody } from '../src/bytes.js';
import { touch } from '../src/liveness.js';
import { MediaTypes, parseManifest } from '../src/manifest.js';
import { type BlobStore, openStore } from '../src/store.js';
import { sha256 } from './helpers.js';
import { blob, imageManifest } from './oci.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function fixture(): Promise<{ url: string; store: BlobStore; garbage: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'blobcore-gc-crash-'));
  dirs.push(dir);
  const url = pathToFileURL(dir).href;
  const store = await openStore(url);
  const repo = store.repository('app');
  const garbage: string[] = [];
  for (let i = 0; i < 3; i++) {
    const config = blob(`config ${i}`);
    const layers = [blob(`shared layer`), blob(`layer ${i}`)];
    for (const part of [config, ...layers]) await repo.blobs.put(part.bytes);
    const manifest = await repo.manifests.put(imageManifest(config, layers), {
      mediaType: MediaTypes.ociManifest,
      tag: i === 2 ? 'kept' : `old-${i}`,
    });
    if (i < 2) garbage.push(manifest.digest, config.digest, layers[1]?.digest as string);
  }
  for (const tag of ['old-0', 'old-1']) await repo.tags.delete(tag);
  for (let i = 0; i < 4; i++) garbage.push((await repo.blobs.put(Buffer.from(`orphan upload ${i}`))).digest);
  // Every candidate has a touch record (as after a dedup hit), so a replayed intent finds it
  // changed (the dead GC deleted it) and must still not restore an index to deleted bytes.
  for (const digest of garbage) await touch(store.driver, digest);
  return { url, store, garbage: garbage.sort() };
}

async function assertKeptImageComplete(store: BlobStore): Promise<void> {
  const repo = store.repository('app');
  const manifest = await repo.manifests.get('kept');
  for (const child of parseManifest(manifest.bytes, manifest.mediaType).blobs) {
    expect(sha256(await collectBody(await repo.blobs.get(child.digest, { verify: true })))).toBe(
      child.digest,
    );
  }
}

function runChild(url: string, phase: string, count = 0) {
  return spawnSync(
    process.execPath,
    ['--import', './test/fixtures/ts-loader.mjs', 'test/fixtures/gc-child.ts', url, phase, String(count)],
    { encoding: 'utf8', timeout: 60_000 },
  );
}

/** Runs GC once the dead one's lease has run out (UNAVAILABLE until then). */
async function gcAfterLease(store: BlobStore) {
  for (let attempt = 0; ; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 400));
    try {
      return await store.gc({ graceMs: 0, untagged: 'delete' });
    } catch (error) {
      if ((error as { code?: string }).code !== 'UNAVAILABLE' || attempt === 10) throw error;
    }
  }
}

describe('GC killed mid-run', () => {
  it.each([['mark'], ['candidates'], ['tombstone'], ['sweep-mid', 3], ['sweep']] as [string, number?][])(
    'after %s: the store stays consistent and the next GC finishes the job',
    async (phase, count) => {
      const { url, store, garbage } = await fixture();
      const child = runChild(url, phase, count);
      expect(child.signal, `child output: ${child.stdout}${child.stderr}`).toBe('SIGKILL');
      await assertKeptImageComplete(store);
      const intents = (await store.driver.list('gc/intents/')).keys.length;
      if (phase === 'tombstone' || phase === 'sweep-mid') expect(intents).toBeGreaterThan(0);
      // The dead GC's lock lease (300 ms) runs out; the next GC takes over and finishes.
      const report = await gcAfterLease(store);
      const gone = [];
      for (const digest of garbage) if (!(await store.stat(digest))) gone.push(digest);
      expect(gone.sort()).toEqual(garbage);
      expect(report.dryRun).toBe(false);
      // Nothing pushed since: replaying the dead GC's intents must not put any index back.
      expect(report.resurrected).toBe(0);
      expect((await store.driver.list('gc/')).keys).toEqual([]);
      await assertKeptImageComplete(store);
      expect((await store.gc({ graceMs: 0, untagged: 'delete' })).swept).toBe(0);
    },
    90_000,
  );
});
