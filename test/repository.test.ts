import { describe, expect, it } from 'vitest';
import { collectBody } from '../src/bytes.js';
import { MediaTypes } from '../src/manifest.js';
import { openStore } from '../src/store.js';
import { codeOf, sha256 } from './helpers.js';
import { blob, imageManifest, indexManifest } from './oci.js';

describe('repositories', () => {
  it.each(['', 'A', 'a/', '/a', 'a//b', 'a..b', 'a-', '-a', 'a_', 'a___b', 'a/.b', 'x'.repeat(256)])(
    'rejects repository name %j with NAME_INVALID',
    async (name) => {
      const store = await openStore('memory:');
      expect(await codeOf(async () => store.repository(name))).toBe('NAME_INVALID');
    },
  );

  it.each(['a', 'library/ubuntu', 'a.b_c__d--e/f0', `${'a'.repeat(255)}`])('accepts %j', async (name) => {
    const store = await openStore('memory:');
    expect(store.repository(name).name).toBe(name);
  });

  it('shows a blob only where it is linked; mount links without copying', async () => {
    const store = await openStore('memory:');
    const a = store.repository('team/a');
    const b = store.repository('team/b');
    const layer = blob('layer bytes');
    await a.blobs.put(layer.bytes);
    expect(await a.blobs.stat(layer.digest)).toEqual({ digest: layer.digest, size: layer.bytes.length });
    expect(await b.blobs.stat(layer.digest)).toBeNull();
    expect(await codeOf(b.blobs.get(layer.digest))).toBe('BLOB_UNKNOWN');
    expect(await codeOf(b.blobs.mount(layer.digest, 'team/c'))).toBe('BLOB_UNKNOWN');
    const dataKeys = (await store.driver.list('data/')).keys;
    expect(await b.blobs.mount(layer.digest, 'team/a')).toEqual({
      digest: layer.digest,
      size: layer.bytes.length,
    });
    expect((await collectBody(await b.blobs.get(layer.digest, { verify: true }))).equals(layer.bytes)).toBe(
      true,
    );
    expect((await store.driver.list('data/')).keys).toEqual(dataKeys);
    expect(await b.blobs.unlink(layer.digest)).toBe(true);
    expect(await b.blobs.stat(layer.digest)).toBeNull();
    expect(await codeOf(b.blobs.link(sha256(Buffer.from('never stored'))))).toBe('BLOB_UNKNOWN');
  });

  it('links an upload started for a repository on commit, and only resumes it there', async () => {
    const store = await openStore('memory:');
    const repo = store.repository('up');
    const layer = blob('uploaded layer');
    const upload = await repo.uploads.start();
    await upload.append(layer.bytes, { offset: 0 });
    expect(await codeOf(store.uploads.resume(upload.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(await codeOf(store.repository('other').uploads.resume(upload.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    await (await repo.uploads.resume(upload.id)).commit({ digest: layer.digest });
    expect(await repo.blobs.stat(layer.digest)).not.toBeNull();
    expect(await store.repository('other').blobs.stat(layer.digest)).toBeNull();
  });

  it('stores manifests byte-exact, tags them with history, and lists tags in pages', async () => {
    const store = await openStore('memory:');
    const repo = store.repository('app');
    const config = blob('{"config":1}');
    const layer = blob('layer-1');
    await repo.blobs.put(config.bytes);
    await repo.blobs.put(layer.bytes);
    const bytes = Buffer.concat([imageManifest(config, [layer]), Buffer.from('\n  ')]);
    const put = await repo.manifests.put(bytes, { mediaType: MediaTypes.ociManifest, tag: 'v1' });
    expect(put.digest).toBe(sha256(bytes));
    const got = await repo.manifests.get('v1');
    expect(got.bytes.equals(bytes)).toBe(true);
    expect(got.mediaType).toBe(MediaTypes.ociManifest);
    expect((await repo.manifests.get(put.digest)).digest).toBe(put.digest);
    for (const tag of ['b', 'a', 'c', 'latest']) await repo.tags.set(tag, put.digest);
    expect(await repo.tags.list()).toEqual(['a', 'b', 'c', 'latest', 'v1']);
    expect(await repo.tags.list({ n: 2 })).toEqual(['a', 'b']);
    expect(await repo.tags.list({ last: 'b', n: 2 })).toEqual(['c', 'latest']);
    const second = imageManifest(config, [layer], { annotations: { rev: '2' } });
    const put2 = await repo.manifests.put(second, { mediaType: MediaTypes.ociManifest, tag: 'v1' });
    const history = await repo.tags.history('v1');
    expect(history.map((h) => h.digest)).toEqual([put2.digest, put.digest]);
    expect(history[0]?.at).toBeInstanceOf(Date);
    expect(await repo.tags.delete('v1')).toBe(true);
    expect(await codeOf(repo.manifests.get('v1'))).toBe('MANIFEST_UNKNOWN');
    expect((await repo.manifests.get(put2.digest)).digest).toBe(put2.digest); // untagged, still there
    expect(await codeOf(repo.manifests.get('bad tag!'))).toBe('TAG_INVALID');
    expect(await codeOf(repo.manifests.get('sha256:xyz'))).toBe('DIGEST_INVALID');
    expect(await store.repositories()).toEqual(['app']);
  });

  it('rejects bad manifests with the right code and stores nothing', async () => {
    const store = await openStore('memory:');
    const repo = store.repository('bad');
    const config = blob('cfg');
    const layer = blob('layer');
    await repo.blobs.put(config.bytes);
    // Stored objects only: checking a manifest's children touches the existing ones
    // (liveness records, ../src/liveness.ts), which is not storing the manifest.
    const stored = async () => (await store.driver.list('')).keys.filter((k) => !k.startsWith('touches/'));
    const before = await stored();
    const cases: [Buffer, string, string][] = [
      [Buffer.from('{not json'), MediaTypes.ociManifest, 'MANIFEST_INVALID'],
      [imageManifest(config, []), 'application/json', 'MANIFEST_INVALID'],
      [imageManifest(config, []), MediaTypes.dockerManifest, 'MANIFEST_INVALID'],
      [Buffer.from(JSON.stringify({ schemaVersion: 1 })), MediaTypes.ociManifest, 'MANIFEST_INVALID'],
      [
        Buffer.from(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] })),
        MediaTypes.ociManifest,
        'MANIFEST_INVALID',
      ],
      [imageManifest(config, [layer]), MediaTypes.ociManifest, 'MANIFEST_BLOB_UNKNOWN'],
      [
        indexManifest([{ digest: sha256(Buffer.from('nope')), size: 4 }]),
        MediaTypes.ociIndex,
        'MANIFEST_BLOB_UNKNOWN',
      ],
      [Buffer.alloc(4 * 1024 * 1024 + 1, 0x20), MediaTypes.ociManifest, 'MANIFEST_INVALID'],
    ];
    for (const [bytes, mediaType, code] of cases) {
      expect(await codeOf(repo.manifests.put(bytes, { mediaType })), `${mediaType} ${bytes.length}`).toBe(
        code,
      );
    }
    expect(
      await codeOf(
        repo.manifests.put(imageManifest(config, []), { mediaType: MediaTypes.ociManifest, tag: '-x' }),
      ),
    ).toBe('TAG_INVALID');
    expect(await stored()).toEqual(before);
  });

  it('checks an index against manifests in the repository and serves referrers', async () => {
    const store = await openStore('memory:');
    const repo = store.repository('multi');
    const config = blob('cfg');
    await repo.blobs.put(config.bytes);
    const child = await repo.manifests.put(imageManifest(config, []), { mediaType: MediaTypes.ociManifest });
    const index = await repo.manifests.put(indexManifest([child]), {
      mediaType: MediaTypes.ociIndex,
      tag: 'multi',
    });
    expect(
      await codeOf(
        store
          .repository('elsewhere')
          .manifests.put(indexManifest([child]), { mediaType: MediaTypes.ociIndex }),
      ),
    ).toBe('MANIFEST_BLOB_UNKNOWN');
    const signature = imageManifest(config, [], {
      artifactType: 'application/vnd.example.signature',
      subject: { mediaType: MediaTypes.ociIndex, digest: index.digest, size: index.size },
    });
    const sbom = imageManifest(config, [], {
      artifactType: 'application/spdx+json',
      subject: { mediaType: MediaTypes.ociIndex, digest: index.digest, size: index.size },
    });
    const sig = await repo.manifests.put(signature, { mediaType: MediaTypes.ociManifest });
    await repo.manifests.put(sbom, { mediaType: MediaTypes.ociManifest });
    expect((await repo.referrers(index.digest)).map((r) => r.artifactType).sort()).toEqual([
      'application/spdx+json',
      'application/vnd.example.signature',
    ]);
    expect((await repo.referrers(index.digest, { artifactType: 'application/spdx+json' })).length).toBe(1);
    await repo.manifests.delete(sig.digest);
    expect((await repo.referrers(index.digest)).map((r) => r.artifactType)).toEqual([
      'application/spdx+json',
    ]);
    expect(await repo.manifests.delete(index.digest)).toBe(true);
    expect(await repo.tags.list()).toEqual([]);
  });
});
