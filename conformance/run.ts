/**
 * The plain runner behind `blobcore conformance <store-url> [--json]`: runs the driver
 * and store cases one after another, without vitest, and prints a per-case table
 * (or one JSON document) whose last line is `N passed, N failed`.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Driver, DriverCapabilities } from '../src/driver.js';
import { guardDriver } from '../src/driver.js';
import { openDriver } from '../src/store-url.js';
import { driverCases } from './driver-cases.js';
import { CaseFailure, runDriverCase, runStoreCase, storeFactory } from './execute.js';
import { listAll } from './helpers.js';
import { storeCases } from './store-cases.js';
import type { CaseResult, CaseSelection, ConformanceReport, ConformanceTarget, SuiteName } from './types.js';

export interface RunOptions {
  /** Print one JSON document (the report) instead of the table. */
  json?: boolean | undefined;
  /** Run only cases whose `suite: name` contains this text (case-insensitive) or matches this RegExp. */
  filter?: string | RegExp | undefined;
  /** Which suites to run; both by default. */
  suites?: readonly SuiteName[] | undefined;
  /** Where output goes; process.stdout by default. */
  write?: ((text: string) => void) | undefined;
}

const MANIFEST_KEYS = ['conditionalWrite', 'signedUrl', 'copy', 'link', 'usage'] as const;

/** The manifest that picks case variants: the factory's, when complete, else a probe driver's. */
export async function selectionFor(target: ConformanceTarget): Promise<CaseSelection> {
  const declared = target.capabilities;
  let capabilities: DriverCapabilities;
  if (declared && MANIFEST_KEYS.every((key) => typeof declared[key] === 'boolean')) {
    capabilities = declared as DriverCapabilities;
  } else {
    const probe = await target.create();
    try {
      capabilities = { ...guardDriver(probe).capabilities };
    } finally {
      await target.destroy(probe);
    }
  }
  return { capabilities, reopen: target.reopen !== undefined };
}

async function deleteEverything(driver: Driver): Promise<void> {
  for (const key of await listAll(driver, '')) await driver.delete(key);
}

/**
 * A target over a store URL: every case gets its own backend under the URL
 * (`memory:` → a fresh named backend; `file:///root` → `file:///root/conformance-<random>`;
 * `s3://bucket/prefix` → `s3://bucket/prefix/conformance-<random>`), `reopen` opens the
 * same sub-URL again, and `destroy` deletes every key (and, for file:/pvc:, the directory).
 */
export function urlTarget(
  url: string | URL,
  open: (url: string) => Promise<Driver> = (u) => openDriver(u),
): ConformanceTarget {
  const base = new URL(String(url));
  const urls = new WeakMap<Driver, string>();
  const subUrl = (): string => {
    const id = `conformance-${randomBytes(6).toString('hex')}`;
    if (base.protocol === 'memory:') return `memory://${base.host ? `${base.host}-` : ''}${id}`;
    const next = new URL(base.href);
    next.pathname = `${next.pathname.replace(/\/+$/, '')}/${id}`;
    return next.href;
  };
  return {
    name: base.protocol === 'memory:' ? 'memory' : base.href.replace(/\?.*$/, ''),
    async create() {
      const sub = subUrl();
      const driver = await open(sub);
      urls.set(driver, sub);
      return driver;
    },
    async reopen(driver) {
      const sub = urls.get(driver);
      if (sub === undefined) throw new Error('reopen() of a driver this target did not create');
      return open(sub);
    },
    async destroy(driver) {
      const sub = urls.get(driver);
      try {
        await deleteEverything(guardDriver(driver));
      } finally {
        await driver.close?.();
        if (sub && (base.protocol === 'file:' || base.protocol === 'pvc:')) {
          await rm(fileURLToPath(sub.replace(/^pvc:/, 'file:').replace(/\?.*$/, '')), {
            recursive: true,
            force: true,
          });
        }
      }
    },
  };
}

function matches(filter: string | RegExp | undefined, suite: SuiteName, name: string): boolean {
  if (filter === undefined) return true;
  const text = `${suite}: ${name}`;
  return typeof filter === 'string' ? text.toLowerCase().includes(filter.toLowerCase()) : filter.test(text);
}

function errorInfo(error: unknown): NonNullable<CaseResult['error']> {
  const cause = error instanceof CaseFailure ? error.cause : error;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    const info: NonNullable<CaseResult['error']> = { message: cause.message };
    if (typeof code === 'string') info.code = code;
    if (cause.stack) info.stack = cause.stack;
    return info;
  }
  return { message: String(cause) };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

