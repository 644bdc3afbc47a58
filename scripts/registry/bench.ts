/**
 * `npm run bench:registry`: blobcore serve (fs driver) vs CNCF Distribution (Debian's
 * docker-registry 2.8, filesystem driver), side by side in one run.
 *
 *   1. Builds an OCI layout: one image of `--layers` uncompressed random layers of
 *      `--layer-mib` MiB (default 4 × 256 MiB = 1 GiB), and one of `--small-layers`
 *      64 KiB layers (default 200) for the GC comparison.
 *   2. `--runs` times (default 3), alternating which registry goes first, for each
 *      registry on 127.0.0.1 with an empty store: `skopeo copy --preserve-digests` each
 *      image in (push) and out again into a fresh layout (pull). Every pull is verified
 *      (each blob re-hashed, manifest digest compared) before its time counts. The big
 *      image measures throughput (MB/s, the target); the small one measures the
 *      per-blob cost (skopeo 1.9 pushes layers one after another). The registry
 *      process's CPU seconds (from /proc) for the big push and pull are recorded too:
 *      on a shared 2-core machine they say more about efficiency than wall time does.
 *   3. GC: on the last run's stores the big image's manifest is deleted through the
 *      API; then, registries stopped,
 *      `docker-registry garbage-collect` and `blobcore gc --grace 0` are timed (wall
 *      clock of the process, and blobcore's own reported duration); both must free the
 *      big layers and keep the small image whole.
 *
 * Prints a table with the medians of each and the ratios blobcore / Distribution
 * (target ≥ 1.0 on MB/s), and writes the figures as JSON to `.bench/registry-<time>.json`.
 *
 * Options: --runs N  --layers N  --layer-mib N  --small-layers N  --dir PATH (work dir,
 * default a temp dir, removed afterwards)  --cli source|built (how blobcore runs; default:
 * serve from the build when dist/ has it, gc from the build when dist/ is fresh, else
 * from the sources through test/fixtures/ts-loader.mjs)  --keep (leave the work dir).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openStore } from '../../src/store.js';
import { addImage, type BuiltImage, verifyImage } from './oci-layout.js';
import {
  blobcoreCommand,
  builtCliHasServe,
  REPO_ROOT,
  type RunningRegistry,
  run,
  skopeo,
  startBlobcore,
  startDistribution,
} from './servers.js';

type Target = 'distribution' | 'blobcore';

interface Sample {
  target: Target;
  run: number;
  pushMs: number;
  pullMs: number;
  /** The image of many small layers: per-blob overhead rather than throughput. */
  smallPushMs: number;
  smallPullMs: number;
  /** CPU seconds the registry process spent on the big image's push and pull (load-independent). */
  pushCpuS: number;
  pullCpuS: number;
}

/** user + system CPU seconds of a process so far (Linux /proc; ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    layers: { type: 'string', default: '4' },
    'layer-mib': { type: 'string', default: '256' },
    'small-layers': { type: 'string', default: '200' },
    dir: { type: 'string' },
    cli: { type: 'string' },
    keep: { type: 'boolean' },
  },
});
const runs = Number(values.runs);
const layerCount = Number(values.layers);
const layerMiB = Number(values['layer-mib']);
const smallCount = Number(values['small-layers']);
const cli: 'source' | 'built' =
  values.cli === 'source' || values.cli === 'built' ? values.cli : builtCliHasServe() ? 'built' : 'source';
/** `blobcore gc` from the build when dist/ is at least as new as the GC sources (startup is part of its time). */
function gcCli(): 'source' | 'built' {
  if (values.cli === 'source' || values.cli === 'built') return values.cli;
  const newest = (paths: string[]) =>
    Math.max(...paths.map((p) => (existsSync(p) ? statSync(p).mtimeMs : 0)));
  const built = ['gc.js', 'store.js', 'cli/maintenance.js'].map((f) => join(REPO_ROOT, 'dist', 'src', f));
  const sources = ['gc.ts', 'store.ts', 'cli/maintenance.ts'].map((f) => join(REPO_ROOT, 'src', f));
  return built.every((p) => existsSync(p)) && newest(built) >= newest(sources) ? 'built' : 'source';
}

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function imageBytes(image: BuiltImage): number {
  return [image.manifest, image.config, ...image.layers].reduce((sum, d) => sum + d.size, 0);
}

