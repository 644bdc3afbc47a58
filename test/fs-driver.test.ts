/**
 * fs driver on real volumes: a loop-mounted 64 MiB ext4 image and a 16 MiB tmpfs made by
 * scripts/volumes/volume.sh (the tests fail, never skip, when they cannot be mounted),
 * and child processes standing in for other processes on the same host (see
 * fixtures/fs-harness/spawn.ts: they run the TypeScript sources, no build needed).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deferred } from '../conformance/helpers.js';
import {
  createFsDriver,
  createFsDriverFromUrl,
  type FsDriver,
  fsDriverOptionsFromUrl,
} from '../drivers/fs/index.js';
import { currentOwner, KeyLocks } from '../drivers/fs/owner.js';
import { NO_RETRY, Sys } from '../drivers/fs/sys.js';
import { pvcDriverOptionsFromUrl } from '../drivers/pvc/index.js';
import { collectBody } from '../src/bytes.js';
import type { Driver } from '../src/driver.js';
import { blobError } from '../src/errors.js';
import {
  entries,
  hashing,
  listAll,
  MiB,
  openPaths,
  randomStream,
  readText,
  rejectsCode,
  sha256Of,
  waitFor,
} from './fixtures/fs-harness/helpers.js';
import { type DriverSpec, runChild, runOps, startChild } from './fixtures/fs-harness/spawn.js';
import { ext4Volume, remount, tmpfsVolume, type Volume } from './fixtures/fs-harness/volumes.js';

const LONG = 120_000;
let ext4: Volume;
let tmpfs: Volume;
let scratch: string;
let counter = 0;

beforeAll(() => {
  ext4 = ext4Volume(64);
  tmpfs = tmpfsVolume('16m');
  scratch = mkdtempSync(join(tmpdir(), 'blobcore-fs-test-'));
});
afterAll(() => {
  ext4?.remove();
  tmpfs?.remove();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** A fresh root folder under `base` (the volume or scratch dir). */
function freshRoot(base: string): string {
  counter += 1;
  const root = join(base, `root-${process.pid}-${counter}`);
  mkdirSync(root, { recursive: true });
  return root;
}

function spec(root: string, extra: Record<string, unknown> = {}): DriverSpec {
  return { kind: 'fs', options: { root, durability: 'none', leaseMs: 600_000, ...extra } };
}

describe('fs driver: layout, format and URLs', () => {
  it('creates the v1 layout and maps keys to files, directory segments suffixed with ","', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root });
    await driver.write('a/b/c', Buffer.from('abc'));
    await driver.write('a', Buffer.from('a'));
    const format = JSON.parse(readFileSync(join(root, 'v1/FORMAT'), 'utf8'));
    expect(format).toMatchObject({ format: 'blobcore-posix', version: 1 });
    for (const dir of ['objects', 'tmp', 'staging', 'locks'])
      expect(statSync(join(root, 'v1', dir)).isDirectory()).toBe(true);
    expect(readFileSync(join(root, 'v1/objects/a,/b,/c'), 'utf8')).toBe('abc');
    expect(readFileSync(join(root, 'v1/objects/a'), 'utf8')).toBe('a');
    expect(driver.objectPath('a/b/c')).toBe(join(root, 'v1/objects/a,/b,/c'));
    const long = 'L'.repeat(255);
    await driver.write(`${long}/x`, Buffer.from('long'));
    expect(await listAll(driver)).toEqual([`${long}/x`, 'a', 'a/b/c']); // byte order: 'L' < 'a'
    expect(await readText(driver, `${long}/x`)).toBe('long');
    await driver.close?.();
  });

  it('lists only objects: temp files, staging, locks and foreign files never appear', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root, durability: 'none' });
    await driver.write('d/k', Buffer.from('1'));
    const handle = await driver.createMultipart('d/pending');
    await driver.uploadPart(handle, 1, 0, Buffer.from('staged'), 6);
    writeFileSync(join(root, 'v1/tmp/foreign.tmp'), 'x');
    writeFileSync(join(root, 'v1/objects/d,/has,comma'), 'x');
    writeFileSync(join(root, 'v1/objects/d,/file-named-like-dir,'), 'x');
    mkdirSync(join(root, 'v1/objects/d,/dir-without-suffix'));
    writeFileSync(join(root, 'v1/objects/d,/dir-without-suffix/k'), 'x');
    expect(await listAll(driver)).toEqual(['d/k']);
    await driver.abortMultipart(handle);
    await driver.close?.();
  });

  it('refuses a root whose format marker names another format (UNSUPPORTED)', async () => {
    const root = freshRoot(scratch);
    mkdirSync(join(root, 'v1'));
    writeFileSync(join(root, 'v1/FORMAT'), JSON.stringify({ format: 'blobcore-posix', version: 2 }));
    const driver = createFsDriver({ root });
    await rejectsCode(driver.stat('x'), 'UNSUPPORTED');
  });

  it('parses file: and pvc: URLs into the documented options', () => {
    expect(fsDriverOptionsFromUrl(new URL('file:///var/lib/blob%20store?durability=data'))).toEqual({
      root: '/var/lib/blob store',
      durability: 'data',
    });
    expect(fsDriverOptionsFromUrl('file:///x?leaseMs=5000&lockTimeoutMs=9000&hardLinks=false')).toEqual({
      root: '/x',
      leaseMs: 5000,
      lockTimeoutMs: 9000,
      hardLinks: false,
    });
    expect(() => fsDriverOptionsFromUrl('file:///x?durability=sometimes')).toThrow(/durability/);
    expect(() => fsDriverOptionsFromUrl('file:///x?color=red')).toThrow(/unknown/);
    expect(() => fsDriverOptionsFromUrl('file://remote-host/x')).toThrow(/local path/);
    expect(pvcDriverOptionsFromUrl('pvc:///mnt/registry?reserve=5%&durability=full')).toEqual({
      root: '/mnt/registry',
      reserve: '5%',
      durability: 'full',
    });
    expect(pvcDriverOptionsFromUrl('pvc:///mnt/registry?reserve=5%25&groupShared=false').reserve).toBe('5%');
    expect(() => pvcDriverOptionsFromUrl('pvc:///m?reserve=lots')).toThrow(/reserve/);
    const driver = createFsDriverFromUrl(`file://${freshRoot(scratch)}?durability=none`);
    expect(driver.durability).toBe('none');
    expect(driver.name).toBe('fs');
  });
});

