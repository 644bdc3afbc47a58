/**
 * Measures the S3 driver through the store on radosgw and on s3rver (numbers for the
 * README; nothing is asserted). Run as root from the repo root:
 *
 *   node --import ./test/fixtures/ts-loader.mjs scripts/ceph-rgw/measure-s3.ts [--json]
 *
 * Per server, best of 3 (each run stores new content):
 *   raw PutObject / GetObject of 256 MiB     the SDK alone, one request each
 *   store.put 256 MiB                        verified put (hash while writing)
 *   store.get 256 MiB, verify                streamed read, hashed
 *   upload 256 MiB in 8 MiB chunks           state record at every chunk, then commit
 *   commit latency, 1 MiB and 256 MiB        commit() alone (O(1): no copy of the data)
 * and once: commit latency of a 1 GiB upload, and the peak RSS over the baseline while
 * the driver writes a 1 GiB stream of unknown length (bound: partSize × concurrency).
 * The servers run on this machine (radosgw: memstore OSD in RAM; s3rver: a temp dir).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Driver, type S3DriverOptions } from '../../drivers/s3/index.js';
import { startS3rver } from '../../servers/s3rver.js';
import { openStore } from '../../src/store.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const CHUNK = 8 * MiB;
const RUNS = 3;
const here = fileURLToPath(new URL('.', import.meta.url));

interface Server {
  name: string;
  options: Omit<S3DriverOptions, 'bucket'>;
  stop(): Promise<void> | void;
}

function bytesOf(size: number, seed: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) buffer.writeUInt32LE((Math.imul(i, 2654435761) ^ seed) >>> 0, i);
  buffer.writeUInt32LE(seed, 0);
  return buffer;
}

async function time<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await work();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

async function measure(server: Server) {
  const client = new S3Client({
    ...(server.options.endpoint ? { endpoint: server.options.endpoint } : {}),
    region: server.options.region ?? 'us-east-1',
    forcePathStyle: true,
    ...(server.options.credentials ? { credentials: server.options.credentials } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const bucket = `bench-${Date.now().toString(36)}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const driver = createS3Driver({ ...server.options, bucket });
  const store = await openStore(driver);
  const best: Record<string, number> = {};
  const keep = (name: string, value: number, higher = true) => {
    const old = best[name];
    if (old === undefined || (higher ? value > old : value < old)) best[name] = value;
  };
  let seed = 1;
  for (let run = 0; run < RUNS; run++) {
    const raw = bytesOf(SIZE, seed++);
    const put = await time(() =>
      client.send(
        new PutObjectCommand({ Bucket: bucket, Key: `raw/${run}`, Body: raw, ContentLength: SIZE }),
      ),
    );
    keep('raw PutObject MB/s', mbps(SIZE, put.ms));
    const get = await time(async () => {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `raw/${run}` }));
      const hash = createHash('sha256');
      for await (const chunk of out.Body as AsyncIterable<Buffer>) hash.update(chunk);
      return hash.digest('hex');
    });
    keep('raw GetObject (hashed) MB/s', mbps(SIZE, get.ms));

    const data = bytesOf(SIZE, seed++);
    const stored = await time(() => store.put(data, { size: SIZE }));
    keep('store.put MB/s', mbps(SIZE, stored.ms));
    const read = await time(async () => {
      let n = 0;
      for await (const chunk of await store.get(stored.value.digest, { verify: true }))
        n += (chunk as Buffer).length;
      return n;
    });
    keep('store.get verify MB/s', mbps(SIZE, read.ms));

    for (const size of [MiB, SIZE]) {
      const content = bytesOf(size, seed++);
      const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
      const upload = await store.uploads.start();
      const appended = await time(async () => {
        for (let at = 0; at < size; at += CHUNK) {
          await upload.append(content.subarray(at, Math.min(at + CHUNK, size)), { offset: at });
        }
      });
      const commit = await time(() => upload.commit({ digest, size }));
      const label = size === MiB ? '1 MiB' : '256 MiB';
      keep(`commit ${label} ms`, commit.ms, false);
      if (size === SIZE) keep('upload 8 MiB chunks + commit MB/s', mbps(SIZE, appended.ms + commit.ms));
      await store.delete(digest);
    }
    await store.delete(stored.value.digest);
  }

  // Once: a 1 GiB upload's commit, generated chunk by chunk (no 1 GiB buffer).
  const GiB = 1024 * MiB;
  const hash = createHash('sha256');
  const upload = await store.uploads.start();
  const chunk = bytesOf(CHUNK, seed++);
  for (let at = 0; at < GiB; at += CHUNK) {
    chunk.writeUInt32LE(at / CHUNK, 4);
    hash.update(chunk);
    await upload.append(chunk, { offset: at });
  }
  const digest = `sha256:${hash.digest('hex')}`;
  const commit = await time(() => upload.commit({ digest, size: GiB }));
  best['commit 1 GiB ms'] = commit.ms;
  await store.delete(digest);

  // Once: peak RSS while writing a 1 GiB stream of unknown length straight through the driver.
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const piece = bytesOf(MiB, seed++);
  async function* body() {
    for (let i = 0; i < 1024; i++) {
      const copy = Buffer.from(piece); // a fresh buffer per chunk, as a network source gives
      copy.writeUInt32LE(i, 4);
      yield copy;
    }
  }
  const streamed = await time(() => driver.write('rss/1g', body()));
  clearInterval(sampler);
  best['write 1 GiB stream MB/s'] = mbps(GiB, streamed.ms);
  best['write 1 GiB stream: peak RSS over baseline MiB'] = (peak - baseline) / MiB;
  await driver.delete('rss/1g');
  await store.close();
  client.destroy();
  return best;
}

async function main() {
  const json = process.argv.includes('--json');
  const servers: Server[] = [];
  const rgwDir = mkdtempSync('/tmp/bc-rgw-bench-');
  rmdirSync(rgwDir);
  const port = 17480 + Math.floor(Math.random() * 1000) * 2;
  const env = Object.fromEntries(
    execFileSync('bash', [`${here}start.sh`, rgwDir, String(port)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  ) as Record<string, string>;
  servers.push({
    name: 'radosgw 16.2',
    options: {
      endpoint: env.S3_ENDPOINT,
      region: env.S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: env.S3_ACCESS_KEY ?? '', secretAccessKey: env.S3_SECRET_KEY ?? '' },
    },
    stop: () => void execFileSync('bash', [`${here}stop.sh`, rgwDir], { stdio: 'ignore' }),
  });
  const s3rver = await startS3rver();
  servers.push({
    name: 's3rver 4.0.4',
    options: {
      endpoint: s3rver.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      conditionalWrites: false,
      multipartAbort: false,
    },
    stop: () => s3rver.stop(),
  });
  const results: Record<string, Record<string, number>> = {};
  try {
    for (const server of servers) results[server.name] = await measure(server);
  } finally {
    for (const server of servers) await server.stop();
  }
  const rows = Object.keys(Object.values(results)[0] ?? {}).map((metric) => ({
    metric,
    ...Object.fromEntries(
      Object.entries(results).map(([name, r]) => [name, Number((r[metric] ?? 0).toFixed(1))]),
    ),
  }));
  if (json) console.log(JSON.stringify(results, null, 2));
  else console.table(rows);
  for (const [name, r] of Object.entries(results)) {
    const ratio = (a: string, b: string) => ((r[a] ?? 0) / (r[b] ?? 1)).toFixed(2);
    console.log(
      `${name}: put ${ratio('store.put MB/s', 'raw PutObject MB/s')}× raw PUT, ` +
        `get ${ratio('store.get verify MB/s', 'raw GetObject (hashed) MB/s')}× raw GET, ` +
        `chunked upload ${ratio('upload 8 MiB chunks + commit MB/s', 'store.put MB/s')}× put, ` +
        `commit 256 MiB / 1 MiB = ${ratio('commit 256 MiB ms', 'commit 1 MiB ms')}`,
    );
  }
}

await main();
