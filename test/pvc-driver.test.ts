/**
 * pvc driver on real volumes (loop-mounted ext4, size-limited tmpfs; see
 * scripts/volumes/volume.sh — the tests fail, never skip, when they cannot mount) with
 * child processes as other replicas, some running under other uids in group 0 the way
 * OpenShift runs pods.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMount, fsFamily, parseMountInfo } from '../drivers/fs/mountinfo.js';
import { NETWORK_RETRY, Sys } from '../drivers/fs/sys.js';
import { createPvcDriver, type PvcDriver, parseReserve } from '../drivers/pvc/index.js';
import type { PartRef } from '../src/driver.js';
import {
  entries,
  hashing,
  listAll,
  MiB,
  randomStream,
  readText,
  rejectsCode,
  sha256Of,
} from './fixtures/fs-harness/helpers.js';
import { type DriverSpec, runChild, runOps } from './fixtures/fs-harness/spawn.js';
import { ext4Volume, remount, tmpfsVolume, type Volume } from './fixtures/fs-harness/volumes.js';

const LONG = 120_000;
let ext4: Volume;
let tmpfs: Volume;
let counter = 0;

beforeAll(() => {
  ext4 = ext4Volume(64);
  tmpfs = tmpfsVolume('64m');
});
afterAll(() => {
  ext4?.remove();
  tmpfs?.remove();
});

/** A fresh group-0, setgid, group-writable root on a volume (what a PVC mount looks like). */
function freshRoot(base: string): string {
  counter += 1;
  const root = join(base, `pvc-${process.pid}-${counter}`);
  mkdirSync(root);
  chmodSync(root, 0o2775);
  return root;
}

function spec(root: string, extra: Record<string, unknown> = {}): DriverSpec {
  return { kind: 'pvc', options: { root, leaseMs: 600_000, ...extra } };
}

describe('pvc driver: filesystem detection from mountinfo', () => {
  const fixture = readFileSync(new URL('./fixtures/pvc-mountinfo/mountinfo.txt', import.meta.url), 'utf8');

  it('parses mountinfo (escaped paths, optional fields) and finds the mount holding a path', () => {
    const mounts = parseMountInfo(fixture);
    expect(mounts).toHaveLength(11);
    const at = (path: string) => findMount(mounts, path);
    expect(at('/var/lib/registry/v1/objects/x')).toMatchObject({
      fsType: 'nfs4',
      mountPoint: '/var/lib/registry',
      source: '10.0.0.5:/exports/pvc-3f2a',
    });
    expect(at('/var/lib/registry')?.fsType).toBe('nfs4');
    expect(at('/var/lib/registry/cache/a')?.fsType).toBe('tmpfs');
    expect(at('/var/lib/registryX')?.fsType).toBe('overlay');
    expect(at('/mnt/ceph volume/blobs')?.fsType).toBe('ceph');
    expect(at('/mnt/azurefile/share')?.fsType).toBe('cifs');
    expect(at('/mnt/smb3')?.fsType).toBe('smb3');
    expect(at('/data')?.fsType).toBe('xfs');
    const families = [
      'nfs4',
      'nfs',
      'ceph',
      'fuse.ceph-fuse',
      'cifs',
      'smb3',
      'ext4',
      'xfs',
      'tmpfs',
      'overlay',
    ].map(fsFamily);
    expect(families).toEqual([
      'nfs',
      'nfs',
      'cephfs',
      'cephfs',
      'smb',
      'smb',
      'ext4',
      'xfs',
      'tmpfs',
      'overlay',
    ]);
  });

  it('detects the real ext4 loop volume and the tmpfs', async () => {
    const onExt4 = createPvcDriver({ root: freshRoot(ext4.path) });
    expect(onExt4.fsInfo).toMatchObject({
      fsType: 'ext4',
      family: 'ext4',
      mountPoint: realpathSync(ext4.path),
      network: false,
      hardLinks: true,
      preciseTimestamps: true,
    });
    expect(onExt4.capabilities.link).toBe(true);
    const onTmpfs = createPvcDriver({ root: freshRoot(tmpfs.path) });
    expect(onTmpfs.fsInfo).toMatchObject({
      fsType: 'tmpfs',
      family: 'tmpfs',
      mountPoint: realpathSync(tmpfs.path),
    });
  });

  it(
    'on SMB/CIFS: no hard links declared (link() is UNSUPPORTED) and create-only still lets exactly one of 4 processes win',
    async () => {
      const root = freshRoot(ext4.path);
      const table = join(ext4.path, `mountinfo-${counter}`);
      writeFileSync(
        table,
        `${fixture}40 22 0:50 / ${realpathSync(root).replace(/ /g, '\\040')} rw,relatime - cifs //srv/share rw,vers=3.1.1\n`,
      );
      const driver = createPvcDriver({ root, mountInfoPath: table });
      expect(driver.fsInfo).toMatchObject({ fsType: 'cifs', family: 'smb', network: true, hardLinks: false });
      expect(driver.capabilities.link).toBe(false);
      await driver.write('smb/a', Buffer.from('a'));
      await rejectsCode(
        Promise.resolve().then(() => driver.link?.('smb/a', 'smb/b')),
        'UNSUPPORTED',
      );
      const keys = Array.from({ length: 30 }, (_, i) => `smb/race/${i}`);
      const results = await Promise.all(
        [0, 1, 2, 3].map((tag) =>
          runChild<{ won: string[] }>('createOnly', {
            driver: spec(root, { mountInfoPath: table }),
            keys,
            tag,
          }),
        ),
      );
      const won = results.flatMap((r) => r.won).sort();
      expect(won).toEqual([...keys].sort());
      for (const [tag, result] of results.entries()) {
        for (const key of result.won) expect(await readText(driver, key)).toBe(`${tag}:${key}`);
      }
    },
    LONG,
  );

  it('an NFS mount is treated as networked with hard links', () => {
    const root = freshRoot(ext4.path);
    const table = join(ext4.path, `mountinfo-nfs-${counter}`);
    writeFileSync(table, `40 1 0:50 / ${realpathSync(root)} rw - nfs4 srv:/export rw,vers=4.2\n`);
    const driver = createPvcDriver({ root, mountInfoPath: table });
    expect(driver.fsInfo).toMatchObject({ fsType: 'nfs4', family: 'nfs', network: true, hardLinks: true });
  });
});