describe('fs driver: durability modes', () => {
  async function exercise(driver: FsDriver): Promise<void> {
    await driver.write('k/one', Buffer.from('1'));
    await driver.write('k/two', randomStream(3 * MiB));
    const handle = await driver.createMultipart('k/mp');
    const ref = await driver.uploadPart(handle, 1, 0, Buffer.from('part'), 4);
    await driver.completeMultipart(handle, [ref]);
    await driver.delete('k/one');
  }

  it("'none' never fsyncs", async () => {
    const driver = createFsDriver({ root: freshRoot(ext4.path), durability: 'none' });
    await exercise(driver);
    expect(driver.stats()).toEqual({ fileSyncs: 0, dirSyncs: 0 });
  });

  it("'data' fsyncs files before they are published, never directories", async () => {
    const driver = createFsDriver({ root: freshRoot(ext4.path), durability: 'data' });
    await exercise(driver);
    const { fileSyncs, dirSyncs } = driver.stats();
    expect(fileSyncs).toBeGreaterThanOrEqual(4); // two writes, the part, the completed object
    expect(dirSyncs).toBe(0);
  });

  it("'full' (the default) fsyncs the file and the directory of every publish and delete", async () => {
    const driver = createFsDriver({ root: freshRoot(ext4.path) });
    expect(driver.durability).toBe('full');
    await driver.write('k/warm', Buffer.from('w')); // creates k,/ once
    const before = driver.stats();
    await driver.write('k/one', Buffer.from('1'));
    const after = driver.stats();
    expect(after.fileSyncs - before.fileSyncs).toBe(1);
    expect(after.dirSyncs - before.dirSyncs).toBe(1);
    await exercise(driver);
    expect(driver.stats().dirSyncs).toBeGreaterThanOrEqual(after.dirSyncs + 5);
    // A delete syncs its directory; a lazy one (garbage a crash may bring back) does not.
    await driver.write('k/three', Buffer.from('3'));
    await driver.write('k/four', Buffer.from('4'));
    const beforeDeletes = driver.stats().dirSyncs;
    expect(await driver.delete('k/three')).toBe(true);
    expect(driver.stats().dirSyncs - beforeDeletes).toBe(1);
    expect(await driver.delete('k/four', { lazy: true })).toBe(true);
    expect(driver.stats().dirSyncs - beforeDeletes).toBe(1);
    expect(await driver.stat('k/four')).toBeNull();
  });

  it("objects written with 'full' are on the volume after unmount and remount", async () => {
    const root = freshRoot(ext4.path);
    const driver = createFsDriver({ root });
    const payload = randomBytes(100_000);
    const { etag } = await driver.write('persist/me', payload);
    await driver.close?.();
    remount(ext4.path, 'ro');
    remount(ext4.path, 'rw');
    const again = createFsDriver({ root });
    expect((await again.stat('persist/me'))?.etag).toBe(etag);
    expect(Buffer.from(await readText(again, 'persist/me'), 'utf8').length).toBeGreaterThan(0);
    expect(await sha256Of(again, 'persist/me')).toBe(
      (await import('node:crypto')).createHash('sha256').update(payload).digest('hex'),
    );
  });
});

