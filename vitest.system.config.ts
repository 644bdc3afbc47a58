/**
 * The system lane, `npm run test:system` (root needed): the S3 test files (driver
 * conformance, store conformance and the S3 driver tests) against a real S3 server, a
 * throw-away Ceph RADOS Gateway started and stopped by the global setup. The same
 * files run in `npm test` against the s3rver emulator instead.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/s3-*.test.ts'],
    globalSetup: ['test/fixtures/s3-rgw-setup.ts'],
    hookTimeout: 120_000,
    testTimeout: 300_000,
  },
});
