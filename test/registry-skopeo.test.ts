/**
 * The registry endpoint proven with a real client: skopeo (Debian package) copies OCI
 * image layouts built here (3 layers of 64 MiB and 200 of 64 KiB) into the handler on an
 * fs store and back out, with --preserve-digests, and the bytes must match exactly. A
 * second push to another repository must mount every layer; pushes without the right
 * credentials must fail and leave nothing behind; a GC running through a loop of pushes
 * must lose nothing.
 *
 * skopeo must be installed (`apt-get install -y --no-install-recommends skopeo`): without
 * it these tests fail, they are not skipped.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addImage, type BuiltImage, blobPath, verifyImage } from '../scripts/registry/oci-layout.js';
import { run, skopeo } from '../scripts/registry/servers.js';
import type { GcReport } from '../src/gc.js';
import { staticUsers } from '../src/registry/index.js';
import { type BlobStore, openStore } from '../src/store.js';
import { basic, call, startRegistry, type TestRegistry } from './fixtures/registry-harness.js';
import { MiB } from './helpers.js';

const KiB = 1024;
let work: string;
let layout: string;
let full: BuiltImage;
let small: BuiltImage;

beforeAll(async () => {
  const found = await run('sh', ['-c', 'command -v skopeo']);
  expect(found.code, 'skopeo is not installed: apt-get install -y --no-install-recommends skopeo').toBe(0);
  work = await mkdtemp(join(tmpdir(), 'blobcore-skopeo-'));
  layout = join(work, 'layout');
  full = await addImage(layout, 'full', [
    ...[1, 2, 3].map((seed) => ({ size: 64 * MiB, seed })),
    ...Array.from({ length: 200 }, (_, i) => ({ size: 64 * KiB, seed: 100 + i })),
  ]);
  small = await addImage(
    layout,
    'small',
    [1, 2, 3].map((i) => ({ size: 64 * KiB, seed: 7000 + i })),
  );
}, 120_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function fsStore(name: string): Promise<BlobStore> {
  return openStore(`file://${join(work, name)}?durability=none`);
}

async function push(source: string, target: string, extra: string[] = []) {
  return skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', ...extra, source, target]);
}

async function pullAndVerify(
  reference: string,
  expected: BuiltImage,
  extra: string[] = [],
  source = layout,
): Promise<void> {
  const dir = join(work, `pulled-${Math.random().toString(16).slice(2)}`);
  const pulled = await skopeo([
    'copy',
    '--src-tls-verify=false',
    '--preserve-digests',
    ...extra,
    reference,
    `oci:${dir}:x`,
  ]);
  expect(pulled.code, pulled.stderr).toBe(0);
  const back = await verifyImage(dir, 'x'); // every blob re-hashed
  expect(back.manifest.digest).toBe(expected.manifest.digest);
  expect(back.config.digest).toBe(expected.config.digest);
  expect(back.layers.map((l) => l.digest)).toEqual(expected.layers.map((l) => l.digest));
  const original = await readFile(blobPath(source, expected.manifest.digest));
  expect((await readFile(blobPath(dir, back.manifest.digest))).equals(original)).toBe(true);
  await rm(dir, { recursive: true, force: true });
}

describe('registry with skopeo', () => {
  let registry: TestRegistry;
  let store: BlobStore;

  beforeAll(async () => {
    store = await fsStore('main');
    registry = await startRegistry(store);
  });
  afterAll(async () => {
    await registry?.close();
    await store?.close();
  });

  it('copies a 203-layer image in and back out with --preserve-digests, byte for byte', async () => {
    const pushed = await push(`oci:${layout}:full`, `docker://${registry.host}/proj/app:v1`);
    expect(pushed.code, pushed.stderr).toBe(0);
    // the registry holds exactly what was pushed
    const manifest = await call(registry.url, '/v2/proj/app/manifests/v1');
    expect(manifest.headers['docker-content-digest']).toBe(full.manifest.digest);
    expect(manifest.body.equals(await readFile(blobPath(layout, full.manifest.digest)))).toBe(true);
    const uploads = registry.log.filter((e) => e.method === 'PUT' && e.url.includes('/blobs/uploads/'));
    expect(uploads.length).toBe(full.layers.length + 1); // every layer and the config, once each
    expect(registry.log.filter((e) => e.status >= 500)).toEqual([]);
    await pullAndVerify(`docker://${registry.host}/proj/app:v1`, full);
  }, 300_000);

  it('a second push to another repository mounts every layer instead of uploading it', async () => {
    const dataBefore = (await store.driver.list('data/', { limit: 1000 })).keys.length;
    const from = registry.log.length;
    const pushed = await push(`oci:${layout}:full`, `docker://${registry.host}/proj/copy:v1`);
    expect(pushed.code, pushed.stderr).toBe(0);
    const entries = registry.log.slice(from);
    const mounted = entries.filter(
      (e) => e.method === 'POST' && e.url.includes('mount=') && e.status === 201,
    );
    const mountedDigests = new Set(
      mounted.map((e) => decodeURIComponent(/mount=([^&]+)/.exec(e.url)?.[1] ?? '')),
    );
    for (const layer of full.layers) expect(mountedDigests.has(layer.digest), layer.digest).toBe(true);
    const patched = entries.filter((e) => e.method === 'PATCH');
    expect(patched.length).toBeLessThanOrEqual(1); // at most the config travels again (and dedups)
    expect((await store.driver.list('data/', { limit: 1000 })).keys.length).toBe(dataBefore);
    await pullAndVerify(`docker://${registry.host}/proj/copy:v1`, full);
  }, 300_000);
});

describe('registry with skopeo: access control', () => {
  let registry: TestRegistry;
  let store: BlobStore;
  const users = {
    viewer: bcrypt.hashSync('view-pw', 4),
    editor: bcrypt.hashSync('edit-pw', 4),
  };

  beforeAll(async () => {
    store = await fsStore('auth');
    registry = await startRegistry(store, {
      authorize: staticUsers({ users, access: 'viewer team/* pull\neditor team/* push' }),
    });
  });
  afterAll(async () => {
    await registry?.close();
    await store?.close();
  });

  it('refuses pushes without push rights cleanly (nothing left behind), accepts the editor’s', async () => {
    const target = `docker://${registry.host}/team/app:v1`;
    const anonymous = await push(`oci:${layout}:small`, target);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/unauthorized|authentication required/i);
    const viewer = await push(`oci:${layout}:small`, target, ['--dest-creds', 'viewer:view-pw']);
    expect(viewer.code).not.toBe(0);
    expect(viewer.stderr).toMatch(/denied|forbidden|403/i);
    const wrong = await push(`oci:${layout}:small`, target, ['--dest-creds', 'editor:wrong']);
    expect(wrong.code).not.toBe(0);
    // nothing of the refused pushes is in the store: no repository, no session, no data
    expect(await store.repositories()).toEqual([]);
    expect((await store.driver.list('uploads/')).keys).toEqual([]);
    expect((await store.driver.list('data/')).keys).toEqual([]);
    const refused = registry.log.filter((e) => e.status === 401 || e.status === 403);
    expect(refused.length).toBeGreaterThan(0);

    const editor = await push(`oci:${layout}:small`, target, ['--dest-creds', 'editor:edit-pw']);
    expect(editor.code, editor.stderr).toBe(0);
    await pullAndVerify(target, small, ['--src-creds', 'viewer:view-pw']);
    const anonymousPull = await skopeo([
      'copy',
      '--src-tls-verify=false',
      target,
      `oci:${join(work, 'nope')}:x`,
    ]);
    expect(anonymousPull.code).not.toBe(0);
    const tags = await call(registry.url, '/v2/team/app/tags/list', { headers: basic('viewer', 'view-pw') });
    expect(tags.json).toEqual({ name: 'team/app', tags: ['v1'] });
  }, 120_000);
});

describe('registry with skopeo: GC during a push loop', () => {
  it('loses nothing: every pushed tag pulls back whole while GC sweeps garbage concurrently', async () => {
    const store = await fsStore('gc');
    const registry = await startRegistry(store);
    const gcLayout = join(work, 'gc-layout');
    const rounds = 8;
    const reports: GcReport[] = [];
    let stop = false;
    let gcError: unknown;
    const collector = (async () => {
      while (!stop) {
        try {
          reports.push(await store.gc({ graceMs: 4000 }));
        } catch (error) {
          gcError = error;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const images: BuiltImage[] = [];
    try {
      const base = { size: 64 * KiB, seed: 9000 };
      for (let i = 0; i < rounds; i++) {
        // A kept image: a base layer shared by all, one of three shared layers, one of its own.
        const kept = await addImage(gcLayout, `t${i}`, [
          base,
          { size: 64 * KiB, seed: 9100 + (i % 3) },
          { size: 64 * KiB, seed: 9200 + i },
        ]);
        images.push(kept);
        const pushed = await push(`oci:${gcLayout}:t${i}`, `docker://${registry.host}/loop/app:t${i}`);
        expect(pushed.code, `round ${i}: ${pushed.stderr}`).toBe(0);
        // Garbage: a junk image that reuses a layer of the junk image of three rounds ago
        // (unreferenced for longer than the grace period, so GC may be sweeping it while
        // skopeo finds it with HEAD and skips the upload), then its manifest is deleted.
        // The grace period (4 s) only has to outlast one push (blob commit → manifest PUT).
        const junk = await addImage(gcLayout, `junk${i}`, [
          { size: 64 * KiB, seed: 9300 + i },
          { size: 64 * KiB, seed: 9300 + Math.max(0, i - 3) },
          { size: 64 * KiB, seed: 9100 + ((i + 1) % 3) },
        ]);
        const junkPush = await push(`oci:${gcLayout}:junk${i}`, `docker://${registry.host}/loop/junk:j${i}`);
        expect(junkPush.code, `junk round ${i}: ${junkPush.stderr}`).toBe(0);
        const deleted = await call(registry.url, `/v2/loop/junk/manifests/${junk.manifest.digest}`, {
          method: 'DELETE',
        });
        expect(deleted.status).toBe(202);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    } finally {
      stop = true;
      await collector;
    }
    expect(gcError).toBeUndefined();
    reports.push(await store.gc({ graceMs: 0 }));
    const swept = reports.reduce((sum, report) => sum + report.swept, 0);
    expect(swept, `GC runs: ${reports.length}`).toBeGreaterThan(0);
    for (let i = 0; i < rounds; i++) {
      await pullAndVerify(`docker://${registry.host}/loop/app:t${i}`, images[i] as BuiltImage, [], gcLayout);
    }
    await registry.close();
    await store.close();
  }, 300_000);
});
