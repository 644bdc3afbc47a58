/**
 * The fs driver against both conformance suites, on a temp dir of the host filesystem and
 * on a real size-limited tmpfs. Each case gets a fresh root; `reopen` opens a second driver
 * instance on the same root (what another process would do).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { driverConformance, storeConformance } from '../conformance/index.js';
import { createFsDriver, type FsDriver } from '../drivers/fs/index.js';
import type { Driver } from '../src/driver.js';
import { POSIX_CAPABILITIES } from './fixtures/fs-harness/helpers.js';
import { tmpfsVolume } from './fixtures/fs-harness/volumes.js';

function factory(name: string, base: () => string, durability: 'none' | 'full') {
  const roots = new WeakMap<Driver, string>();
  const create = (): Driver => {
    const root = mkdtempSync(join(base(), 'conf-'));
    const driver = createFsDriver({ root, durability });
    roots.set(driver, root);
    return driver;
  };
  const reopen = (driver: Driver): Driver => createFsDriver({ root: (driver as FsDriver).root, durability });
  const destroy = async (driver: Driver): Promise<void> => {
    await driver.close?.();
    const root = roots.get(driver);
    if (root) rmSync(root, { recursive: true, force: true });
  };
  return { name, create, reopen, destroy };
}

const tmpfs = tmpfsVolume('1g');
afterAll(() => tmpfs.remove());

const hostDir = mkdtempSync(join(tmpdir(), 'blobcore-fs-conf-'));
afterAll(() => rmSync(hostDir, { recursive: true, force: true }));

const host = factory('fs (host temp dir, durability full)', () => hostDir, 'full');
const ram = factory('fs (tmpfs, durability none)', () => tmpfs.path, 'none');

await driverConformance({ ...host, capabilities: POSIX_CAPABILITIES });
await driverConformance({ ...ram, capabilities: POSIX_CAPABILITIES });
await storeConformance({
  name: host.name,
  createDriver: host.create,
  reopen: host.reopen,
  destroy: host.destroy,
});
await storeConformance({
  name: ram.name,
  createDriver: ram.create,
  reopen: ram.reopen,
  destroy: ram.destroy,
});