describe('fs driver: ENOSPC on real volumes', () => {
  async function fillUntilFull(driver: Driver, size: number): Promise<Map<string, string>> {
    const written = new Map<string, string>();
    for (let i = 0; i < 100; i++) {
      const key = `fill/${String(i).padStart(3, '0')}`;
      const source = hashing(randomStream(size));
      try {
        await driver.write(key, source.body); // unknown size: streamed until the disk is full
        written.set(key, source.digest());
      } catch (error) {
        expect((error as { code?: string }).code).toBe('INSUFFICIENT_STORAGE');
        expect(await driver.stat(key)).toBeNull();
        return written;
      }
    }
    throw new Error('the volume never filled up');
  }

  for (const kind of ['ext4', 'tmpfs'] as const) {
    it(
      `${kind}: INSUFFICIENT_STORAGE, no partial object, temp removed, earlier objects intact, writes work after deleting`,
      async () => {
        const root = freshRoot(kind === 'ext4' ? ext4.path : tmpfs.path);
        const driver = createFsDriver({ root, durability: 'data' });
        const written = await fillUntilFull(driver, (kind === 'ext4' ? 8 : 3) * MiB);
        expect(written.size).toBeGreaterThan(0);
        expect(entries(join(root, 'v1/tmp'))).toEqual([]);
        expect(await listAll(driver)).toEqual([...written.keys()]);
        for (const [key, digest] of written) expect(await sha256Of(driver, key)).toBe(digest);
        // The small write that fits in leftover space may still succeed; a big one must not.
        await rejectsCode(driver.write('fill/too-big', randomStream(32 * MiB)), 'INSUFFICIENT_STORAGE');
        expect(entries(join(root, 'v1/tmp'))).toEqual([]);
        const keys = [...written.keys()];
        for (const key of keys.slice(0, 2)) expect(await driver.delete(key)).toBe(true);
        const source = hashing(randomStream(2 * MiB));
        await driver.write('fill/after', source.body);
        expect(await sha256Of(driver, 'fill/after')).toBe(source.digest());
        for (const key of keys.slice(2)) expect(await sha256Of(driver, key)).toBe(written.get(key));
        for (const key of await listAll(driver)) await driver.delete(key);
      },
      LONG,
    );
  }

  it(
    'ext4: a part that hits ENOSPC fails INSUFFICIENT_STORAGE and gives its space back; the upload stays usable',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createFsDriver({ root, durability: 'data' });
      const handle = await driver.createMultipart('mp/full');
      const refs = [];
      let offset = 0;
      let failed = false;
      for (let n = 1; n <= 40; n++) {
        try {
          refs.push(await driver.uploadPart(handle, n, offset, randomStream(4 * MiB), 4 * MiB));
          offset += 4 * MiB;
        } catch (error) {
          expect((error as { code?: string }).code).toBe('INSUFFICIENT_STORAGE');
          failed = true;
          break;
        }
      }
      expect(failed).toBe(true);
      const staged = statSync(join(root, 'v1/staging', handle.uploadId as string, 'data')).size;
      expect(staged).toBe(offset); // the failed part's bytes were truncated away
      const result = await driver.completeMultipart(handle, refs);
      expect(result.size).toBe(offset);
      expect(await listAll(driver)).toEqual(['mp/full']);
      await driver.delete('mp/full');
      const again = hashing(randomStream(offset));
      await driver.write('mp/again', again.body);
      expect(await sha256Of(driver, 'mp/again')).toBe(again.digest());
      await driver.delete('mp/again');
    },
    LONG,
  );
});

