/**
 * Measures the Azure driver through the store on Azurite (numbers for the report and
 * the README; nothing is asserted). From the repo root:
 *
 *   node --expose-gc --import ./test/fixtures/ts-loader.mjs scripts/azurite/measure-azure.ts [--json]
 *
 * Best of 3 (each run stores new content):
 *   raw uploadStream / download of 256 MiB   the SDK alone (8 MiB buffers, concurrency 4; body hashed)
 *   store.put 256 MiB                        verified put (hash, then staged 8 MiB blocks)
 *   store.get 256 MiB, verify                streamed read, hashed
 *   upload 256 MiB in 8 MiB chunks           state record at every chunk, then commit
 * Median of 3:
 *   commit latency of 1 MiB and 256 MiB uploads (commit() alone). 256 MiB in 8 MiB chunks
 *   commits 32 staged parts with one Get Block List and one Put Block List, no copy; a
 *   1 MiB upload sits below minPartSize, so its commit writes that 1 MiB tail once.
 * Once: commit latency of a 1 GiB upload, and the peak RSS over the baseline while the
 * driver writes a 1 GiB stream of unknown length (bound: blockSize × concurrency + 64 MiB).
 * Azurite runs on this machine with a temp directory on local disk.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { createAzureDriver, DEFAULT_BLOCK_SIZE, DEFAULT_CONCURRENCY } from '../../drivers/azure/index.js';
import { startAzurite } from '../../servers/azurite.js';
import { openStore } from '../../src/store.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZE = 256 * MiB;
const CHUNK = 8 * MiB;
const RUNS = 5;

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
const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? 0;

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const server = await startAzurite();
  const best: Record<string, number> = {};
  const keep = (name: string, value: number) => {
    best[name] = Math.max(best[name] ?? 0, value);
  };
  const commits: Record<string, number[]> = { '1 MiB': [], '256 MiB': [] };
  try {
    const service = new BlobServiceClient(
      server.endpoint,
      new StorageSharedKeyCredential(server.accountName, server.accountKey),
    );
    const container = service.getContainerClient('measure');
    await container.create();
    const driver = createAzureDriver({
      container: 'measure',
      endpoint: server.endpoint,
      accountName: server.accountName,
      accountKey: server.accountKey,
    });
    const store = await openStore(driver);
    let seed = 1;
    for (let run = 0; run < RUNS; run++) {
      const raw = bytesOf(SIZE, seed++);
      const blob = container.getBlockBlobClient(`raw/${run}`);
      const put = await time(() =>
        blob.uploadStream(Readable.from([raw]), DEFAULT_BLOCK_SIZE, DEFAULT_CONCURRENCY),
      );
      keep('raw uploadStream MB/s', mbps(SIZE, put.ms));
      const get = await time(async () => {
        const response = await blob.download();
        const hash = createHash('sha256');
        for await (const chunk of response.readableStreamBody as AsyncIterable<Buffer>) hash.update(chunk);
        return hash.digest('hex');
      });
      keep('raw download (hashed) MB/s', mbps(SIZE, get.ms));
      await blob.delete();

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
      await store.delete(stored.value.digest);

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
        commits[size === MiB ? '1 MiB' : '256 MiB']?.push(commit.ms);
        if (size === SIZE) keep('upload 8 MiB chunks + commit MB/s', mbps(SIZE, appended.ms + commit.ms));
        await store.delete(digest);
      }
    }
    for (const [label, values] of Object.entries(commits))
      best[`commit ${label} ms (median)`] = median(values);

    // Once: a 1 GiB upload's commit, generated chunk by chunk (no 1 GiB buffer).
    const hash = createHash('sha256');
    const upload = await store.uploads.start();
    const chunk = bytesOf(CHUNK, seed++);
    for (let at = 0; at < GiB; at += CHUNK) {
      chunk.writeUInt32LE(at / CHUNK, 4);
      hash.update(chunk);
      await upload.append(chunk, { offset: at });
    }
    const digest = `sha256:${hash.digest('hex')}`;
    best['commit 1 GiB ms'] = (await time(() => upload.commit({ digest, size: GiB }))).ms;
    await store.delete(digest);

    // Once: peak RSS while the driver writes a 1 GiB stream of unknown length.
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
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
  } finally {
    await server.stop();
  }
  const ratio = (a: string, b: string) => (best[a] ?? 0) / (best[b] ?? 1);
  const ratios = {
    'store.put / raw uploadStream (target ≥ 0.9)': ratio('store.put MB/s', 'raw uploadStream MB/s'),
    'store.get verify / raw download (target ≥ 0.9)': ratio(
      'store.get verify MB/s',
      'raw download (hashed) MB/s',
    ),
    'chunked upload / store.put (target ≥ 0.85)': ratio(
      'upload 8 MiB chunks + commit MB/s',
      'store.put MB/s',
    ),
    'commit 256 MiB / commit 1 MiB': ratio('commit 256 MiB ms (median)', 'commit 1 MiB ms (median)'),
    'peak RSS / (blockSize × concurrency + 64 MiB)':
      (best['write 1 GiB stream: peak RSS over baseline MiB'] ?? 0) /
      ((DEFAULT_BLOCK_SIZE * DEFAULT_CONCURRENCY) / MiB + 64),
  };
  if (json) {
    console.log(JSON.stringify({ server: 'Azurite 3.35.0', results: best, ratios, commits }, null, 2));
    return;
  }
  console.table(Object.entries(best).map(([metric, value]) => ({ metric, value: Number(value.toFixed(1)) })));
  console.table(Object.entries(ratios).map(([ratio, value]) => ({ ratio, value: Number(value.toFixed(2)) })));
  console.log(`commit latencies (ms): ${JSON.stringify(commits)}`);
}

await main();
