/**
 * The benchmark harness and scenarios, at tiny sizes: this checks that they measure
 * what they say (interleaving, warm-up discarded, rates from bytes and ops, counters),
 * that every scenario runs and asserts correctness on a real store, and that the report,
 * chart and Markdown come out well-formed. Speeds are never asserted here (DESIGN.md:
 * benchmarks measure, tests assert); the numbers live in bench/ output.
 */
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { benchOptions, parseSize } from '../bench/cli.js';
import { measure } from '../bench/harness.js';
import { describeDisk } from '../bench/machine.js';
import { type BenchReport, SCHEMA, toMarkdown } from '../bench/report.js';
import { type RunOptions, runBench, SCENARIOS } from '../bench/run.js';
import { batchFor } from '../bench/scenarios/throughput.js';
import { MiB } from '../bench/scenarios/types.js';
import { renderSvg } from '../bench/svg.js';

function tiny(overrides: Partial<RunOptions>): RunOptions {
  return {
    urls: [],
    quick: true,
    rounds: 1,
    sizes: [4096, 8 * MiB],
    uploadSize: 8 * MiB,
    concurrency: [1, 4],
    smallOps: 8,
    listKeys: 50,
    rssSize: 8 * MiB,
    gcSizes: [],
    gcManifests: 20,
    peers: true,
    scenarios: new Set(SCENARIOS),
    progress: false,
    argv: [],
    ...overrides,
  };
}

function tagsBalanced(svg: string): boolean {
  const stack: string[] = [];
  for (const match of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClosing] = match;
    if (selfClosing) continue;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name as string);
  }
  return stack.length === 0;
}

describe('harness', () => {
  it('interleaves tasks in rounds, discards the warm-up, and computes rates from bytes and ops', async () => {
    const order: string[] = [];
    let counter = 0;
    const results = await measure(
      [
        {
          name: 'a',
          bytes: 2_000_000,
          ops: 4,
          prepare: () => void order.push('a:prepare'),
          fn: async () => {
            order.push('a');
            await new Promise((resolve) => setTimeout(resolve, 2));
          },
          metrics: () => ({ calls: ++counter }),
        },
        { name: 'b', fn: () => void order.push('b') },
      ],
      { rounds: 3 },
    );
    expect(order).toEqual([
      'a:prepare',
      'a',
      'b',
      'a:prepare',
      'a',
      'b',
      'a:prepare',
      'a',
      'b',
      'a:prepare',
      'a',
      'b',
    ]);
    const [a, b] = results;
    expect(a?.samples).toBe(3);
    expect(b?.samples).toBe(3);
    // metrics summed over kept rounds only: calls 2 + 3 + 4
    expect(a?.metrics).toEqual({ calls: 9 });
    const ms = a?.ms.median as number;
    expect(ms).toBeGreaterThan(1);
    expect(a?.mbps?.median).toBeCloseTo(2_000_000 / 1e3 / ms, 6);
    expect(a?.opsPerSec.median).toBeCloseTo(4e3 / ms, 6);
    expect(a?.msPerOp.median).toBeCloseTo(ms / 4, 6);
    expect(a?.mbps?.min).toBeLessThanOrEqual(a?.mbps?.max as number);
    expect(b?.mbps).toBeUndefined();
  });

  it('runs no warm-up round when asked', async () => {
    let runs = 0;
    const [result] = await measure([{ name: 'x', fn: () => void runs++ }], { rounds: 2, warmup: false });
    expect(runs).toBe(2);
    expect(result?.samples).toBe(2);
  });
});

describe('cli options', () => {
  it('parses sizes, counts and scenario filters', () => {
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('256m')).toBe(256 * MiB);
    expect(parseSize('1g')).toBe(1024 * MiB);
    expect(() => parseSize('12q')).toThrow(/bad size/);
    const options = benchOptions([
      'memory:',
      '--sizes',
      '4k,16m',
      '--concurrency',
      '2',
      '--skip',
      'gc,peers',
      '--gc-sizes',
      '10k,50k',
    ]);
    expect(options.urls).toEqual(['memory:']);
    expect(options.sizes).toEqual([4096, 16 * MiB]);
    expect(options.uploadSize).toBe(16 * MiB);
    expect(options.concurrency).toEqual([2]);
    expect(options.scenarios.has('gc')).toBe(false);
    expect(options.scenarios.has('put')).toBe(true);
    expect(options.peers).toBe(false);
    expect(options.gcSizes).toEqual([10_000, 50_000]);
    expect(() => benchOptions(['--scenarios', 'nope'])).toThrow(/unknown scenario/);
    expect(() => benchOptions(['--matrix', 'cloud'])).toThrow(/--matrix/);
    const quick = benchOptions(['--quick']);
    expect(quick.rounds).toBe(2);
    expect(quick.rssSize).toBe(0);
    expect(quick.sizes.every((s) => s <= 32 * MiB)).toBe(true);
  });

  it('batches small operations so a sample is more than one tiny call', () => {
    expect(batchFor(4096)).toBe(64);
    expect(batchFor(MiB)).toBe(16);
    expect(batchFor(256 * MiB)).toBe(1);
  });

  it('describes the disk under a directory', () => {
    const disk = describeDisk(tmpdir());
    expect(disk.path.length).toBeGreaterThan(0);
    expect(disk.mountPoint).not.toBeNull();
    expect(disk.fsType).not.toBeNull();
  });
});