describe('fs driver: sweepTemp', () => {
  it(
    'removes the temp file of a killed writer, keeps a live writer’s, and honours olderThan',
    async () => {
      const root = freshRoot(scratch);
      const driver = createFsDriver({ root, durability: 'none' });
      const tmp = join(root, 'v1/tmp');
      const live = startChild('hangWrite', { driver: spec(root), key: 'sweep/live' });
      const doomed = startChild('hangWrite', { driver: spec(root), key: 'sweep/dead' });
      await Promise.all([live.ready, doomed.ready]);
      const temps = entries(tmp);
      expect(temps).toHaveLength(2);
      const deadTemp = temps.find((name) => name.includes(`.${doomed.process.pid}.`)) as string;
      const liveTemp = temps.find((name) => name.includes(`.${live.process.pid}.`)) as string;
      doomed.process.kill('SIGKILL');
      await doomed.exited;

      // Young dead temp: kept while younger than olderThan.
      let report = await driver.sweepTemp({ olderThan: 60_000 });
      expect(report.removed).toBe(0);
      expect(entries(tmp)).toEqual([deadTemp, liveTemp].sort());

      // Both made old: the dead one goes, the live one stays (its owner is alive).
      const old = new Date(Date.now() - 3_600_000);
      for (const name of [deadTemp, liveTemp]) utimesSync(join(tmp, name), old, old);
      report = await driver.sweepTemp({ olderThan: 60_000 });
      expect(report.removed).toBe(1);
      expect(entries(tmp)).toEqual([liveTemp]);

      live.process.kill('SIGKILL');
      await live.exited;
      report = await driver.sweepTemp({ olderThan: 0 });
      expect(report.removed).toBe(1);
      expect(entries(tmp)).toEqual([]);
      expect(await listAll(driver)).toEqual([]);
    },
    LONG,
  );

  it('treats an owner on another host by the lease: kept while fresh, removed once untouched for the lease', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root, durability: 'none', leaseMs: 60_000 });
    const tmp = join(root, 'v1/tmp');
    const foreign = 'abcdefabcdef.4026531836.77.12345.0011223344556677.tmp';
    writeFileSync(join(tmp, foreign), 'in flight elsewhere');
    expect((await driver.sweepTemp({ olderThan: 0 })).removed).toBe(0);
    const old = new Date(Date.now() - 120_000);
    utimesSync(join(tmp, foreign), old, old);
    expect((await driver.sweepTemp({ olderThan: 0 })).removed).toBe(1);
    expect(entries(tmp)).toEqual([]);
  });

  it('removes stale lock files of dead owners and leftover staging folders being deleted', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root, durability: 'none' });
    const child = startChild('hangWrite', { driver: spec(root), key: 'x' });
    await child.ready;
    const tag = entries(join(root, 'v1/tmp'))[0]?.split('.').slice(0, 4).join('.') as string;
    child.process.kill('SIGKILL');
    await child.exited;
    writeFileSync(join(root, 'v1/locks/0123456789abcdef0123456789abcdef01234567'), `${tag}\n`);
    mkdirSync(join(root, `v1/tmp/${tag}.00aa.dead`));
    writeFileSync(join(root, `v1/tmp/${tag}.00aa.dead/data`), 'x');
    const report = await driver.sweepTemp({ olderThan: 0 });
    expect(report.removed).toBe(3); // temp, lock, dead folder
    expect(entries(join(root, 'v1/locks'))).toEqual([]);
    expect(entries(join(root, 'v1/tmp'))).toEqual([]);
  });
});

