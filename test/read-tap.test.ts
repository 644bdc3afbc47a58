/**
 * Read taps: the native reads (native/read-into.c) that hash on their thread-pool worker
 * (native/byte-tap.h, the SHA-256 tap in native/sha256.c), the digest tap the store picks
 * (src/hash/digest-tap.ts), and verified fs gets that use them.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createFsDriver } from '../drivers/fs/index.js';
import { STREAM_CHUNK_BYTES, Sys } from '../drivers/fs/sys.js';
import { type BuffersBinding, loadBuffersBinding } from '../src/buffers-addon.js';
import { collectBody } from '../src/bytes.js';
import type { Driver, ReadOptions } from '../src/driver.js';
import { createDigestTap } from '../src/hash/digest-tap.js';
import { loadNativeBinding, packageRoot } from '../src/hash/native.js';
import { openStore } from '../src/store.js';
import { openPaths } from './fixtures/fs-harness/helpers.js';
import { codeOf, MiB } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'blobcore-read-tap-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
afterEach(() => vi.unstubAllEnvs());

const sha = loadNativeBinding();
const reads = loadBuffersBinding() as BuffersBinding;
const hex = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function fileOf(bytes: Uint8Array): { fd: number; close: () => void } {
  const path = join(scratch, `file-${randomBytes(4).toString('hex')}`);
  writeFileSync(path, bytes);
  const fd = openSync(path, 'r');
  return { fd, close: () => closeSync(fd) };
}

describe('readInto and the SHA-256 tap', () => {
  it('are built here (npm ci builds both addons)', () => {
    expect(typeof reads.readInto).toBe('function');
    expect(typeof sha.createTap).toBe('function');
  });

  it('feeds a tap in call order, with more reads queued at once than the pool has threads', async () => {
    const bytes = randomBytes(12 * MiB + 12345);
    const { fd, close } = fileOf(bytes);
    try {
      const tap = sha.createTap();
      const chunk = 700 * 1024; // not a multiple of the 256 KiB feeding step
      const buffers: Buffer[] = [];
      const pending: Promise<number>[] = [];
      for (let at = 0; at < bytes.length; at += chunk) {
        const buffer = Buffer.allocUnsafe(Math.min(chunk, bytes.length - at));
        buffers.push(buffer);
        pending.push(reads.readInto(fd, buffer, at, tap));
      }
      expect(pending.length).toBeGreaterThan(8);
      const counts = await Promise.all(pending);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(bytes.length);
      expect(Buffer.concat(buffers).equals(bytes)).toBe(true);
      expect(sha.tapDigest(tap)).toBe(hex(bytes));
      // Bytes fed on the JS thread afterwards follow the read ones.
      sha.tapUpdate(tap, Buffer.from('tail'));
      expect(sha.tapDigest(tap)).toBe(hex(Buffer.concat([bytes, Buffer.from('tail')])));
    } finally {
      close();
    }
  });

  it('reads short only at the end of the file, and feeds just the bytes read', async () => {
    const bytes = randomBytes(300 * 1024);
    const { fd, close } = fileOf(bytes);
    try {
      const tap = sha.createTap();
      const buffer = Buffer.alloc(MiB);
      expect(await reads.readInto(fd, buffer, 1000, tap)).toBe(bytes.length - 1000);
      expect(buffer.subarray(0, bytes.length - 1000).equals(bytes.subarray(1000))).toBe(true);
      expect(sha.tapDigest(tap)).toBe(hex(bytes.subarray(1000)));
      expect(await reads.readInto(fd, buffer, bytes.length + 5)).toBe(0);
    } finally {
      close();
    }
  });

  it('refuses the digest after a failed read; later reads still get their turn', async () => {
    const bytes = randomBytes(4 * MiB);
    const { fd, close } = fileOf(bytes);
    try {
      const tap = sha.createTap();
      const first = reads.readInto(fd, Buffer.allocUnsafe(2 * MiB), 0, tap);
      // The rejection is handled from the start: it may settle before `first` does.
      const failing = reads.readInto(1 << 30, Buffer.allocUnsafe(MiB), 0, tap).then(
        () => undefined,
        (caught: unknown) => caught as NodeJS.ErrnoException,
      );
      const after = reads.readInto(fd, Buffer.allocUnsafe(MiB), 2 * MiB, tap);
      expect(await first).toBe(2 * MiB);
      const error = await failing;
      expect(error).toMatchObject({ code: 'EBADF', syscall: 'read', errno: -9 });
      expect(await after).toBe(MiB); // its turn came: no deadlock behind the failed read
      expect(() => sha.tapDigest(tap)).toThrow(/missed bytes/);
    } finally {
      close();
    }
  });

  it('with one pool thread (busy): refuses the digest while reads wait, then feeds them in call order', () => {
    // A child with UV_THREADPOOL_SIZE=1 whose one thread is held by a read of an empty FIFO,
    // so the tapped reads are certainly still queued when the digest is asked for.
    const fifo = join(scratch, `fifo-${randomBytes(4).toString('hex')}`);
    execFileSync('mkfifo', [fifo]);
    const file = join(scratch, `pool1-${randomBytes(4).toString('hex')}`);
    const bytes = randomBytes(5 * MiB + 3);
    writeFileSync(file, bytes);
    const child = `
      import { createRequire } from 'node:module';
      import * as fs from 'node:fs';
      const require = createRequire(process.env.ROOT + '/');
      const sha = require('./build/Release/blobcore_sha256.node');
      const reads = require('./build/Release/blobcore_buffers.node');
      const fifo = fs.openSync(process.env.FIFO, 'r+');
      const held = new Promise((done) => fs.read(fifo, Buffer.alloc(1), 0, 1, null, done));
      const fd = fs.openSync(process.env.FILE, 'r');
      const tap = sha.createTap();
      const size = fs.fstatSync(fd).size, chunk = 700 * 1024, buffers = [], pending = [];
      for (let at = 0; at < size; at += chunk) {
        const buffer = Buffer.alloc(Math.min(chunk, size - at));
        buffers.push(buffer);
        pending.push(reads.readInto(fd, buffer, at, tap));
      }
      let refused = false;
      try { sha.tapDigest(tap); } catch { refused = true; }
      fs.writeSync(fifo, 'x');
      await held;
      await Promise.all(pending);
      console.log(JSON.stringify({ refused, digest: sha.tapDigest(tap), same: Buffer.concat(buffers).equals(fs.readFileSync(process.env.FILE)) }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', child], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '1', ROOT: packageRoot(), FIFO: fifo, FILE: file },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(JSON.parse(out)).toEqual({ refused: true, digest: hex(bytes), same: true });
  });

  it('rejects arguments that are not what they claim with TypeErrors', () => {
    const pool = reads.createPool(4096, 1);
    const buffer = Buffer.alloc(16);
    expect(() => reads.readInto(0, buffer, 0, pool)).toThrow(/expected a tap/);
    expect(() => reads.readInto(0, buffer, 0, {})).toThrow(/expected a tap/);
    expect(() => sha.tapUpdate(pool, buffer)).toThrow(/expected a tap/);
    expect(() => reads.readInto(-1, buffer, 0)).toThrow(/descriptor/);
    expect(() => reads.readInto(0, buffer, -1)).toThrow(/position/);
    expect(() => reads.readInto(0, new Uint16Array(4) as unknown as Uint8Array, 0)).toThrow(/Uint8Array/);
  });
});

describe('createDigestTap', () => {
  it('is native for sha256 by default, node:crypto for sha512, under BLOBCORE_HASH=wasm and when the selection fails', () => {
    const body = randomBytes(1000);
    const native = createDigestTap('sha256');
    expect(native.native).toBeDefined();
    native.update(body);
    expect(native.digest()).toBe(hex(body));

    const sha512 = createDigestTap('sha512');
    expect(sha512.native).toBeUndefined();
    sha512.update(body);
    expect(sha512.digest()).toBe(`sha512:${createHash('sha512').update(body).digest('hex')}`);

    vi.stubEnv('BLOBCORE_HASH', 'wasm');
    const plain = createDigestTap('sha256');
    expect(plain.native).toBeUndefined();
    plain.update(body);
    expect(plain.digest()).toBe(hex(body));

    // A selection that fails is the resumable hasher's error; a verified get still works.
    vi.stubEnv('BLOBCORE_HASH', 'bogus');
    const fallback = createDigestTap('sha256');
    expect(fallback.native).toBeUndefined();
    fallback.update(body);
    expect(fallback.digest()).toBe(hex(body));
  });
});

describe('fs read streams fed to a native tap', () => {
  const root = () => mkdtempSync(join(scratch, 'driver-'));
  const objectPath = (at: string, key: string) => join(at, 'v1/objects', `${key.replace('/', ',/')}`);

  /** Descriptors of this process open on `path`. */
  const descriptorsOn = (path: string) => openPaths().filter((open) => open === path).length;

  it('fail with UNAVAILABLE, never a short clean end, when the object shrinks mid-read', async () => {
    const at = root();
    const driver = createFsDriver({ root: at });
    await driver.write('fed/shrinks', randomBytes(6 * STREAM_CHUNK_BYTES));
    const tap = createDigestTap('sha256');
    const stream = await driver.read('fed/shrinks', { tap });
    const iterator = stream[Symbol.asyncIterator]();
    expect(((await iterator.next()).value as Buffer).byteLength).toBe(STREAM_CHUNK_BYTES);
    truncateSync(objectPath(at, 'fed/shrinks'), 10);
    const drained = (async () => {
      for (;;) if ((await iterator.next()).done) return;
    })();
    expect(await codeOf(drained)).toBe('UNAVAILABLE');
  });

  it('close their file when destroyed with two reads in flight, raising nothing', async () => {
    const at = root();
    const driver = createFsDriver({ root: at });
    await driver.write('fed/dropped', randomBytes(8 * STREAM_CHUNK_BYTES));
    const path = objectPath(at, 'fed/dropped');
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let i = 0; i < 10; i++) {
        const stream = await driver.read('fed/dropped', { tap: createDigestTap('sha256') });
        await new Promise<void>((resolve) => stream.once('data', () => resolve()));
        const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
        stream.destroy();
        await closed;
        expect(descriptorsOn(path), 'no descriptor left on the object').toBe(0);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('fs read streams fed to a native tap: descriptors and ranges', () => {
  it('close the file only after every read in flight has returned (destroyed mid-stream, or aborted)', async () => {
    const pending = new Map<number, number>(); // fd → fed reads not yet settled
    const atClose: number[] = [];
    const readFeeding = Sys.prototype.readFeeding;
    const closeFd = Sys.prototype.closeFd;
    const feeding = vi.spyOn(Sys.prototype, 'readFeeding').mockImplementation(function (
      this: Sys,
      fd,
      ...rest
    ) {
      pending.set(fd, (pending.get(fd) ?? 0) + 1);
      const done = () => pending.set(fd, (pending.get(fd) ?? 1) - 1);
      const read = readFeeding.call(this, fd, ...rest);
      read.then(done, done);
      return read;
    });
    const closing = vi.spyOn(Sys.prototype, 'closeFd').mockImplementation(function (this: Sys, fd) {
      if (pending.has(fd)) atClose.push(pending.get(fd) ?? 0);
      return closeFd.call(this, fd);
    });
    try {
      const driver = createFsDriver({ root: mkdtempSync(join(scratch, 'order-')) });
      await driver.write('fed/order', randomBytes(8 * STREAM_CHUNK_BYTES));
      for (let i = 0; i < 6; i++) {
        const controller = new AbortController();
        const stream = await driver.read('fed/order', {
          tap: createDigestTap('sha256'),
          signal: controller.signal,
        });
        stream.on('error', () => {}); // ABORTED, expected
        await new Promise<void>((resolve) => stream.once('data', () => resolve()));
        const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
        if (i % 2 === 0) stream.destroy();
        else controller.abort();
        await closed;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(atClose).toHaveLength(6);
      expect(atClose, 'fed reads still pending when their descriptor was closed').toEqual([0, 0, 0, 0, 0, 0]);
    } finally {
      feeding.mockRestore();
      closing.mockRestore();
    }
  });

  it('an aborted verified get fails ABORTED', async () => {
    const store = await openStore(createFsDriver({ root: mkdtempSync(join(scratch, 'abort-')) }));
    const { digest } = await store.put(randomBytes(8 * STREAM_CHUNK_BYTES));
    const controller = new AbortController();
    const stream = await store.get(digest, { verify: true, signal: controller.signal });
    const drained = (async () => {
      for await (const _ of stream) controller.abort();
    })();
    expect(await codeOf(drained)).toBe('ABORTED');
  });

  it('feed a native tap exactly the requested range', async () => {
    const driver = createFsDriver({ root: mkdtempSync(join(scratch, 'range-')) });
    const bytes = randomBytes(5 * STREAM_CHUNK_BYTES + 99);
    await driver.write('fed/range', bytes);
    for (const [offset, length] of [
      [STREAM_CHUNK_BYTES - 5, 2 * STREAM_CHUNK_BYTES + 10],
      [300 * 1024, 100],
      [bytes.length - 7, 100],
    ] as const) {
      const tap = createDigestTap('sha256');
      const got = await collectBody(await driver.read('fed/range', { offset, length, tap }));
      const expected = bytes.subarray(offset, offset + length);
      expect(got.equals(expected)).toBe(true);
      expect(tap.digest(), `${offset}+${length}`).toBe(hex(expected));
    }
  });
});

/** A driver that records the tap each read was given. */
function recordingTaps(inner: Driver, seen: (ReadOptions['tap'] | undefined)[]): Driver {
  const wrapped = Object.create(inner) as Driver;
  wrapped.read = (key, options) => {
    if (key.startsWith('data/')) seen.push(options?.tap);
    return inner.read(key, options);
  };
  return wrapped;
}

describe('verified fs gets hash as the driver reads', () => {
  const sizes = [1000, 200 * 1024, 3 * STREAM_CHUNK_BYTES + 777];

  for (const hashing of ['native', 'wasm'] as const) {
    it(`catch a flipped byte anywhere with DIGEST_INVALID (${hashing} selection)`, async () => {
      vi.stubEnv('BLOBCORE_HASH', hashing);
      const root = mkdtempSync(join(scratch, 'store-'));
      const taps: (ReadOptions['tap'] | undefined)[] = [];
      const store = await openStore(recordingTaps(createFsDriver({ root }), taps));
      for (const size of sizes) {
        const bytes = randomBytes(size);
        const { digest } = await store.put(bytes);
        expect((await collectBody(await store.get(digest, { verify: true }))).equals(bytes)).toBe(true);
        const tap = taps.at(-1);
        expect(tap, 'the store hands fs a tap').toBeDefined();
        expect(tap?.native !== undefined).toBe(hashing === 'native');
        // A ranged read is not verified: no tap.
        await collectBody(await store.get(digest, { offset: 1, length: 10 }));
        expect(taps.at(-1)).toBeUndefined();
        for (const at of [0, Math.floor(size / 2), 256 * 1024 + 1, size - 1].filter((i) => i < size)) {
          const corrupt = Buffer.from(bytes);
          corrupt[at] = (corrupt[at] ?? 0) ^ 0x40;
          await store.driver.write(await store.layout.dataKey(digest), corrupt);
          const outcome = await codeOf(collectBody(await store.get(digest, { verify: true })));
          expect(outcome, `${size} bytes, flipped at ${at}`).toBe('DIGEST_INVALID');
        }
      }
    });
  }
});
