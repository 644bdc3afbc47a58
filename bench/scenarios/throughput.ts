/**
 * Throughput and latency scenarios on one backend, each a group of tasks measured in
 * interleaved rounds with its limit, its raw baselines and its peers:
 *
 *   put:<size>      blobcore put (digest given up front, verified while streaming) vs
 *                   sha256 alone, raw writes (driver, FileHandle, SDK), cacache (1 MiB+),
 *                   blockstore-fs (≤ 1 MiB)
 *   get:<size>      blobcore get verified and unverified vs sha256, raw reads, peers
 *   upload          one big blob: monolithic put vs chunked uploads in 8 MiB and 1 MiB
 *                   chunks, one 64 KiB-chunk stream (an HTTP body), and 8 MiB chunks with
 *                   a resume halfway through in a fresh store instance (bytes read back
 *                   counted); tus file-store / s3-store fed the same ways
 *   commit          commit() alone for 1 MiB and the big size (must be flat in size)
 *   dedup           put of content already stored, and cross-repository mount
 *   ops:<c>         stat, 4 KiB put and 4 KiB verified get, ops/s at concurrency c
 *   list            listing N keys through the driver vs the raw listing
 *   rss             1 GiB streamed put and 8 MiB-chunk upload: peak RSS
 *
 * Small sizes run several operations per sample (`ops`), so a sample is never one
 * sub-millisecond call. Every write stores new content (../scenarios/types.ts `freshen`)
 * and is deleted after its sample; correctness (the right bytes come back) is asserted
 * for every system before anything is timed.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Driver } from '../../src/driver.js';
import { BlobStore } from '../../src/store.js';
import { patternBytes } from '../../src/stream/pattern.js';
import { type Backend, consume, digestOf, type RawIO, rawName, warmScratch } from '../backends.js';
import type { TaskResult } from '../harness.js';
import {
  type BlobPeer,
  blockstorePeer,
  cacachePeer,
  chunkStream,
  tusFilePeer,
  tusS3Peer,
  type UploadPeer,
} from '../peers.js';
import {
  atLeast,
  atMost,
  type BenchTask,
  type CheckOutcome,
  type CheckSpec,
  freshen,
  type Group,
  info,
  KiB,
  MiB,
  nextSequence,
  parallel,
  ratioOf,
  sizeLabel,
  type TaskMeta,
} from './types.js';

export interface ThroughputOptions {
  sizes: number[];
  /** Size of the upload/commit scenarios (0: skip). */
  uploadSize: number;
  concurrency: number[];
  /** Operations per sample in the small-ops scenarios. */
  smallOps: number;
  listKeys: number;
  /** Size of the peak-RSS transfers (0: skip). */
  rssSize: number;
  peers: boolean;
  scenarios: ReadonlySet<string>;
  /** Where peers keep their data (beside the fs store, same disk). */
  peerDir: (name: string) => string;
  /** Notes for the report (e.g. a peer that cannot run on a server). */
  notes: string[];
}

/** Operations per sample: 16 MiB worth, at most 64 (64 × 4 KiB, 16 × 1 MiB, 1 × 256 MiB). */
export function batchFor(size: number): number {
  return Math.max(1, Math.min(64, Math.floor((16 * MiB) / size)));
}

const HASH_LABEL = 'sha256 node:crypto';

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function assertSame(
  what: string,
  expected: Uint8Array,
  stream: AsyncIterable<Uint8Array>,
): Promise<void> {
  const got = await readAll(stream);
  if (got.length !== expected.byteLength || sha(got) !== sha(expected)) {
    throw new Error(
      `${what}: read back ${got.length} bytes that differ from the ${expected.byteLength} written`,
    );
  }
}

/** Consumes a stream and checks its length (cheap; content is checked in `check`). */
async function drain(stream: AsyncIterable<Uint8Array>, size: number, what: string): Promise<void> {
  const n = await consume(stream);
  if (n !== size) throw new Error(`${what}: read ${n} bytes, expected ${size}`);
}

function slots(buffer: Buffer, size: number, count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => buffer.subarray(i * size, (i + 1) * size));
}

interface Builder {
  backend: Backend;
  task(
    meta: Omit<TaskMeta, 'id' | 'backend'> & { key?: string },
    spec: Omit<BenchTask, 'meta' | 'name'>,
  ): BenchTask;
}

function builder(backend: Backend): Builder {
  return {
    backend,
    task(meta, spec) {
      const { key, ...rest } = meta;
      const parts = [backend.name, meta.scenario, key ?? meta.label];
      if (meta.size !== undefined && !meta.scenario.includes(':')) parts.push(sizeLabel(meta.size));
      const id = parts.join(' / ');
      return { ...spec, name: id, meta: { ...rest, id, backend: backend.name } };
    },
  };
}

/** A peer check: blobcore ≥ 1.0× the peer, or ≥ 0.85× the hash limit where a non-hashing peer beats that limit. */
function peerCheck(
  backend: Backend,
  label: string,
  blobcore: string,
  peer: string,
  limit: string | null,
  peerVerifies: boolean,
  aim?: number,
): CheckSpec {
  return {
    id: `${blobcore} ÷ ${peer}`,
    label,
    kind: 'peer',
    backend: backend.name,
    uses: limit ? [blobcore, peer, limit] : [blobcore, peer],
    evaluate(results): CheckOutcome {
      const ratio = ratioOf(results, blobcore, peer);
      const peerRate = results.get(peer)?.mbps?.median ?? 0;
      const limitRate = limit ? (results.get(limit)?.mbps?.median ?? 0) : 0;
      if (!peerVerifies && limit && limitRate > 0 && peerRate > limitRate) {
        const vsLimit = ratioOf(results, blobcore, limit);
        const outcome = atLeast(
          vsLimit,
          0.85,
          `peer skips hashing and runs above the sha256 limit: blobcore / limit shown (blobcore / peer ${ratio?.toFixed(2)})`,
        );
        return outcome;
      }
      const outcome = atLeast(ratio, 1.0, aim ? `aim ≥ ${aim}` : undefined);
      return outcome;
    },
  };
}

