/**
 * Types shared by the conformance cases, the plain runner and the vitest glue.
 *
 * A case is data: `{ name, timeout, weaker?, run(ctx) }`. It asserts with
 * `node:assert/strict` and the helpers in ./helpers.ts, so the same case runs under
 * vitest (`driverConformance`, `storeConformance`) and under the CLI
 * (`runConformance`), which never loads vitest.
 */
import type { Driver, DriverCapabilities, DriverLimits } from '../src/driver.js';
import type { BlobStore } from '../src/store.js';

/**
 * How the suite gets drivers for one backend.
 *
 * `create()` returns a driver over a fresh, empty backend (a new Map, temp dir, bucket
 * prefix); it is called once per case. `reopen(driver)` returns a second, independent
 * instance over the same backend as `driver` (same MemoryBackend, same root dir, same
 * bucket and prefix): it stands in for another process. `destroy(driver)` is called
 * with what `create()` returned, after the case, and removes the backend.
 */
export interface DriverFactory {
  /** Shown in test names and reports, e.g. `memory` or `fs (tmpfs)`. */
  name: string;
  create(): Driver | Promise<Driver>;
  destroy(driver: Driver): void | Promise<void>;
  /**
   * A second instance on the same backend. Without it, cases that need one use the
   * same instance (after a JSON round-trip of whatever they hand over) and say so.
   */
  reopen?(driver: Driver): Driver | Promise<Driver>;
  /**
   * The manifest the driver is expected to declare. When given, a case asserts the
   * driver's `capabilities` match it (so a capability cannot be dropped unnoticed), and
   * vitest test names are chosen from it without creating a probe driver.
   */
  capabilities?: Partial<DriverCapabilities>;
}

export type DriverConformanceOptions = DriverFactory;

export interface StoreConformanceOptions {
  name: string;
  /** A driver over a fresh, empty backend; the store suite opens stores over it. */
  createDriver(): Driver | Promise<Driver>;
  destroy(driver: Driver): void | Promise<void>;
  /** A second driver instance on the same backend (for the second `openStore`). */
  reopen?(driver: Driver): Driver | Promise<Driver>;
}

/** A backend the CLI runs both suites against. */
export type ConformanceTarget = DriverFactory;

/** What decides which variant of a case runs. */
export interface CaseSelection {
  capabilities: DriverCapabilities;
  /** Whether the factory can open a second instance on the same backend. */
  reopen: boolean;
}

export interface ConformanceCase<Ctx> {
  /** Says what the case checks; unique within its suite. */
  name: string;
  /** Milliseconds before the case fails as hung. */
  timeout: number;
  /**
   * Set when the manifest made the suite run a weaker-guarantee variant of this case
   * (or only check that an absent capability fails with UNSUPPORTED); says why. Runners
   * report it by name, so nothing is weakened silently.
   */
  weaker?: string;
  run(ctx: Ctx): Promise<void>;
}

interface CaseContextBase {
  capabilities: DriverCapabilities;
  limits: DriverLimits;
  /** Adds a line to the case's report (shown by both runners). */
  note(message: string): void;
}

export interface DriverCaseContext extends CaseContextBase {
  /** The driver under test, guarded (see src/driver-guard.ts). */
  driver: Driver;
  /** A second guarded instance on the same backend (or `driver`, noted, without `reopen`). */
  reopen(): Promise<Driver>;
  /** The expected manifest from the factory, if it gave one. */
  expectedCapabilities: Partial<DriverCapabilities> | undefined;
}

export type DriverCase = ConformanceCase<DriverCaseContext>;

export interface StoreCaseContext extends CaseContextBase {
  /** The guarded driver under `store`; cases corrupt or inspect the backend through it. */
  driver: Driver;
  /** A store opened over `driver`. */
  store: BlobStore;
  /** A second store on the same backend (a new driver instance from `reopen`): another process. */
  openSecond(): Promise<BlobStore>;
  /** A store over another driver object (e.g. a counting wrapper of `driver`). */
  openOver(driver: Driver): Promise<BlobStore>;
}

export type StoreCase = ConformanceCase<StoreCaseContext>;

export type SuiteName = 'driver' | 'store';

export interface CaseResult {
  suite: SuiteName;
  name: string;
  status: 'passed' | 'failed';
  durationMs: number;
  weaker?: string;
  notes: string[];
  error?: { code?: string; message: string; stack?: string };
}

export interface ConformanceReport {
  target: string;
  passed: number;
  failed: number;
  /** Cases that ran a weaker-guarantee variant (also counted in passed/failed). */
  weakened: number;
  durationMs: number;
  results: CaseResult[];
}
