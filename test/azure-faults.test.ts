/**
 * Fault injection: a proxy on 127.0.0.1 between the Azure driver and Azurite answers
 * 503 ServerBusy and 500 InternalError, drops connections before and after the server
 * saw the request, delays responses past the client's attempt timeout, and cuts
 * response bodies short, on a fixed schedule (./fixtures/azure-fault-proxy.ts).
 *
 * Through it: a 64 MiB upload in chunks through the store completes and verifies, with
 * exactly one data blob whose committed blocks add up to 64 MiB (nothing duplicated or
 * lost) and nothing left under uploads/; compare-and-swap writes whose response was lost
 * still report success (the driver recognises its own write) instead of a false
 * conflict; ranged reads return exactly their bytes.
 */
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createAzureDriver } from '../drivers/azure/index.js';
import type { Driver } from '../src/driver.js';
import { openStore } from '../src/store.js';
import { FAULTS, FaultProxy } from './fixtures/azure-fault-proxy.js';
import { containerName, useAzurite } from './fixtures/azure-helpers.js';
import { MiB, random } from './helpers.js';

const azurite = await useAzurite();
const proxy = new FaultProxy(new URL(azurite.server.endpoint).origin, { every: 4, delayMs: 1500 });
const proxyOrigin = await proxy.listen();
afterAll(() => proxy.close());

async function faultyDriver(): Promise<{ driver: Driver; container: string }> {
  const container = containerName('faults');
  await azurite.service.createContainer(container);
  const { server } = azurite;
  const driver = createAzureDriver({
    container,
    endpoint: `${proxyOrigin}/${server.accountName}`,
    accountName: server.accountName,
    accountKey: server.accountKey,
    blockSize: 2 * MiB,
    concurrency: 4,
    retry: { maxTries: 6, retryDelayMs: 20, maxRetryDelayMs: 200, requestTimeoutMs: 1000 },
  });
  return { driver, container };
}

async function sha256Of(stream: AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

describe('azure: fault injection between the driver and Azurite', () => {
  it('a 64 MiB chunked upload through the store completes and verifies; nothing duplicated or lost', async () => {
    const { driver, container } = await faultyDriver();
    const size = 64 * MiB;
    const data = Buffer.alloc(size);
    const next = random(0x5eed);
    for (let i = 0; i < size; i += 4) data.writeUInt32LE((next() * 2 ** 32) >>> 0, i);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

    const before = { ...proxy.counts };
    proxy.armed = true;
    try {
      const store = await openStore(driver);
      const upload = await store.uploads.start();
      let offset = 0;
      let chunks = 0;
      while (offset < size) {
        const length = Math.min(size - offset, Math.floor(1 * MiB + next() * 8 * MiB));
        const status = await upload.append(data.subarray(offset, offset + length), { offset });
        offset += length;
        chunks += 1;
        expect(status.offset).toBe(offset);
      }
      const committed = await upload.commit({ digest });
      expect(committed).toMatchObject({ digest, size, deduplicated: false });
      const read = await sha256Of(await store.get(digest, { verify: true }));
      expect(read).toEqual({ digest, size });
      for (const [offset, length] of [
        [0, 1],
        [MiB - 3, 2 * MiB + 7],
        [size - 100, 100],
        [33 * MiB + 1, 5 * MiB],
      ] as const) {
        const part = await sha256Of(await store.get(digest, { offset, length }));
        expect(part.digest).toBe(
          `sha256:${createHash('sha256')
            .update(data.subarray(offset, offset + length))
            .digest('hex')}`,
        );
      }
      console.info(`[azure faults] ${chunks} chunks; proxy counts: ${JSON.stringify(proxy.counts)}`);
    } finally {
      proxy.armed = false;
    }
    for (const fault of FAULTS) expect(proxy.counts[fault] - before[fault], fault).toBeGreaterThan(0);

    // Behind the driver: one data blob of 64 MiB whose committed blocks add up exactly.
    const names: string[] = [];
    for await (const blob of azurite.service.getContainerClient(container).listBlobsFlat())
      names.push(blob.name);
    const dataKeys = names.filter((name) => name.startsWith('data/'));
    expect(dataKeys).toHaveLength(1);
    expect(names.filter((name) => name.startsWith('uploads/'))).toEqual([]);
    const blocks = await azurite.service
      .getContainerClient(container)
      .getBlockBlobClient(dataKeys[0] as string)
      .getBlockList('committed');
    const ids = (blocks.committedBlocks ?? []).map((block) => block.name);
    expect(new Set(ids).size).toBe(ids.length);
    expect((blocks.committedBlocks ?? []).reduce((sum, block) => sum + block.size, 0)).toBe(size);
    await azurite.service.getContainerClient(container).delete();
  }, 300_000);

  it('compare-and-swap and create-only writes whose response was lost still report their success', async () => {
    const { driver, container } = await faultyDriver();
    const before = proxy.counts['lost-response'];
    proxy.armed = true;
    try {
      let etag = (await driver.write('record', Buffer.from('{"v":0}'), { ifNoneMatch: '*' })).etag;
      for (let v = 1; v <= 60; v++) {
        const result = await driver.write('record', Buffer.from(`{"v":${v}}`), { ifMatch: etag });
        expect((await driver.stat('record'))?.etag).toBe(result.etag);
        etag = result.etag;
        await driver.write(`created/${v}`, Buffer.from(String(v)), { ifNoneMatch: '*' });
      }
      const big = Buffer.alloc(9 * MiB + 5, 7); // staged in 2 MiB blocks, committed create-only
      await driver.write('big', big, { ifNoneMatch: '*' });
      expect((await driver.stat('big'))?.size).toBe(big.length);
    } finally {
      proxy.armed = false;
    }
    expect(proxy.counts['lost-response'] - before).toBeGreaterThan(3);
    const record = await driver.read('record');
    const chunks: Buffer[] = [];
    for await (const chunk of record) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('{"v":60}');
    expect((await driver.list('created/')).keys).toHaveLength(60);
    await azurite.service.getContainerClient(container).delete();
  }, 300_000);
});