function ratioCheck(
  backend: Backend,
  kind: CheckSpec['kind'],
  label: string,
  numerator: string,
  denominator: string,
  target: number | null,
  note?: string,
): CheckSpec {
  return {
    id: `${numerator} ÷ ${denominator}`,
    label,
    kind,
    backend: backend.name,
    uses: [numerator, denominator],
    evaluate(results) {
      const value = ratioOf(results, numerator, denominator);
      return target === null ? info(value, note) : atLeast(value, target, note);
    },
  };
}

/**
 * A byte count a task reports in its metrics, which must be 0 (a resume or commit that
 * reads nothing back); with `why`, reported without a target, saying why.
 */
function readBackCheck(
  backend: Backend,
  task: string,
  metric: 'bytesReadBack' | 'commitBytesReadBack',
  what: string,
  why?: string,
): CheckSpec {
  return {
    id: `${task} ${metric === 'bytesReadBack' ? 'bytes read back' : 'commit bytes read back'}`,
    label: `${backend.name} ${what}`,
    kind: 'resume',
    backend: backend.name,
    uses: [task],
    evaluate(results) {
      const metrics = results.get(task)?.metrics;
      const value = metrics ? (metrics[metric] ?? 0) : null;
      if (why !== undefined) return info(value, why);
      return { value, target: '= 0', met: value === null ? null : value === 0 };
    },
  };
}

/**
 * blobcore against a raw baseline. A verified transfer cannot beat the hashing limit, so
 * where the raw I/O runs faster than sha256 the denominator is the limit instead
 * (said in the note); the plain blobcore / raw ratio is in the note as well.
 */
function rawCheck(
  backend: Backend,
  label: string,
  numerator: string,
  raw: string,
  limit: string,
  target: number | null,
): CheckSpec {
  return {
    id: `${numerator} ÷ ${raw}`,
    label,
    kind: 'raw',
    backend: backend.name,
    uses: [numerator, raw, limit],
    evaluate(results) {
      const vsRaw = ratioOf(results, numerator, raw);
      const rawRate = results.get(raw)?.mbps?.median ?? 0;
      const limitRate = results.get(limit)?.mbps?.median ?? 0;
      if (limitRate > 0 && rawRate > limitRate) {
        const note = `raw runs above the sha256 limit: blobcore / limit shown (blobcore / raw ${vsRaw?.toFixed(2)})`;
        const vsLimit = ratioOf(results, numerator, limit);
        return target === null ? info(vsLimit, note) : atLeast(vsLimit, target, note);
      }
      return target === null ? info(vsRaw) : atLeast(vsRaw, target);
    },
  };
}

/** The raw baseline a driver is held to (≥ 0.9×): what the same bytes cost without blobcore. */
function primaryRaw(backend: Backend, kind: 'write' | 'read'): RawIO[] {
  const has = (r: RawIO) => (kind === 'write' ? r.write !== undefined : r.read !== undefined);
  const byLabel = (label: string) => backend.raw.filter((r) => r.label === label && has(r));
  if (backend.kind === 'fs' || backend.kind === 'pvc') {
    const file =
      kind === 'write' && backend.durability !== 'none' ? byLabel('FileHandle+fsync') : byLabel('FileHandle');
    return [...byLabel('driver'), ...file];
  }
  return backend.raw.filter(has);
}

// ── put and get ──────────────────────────────────────────────────────────────────────

function blobPeersFor(
  backend: Backend,
  size: number,
  options: ThroughputOptions,
): (() => Promise<BlobPeer>)[] {
  if (!options.peers || backend.kind !== 'fs') return [];
  const peers: (() => Promise<BlobPeer>)[] = [];
  if (size >= MiB) peers.push(async () => cacachePeer(options.peerDir('cacache')));
  if (size <= MiB) peers.push(() => blockstorePeer(options.peerDir('blockstore-fs')));
  return peers;
}

/** The targets on limits apply to the largest size of the run; smaller ones are shown for information. */
function limitTarget(backend: Backend, largest: boolean): number | null {
  if (!largest) return null;
  if (backend.kind === 'fs' || backend.kind === 'pvc') return 0.85;
  if (backend.kind === 'memory') return 0.9;
  return null;
}