describe('pvc driver: probe', () => {
  it('succeeds on a healthy volume and leaves nothing behind', async () => {
    const driver = createPvcDriver({ root: freshRoot(tmpfs.path) });
    const result = await driver.probe();
    expect(result).toMatchObject({ ok: true, driver: 'pvc', fsType: 'tmpfs' });
    expect(result.latencyMs).toBeGreaterThan(0);
    expect(result.usage?.capacity).toBe(64 * MiB);
    expect(await listAll(driver)).toEqual([]);
  });

  it('reports failure (never throws) on a read-only volume and on a missing mount, and recovers', async () => {
    const root = freshRoot(tmpfs.path);
    const driver = createPvcDriver({ root });
    remount(tmpfs.path, 'ro');
    try {
      const failed = await driver.probe();
      expect(failed.ok).toBe(false);
      expect(failed.error?.code).toBe('UNAVAILABLE');
    } finally {
      remount(tmpfs.path, 'rw');
    }
    expect((await driver.probe()).ok).toBe(true);
    const missing = createPvcDriver({ root: join(tmpfs.path, 'not-mounted-here') });
    const result = await missing.probe();
    expect(result.ok).toBe(false);
    expect(result.error?.code).toBe('UNAVAILABLE');
  });
});

describe('pvc driver: reserve', () => {
  it('parses reserves', () => {
    expect(parseReserve('5%')?.(1000)).toBe(50);
    expect(parseReserve('512MiB')?.(0)).toBe(512 * MiB);
    expect(parseReserve('1g')?.(0)).toBe(1024 ** 3);
    expect(parseReserve('2GB')?.(0)).toBe(2e9);
    expect(parseReserve(4096)?.(0)).toBe(4096);
    expect(parseReserve(undefined)).toBeUndefined();
    for (const bad of ['lots', '150%', '-1', '5 parsecs']) expect(() => parseReserve(bad)).toThrow(/reserve/);
  });

  it(
    'a write or part of known size that would cross the reserve fails INSUFFICIENT_STORAGE before writing anything',
    async () => {
      const root = freshRoot(tmpfs.path);
      const driver = createPvcDriver({ root, reserve: '50%' });
      const usage = await driver.usage();
      expect(usage.reserved).toBe(32 * MiB);
      expect(usage.free).toBeLessThanOrEqual(32 * MiB);
      const rawFree = () => statfsFree(tmpfs.path);
      const before = rawFree();
      await rejectsCode(driver.write('r/big', new Uint8Array(40 * MiB)), 'INSUFFICIENT_STORAGE');
      await rejectsCode(
        driver.write('r/big', randomStream(40 * MiB), { size: 40 * MiB }),
        'INSUFFICIENT_STORAGE',
      );
      expect(rawFree()).toBe(before); // nothing was written
      expect(entries(join(root, 'v1/tmp'))).toEqual([]);
      const handle = await driver.createMultipart('r/mp');
      await rejectsCode(
        driver.uploadPart(handle, 1, 0, randomStream(40 * MiB), 40 * MiB),
        'INSUFFICIENT_STORAGE',
      );
      expect(statSync(join(root, 'v1/staging', handle.uploadId as string, 'data')).size).toBe(0);
      await driver.abortMultipart(handle);
      // Below the reserve: fine.
      await driver.write('r/small', randomStream(8 * MiB), { size: 8 * MiB });
      // A body of unknown size is checked as it streams and stopped when it crosses the reserve.
      await rejectsCode(driver.write('r/stream', randomStream(48 * MiB)), 'INSUFFICIENT_STORAGE');
      expect(entries(join(root, 'v1/tmp'))).toEqual([]);
      expect(await listAll(driver)).toEqual(['r/small']);
      // A reserve in bytes.
      const strict = createPvcDriver({ root, reserve: '60MiB' });
      await rejectsCode(strict.write('r/x', new Uint8Array(MiB)), 'INSUFFICIENT_STORAGE');
      await driver.delete('r/small');
    },
    LONG,
  );
});

