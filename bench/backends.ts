/**
 * Backends under test, and the raw I/O each is compared with.
 *
 * A backend is one storage place reachable through a store URL; `openDriver()` gives a fresh
 * driver (own client, own connections) on the same data —
 * what another process would get — which the resume scenario uses. `raw` lists the
 * baselines for the same place, doing the same I/O without blobcore and without hashing:
 *
 *   every backend   the driver itself (`store.driver.write/read`): blobcore's own byte mover
 *   fs, pvc         plain `FileHandle` writes and reads of a file on the same disk, with
 *                   and without fsync (the store's durability decides which one applies)
 *   s3              the AWS SDK alone: PutObject (one request), a multipart upload of
 *                   8 MiB parts, 4 in flight (what `@aws-sdk/lib-storage`'s Upload sends),
 *                   GetObject, ListObjectsV2
 *   azure           the Azure SDK alone: `uploadStream` (8 MiB blocks, 4 in flight),
 *                   `download`, `listBlobsFlat`
 *
 * The local matrix (`--matrix local`) is memory, fs and pvc on temp dirs, s3 on the
 * emulator and azure on Azurite; `--matrix system` adds S3 on a real radosgw.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BlobServiceClient, type ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { Driver } from '../src/driver.js';
import { type BlobStore, openStore } from '../src/store.js';
import { openDriver } from '../src/store-url.js';
import { type RunningServer, startAzurite, startRadosgw, startS3rver } from './servers.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MiB = 1024 * 1024;
/** Part size and parallelism of the raw multipart baselines: the drivers' defaults. */
export const RAW_PART_SIZE = 8 * MiB;
export const RAW_CONCURRENCY = 4;

export type DriverKind = 'memory' | 'fs' | 'pvc' | 's3' | 'azure';

/** One raw baseline. `write`/`read` are absent where that baseline has no such half. */
export interface RawIO {
  /** Which baseline (`driver`, `FileHandle`, `SDK PutObject`…); task labels come from `rawName`. */
  label: string;
  /** What each half is called in tables, when not `<label> <write|read|list>`. */
  names?: { write?: string; read?: string; list?: string };
  /** Shown with ratios: what the baseline is. */
  description: string;
  write?(key: string, bytes: Uint8Array): Promise<void>;
  read?(key: string): Promise<AsyncIterable<Uint8Array>>;
  delete(key: string): Promise<void>;
  /** Keys under `prefix` counted page by page (the listing baseline). */
  list?(prefix: string): Promise<number>;
}

export interface S3Access {
  client: S3Client;
  bucket: string;
  /** Key prefix blobcore uses inside the bucket (raw keys go beside it). */
  prefix: string;
  endpoint: string | undefined;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** Server lacks ListParts etc. (the emulator). */
  emulator: boolean;
}

export interface Backend {
  /** Row label, e.g. `fs`, `s3 (s3rver)`. */
  name: string;
  kind: DriverKind;
  /** Store URL without secrets. */
  url: string;
  /** Server product and version for remote backends. */
  server?: string;
  /** Durability of fs/pvc stores. */
  durability?: string;
  store: BlobStore;
  /** A fresh driver instance (own client, own connections) on the same data. */
  openDriver(): Promise<Driver>;
  /** fs: a store on the same root with durability 'none', the peers' durability (none of them fsyncs). */
  peerStore?: BlobStore;
  /** A driver for writing large fixtures fast (fs/pvc: durability none); same data. */
  fixtureDriver(): Promise<Driver>;
  /** Directory on the disk the data lands on (local backends) or the server's disk: scratch files go here. */
  scratchDir: string;
  /** fs/pvc: the store root. */
  fsRoot?: string;
  raw: RawIO[];
  s3?: S3Access;
  /** Untimed, before every task run: lets the server free what deleted objects still hold. */
  reclaim?: () => Promise<void>;
  close(): Promise<void>;
}

export interface BackendContext {
  /** Temp directory for local stores; removed at the end. */
  workDir: string;
  cleanups: (() => Promise<void>)[];
}

async function consume(stream: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of stream) n += chunk.byteLength;
  return n;
}