export async function putGroup(
  backend: Backend,
  size: number,
  largest: boolean,
  options: ThroughputOptions,
): Promise<Group> {
  const b = builder(backend);
  const count = batchFor(size);
  const scenario = `put`;
  let buffer: Buffer = Buffer.alloc(0);
  let parts: Buffer[] = [];
  const digests: string[] = [];
  const peers = await Promise.all(blobPeersFor(backend, size, options).map((make) => make()));
  const fresh = () => {
    freshen(buffer, size);
  };
  const withDigests = () => {
    fresh();
    for (let i = 0; i < count; i++) digests[i] = digestOf(parts[i] as Buffer);
  };
  const common = { scenario, size, unit: 'MB/s' as const, variant: 'put' };
  const bytes = size * count;
  const ops = count;
  const tasks: BenchTask[] = [];
  const limit = b.task(
    { ...common, label: HASH_LABEL, system: 'limit', verifies: null },
    {
      bytes,
      ops,
      prepare: fresh,
      fn: () => {
        for (const part of parts) createHash('sha256').update(part).digest();
      },
    },
  );
  tasks.push(limit);
  const rawTasks: BenchTask[] = [];
  for (const raw of backend.raw) {
    const write = raw.write?.bind(raw);
    if (!write) continue;
    let keys: string[] = [];
    rawTasks.push(
      b.task(
        { ...common, label: `raw ${rawName(raw, 'write')}`, system: 'raw', verifies: false },
        {
          bytes,
          ops,
          prepare: () => {
            fresh();
            const seq = nextSequence();
            keys = parts.map((_, i) => `put-${seq}-${i}`);
          },
          fn: async () => {
            for (let i = 0; i < count; i++) await write(keys[i] as string, parts[i] as Buffer);
          },
          afterEach: async () => {
            for (const key of keys) await raw.delete(key);
          },
          check: async () => {
            fresh();
            const key = `check-${nextSequence()}`;
            await write(key, parts[0] as Buffer);
            if (raw.read) await assertSame(`raw ${raw.label}`, parts[0] as Buffer, await raw.read(key));
            await raw.delete(key);
          },
        },
      ),
    );
  }
  tasks.push(...rawTasks);
  const blobcoreTask = (store: BlobStore, label: string, key: string, series?: string) =>
    b.task(
      { ...common, label, key, system: 'blobcore', verifies: true, ...(series ? { series } : {}) },
      {
        bytes,
        ops,
        prepare: withDigests,
        fn: async () => {
          for (let i = 0; i < count; i++) {
            await store.put(parts[i] as Buffer, { expected: digests[i], size });
          }
        },
        afterEach: async () => {
          for (const digest of digests) await store.delete(digest);
        },
        check: async () => {
          withDigests();
          const result = await store.put(parts[0] as Buffer, { expected: digests[0], size });
          if (result.digest !== digests[0] || result.deduplicated)
            throw new Error(`${label}: wrong put result`);
          await assertSame(label, parts[0] as Buffer, await store.get(result.digest, { verify: true }));
          await store.delete(result.digest);
        },
      },
    );
  const main = blobcoreTask(backend.store, 'blobcore put (verified)', 'blobcore put');
  tasks.push(main);
  let asPeers = main;
  if (peers.length > 0 && backend.peerStore) {
    asPeers = blobcoreTask(
      backend.peerStore,
      'blobcore put (verified), durability none as the peers',
      'blobcore put, durability none',
      `${backend.name} (durability none)`,
    );
    tasks.push(asPeers);
  }
  const peerTasks = peers.map((peer) =>
    b.task(
      {
        ...common,
        label: `${peer.name} put`,
        series: `${peer.name} (${backend.name})`,
        system: 'peer',
        peer: `${peer.name} ${peer.version}`,
        verifies: peer.verifies,
      },
      {
        bytes,
        ops,
        prepare: withDigests,
        fn: async () => {
          for (let i = 0; i < count; i++) await peer.put(parts[i] as Buffer, digests[i] as string);
        },
        afterEach: async () => {
          for (const digest of digests) await peer.delete(digest);
        },
        check: async () => {
          withDigests();
          await peer.put(parts[0] as Buffer, digests[0] as string);
          await assertSame(peer.name, parts[0] as Buffer, await peer.get(digests[0] as string));
          await peer.delete(digests[0] as string);
        },
      },
    ),
  );
  tasks.push(...peerTasks);
  const checks: CheckSpec[] = [
    ratioCheck(
      backend,
      'limit',
      `${backend.name} put ${sizeLabel(size)} / sha256 limit`,
      main.meta.id,
      limit.meta.id,
      limitTarget(backend, largest),
    ),
  ];
  for (const raw of primaryRaw(backend, 'write')) {
    const task = rawTasks.find((t) => t.meta.label === `raw ${rawName(raw, 'write')}`);
    if (!task) continue;
    checks.push(
      rawCheck(
        backend,
        `${backend.name} put ${sizeLabel(size)} / raw ${rawName(raw, 'write')}`,
        main.meta.id,
        task.meta.id,
        limit.meta.id,
        largest ? 0.9 : null,
      ),
    );
  }
  peers.forEach((peer, i) => {
    const task = peerTasks[i] as BenchTask;
    checks.push(
      peerCheck(
        backend,
        `${backend.name} put ${sizeLabel(size)} / ${peer.name}${peer.verifies ? '' : ' (no hashing)'}`,
        asPeers.meta.id,
        task.meta.id,
        limit.meta.id,
        peer.verifies,
        1.5,
      ),
    );
  });
  return {
    id: `${backend.name} put ${sizeLabel(size)}`,
    title: `put ${sizeLabel(size)} × ${count}`,
    backend: backend.name,
    setup: async () => {
      buffer = patternBytes(`put-${backend.name}-${size}`, 0, size * count);
      parts = slots(buffer, size, count);
    },
    teardown: async () => {
      buffer = Buffer.alloc(0);
      parts = [];
    },
    tasks,
    checks,
  };
}