function statfsFree(path: string): number {
  const { bavail, bsize } = statfsSync(path);
  return bavail * bsize;
}

describe('pvc driver: replicas under other uids in group 0', () => {
  it(
    'files are group rw and folders setgid + group-writable; another uid reads, rewrites (CAS), resumes, completes and deletes',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createPvcDriver({ root });
      const writer = { uid: 1001, gid: 0, umask: 0o022 };
      const other = { uid: 1002, gid: 0, umask: 0o022 };
      const first = await runOps(
        spec(root),
        [
          { op: 'write', key: 'shared/a', text: 'from 1001' },
          { op: 'createMultipart', key: 'shared/big' },
        ],
        writer,
      );
      expect(first.map((r) => r.ok)).toEqual([true, true]);
      const handle = (first[1] as { value: { key: string; uploadId: string } }).value;
      const [part1] = await runOps(
        spec(root),
        [{ op: 'uploadPart', handle, partNumber: 1, offset: 0, text: 'part one|' }],
        writer,
      );
      if (!part1?.ok) throw new Error(JSON.stringify(part1));

      const file = statSync(join(root, 'v1/objects/shared,/a'));
      expect(file.uid).toBe(1001);
      expect(file.gid).toBe(0);
      expect(file.mode & 0o7777).toBe(0o664); // umask 022 kept others read-only, group rw added
      const dir = statSync(join(root, 'v1/objects/shared,'));
      expect(dir.mode & 0o7777).toBe(0o2775);
      const staging = join(root, 'v1/staging', handle.uploadId);
      expect(statSync(staging).mode & 0o7777).toBe(0o2775);
      expect(statSync(join(staging, 'data')).mode & 0o7777).toBe(0o664);

      const etag = (await driver.stat('shared/a'))?.etag as string;
      const second = await runOps(
        spec(root),
        [
          { op: 'read', key: 'shared/a' },
          { op: 'write', key: 'shared/a', text: 'rewritten by 1002', ifMatch: etag },
          { op: 'uploadPart', handle, partNumber: 2, offset: 9, text: 'part two' },
        ],
        other,
      );
      expect(second.map((r) => (r.ok ? 'ok' : `${r.code}: ${r.message}`))).toEqual(['ok', 'ok', 'ok']);
      expect((second[0] as { value: string }).value).toBe('from 1001');
      const refs = [part1.value, (second[2] as { value: unknown }).value] as PartRef[];
      const third = await runOps(
        spec(root),
        [
          { op: 'completeMultipart', handle, parts: refs },
          { op: 'read', key: 'shared/a' },
          { op: 'delete', key: 'shared/a' },
        ],
        other,
      );
      expect(third.map((r) => (r.ok ? 'ok' : `${r.code}: ${r.message}`))).toEqual(['ok', 'ok', 'ok']);
      expect((third[1] as { value: string }).value).toBe('rewritten by 1002');
      expect(await readText(driver, 'shared/big')).toBe('part one|part two');
      expect(await listAll(driver)).toEqual(['shared/big']);
      expect(entries(join(root, 'v1/staging'))).toEqual([]);
      expect(entries(join(root, 'v1/locks'))).toEqual([]);
    },
    LONG,
  );

  it(
    'control: without group sharing, another uid cannot delete (UNAVAILABLE, not NOT_FOUND)',
    async () => {
      const root = freshRoot(ext4.path);
      createPvcDriver({ root }); // the shared layout folders, as a group-sharing replica made them
      const write = await runOps(
        spec(root, { groupShared: false }),
        [{ op: 'write', key: 'private/a', text: 'x' }],
        { uid: 1001, gid: 0, umask: 0o022 },
      );
      expect(write[0]?.ok).toBe(true);
      const results = await runOps(
        spec(root, { groupShared: false }),
        [
          { op: 'read', key: 'private/a' },
          { op: 'delete', key: 'private/a' },
        ],
        { uid: 1002, gid: 0, umask: 0o022 },
      );
      expect(results.map((r) => (r.ok ? 'ok' : r.code))).toEqual(['ok', 'UNAVAILABLE']);
    },
    LONG,
  );

  it(
    'regression: a folder just made by one uid is at once writable by another (no mkdir-then-chmod window)',
    async () => {
      const root = freshRoot(ext4.path);
      createPvcDriver({ root });
      const folders = Array.from({ length: 1000 }, (_, n) => `dirs/${n}`);
      const startAt = Date.now() + 3000;
      const results = await Promise.all(
        [1001, 1002, 1003, 1004].map((uid) =>
          runChild<{ won: string[] }>(
            'createOnly',
            {
              driver: spec(root, { durability: 'none' }),
              keys: folders.map((f) => `${f}/${uid}`),
              tag: uid,
              startAt,
            },
            { uid, gid: 0, umask: 0o022 },
          ),
        ),
      );
      for (const result of results) expect(result.won).toHaveLength(folders.length);
    },
    LONG,
  );

  it(
    'four replicas (root and uids 1001–1003 in group 0) race create-only and compare-and-swap on one volume',
    async () => {
      const root = freshRoot(ext4.path);
      const driver = createPvcDriver({ root, durability: 'full' });
      await driver.write('counter', Buffer.from('0'));
      const users = [{}, { uid: 1001, gid: 0 }, { uid: 1002, gid: 0 }, { uid: 1003, gid: 0 }];
      const keys = Array.from({ length: 30 }, (_, i) => `blobs/${i % 3}/${i}`);
      const [created, counted] = await Promise.all([
        Promise.all(
          users.map((user, tag) =>
            runChild<{ won: string[] }>('createOnly', { driver: spec(root), keys, tag }, user),
          ),
        ),
        Promise.all(
          users.map((user) =>
            runChild<{ retries: number }>(
              'casCounter',
              { driver: spec(root), key: 'counter', times: 25 },
              user,
            ),
          ),
        ),
      ]);
      expect(created.flatMap((r) => r.won).sort()).toEqual([...keys].sort());
      expect(await readText(driver, 'counter')).toBe('100');
      expect(counted.length).toBe(4);
      expect(entries(join(root, 'v1/tmp'))).toEqual([]);
    },
    LONG,
  );
});

