import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMemoryDriver, MemoryBackend } from '../drivers/memory/index.js';
import { collectBody } from '../src/bytes.js';
import { parseDigest } from '../src/digest.js';
import type { Driver } from '../src/driver.js';
import { blobError } from '../src/errors.js';
import { touch } from '../src/liveness.js';
import { MediaTypes, parseManifest } from '../src/manifest.js';
import { type BlobStore, openStore } from '../src/store.js';
import { codeOf, random, sha256 } from './helpers.js';
import { blob, imageManifest, indexManifest } from './oci.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Pushes an image (config + layers) to a repository and tags it. */
async function pushImage(store: BlobStore, repo: string, tag: string, layers: string[]) {
  const r = store.repository(repo);
  const config = blob(`config of ${layers.join(',')}`);
  const parts = layers.map((text) => blob(text));
  for (const part of [config, ...parts]) await r.blobs.put(part.bytes);
  const bytes = imageManifest(config, parts);
  const manifest = await r.manifests.put(bytes, { mediaType: MediaTypes.ociManifest, tag });
  return { manifest, config, parts };
}

/** Every tag's manifest and every child must exist and verify. Returns how many were checked. */
async function assertTagsComplete(store: BlobStore): Promise<number> {
  let checked = 0;
  for (const name of await store.repositories()) {
    const repo = store.repository(name);
    for (const tag of await repo.tags.list()) {
      const manifest = await repo.manifests.get(tag);
      const parsed = parseManifest(manifest.bytes, manifest.mediaType);
      for (const child of parsed.blobs) {
        const bytes = await collectBody(await repo.blobs.get(child.digest, { verify: true }));
        expect(sha256(bytes), `${name}:${tag} → ${child.digest}`).toBe(child.digest);
        checked += 1;
      }
      for (const child of parsed.manifests) {
        expect((await repo.manifests.get(child.digest)).digest).toBe(child.digest);
        checked += 1;
      }
    }
  }
  return checked;
}

/** A driver that waits a random 0–`maxMs` ms before each call, to shuffle interleavings. */
function jitter(inner: Driver, next: () => number, maxMs: number): Driver {
  const wrapped = Object.create(inner) as Driver;
  for (const method of ['stat', 'read', 'write', 'delete', 'list'] as const) {
    const original = inner[method].bind(inner) as (...args: unknown[]) => Promise<unknown>;
    (wrapped as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
      const delay = next() * maxMs;
      if (delay < maxMs / 3) await new Promise((resolve) => setImmediate(resolve));
      else await sleep(delay);
      return original(...args);
    };
  }
  return wrapped;
}

/**
 * A driver whose process "dies" once `limit` keys under `prefix` were deleted: that call
 * and every later one fail and reach nothing, like a GC killed at that point.
 */
function dieAfter(inner: Driver, prefix: string, limit: number): Driver {
  const wrapped = Object.create(inner) as Driver;
  let deleted = 0;
  const dead = () => Promise.reject(blobError('ABORTED', 'GC process died'));
  for (const method of ['stat', 'read', 'write', 'delete', 'list'] as const) {
    const original = inner[method].bind(inner) as (...args: unknown[]) => Promise<unknown>;
    (wrapped as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      if (deleted >= limit) return dead();
      if (method === 'delete' && String(args[0]).startsWith(prefix)) deleted += 1;
      return original(...args);
    };
  }
  return wrapped;
}