describe('fs driver: several processes on one root', () => {
  it(
    'create-only: 4 processes race for the same 40 keys, exactly one wins each',
    async () => {
      const root = freshRoot(ext4.path);
      const keys = Array.from({ length: 40 }, (_, i) => `race/${i % 4}/${i}`);
      const results = await Promise.all(
        [0, 1, 2, 3].map((tag) =>
          runChild<{ won: string[] }>('createOnly', { driver: spec(root), keys, tag }),
        ),
      );
      const winners = new Map<string, number>();
      results.forEach((result, tag) => {
        for (const key of result.won) {
          expect(winners.has(key), `${key} won twice`).toBe(false);
          winners.set(key, tag);
        }
      });
      expect([...winners.keys()].sort()).toEqual([...keys].sort());
      const driver = createFsDriver({ root });
      for (const [key, tag] of winners) expect(await readText(driver, key)).toBe(`${tag}:${key}`);
      expect(entries(join(root, 'v1/tmp'))).toEqual([]);
    },
    LONG,
  );

  it(
    'compare-and-swap: 4 processes increment one counter 50 times each with ifMatch, no update lost',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createFsDriver({ root, durability: 'none' });
      await driver.write('counter', Buffer.from('0'));
      const results = await Promise.all(
        [0, 1, 2, 3].map(() =>
          runChild<{ retries: number }>('casCounter', { driver: spec(root), key: 'counter', times: 50 }),
        ),
      );
      expect(await readText(driver, 'counter')).toBe('200');
      expect(results.reduce((sum, r) => sum + r.retries, 0)).toBeGreaterThan(0); // they did contend
      expect(entries(join(root, 'v1/locks'))).toEqual([]);
    },
    LONG,
  );

  it(
    'multipart: parts staged by two other processes, completed here; a killed writer leaves nothing visible',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createFsDriver({ root, durability: 'full' });
      const handle = await driver.createMultipart('mp/shared');
      const [a] = await runOps(spec(root), [
        { op: 'uploadPart', handle, partNumber: 1, offset: 0, text: 'hello ' },
      ]);
      const [b] = await runOps(spec(root), [
        { op: 'uploadPart', handle, partNumber: 2, offset: 6, text: 'world' },
      ]);
      if (!a?.ok || !b?.ok) throw new Error(`part upload failed: ${JSON.stringify([a, b])}`);
      const refs = [a.value, b.value] as Parameters<Driver['completeMultipart']>[1];
      // A writer killed mid-write: nothing published, and its claim is broken on the next use.
      const hung = startChild('hangPart', { driver: spec(root), handle, partNumber: 3, offset: 11 });
      await hung.ready;
      await rejectsCode(driver.uploadPart(handle, 4, 11, Buffer.from('!'), 1), 'PRECONDITION_FAILED');
      await rejectsCode(driver.completeMultipart(handle, refs), 'PRECONDITION_FAILED');
      hung.process.kill('SIGKILL');
      await hung.exited;
      expect(await listAll(driver)).toEqual([]);
      const result = await driver.completeMultipart(handle, refs);
      expect(result.size).toBe(11);
      expect(await readText(driver, 'mp/shared')).toBe('hello world');
      expect(entries(join(root, 'v1/staging'))).toEqual([]);
      // A retried completion (another process whose first attempt published) is idempotent-or-unknown, never wrong.
      await rejectsCode(driver.completeMultipart(handle, refs), 'NOT_FOUND');
    },
    LONG,
  );

  it(
    'a writer killed mid-write leaves no object and no listing entry; its temp file is swept',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createFsDriver({ root, durability: 'none' });
      await driver.write('crash/key', Buffer.from('old'));
      const child = startChild('hangWrite', { driver: spec(root), key: 'crash/key' });
      await child.ready;
      child.process.kill('SIGKILL');
      await child.exited;
      expect(await readText(driver, 'crash/key')).toBe('old');
      expect(await listAll(driver)).toEqual(['crash/key']);
      expect((await driver.sweepTemp({ olderThan: 0 })).removed).toBe(1);
    },
    LONG,
  );
});

