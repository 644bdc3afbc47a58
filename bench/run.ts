/**
 * Runs a benchmark plan: sets up the backends, builds every scenario group, and for
 * each group warms the page cache (a scratch file as large as its biggest transfer),
 * sets up its fixtures, asserts every system returns the right bytes, measures its
 * tasks in interleaved rounds (../harness.ts) — warming again before each run — and
 * tears the fixtures down. Then the checks (ratios and targets) are evaluated over all
 * results and the report assembled. A group that fails is recorded in the notes and the
 * run goes on; `errors` says the run is not complete.
 */
import { readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import {
  type Backend,
  type BackendContext,
  backendFromUrl,
  defaultBackend,
  makeWorkDir,
  matrixBackends,
} from './backends.js';
import { measure, type TaskResult } from './harness.js';
import { machineInfo } from './machine.js';
import { createProgress } from './progress.js';
import {
  type BenchOptionsEntry,
  type BenchReport,
  evaluateChecks,
  type ResultEntry,
  SCHEMA,
} from './report.js';
import { gcGroups } from './scenarios/gc.js';
import { throughputGroups, warmupFor } from './scenarios/throughput.js';
import type { CheckSpec, Group } from './scenarios/types.js';
import { onExitSync, repoRoot } from './servers.js';

export const SCENARIOS = ['put', 'get', 'upload', 'commit', 'dedup', 'ops', 'list', 'rss', 'gc'] as const;

export interface RunOptions extends Omit<BenchOptionsEntry, 'scenarios'> {
  urls: string[];
  matrix?: 'local' | 'system' | undefined;
  scenarios: ReadonlySet<string>;
  progress: boolean;
  argv: string[];
  /** Where notes about the run's progress go (stderr by default). */
  log?: (line: string) => void;
  /** After each group, the report so far (`complete: false`). */
  onGroup?: (partial: BenchReport) => Promise<void>;
}

export interface RunOutcome {
  report: BenchReport;
  errors: string[];
}

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '?';
  }
}

async function openBackends(options: RunOptions, context: BackendContext): Promise<Backend[]> {
  if (options.urls.length > 0) {
    const backends: Backend[] = [];
    for (const url of options.urls) backends.push(await backendFromUrl(url, context));
    return backends;
  }
  if (options.matrix) return matrixBackends(context, options.matrix === 'system');
  return [await defaultBackend(context)];
}