describe('pvc driver: full volume', () => {
  it(
    'ENOSPC on ext4: INSUFFICIENT_STORAGE, nothing partial, earlier objects intact, writes work after deleting',
    async () => {
      const root = freshRoot(ext4.path);
      const driver: PvcDriver = createPvcDriver({ root });
      const written = new Map<string, string>();
      let full = false;
      for (let i = 0; i < 20 && !full; i++) {
        const source = hashing(randomStream(8 * MiB));
        try {
          await driver.write(`full/${i}`, source.body);
          written.set(`full/${i}`, source.digest());
        } catch (error) {
          expect((error as { code?: string }).code).toBe('INSUFFICIENT_STORAGE');
          full = true;
        }
      }
      expect(full).toBe(true);
      expect(entries(join(root, 'v1/tmp'))).toEqual([]);
      expect((await listAll(driver)).sort()).toEqual([...written.keys()].sort());
      for (const [key, digest] of written) expect(await sha256Of(driver, key)).toBe(digest);
      const [firstKey] = written.keys();
      await driver.delete(firstKey as string);
      const payload = randomBytes(4 * MiB);
      await driver.write('full/after', payload);
      expect(await sha256Of(driver, 'full/after')).toBe(createHash('sha256').update(payload).digest('hex'));
      for (const key of await listAll(driver)) await driver.delete(key);
    },
    LONG,
  );
});

describe('pvc driver: retries', () => {
  it('retries ESTALE/EAGAIN/EBUSY with backoff, and never retries other errors', async () => {
    const sys = new Sys({ ...NETWORK_RETRY, baseDelayMs: 1 });
    let calls = 0;
    const flaky = async () => {
      calls += 1;
      if (calls < 3)
        throw Object.assign(new Error('stale file handle'), { code: calls === 1 ? 'ESTALE' : 'EBUSY' });
      return 'done';
    };
    expect(await sys.call(flaky)).toBe('done');
    expect(calls).toBe(3);
    calls = 0;
    const denied = async () => {
      calls += 1;
      throw Object.assign(new Error('denied'), { code: 'EACCES' });
    };
    await expect(sys.call(denied)).rejects.toMatchObject({ code: 'EACCES' });
    expect(calls).toBe(1);
    calls = 0;
    const always = async () => {
      calls += 1;
      throw Object.assign(new Error('again'), { code: 'EAGAIN' });
    };
    await expect(sys.call(always)).rejects.toMatchObject({ code: 'EAGAIN' });
    expect(calls).toBe(NETWORK_RETRY.attempts);
  });
});
