/**
 * The S3 driver against both conformance suites, on this process's lane (see
 * test/fixtures/s3-servers.ts): s3rver under `npm test`, radosgw under
 * `npm run test:system`. Every case gets its own bucket; `reopen` is a second driver
 * (own client, own connections) on the same bucket, standing in for another process.
 */
import { afterAll, vi } from 'vitest';
import { driverConformance, storeConformance } from '../conformance/index.js';
import { laneFactory, openLane } from './fixtures/s3-servers.js';

// Servers share two cores with the rest of the suite: generous limits, no timed assertions.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const lane = await openLane();
afterAll(() => lane.stop());

const factory = laneFactory(lane);

await driverConformance({
  name: `s3 (${lane.name})`,
  create: factory.create,
  reopen: factory.reopen,
  destroy: factory.destroy,
  capabilities: {
    conditionalWrite: lane.conditionalWrites,
    signedUrl: true,
    copy: true,
    link: false,
    usage: false,
  },
});

await storeConformance({
  name: `s3 (${lane.name})`,
  createDriver: factory.create,
  reopen: factory.reopen,
  destroy: factory.destroy,
});
