import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deferred } from '../conformance/helpers.js';
import { createFsDriver } from '../drivers/fs/index.js';
import { createMemoryDriver, MemoryBackend } from '../drivers/memory/index.js';
import { collectBody } from '../src/bytes.js';
import type { Driver } from '../src/driver.js';
import { openStore, type StoreOptions } from '../src/store.js';
import { codeOf, errorOf, MiB, random, sha256, streamOf } from './helpers.js';

/** Two store instances on one backend: a stand-in for two processes. */
async function twoStores(options: StoreOptions = {}) {
  const backend = new MemoryBackend();
  const a = await openStore(createMemoryDriver({ backend }), options);
  const b = await openStore(createMemoryDriver({ backend }), options);
  return { a, b, backend };
}

/** The same driver with fewer part numbers, to reach the last one with small uploads. */
function withMaxParts<T extends Driver>(driver: T, maxParts: number): T {
  const limited = Object.create(driver) as T;
  Object.defineProperty(limited, 'limits', { value: { ...driver.limits, maxParts } });
  return limited;
}

async function readBlob(store: Awaited<ReturnType<typeof openStore>>, digest: string): Promise<Buffer> {
  return collectBody(await store.get(digest, { verify: true }));
}

/**
 * A memory driver whose uploadPart stops until `release()`: an instance caught staging
 * a part. `started` resolves when the part upload begins.
 */
function stalledPartDriver() {
  const backend = new MemoryBackend();
  const plain = createMemoryDriver({ backend });
  const gate = deferred();
  const started = deferred();
  const slow = Object.create(plain) as typeof plain;
  slow.uploadPart = async (...args) => {
    started.resolve();
    await gate.promise;
    return plain.uploadPart(...args);
  };
  return { backend, slow, started: started.promise, release: gate.resolve };
}

