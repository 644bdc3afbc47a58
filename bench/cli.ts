/**
 * `blobcore bench [store-url…] [options]` — throughput of blobcore on storage backends,
 * side by side with the hashing limit, raw I/O and peer libraries, from one run.
 *
 *   (no URL)            a temp-dir `file:` store, the embedded default
 *   store-url…          those stores (memory:, file:, pvc:, s3:, azure:)
 *   --matrix local      memory, fs, pvc (temp dirs), s3 on the s3rver emulator, azure on
 *                       Azurite (started and stopped here; a clone of the repository)
 *   --matrix system     the local matrix plus S3 on a throw-away radosgw (root, ceph)
 *   --quick             small sizes, 2 rounds, no 1 GiB RSS runs, GC at 5k: ~1 minute
 *   --sizes 4k,1m,256m  put/get sizes (the largest ≥ 8 MiB also sizes uploads and commits)
 *   --size N            one put/get size (same as --sizes N)
 *   --concurrency 1,8   concurrency of the small-operation scenarios
 *   --rounds N          measured rounds after the discarded warm-up (default 5; quick 2)
 *   --scenarios a,b     only these: put get upload commit dedup ops list rss gc
 *   --skip a,b          all but these (also `peers`)
 *   --gc-sizes 10k,…    blob counts of the GC scale runs (fs); --gc-manifests N (2000; quick 1000)
 *   --rss-size 1g       size of the peak-RSS transfers (0: skip)
 *   --json out.json     the report (schema: bench/README.md); --svg out.svg the chart;
 *   --md out.md         the tables as Markdown (for the README)
 *
 * Prints a table of every result (median, min–max, × the sha256 limit, peak RSS), then
 * every check (ratio or value against its target). Exit status 1 if a scenario failed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { checkRows, gcRows, machineLine, resultRows, toMarkdown } from './report.js';
import { type RunOptions, runBench, SCENARIOS } from './run.js';
import { MiB } from './scenarios/types.js';
import { renderSvg } from './svg.js';

export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new Error(`bad size "${text}" (use e.g. 4k, 1m, 256m, 1g)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[
    (match[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'
  ];
  return Math.round(Number(match[1]) * unit);
}

/** Counts such as `10k,50k,100k` (k = 1,000 here: these are blob counts, not bytes). */
function parseCount(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([km]?)$/i.exec(text.trim());
  if (!match) throw new Error(`bad count "${text}" (use e.g. 10000 or 10k)`);
  const scale = { '': 1, k: 1e3, m: 1e6 }[(match[2] ?? '').toLowerCase() as '' | 'k' | 'm'];
  return Math.round(Number(match[1]) * scale);
}

function list<T>(text: string | undefined, parse: (item: string) => T): T[] | undefined {
  if (text === undefined) return undefined;
  return text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map(parse);
}

