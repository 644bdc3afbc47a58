/**
 * Measurement harness over tinybench.
 *
 * Tasks run in interleaved rounds (A B C, A B C, …) rather than all of A then all of B:
 * this VM hands freed memory back to its host, so whichever task runs first after a
 * quiet spell pays for fresh pages; interleaving spreads that cost evenly. Round one is
 * a warm-up and is discarded. Peak RSS above the pre-task baseline is sampled every
 * 5 ms while each task runs.
 */
import { Bench, type FnOptions } from 'tinybench';

export interface TaskSpec {
  name: string;
  /** Bytes moved per iteration (for MB/s); omit for pure ops/s tasks. */
  bytes?: number;
  /** Operations per iteration (for ops/s); default 1. */
  ops?: number;
  fn: () => Promise<unknown> | unknown;
  beforeEach?: () => Promise<void> | void;
  afterEach?: () => Promise<void> | void;
}

export interface TaskResult {
  name: string;
  samples: number;
  /** Milliseconds per iteration. */
  ms: { min: number; median: number; max: number };
  /** MB/s (10^6 bytes) when `bytes` was given. */
  mbps?: { min: number; median: number; max: number };
  opsPerSec?: { min: number; median: number; max: number };
  /** Peak resident memory above the baseline before the task, in MiB. */
  peakRssMiB: number;
}

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function withRssSampling<T>(work: () => Promise<T>): Promise<{ result: T; peak: number }> {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, peak: peak - baseline };
  } finally {
    clearInterval(timer);
  }
}

export async function measure(tasks: TaskSpec[], rounds: number): Promise<TaskResult[]> {
  const samples = new Map<string, number[]>(tasks.map((task) => [task.name, []]));
  const peaks = new Map<string, number>(tasks.map((task) => [task.name, 0]));
  for (let round = 0; round <= rounds; round++) {
    for (const task of tasks) {
      (globalThis as { gc?: () => void }).gc?.();
      const bench = new Bench({ iterations: 1, time: 0, warmup: false, throws: true, retainSamples: true });
      const hooks: FnOptions = {};
      if (task.beforeEach) hooks.beforeEach = task.beforeEach;
      if (task.afterEach) hooks.afterEach = task.afterEach;
      bench.add(task.name, task.fn, hooks);
      const { peak } = await withRssSampling(() => bench.run());
      const result = bench.tasks[0]?.result;
      if (!result || !('latency' in result))
        throw new Error(`benchmark task ${task.name} produced no result`);
      if (round === 0) continue; // warm-up round
      samples.get(task.name)?.push(...(result.latency.samples ?? [result.latency.mean]));
      peaks.set(task.name, Math.max(peaks.get(task.name) ?? 0, peak));
    }
  }
  return tasks.map((task) => {
    const ms = [...(samples.get(task.name) ?? [])].sort((a, b) => a - b);
    const stats = { min: ms[0] ?? 0, median: median(ms), max: ms[ms.length - 1] ?? 0 };
    const rate = (per: number) => ({
      min: per / stats.max,
      median: per / stats.median,
      max: per / stats.min,
    });
    const out: TaskResult = {
      name: task.name,
      samples: ms.length,
      ms: stats,
      peakRssMiB: (peaks.get(task.name) ?? 0) / 2 ** 20,
    };
    if (task.bytes !== undefined) out.mbps = rate(task.bytes / 1e3);
    else out.opsPerSec = rate((task.ops ?? 1) * 1e3);
    return out;
  });
}
