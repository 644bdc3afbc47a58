/**
 * Proof that the conformance suite can fail: deliberately broken drivers
 * (./fixtures/conformance-broken-drivers.ts) are run through named cases, which must
 * reject. Each broken driver also passes a case it does not break, so the failures are
 * the suite catching the bug, not the fixture being unusable. Nothing failing is
 * registered as a test of its own: the cases are called directly.
 */
import { describe, expect, it } from 'vitest';
import {
  CaseFailure,
  type CaseSelection,
  type DriverFactory,
  driverCases,
  findCase,
  runConformanceReport,
  runDriverCase,
  runStoreCase,
  storeCases,
  storeFactory,
} from '../conformance/index.js';
import {
  ignoresIfNoneMatch,
  ignoresReadOffsets,
  nonAtomicWrites,
} from './fixtures/conformance-broken-drivers.js';

const selection: CaseSelection = {
  capabilities: { conditionalWrite: true, signedUrl: false, copy: true, link: false, usage: false },
  reopen: true,
};
const driverList = driverCases(selection);
const storeList = storeCases(selection);

async function expectDriverCaseFails(factory: DriverFactory, name: string): Promise<CaseFailure> {
  const failure = await runDriverCase(factory, findCase(driverList, name)).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(failure, `driver case "${name}" should fail against ${factory.name}`).toBeInstanceOf(CaseFailure);
  return failure as CaseFailure;
}

async function expectStoreCaseFails(factory: DriverFactory, name: string): Promise<CaseFailure> {
  const failure = await runStoreCase(storeFactory(factory), findCase(storeList, name)).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(failure, `store case "${name}" should fail against ${factory.name}`).toBeInstanceOf(CaseFailure);
  return failure as CaseFailure;
}

const TIMEOUT = 120_000;

describe('a driver that ignores read offsets fails the suite', () => {
  const failing = [
    'ranges: offsets 0, 32 and 64 of a 96-byte object, with and without length',
    'ranges: an offset past the end is RANGE_INVALID',
    'ranges: a last-byte read returns exactly the last byte',
    'ranges: unaligned ranges deep inside a 3 MiB object return exactly those bytes',
    'concurrency: 10 concurrent ranged readers of a 128 MiB object get exactly their ranges',
  ];
  for (const name of failing) {
    it(
      `fails "${name}"`,
      async () => {
        const failure = await expectDriverCaseFails(ignoresReadOffsets, name);
        expect(failure.message).toMatch(/bytes|size|RANGE_INVALID|succeeded/);
      },
      TIMEOUT,
    );
  }
  it('fails the store case "store get: ranged reads …"', async () => {
    await expectStoreCaseFails(
      ignoresReadOffsets,
      'store get: ranged reads return exactly the requested bytes; an offset past the end is RANGE_INVALID',
    );
  });
  it('still passes a case it does not break (full reads)', async () => {
    await runDriverCase(
      ignoresReadOffsets,
      findCase(
        driverList,
        'content: write/read of empty, 1 byte, multi-byte UTF-8, non-UTF-8 bytes, 32 random bytes and 1 MiB, as bytes and as a stream',
      ),
    );
  });
});

describe('a driver whose partial writes are visible fails the suite', () => {
  const failing = [
    'atomicity: readers during a large overwrite see the whole old or the whole new object, never a mix or a part',
    'atomicity: a write whose source stream fails leaves the old object untouched, a new key absent, and no stray keys',
    'atomicity: a write aborted by its AbortSignal mid-stream rejects ABORTED, leaves the old object untouched and no stray keys',
  ];
  for (const name of failing) {
    it(
      `fails "${name}"`,
      async () => {
        await expectDriverCaseFails(nonAtomicWrites, name);
      },
      TIMEOUT,
    );
  }
  it('fails the store case "store put: a source that fails mid-put … leaves nothing visible"', async () => {
    const failure = await expectStoreCaseFails(
      nonAtomicWrites,
      'store put: a source that fails mid-put, or an AbortSignal fired mid-put (ABORTED), leaves nothing visible',
    );
    expect(failure.message).toMatch(/left data\/.* bytes\) on the backend/);
  });
  it('still passes a case it does not break (ranges)', async () => {
    await runDriverCase(
      nonAtomicWrites,
      findCase(driverList, 'ranges: a last-byte read returns exactly the last byte'),
    );
  });
});

describe('a driver that ignores ifNoneMatch while declaring conditionalWrite fails the suite', () => {
  it('fails "conditional: ifNoneMatch \'*\' on an existing key …"', async () => {
    const failure = await expectDriverCaseFails(
      ignoresIfNoneMatch,
      "conditional: ifNoneMatch '*' on an existing key is PRECONDITION_FAILED and keeps the object; on a missing key it creates",
    );
    expect(failure.message).toMatch(/expected rejection with PRECONDITION_FAILED/);
  });
  it('fails "conditional: 16 concurrent create-only (ifNoneMatch) writers → exactly one wins"', async () => {
    const failure = await expectDriverCaseFails(
      ignoresIfNoneMatch,
      'conditional: 16 concurrent create-only (ifNoneMatch) writers → exactly one wins',
    );
    expect(failure.message).toMatch(/16 of 16 writers won/);
  });
  it('fails the store case "20 concurrent uploads … one physical copy"', async () => {
    await expectStoreCaseFails(
      ignoresIfNoneMatch,
      'store uploads: 20 concurrent uploads of the same content committing at once → one physical copy, all succeed with the same digest',
    );
  });
  it('still passes a case it does not break (ifMatch)', async () => {
    await runDriverCase(
      ignoresIfNoneMatch,
      findCase(
        driverList,
        'conditional: ifMatch with the current etag replaces; a stale etag or a missing key is PRECONDITION_FAILED',
      ),
    );
  });
});

describe('the plain runner (what `blobcore conformance` prints) reports broken drivers', () => {
  it('lists failed cases and ends with "N passed, N failed"', async () => {
    let output = '';
    const report = await runConformanceReport(ignoresReadOffsets, {
      filter: /^driver: ranges:/,
      write: (text) => {
        output += text;
      },
    });
    expect(report.failed).toBeGreaterThanOrEqual(4);
    expect(report.passed).toBeGreaterThanOrEqual(1);
    expect(report.results.every((r) => r.suite === 'driver' && r.name.startsWith('ranges:'))).toBe(true);
    const lines = output.trimEnd().split('\n');
    expect(lines.at(-1)).toBe(`${report.passed} passed, ${report.failed} failed`);
    expect(output).toMatch(/^FAIL +driver .*ranges: offsets 0, 32 and 64/m);
  });
  it('prints one JSON document with --json', async () => {
    let output = '';
    const report = await runConformanceReport(ignoresIfNoneMatch, {
      json: true,
      filter: 'conditional:',
      write: (text) => {
        output += text;
      },
    });
    const parsed = JSON.parse(output) as typeof report;
    expect(parsed.failed).toBe(report.failed);
    expect(parsed.failed).toBeGreaterThanOrEqual(2);
    expect(parsed.results.find((r) => r.status === 'failed')?.error?.message).toBeTruthy();
  });
});