function driverRaw(driver: Driver): RawIO {
  return {
    label: 'driver',
    description: 'the driver alone (store.driver.write/read), no hashing',
    async write(key, bytes) {
      await driver.write(`bench-raw/${key}`, bytes, { size: bytes.byteLength });
    },
    read: (key) => driver.read(`bench-raw/${key}`),
    async delete(key) {
      await driver.delete(`bench-raw/${key}`);
    },
    async list(prefix) {
      let count = 0;
      let cursor: string | undefined;
      do {
        const page = await driver.list(prefix, { startAfter: cursor });
        count += page.keys.length;
        cursor = page.cursor;
      } while (cursor !== undefined);
      return count;
    },
  };
}

/** Plain file I/O beside the store on the same disk: the disk's own limit. */
function fileHandleRaw(dir: string, fsync: boolean): RawIO {
  mkdirSync(dir, { recursive: true });
  const path = (key: string) => join(dir, key.replace(/\//g, '_'));
  return {
    label: fsync ? 'FileHandle+fsync' : 'FileHandle',
    description: fsync
      ? 'open, write, fsync, close a file on the same disk'
      : 'open, write, close a file on the same disk (page cache, no fsync); reads into one reused 1 MiB buffer',
    async write(key, bytes) {
      const handle = await open(path(key), 'w');
      try {
        let at = 0;
        while (at < bytes.byteLength) {
          const { bytesWritten } = await handle.write(bytes, at, bytes.byteLength - at, at);
          at += bytesWritten;
        }
        if (fsync) await handle.sync();
      } finally {
        await handle.close();
      }
    },
    ...(fsync
      ? {}
      : {
          async read(key: string) {
            const handle = await open(path(key), 'r');
            return (async function* () {
              try {
                const buffer = Buffer.allocUnsafe(MiB);
                for (;;) {
                  const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
                  if (bytesRead === 0) return;
                  yield buffer.subarray(0, bytesRead);
                }
              } finally {
                await handle.close();
              }
            })();
          },
        }),
    async delete(key) {
      await unlink(path(key)).catch(() => undefined);
    },
  };
}

function s3Raw(access: S3Access): RawIO[] {
  const { client, bucket } = access;
  const key = (name: string) => `bench-raw/${name}`;
  const remove = async (name: string) => {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(name) }));
  };
  const read = async (name: string) => {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key(name) }));
    return out.Body as AsyncIterable<Uint8Array>;
  };
  return [
    {
      label: 'SDK PutObject',
      names: { write: 'SDK PutObject', read: 'SDK GetObject', list: 'SDK ListObjectsV2' },
      description: 'AWS SDK PutObject (one request) / GetObject, no hashing',
      async write(name, bytes) {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key(name),
            Body: bytes,
            ContentLength: bytes.byteLength,
          }),
        );
      },
      read,
      delete: remove,
      async list(prefix) {
        let count = 0;
        let token: string | undefined;
        do {
          const page = await client.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: access.prefix + prefix,
              ContinuationToken: token,
            }),
          );
          count += page.KeyCount ?? page.Contents?.length ?? 0;
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return count;
      },
    },
    {
      label: 'SDK multipart',
      names: { write: `SDK multipart (${RAW_PART_SIZE / MiB} MiB × ${RAW_CONCURRENCY})` },
      description: `AWS SDK multipart upload, ${RAW_PART_SIZE / MiB} MiB parts, ${RAW_CONCURRENCY} in flight (as lib-storage Upload)`,
      async write(name, bytes) {
        if (bytes.byteLength <= RAW_PART_SIZE) {
          await client.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key(name),
              Body: bytes,
              ContentLength: bytes.byteLength,
            }),
          );
          return;
        }
        const { UploadId } = await client.send(
          new CreateMultipartUploadCommand({ Bucket: bucket, Key: key(name) }),
        );
        const count = Math.ceil(bytes.byteLength / RAW_PART_SIZE);
        const parts: { PartNumber: number; ETag: string }[] = [];
        let next = 0;
        const lane = async () => {
          while (next < count) {
            const index = next++;
            const body = bytes.subarray(
              index * RAW_PART_SIZE,
              Math.min(bytes.byteLength, (index + 1) * RAW_PART_SIZE),
            );
            const out = await client.send(
              new UploadPartCommand({
                Bucket: bucket,
                Key: key(name),
                UploadId,
                PartNumber: index + 1,
                Body: body,
                ContentLength: body.byteLength,
              }),
            );
            parts[index] = { PartNumber: index + 1, ETag: out.ETag ?? '' };
          }
        };
        await Promise.all(Array.from({ length: RAW_CONCURRENCY }, lane));
        await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key(name),
            UploadId,
            MultipartUpload: { Parts: parts },
          }),
        );
      },
      delete: remove,
    },
  ];
}