describe('garbage collection', () => {
  it('sweeps unreferenced blobs, keeps everything a tag reaches, and frees their bytes', async () => {
    const store = await openStore('memory:');
    const { manifest, parts } = await pushImage(store, 'app', 'v1', ['layer-a', 'layer-b']);
    const orphan = await store.repository('app').blobs.put(Buffer.from('uploaded, never referenced'));
    const report = await store.gc({ graceMs: 0 });
    expect(report.candidates).toEqual([orphan.digest]);
    expect(report.swept).toBe(1);
    expect(report.bytesFreed).toBe(26);
    expect(report.marked).toBe(4); // manifest, config, two layers
    expect(await store.stat(orphan.digest)).toBeNull();
    expect(await store.repository('app').blobs.stat(orphan.digest)).toBeNull();
    expect((await store.driver.list('repositories/app/_blobs/')).keys).toHaveLength(3);
    expect(await store.stat(manifest.digest)).not.toBeNull();
    for (const part of parts) expect(await store.stat(part.digest)).not.toBeNull();
    expect(await assertTagsComplete(store)).toBe(3);
    expect((await store.driver.list('data/')).keys).toHaveLength(4);
    expect((await store.driver.list('gc/')).keys).toEqual([]);
  });

  it('keeps blobs inside the grace period and pinned blobs', async () => {
    const store = await openStore('memory:');
    const young = await store.put(Buffer.from('young'));
    expect((await store.gc({ graceMs: 60_000 })).candidates).toEqual([]);
    await store.pin(young.digest, { until: new Date(Date.now() + 60_000) });
    expect((await store.gc({ graceMs: 0 })).candidates).toEqual([]);
    await store.unpin(young.digest);
    expect((await store.gc({ graceMs: 0 })).swept).toBe(1);
  });

  it('keeps untagged manifests by default and collects them with untagged: delete', async () => {
    const store = await openStore('memory:');
    const { manifest, parts } = await pushImage(store, 'app', 'old', ['shared', 'only-old']);
    await pushImage(store, 'app', 'new', ['shared', 'only-new']);
    await store.repository('app').tags.delete('old');
    expect((await store.gc({ graceMs: 0 })).swept).toBe(0);
    const report = await store.gc({ graceMs: 0, untagged: 'delete' });
    expect(report.candidates.sort()).toEqual(
      [manifest.digest, parts[1]?.digest as string, sha256(Buffer.from('config of shared,only-old'))].sort(),
    );
    expect(await codeOf(store.repository('app').manifests.get(manifest.digest))).toBe('MANIFEST_UNKNOWN');
    expect((await store.driver.list('repositories/app/_manifests/')).keys).toHaveLength(1);
    expect(await assertTagsComplete(store)).toBe(3);
  });

  it('follows index children and keeps referrers of live manifests', async () => {
    const store = await openStore('memory:');
    const repo = store.repository('multi');
    const config = blob('cfg');
    const layer = blob('arm64 layer');
    await repo.blobs.put(config.bytes);
    await repo.blobs.put(layer.bytes);
    const child = await repo.manifests.put(imageManifest(config, [layer]), {
      mediaType: MediaTypes.ociManifest,
    });
    const index = await repo.manifests.put(indexManifest([child]), {
      mediaType: MediaTypes.ociIndex,
      tag: 'latest',
    });
    const signature = await repo.manifests.put(
      imageManifest(config, [], {
        subject: { mediaType: MediaTypes.ociIndex, digest: index.digest, size: index.size },
      }),
      { mediaType: MediaTypes.ociManifest },
    );
    const report = await store.gc({ graceMs: 0, untagged: 'delete' });
    expect(report.candidates).toEqual([]);
    expect(report.marked).toBe(5);
    expect((await repo.referrers(index.digest)).map((r) => r.digest)).toEqual([signature.digest]);
  });

  it('dry run deletes nothing and names exactly what the real run then deletes', async () => {
    const store = await openStore('memory:');
    await pushImage(store, 'a', 'v1', ['l1']);
    for (let i = 0; i < 5; i++) await store.put(randomBytes(100));
    const keys = (await store.driver.list('')).keys;
    const dry = await store.gc({ graceMs: 0, dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.candidates).toHaveLength(5);
    expect((await store.driver.list('')).keys).toEqual(keys);
    const real = await store.gc({ graceMs: 0 });
    expect(real.candidates).toEqual(dry.candidates);
    expect(real.swept).toBe(5);
  });

  it('refuses a second GC while one holds the lock, across store instances', async () => {
    const backend = new MemoryBackend();
    const a = await openStore(createMemoryDriver({ backend }));
    const b = await openStore(createMemoryDriver({ backend }));
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = a.gc({ graceMs: 0, afterPhase: (phase) => (phase === 'mark' ? held : undefined) });
    await sleep(20);
    expect(await codeOf(b.gc({ graceMs: 0 }))).toBe('UNAVAILABLE');
    release();
    await first;
    expect((await b.gc({ graceMs: 0 })).dryRun).toBe(false);
  });

  it('takes over the lock of a GC that died', async () => {
    const store = await openStore('memory:');
    await store.driver.write(
      'gc/lock',
      Buffer.from(JSON.stringify({ owner: 'dead', expires: Date.now() - 1 })),
    );
    expect((await store.gc({ graceMs: 0 })).swept).toBe(0);
  });

  it('resurrects a tombstoned blob that a push references before the sweep', async () => {
    const store = await openStore('memory:');
    const layer = Buffer.from('layer that gets re-pushed');
    const { digest } = await store.repository('a').blobs.put(layer);
    const report = await store.gc({
      graceMs: 0,
      afterPhase: async (phase) => {
        if (phase !== 'tombstone') return;
        // A push of the same layer in another repository: a dedup hit, no data written.
        const again = await store.repository('b').blobs.put(layer);
        expect(again.deduplicated).toBe(true);
      },
    });
    expect(report.candidates).toEqual([digest]);
    expect(report.resurrected).toBe(1);
    expect(report.swept).toBe(0);
    expect(sha256(await collectBody(await store.repository('b').blobs.get(digest, { verify: true })))).toBe(
      digest,
    );
    expect((await store.driver.list('gc/')).keys).toEqual([]);
  });

  it('finishes a GC that died mid-sweep without bringing back an index whose bytes it deleted', async () => {
    // Regression (batched intents): a batch's intent outlives the blobs it already swept.
    // Those were touched before (dedup hits), so on replay their touch has changed (it
    // was deleted); restoring their index would point it at deleted bytes.
    const backend = new MemoryBackend();
    const store = await openStore(createMemoryDriver({ backend }));
    const digests: string[] = [];
    for (let i = 0; i < 600; i++) {
      const bytes = Buffer.from(`touched garbage ${i}`);
      digests.push((await store.put(bytes)).digest);
      expect((await store.put(bytes)).deduplicated).toBe(true); // touches it
    }
    expect((await store.driver.list('touches/')).keys).toHaveLength(600);
    const dying = await openStore(dieAfter(createMemoryDriver({ backend }), 'data/', 520));
    expect(await codeOf(dying.gc({ graceMs: 0, concurrency: 1, leaseMs: 20 }))).toBe('ABORTED');
    // 600 candidates: the first batch (512) was finished and retired, the second is half done.
    expect((await store.driver.list('gc/intents/')).keys).toHaveLength(1);
    await sleep(40); // the dead run's lock lease runs out
    const report = await store.gc({ graceMs: 0 });
    expect(report.resurrected).toBe(0);
    for (const digest of digests) expect(await store.stat(digest), digest).toBeNull();
    expect((await store.driver.list('gc/')).keys).toEqual([]);
    expect((await store.driver.list('data/')).keys).toEqual([]);
    expect((await store.driver.list('blobs/')).keys).toEqual([]);
  });

  it('fails closed: an unreadable root manifest stops GC before anything is deleted', async () => {
    const store = await openStore('memory:');
    const { manifest } = await pushImage(store, 'a', 'v1', ['l1']);
    await store.put(Buffer.from('garbage that would be swept'));
    await store.driver.write(await store.layout.dataKey(manifest.digest), Buffer.from('{not json'));
    const keys = (await store.driver.list('')).keys;
    expect(await codeOf(store.gc({ graceMs: 0 }))).toBe('MANIFEST_INVALID');
    expect((await store.driver.list('')).keys).toEqual(keys);
  });

  it('purges idle uploads and orphaned bytes, keeps live uploads', async () => {
    const store = await openStore('memory:');
    const idle = await store.uploads.start();
    await idle.append(randomBytes(200 * 1024), { offset: 0 });
    await store.driver.write('data/00/00/00000000000000000000000000000000', Buffer.from('orphan'));
    // A refused put of a new digest writes no touch record (only a hit is touched)…
    expect(await codeOf(store.put(Buffer.from('x'), { expected: sha256(Buffer.from('y')) }))).toBe(
      'DIGEST_INVALID',
    );
    expect((await store.driver.list('touches/')).keys).toEqual([]);
    // …but a touch can outlive its blob (a push touched it as GC swept it): GC drops it.
    await touch(store.driver, sha256(Buffer.from('swept meanwhile')));
    expect((await store.driver.list('touches/')).keys).toHaveLength(1);
    await sleep(5);
    const live = await store.uploads.start();
    await live.append(Buffer.from('x'), { offset: 0 });
    const report = await store.gc({ graceMs: 0, uploadTtlMs: 3, orphanGraceMs: 0 });
    expect(report.uploadsPurged).toBe(1);
    expect(report.orphansRemoved).toBe(2);
    expect((await store.driver.list('touches/')).keys).toEqual([]);
    expect(await codeOf(store.uploads.resume(idle.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    await live.append(Buffer.from('y'), { offset: 1 });
    expect((await live.commit({ digest: sha256(Buffer.from('xy')) })).size).toBe(2);
  });

  it('keeps the bytes of an upload that commits after GC listed the indexes, with no orphan grace', async () => {
    // The orphan pass reuses the index listing of `candidates`; an upload committed after
    // it is covered by the live uploads noted before that listing.
    const store = await openStore('memory:');
    const bytes = randomBytes(64 * 1024);
    const upload = await store.repository('a').uploads.start();
    await upload.append(bytes, { offset: 0 });
    let committed: string | undefined;
    const report = await store.gc({
      graceMs: 0,
      orphanGraceMs: 0,
      afterPhase: async (phase) => {
        if (phase === 'candidates') committed = (await upload.commit({ digest: sha256(bytes) })).digest;
      },
    });
    expect(committed).toBe(sha256(bytes));
    expect(report.orphansRemoved).toBe(0);
    const read = await collectBody(await store.repository('a').blobs.get(sha256(bytes), { verify: true }));
    expect(read.equals(bytes)).toBe(true);
  });

  it('keeps the bytes of a blob put after GC listed the indexes, however long the sweep takes', async () => {
    // The orphan cutoff counts from the run's start: bytes published after the listing are
    // not among the referenced ones, and a sweep longer than the grace must not make them old.
    const store = await openStore('memory:');
    const bytes = Buffer.from('put while GC sweeps for longer than the orphan grace');
    const report = await store.gc({
      graceMs: 0,
      orphanGraceMs: 200,
      afterPhase: async (phase) => {
        if (phase === 'candidates') await store.put(bytes);
        if (phase === 'sweep') await sleep(400);
      },
    });
    expect(report.orphansRemoved).toBe(0);
    expect((await collectBody(await store.get(sha256(bytes), { verify: true }))).equals(bytes)).toBe(true);
  });

  it('puts back a link that a push re-created while GC removed it, without reading it first', async () => {
    const store = await openStore('memory:');
    const layer = Buffer.from('swept, then pushed again');
    const { digest } = await store.repository('a').blobs.put(layer);
    const driver = store.driver;
    const deleteKey = driver.delete.bind(driver);
    let pushed = false;
    driver.delete = async (key, options) => {
      if (key.includes('/_blobs/') && !pushed) {
        // The blob is swept; its link is next. A push now republishes it and writes its
        // link, which this delete then removes: GC must see the index and put it back.
        pushed = true;
        expect((await store.repository('a').blobs.put(layer)).deduplicated).toBe(false);
      }
      return deleteKey(key, options);
    };
    const report = await store.gc({ graceMs: 0 });
    expect(report.swept).toBe(1);
    expect(pushed).toBe(true);
    const link = await store.repository('a').blobs.linkRecord(parseDigest(digest));
    expect(link).toMatchObject({ digest, size: layer.length });
    expect(Date.parse(link?.linked ?? '')).toBeGreaterThan(Date.now() - 60_000);
    expect(sha256(await collectBody(await store.repository('a').blobs.get(digest, { verify: true })))).toBe(
      digest,
    );
  });

  it('loses nothing when GC races 8 pushers for 200 iterations with paused phases', async () => {
    const seed = Date.now() % 1_000_000;
    const next = random(seed);
    const backend = new MemoryBackend();
    const pushStore = await openStore(jitter(createMemoryDriver({ backend }), next, 2));
    const gcStore = await openStore(jitter(createMemoryDriver({ backend }), next, 2));
    const pool = Array.from({ length: 12 }, (_, i) => `shared layer ${i}`);
    const repos = ['r0', 'r1', 'r2', 'r3'];
    const tags = ['t0', 't1', 't2'];
    const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)] as T;
    const outcomes = { pushed: 0, repushed: 0, mounted: 0, untagged: 0, refused: 0 };
    const tolerated = new Set(['BLOB_UNKNOWN', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_UNKNOWN']);
    let running = true;
    let gcRuns = 0;
    let swept = 0;
    let resurrected = 0;
    const collector = (async () => {
      while (running) {
        const report = await gcStore.gc({
          graceMs: 40,
          untagged: 'delete',
          afterPhase: async () => {
            await sleep(next() * 15);
          },
        });
        gcRuns += 1;
        swept += report.swept;
        resurrected += report.resurrected;
      }
    })();
    const pusher = async (id: number) => {
      // 25 rounds each (200 in all), and on until GC has run a few times meanwhile.
      for (let i = 0; i < 25 || gcRuns < 3; i++) {
        const repo = pick(repos);
        const tag = pick(tags);
        try {
          const action = next();
          if (action < 0.4) {
            await pushImage(pushStore, repo, tag, [pick(pool), `unique ${id}-${i}-${seed}`]);
            outcomes.pushed += 1;
          } else if (action < 0.65) {
            await pushImage(pushStore, repo, tag, [pick(pool), pick(pool)]); // dedup hits
            outcomes.repushed += 1;
          } else if (action < 0.85) {
            const from = pick(repos);
            const layer = blob(pick(pool));
            await pushStore.repository(repo).blobs.mount(layer.digest, from);
            const config = blob(`mount config ${id}-${i}`);
            await pushStore.repository(repo).blobs.put(config.bytes);
            const bytes = imageManifest(config, [layer]);
            await pushStore.repository(repo).manifests.put(bytes, { mediaType: MediaTypes.ociManifest, tag });
            outcomes.mounted += 1;
          } else {
            await pushStore.repository(repo).tags.delete(tag);
            outcomes.untagged += 1;
          }
        } catch (error) {
          const code = (error as { code?: string }).code ?? String(error);
          if (!tolerated.has(code)) throw error; // a lost race is refused cleanly, never worse
          outcomes.refused += 1;
        }
        await sleep(next() * 3);
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, id) => pusher(id)));
    running = false;
    await collector;
    const checked = await assertTagsComplete(pushStore);
    // A quiet GC afterwards must find the store consistent and still lose nothing tagged.
    await gcStore.gc({ graceMs: 0, untagged: 'delete' });
    expect(await assertTagsComplete(pushStore), `seed ${seed}`).toBe(checked);
    console.log(
      `gc race seed ${seed}: ${JSON.stringify(outcomes)}, ${gcRuns} GC runs swept ${swept}, resurrected ${resurrected}, ${checked} children verified`,
    );
    expect(gcRuns).toBeGreaterThan(2);
    expect(swept).toBeGreaterThan(0);
  }, 120_000);
});