export async function getGroup(
  backend: Backend,
  size: number,
  largest: boolean,
  options: ThroughputOptions,
): Promise<Group> {
  const b = builder(backend);
  const count = batchFor(size);
  let parts: Buffer[] = [];
  let digests: string[] = [];
  const peers = await Promise.all(blobPeersFor(backend, size, options).map((make) => make()));
  const rawKeys = new Map<RawIO, string[]>();
  const common = { scenario: 'get', size, unit: 'MB/s' as const };
  const bytes = size * count;
  const ops = count;
  const tasks: BenchTask[] = [];
  const limit = b.task(
    { ...common, label: HASH_LABEL, system: 'limit', verifies: null },
    {
      bytes,
      ops,
      fn: () => {
        for (const part of parts) createHash('sha256').update(part).digest();
      },
    },
  );
  tasks.push(limit);
  const rawTasks: BenchTask[] = [];
  for (const raw of backend.raw) {
    const read = raw.read?.bind(raw);
    if (!read) continue;
    rawTasks.push(
      b.task(
        { ...common, label: `raw ${rawName(raw, 'read')}`, system: 'raw', verifies: false },
        {
          bytes,
          ops,
          fn: async () => {
            for (const key of rawKeys.get(raw) ?? []) await drain(await read(key), size, raw.label);
          },
          check: async () => {
            const key = (rawKeys.get(raw) ?? [])[0];
            if (key) await assertSame(`raw ${raw.label}`, parts[0] as Buffer, await read(key));
          },
        },
      ),
    );
  }
  tasks.push(...rawTasks);
  const getTask = (verify: boolean) =>
    b.task(
      {
        ...common,
        label: verify ? 'blobcore get (verified)' : 'blobcore get (unverified)',
        variant: verify ? 'verified' : 'unverified',
        system: 'blobcore',
        verifies: verify,
      },
      {
        bytes,
        ops,
        fn: async () => {
          for (const digest of digests) await drain(await backend.store.get(digest, { verify }), size, 'get');
        },
        check: async () => {
          await assertSame(
            'blobcore get',
            parts[0] as Buffer,
            await backend.store.get(digests[0] as string, { verify }),
          );
        },
      },
    );
  const verified = getTask(true);
  const unverified = getTask(false);
  tasks.push(verified, unverified);
  const peerTasks = peers.map((peer) =>
    b.task(
      {
        ...common,
        label: `${peer.name} get`,
        series: `${peer.name} (${backend.name})`,
        variant: 'verified',
        system: 'peer',
        peer: `${peer.name} ${peer.version}`,
        verifies: peer.verifies,
      },
      {
        bytes,
        ops,
        fn: async () => {
          for (const digest of digests) await drain(await peer.get(digest), size, peer.name);
        },
        check: async () => {
          await assertSame(peer.name, parts[0] as Buffer, await peer.get(digests[0] as string));
        },
      },
    ),
  );
  tasks.push(...peerTasks);
  const checks: CheckSpec[] = [
    ratioCheck(
      backend,
      'limit',
      `${backend.name} get ${sizeLabel(size)} verified / sha256 limit`,
      verified.meta.id,
      limit.meta.id,
      limitTarget(backend, largest),
    ),
  ];
  for (const raw of primaryRaw(backend, 'read')) {
    const task = rawTasks.find((t) => t.meta.label === `raw ${rawName(raw, 'read')}`);
    if (!task) continue;
    checks.push(
      rawCheck(
        backend,
        `${backend.name} get ${sizeLabel(size)} verified / raw ${rawName(raw, 'read')}`,
        verified.meta.id,
        task.meta.id,
        limit.meta.id,
        largest ? 0.9 : null,
      ),
    );
  }
  peers.forEach((peer, i) => {
    const task = peerTasks[i] as BenchTask;
    checks.push(
      peerCheck(
        backend,
        `${backend.name} get ${sizeLabel(size)} verified / ${peer.name}${peer.verifies ? '' : ' (no hashing)'}`,
        verified.meta.id,
        task.meta.id,
        limit.meta.id,
        peer.verifies,
        1.5,
      ),
    );
  });
  const copies = backend.kind === 'memory';
  return {
    id: `${backend.name} get ${sizeLabel(size)}`,
    title: `get ${sizeLabel(size)} × ${count}`,
    backend: backend.name,
    setup: async () => {
      const buffer = patternBytes(`get-${backend.name}-${size}-${nextSequence()}`, 0, size * count);
      freshen(buffer, size);
      parts = slots(buffer, size, count);
      digests = [];
      for (const part of parts) {
        // The memory driver keeps the caller's buffers: give it its own copies.
        digests.push((await backend.store.put(copies ? Buffer.from(part) : part, { size })).digest);
      }
      for (const raw of backend.raw) {
        if (!raw.read) continue;
        const writer = raw.write ? raw : backend.raw.find((r) => r.write && r.read === undefined);
        const keys = parts.map((_, i) => `get-${size}-${i}`);
        if (writer?.write)
          for (let i = 0; i < count; i++)
            await writer.write(
              keys[i] as string,
              copies ? Buffer.from(parts[i] as Buffer) : (parts[i] as Buffer),
            );
        rawKeys.set(raw, keys);
      }
      for (const peer of peers)
        for (let i = 0; i < count; i++) await peer.put(parts[i] as Buffer, digests[i] as string);
    },
    teardown: async () => {
      for (const digest of digests) await backend.store.delete(digest);
      for (const [raw, keys] of rawKeys) for (const key of keys) await raw.delete(key);
      for (const peer of peers) for (const digest of digests) await peer.delete(digest);
      rawKeys.clear();
      parts = [];
      digests = [];
    },
    tasks,
    checks,
  };
}

// ── uploads ──────────────────────────────────────────────────────────────────────────

/** A driver that counts the bytes it reads from blob data and upload tails. */
function countingDriver(driver: Driver, counter: { bytes: number }): Driver {
  return new Proxy(driver, {
    get(target, property, receiver) {
      if (property !== 'read') return Reflect.get(target, property, receiver);
      return async (key: string, options?: Parameters<Driver['read']>[1]) => {
        const stream = await target.read(key, options);
        if (key.startsWith('data/') || key.includes('/tail/')) {
          stream.on('data', (chunk: Uint8Array) => {
            counter.bytes += chunk.byteLength;
          });
        }
        return stream;
      };
    },
  });
}

async function appendAll(
  upload: {
    append(body: Uint8Array | Readable, options: { offset: number; size?: number }): Promise<unknown>;
  },
  bytes: Buffer,
  chunk: number,
  from = 0,
  to = bytes.length,
): Promise<void> {
  for (let offset = from; offset < to; offset += chunk) {
    const end = Math.min(to, offset + chunk);
    await upload.append(bytes.subarray(offset, end), { offset, size: end - offset });
  }
}

function uploadPeersFor(backend: Backend, options: ThroughputOptions): (() => Promise<UploadPeer>)[] {
  if (!options.peers) return [];
  if (backend.kind === 'fs') return [() => tusFilePeer(options.peerDir('tus-file-store'))];
  if (backend.kind === 's3' && backend.s3) {
    const access = backend.s3;
    if (access.emulator) {
      options.notes.push(
        `${backend.name}: @tus/s3-store not run — it lists the parts of its multipart upload (ListParts) before every write, which the s3rver emulator answers with 405 MethodNotAllowed; it runs on radosgw (npm run bench:system).`,
      );
      return [];
    }
    return [() => tusS3Peer(access, 8 * MiB)];
  }
  return [];
}

