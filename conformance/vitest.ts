/**
 * Registering the cases with vitest. vitest is an optional peer dependency and is
 * loaded here with a dynamic import only, so the CLI (which imports ./index.ts for
 * `runConformance`) never loads it. Hence both functions are async: call them with a
 * top-level `await` in a test file.
 *
 * Every case is registered with `it` — none is skipped. Cases that run a weaker variant
 * because a capability is absent say so by name (the variant is in the case name), in a
 * line printed at collection, and in an annotation on the test.
 */
import { driverCases } from './driver-cases.js';
import { CaseFailure, runDriverCase, runStoreCase } from './execute.js';
import { selectionFor } from './run.js';
import { storeCases } from './store-cases.js';
import type { ConformanceCase, DriverConformanceOptions, StoreConformanceOptions } from './types.js';

/** Headroom over a case's own timeout for teardown, so vitest reports the case's message, not its own. */
const TEARDOWN_MARGIN = 65_000;

type Annotate = (message: string) => Promise<unknown>;

async function register<Ctx>(
  title: string,
  cases: ConformanceCase<Ctx>[],
  run: (c: ConformanceCase<Ctx>) => Promise<{ notes: string[] }>,
): Promise<void> {
  const { describe, it } = await import('vitest');
  const weak = cases.filter((c) => c.weaker !== undefined);
  for (const c of weak)
    console.info(`[blobcore conformance] ${title}: weaker variant "${c.name}" — ${c.weaker}`);
  describe(title, () => {
    for (const c of cases) {
      it(
        c.name,
        async (context) => {
          const annotate: Annotate = (message) => context.annotate(message);
          if (c.weaker) await annotate(`weaker variant: ${c.weaker}`);
          try {
            const outcome = await run(c);
            for (const note of outcome.notes) await annotate(note);
          } catch (error) {
            if (error instanceof CaseFailure) {
              for (const note of error.notes) await annotate(note);
              throw error.cause;
            }
            throw error;
          }
        },
        c.timeout + TEARDOWN_MARGIN,
      );
    }
  });
}

/**
 * Registers the driver-level cases for one driver: a fresh backend per case from
 * `create()`, a second instance from `reopen()`, cleanup by `destroy()`.
 *
 *   await driverConformance({ name: 'memory', create, reopen, destroy });
 */
export async function driverConformance(options: DriverConformanceOptions): Promise<void> {
  const selection = await selectionFor(options);
  await register(`driver conformance: ${options.name}`, driverCases(selection), (c) =>
    runDriverCase(options, c),
  );
}

/**
 * Registers the store-level cases: a BlobStore over a fresh driver per case, and a
 * second `openStore` over `reopen(driver)` standing in for another process.
 *
 *   await storeConformance({ name: 'memory', createDriver, reopen, destroy });
 */
export async function storeConformance(options: StoreConformanceOptions): Promise<void> {
  const target = {
    name: options.name,
    create: () => options.createDriver(),
    destroy: options.destroy,
    ...(options.reopen ? { reopen: options.reopen } : {}),
  };
  const selection = await selectionFor(target);
  await register(`store conformance: ${options.name}`, storeCases(selection), (c) =>
    runStoreCase(options, c),
  );
}