function azureRaw(container: ContainerClient, prefix: string): RawIO {
  const blob = (name: string) => container.getBlockBlobClient(`${prefix}bench-raw/${name}`);
  return {
    label: 'SDK uploadStream',
    names: {
      write: `SDK uploadStream (${RAW_PART_SIZE / MiB} MiB × ${RAW_CONCURRENCY})`,
      read: 'SDK download',
      list: 'SDK listBlobsFlat',
    },
    description: `Azure SDK uploadStream (${RAW_PART_SIZE / MiB} MiB blocks, ${RAW_CONCURRENCY} in flight) / download, no hashing`,
    async write(name, bytes) {
      const chunks = function* () {
        for (let at = 0; at < bytes.byteLength; at += MiB)
          yield bytes.subarray(at, Math.min(bytes.byteLength, at + MiB));
      };
      await blob(name).uploadStream(Readable.from(chunks()), RAW_PART_SIZE, RAW_CONCURRENCY);
    },
    async read(name) {
      const out = await blob(name).download();
      return out.readableStreamBody as unknown as AsyncIterable<Uint8Array>;
    },
    async delete(name) {
      await blob(name).deleteIfExists();
    },
    async list(listPrefix) {
      let count = 0;
      for await (const page of container
        .listBlobsFlat({ prefix: prefix + listPrefix })
        .byPage({ maxPageSize: 5000 })) {
        count += page.segment.blobItems.length;
      }
      return count;
    },
  };
}

