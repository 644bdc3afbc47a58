/**
 * The fs driver's streaming paths: background syncs of a durable write (FileSink) and
 * the read-ahead of a read stream. Throughput is measured in bench/; these tests pin the
 * behaviour those speed-ups must keep: the bytes, the order, and every failure surfaced.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, truncateSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createFsDriver } from '../drivers/fs/index.js';
import { FileSink, READ_CHUNK_BYTES, STREAM_CHUNK_BYTES, writeBody } from '../drivers/fs/sys.js';
import { collectBody } from '../src/bytes.js';
import { MiB, rejectsCode } from './fixtures/fs-harness/helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'blobcore-fs-streaming-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A FileHandle stand-in recording writes and syncs; `datasync` can be made to fail, or to
 * wait until the test lets it end (`gate`).
 */
function fakeHandle(options: { failSync?: boolean; gate?: () => Promise<void> } = {}) {
  const file = Buffer.alloc(64 * MiB);
  const events: string[] = [];
  let size = 0;
  const put = (chunk: Uint8Array, at: number) => {
    file.set(chunk, at);
    size = Math.max(size, at + chunk.byteLength);
  };
  const handle = {
    async write(chunk: Uint8Array, offset: number, length: number, at: number) {
      put(chunk.subarray(offset, offset + length), at);
      events.push(`write ${at}`);
      return { bytesWritten: length };
    },
    async writev(chunks: Uint8Array[], at: number) {
      let bytes = 0;
      for (const chunk of chunks) {
        put(chunk, at + bytes);
        bytes += chunk.byteLength;
      }
      events.push(`write ${at}`);
      return { bytesWritten: bytes };
    },
    async datasync() {
      events.push(`sync ${size}`);
      await options.gate?.();
      if (options.failSync) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    },
  };
  return { handle: handle as unknown as FileHandle, events, bytes: () => file.subarray(0, size) };
}

describe('FileSink background syncs', () => {
  it('a durable write syncs as it grows, one sync at a time, and the bytes land in order', async () => {
    const fake = fakeHandle();
    const body = randomBytes(40 * MiB);
    const written = await writeBody(new FileSink(fake.handle, 0, undefined, 8 * MiB), body, undefined);
    expect(written).toBe(body.byteLength);
    expect(fake.bytes().equals(body)).toBe(true);
    const syncs = fake.events.filter((e) => e.startsWith('sync'));
    expect(syncs.length).toBeGreaterThanOrEqual(3); // 40 MiB in 8 MiB steps, none overlapping
    // Each sync starts once at least another step has been written since the last one.
    const points = syncs.map((e) => Number(e.split(' ')[1]));
    for (let i = 1; i < points.length; i++) {
      expect((points[i] as number) - (points[i - 1] as number)).toBeGreaterThanOrEqual(8 * MiB);
    }
  });

  it('without a step (durability none) it never syncs', async () => {
    const fake = fakeHandle();
    await writeBody(new FileSink(fake.handle, 0), randomBytes(20 * MiB), undefined);
    expect(fake.events.some((e) => e.startsWith('sync'))).toBe(false);
  });

  it('a failed background sync fails the write', async () => {
    const fake = fakeHandle({ failSync: true });
    const sink = new FileSink(fake.handle, 0, undefined, 4 * MiB);
    await expect(writeBody(sink, randomBytes(16 * MiB), undefined)).rejects.toMatchObject({ code: 'EIO' });
  });

  it('a sync starts as soon as a write lands, not when the next batch is written', async () => {
    const fake = fakeHandle();
    const sink = new FileSink(fake.handle, 0, undefined, MiB);
    await sink.add(randomBytes(MiB)); // one batch: its write starts
    await nextTurn();
    expect(fake.events).toEqual(['write 0', `sync ${MiB}`]); // nothing more was added
    expect(await sink.finish()).toBe(MiB);
  });

  it('a sync that ends starts the next when enough has landed meanwhile, before finish()', async () => {
    let open: () => void = () => {};
    const gates: Promise<void>[] = [];
    const fake = fakeHandle({
      gate: () => {
        const gate = new Promise<void>((resolve) => {
          open = resolve;
        });
        gates.push(gate);
        return gate;
      },
    });
    const sink = new FileSink(fake.handle, 0, undefined, MiB);
    for (let i = 0; i < 4; i++) await sink.add(randomBytes(MiB));
    await nextTurn();
    expect(fake.events.filter((e) => e.startsWith('sync'))).toEqual([`sync ${MiB}`]); // one at a time
    open();
    await nextTurn();
    expect(fake.events.filter((e) => e.startsWith('sync'))).toEqual([`sync ${MiB}`, `sync ${4 * MiB}`]);
    const finished = sink.finish();
    open();
    expect(await finished).toBe(4 * MiB);
    expect(gates).toHaveLength(2);
  });

  it('after a failed sync, finish() rejects and settle() returns', async () => {
    const fake = fakeHandle({ failSync: true });
    const sink = new FileSink(fake.handle, 0, undefined, MiB);
    await sink.add(randomBytes(2 * MiB));
    await nextTurn();
    await sink.settle();
    await expect(sink.finish()).rejects.toMatchObject({ code: 'EIO' });
  });
});

