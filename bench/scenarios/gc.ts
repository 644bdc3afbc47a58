/**
 * GC at scale on the fs driver: N blobs (10k, 50k, 100k) and 2,000 manifests.
 *
 * Fixture (a valid store, written fast): instead of 100,000 pushes, the records a push
 * leaves are written straight through a driver on the same root with durability 'none',
 * 64 at a time — per blob its bytes under a data key and its index record; per
 * repository (20) a catalog marker; per blob a link in its repository; per manifest (an
 * OCI image manifest naming a config and layers) its bytes and index, its revision
 * record, a tag and the tag's history entry. Everything is dated two days back, so the
 * grace period protects nothing and marking alone decides.
 *
 *   live     90% of the N blobs, split over the 2,000 manifests (config + layers)
 *   garbage  10%: linked in a repository but named by no manifest; swept by every run
 *
 * Each timed run is a real `store.gc()` (default options, the store's default
 * durability) sweeping a fresh 10% of garbage, written before the run (untimed). The
 * run must report exactly the garbage swept and every live blob and manifest marked;
 * a dry run checks the same before any timing, and after the last run a sample of live
 * blobs is read back. Reported: duration, blobs/s (blobs + manifests scanned per
 * second) and peak RSS, per size; cost should grow linearly with N.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { parseDigest } from '../../src/digest.js';
import type { Driver } from '../../src/driver.js';
import {
  blobLinkKey,
  catalogKey,
  indexKey,
  manifestKey,
  newDataKey,
  tagHistoryKey,
  tagKey,
} from '../../src/layout.js';
import { MediaTypes } from '../../src/manifest.js';
import { type BlobStore, openStore } from '../../src/store.js';
import type { TaskResult } from '../harness.js';
import { repoRoot } from '../servers.js';
import { atMost, type BenchTask, type CheckSpec, type Group, info, parallel } from './types.js';

const run = promisify(execFile);

interface ChildReport {
  durationMs: number;
  marked: number;
  swept: number;
  phases: { phase: string; ms: number }[];
  peakRssMiB: number | null;
  startRssMiB: number | null;
}

/**
 * Runs one GC in a child process (../gc-child): its duration and peak RSS are the GC's
 * own. From the TypeScript sources (tests), the child runs them through the project's
 * loader hook, like the other child processes of the test suite.
 */