export async function uploadGroup(
  backend: Backend,
  size: number,
  options: ThroughputOptions,
): Promise<Group> {
  const b = builder(backend);
  let buffer: Buffer = Buffer.alloc(0);
  let digest = '';
  const common = { scenario: 'upload', size, unit: 'MB/s' as const };
  const fresh = () => {
    freshen(buffer, size);
    digest = digestOf(buffer);
  };
  const peers = await Promise.all(uploadPeersFor(backend, options).map((make) => make()));
  const cleanup = (store: BlobStore) => async () => {
    if (digest) await store.delete(digest);
  };
  const verifyBack = async (store: BlobStore, what: string, result: { digest: string }) => {
    if (result.digest !== digest) throw new Error(`${what}: committed ${result.digest}, expected ${digest}`);
    await assertSame(what, buffer, await store.get(digest, { verify: true }));
    await store.delete(digest);
  };
  const tasks: BenchTask[] = [];
  const limit = b.task(
    { ...common, label: HASH_LABEL, system: 'limit', verifies: null },
    { bytes: size, prepare: fresh, fn: () => createHash('sha256').update(buffer).digest() },
  );
  tasks.push(limit);
  const series = (suffix: string) => (suffix ? { series: `${backend.name} (durability none)` } : {});
  const monolithic = (store: BlobStore, suffix: string) =>
    b.task(
      {
        ...common,
        label: `blobcore put (monolithic)${suffix}`,
        variant: 'monolithic put',
        system: 'blobcore',
        verifies: true,
        ...series(suffix),
      },
      {
        bytes: size,
        prepare: fresh,
        fn: () => store.put(buffer, { expected: digest, size }),
        afterEach: cleanup(store),
        check: async () => {
          fresh();
          await verifyBack(store, 'put', await store.put(buffer, { expected: digest, size }));
        },
      },
    );
  const chunked = (store: BlobStore, chunk: number, suffix: string) =>
    b.task(
      {
        ...common,
        label: `blobcore upload, ${sizeLabel(chunk)} chunks${suffix}`,
        variant: `${sizeLabel(chunk)} chunks`,
        chunk,
        system: 'blobcore',
        verifies: true,
        ...series(suffix),
      },
      {
        bytes: size,
        prepare: fresh,
        fn: async () => {
          const upload = await store.uploads.start();
          await appendAll(upload, buffer, chunk);
          await upload.commit({ digest, size });
        },
        afterEach: cleanup(store),
        check: async () => {
          fresh();
          const upload = await store.uploads.start();
          await appendAll(upload, buffer, chunk);
          await verifyBack(store, `upload ${sizeLabel(chunk)}`, await upload.commit({ digest, size }));
        },
      },
    );
  const streamed = (store: BlobStore, suffix: string) =>
    b.task(
      {
        ...common,
        label: `blobcore upload, one 64 KiB-chunk stream${suffix}`,
        variant: '64 KiB-chunk stream',
        chunk: 64 * KiB,
        system: 'blobcore',
        verifies: true,
        ...series(suffix),
      },
      {
        bytes: size,
        prepare: fresh,
        fn: async () => {
          const upload = await store.uploads.start();
          await upload.append(chunkStream(buffer, 64 * KiB), { offset: 0, size });
          await upload.commit({ digest, size });
        },
        afterEach: cleanup(store),
        check: async () => {
          fresh();
          const upload = await store.uploads.start();
          await upload.append(chunkStream(buffer, 64 * KiB), { offset: 0, size });
          await verifyBack(store, 'upload stream', await upload.commit({ digest, size }));
        },
      },
    );
  const put = monolithic(backend.store, '');
  const chunk8 = chunked(backend.store, 8 * MiB, '');
  const chunk1 = chunked(backend.store, MiB, '');
  const stream = streamed(backend.store, '');
  tasks.push(put, chunk8, chunk1, stream);

  // Resume halfway in a fresh store instance: bytes read back must be 0.
  const counter = { bytes: 0 };
  let resumeRead = 0;
  let commitRead = 0;
  let rehashed = 0;
  let resumeId = '';
  const half = Math.floor(size / 2 / (8 * MiB)) * 8 * MiB || Math.floor(size / 2);
  const resumeInto = async (): Promise<{ digest: string }> => {
    const fresh = new BlobStore(countingDriver(await backend.openDriver(), counter));
    try {
      const start = counter.bytes;
      const upload = await fresh.uploads.resume(resumeId);
      await appendAll(upload, buffer, 8 * MiB, half, size);
      const appended = counter.bytes;
      resumeRead += appended - start;
      const result = await upload.commit({ digest, size });
      commitRead += counter.bytes - appended;
      rehashed += fresh.counters.rehashedBytes;
      return result;
    } finally {
      await fresh.close();
    }
  };
  const startHalf = async () => {
    const upload = await backend.store.uploads.start();
    await appendAll(upload, buffer, 8 * MiB, 0, half);
    resumeId = upload.id;
  };
  const resume = b.task(
    {
      ...common,
      label: 'blobcore upload, 8 MiB chunks, resumed halfway in a fresh store',
      variant: '8 MiB chunks + resume',
      key: 'blobcore upload resumed',
      chunk: 8 * MiB,
      system: 'blobcore',
      verifies: true,
    },
    {
      bytes: size,
      prepare: fresh,
      fn: async () => {
        await startHalf();
        await resumeInto();
      },
      afterEach: cleanup(backend.store),
      metrics: () => {
        const out = { bytesReadBack: resumeRead, commitBytesReadBack: commitRead, rehashedBytes: rehashed };
        resumeRead = 0;
        commitRead = 0;
        rehashed = 0;
        return out;
      },
      check: async () => {
        fresh();
        await startHalf();
        const result = await resumeInto();
        await verifyBack(backend.store, 'resumed upload', result);
        resumeRead = 0;
        commitRead = 0;
        rehashed = 0;
      },
    },
  );
  tasks.push(resume);

  let peerChunk8 = chunk8;
  let peerStream = stream;
  if (peers.length > 0 && backend.peerStore) {
    peerChunk8 = chunked(backend.peerStore, 8 * MiB, ', durability none as the peers');
    peerStream = streamed(backend.peerStore, ', durability none as the peers');
    tasks.push(peerChunk8, peerStream);
  }
  const peerTasks: { peer: UploadPeer; chunk8: BenchTask; stream: BenchTask }[] = [];
  for (const peer of peers) {
    let id = '';
    const peerMeta = {
      ...common,
      series: `${peer.name} (${backend.name})`,
      system: 'peer' as const,
      peer: `${peer.name} ${peer.version}`,
      verifies: peer.verifies,
    };
    const del = async () => {
      if (id) await peer.delete(id);
      id = '';
    };
    const write8 = async () => {
      id = await peer.create(size);
      for (let offset = 0; offset < size; offset += 8 * MiB) {
        const end = Math.min(size, offset + 8 * MiB);
        const next = await peer.write(id, chunkStream(buffer.subarray(offset, end), end - offset), offset);
        if (next !== end) throw new Error(`${peer.name}: offset ${next} after a write to ${end}`);
      }
    };
    const writeStream = async () => {
      id = await peer.create(size);
      const next = await peer.write(id, chunkStream(buffer, 64 * KiB), 0);
      if (next !== size) throw new Error(`${peer.name}: offset ${next} after writing ${size}`);
    };
    const t8 = b.task(
      { ...peerMeta, label: `${peer.name}, 8 MiB chunks`, chunk: 8 * MiB, variant: '8 MiB chunks' },
      {
        bytes: size,
        prepare: fresh,
        fn: write8,
        afterEach: del,
        check: async () => {
          fresh();
          await write8();
          await assertSame(peer.name, buffer, await peer.read(id));
          await del();
        },
      },
    );
    const ts = b.task(
      {
        ...peerMeta,
        label: `${peer.name}, one 64 KiB-chunk stream`,
        chunk: 64 * KiB,
        variant: '64 KiB-chunk stream',
      },
      {
        bytes: size,
        prepare: fresh,
        fn: writeStream,
        afterEach: del,
        check: async () => {
          fresh();
          await writeStream();
          await assertSame(peer.name, buffer, await peer.read(id));
          await del();
        },
      },
    );
    tasks.push(t8, ts);
    peerTasks.push({ peer, chunk8: t8, stream: ts });
  }

  const sz = sizeLabel(size);
  const checks: CheckSpec[] = [
    ratioCheck(
      backend,
      'chunked',
      `${backend.name} upload ${sz} in 8 MiB chunks / monolithic put`,
      chunk8.meta.id,
      put.meta.id,
      0.85,
    ),
    ratioCheck(
      backend,
      'chunked',
      `${backend.name} upload ${sz} in 1 MiB chunks / monolithic put`,
      chunk1.meta.id,
      put.meta.id,
      0.85,
    ),
    ratioCheck(
      backend,
      'chunked',
      `${backend.name} upload ${sz} as one 64 KiB-chunk stream / monolithic put`,
      stream.meta.id,
      put.meta.id,
      null,
    ),
    readBackCheck(backend, resume.meta.id, 'bytesReadBack', 'resume in a fresh store: bytes read back'),
    readBackCheck(
      backend,
      resume.meta.id,
      'commitBytesReadBack',
      'commit after the resume: bytes re-read',
      backend.store.driver.capabilities.conditionalWrite
        ? undefined
        : "the server cannot enforce conditional writes, so commit re-reads and hashes the assembled bytes by design (verifyCommit 'auto')",
    ),
  ];
  for (const { peer, chunk8: t8, stream: ts } of peerTasks) {
    const tag = `${peer.name}${peer.verifies ? '' : ' (no hashing)'}`;
    checks.push(
      peerCheck(
        backend,
        `${backend.name} upload ${sz}, 8 MiB chunks / ${tag}`,
        peerChunk8.meta.id,
        t8.meta.id,
        limit.meta.id,
        peer.verifies,
      ),
      peerCheck(
        backend,
        `${backend.name} upload ${sz}, 64 KiB-chunk stream / ${tag}`,
        peerStream.meta.id,
        ts.meta.id,
        limit.meta.id,
        peer.verifies,
      ),
    );
  }
  return {
    id: `${backend.name} upload ${sz}`,
    title: `uploads of ${sz}`,
    backend: backend.name,
    setup: async () => {
      buffer = patternBytes(`upload-${backend.name}`, 0, size);
    },
    teardown: async () => {
      buffer = Buffer.alloc(0);
    },
    tasks,
    checks,
  };
}