async function must(what: string, result: Promise<{ code: number | null; stderr: string; ms: number }>) {
  const done = await result;
  if (done.code !== 0) throw new Error(`${what} failed (${done.code}): ${done.stderr.trim()}`);
  return done;
}

async function startTarget(target: Target, root: string): Promise<RunningRegistry> {
  if (target === 'distribution') return startDistribution(root, `${root}.yml`);
  return startBlobcore(`file://${root}`, [], { cli });
}

async function manifestDigest(registry: RunningRegistry, repo: string, tag: string): Promise<string> {
  const response = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  const digest = response.headers.get('docker-content-digest');
  if (response.status !== 200 || !digest) throw new Error(`HEAD ${repo}:${tag} → ${response.status}`);
  return digest;
}

async function main(): Promise<void> {
  for (const tool of ['skopeo', 'docker-registry']) {
    const found = await run('sh', ['-c', `command -v ${tool}`]);
    if (found.code !== 0)
      throw new Error(`${tool} is not installed (apt-get install skopeo docker-registry)`);
  }
  const version = (await run('docker-registry', ['--version'])).stdout.trim();
  const skopeoVersion = (await run('skopeo', ['--version'])).stdout.trim();
  const work = values.dir ?? (await mkdtemp(join(tmpdir(), 'blobcore-registry-bench-')));
  await mkdir(work, { recursive: true });
  const layout = join(work, 'layout');
  console.log(`blobcore serve from ${cli}; ${version}; ${skopeoVersion}; work dir ${work}`);

  const t0 = performance.now();
  const big = await addImage(
    layout,
    'big',
    Array.from({ length: layerCount }, (_, i) => ({ size: layerMiB * 1024 * 1024, seed: 1000 + i })),
  );
  const small = await addImage(
    layout,
    'small',
    Array.from({ length: smallCount }, (_, i) => ({ size: 64 * 1024, seed: 5000 + i })),
  );
  const bytes = imageBytes(big);
  console.log(
    `layout: big ${layerCount} × ${layerMiB} MiB (${(bytes / 2 ** 20).toFixed(0)} MiB), ` +
      `small ${smallCount} × 64 KiB, built in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const samples: Sample[] = [];
  const gcStores: Partial<Record<Target, string>> = {};
  for (let r = 1; r <= runs; r++) {
    const order: Target[] = r % 2 === 1 ? ['distribution', 'blobcore'] : ['blobcore', 'distribution'];
    for (const target of order) {
      const root = join(work, `store-${target}-${r}`);
      await rm(root, { recursive: true, force: true });
      await mkdir(root, { recursive: true });
      const registry = await startTarget(target, root);
      try {
        const copy = async (image: BuiltImage, tag: string) => {
          const ref = `docker://${registry.host}/bench/${tag}:v1`;
          const cpu0 = cpuSeconds(registry.pid);
          const push = await must(
            `${target} push ${tag}`,
            skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:${tag}`, ref]),
          );
          const cpu1 = cpuSeconds(registry.pid);
          const pulled = join(work, `pulled-${target}-${r}-${tag}`);
          await rm(pulled, { recursive: true, force: true });
          const pull = await must(
            `${target} pull ${tag}`,
            skopeo(['copy', '--src-tls-verify=false', '--preserve-digests', ref, `oci:${pulled}:${tag}`]),
          );
          const cpu2 = cpuSeconds(registry.pid);
          // Correctness before the numbers count: every blob re-hashed, same manifest.
          const back = await verifyImage(pulled, tag);
          if (back.manifest.digest !== image.manifest.digest) {
            throw new Error(
              `${target}: pulled ${tag} ${back.manifest.digest}, pushed ${image.manifest.digest}`,
            );
          }
          await rm(pulled, { recursive: true, force: true });
          return { push: push.ms, pull: pull.ms, pushCpu: cpu1 - cpu0, pullCpu: cpu2 - cpu1 };
        };
        const bigTimes = await copy(big, 'big');
        const smallTimes = await copy(small, 'small');
        samples.push({
          target,
          run: r,
          pushMs: bigTimes.push,
          pullMs: bigTimes.pull,
          smallPushMs: smallTimes.push,
          smallPullMs: smallTimes.pull,
          pushCpuS: bigTimes.pushCpu,
          pullCpuS: bigTimes.pullCpu,
        });
        console.log(
          `run ${r} ${target.padEnd(12)} big: push ${(bytes / 1e6 / (bigTimes.push / 1000)).toFixed(0)} MB/s, ` +
            `pull ${(bytes / 1e6 / (bigTimes.pull / 1000)).toFixed(0)} MB/s; ` +
            `${smallCount} small layers: push ${(smallTimes.push / 1000).toFixed(1)} s, ` +
            `pull ${(smallTimes.pull / 1000).toFixed(1)} s`,
        );
        if (r === runs) {
          const digest = await manifestDigest(registry, 'bench/big', 'v1');
          const deleted = await fetch(`${registry.url}/v2/bench/big/manifests/${digest}`, {
            method: 'DELETE',
          });
          if (deleted.status !== 202) throw new Error(`${target}: manifest DELETE → ${deleted.status}`);
          gcStores[target] = root;
        }
      } finally {
        await registry.stop();
      }
      if (r !== runs) await rm(root, { recursive: true, force: true });
    }
  }

  // ---- GC on the same logical content: big image deleted, small image kept --------
  const distRoot = gcStores.distribution as string;
  const distGc = await must(
    'docker-registry garbage-collect',
    run('docker-registry', ['garbage-collect', `${distRoot}.yml`]),
  );
  const bcRoot = gcStores.blobcore as string;
  const gcFrom = gcCli();
  const bcGc = await must(
    'blobcore gc',
    run(process.execPath, blobcoreCommand(['gc', `file://${bcRoot}`, '--grace', '0', '--json'], gcFrom)),
  );
  const report = JSON.parse(bcGc.stdout) as { swept: number; bytesFreed: number; durationMs: number };
  // Both must have freed the big layers and kept the small image.
  const distData = (digest: string) => {
    const hex = digest.slice('sha256:'.length);
    return join(distRoot, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  };
  for (const layer of big.layers) {
    if (existsSync(distData(layer.digest))) throw new Error(`distribution GC kept ${layer.digest}`);
  }
  for (const blob of [small.manifest, small.config, ...small.layers]) {
    if (!existsSync(distData(blob.digest))) throw new Error(`distribution GC lost ${blob.digest}`);
  }
  const store = await openStore(`file://${bcRoot}`);
  try {
    for (const layer of big.layers) {
      if (await store.stat(layer.digest)) throw new Error(`blobcore GC kept ${layer.digest}`);
    }
    const repo = store.repository('bench/small');
    for (const blob of [small.config, ...small.layers]) {
      if (!(await repo.blobs.stat(blob.digest))) throw new Error(`blobcore GC lost ${blob.digest}`);
    }
    if (!(await repo.manifests.stat('v1'))) throw new Error('blobcore GC lost bench/small:v1');
  } finally {
    await store.close();
  }

  const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
  const summary = (target: Target) => {
    const mine = samples.filter((s) => s.target === target);
    return {
      pushMBps: median(mine.map((s) => mbps(s.pushMs))),
      pullMBps: median(mine.map((s) => mbps(s.pullMs))),
      smallPushMs: median(mine.map((s) => s.smallPushMs)),
      smallPullMs: median(mine.map((s) => s.smallPullMs)),
      pushCpuS: median(mine.map((s) => s.pushCpuS)),
      pullCpuS: median(mine.map((s) => s.pullCpuS)),
    };
  };
  const dist = summary('distribution');
  const bc = summary('blobcore');
  const table = [
    {
      registry: 'distribution',
      'push MB/s': dist.pushMBps.toFixed(0),
      'pull MB/s': dist.pullMBps.toFixed(0),
      'push cpu s': dist.pushCpuS.toFixed(2),
      'pull cpu s': dist.pullCpuS.toFixed(2),
      'small push s': (dist.smallPushMs / 1000).toFixed(1),
      'small pull s': (dist.smallPullMs / 1000).toFixed(1),
      'gc ms (process)': distGc.ms.toFixed(0),
      'gc ms (own)': '-',
    },
    {
      registry: 'blobcore',
      'push MB/s': bc.pushMBps.toFixed(0),
      'pull MB/s': bc.pullMBps.toFixed(0),
      'push cpu s': bc.pushCpuS.toFixed(2),
      'pull cpu s': bc.pullCpuS.toFixed(2),
      'small push s': (bc.smallPushMs / 1000).toFixed(1),
      'small pull s': (bc.smallPullMs / 1000).toFixed(1),
      'gc ms (process)': bcGc.ms.toFixed(0),
      'gc ms (own)': String(report.durationMs),
    },
    {
      registry: 'ratio blobcore/distribution',
      'push MB/s': (bc.pushMBps / dist.pushMBps).toFixed(2),
      'pull MB/s': (bc.pullMBps / dist.pullMBps).toFixed(2),
      'push cpu s': (bc.pushCpuS / dist.pushCpuS).toFixed(2),
      'pull cpu s': (bc.pullCpuS / dist.pullCpuS).toFixed(2),
      'small push s': (bc.smallPushMs / dist.smallPushMs).toFixed(2),
      'small pull s': (bc.smallPullMs / dist.smallPullMs).toFixed(2),
      'gc ms (process)': (bcGc.ms / distGc.ms).toFixed(2),
      'gc ms (own)': '-',
    },
  ];
  console.table(table);
  console.log(
    `median of ${runs} runs, ${(bytes / 2 ** 20).toFixed(0)} MiB image; target: blobcore ≥ 1.0× on push and pull` +
      ` → push ${bc.pushMBps >= dist.pushMBps ? 'met' : 'NOT met'}, pull ${bc.pullMBps >= dist.pullMBps ? 'met' : 'NOT met'};` +
      ` blobcore gc swept ${report.swept} blobs (${(report.bytesFreed / 2 ** 20).toFixed(0)} MiB)`,
  );
  const out = {
    at: new Date().toISOString(),
    cli,
    gcCli: gcFrom,
    distribution: version,
    skopeo: skopeoVersion,
    image: { layers: layerCount, layerMiB, bytes, smallLayers: smallCount },
    runs,
    samples,
    median: { distribution: dist, blobcore: bc },
    ratio: { push: bc.pushMBps / dist.pushMBps, pull: bc.pullMBps / dist.pullMBps },
    gc: {
      distributionProcessMs: distGc.ms,
      blobcoreProcessMs: bcGc.ms,
      blobcoreOwnMs: report.durationMs,
      blobcoreSwept: report.swept,
      blobcoreBytesFreed: report.bytesFreed,
    },
  };
  const benchDir = join(REPO_ROOT, '.bench');
  await mkdir(benchDir, { recursive: true });
  const file = join(benchDir, `registry-${out.at.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`figures: ${file}`);
  if (!values.keep && values.dir === undefined) await rm(work, { recursive: true, force: true });
}

await main();