function s3Client(
  endpoint: string | undefined,
  region: string,
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined,
): S3Client {
  return new S3Client({
    ...(endpoint ? { endpoint } : {}),
    region,
    forcePathStyle: true,
    ...(credentials ? { credentials } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function bucketName(): string {
  return `blobcore-bench-${randomBytes(4).toString('hex')}`;
}

async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key as string }));
    if (keys.length > 0) {
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/** fs or pvc on a directory. */
async function posixBackend(kind: 'fs' | 'pvc', root: string, url: string, name: string): Promise<Backend> {
  const store = await openStore(url);
  const driver = store.driver as Driver & { durability?: string };
  const durability = driver.durability ?? 'full';
  const scratchDir = join(dirname(root), `${kind}-scratch-${randomBytes(3).toString('hex')}`);
  await mkdir(scratchDir, { recursive: true });
  const fixture = async (): Promise<Driver> =>
    kind === 'fs'
      ? (await import('../drivers/fs/index.js')).createFsDriver({ root, durability: 'none' })
      : (await import('../drivers/pvc/index.js')).createPvcDriver({ root, durability: 'none' });
  const raw: RawIO[] = [driverRaw(store.driver), fileHandleRaw(join(scratchDir, 'raw'), false)];
  if (durability !== 'none') raw.push(fileHandleRaw(join(scratchDir, 'raw-sync'), true));
  const objectPath = (driver as Driver & { objectPath?: (key: string) => string }).objectPath;
  if (objectPath) {
    raw.push({
      label: 'readdir',
      names: { list: 'readdir' },
      description: 'readdir of the directory holding the keys',
      async delete() {},
      async list(prefix) {
        return (await readdir(dirname(objectPath(`${prefix}x`)))).length;
      },
    });
  }
  const peerStore = kind === 'fs' && durability !== 'none' ? await openStore(await fixture()) : undefined;
  return {
    name,
    kind,
    url,
    durability,
    store,
    openDriver: () => openDriver(url),
    ...(peerStore ? { peerStore } : kind === 'fs' ? { peerStore: store } : {}),
    fixtureDriver: fixture,
    scratchDir,
    fsRoot: root,
    raw,
    async close() {
      await store.close();
      await peerStore?.close();
      await rm(scratchDir, { recursive: true, force: true });
    },
  };
}

async function s3Backend(
  server: RunningServer,
  context: BackendContext,
  emulator: boolean,
): Promise<Backend> {
  const region = 'us-east-1';
  const client = s3Client(server.endpoint, region, server.credentials);
  const bucket = bucketName();
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const { createS3Driver } = await import('../drivers/s3/index.js');
  const driverOptions = {
    bucket,
    prefix: 'store/',
    endpoint: server.endpoint,
    region,
    forcePathStyle: true,
    credentials: server.credentials,
    ...(emulator ? { conditionalWrites: false, multipartAbort: false } : {}),
  };
  const store = await openStore(createS3Driver(driverOptions));
  const access: S3Access = {
    client,
    bucket,
    prefix: 'store/',
    endpoint: server.endpoint,
    region,
    credentials: server.credentials,
    emulator,
  };
  const query = emulator ? '&conditionalWrites=false&multipartAbort=false' : '';
  return {
    name: `s3 (${server.name})`,
    kind: 's3',
    url: `s3://${bucket}/store/?endpoint=${encodeURIComponent(server.endpoint)}&forcePathStyle=true${query}`,
    server: `${server.name} ${server.version}`,
    store,
    openDriver: async () => createS3Driver(driverOptions),
    fixtureDriver: async () => createS3Driver(driverOptions),
    scratchDir: context.workDir,
    raw: [driverRaw(store.driver), ...s3Raw(access)],
    s3: access,
    ...(server.reclaim ? { reclaim: () => server.reclaim?.() ?? Promise.resolve() } : {}),
    async close() {
      await store.close();
      await emptyBucket(client, bucket).catch(() => undefined);
      await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
      client.destroy();
    },
  };
}

async function azureBackend(server: RunningServer, context: BackendContext): Promise<Backend> {
  const { createAzureDriver } = await import('../drivers/azure/index.js');
  const service = new BlobServiceClient(
    server.endpoint,
    new StorageSharedKeyCredential(server.credentials.accessKeyId, server.credentials.secretAccessKey),
  );
  const name = `blobcore-bench-${randomBytes(4).toString('hex')}`;
  const container = service.getContainerClient(name);
  await container.create();
  const options = {
    container: name,
    endpoint: server.endpoint,
    accountName: server.credentials.accessKeyId,
    accountKey: server.credentials.secretAccessKey,
  };
  const store = await openStore(createAzureDriver(options));
  return {
    name: `azure (${server.name})`,
    kind: 'azure',
    url: `azure://${name}?endpoint=${encodeURIComponent(server.endpoint)}`,
    server: `${server.name} ${server.version}`,
    store,
    openDriver: async () => createAzureDriver(options),
    fixtureDriver: async () => createAzureDriver(options),
    scratchDir: context.workDir,
    raw: [driverRaw(store.driver), azureRaw(container, '')],
    async close() {
      await store.close();
      await container.deleteIfExists().catch(() => undefined);
    },
  };
}

/** A backend from a store URL given on the command line. */
export async function backendFromUrl(given: string, context: BackendContext): Promise<Backend> {
  // A bare `memory:` is a fresh space per driver; fixtures and fresh store instances
  // must see the same bytes, so name the space.
  const url = /^memory:(\/\/)?$/.test(given) ? `memory://bench-${randomBytes(4).toString('hex')}` : given;
  const parsed = new URL(url);
  const scheme = parsed.protocol.slice(0, -1);
  if (scheme === 'file' || scheme === 'pvc') {
    const root = scheme === 'file' ? fileURLToPath(parsed) : decodeURIComponent(parsed.pathname);
    await mkdir(root, { recursive: true });
    return posixBackend(scheme === 'file' ? 'fs' : 'pvc', root, url, scheme === 'file' ? 'fs' : 'pvc');
  }
  const store = await openStore(url);
  const shown = url.replace(/\/\/[^@/]*@/, '//');
  const base = {
    url: shown,
    store,
    openDriver: () => openDriver(url),
    fixtureDriver: () => openDriver(url),
    scratchDir: context.workDir,
    async close() {
      await store.close();
    },
  };
  if (scheme === 'memory') {
    return { ...base, name: 'memory', kind: 'memory', raw: [driverRaw(store.driver)] };
  }
  if (scheme === 's3') {
    const { parseS3Url } = await import('../drivers/s3/index.js');
    const options = parseS3Url(parsed);
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const client = s3Client(options.endpoint, region, undefined);
    const access: S3Access = {
      client,
      bucket: options.bucket,
      prefix: options.prefix ?? '',
      endpoint: options.endpoint,
      region,
      credentials: undefined,
      emulator: options.conditionalWrites === false,
    };
    return {
      ...base,
      name: 's3',
      kind: 's3',
      raw: [driverRaw(store.driver), ...s3Raw(access)],
      s3: access,
      async close() {
        await store.close();
        client.destroy();
      },
    };
  }
  if (scheme === 'azure') {
    const raw: RawIO[] = [driverRaw(store.driver)];
    const { optionsFromUrl, resolveAuth, Secrets } = await import('../drivers/azure/config.js');
    const options = optionsFromUrl(parsed);
    const auth = resolveAuth(options, new Secrets());
    let service: BlobServiceClient | undefined;
    if (auth.kind === 'shared-key' && auth.accountKey) {
      service = new BlobServiceClient(
        auth.endpoint,
        new StorageSharedKeyCredential(auth.accountName, auth.accountKey),
      );
    } else if (auth.kind === 'sas' && auth.sasToken) {
      service = new BlobServiceClient(`${auth.endpoint}?${auth.sasToken}`);
    }
    if (service) raw.push(azureRaw(service.getContainerClient(options.container), options.prefix ?? ''));
    return { ...base, name: 'azure', kind: 'azure', raw };
  }
  return { ...base, name: scheme, kind: scheme as DriverKind, raw: [driverRaw(store.driver)] };
}

/** The embedded default: a `file:` store in a fresh temp directory. */
export async function defaultBackend(context: BackendContext): Promise<Backend> {
  const root = join(context.workDir, 'fs');
  await mkdir(root, { recursive: true });
  return posixBackend('fs', root, pathToFileURL(root).href, 'fs');
}

/**
 * The local matrix (memory, fs, pvc, s3 on s3rver, azure on Azurite), plus radosgw with
 * `system`. Servers are started here and stopped through `context.cleanups`.
 */
export async function matrixBackends(context: BackendContext, system: boolean): Promise<Backend[]> {
  const backends: Backend[] = [];
  backends.push(await backendFromUrl(`memory://bench-${randomBytes(4).toString('hex')}`, context));
  backends.push(await defaultBackend(context));
  const pvcRoot = join(context.workDir, 'pvc');
  await mkdir(pvcRoot, { recursive: true });
  backends.push(await posixBackend('pvc', pvcRoot, `pvc://${pvcRoot}`, 'pvc'));
  const s3rver = await startS3rver();
  context.cleanups.push(() => s3rver.stop());
  backends.push(await s3Backend(s3rver, context, true));
  const azurite = await startAzurite();
  context.cleanups.push(() => azurite.stop());
  backends.push(await azureBackend(azurite, context));
  if (system) {
    const rgw = await startRadosgw();
    context.cleanups.push(() => rgw.stop());
    backends.push(await s3Backend(rgw, context, false));
  }
  return backends;
}

/** Table name of one half of a raw baseline, e.g. `SDK GetObject`, `driver read`. */
export function rawName(raw: RawIO, op: 'write' | 'read' | 'list'): string {
  return raw.names?.[op] ?? `${raw.label} ${op}`;
}

export async function makeWorkDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'blobcore-bench-'));
}

/** Writes and deletes a scratch file of `size` bytes in `dir`: the next fresh pages come warm. */
export async function warmScratch(dir: string, size: number): Promise<void> {
  const path = join(dir, `.warm-${randomBytes(4).toString('hex')}`);
  const handle = await open(path, 'w');
  try {
    const block = Buffer.alloc(Math.min(size, 8 * MiB), 1);
    for (let at = 0; at < size; at += block.length)
      await handle.write(block, 0, Math.min(block.length, size - at));
  } finally {
    await handle.close();
    await unlink(path).catch(() => undefined);
  }
}

export { consume };

/** sha256 of bytes as an OCI digest. */
export function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
