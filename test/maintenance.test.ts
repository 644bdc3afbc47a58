import { describe, expect, it } from 'vitest';
import { collectBody } from '../src/bytes.js';
import { MediaTypes } from '../src/manifest.js';
import { type BlobStore, openStore } from '../src/store.js';
import { codeOf, sha256 } from './helpers.js';
import { blob, imageManifest } from './oci.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function pushRevision(store: BlobStore, repo: string, tag: string, text: string) {
  const r = store.repository(repo);
  const config = blob(`config ${text}`);
  const layer = blob(`layer ${text}`);
  await r.blobs.put(config.bytes);
  await r.blobs.put(layer.bytes);
  return r.manifests.put(imageManifest(config, [layer]), { mediaType: MediaTypes.ociManifest, tag });
}

describe('prune', () => {
  it('keeps the newest N revisions per tag, then GC frees the rest', async () => {
    const store = await openStore('memory:');
    const revisions = [];
    for (let i = 0; i < 4; i++) {
      revisions.push(await pushRevision(store, 'app', 'latest', `rev ${i}`));
      await sleep(2);
    }
    await store.repository('app').tags.delete('latest');
    await store.repository('app').tags.set('latest', revisions[3]?.digest as string);
    const dry = await store.prune({ keepRevisions: 2, untaggedOlderThanMs: 0, dryRun: true });
    expect(dry.manifestsRemoved.sort()).toEqual(
      revisions
        .slice(0, 3)
        .map((r) => `app@${r.digest}`)
        .sort(),
    );
    const report = await store.prune({ keepRevisions: 1, untaggedOlderThanMs: 0 });
    expect(report.manifestsRemoved).toHaveLength(3);
    expect((await store.repository('app').tags.history('latest')).map((h) => h.digest)).toEqual([
      revisions[3]?.digest,
    ]);
    const gc = await store.gc({ graceMs: 0 });
    expect(gc.swept).toBe(9); // three manifests, their configs and layers
    expect((await store.repository('app').manifests.get('latest')).digest).toBe(revisions[3]?.digest);
  });

  it('trims tag history to keepRevisions', async () => {
    const store = await openStore('memory:');
    for (let i = 0; i < 5; i++) {
      await pushRevision(store, 'app', 'v', `r${i}`);
      await sleep(2);
    }
    const report = await store.prune({ keepRevisions: 2 });
    expect(report.historyRemoved).toBe(3);
    expect(await store.repository('app').tags.history('v')).toHaveLength(2);
    expect(report.manifestsRemoved).toEqual([]);
  });
});

describe('scrub', () => {
  it('finds corrupt blobs, quarantines them, and a re-push replaces them', async () => {
    const store = await openStore('memory:');
    const good = await store.put(Buffer.from('good bytes'));
    const bad = blob('bytes that rot');
    await store.put(bad.bytes);
    await store.driver.write(await store.layout.dataKey(bad.digest), Buffer.from('bytes that r0t'));
    const found = await store.scrub();
    expect(found).toMatchObject({ checked: 2, corrupt: [bad.digest], quarantined: 0 });
    const quarantined = await store.scrub({ quarantine: true });
    expect(quarantined.quarantined).toBe(1);
    expect(await store.stat(bad.digest)).toBeNull();
    expect(await codeOf(store.get(bad.digest))).toBe('BLOB_UNKNOWN');
    expect(await store.stat(good.digest)).not.toBeNull();
    const again = await store.put(bad.bytes);
    expect(again.deduplicated).toBe(false);
    expect(sha256(await collectBody(await store.get(bad.digest, { verify: true })))).toBe(bad.digest);
    expect((await store.scrub()).corrupt).toEqual([]);
  });
});

describe('usage', () => {
  it('counts one physical copy per digest and logical bytes per repository', async () => {
    const store = await openStore('memory:');
    const shared = Buffer.alloc(1000, 1);
    await store.repository('a').blobs.put(shared);
    await store.repository('b').blobs.put(shared);
    await store.repository('c').blobs.mount(sha256(shared), 'a');
    await store.repository('c').blobs.put(Buffer.alloc(500, 2));
    expect(await store.usage()).toEqual({
      blobs: 2,
      physicalBytes: 1500,
      logicalBytes: 3500,
      dedupRatio: 3500 / 1500,
      repositories: 3,
    });
  });
});