describe('scenarios on real stores, tiny sizes', () => {
  it('memory: every scenario runs, checks are evaluated, the report is well-formed', async () => {
    const { report, errors } = await runBench(
      tiny({ urls: ['memory://bench-test'], scenarios: new Set(SCENARIOS.filter((s) => s !== 'gc')) }),
    );
    expect(errors).toEqual([]);
    expect(report.schema).toBe(SCHEMA);
    expect(report.complete).toBe(true);
    expect(report.backends).toEqual([{ name: 'memory', driver: 'memory', url: 'memory://bench-test' }]);
    expect(report.machine.cpu.cores).toBeGreaterThan(0);
    expect(report.machine.node).toBe(process.version);
    const scenarios = new Set(report.results.map((r) => r.scenario));
    for (const name of ['put', 'get', 'upload', 'commit', 'dedup', 'ops:1', 'ops:4', 'list']) {
      expect(scenarios, name).toContain(name);
    }
    // The memory driver has no RSS bound worth measuring: no rss group.
    expect(scenarios).not.toContain('rss');
    for (const result of report.results) {
      expect(result.samples, result.id).toBe(1);
      expect(result.ms.median, result.id).toBeGreaterThan(0);
      expect(result.id.startsWith('memory / ')).toBe(true);
    }
    expect(new Set(report.results.map((r) => r.id)).size).toBe(report.results.length);
    const put = report.results.find(
      (r) => r.scenario === 'put' && r.system === 'blobcore' && r.size === 8 * MiB,
    );
    expect(put?.vsLimit).toBeGreaterThan(0);
    const resume = report.checks.find((c) => c.kind === 'resume');
    expect(resume?.value).toBe(0);
    expect(resume?.met).toBe(true);
    expect(report.checks.some((c) => c.kind === 'chunked' && c.value !== null)).toBe(true);
    expect(report.checks.some((c) => c.kind === 'commit' && c.value !== null)).toBe(true);
    // JSON round trip, chart, Markdown
    const copy = JSON.parse(JSON.stringify(report)) as BenchReport;
    const svg = renderSvg(copy);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('sha256 limit');
    expect(tagsBalanced(svg)).toBe(true);
    const md = toMarkdown(copy);
    expect(md).toContain('| backend |');
    expect(md).toContain('| check |');
  }, 120_000);

  it('fs: raw baselines, peers (cacache, blockstore-fs, tus file-store), RSS and GC run and are checked', async () => {
    const { report, errors } = await runBench(
      tiny({
        sizes: [MiB, 8 * MiB],
        concurrency: [2],
        scenarios: new Set(['put', 'get', 'upload', 'rss', 'gc']),
        gcSizes: [400],
        gcManifests: 20,
      }),
    );
    expect(errors).toEqual([]);
    expect(report.backends[0]?.driver).toBe('fs');
    const systems = new Set(report.results.map((r) => r.peer ?? r.label));
    for (const peer of ['cacache', 'blockstore-fs', '@tus/file-store']) {
      expect(
        [...systems].some((s) => s.startsWith(peer)),
        peer,
      ).toBe(true);
    }
    const labels = report.results.map((r) => r.label);
    expect(labels).toContain('raw FileHandle write');
    expect(labels).toContain('raw driver read');
    expect(report.results.find((r) => r.peer?.startsWith('blockstore-fs'))?.verifies).toBe(false);
    expect(report.results.find((r) => r.peer?.startsWith('cacache'))?.verifies).toBe(true);
    expect(report.checks.filter((c) => c.kind === 'peer').length).toBeGreaterThanOrEqual(4);
    expect(report.checks.filter((c) => c.kind === 'rss').length).toBe(2);
    const gc = report.results.find((r) => r.scenario === 'gc');
    expect(gc?.opsPerSec.median).toBeGreaterThan(0);
    expect(gc?.metrics?.sweepMs).toBeGreaterThanOrEqual(0);
  }, 240_000);
});