describe('uploads', () => {
  it.each([0, 1])('uploads and commits a %i-byte blob', async (size) => {
    const store = await openStore('memory:');
    const bytes = randomBytes(size);
    const upload = await store.uploads.start();
    expect(upload.id).toMatch(/^[0-9a-f]{32}$/);
    if (size) await upload.append(bytes, { offset: 0 });
    const result = await upload.commit({ digest: sha256(bytes), size });
    expect(result).toEqual({ digest: sha256(bytes), size, deduplicated: false, rehashedBytes: 0 });
    expect((await readBlob(store, result.digest)).equals(bytes)).toBe(true);
    expect(await codeOf(store.uploads.resume(upload.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect((await store.driver.list('uploads/')).keys).toEqual([]);
  });

  it('uploads 64 MiB in random chunk sizes, switching instances, without re-reading', async () => {
    const seed = Date.now() % 100000;
    const next = random(seed);
    const { a, b } = await twoStores();
    const bytes = randomBytes(64 * MiB);
    let upload = await a.uploads.start();
    let offset = 0;
    let turn = 0;
    while (offset < bytes.length) {
      const size = Math.min(bytes.length - offset, 1 + Math.floor(next() ** 3 * 8 * MiB));
      if (next() < 0.3) upload = await (turn++ % 2 ? a : b).uploads.resume(upload.id);
      const status = await upload.append(bytes.subarray(offset, offset + size), { offset });
      offset += size;
      expect(status.offset, `seed ${seed}`).toBe(offset);
    }
    const result = await (await b.uploads.resume(upload.id)).commit({
      digest: sha256(bytes),
      size: bytes.length,
    });
    expect(result.rehashedBytes).toBe(0);
    expect(a.counters.rehashedBytes + b.counters.rehashedBytes).toBe(0);
    expect(sha256(await readBlob(a, result.digest)), `seed ${seed}`).toBe(sha256(bytes));
  });

  it('resumes in a second instance at 0, inside the tail, on a part boundary and at 100%', async () => {
    const bytes = randomBytes(300 * 1024);
    const part = createMemoryDriver().limits.minPartSize;
    for (const cut of [0, 1000, part, part + 5, bytes.length]) {
      const { a, b } = await twoStores();
      const upload = await a.uploads.start();
      if (cut) await upload.append(bytes.subarray(0, cut), { offset: 0 });
      const resumed = await b.uploads.resume(upload.id);
      const status = await resumed.status();
      expect(status.offset).toBe(cut);
      expect(status.hashState).toBe('persisted');
      if (cut < bytes.length) await resumed.append(bytes.subarray(cut), { offset: cut });
      const result = await resumed.commit({ digest: sha256(bytes) });
      expect(result.rehashedBytes).toBe(0);
      expect((await readBlob(a, result.digest)).equals(bytes)).toBe(true);
    }
  });

  it('rejects out-of-order, duplicate and overlapping chunks with RANGE_INVALID and the current offset', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(200 * 1024);
    const upload = await store.uploads.start();
    await upload.append(bytes.subarray(0, 100), { offset: 0 });
    for (const offset of [0, 50, 101, 99, -1, 1.5]) {
      const error = await errorOf(upload.append(bytes.subarray(Math.max(offset, 0), 150), { offset }));
      expect(error.code).toBe('RANGE_INVALID');
      expect(error.detail?.offset).toBe(100);
    }
    await upload.append(bytes.subarray(100), { offset: 100 });
    expect((await upload.commit({ digest: sha256(bytes) })).size).toBe(bytes.length);
  });

  it('lets exactly one of two instances win an append at the same offset', async () => {
    for (const size of [10, 200 * 1024]) {
      const { a, b } = await twoStores();
      const first = await a.uploads.start();
      const second = await b.uploads.resume(first.id);
      const x = randomBytes(size);
      const y = randomBytes(size);
      const outcomes = await Promise.allSettled([
        first.append(x, { offset: 0 }),
        second.append(y, { offset: 0 }),
      ]);
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      expect(won).toHaveLength(1);
      const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason.code).toBe('RANGE_INVALID');
      const winner = outcomes[0]?.status === 'fulfilled' ? x : y;
      const result = await (await a.uploads.resume(first.id)).commit({ digest: sha256(winner) });
      expect((await readBlob(b, result.digest)).equals(winner)).toBe(true);
    }
  });

  it('refuses a second instance while the first stages a part, and lets it take over after the lease', async () => {
    const { backend, slow, started, release } = stalledPartDriver();
    const a = await openStore(slow, { uploadLeaseMs: 200 });
    const b = await openStore(createMemoryDriver({ backend }), { uploadLeaseMs: 200 });
    const x = randomBytes(200 * 1024);
    const y = randomBytes(200 * 1024);
    const upload = await a.uploads.start();
    const appending = upload.append(x, { offset: 0 }).catch((error: { code: string }) => error.code);
    await started;
    const other = await b.uploads.resume(upload.id);
    const busy = await errorOf(other.append(y, { offset: 0 }));
    expect(busy.code).toBe('RANGE_INVALID');
    expect(busy.detail).toEqual({ offset: 0, busy: true });
    expect(await codeOf(other.commit({ digest: sha256(Buffer.alloc(0)) }))).toBe('RANGE_INVALID');
    await new Promise((resolve) => setTimeout(resolve, 250)); // the lease runs out: a crashed writer
    await other.append(y, { offset: 0 });
    release();
    expect(await appending).toBe('RANGE_INVALID'); // the stale writer's swap fails
    const result = await other.commit({ digest: sha256(y) });
    expect(result.rehashedBytes).toBe(y.length); // a takeover is verified at commit
    expect((await readBlob(a, result.digest)).equals(y)).toBe(true);
  });

  it('re-checks the offset after waiting out another writer: a stale offset is refused (regression)', async () => {
    const { backend, slow, started, release } = stalledPartDriver();
    const a = await openStore(slow);
    const b = await openStore(createMemoryDriver({ backend }));
    const x = randomBytes(200 * 1024);
    const upload = await a.uploads.start();
    const appending = upload.append(x, { offset: 0 });
    await started;
    const other = await b.uploads.resume(upload.id); // sees offset 0 and A's claim
    release();
    await appending;
    const error = await errorOf(other.append(randomBytes(10), { offset: 0 }));
    expect(error.code).toBe('RANGE_INVALID');
    expect(error.detail?.offset).toBe(x.length);
    expect((await other.commit({ digest: sha256(x) })).size).toBe(x.length);
  });

  it('serializes concurrent appends on one instance: the second sees the moved offset', async () => {
    const store = await openStore('memory:');
    const upload = await store.uploads.start();
    const outcomes = await Promise.allSettled([
      upload.append(Buffer.from('a'), { offset: 0 }),
      upload.append(Buffer.from('b'), { offset: 0 }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
  });

  it('cancel makes the upload unknown everywhere and removes its data', async () => {
    const { a, b } = await twoStores();
    const upload = await a.uploads.start();
    await upload.append(randomBytes(300 * 1024), { offset: 0 });
    const other = await b.uploads.resume(upload.id);
    await upload.cancel();
    expect(await codeOf(a.uploads.resume(upload.id))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(await codeOf(other.append(Buffer.from('x'), { offset: 300 * 1024 }))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(await codeOf(upload.append(Buffer.from('x'), { offset: 0 }))).toBe('BLOB_UPLOAD_UNKNOWN');
    expect((await a.driver.list('uploads/')).keys).toEqual([]);
  });

  it.each([
    '',
    'nope',
    '0'.repeat(31),
    '0'.repeat(33),
    'G'.repeat(32),
    '../../blobcore-format',
    randomBytes(16).toString('hex'),
  ])('refuses unknown or forged upload id %j with BLOB_UPLOAD_UNKNOWN', async (id) => {
    const store = await openStore('memory:');
    expect(await codeOf(store.uploads.resume(id))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('a wrong digest or size at commit stores nothing and leaves the upload resumable', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(150 * 1024);
    const upload = await store.uploads.start();
    await upload.append(bytes, { offset: 0 });
    expect(await codeOf(upload.commit({ digest: sha256(Buffer.from('other')) }))).toBe('DIGEST_INVALID');
    expect(await codeOf(upload.commit({ digest: sha256(bytes), size: bytes.length + 1 }))).toBe(
      'SIZE_INVALID',
    );
    expect(await codeOf(upload.commit({ digest: 'sha256:zz' }))).toBe('DIGEST_INVALID');
    expect(await store.stat(sha256(bytes))).toBeNull();
    expect((await store.driver.list('blobs/')).keys).toEqual([]);
    const resumed = await store.uploads.resume(upload.id);
    expect((await resumed.status()).offset).toBe(bytes.length);
    expect((await resumed.commit({ digest: sha256(bytes) })).size).toBe(bytes.length);
  });

  it('commits an existing digest as a dedup and drops the staged bytes', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(200 * 1024);
    await store.put(bytes);
    const upload = await store.uploads.start();
    await upload.append(bytes, { offset: 0 });
    const result = await upload.commit({ digest: sha256(bytes) });
    expect(result.deduplicated).toBe(true);
    expect((await store.driver.list('data/')).keys).toHaveLength(1);
    expect((await store.driver.list('uploads/')).keys).toEqual([]);
  });

  it('streams chunks of unknown length across parts and rejects a chunk longer than declared', async () => {
    const store = await openStore('memory:', { partSize: MiB });
    const bytes = randomBytes(3 * MiB + 11);
    const upload = await store.uploads.start();
    await upload.append(streamOf(bytes.subarray(0, 2 * MiB + 5), 100_000), { offset: 0 });
    expect(
      await codeOf(upload.append(streamOf(bytes.subarray(2 * MiB + 5)), { offset: 2 * MiB + 5, size: 10 })),
    ).toBe('SIZE_INVALID');
    expect((await upload.status()).offset).toBe(2 * MiB + 5);
    await upload.append(streamOf(bytes.subarray(2 * MiB + 5)), { offset: 2 * MiB + 5, size: MiB + 6 });
    expect(
      (await readBlob(store, (await upload.commit({ digest: sha256(bytes) })).digest)).equals(bytes),
    ).toBe(true);
  });

  it('an aborted append changes nothing; the same offset works afterwards', async () => {
    const store = await openStore('memory:');
    const bytes = randomBytes(2 * MiB);
    const upload = await store.uploads.start();
    await upload.append(bytes.subarray(0, 1000), { offset: 0 });
    const controller = new AbortController();
    const source = streamOf(bytes.subarray(1000));
    source.once('data', () => controller.abort());
    expect(await codeOf(upload.append(source, { offset: 1000, signal: controller.signal }))).toBe('ABORTED');
    const failing = streamOf(bytes.subarray(1000), 64 * 1024, MiB);
    expect(await codeOf(upload.append(failing, { offset: 1000 }))).toContain('source failed on purpose');
    expect((await upload.status()).offset).toBe(1000);
    await upload.append(bytes.subarray(1000), { offset: 1000 });
    expect((await upload.commit({ digest: sha256(bytes) })).size).toBe(bytes.length);
  });

  it('re-hashes at commit when the hash state was lost, and says so', async () => {
    const { a, b } = await twoStores();
    const bytes = randomBytes(500 * 1024);
    const upload = await a.uploads.start();
    await upload.append(bytes.subarray(0, 200 * 1024), { offset: 0 });
    // Drop the hash state from the record, as a writer that could not export one would.
    const key = a.layout.uploadStateKey(upload.id);
    const record = JSON.parse((await collectBody(await a.driver.read(key))).toString());
    delete record.hashState;
    await a.driver.write(key, Buffer.from(JSON.stringify(record)));
    const resumed = await b.uploads.resume(upload.id);
    expect((await resumed.status()).hashState).toBe('missing');
    await resumed.append(bytes.subarray(200 * 1024), { offset: 200 * 1024 });
    const status = await resumed.status();
    expect(status.hashState).toBe('missing');
    expect(status.rehash).toBe(true);
    expect(await codeOf(resumed.commit({ digest: sha256(Buffer.from('wrong')) }))).toBe('DIGEST_INVALID');
    expect(await codeOf(b.uploads.resume(upload.id))).toBe('BLOB_UPLOAD_UNKNOWN'); // failed cleanly
    expect((await b.driver.list('data/')).keys).toEqual([]);
  });

  it('re-hash path commits correctly with the right digest', async () => {
    const { a, b } = await twoStores();
    const bytes = randomBytes(500 * 1024);
    const upload = await a.uploads.start();
    await upload.append(bytes.subarray(0, 100), { offset: 0 });
    const key = a.layout.uploadStateKey(upload.id);
    const record = JSON.parse((await collectBody(await a.driver.read(key))).toString());
    record.hashState = 'AAAA'; // corrupt: treated as lost
    await a.driver.write(key, Buffer.from(JSON.stringify(record)));
    const resumed = await b.uploads.resume(upload.id);
    await resumed.append(bytes.subarray(100), { offset: 100 });
    const result = await resumed.commit({ digest: sha256(bytes) });
    expect(result.rehashedBytes).toBe(bytes.length);
    expect(b.counters.rehashedBytes).toBe(bytes.length);
    expect((await readBlob(a, result.digest)).equals(bytes)).toBe(true);
  });
});

describe('uploads at the last part number', () => {
  it('claims: an upload of exactly maxParts parts commits; one more part is BLOB_UPLOAD_INVALID', async () => {
    const memory = createMemoryDriver();
    const store = await openStore(withMaxParts(memory, 2));
    const upload = await store.uploads.start();
    const part = memory.limits.minPartSize;
    const chunks = [randomBytes(part), randomBytes(part)];
    for (const [i, chunk] of chunks.entries()) await upload.append(chunk, { offset: i * part });
    expect(await codeOf(upload.append(randomBytes(part), { offset: 2 * part }))).toBe('BLOB_UPLOAD_INVALID');
    const whole = Buffer.concat(chunks);
    expect((await upload.commit({ digest: sha256(whole) })).size).toBe(2 * part);
    expect((await collectBody(await store.get(sha256(whole), { verify: true }))).equals(whole)).toBe(true);
  });

  it('claims: a commit that would stage its tail as part maxParts + 1 is BLOB_UPLOAD_INVALID and keeps the upload', async () => {
    const memory = createMemoryDriver();
    const store = await openStore(withMaxParts(memory, 2));
    const upload = await store.uploads.start();
    const part = memory.limits.minPartSize;
    const chunks = [randomBytes(part), randomBytes(part), randomBytes(10)];
    let offset = 0;
    for (const chunk of chunks) {
      await upload.append(chunk, { offset });
      offset += chunk.byteLength;
    }
    const whole = Buffer.concat(chunks);
    expect(await codeOf(upload.commit({ digest: sha256(whole) }))).toBe('BLOB_UPLOAD_INVALID');
    expect((await upload.status()).offset).toBe(offset);
    expect(await store.stat(sha256(whole))).toBeNull();
  });
});

/**
 * Drivers with capabilities.exclusiveParts (fs, pvc) stage a part under a hold on its
 * range, and the store checks and swaps its state record inside that hold instead of
 * writing a claim first: one state write per append. These are the windows that hold
 * must close.
 */
describe('uploads on a driver that holds part ranges (fs)', () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });
  async function twoFsStores() {
    const root = mkdtempSync(join(tmpdir(), 'blobcore-upload-hold-'));
    roots.push(root);
    const a = await openStore(createFsDriver({ root }));
    const b = await openStore(createFsDriver({ root }));
    return { a, b };
  }

  it('an append past the last part number fails BLOB_UPLOAD_INVALID before writing, and the upload still commits', async () => {
    const root = mkdtempSync(join(tmpdir(), 'blobcore-upload-parts-'));
    roots.push(root);
    const store = await openStore(withMaxParts(createFsDriver({ root }), 2));
    const upload = await store.uploads.start();
    const chunks = [randomBytes(1000), randomBytes(1000)];
    for (const [i, chunk] of chunks.entries()) await upload.append(chunk, { offset: i * 1000 });
    expect(await codeOf(upload.append(randomBytes(1000), { offset: 2000 }))).toBe('BLOB_UPLOAD_INVALID');
    expect((await upload.status()).offset).toBe(2000);
    const whole = Buffer.concat(chunks);
    expect((await upload.commit({ digest: sha256(whole) })).size).toBe(2000);
    expect((await collectBody(await store.get(sha256(whole), { verify: true }))).equals(whole)).toBe(true);
  });

  it('writes the state record once per append (no claim write)', async () => {
    const { a } = await twoFsStores();
    expect(a.driver.capabilities.exclusiveParts).toBe(true);
    const upload = await a.uploads.start();
    await upload.append(randomBytes(1000), { offset: 0 }); // creates the multipart upload
    const stateKey = a.layout.uploadStateKey(upload.id);
    const writes: string[] = [];
    const original = a.driver.write.bind(a.driver);
    a.driver.write = async (key, body, options) => {
      writes.push(key);
      return original(key, body, options);
    };
    try {
      for (let i = 1; i <= 3; i++) await upload.append(randomBytes(1000), { offset: i * 1000 });
    } finally {
      a.driver.write = original;
    }
    expect(writes).toEqual([stateKey, stateKey, stateKey]);
  });

  it('a stale instance appending at an old offset is refused under the hold before writing a byte (regression)', async () => {
    const { a, b } = await twoFsStores();
    const x = randomBytes(300 * 1024);
    const upload = await a.uploads.start();
    await upload.append(x.subarray(0, 1000), { offset: 0 });
    const stale = await b.uploads.resume(upload.id); // sees offset 1000
    await upload.append(x.subarray(1000), { offset: 1000 }); // A moves on; B's copy is stale
    const error = await errorOf(stale.append(randomBytes(5000), { offset: 1000 }));
    expect(error.code).toBe('RANGE_INVALID');
    expect(error.detail?.offset).toBe(x.length);
    // A's part is intact: its receipt was not removed, its bytes not overwritten.
    const result = await stale.commit({ digest: sha256(x), size: x.length });
    expect(result.rehashedBytes).toBe(0);
    expect((await readBlob(a, result.digest)).equals(x)).toBe(true);
  });

  it('a refused in-memory append, hashed ahead of its write, leaves the instance’s hash where the record is', async () => {
    const { a, b } = await twoFsStores();
    const x = randomBytes(300 * 1024);
    const upload = await a.uploads.start();
    await upload.append(x.subarray(0, 1000), { offset: 0 });
    const stale = await b.uploads.resume(upload.id);
    await stale.status(); // its hasher is now live at 1000
    await upload.append(x.subarray(1000), { offset: 1000 });
    // As long as A's part: a hasher that kept these bytes would sit at the record's offset.
    const refused = randomBytes(x.length - 1000);
    expect((await errorOf(stale.append(refused, { offset: 1000 }))).code).toBe('RANGE_INVALID');
    const z = randomBytes(64 * 1024);
    await stale.append(z, { offset: x.length });
    const whole = Buffer.concat([x, z]);
    const result = await stale.commit({ digest: sha256(whole), size: whole.length });
    expect(result.rehashedBytes).toBe(0);
    expect((await readBlob(a, result.digest)).equals(whole)).toBe(true);
  });

  it('never lets two instances both win an append at the same offset; what won is what commits', async () => {
    // Two racing claims on one range may both back off (the driver's rule), never both proceed.
    for (let round = 0; round < 6; round++) {
      const size = round % 2 ? 3 * MiB : 10;
      const { a, b } = await twoFsStores();
      const first = await a.uploads.start();
      await first.append(Buffer.from('head'), { offset: 0 });
      const second = await b.uploads.resume(first.id);
      const x = randomBytes(size);
      const y = randomBytes(size);
      const outcomes = await Promise.allSettled([
        first.append(x, { offset: 4 }),
        second.append(y, { offset: 4 }),
      ]);
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      expect(won.length).toBeLessThanOrEqual(1);
      for (const o of outcomes) if (o.status === 'rejected') expect(o.reason.code).toBe('RANGE_INVALID');
      const resumed = await a.uploads.resume(first.id);
      let body = outcomes[0]?.status === 'fulfilled' ? x : y;
      if (won.length === 0) {
        expect((await resumed.status()).offset).toBe(4);
        body = randomBytes(size);
        await resumed.append(body, { offset: 4 });
      }
      const whole = Buffer.concat([Buffer.from('head'), body]);
      const result = await resumed.commit({ digest: sha256(whole) });
      expect(result.rehashedBytes).toBe(0);
      expect((await readBlob(b, result.digest)).equals(whole)).toBe(true);
    }
  });

  it('refuses a second instance while the first is writing a part (busy, offset unchanged)', async () => {
    const { a, b } = await twoFsStores();
    const upload = await a.uploads.start();
    await upload.append(Buffer.from('head'), { offset: 0 });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started: () => void = () => {};
    const writing = new Promise<void>((resolve) => {
      started = resolve;
    });
    const x = randomBytes(MiB);
    async function* slow() {
      yield x.subarray(0, 1000);
      started();
      await gate;
      yield x.subarray(1000);
    }
    const appending = upload.append(slow(), { offset: 4, size: x.length });
    await writing;
    const other = await b.uploads.resume(upload.id);
    const busy = await errorOf(other.append(randomBytes(10), { offset: 4 }));
    expect(busy.code).toBe('RANGE_INVALID');
    expect(busy.detail).toEqual({ offset: 4, busy: true });
    release();
    expect((await appending).offset).toBe(4 + x.length);
    const result = await other.commit({ digest: sha256(Buffer.concat([Buffer.from('head'), x])) });
    expect(result.rehashedBytes).toBe(0);
  });

  it('a hold is UNSUPPORTED on a driver without exclusiveParts', async () => {
    const store = await openStore('memory:');
    const handle = await store.driver.createMultipart('data/aa/bb/x');
    const hold = { before: async () => {}, written: async () => {} };
    expect(await codeOf(store.driver.uploadPart(handle, 1, 0, Buffer.from('x'), 1, { hold }))).toBe(
      'UNSUPPORTED',
    );
  });
});