describe('fs driver: key locks', () => {
  const lockPath = (root: string, key: string) =>
    join(root, 'v1/locks', createHash('sha256').update(key).digest('hex').slice(0, 40));

  it(
    'a lock left by a dead owner (file or symlink form) is broken at once; a live owner’s lock makes writers wait, then UNAVAILABLE (retryable)',
    async () => {
      const root = freshRoot(scratch);
      const driver = createFsDriver({ root, durability: 'none', lockTimeoutMs: 300 });
      const child = startChild('hangWrite', { driver: spec(root), key: 'x' });
      await child.ready;
      const deadTag = entries(join(root, 'v1/tmp'))[0]?.split('.').slice(0, 4).join('.') as string;
      child.process.kill('SIGKILL');
      await child.exited;
      writeFileSync(lockPath(root, 'dead/file'), `${deadTag}\n`);
      symlinkSync(deadTag, lockPath(root, 'dead/link'));
      await driver.write('dead/file', Buffer.from('1'));
      await driver.write('dead/link', Buffer.from('2'));
      expect(await driver.delete('dead/file')).toBe(true);

      symlinkSync(currentOwner().tag, lockPath(root, 'held'));
      const error = await rejectsCode(driver.write('held', Buffer.from('3')), 'UNAVAILABLE');
      expect(error.retryable).toBe(true);
      expect(await driver.stat('held')).toBeNull();
      expect(entries(join(root, 'v1/tmp')).filter((name) => !name.startsWith(deadTag))).toEqual([]);
    },
    LONG,
  );

  it('a small conditional write takes the lock early: a failed precondition releases it and leaves no temp file', async () => {
    const root = freshRoot(scratch);
    // Without hard links, create-only writes publish under the lock too.
    const driver = createFsDriver({ root, lockTimeoutMs: 300, hardLinks: false });
    const { etag } = await driver.write('cas', Buffer.from('v1'));
    await rejectsCode(driver.write('cas', Buffer.from('v2'), { ifMatch: '"stale"' }), 'PRECONDITION_FAILED');
    await rejectsCode(driver.write('cas', Buffer.from('v2'), { ifNoneMatch: '*' }), 'PRECONDITION_FAILED');
    expect(entries(join(root, 'v1/locks'))).toEqual([]);
    expect(entries(join(root, 'v1/tmp'))).toEqual([]);
    // Writers of one key in one process queue on the lock; exactly one of two racing swaps wins.
    const racing = await Promise.allSettled([
      driver.write('cas', Buffer.from('a'), { ifMatch: etag }),
      driver.write('cas', Buffer.from('b'), { ifMatch: etag }),
    ]);
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = racing.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason.code).toBe('PRECONDITION_FAILED');
    expect(entries(join(root, 'v1/locks'))).toEqual([]);
    expect(entries(join(root, 'v1/tmp'))).toEqual([]);
  });

  it('a held lock’s mtime is refreshed every lease/4, so a slow holder is never taken for abandoned', async () => {
    const root = freshRoot(scratch);
    await createFsDriver({ root }).write('x', Buffer.from('x')); // lays out v1/
    const locks = new KeyLocks(new Sys(NO_RETRY), join(root, 'v1/locks'), currentOwner(), async () => {});
    const options = { leaseMs: 200, timeoutMs: 1000, fileMode: 0o644 };
    const release = await locks.hold('slow', options);
    const path = locks.lockPath('slow');
    const first = lstatSync(path).mtimeMs;
    await new Promise((resolve) => setTimeout(resolve, 160));
    expect(lstatSync(path).mtimeMs).toBeGreaterThan(first);
    await release();
    await release(); // a second release is a no-op
    expect(entries(join(root, 'v1/locks'))).toEqual([]);
    const again = await locks.hold('slow', options); // not left queued behind the first
    await again();
  });
});

describe('fs driver: errors map to their meaning', () => {
  it(
    'a read-only volume gives UNAVAILABLE (EROFS), never NOT_FOUND; reads keep working; writes work once writable',
    async () => {
      const root = freshRoot(tmpfs.path);
      const driver = createFsDriver({ root, durability: 'none' });
      await driver.write('ro/kept', Buffer.from('kept'));
      remount(tmpfs.path, 'ro');
      try {
        const error = await rejectsCode(driver.write('ro/new', Buffer.from('x')), 'UNAVAILABLE');
        expect(error.detail).toMatchObject({ errno: 'EROFS' });
        expect(error.retryable).toBe(false);
        await rejectsCode(driver.delete('ro/kept'), 'UNAVAILABLE');
        await rejectsCode(driver.createMultipart('ro/mp'), 'UNAVAILABLE');
        expect(await readText(driver, 'ro/kept')).toBe('kept');
        await rejectsCode(driver.read('ro/missing'), 'NOT_FOUND');
      } finally {
        remount(tmpfs.path, 'rw');
      }
      await driver.write('ro/new', Buffer.from('x'));
      expect(await listAll(driver, 'ro/')).toEqual(['ro/kept', 'ro/new']);
      for (const key of await listAll(driver)) await driver.delete(key);
    },
    LONG,
  );

  it(
    'permission denied (another uid) is UNAVAILABLE, not NOT_FOUND; a missing key is still NOT_FOUND',
    async () => {
      const root = freshRoot(scratch);
      chmodSync(scratch, 0o755);
      const driver = createFsDriver({ root, durability: 'none' });
      await driver.write('perm/secret', Buffer.from('s'));
      chmodSync(join(root, 'v1/objects/perm,/secret'), 0o600);
      const results = await runOps(
        spec(root),
        [
          { op: 'read', key: 'perm/secret' },
          { op: 'read', key: 'perm/missing' },
          { op: 'write', key: 'perm/new', text: 'x' },
          { op: 'delete', key: 'perm/secret' },
        ],
        { uid: 65534, gid: 65534 },
      );
      expect(results.map((r) => (r.ok ? 'ok' : r.code))).toEqual([
        'UNAVAILABLE',
        'NOT_FOUND',
        'UNAVAILABLE',
        'UNAVAILABLE',
      ]);
      expect(existsSync(join(root, 'v1/objects/perm,/secret'))).toBe(true);
    },
    LONG,
  );

  it('usage() reports the volume’s statfs numbers', async () => {
    const driver = createFsDriver({ root: freshRoot(tmpfs.path), durability: 'none' });
    const usage = await driver.usage();
    expect(usage.capacity).toBe(16 * MiB);
    expect(usage.free).toBeGreaterThan(0);
    expect(usage.free).toBeLessThanOrEqual(usage.capacity);
    await driver.write('u/one', randomStream(2 * MiB));
    expect((await driver.usage()).free).toBeLessThanOrEqual(usage.free - 2 * MiB);
    await driver.delete('u/one');
  });
});

