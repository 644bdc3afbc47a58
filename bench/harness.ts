/**
 * Measurement harness over tinybench.
 *
 * Tasks run in interleaved rounds (A B C, A B C, …) rather than all of A then all of B:
 * this VM hands freed memory back to its host, so whichever task runs first after a
 * quiet spell pays for fresh pages; interleaving spreads that cost evenly. Round one is
 * a warm-up and is discarded (unless `warmup: false`). Each task run is one tinybench iteration (one sample);
 * small operations are batched inside `fn` (`ops` per iteration) so a sample is never a
 * lone sub-millisecond call.
 *
 * Per task run, in order: `prepare` (untimed, outside the memory sampling: builds the
 * next input, warms the page cache with a scratch file), then tinybench runs
 * `beforeEach` → `fn` (timed) → `afterEach`, while peak RSS above the pre-run baseline
 * is sampled every 5 ms; then `metrics` collects counters of that run (e.g. bytes
 * re-read during a resume), summed over the kept rounds.
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Bench, type FnOptions } from 'tinybench';

export interface TaskSpec {
  name: string;
  /** Bytes moved per iteration (for MB/s); omit for pure ops/s tasks. */
  bytes?: number;
  /** Operations per iteration (for ops/s and ms per op); default 1. */
  ops?: number;
  fn: () => Promise<unknown> | unknown;
  /** Untimed, before memory sampling starts. */
  prepare?: () => Promise<void> | void;
  beforeEach?: () => Promise<void> | void;
  afterEach?: () => Promise<void> | void;
  /** Counters of the run just finished (summed over kept rounds into `TaskResult.metrics`). */
  metrics?: () => Record<string, number>;
}

export interface Stats {
  min: number;
  median: number;
  max: number;
}

export interface TaskResult {
  name: string;
  samples: number;
  /** Milliseconds per iteration. */
  ms: Stats;
  /** Milliseconds per operation (iteration / ops). */
  msPerOp: Stats;
  /** MB/s (10^6 bytes) when `bytes` was given. */
  mbps?: Stats;
  /** Operations per second (always given; = iterations/s when `ops` is 1). */
  opsPerSec: Stats;
  /** Peak resident memory above the baseline before the run, in MiB (max over kept rounds). */
  peakRssMiB: number;
  /** Peak resident memory of the whole process during the runs, in MiB. */
  peakRssTotalMiB: number;
  metrics?: Record<string, number>;
}

export interface MeasureOptions {
  rounds: number;
  /** Run and discard a warm-up round first (default true). */
  warmup?: boolean;
  /** Called after every task run, warm-up included. */
  onRun?: (task: string, round: number) => void;
}

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** `global.gc` when node runs with --expose-gc, else turned on at run time. */
export function collectGarbage(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
    (globalThis as { gc?: () => void }).gc = gc;
  }
  gc();
}

/** Runs `work` while sampling RSS every 5 ms; returns the peak above the starting RSS, in bytes. */
export async function withRssSampling<T>(
  work: () => Promise<T>,
): Promise<{ result: T; peak: number; total: number }> {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, peak: peak - baseline, total: peak };
  } finally {
    clearInterval(timer);
  }
}

function statsOf(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0] ?? 0, median: median(sorted), max: sorted[sorted.length - 1] ?? 0 };
}

/** Rate stats from time stats: the slowest run gives the minimum rate. */
function rate(per: number, ms: Stats): Stats {
  return { min: per / ms.max, median: per / ms.median, max: per / ms.min };
}

export async function measure(tasks: TaskSpec[], options: MeasureOptions | number): Promise<TaskResult[]> {
  const { rounds, onRun, warmup } =
    typeof options === 'number' ? { rounds: options, onRun: undefined, warmup: true } : options;
  const samples = new Map<string, number[]>(tasks.map((task) => [task.name, []]));
  const peaks = new Map<string, number>(tasks.map((task) => [task.name, 0]));
  const totals = new Map<string, number>(tasks.map((task) => [task.name, 0]));
  const metrics = new Map<string, Record<string, number>>();
  for (let round = warmup === false ? 1 : 0; round <= rounds; round++) {
    for (const task of tasks) {
      await task.prepare?.();
      collectGarbage();
      const bench = new Bench({ iterations: 1, time: 0, warmup: false, throws: true, retainSamples: true });
      const hooks: FnOptions = {};
      if (task.beforeEach) hooks.beforeEach = task.beforeEach;
      if (task.afterEach) hooks.afterEach = task.afterEach;
      // An async function: tinybench calls a plain function once more, untimed, to find
      // out whether it returns a promise; an AsyncFunction it recognises without a call.
      bench.add(
        task.name,
        async () => {
          await task.fn();
        },
        hooks,
      );
      const { peak, total } = await withRssSampling(() => bench.run());
      const result = bench.tasks[0]?.result;
      if (!result || !('latency' in result))
        throw new Error(`benchmark task ${task.name} produced no result`);
      const counters = task.metrics?.();
      onRun?.(task.name, round);
      if (round === 0) continue; // warm-up round
      samples.get(task.name)?.push(...(result.latency.samples ?? [result.latency.mean]));
      peaks.set(task.name, Math.max(peaks.get(task.name) ?? 0, peak));
      totals.set(task.name, Math.max(totals.get(task.name) ?? 0, total));
      if (counters) {
        const sum = metrics.get(task.name) ?? {};
        for (const [key, value] of Object.entries(counters)) sum[key] = (sum[key] ?? 0) + value;
        metrics.set(task.name, sum);
      }
    }
  }
  return tasks.map((task) => {
    const ms = statsOf(samples.get(task.name) ?? []);
    const ops = task.ops ?? 1;
    const out: TaskResult = {
      name: task.name,
      samples: samples.get(task.name)?.length ?? 0,
      ms,
      msPerOp: { min: ms.min / ops, median: ms.median / ops, max: ms.max / ops },
      opsPerSec: rate(ops * 1e3, ms),
      peakRssMiB: (peaks.get(task.name) ?? 0) / 2 ** 20,
      peakRssTotalMiB: (totals.get(task.name) ?? 0) / 2 ** 20,
    };
    if (task.bytes !== undefined) out.mbps = rate(task.bytes / 1e3, ms);
    const summed = metrics.get(task.name);
    if (summed) out.metrics = summed;
    return out;
  });
}
