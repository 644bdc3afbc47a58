/**
 * The pvc driver against both conformance suites: on a host temp dir, on a real tmpfs,
 * and with hard links turned off (the SMB/CIFS fallback: create-only through a lease lock
 * and rename, `link` declared absent). Each case gets a fresh root; `reopen` opens a
 * second driver instance on the same root, as another replica would.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { driverConformance, storeConformance } from '../conformance/index.js';
import { createPvcDriver, type PvcDriver, type PvcDriverOptions } from '../drivers/pvc/index.js';
import type { Driver } from '../src/driver.js';
import { POSIX_CAPABILITIES } from './fixtures/fs-harness/helpers.js';
import { tmpfsVolume } from './fixtures/fs-harness/volumes.js';

function factory(name: string, base: () => string, extra: Omit<PvcDriverOptions, 'root'>) {
  const roots = new WeakMap<Driver, string>();
  const create = (): Driver => {
    const root = mkdtempSync(join(base(), 'conf-'));
    chmodSync(root, 0o2775);
    const driver = createPvcDriver({ root, ...extra });
    roots.set(driver, root);
    return driver;
  };
  const reopen = (driver: Driver): Driver => createPvcDriver({ root: (driver as PvcDriver).root, ...extra });
  const destroy = async (driver: Driver): Promise<void> => {
    await driver.close?.();
    const root = roots.get(driver);
    if (root) rmSync(root, { recursive: true, force: true });
  };
  return { name, create, reopen, destroy };
}

const tmpfs = tmpfsVolume('1g');
afterAll(() => tmpfs.remove());
const hostDir = mkdtempSync(join(tmpdir(), 'blobcore-pvc-conf-'));
afterAll(() => rmSync(hostDir, { recursive: true, force: true }));

const WITH_LINKS = POSIX_CAPABILITIES;
const NO_LINKS = { ...WITH_LINKS, link: false };

const targets = [
  { ...factory('pvc (host temp dir)', () => hostDir, {}), capabilities: WITH_LINKS },
  { ...factory('pvc (tmpfs, reserve 1%)', () => tmpfs.path, { reserve: '1%' }), capabilities: WITH_LINKS },
  {
    ...factory('pvc (host temp dir, no hard links: SMB fallback)', () => hostDir, { hardLinks: false }),
    capabilities: NO_LINKS,
  },
];

for (const target of targets) await driverConformance(target);
for (const { name, create, reopen, destroy } of targets) {
  await storeConformance({ name, createDriver: create, reopen, destroy });
}
