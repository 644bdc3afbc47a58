/**
 * The memory driver against both conformance suites. Each case gets a fresh
 * MemoryBackend; `reopen` builds a second driver over the same backend, which is how
 * the suite stands in for a second process.
 */
import { describe, it } from 'vitest';
import {
  type DriverFactory,
  driverCases,
  driverConformance,
  runDriverCase,
  runStoreCase,
  storeCases,
  storeConformance,
  storeFactory,
} from '../conformance/index.js';
import { createMemoryDriver, MemoryBackend } from '../drivers/memory/index.js';
import type { Driver, DriverCapabilities } from '../src/driver.js';
import { guardDriver } from '../src/driver.js';

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

/**
 * The weaker-guarantee variants, exercised here too: the memory driver behind a manifest
 * that declares nothing optional (it still enforces conditional writes, which satisfies
 * the weaker cases). Only the cases whose variant depends on the manifest are run, each
 * named with its reason; the full suites above already cover the rest.
 */
const NOTHING: DriverCapabilities = {
  conditionalWrite: false,
  signedUrl: false,
  copy: false,
  link: false,
  usage: false,
};

function declaringNothing(inner: Driver): Driver {
  return guardDriver({
    name: 'memory (declares no optional capabilities)',
    capabilities: NOTHING,
    limits: inner.limits,
    stat: (key, options) => inner.stat(key, options),
    read: (key, options) => inner.read(key, options),
    write: (key, body, options) => inner.write(key, body, options),
    delete: (key, options) => inner.delete(key, options),
    list: (prefix, options) => inner.list(prefix, options),
    createMultipart: (key, options) => inner.createMultipart(key, options),
    uploadPart: (handle, partNumber, offset, body, size, options) =>
      inner.uploadPart(handle, partNumber, offset, body, size, options),
    completeMultipart: (handle, parts, options) => inner.completeMultipart(handle, parts, options),
    abortMultipart: (handle, options) => inner.abortMultipart(handle, options),
  });
}

const weakFactory: DriverFactory = {
  name: 'memory (declares no optional capabilities)',
  capabilities: NOTHING,
  create: () => {
    const driver = create();
    const weak = declaringNothing(driver);
    backends.set(weak, backends.get(driver) as MemoryBackend);
    return weak;
  },
  reopen: (driver) => declaringNothing(reopen(driver)),
  destroy,
};

describe('weaker variants: memory (declares no optional capabilities)', () => {
  const selection = { capabilities: NOTHING, reopen: true };
  for (const c of driverCases(selection).filter((c) => c.weaker || c.name.startsWith('manifest:'))) {
    it(
      `driver: ${c.name}`,
      async () => {
        if (c.weaker) console.info(`[blobcore conformance] weaker variant "${c.name}" — ${c.weaker}`);
        await runDriverCase(weakFactory, c);
      },
      c.timeout,
    );
  }
  for (const c of storeCases(selection).filter((c) => c.weaker || c.name.includes('resume from a second'))) {
    it(
      `store: ${c.name}`,
      async () => {
        if (c.weaker) console.info(`[blobcore conformance] weaker variant "${c.name}" — ${c.weaker}`);
        await runStoreCase(storeFactory(weakFactory), c);
      },
      c.timeout,
    );
  }
});
