/**
 * The memory driver against both conformance suites. Each case gets a fresh
 * MemoryBackend; `reopen` builds a second driver over the same backend, which is how
 * the suite stands in for a second process.
 */

import { driverConformance, storeConformance } from '../conformance/index.js';
import { createMemoryDriver, MemoryBackend } from '../drivers/memory/index.js';
import type { Driver } from '../src/driver.js';

const backends = new WeakMap<Driver, MemoryBackend>();

function create(): Driver {
  const backend = new MemoryBackend();
  const driver = createMemoryDriver({ backend });
  backends.set(driver, backend);
  return driver;
}

function reopen(driver: Driver): Driver {
  const backend = backends.get(driver);
  if (!backend) throw new Error('not a driver from create()');
  return createMemoryDriver({ backend });
}

function destroy(driver: Driver): void {
  const backend = backends.get(driver);
  backend?.objects.clear();
  backend?.multiparts.clear();
}

await driverConformance({
  name: 'memory',
  create,
  reopen,
  destroy,
  capabilities: { conditionalWrite: true, signedUrl: false, copy: true, link: false, usage: false },
});

await storeConformance({ name: 'memory', createDriver: create, reopen, destroy });