export function commitGroup(backend: Backend, big: number): Group {
  const b = builder(backend);
  const sizes = [MiB, big];
  const tasks: BenchTask[] = sizes.map((size) => {
    let buffer: Buffer = Buffer.alloc(0);
    let digest = '';
    let commit: (() => Promise<unknown>) | undefined;
    return b.task(
      {
        scenario: 'commit',
        size,
        label: `blobcore commit() of a ${sizeLabel(size)} upload`,
        key: `commit ${sizeLabel(size)}`,
        system: 'blobcore',
        verifies: true,
        unit: 'ms',
      },
      {
        prepare: async () => {
          if (buffer.length !== size) buffer = patternBytes(`commit-${backend.name}-${size}`, 0, size);
          freshen(buffer, size);
          digest = digestOf(buffer);
          const upload = await backend.store.uploads.start();
          await appendAll(upload, buffer, 8 * MiB);
          commit = () => upload.commit({ digest, size });
        },
        fn: async () => {
          await commit?.();
        },
        afterEach: async () => {
          await backend.store.delete(digest);
          commit = undefined;
        },
      },
    );
  });
  const [small, large] = tasks as [BenchTask, BenchTask];
  return {
    id: `${backend.name} commit`,
    title: `commit latency, ${sizeLabel(MiB)} vs ${sizeLabel(big)}`,
    backend: backend.name,
    tasks,
    checks: [
      {
        id: `${large.meta.id} ÷ ${small.meta.id}`,
        label: `${backend.name} commit latency ${sizeLabel(big)} / ${sizeLabel(MiB)}`,
        kind: 'commit',
        backend: backend.name,
        uses: [small.meta.id, large.meta.id],
        evaluate(results) {
          const a = results.get(large.meta.id)?.ms.median;
          const c = results.get(small.meta.id)?.ms.median;
          const value = a === undefined || c === undefined || c === 0 ? null : a / c;
          return atMost(value, 2, 'flat in size: the ratio of medians stays near 1 (≤ 2 allows for noise)');
        },
      },
    ],
  };
}

