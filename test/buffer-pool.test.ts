/**
 * Recycled read buffers (src/buffer-pool.ts, native/buffer-pool.c): a slab is reused only
 * after V8 has collected every Buffer over it, so bytes a consumer still holds are never
 * overwritten, and the pool keeps no more idle memory than it was given.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { createFsDriver } from '../drivers/fs/index.js';
import { STREAM_CHUNK_BYTES } from '../drivers/fs/sys.js';
import { BufferPool } from '../src/buffer-pool.js';

const scratch = mkdtempSync(join(tmpdir(), 'blobcore-buffer-pool-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects garbage until `done()` holds (finalizers run on later turns, maybe in batches). */
async function collectUntil(done: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 100 && !done(); attempt++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('BufferPool', () => {
  it('is backed by the native addon here (npm ci builds it)', () => {
    expect(new BufferPool(4096, 4096).recycling).toBe(true);
  });

  it('hands out slabs of its size, takes them back once collected, and keeps at most maxIdle', async () => {
    const pool = new BufferPool(64 * 1024, 4 * 64 * 1024);
    let taken: Buffer[] | undefined = Array.from({ length: 10 }, () => pool.take());
    expect(taken.map((buffer) => buffer.byteLength)).toEqual(Array(10).fill(64 * 1024));
    expect(pool.stats()).toEqual({ idle: 0, lent: 10, recycling: true });
    taken = undefined;
    await collectUntil(() => pool.stats().lent === 0);
    expect(pool.stats()).toEqual({ idle: 4, lent: 0, recycling: true });
    pool.take();
    expect(pool.stats().idle).toBe(3);
    expect(pool.trim()).toBe(3);
    expect(pool.stats().idle).toBe(0);
  });

  it('never reuses a slab a Buffer or a view of it still reaches', async () => {
    const pool = new BufferPool(64 * 1024, 64 * 64 * 1024);
    const kept = pool.take().fill(0xaa);
    const view = pool.take().fill(0xbb).subarray(100, 200); // only a view survives
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 32; i++) pool.take().fill(round);
      await collectUntil(() => pool.stats().lent === 2);
    }
    expect(pool.stats().idle).toBeGreaterThanOrEqual(32); // recycling did happen meanwhile
    expect(kept.every((byte) => byte === 0xaa)).toBe(true);
    expect(view.every((byte) => byte === 0xbb)).toBe(true);
    expect(pool.stats().lent).toBe(2);
  });

  it('falls back to plain Buffers without the addon', () => {
    const pool = new BufferPool(1000, 10_000, false);
    const buffer = pool.take();
    expect(buffer.byteLength).toBe(1000);
    expect(pool.stats()).toEqual({ idle: 0, lent: 0, recycling: false });
    expect(pool.trim()).toBe(0);
  });
});

describe('fs read streams over recycled buffers', () => {
  it('chunks a consumer keeps stay intact while later reads recycle memory', async () => {
    const driver = createFsDriver({ root: join(scratch, 'fs'), durability: 'none' });
    const first = randomBytes(4 * STREAM_CHUNK_BYTES + 5);
    const other = randomBytes(4 * STREAM_CHUNK_BYTES);
    await driver.write('keep/first', first);
    await driver.write('keep/other', other);
    const kept = await (await driver.read('keep/first')).toArray();
    for (let round = 0; round < 10; round++) {
      const again = Buffer.concat(await (await driver.read('keep/other')).toArray());
      expect(again.equals(other)).toBe(true);
      gc();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(kept.map((chunk: Buffer) => chunk.byteLength)).toEqual([
      STREAM_CHUNK_BYTES,
      STREAM_CHUNK_BYTES,
      STREAM_CHUNK_BYTES,
      STREAM_CHUNK_BYTES,
      5,
    ]);
    expect(Buffer.concat(kept).equals(first)).toBe(true);
  });
});