describe('fs driver: waits', () => {
  it('a child’s write is visible here at once; waitFor helper sanity', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root, durability: 'none' });
    await runOps(spec(root), [{ op: 'write', key: 'x/y', text: 'from child' }]);
    await waitFor(() => existsSync(driver.objectPath('x/y')));
    expect(await readText(driver, 'x/y')).toBe('from child');
  });
});

describe('fs driver: part writes under a hold', () => {
  /** Paths this process holds open under `dir` (other tests' descriptors do not count). */
  const openUnder = (dir: string) => openPaths().filter((path) => path.startsWith(dir));

  it('a failing hold check writes nothing and leaves no descriptor or claim behind', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root });
    const handle = await driver.createMultipart('parts/held');
    const staging = join(root, 'v1', 'staging', String(handle.uploadId));
    const refused = blobError('RANGE_INVALID', 'the record moved on'); // as the store's check throws
    for (const hold of [
      { before: async () => Promise.reject(refused), written: async () => {} },
      {
        before: () => {
          throw refused; // a synchronous throw, not a rejected promise
        },
        written: async () => {},
      },
    ]) {
      const failed = await driver
        .uploadPart(handle, 1, 0, randomBytes(4096), 4096, { hold: hold as never })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(failed).toBe(refused);
    }
    expect(openUnder(staging)).toEqual([]);
    expect(readdirSync(staging).filter((name) => /^[cr]\./.test(name))).toEqual([]);
    expect(statSync(join(staging, 'data')).size).toBe(0);
  });

  it('a `written` hook that throws fails the part, after its syncs, with no descriptor or claim left', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root });
    const handle = await driver.createMultipart('parts/hooked');
    const staging = join(root, 'v1', 'staging', String(handle.uploadId));
    const refused = blobError('RANGE_INVALID', 'another writer changed the upload');
    for (const written of [
      async () => Promise.reject(refused),
      () => {
        throw refused; // a synchronous throw, not a rejected promise
      },
    ]) {
      const failed = await driver
        .uploadPart(handle, 1, 0, randomBytes(4096), 4096, {
          hold: { before: async () => {}, written: written as never },
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(failed).toBe(refused);
      expect(openUnder(staging)).toEqual([]);
      expect(readdirSync(staging).filter((name) => name.startsWith('c.'))).toEqual([]);
    }
    // The part stays staged under a ref nobody was given; the range can be written again.
    const ref = await driver.uploadPart(handle, 1, 0, Buffer.from('again'), 5);
    await driver.completeMultipart(handle, [ref]);
    expect(await readText(driver, 'parts/hooked')).toBe('again');
  });

  it('a part whose body fails leaves no receipt, claim or descriptor, and the file as it was; the part can be written again', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root });
    const handle = await driver.createMultipart('parts/broken');
    const staging = join(root, 'v1', 'staging', String(handle.uploadId));
    const first = await driver.uploadPart(handle, 1, 0, randomBytes(1000), 1000);
    const broken = (async function* () {
      yield randomBytes(3 * MiB); // written, and the receipt made meanwhile
      throw new Error('client went away');
    })();
    await expect(driver.uploadPart(handle, 2, 1000, broken, 4 * MiB)).rejects.toThrow('client went away');
    expect(openUnder(staging)).toEqual([]);
    expect(readdirSync(staging).filter((name) => /^[cr]\./.test(name))).toEqual([`r.1.0.1000.${first.etag}`]);
    expect(statSync(join(staging, 'data')).size).toBe(1000);
    const body = randomBytes(2000);
    const second = await driver.uploadPart(handle, 2, 1000, body, 2000);
    await driver.completeMultipart(handle, [first, second]);
    expect((await collectBody(await driver.read('parts/broken'))).subarray(1000).equals(body)).toBe(true);
  });

  it('hands hold.written the part while it syncs; a part whose sync fails publishes nothing written behind it, leaves no receipt and gives its bytes back', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root }); // durability 'full'
    const handle = await driver.createMultipart('parts/behind');
    const staging = join(root, 'v1', 'staging', String(handle.uploadId));
    await driver.write('record', Buffer.from('r0'));
    let pendingWhenCalled: boolean | undefined;
    const first = await driver.uploadPart(handle, 1, 0, randomBytes(1000), 1000, {
      hold: {
        before: async () => {},
        written: async (ref, durable) => {
          let settled = false;
          const mark = () => {
            settled = true;
          };
          durable.then(mark, mark);
          await Promise.resolve();
          pendingWhenCalled = !settled;
          await driver.write('record', Buffer.from(`r1 ${ref.etag}`), { notBefore: durable });
        },
      },
    });
    expect(pendingWhenCalled).toBe(true);
    expect(await readText(driver, 'record')).toBe(`r1 ${first.etag}`);

    const probe = await open(join(staging, 'data'), 'r');
    const handles = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const datasync = handles.datasync;
    handles.datasync = async () => {
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    };
    try {
      const error = await rejectsCode(
        driver.uploadPart(handle, 2, 1000, randomBytes(1000), 1000, {
          hold: {
            before: async () => {},
            written: async (_ref, durable) => {
              await driver.write('record', Buffer.from('r2'), { notBefore: durable });
            },
          },
        }),
        'UNAVAILABLE',
      );
      expect(error.detail).toMatchObject({ errno: 'EIO' });
    } finally {
      handles.datasync = datasync;
    }
    expect(await readText(driver, 'record')).toBe(`r1 ${first.etag}`);
    expect(statSync(join(staging, 'data')).size).toBe(1000); // the failed part's bytes given back
    expect(readdirSync(staging).filter((name) => /^[cr]\./.test(name))).toEqual([`r.1.0.1000.${first.etag}`]);
    expect(entries(join(root, 'v1/tmp'))).toEqual([]);
    expect(entries(join(root, 'v1/locks'))).toEqual([]);
    expect(openUnder(staging)).toEqual([]);
  });

  it('a part refused because another writer holds its range leaves no descriptor of the data file open', async () => {
    const root = freshRoot(scratch);
    const driver = createFsDriver({ root });
    const handle = await driver.createMultipart('parts/busy');
    const dataFile = join(root, 'v1', 'staging', String(handle.uploadId), 'data');
    const gate = deferred();
    const pulled = deferred();
    const slow = (async function* () {
      pulled.resolve(); // the first writer holds its claim and the data file now
      await gate.promise;
      yield randomBytes(1000);
    })();
    const first = driver.uploadPart(handle, 1, 0, slow, 1000);
    await pulled.promise;
    const dataOpen = () => openPaths().filter((path) => path === dataFile).length;
    expect(dataOpen()).toBe(1);
    await rejectsCode(driver.uploadPart(handle, 1, 0, randomBytes(1000), 1000), 'PRECONDITION_FAILED');
    expect(dataOpen()).toBe(1); // the second writer opened it alongside its claim, and closed it
    gate.resolve();
    expect((await first).size).toBe(1000);
    expect(dataOpen()).toBe(0);
  });

  it('a part for an upload another instance aborted is NOT_FOUND, though this one knew its folder', async () => {
    const root = freshRoot(scratch);
    const mine = createFsDriver({ root });
    const other = createFsDriver({ root });
    const handle = await mine.createMultipart('parts/aborted');
    await mine.uploadPart(handle, 1, 0, randomBytes(1000), 1000);
    await other.abortMultipart(handle);
    await rejectsCode(mine.uploadPart(handle, 2, 1000, randomBytes(1000), 1000), 'NOT_FOUND');
  });
});