export function benchOptions(args: string[]): RunOptions & { json?: string; svg?: string; md?: string } {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean' },
      json: { type: 'string' },
      svg: { type: 'string' },
      md: { type: 'string' },
      size: { type: 'string' },
      sizes: { type: 'string' },
      concurrency: { type: 'string' },
      rounds: { type: 'string' },
      matrix: { type: 'string' },
      scenarios: { type: 'string' },
      skip: { type: 'string' },
      'gc-sizes': { type: 'string' },
      'gc-manifests': { type: 'string' },
      'rss-size': { type: 'string' },
      'small-ops': { type: 'string' },
      'list-keys': { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const matrix = values.matrix;
  if (matrix !== undefined && matrix !== 'local' && matrix !== 'system') {
    throw new Error(`--matrix must be local or system, got "${matrix}"`);
  }
  const sizes =
    list(values.sizes ?? values.size, parseSize) ?? (quick ? [4096, MiB, 32 * MiB] : [4096, MiB, 256 * MiB]);
  if (sizes.length === 0 || sizes.some((s) => s <= 0)) throw new Error('--sizes needs positive sizes');
  const largest = Math.max(...sizes);
  const known = new Set<string>(SCENARIOS);
  const chosen = list(values.scenarios, (s) => s) ?? [...SCENARIOS];
  const skip = new Set(list(values.skip, (s) => s) ?? []);
  for (const name of [...chosen, ...skip]) {
    if (!known.has(name) && name !== 'peers') {
      throw new Error(`unknown scenario "${name}" (known: ${SCENARIOS.join(' ')}, and peers for --skip)`);
    }
  }
  const scenarios = new Set(chosen.filter((s) => !skip.has(s)));
  const rounds = Number(values.rounds ?? (quick ? 2 : 5));
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
  const options: RunOptions & { json?: string; svg?: string; md?: string } = {
    urls: positionals,
    matrix,
    quick,
    rounds,
    sizes,
    uploadSize: largest >= 8 * MiB ? largest : 0,
    concurrency: list(values.concurrency, (c) => {
      const n = Number(c);
      if (!Number.isSafeInteger(n) || n < 1) throw new Error(`bad concurrency "${c}"`);
      return n;
    }) ?? [1, 8],
    smallOps: values['small-ops'] ? parseCount(values['small-ops']) : quick ? 100 : 10_000,
    listKeys: values['list-keys'] ? parseCount(values['list-keys']) : quick ? 2000 : 10_000,
    rssSize: values['rss-size'] !== undefined ? parseSize(values['rss-size']) : quick ? 0 : 1024 * MiB,
    gcSizes: list(values['gc-sizes'], parseCount) ?? (quick ? [5000] : [10_000, 50_000, 100_000]),
    gcManifests: values['gc-manifests'] ? parseCount(values['gc-manifests']) : quick ? 1000 : 2000,
    peers: !skip.has('peers'),
    scenarios,
    progress: values.json === undefined,
    argv: args,
  };
  if (values.json !== undefined) options.json = values.json;
  if (values.svg !== undefined) options.svg = values.svg;
  if (values.md !== undefined) options.md = values.md;
  return options;
}

async function writeOut(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

export async function bench(args: string[]): Promise<number> {
  const options = benchOptions(args);
  // Without a progress bar (CI, pipes), one line per finished group on stderr.
  if (!(process.stderr.isTTY && !process.env.CI)) options.log = (line) => process.stderr.write(`${line}\n`);
  const what = options.urls.length
    ? options.urls.join(' ')
    : options.matrix
      ? `the ${options.matrix} matrix`
      : 'a temp-dir file: store';
  process.stdout.write(
    `blobcore bench${options.quick ? ' --quick' : ''}: ${what} · ${options.rounds} rounds after a warm-up · node ${process.version}\n`,
  );
  const [load1] = os.loadavg();
  const cores = os.cpus().length;
  if ((load1 ?? 0) > cores * 0.75) {
    process.stderr.write(
      `warning: load average ${load1?.toFixed(1)} on ${cores} cores — other work is running; numbers will be noisy\n`,
    );
  }
  // Interrupted: exit, so the exit hooks stop the servers and remove temp directories.
  const interrupt = () => process.exit(130);
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const json = options.json;
  if (json) options.onGroup = (partial) => writeOut(json, `${JSON.stringify(partial, null, 2)}\n`);
  const { report, errors } = await runBench(options).finally(() => {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  });
  process.stdout.write(`${machineLine(report.machine)}\n`);
  console.table(resultRows(report.results));
  if (report.checks.length > 0) console.table(checkRows(report.checks));
  const gc = gcRows(report.results);
  if (gc.length > 0) console.table(gc);
  for (const note of report.notes) process.stdout.write(`note: ${note}\n`);
  if (options.json) await writeOut(options.json, `${JSON.stringify(report, null, 2)}\n`);
  if (options.svg) await writeOut(options.svg, renderSvg(report));
  if (options.md) await writeOut(options.md, toMarkdown(report));
  const missed = report.checks.filter((c) => c.met === false).length;
  const met = report.checks.filter((c) => c.met === true).length;
  process.stdout.write(
    `targets: ${met} met, ${missed} missed${errors.length ? `; ${errors.length} scenario(s) FAILED` : ''}\n`,
  );
  return errors.length > 0 ? 1 : 0;
}
