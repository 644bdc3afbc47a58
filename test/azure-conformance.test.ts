/**
 * The Azure driver against both conformance suites, on a real Azurite server started
 * for this file (see ./fixtures/azure-helpers.ts). Every case gets a fresh container; `reopen`
 * builds a second driver on the same container, standing in for another process.
 *
 * Two configurations: the defaults (8 MiB blocks, parts in 2 MiB blocks, no key
 * prefix), and small blocks (256 KiB for writes, 128 KiB inside parts) under a key
 * prefix, so that writes past 256 KiB go through parallel block staging, every
 * multipart part spans several blocks, and keys are mapped under a prefix.
 */
import { driverConformance, storeConformance } from '../conformance/index.js';
import { azureFactory, useAzurite } from './fixtures/azure-helpers.js';

const azurite = await useAzurite();

const capabilities = { conditionalWrite: true, signedUrl: true, copy: false, link: false, usage: false };

const defaults = azureFactory(azurite, 'conf');
await driverConformance({ name: 'azure (Azurite)', ...defaults, capabilities });
await storeConformance({ name: 'azure (Azurite)', createDriver: defaults.create, ...defaults });

const small = azureFactory(azurite, 'small', {
  prefix: 'nested/prefix',
  blockSize: 256 * 1024,
  partBlockSize: 128 * 1024,
  minPartSize: 512 * 1024,
  concurrency: 3,
});
await driverConformance({ name: 'azure (Azurite, 256 KiB blocks, key prefix)', ...small, capabilities });
await storeConformance({
  name: 'azure (Azurite, 256 KiB blocks, key prefix)',
  createDriver: small.create,
  ...small,
});