export function dedupGroup(backend: Backend, options: ThroughputOptions): Group {
  const b = builder(backend);
  const ops = Math.max(4, Math.min(32, options.smallOps / 8));
  const size = MiB;
  let bytes: Buffer = Buffer.alloc(0);
  let digest = '';
  const source = `bench-source-${nextSequence()}`;
  const targets = Array.from({ length: ops }, (_, i) => `bench-target-${i}`);
  const dedup = b.task(
    {
      scenario: 'dedup',
      size,
      label: 'blobcore put of stored content (dedup hit)',
      key: 'dedup put',
      system: 'blobcore',
      verifies: true,
      unit: 'ms',
    },
    {
      bytes: size * ops,
      ops,
      fn: async () => {
        for (let i = 0; i < ops; i++) await backend.store.put(bytes, { expected: digest, size });
      },
      check: async () => {
        const result = await backend.store.put(bytes, { expected: digest, size });
        if (!result.deduplicated) throw new Error('dedup put: not reported as deduplicated');
      },
    },
  );
  const mount = b.task(
    {
      scenario: 'dedup',
      size,
      label: 'blobcore cross-repository mount',
      key: 'mount',
      system: 'blobcore',
      verifies: null,
      unit: 'ms',
    },
    {
      ops,
      fn: async () => {
        for (const target of targets) await backend.store.repository(target).blobs.mount(digest, source);
      },
      afterEach: async () => {
        for (const target of targets) await backend.store.repository(target).blobs.unlink(digest);
      },
      check: async () => {
        const repo = backend.store.repository(targets[0] as string);
        await repo.blobs.mount(digest, source);
        await assertSame('mount', bytes, await repo.blobs.get(digest, { verify: true }));
        await repo.blobs.unlink(digest);
      },
    },
  );
  return {
    id: `${backend.name} dedup`,
    title: 'dedup hit and mount latency',
    backend: backend.name,
    setup: async () => {
      bytes = patternBytes(`dedup-${backend.name}-${nextSequence()}`, 0, size);
      digest = (await backend.store.repository(source).blobs.put(Buffer.from(bytes), { size })).digest;
    },
    teardown: async () => {
      await backend.store.repository(source).blobs.unlink(digest);
      await backend.store.delete(digest);
    },
    tasks: [dedup, mount],
    checks: [],
  };
}

export function opsGroup(backend: Backend, concurrency: number, options: ThroughputOptions): Group {
  const b = builder(backend);
  const size = 4 * KiB;
  // A remote server answers each request in milliseconds: at most 200 per sample there.
  const remote = backend.kind === 's3' || backend.kind === 'azure';
  const n = remote ? Math.max(16, Math.min(200, Math.round(options.smallOps / 5))) : options.smallOps;
  const stored = 64;
  let storedDigests: string[] = [];
  let storedBytes: Buffer[] = [];
  let buffer: Buffer = Buffer.alloc(0);
  let parts: Buffer[] = [];
  let digests: string[] = [];
  const common = { scenario: `ops:${concurrency}`, concurrency, unit: 'ops/s' as const };
  const stat = b.task(
    {
      ...common,
      label: `blobcore stat, concurrency ${concurrency}`,
      key: 'stat',
      system: 'blobcore',
      verifies: null,
    },
    {
      ops: n,
      fn: () =>
        parallel(n, concurrency, async (i) => {
          const info = await backend.store.stat(storedDigests[i % stored] as string);
          if (!info) throw new Error('stat: blob missing');
        }),
    },
  );
  const put = b.task(
    {
      ...common,
      size,
      label: `blobcore put 4 KiB, concurrency ${concurrency}`,
      key: 'put 4 KiB',
      system: 'blobcore',
      verifies: true,
    },
    {
      ops: n,
      bytes: n * size,
      prepare: () => {
        freshen(buffer, size);
        digests = parts.map((part) => digestOf(part));
      },
      fn: () =>
        parallel(n, concurrency, async (i) => {
          await backend.store.put(parts[i] as Buffer, { expected: digests[i], size });
        }),
      afterEach: () => parallel(n, 8, async (i) => void (await backend.store.delete(digests[i] as string))),
    },
  );
  const get = b.task(
    {
      ...common,
      size,
      label: `blobcore get 4 KiB verified, concurrency ${concurrency}`,
      key: 'get 4 KiB',
      system: 'blobcore',
      verifies: true,
    },
    {
      ops: n,
      bytes: n * size,
      fn: () =>
        parallel(n, concurrency, async (i) => {
          await drain(
            await backend.store.get(storedDigests[i % stored] as string, { verify: true }),
            size,
            'get',
          );
        }),
      check: async () => {
        await assertSame(
          'get 4 KiB',
          storedBytes[0] as Buffer,
          await backend.store.get(storedDigests[0] as string, { verify: true }),
        );
      },
    },
  );
  return {
    id: `${backend.name} ops c=${concurrency}`,
    title: `small operations at concurrency ${concurrency}`,
    backend: backend.name,
    setup: async () => {
      const source = patternBytes(`ops-${backend.name}-${nextSequence()}`, 0, size * stored);
      freshen(source, size);
      storedBytes = slots(source, size, stored).map((part) => Buffer.from(part));
      storedDigests = [];
      for (const part of storedBytes) storedDigests.push((await backend.store.put(part, { size })).digest);
      buffer = patternBytes(`ops-put-${backend.name}`, 0, size * n);
      parts = slots(buffer, size, n);
    },
    teardown: async () => {
      for (const digest of storedDigests) await backend.store.delete(digest);
      buffer = Buffer.alloc(0);
      parts = [];
    },
    tasks: [stat, put, get],
    checks: [],
  };
}

export function listGroup(backend: Backend, keys: number): Group {
  const b = builder(backend);
  const prefix = `bench-list-${nextSequence()}/`;
  const names = Array.from({ length: keys }, (_, i) => `${prefix}${i.toString().padStart(6, '0')}`);
  const common = { scenario: 'list', unit: 'ops/s' as const };
  const countPages = async () => {
    let count = 0;
    let cursor: string | undefined;
    do {
      const page = await backend.store.driver.list(prefix, { startAfter: cursor });
      count += page.keys.length;
      cursor = page.cursor;
    } while (cursor !== undefined);
    return count;
  };
  const blobcore = b.task(
    {
      ...common,
      label: `driver list, ${keys.toLocaleString('en-US')} keys (keys/s)`,
      key: 'list',
      system: 'blobcore',
      verifies: null,
    },
    {
      ops: keys,
      fn: async () => {
        const n = await countPages();
        if (n !== keys) throw new Error(`list: ${n} keys, expected ${keys}`);
      },
      check: async () => {
        const n = await countPages();
        if (n !== keys) throw new Error(`list: ${n} keys, expected ${keys}`);
      },
    },
  );
  const raws = backend.raw
    .filter((raw) => raw.list && raw.label !== 'driver')
    .map((raw) =>
      b.task(
        { ...common, label: `raw ${rawName(raw, 'list')} (keys/s)`, system: 'raw', verifies: null },
        {
          ops: keys,
          fn: async () => {
            const n = await raw.list?.(prefix);
            if (n !== keys) throw new Error(`raw list ${raw.label}: ${n} keys, expected ${keys}`);
          },
        },
      ),
    );
  let fixture: Driver | undefined;
  return {
    id: `${backend.name} list`,
    title: `listing ${keys} keys`,
    backend: backend.name,
    setup: async () => {
      fixture = await backend.fixtureDriver();
      const body = Buffer.from('{}');
      const driver = fixture;
      await parallel(keys, 32, async (i) => {
        await driver.write(names[i] as string, body);
      });
    },
    teardown: async () => {
      const driver = fixture;
      if (driver) await parallel(keys, 32, async (i) => void (await driver.delete(names[i] as string)));
      await fixture?.close?.();
    },
    tasks: [blobcore, ...raws],
    checks: raws.map((raw) =>
      ratioCheck(
        backend,
        'raw',
        `${backend.name} list / ${raw.meta.label.replace(' (keys/s)', '')}`,
        blobcore.meta.id,
        raw.meta.id,
        null,
      ),
    ),
  };
}

