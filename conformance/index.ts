/**
 * `blobcore/conformance`: the driver contract and the store's guarantees as executable
 * cases, for every driver in this repo and for authors of new ones.
 *
 * Under vitest (a peer dependency, loaded lazily):
 *   await driverConformance({ name, create, reopen, destroy, capabilities? });
 *   await storeConformance({ name, createDriver, reopen, destroy });
 * Outside vitest (the CLI):
 *   process.exitCode = await runConformance('file:///var/lib/blobs', { json: false });
 *
 * The case lists are data (`driverCases`, `storeCases`); see ./README.md for one line
 * per case.
 */
export { driverCaseNames, driverCases } from './driver-cases.js';
export {
  CaseFailure,
  type CaseOutcome,
  findCase,
  runDriverCase,
  runStoreCase,
  storeFactory,
} from './execute.js';
export {
  assertBytes,
  assertCode,
  hashStream,
  listAll,
  Pattern,
  readAll,
  rejectsWithCode,
  streamFailsWithCode,
} from './helpers.js';
export { type RunOptions, runConformance, runConformanceReport, selectionFor, urlTarget } from './run.js';
export { storeCases } from './store-cases.js';
export type * from './types.js';
export { driverConformance, storeConformance } from './vitest.js';
export { countingDriver, type WriteCounts } from './wrappers.js';