async function gcInChild(url: string): Promise<ChildReport> {
  const here = fileURLToPath(new URL('../', import.meta.url));
  const fromSource = import.meta.url.endsWith('.ts');
  const script = join(here, fromSource ? 'gc-child.ts' : 'gc-child.js');
  const args = [script, url];
  if (fromSource) {
    const loader = join(repoRoot(), 'test', 'fixtures', 'ts-loader.mjs');
    if (!existsSync(loader)) throw new Error(`cannot run ${script} without ${loader}`);
    args.unshift('--import', pathToFileURL(loader).href);
  }
  const { stdout } = await run(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ChildReport;
}

/** A metric averaged over the samples of a result, divided by `unit`. */
function perRun(result: TaskResult | undefined, metric: string, unit: number): number | null {
  const value = result?.metrics?.[metric];
  return value === undefined || !result?.samples ? null : value / result.samples / unit;
}

export interface GcScaleOptions {
  sizes: number[];
  manifests: number;
  repositories: number;
  workDir: string;
  notes: string[];
}

const TWO_DAYS_MS = 2 * 86_400_000;
const WRITE_CONCURRENCY = 64;

interface BlobRecord {
  digest: string;
  size: number;
  bytes: Buffer;
}

function blob(text: string): BlobRecord {
  const bytes = Buffer.from(text);
  return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length, bytes };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** Writes a blob's bytes and index record, dated `created`. */
async function writeBlob(driver: Driver, record: BlobRecord, created: string): Promise<void> {
  const data = newDataKey();
  await driver.write(data, record.bytes, { size: record.size });
  await driver.write(
    indexKey(record.digest),
    json({ v: 1, digest: record.digest, size: record.size, data, created }),
  );
}

async function writeLink(
  driver: Driver,
  repository: string,
  record: BlobRecord,
  linked: string,
): Promise<void> {
  await driver.write(
    blobLinkKey(repository, parseDigest(record.digest)),
    json({ digest: record.digest, size: record.size, linked }),
  );
}

export function gcGroup(blobs: number, options: GcScaleOptions): Group {
  const manifests = options.manifests;
  const live = Math.round(blobs * 0.9);
  const garbage = blobs - live;
  if (live < manifests * 2)
    throw new Error(`GC bench: ${blobs} blobs are too few for ${manifests} manifests`);
  const repositories = Array.from(
    { length: options.repositories },
    (_, i) => `bench/gc/r${i.toString().padStart(2, '0')}`,
  );
  const root = join(options.workDir, `gc-${blobs}`);
  const url = pathToFileURL(root).href;
  const created = new Date(Date.now() - TWO_DAYS_MS).toISOString();
  const label = `${blobs.toLocaleString('en-US')} blobs + ${manifests.toLocaleString('en-US')} manifests`;
  let store: BlobStore | undefined;
  let fixture: Driver | undefined;
  let liveSample: string[] = [];
  let garbageRound = 0;
  let garbageInPlace = false;
  let last: ChildReport | undefined;

  const repoOf = (i: number) => repositories[i % repositories.length] as string;

  const writeGarbage = async () => {
    const driver = fixture as Driver;
    garbageRound += 1;
    await parallel(garbage, WRITE_CONCURRENCY, async (i) => {
      const record = blob(`gc-garbage ${blobs} ${garbageRound} ${i} ${root}`);
      await writeBlob(driver, record, created);
      await writeLink(driver, repoOf(i), record, created);
    });
    garbageInPlace = true;
  };

  const task: BenchTask = {
    name: `fs / gc / ${label}`,
    ops: blobs + manifests,
    meta: {
      id: `fs / gc / ${label}`,
      backend: 'fs',
      scenario: 'gc',
      label: `GC, ${label}`,
      system: 'blobcore',
      verifies: null,
      size: blobs,
      unit: 'ops/s',
    },
    prepare: async () => {
      if (!garbageInPlace) await writeGarbage();
    },
    fn: async () => {
      const report = await gcInChild(url);
      last = report;
      garbageInPlace = false;
      if (report.swept !== garbage || report.marked !== live + manifests) {
        throw new Error(
          `GC bench: swept ${report.swept} (expected ${garbage}), marked ${report.marked} (expected ${live + manifests})`,
        );
      }
    },
    // GC's own figures from the child: its report's duration (the sample's time also
    // counts starting node) and its process's peak RSS.
    metrics: () => ({
      durationMs: last?.durationMs ?? 0,
      gcPeakRssMiB: last?.peakRssMiB ?? 0,
      gcStartRssMiB: last?.startRssMiB ?? 0,
      ...Object.fromEntries((last?.phases ?? []).map((p) => [`${p.phase}Ms`, p.ms])),
    }),
    check: async () => {
      await writeGarbage();
      const report = await (store as BlobStore).gc({ dryRun: true });
      if (report.candidates.length !== garbage || report.marked !== live + manifests) {
        throw new Error(
          `GC bench dry run: ${report.candidates.length} candidates (expected ${garbage}), marked ${report.marked} (expected ${live + manifests})`,
        );
      }
    },
  };

  const checks: CheckSpec[] = [];
  if (blobs >= 100_000) {
    checks.push(
      {
        id: `${task.meta.id} duration`,
        label: `GC ${label}: duration s`,
        kind: 'gc',
        backend: 'fs',
        uses: [task.meta.id],
        evaluate(results) {
          return atMost(perRun(results.get(task.meta.id), 'durationMs', 1000), 20);
        },
      },
      {
        id: `${task.meta.id} rss`,
        label: `GC ${label}: peak RSS MiB`,
        kind: 'gc',
        backend: 'fs',
        uses: [task.meta.id],
        evaluate(results) {
          return atMost(perRun(results.get(task.meta.id), 'gcPeakRssMiB', 1), 256, 'VmHWM of the GC process');
        },
      },
    );
  } else {
    checks.push({
      id: `${task.meta.id} duration`,
      label: `GC ${label}: duration s`,
      kind: 'gc',
      backend: 'fs',
      uses: [task.meta.id],
      evaluate(results) {
        return info(perRun(results.get(task.meta.id), 'durationMs', 1000));
      },
    });
  }

  return {
    id: `fs gc ${blobs}`,
    title: `GC over ${label}`,
    backend: 'fs',
    rounds: 1,
    warmup: false,
    setup: async () => {
      await mkdir(root, { recursive: true });
      store = await openStore(url);
      const { createFsDriver } = await import('../../drivers/fs/index.js');
      fixture = createFsDriver({ root, durability: 'none' });
      const driver = fixture;
      const started = performance.now();
      const records = Array.from({ length: live }, (_, i) => blob(`gc-live ${blobs} ${i} ${root}`));
      // Blobs 0..live-1 split over the manifests: manifest m gets [from, to): config first, then layers.
      const per = Math.floor(live / manifests);
      const extra = live % manifests;
      const ranges = Array.from({ length: manifests }, (_, m) => {
        const from = m * per + Math.min(m, extra);
        return [from, from + per + (m < extra ? 1 : 0)] as const;
      });
      const owner = new Uint32Array(live);
      for (const [m, [from, to]] of ranges.entries()) owner.fill(m, from, to);
      for (const repository of repositories)
        await driver.write(catalogKey(repository), json({ name: repository }));
      await parallel(live, WRITE_CONCURRENCY, async (i) => {
        const record = records[i] as BlobRecord;
        await writeBlob(driver, record, created);
        await writeLink(driver, repoOf(owner[i] as number), record, created);
      });
      await parallel(manifests, WRITE_CONCURRENCY, async (m) => {
        const [from, to] = ranges[m] as readonly [number, number];
        const descriptor = (r: BlobRecord, mediaType: string) => ({
          mediaType,
          digest: r.digest,
          size: r.size,
        });
        const config = records[from] as BlobRecord;
        const body = {
          schemaVersion: 2,
          mediaType: MediaTypes.ociManifest,
          config: descriptor(config, 'application/vnd.oci.image.config.v1+json'),
          layers: records
            .slice(from + 1, to)
            .map((r) => descriptor(r, 'application/vnd.oci.image.layer.v1.tar+gzip')),
        };
        const manifest = blob(JSON.stringify(body));
        const repository = repoOf(m);
        const tag = `t${m.toString().padStart(5, '0')}`;
        const at = Date.parse(created);
        await writeBlob(driver, manifest, created);
        await driver.write(
          manifestKey(repository, parseDigest(manifest.digest)),
          json({ digest: manifest.digest, mediaType: MediaTypes.ociManifest, size: manifest.size, created }),
        );
        await driver.write(tagHistoryKey(repository, tag, at), json({ digest: manifest.digest, at }));
        await driver.write(tagKey(repository, tag), json({ tag, digest: manifest.digest, updated: created }));
      });
      liveSample = records
        .filter((_, i) => i % Math.max(1, Math.floor(live / 50)) === 0)
        .map((r) => r.digest);
      options.notes.push(
        `GC fixture of ${label} (live records, without the 10% garbage written before each run) written through the fs driver (durability none, ${WRITE_CONCURRENCY} in flight) in ${((performance.now() - started) / 1000).toFixed(1)} s.`,
      );
    },
    teardown: async () => {
      try {
        for (const digest of liveSample) {
          if (!(await store?.stat(digest))) throw new Error(`GC bench: live blob ${digest} was swept`);
        }
      } finally {
        await store?.close();
        await fixture?.close?.();
        await rm(root, { recursive: true, force: true });
      }
    },
    tasks: [task],
    checks,
  };
}

/** GC groups for every size, plus the linearity check over them. */
export function gcGroups(options: GcScaleOptions): { groups: Group[]; checks: CheckSpec[] } {
  const groups = options.sizes.map((size) => gcGroup(size, options));
  const checks: CheckSpec[] = [];
  if (groups.length >= 2) {
    const first = groups[0]?.tasks[0] as BenchTask;
    const last = groups[groups.length - 1]?.tasks[0] as BenchTask;
    checks.push({
      id: 'gc linearity',
      label: `GC blobs/s at ${last.meta.size?.toLocaleString('en-US')} / at ${first.meta.size?.toLocaleString('en-US')} blobs`,
      kind: 'gc',
      backend: 'fs',
      uses: [first.meta.id, last.meta.id],
      evaluate(results) {
        const rate = (t: BenchTask) => {
          const ms = perRun(results.get(t.meta.id), 'durationMs', 1);
          return ms ? (t.ops ?? 0) / ms : null;
        };
        const a = rate(last);
        const b = rate(first);
        const value = a === null || b === null || b === 0 ? null : a / b;
        return {
          value,
          target: '≥ 0.7',
          met: value === null ? null : value >= 0.7,
          note: 'linear cost: the rate per blob holds as the store grows',
        };
      },
    });
  }
  return { groups, checks };
}
