/**
 * Running one case: build its context from a factory (fresh backend), run it under a
 * timeout, tear down. Shared by the vitest glue and the plain runner; no vitest here.
 */
import type { Driver } from '../src/driver.js';
import { guardDriver } from '../src/driver.js';
import { openStore } from '../src/store.js';
import { within } from './helpers.js';
import type {
  ConformanceCase,
  DriverCase,
  DriverCaseContext,
  DriverFactory,
  StoreCase,
  StoreCaseContext,
  StoreConformanceOptions,
} from './types.js';

const TEARDOWN_TIMEOUT = 60_000;

export interface CaseOutcome {
  notes: string[];
  durationMs: number;
}

/** Failure of a case, carrying the notes it wrote before failing. */
export class CaseFailure extends Error {
  constructor(
    readonly caseName: string,
    override readonly cause: unknown,
    readonly notes: string[],
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'CaseFailure';
    if (cause instanceof Error && cause.stack) this.stack = cause.stack;
  }
}

/** A per-case resource scope: everything opened is closed, the backend destroyed last. */
export interface CaseScope {
  notes: string[];
  /** Registers cleanup, run in reverse order after the case. */
  defer(cleanup: () => unknown): void;
}

/**
 * Runs `run` with a timeout and the scope's cleanups afterwards. A case that times out
 * keeps running in the background; its eventual rejection is observed and dropped.
 */
export async function runScoped(
  name: string,
  timeout: number,
  run: (scope: CaseScope) => Promise<void>,
): Promise<CaseOutcome> {
  const notes: string[] = [];
  const cleanups: (() => unknown)[] = [];
  const scope: CaseScope = { notes, defer: (cleanup) => cleanups.push(cleanup) };
  const started = performance.now();
  let failure: unknown;
  let failed = false;
  const body = run(scope);
  body.catch(() => {});
  try {
    await within(body, timeout, `case "${name}"`);
  } catch (error) {
    failed = true;
    failure = error;
  }
  for (const cleanup of cleanups.reverse()) {
    try {
      await within(Promise.resolve().then(cleanup), TEARDOWN_TIMEOUT, `teardown of "${name}"`);
    } catch (error) {
      if (!failed) {
        failed = true;
        failure = error;
      }
    }
  }
  if (failed) throw new CaseFailure(name, failure, notes);
  return { notes, durationMs: performance.now() - started };
}

/** Builds a driver-case context over a fresh backend from `factory`, inside `scope`. */
export async function driverContext(factory: DriverFactory, scope: CaseScope): Promise<DriverCaseContext> {
  const created = await factory.create();
  scope.defer(() => factory.destroy(created));
  const driver = guardDriver(created);
  let warned = false;
  const note = (message: string) => scope.notes.push(message);
  return {
    driver,
    capabilities: driver.capabilities,
    limits: driver.limits,
    expectedCapabilities: factory.capabilities,
    note,
    async reopen(): Promise<Driver> {
      if (!factory.reopen) {
        if (!warned) note('weaker: the factory has no reopen(); the "fresh instance" is the same instance');
        warned = true;
        return driver;
      }
      const other = guardDriver(await factory.reopen(created));
      scope.defer(() => other.close?.());
      return other;
    },
  };
}

/** Runs one driver case against a fresh backend; rejects with CaseFailure when it fails. */
export function runDriverCase(factory: DriverFactory, testCase: DriverCase): Promise<CaseOutcome> {
  return runScoped(testCase.name, testCase.timeout, async (scope) => {
    const ctx = await driverContext(factory, scope);
    await testCase.run(ctx);
  });
}

/** Builds a store-case context: a store over a fresh backend, and a way to open a second one. */
export async function storeContext(
  factory: StoreConformanceOptions,
  scope: CaseScope,
): Promise<StoreCaseContext> {
  const created = await factory.createDriver();
  scope.defer(() => factory.destroy(created));
  const driver = guardDriver(created);
  const store = await openStore(driver);
  let warned = false;
  const note = (message: string) => scope.notes.push(message);
  return {
    driver,
    store,
    capabilities: driver.capabilities,
    limits: driver.limits,
    note,
    async openSecond() {
      if (!factory.reopen) {
        if (!warned)
          note('weaker: the factory has no reopen(); the second store shares the first driver instance');
        warned = true;
        return openStore(driver);
      }
      const second = await openStore(await factory.reopen(created));
      scope.defer(() => second.close());
      return second;
    },
    openOver: (other) => openStore(other),
  };
}

/** Runs one store case against a fresh backend; rejects with CaseFailure when it fails. */
export function runStoreCase(factory: StoreConformanceOptions, testCase: StoreCase): Promise<CaseOutcome> {
  return runScoped(testCase.name, testCase.timeout, async (scope) => {
    const ctx = await storeContext(factory, scope);
    await testCase.run(ctx);
  });
}

/** The store-suite view of a driver factory. */
export function storeFactory(factory: DriverFactory): StoreConformanceOptions {
  const options: StoreConformanceOptions = {
    name: factory.name,
    createDriver: () => factory.create(),
    destroy: (driver) => factory.destroy(driver),
  };
  const reopen = factory.reopen;
  if (reopen) options.reopen = (driver) => reopen.call(factory, driver);
  return options;
}

/** Finds a case by exact name (or throws, listing near names). */
export function findCase<C extends ConformanceCase<unknown>>(cases: readonly C[], name: string): C {
  const found = cases.find((c) => c.name === name);
  if (found) return found;
  const near = cases.filter((c) => c.name.split(':')[0] === name.split(':')[0]).map((c) => `  ${c.name}`);
  throw new Error(
    `no conformance case named ${JSON.stringify(name)}${near.length ? `; similar:\n${near.join('\n')}` : ''}`,
  );
}
