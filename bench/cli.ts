/**
 * `blobcore bench [store-url…] [--quick] [--json out.json] [--size 256m] [--rounds N]`
 *
 * Runs the store-core scenarios (./scenarios/store-core.ts) on each backend — by default
 * the in-memory store and a temp-dir `file:` store — and prints MB/s (min/median/max
 * over the rounds), peak RSS, and each ratio next to its target.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { hashImplementation } from '../src/hash/index.js';
import { openStore } from '../src/store.js';
import { measure, type TaskResult, type TaskSpec } from './harness.js';
import { storeCoreTasks } from './scenarios/store-core.js';

function parseSize(text: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(text.trim());
  if (!match) throw new Error(`bad size "${text}" (use e.g. 4k, 1m, 256m)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[
    (match[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'
  ];
  return Number(match[1]) * unit;
}

function fmt(value: number | undefined, digits = 0): string {
  return value === undefined ? '' : value.toFixed(digits);
}

export async function bench(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean' },
      json: { type: 'string' },
      size: { type: 'string' },
      rounds: { type: 'string' },
    },
  });
  const size = parseSize(values.size ?? (values.quick ? '64m' : '256m'));
  const rounds = Number(values.rounds ?? (values.quick ? 3 : 5));
  const cleanups: (() => Promise<void>)[] = [];
  let urls = positionals;
  if (urls.length === 0) {
    const dir = await mkdtemp(join(tmpdir(), 'blobcore-bench-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    urls = ['memory:', pathToFileURL(dir).href];
  }
  try {
    const tasks: TaskSpec[] = [];
    const ratios: [string, string, string, number][] = [];
    for (const url of urls) {
      const store = await openStore(url);
      cleanups.push(() => store.close());
      const label = url.split(':')[0] as string;
      const scenario = storeCoreTasks(store, label, size);
      for (const task of scenario.tasks) if (!tasks.some((t) => t.name === task.name)) tasks.push(task);
      ratios.push(...scenario.ratios);
    }
    process.stdout.write(
      `blobcore bench: ${urls.join(' ')} · ${rounds} rounds after a warm-up · hash ${await hashImplementation()}` +
        ` · node ${process.version}\n`,
    );
    const results = await measure(tasks, rounds);
    const byName = new Map(results.map((r) => [r.name, r]));
    console.table(
      results.map((r) => ({
        task: r.name,
        'MB/s min': fmt(r.mbps?.min),
        'MB/s median': fmt(r.mbps?.median),
        'MB/s max': fmt(r.mbps?.max),
        'ms median': fmt(r.ms.median, 1),
        'peak RSS MiB': fmt(r.peakRssMiB, 1),
      })),
    );
    const ratioRows = ratios.map(([label, num, den, target]) => {
      const a = byName.get(num)?.mbps?.median ?? 0;
      const b = byName.get(den)?.mbps?.median ?? 1;
      const ratio = a / b;
      return {
        ratio: label,
        value: ratio.toFixed(2),
        target: `≥ ${target}`,
        met: ratio >= target ? 'yes' : 'NO',
      };
    });
    console.table(ratioRows);
    if (values.json) {
      const report: { results: TaskResult[]; ratios: typeof ratioRows; size: number; rounds: number } = {
        results,
        ratios: ratioRows,
        size,
        rounds,
      };
      await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
    }
    return 0;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