/** Peak RSS bound of a streamed transfer, per issue: fs 64 MiB; S3/Azure part/block size × concurrency + 64 MiB. */
function rssBound(backend: Backend): number | null {
  if (backend.kind === 'fs' || backend.kind === 'pvc') return 64;
  if (backend.kind === 's3' || backend.kind === 'azure') return 8 * 4 + 64;
  return null;
}

export function rssGroup(backend: Backend, size: number): Group {
  const b = builder(backend);
  const blockSize = 8 * MiB;
  let block: Buffer = Buffer.alloc(0);
  let head: Buffer = Buffer.alloc(0);
  let digest = '';
  // 1 MiB chunks cycling through one 8 MiB block; the first chunk carries a fresh sequence number.
  const source = async function* () {
    for (let at = 0; at < size; at += MiB) {
      const end = Math.min(size, at + MiB);
      yield at === 0 ? head.subarray(0, end) : block.subarray(at % blockSize, (at % blockSize) + (end - at));
    }
  };
  const prepare = () => {
    head = Buffer.from(block.subarray(0, MiB));
    freshen(head, MiB);
    const hash = createHash('sha256');
    for (let at = 0; at < size; at += MiB) {
      const end = Math.min(size, at + MiB);
      hash.update(
        at === 0 ? head.subarray(0, end) : block.subarray(at % blockSize, (at % blockSize) + (end - at)),
      );
    }
    digest = `sha256:${hash.digest('hex')}`;
  };
  const cleanup = async () => {
    await backend.store.delete(digest);
  };
  const common = {
    scenario: 'rss',
    size,
    unit: 'MB/s' as const,
    system: 'blobcore' as const,
    verifies: true,
  };
  const put = b.task(
    { ...common, label: `blobcore put of a ${sizeLabel(size)} stream (peak RSS)`, key: 'put stream' },
    {
      bytes: size,
      prepare,
      fn: async () => {
        const result = await backend.store.put(source(), { expected: digest, size });
        if (result.digest !== digest) throw new Error('put stream: wrong digest');
      },
      afterEach: cleanup,
    },
  );
  const upload = b.task(
    {
      ...common,
      label: `blobcore upload of ${sizeLabel(size)} in 8 MiB chunks (peak RSS)`,
      key: 'upload 8 MiB',
      chunk: blockSize,
    },
    {
      bytes: size,
      prepare,
      fn: async () => {
        const up = await backend.store.uploads.start();
        for (let at = 0; at < size; at += blockSize) {
          const end = Math.min(size, at + blockSize);
          const chunk =
            at === 0 ? Buffer.concat([head, block.subarray(MiB, end - at)]) : block.subarray(0, end - at);
          await up.append(chunk, { offset: at, size: end - at });
        }
        await up.commit({ digest, size });
      },
      afterEach: cleanup,
    },
  );
  const bound = rssBound(backend);
  const rssCheck = (task: BenchTask): CheckSpec => ({
    id: `${task.meta.id} rss`,
    label: `${backend.name} ${task.meta.label.replace(' (peak RSS)', '')}: peak RSS MiB`,
    kind: 'rss',
    backend: backend.name,
    uses: [task.meta.id],
    evaluate(results) {
      const value = results.get(task.meta.id)?.peakRssMiB ?? null;
      return bound === null ? info(value) : atMost(value, bound);
    },
  });
  return {
    id: `${backend.name} rss`,
    title: `peak RSS of ${sizeLabel(size)} transfers`,
    backend: backend.name,
    rounds: 1,
    setup: async () => {
      block = patternBytes(`rss-${backend.name}`, 0, blockSize);
    },
    teardown: async () => {
      block = Buffer.alloc(0);
      head = Buffer.alloc(0);
    },
    tasks: [put, upload],
    checks: [rssCheck(put), rssCheck(upload)],
  };
}

/** All throughput groups for one backend, in run order. */
export async function throughputGroups(backend: Backend, options: ThroughputOptions): Promise<Group[]> {
  const groups: Group[] = [];
  const on = (name: string) => options.scenarios.has(name);
  const largest = Math.max(...options.sizes);
  for (const size of options.sizes) {
    if (on('put')) groups.push(await putGroup(backend, size, size === largest, options));
    if (on('get')) groups.push(await getGroup(backend, size, size === largest, options));
  }
  if (options.uploadSize > 0) {
    if (on('upload')) groups.push(await uploadGroup(backend, options.uploadSize, options));
    if (on('commit')) groups.push(commitGroup(backend, options.uploadSize));
  }
  if (on('dedup')) groups.push(dedupGroup(backend, options));
  if (on('ops')) for (const c of options.concurrency) groups.push(opsGroup(backend, c, options));
  if (on('list') && options.listKeys > 0) groups.push(listGroup(backend, options.listKeys));
  if (on('rss') && options.rssSize > 0 && backend.kind !== 'memory')
    groups.push(rssGroup(backend, options.rssSize));
  return groups;
}

/** Untimed page-cache warm-up for a group: a scratch file as large as its biggest transfer. */
export function warmupFor(backend: Backend, group: Group): (() => Promise<void>) | undefined {
  if (backend.kind === 'memory') return undefined;
  const biggest = Math.max(0, ...group.tasks.map((task) => (task.bytes ?? 0) / (task.ops ?? 1)));
  if (biggest < MiB) return undefined;
  const size = Math.min(biggest, 256 * MiB);
  return () => warmScratch(backend.scratchDir, size);
}

export type { TaskResult };