describe('fs read stream read-ahead', () => {
  const driver = createFsDriver({ root: join(scratch, 'store'), durability: 'none' });

  it('returns the exact bytes of a multi-chunk object, and of ranges across chunk edges', async () => {
    const body = randomBytes(5 * MiB + 123);
    await driver.write('ra/whole', body);
    const whole = Buffer.concat(await (await driver.read('ra/whole')).toArray());
    expect(createHash('sha256').update(whole).digest('hex')).toBe(
      createHash('sha256').update(body).digest('hex'),
    );
    const edge = STREAM_CHUNK_BYTES;
    const range = Buffer.concat(
      await (await driver.read('ra/whole', { offset: edge - 7, length: 2 * edge + 14 })).toArray(),
    );
    expect(range.equals(body.subarray(edge - 7, 3 * edge + 7))).toBe(true);
  });

  it('an object that shrinks while read fails the stream with UNAVAILABLE, never a short clean end', async () => {
    await driver.write('ra/shrinks', randomBytes(3 * STREAM_CHUNK_BYTES));
    const stream = await driver.read('ra/shrinks');
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect((first.value as Buffer).byteLength).toBe(STREAM_CHUNK_BYTES);
    truncateSync(join(scratch, 'store/v1/objects/ra,/shrinks'), 10);
    const drained = (async () => {
      for (;;) if ((await iterator.next()).done) return;
    })();
    await rejectsCode(drained, 'UNAVAILABLE');
  });

  it('destroying a stream with a read ahead in flight closes the file and raises nothing', async () => {
    await driver.write('ra/dropped', randomBytes(4 * MiB));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let i = 0; i < 20; i++) {
        const stream = await driver.read('ra/dropped');
        await new Promise<void>((resolve) => stream.once('data', () => resolve()));
        const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
        stream.destroy();
        await closed;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(await driver.delete('ra/dropped')).toBe(true);
  });
});

describe('fs small reads', () => {
  const driver = createFsDriver({ root: join(scratch, 'small'), durability: 'none' });

  it('reads objects up to one chunk whole, and those just past it through the stream, byte for byte', async () => {
    for (const size of [
      0,
      1,
      4096,
      16 * 1024 - 1,
      16 * 1024,
      16 * 1024 + 1,
      READ_CHUNK_BYTES,
      READ_CHUNK_BYTES + 1,
    ]) {
      const body = randomBytes(size);
      await driver.write(`small/${size}`, body);
      const read = await collectBody(await driver.read(`small/${size}`));
      expect(read.equals(body), `${size} bytes`).toBe(true);
      const tail = await collectBody(await driver.read(`small/${size}`, { offset: size, length: 5 }));
      expect(tail.byteLength).toBe(0);
    }
    // A prefix of other keys is not an object.
    await rejectsCode(driver.read('small'), 'NOT_FOUND');
  });

  it('collecting a stream that closes before its end fails with UNAVAILABLE, not a short buffer', async () => {
    const stream = new Readable({ read() {} });
    stream.push(Buffer.from('partial'));
    const collected = collectBody(stream);
    setImmediate(() => stream.destroy());
    await rejectsCode(collected, 'UNAVAILABLE');
  });
});