/** Runs the suites and returns the report; prints as it goes. */
export async function runConformanceReport(
  target: string | URL | ConformanceTarget,
  options: RunOptions = {},
): Promise<ConformanceReport> {
  const factory = typeof target === 'string' || target instanceof URL ? urlTarget(target) : target;
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const table = !options.json;
  const suites = options.suites ?? ['driver', 'store'];
  const started = performance.now();
  const selection = await selectionFor(factory);
  const results: CaseResult[] = [];

  const plan: { suite: SuiteName; name: string; weaker?: string; run: () => Promise<{ notes: string[] }> }[] =
    [];
  if (suites.includes('driver')) {
    for (const c of driverCases(selection)) {
      plan.push({
        suite: 'driver',
        name: c.name,
        ...(c.weaker ? { weaker: c.weaker } : {}),
        run: () => runDriverCase(factory, c),
      });
    }
  }
  if (suites.includes('store')) {
    const stores = storeFactory(factory);
    for (const c of storeCases(selection)) {
      plan.push({
        suite: 'store',
        name: c.name,
        ...(c.weaker ? { weaker: c.weaker } : {}),
        run: () => runStoreCase(stores, c),
      });
    }
  }
  const selected = plan.filter((p) => matches(options.filter, p.suite, p.name));

  if (table) {
    write(`blobcore conformance: ${factory.name} — ${selected.length} cases\n`);
    write(`${pad('result', 7)} ${pad('suite', 6)} ${pad('ms', 7)} case\n`);
  }
  // A rejection nobody handled (a driver's stray promise) fails the case it surfaced in
  // instead of killing the whole run.
  const stray: unknown[] = [];
  const onUnhandled = (reason: unknown) => {
    stray.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    for (const item of selected) {
      results.push(await runOne(item));
    }
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }

  async function runOne(item: (typeof plan)[number]): Promise<CaseResult> {
    const caseStart = performance.now();
    let result: CaseResult;
    try {
      const outcome = await item.run();
      result = { suite: item.suite, name: item.name, status: 'passed', durationMs: 0, notes: outcome.notes };
    } catch (error) {
      const notes = error instanceof CaseFailure ? error.notes : [];
      result = {
        suite: item.suite,
        name: item.name,
        status: 'failed',
        durationMs: 0,
        notes,
        error: errorInfo(error),
      };
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (stray.length > 0 && result.status === 'passed') {
      const reason = stray[0];
      result = {
        ...result,
        status: 'failed',
        error: { ...errorInfo(reason), message: `unhandled rejection: ${errorInfo(reason).message}` },
      };
    }
    stray.length = 0;
    result.durationMs = Math.round(performance.now() - caseStart);
    if (item.weaker) result.weaker = item.weaker;
    if (table) {
      const label = result.status === 'passed' ? (item.weaker ? 'weaker' : 'pass') : 'FAIL';
      write(`${pad(label, 7)} ${pad(item.suite, 6)} ${pad(String(result.durationMs), 7)} ${item.name}\n`);
      if (item.weaker) write(`${' '.repeat(23)}weaker variant: ${item.weaker}\n`);
      for (const note of result.notes) write(`${' '.repeat(23)}note: ${note}\n`);
      if (result.error) {
        const code = result.error.code ? `${result.error.code}: ` : '';
        for (const line of `${code}${result.error.message}`.split('\n').slice(0, 12))
          write(`${' '.repeat(23)}! ${line}\n`);
      }
    }
    return result;
  }

  const report: ConformanceReport = {
    target: factory.name,
    passed: results.filter((r) => r.status === 'passed').length,
    failed: results.filter((r) => r.status === 'failed').length,
    weakened: results.filter((r) => r.weaker !== undefined).length,
    durationMs: Math.round(performance.now() - started),
    results,
  };
  if (table) {
    const weak = results.filter((r) => r.weaker !== undefined);
    if (weak.length > 0) {
      write(
        `${weak.length} cases ran a weaker variant (absent capabilities): ${weak.map((r) => JSON.stringify(r.name)).join(', ')}\n`,
      );
    }
    const failed = results.filter((r) => r.status === 'failed');
    if (failed.length > 0) write(`failed: ${failed.map((r) => `${r.suite}: ${r.name}`).join(' | ')}\n`);
    write(`${(report.durationMs / 1000).toFixed(1)} s\n`);
    write(`${report.passed} passed, ${report.failed} failed\n`);
  } else {
    write(`${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
}

/**
 * `blobcore conformance <store-url> [--json]`: runs both suites and resolves to the
 * process exit status (0 when every case passed, 1 otherwise).
 */
export async function runConformance(
  target: string | URL | ConformanceTarget,
  options: RunOptions = {},
): Promise<number> {
  const report = await runConformanceReport(target, options);
  return report.failed === 0 ? 0 : 1;
}