export async function runBench(options: RunOptions): Promise<RunOutcome> {
  const started = new Date();
  const workDir = await makeWorkDir();
  const forgetWorkDir = onExitSync(() => rmSync(workDir, { recursive: true, force: true }));
  const context: BackendContext = { workDir, cleanups: [] };
  const notes: string[] = [];
  const errors: string[] = [];
  const results = new Map<string, TaskResult>();
  const entries: ResultEntry[] = [];
  const specs: CheckSpec[] = [];
  let backends: Backend[] = [];
  try {
    backends = await openBackends(options, context);
    const machine = await machineInfo(workDir);
    const assemble = (complete: boolean): BenchReport => ({
      schema: SCHEMA,
      complete,
      started: started.toISOString(),
      finished: new Date().toISOString(),
      blobcore: version(),
      argv: options.argv,
      options: {
        quick: options.quick,
        rounds: options.rounds,
        sizes: options.sizes,
        uploadSize: options.uploadSize,
        concurrency: options.concurrency,
        smallOps: options.smallOps,
        listKeys: options.listKeys,
        rssSize: options.rssSize,
        gcSizes: options.gcSizes,
        gcManifests: options.gcManifests,
        peers: options.peers,
        scenarios: [...options.scenarios],
      },
      machine,
      backends: backends.map((b) => ({
        name: b.name,
        driver: b.kind,
        url: b.url,
        ...(b.server ? { server: b.server } : {}),
        ...(b.durability ? { durability: b.durability } : {}),
      })),
      results: entries,
      checks: evaluateChecks(specs, results),
      notes,
    });
    const groups: { backend: Backend | undefined; group: Group }[] = [];
    const peerRoot = join(workDir, 'peers');
    for (const backend of backends) {
      const built = await throughputGroups(backend, {
        sizes: options.sizes,
        uploadSize: options.uploadSize,
        concurrency: options.concurrency,
        smallOps: options.smallOps,
        listKeys: options.listKeys,
        rssSize: options.rssSize,
        peers: options.peers,
        scenarios: options.scenarios,
        peerDir: (name) => join(backend.fsRoot ? join(backend.scratchDir, 'peers') : peerRoot, name),
        notes,
      });
      for (const group of built) groups.push({ backend, group });
    }
    const fsBackend = backends.find((b) => b.kind === 'fs');
    if (options.scenarios.has('gc') && options.gcSizes.length > 0) {
      if (fsBackend) {
        const gc = gcGroups({
          sizes: options.gcSizes,
          manifests: options.gcManifests,
          repositories: 20,
          workDir,
          notes,
        });
        for (const group of gc.groups) groups.push({ backend: undefined, group });
        specs.push(...gc.checks);
      } else {
        notes.push('GC scale not run: it runs on the fs driver, and no file: store is in this run.');
      }
    }
    const total = groups.reduce(
      (sum, { group }) =>
        sum + group.tasks.length * ((group.rounds ?? options.rounds) + (group.warmup === false ? 0 : 1)),
      0,
    );
    const progress = createProgress(total, options.progress);
    for (const { backend, group } of groups) {
      progress.phase(`${group.backend}: ${group.title}`);
      const warmup = backend
        ? warmupFor(backend, group)
        : fsBackend
          ? warmupFor(fsBackend, group)
          : undefined;
      const reclaim = backend?.reclaim;
      const warm =
        warmup || reclaim
          ? async () => {
              await reclaim?.();
              await warmup?.();
            }
          : undefined;
      const began = performance.now();
      try {
        await warm?.();
        await group.setup?.();
        try {
          for (const task of group.tasks) {
            try {
              await task.check?.();
            } catch (error) {
              throw new Error(`correctness check failed for ${task.meta.id}: ${String(error)}`, {
                cause: error,
              });
            }
          }
          const tasks = group.tasks.map((task) => {
            if (!warm) return task;
            const prepare = task.prepare;
            return {
              ...task,
              prepare: async () => {
                await prepare?.();
                await warm();
              },
            };
          });
          const measured = await measure(tasks, {
            rounds: group.rounds ?? options.rounds,
            warmup: group.warmup !== false,
            onRun: () => progress.step(),
          });
          const limit = group.tasks.find((task) => task.meta.system === 'limit');
          const limitRate = limit ? measured.find((r) => r.name === limit.name)?.mbps?.median : undefined;
          measured.forEach((result, i) => {
            const task = group.tasks[i];
            if (!task) return;
            results.set(task.meta.id, result);
            const entry: ResultEntry = {
              ...task.meta,
              group: group.id,
              samples: result.samples,
              ms: result.ms,
              msPerOp: result.msPerOp,
              opsPerSec: result.opsPerSec,
              peakRssMiB: result.peakRssMiB,
              peakRssTotalMiB: result.peakRssTotalMiB,
            };
            if (result.mbps) entry.mbps = result.mbps;
            if (result.metrics) entry.metrics = result.metrics;
            if (limitRate && result.mbps && task.meta.system !== 'limit')
              entry.vsLimit = result.mbps.median / limitRate;
            entries.push(entry);
          });
          specs.push(...group.checks);
        } finally {
          await group.teardown?.();
        }
      } catch (error) {
        const message = `${group.id}: ${error instanceof Error ? error.message : String(error)}`;
        errors.push(message);
        notes.push(`FAILED ${message}`);
        options.log?.(`blobcore bench: ${message}`);
      }
      options.log?.(`  ${group.id} done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
      // What is measured so far, for a run that might not finish (a server that hangs).
      await options.onGroup?.(assemble(false));
    }
    progress.done();
    machine.load.end = os.loadavg().map((n) => Number(n.toFixed(2)));
    const report = assemble(true);
    return { report, errors };
  } finally {
    for (const backend of backends.reverse()) await backend.close().catch(() => undefined);
    for (const cleanup of context.cleanups.reverse()) await cleanup().catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
    forgetWorkDir();
  }
}
