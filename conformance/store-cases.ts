/**
 * Store-level conformance cases: the BlobStore (src/store.ts, src/upload.ts) run over
 * the driver under test, with a second `openStore` on the same backend standing in for
 * another process or replica.
 *
 * "Nothing visible" is checked on the backend itself: the raw driver's key list before
 * and after must be equal, so a failed put leaves neither an index record nor bytes.
 * "One physical copy" counts backend objects of the blob's (odd) size.
 */
import assert from 'node:assert/strict';
import type { Driver, DriverLimits } from '../src/driver.js';
import type { BlobStore } from '../src/store.js';
import type { Upload } from '../src/upload.js';
import {
  assertCode,
  failingStream,
  hashStream,
  KiB,
  listAll,
  logUniform,
  MiB,
  Pattern,
  prng,
  readAll,
  rejects,
  rejectsWithCode,
  sha256,
  sleep,
  streamFailsWithCode,
} from './helpers.js';
import type { CaseSelection, StoreCase, StoreCaseContext } from './types.js';
import { countingDriver } from './wrappers.js';

const SHORT = 60_000;
const LONG = 180_000;

const digestOf = (bytes: Uint8Array) => `sha256:${sha256(bytes)}`;

/** A nominal part size: the driver's minimum, or 64 KiB where it has none. */
function partSize(limits: DriverLimits): number {
  return Math.min(Math.max(limits.minPartSize, 64 * KiB), limits.maxPartSize);
}

async function getHash(store: BlobStore, digest: string, verify = true) {
  return hashStream(await store.get(digest, { verify }));
}

async function assertBlob(store: BlobStore, digest: string, size: number, what: string): Promise<void> {
  const stat = await store.stat(digest);
  assert.deepEqual(stat, { digest, size }, `${what}: stat`);
  const got = await getHash(store, digest);
  assert.equal(got.size, size, `${what}: bytes read back`);
  assert.equal(`sha256:${got.sha256}`, digest, `${what}: digest of the bytes read back`);
}

async function backendKeys(driver: Driver): Promise<string[]> {
  return listAll(driver, '');
}

/** Key → size of every backend object. */
async function snapshot(driver: Driver): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const key of await backendKeys(driver)) sizes.set(key, (await driver.stat(key))?.size ?? -1);
  return sizes;
}

/** Largest object a store may leave behind as metadata (e.g. a liveness touch) after refused input. */
const METADATA_BYTES = 1024;

/**
 * Asserts a failed operation left no data on the backend: no object removed or
 * resized, and any new object is small metadata (reported as a note), never bytes.
 */
async function assertNothingLeft(
  driver: Driver,
  before: Map<string, number>,
  what: string,
  note: (message: string) => void,
): Promise<void> {
  const after = await snapshot(driver);
  for (const [key, size] of before) {
    assert.equal(after.get(key), size, `${what}: ${key} was removed or changed size`);
  }
  const added = [...after].filter(([key]) => !before.has(key));
  for (const [key, size] of added) {
    assert.ok(size <= METADATA_BYTES, `${what}: left ${key} (${size} bytes) on the backend`);
  }
  if (added.length > 0)
    note(`${what}: left small metadata ${added.map(([key, size]) => `${key} (${size} B)`).join(', ')}`);
}

/** Backend objects exactly `size` bytes long: the physical copies of a blob of that odd size. */
async function copiesOfSize(driver: Driver, size: number): Promise<number> {
  let copies = 0;
  for (const key of await backendKeys(driver)) {
    if ((await driver.stat(key))?.size === size) copies += 1;
  }
  return copies;
}

/** Appends pattern bytes [from, from + length) in chunks of `chunk`. */
async function appendRange(upload: Upload, pattern: Pattern, from: number, length: number, chunk: number) {
  for (let offset = from; offset < from + length; ) {
    const n = Math.min(chunk, from + length - offset);
    const status = await upload.append(pattern.bytes(offset, n), { offset });
    offset += n;
    assert.equal(status.offset, offset, `status.offset after appending up to ${offset}`);
  }
}

async function rewriteUploadRecord(
  ctx: StoreCaseContext,
  id: string,
  edit: (record: Record<string, unknown>) => void,
) {
  const key = ctx.store.layout.uploadStateKey(id);
  const stat = await ctx.driver.stat(key);
  assert.ok(stat, `upload state record ${key} exists`);
  const record = JSON.parse((await readAll(await ctx.driver.read(key))).toString('utf8')) as Record<
    string,
    unknown
  >;
  edit(record);
  await ctx.driver.write(key, Buffer.from(JSON.stringify(record)), { ifMatch: stat.etag });
}

export function storeCases(selection: CaseSelection): StoreCase[] {
  const strict = selection.capabilities.conditionalWrite;
  const weakWhy =
    'capabilities.conditionalWrite is false: the store cannot make one of two racing writers lose';
  const cases: StoreCase[] = [];
  const add = (
    name: string,
    run: (ctx: StoreCaseContext) => Promise<void>,
    timeout = SHORT,
    weaker?: string,
  ) => {
    cases.push(weaker === undefined ? { name, timeout, run } : { name, timeout, run, weaker });
  };

  // ── put / get ───────────────────────────────────────────────────────────────────
  add(
    'store put/get: round-trip with verify for 0 B, 1 B and 1 MiB, as bytes then as a stream (the second dedups)',
    async ({ store }) => {
      for (const size of [0, 1, MiB]) {
        const bytes = new Pattern(`put-${size}`).bytes(0, size);
        const digest = digestOf(bytes);
        const first = await store.put(bytes);
        assert.deepEqual(first, { digest, size, deduplicated: false }, `put of ${size} B (bytes)`);
        await assertBlob(store, digest, size, `${size} B`);
        const second = await store.put(new Pattern(`put-${size}`).stream(0, size, 100_003), { size });
        assert.deepEqual(second, { digest, size, deduplicated: true }, `put of ${size} B (stream)`);
        assert.equal(await store.delete(digest), true, 'delete');
        assert.equal(await store.stat(digest), null, 'stat after delete');
      }
    },
  );

  add(
    'store put/get: a 64 MiB streamed put round-trips with verify, also read through a second store instance',
    async ({ store, openSecond }) => {
      const size = 64 * MiB;
      const pattern = new Pattern('put-64m');
      const digest = pattern.digest(size);
      const result = await store.put(pattern.stream(0, size, 4 * MiB + 1), { expected: digest, size });
      assert.deepEqual(result, { digest, size, deduplicated: false }, 'put result');
      await assertBlob(store, digest, size, '64 MiB blob');
      await assertBlob(await openSecond(), digest, size, '64 MiB blob from a second instance');
    },
    LONG,
  );

  add(
    'store get: ranged reads return exactly the requested bytes; an offset past the end is RANGE_INVALID',
    async ({ store }) => {
      const size = 300_001;
      const pattern = new Pattern('get-range');
      const { digest } = await store.put(pattern.bytes(0, size));
      for (const [offset, length] of [
        [0, 10],
        [1, 1],
        [65_535, 65_537],
        [size - 1, 1],
        [size - 10, 100],
        [size, 5],
      ] as const) {
        const got = await hashStream(await store.get(digest, { offset, length }));
        const n = Math.min(length, size - offset);
        assert.equal(got.size, n, `get offset ${offset} length ${length}: size`);
        assert.equal(got.sha256, pattern.sha256(offset, n), `get offset ${offset} length ${length}: bytes`);
      }
      await rejectsWithCode(store.get(digest, { offset: size + 1 }), 'RANGE_INVALID', 'offset past the end');
      await rejectsWithCode(store.get(digest, { offset: -1 }), 'RANGE_INVALID', 'negative offset');
    },
  );

  add(
    'store get/stat/delete: a missing digest is BLOB_UNKNOWN / null / false; a malformed digest is DIGEST_INVALID',
    async ({ store }) => {
      const missing = digestOf(Buffer.from('never stored'));
      await rejectsWithCode(store.get(missing), 'BLOB_UNKNOWN', 'get of a missing digest');
      assert.equal(await store.stat(missing), null, 'stat of a missing digest');
      assert.equal(await store.delete(missing), false, 'delete of a missing digest');
      for (const bad of [
        '',
        'sha256:abc',
        missing.toUpperCase(),
        `${missing} `,
        'md5:d41d8cd98f00b204e9800998ecf8427e',
        '../x',
      ]) {
        await rejectsWithCode(store.get(bad), 'DIGEST_INVALID', `get(${JSON.stringify(bad)})`);
        await rejectsWithCode(store.stat(bad), 'DIGEST_INVALID', `stat(${JSON.stringify(bad)})`);
      }
    },
  );

  add(
    'store put: a wrong expected digest is DIGEST_INVALID and nothing becomes visible',
    async ({ store, driver, note }) => {
      const stored = Buffer.from('already stored');
      const storedDigest = (await store.put(stored)).digest;
      const before = await snapshot(driver);
      const bytes = new Pattern('wrong-digest').bytes(0, 200_000);
      const actual = digestOf(bytes);
      const wrong = digestOf(Buffer.from('something else'));
      await rejectsWithCode(store.put(bytes, { expected: wrong }), 'DIGEST_INVALID', 'bytes, wrong digest');
      await rejectsWithCode(
        store.put(new Pattern('wrong-digest').stream(0, 200_000, 30_000), { expected: wrong }),
        'DIGEST_INVALID',
        'stream, wrong digest',
      );
      await rejectsWithCode(
        store.put(bytes, { expected: storedDigest }),
        'DIGEST_INVALID',
        'expected = a stored digest',
      );
      await rejectsWithCode(
        store.put(bytes, { expected: 'sha256:nope' }),
        'DIGEST_INVALID',
        'malformed expected',
      );
      assert.equal(await store.stat(wrong), null, 'the wrong digest is not stored');
      assert.equal(await store.stat(actual), null, 'the actual digest is not stored');
      await assertNothingLeft(driver, before, 'refused puts', note);
    },
  );

  add(
    'store put: a wrong size (shorter or longer, bytes or stream) is SIZE_INVALID and nothing becomes visible',
    async ({ store, driver, note }) => {
      await store.put(Buffer.from('warm-up'));
      const before = await snapshot(driver);
      const size = 150_000;
      const pattern = new Pattern('wrong-size');
      for (const declared of [size - 1, size + 1]) {
        await rejectsWithCode(
          store.put(pattern.bytes(0, size), { size: declared }),
          'SIZE_INVALID',
          `bytes, size ${declared}`,
        );
        await rejectsWithCode(
          store.put(pattern.stream(0, size, 40_000), { size: declared }),
          'SIZE_INVALID',
          `stream, size ${declared}`,
        );
        await rejectsWithCode(
          store.put(pattern.stream(0, size, 40_000), { size: declared, expected: pattern.digest(size) }),
          'SIZE_INVALID',
          `stream with the right digest, size ${declared}`,
        );
      }
      assert.equal(await store.stat(pattern.digest(size)), null, 'the blob is not stored');
      await assertNothingLeft(driver, before, 'refused puts', note);
    },
  );

  add(
    'store put: a source that fails mid-put, or an AbortSignal fired mid-put (ABORTED), leaves nothing visible',
    async ({ store, driver, note }) => {
      await store.put(Buffer.from('warm-up'));
      const before = await snapshot(driver);
      const pattern = new Pattern('put-abort');
      const chunks = [...pattern.chunks(0, 3 * MiB, 256 * KiB)];
      await rejects(store.put(failingStream(chunks, new Error('source broke'))), 'put with a failing source');
      const controller = new AbortController();
      async function* body() {
        let n = 0;
        for (const chunk of pattern.chunks(0, 3 * MiB, 256 * KiB)) {
          if (++n === 4) controller.abort(new Error('client went away'));
          await sleep(1);
          yield chunk;
        }
      }
      await rejectsWithCode(
        store.put(body(), { signal: controller.signal }),
        'ABORTED',
        'put aborted mid-stream',
      );
      const done = new AbortController();
      done.abort();
      await rejectsWithCode(
        store.put(Buffer.from('x'), { signal: done.signal }),
        'ABORTED',
        'put with an aborted signal',
      );
      await assertNothingLeft(driver, before, 'failed puts', note);
    },
  );

  add(
    'store get: a verified get of corrupted stored bytes fails DIGEST_INVALID (flipped byte, truncated), also from a second instance',
    async ({ store, driver, openSecond }) => {
      const bytes = new Pattern('corrupt').bytes(0, MiB + 3);
      const { digest } = await store.put(bytes);
      const dataKey = await store.layout.dataKey(digest);
      const flipped = Buffer.from(bytes);
      flipped[700_000] = (flipped[700_000] as number) ^ 0x01;
      await driver.write(dataKey, flipped);
      await streamFailsWithCode(
        await store.get(digest, { verify: true }),
        'DIGEST_INVALID',
        'verified get, flipped byte',
      );
      const second = await openSecond();
      await streamFailsWithCode(
        await second.get(digest, { verify: true }),
        'DIGEST_INVALID',
        'second instance, flipped byte',
      );
      await driver.write(dataKey, bytes.subarray(0, MiB));
      await streamFailsWithCode(
        await store.get(digest, { verify: true }),
        'DIGEST_INVALID',
        'verified get, truncated',
      );
    },
  );

  add(
    'store dedup: a second put of the same bytes reports deduplicated and writes no data (counting driver)',
    async ({ driver, openOver, note }) => {
      const counting = countingDriver(driver);
      const store = await openOver(counting.driver);
      const size = MiB + 11;
      const pattern = new Pattern('dedup');
      const bytes = pattern.bytes(0, size);
      const first = await store.put(bytes);
      assert.equal(first.deduplicated, false, 'first put');
      assert.ok(counting.counts.bytesWritten >= size, 'the first put wrote the data');
      const noData = (what: string) => {
        const { bytesWritten, uploadParts, completes, copies } = counting.counts;
        assert.ok(bytesWritten < 4 * KiB, `${what}: ${bytesWritten} bytes written`);
        assert.equal(uploadParts + completes + copies, 0, `${what}: multipart or copy calls`);
      };
      counting.reset();
      assert.deepEqual(await store.put(bytes), { ...first, deduplicated: true }, 'second put (bytes)');
      noData('second put (bytes)');
      counting.reset();
      const third = await store.put(pattern.stream(0, size, 64 * KiB), { expected: first.digest, size });
      assert.deepEqual(third, { ...first, deduplicated: true }, 'third put (stream, expected digest)');
      noData('third put (stream with expected digest)');
      counting.reset();
      const fourth = await store.put(pattern.stream(0, size, 64 * KiB));
      assert.deepEqual(
        fourth,
        { ...first, deduplicated: true },
        'fourth put (stream, digest unknown up front)',
      );
      note(
        `a stream put without a digest staged ${counting.counts.bytesWritten} bytes before finding the duplicate`,
      );
      const upload = await store.uploads.start();
      await upload.append(bytes, { offset: 0 });
      const committed = await upload.commit({ digest: first.digest });
      assert.equal(committed.deduplicated, true, 'upload commit of a stored digest');
      assert.equal(await copiesOfSize(driver, size), 1, 'physical copies after four puts and an upload');
    },
  );

  // ── uploads ─────────────────────────────────────────────────────────────────────
  add(
    'store uploads: chunks of random sizes (1 B … 8 MiB, bytes and streams, two instances) across the min part size commit to the right digest',
    async ({ store, openSecond, limits, note }) => {
      const random = prng(7);
      const pattern = new Pattern('random-chunks');
      const second = await openSecond();
      const first = await store.uploads.start();
      let upload = first;
      let offset = 0;
      let chunks = 0;
      let small = 0;
      while (offset < 24 * MiB) {
        const n = logUniform(random, 1, 8 * MiB);
        if (n < limits.minPartSize) small += 1;
        const mode = chunks % 3;
        const body = mode === 0 ? pattern.bytes(offset, n) : pattern.stream(offset, n, 256 * KiB + 7);
        const status = await upload.append(body, mode === 2 ? { offset } : { offset, size: n });
        offset += n;
        chunks += 1;
        assert.equal(status.offset, offset, `offset after chunk ${chunks}`);
        if (chunks % 5 === 0) upload = await (upload === first ? second : store).uploads.resume(first.id);
      }
      note(`${chunks} chunks, ${small} below minPartSize ${limits.minPartSize}, ${offset} bytes`);
      const result = await upload.commit({ digest: pattern.digest(offset), size: offset });
      assert.equal(result.digest, pattern.digest(offset), 'commit digest');
      assert.equal(result.size, offset, 'commit size');
      await assertBlob(store, result.digest, offset, 'uploaded blob');
    },
    LONG,
  );

  const resumeAt = (label: string, where: (p: number, total: number) => number) =>
    add(`store uploads: resume from a second store instance ${label}`, async (ctx) => {
      const p = partSize(ctx.limits);
      const total = 3 * p + 4321;
      const at = where(p, total);
      const pattern = new Pattern(`resume-${label}`);
      const first = await ctx.store.uploads.start();
      await appendRange(first, pattern, 0, at, p);
      const second = await ctx.openSecond();
      const resumed = await second.uploads.resume(first.id);
      const status = await resumed.status();
      assert.equal(status.id, first.id, 'status.id');
      assert.equal(status.offset, at, 'offset seen by the second instance');
      assert.equal(
        status.hashState,
        'persisted',
        'the second instance continues from the persisted hash state',
      );
      await appendRange(resumed, pattern, at, total - at, p);
      const result = await resumed.commit({ digest: pattern.digest(total), size: total });
      assert.equal(result.digest, pattern.digest(total), 'commit digest');
      if (strict) assert.equal(result.rehashedBytes, 0, 'resuming re-read uploaded bytes');
      else ctx.note(`conditionalWrite is false: commit re-read ${result.rehashedBytes} bytes to verify`);
      await assertBlob(ctx.store, result.digest, total, 'blob read from the first instance');
    });
  resumeAt('at 0%', () => 0);
  resumeAt('mid-part (bytes held back in the tail)', (p) => p + Math.floor(p / 2));
  resumeAt('exactly on a part boundary', (p) => 2 * p);
  resumeAt('at 100%', (_p, total) => total);

  add(
    'store uploads: commit from a second instance with no new bytes needs neither the hash state nor a re-read',
    async (ctx) => {
      const p = partSize(ctx.limits);
      const total = 2 * p + 999;
      const pattern = new Pattern('commit-no-bytes');
      const first = await ctx.store.uploads.start();
      await appendRange(first, pattern, 0, total, p);
      await rewriteUploadRecord(ctx, first.id, (record) => {
        delete record.hashState;
      });
      const resumed = await (await ctx.openSecond()).uploads.resume(first.id);
      const status = await resumed.status();
      assert.equal(status.offset, total, 'offset');
      assert.equal(status.hashState, 'missing', 'status.hashState after the state was deleted');
      assert.equal(status.rehash, false, 'a commit of the known prefix must not need a re-hash');
      const result = await resumed.commit({ digest: pattern.digest(total) });
      assert.equal(result.digest, pattern.digest(total));
      if (strict) assert.equal(result.rehashedBytes, 0, 'bytes re-read by the commit');
      else ctx.note(`conditionalWrite is false: commit re-read ${result.rehashedBytes} bytes to verify`);
      await assertBlob(ctx.store, result.digest, total, 'committed blob');
    },
  );

  add(
    'store uploads: out-of-order, duplicate and overlapping chunks are RANGE_INVALID carrying the current offset; nothing of them is kept',
    async (ctx) => {
      const p = partSize(ctx.limits);
      const pattern = new Pattern('ooo');
      const junk = new Pattern('ooo-junk');
      const upload = await ctx.store.uploads.start();
      const expectOffset = async (u: Upload, offset: number, size: number, current: number, what: string) => {
        const error = await rejectsWithCode(
          u.append(junk.bytes(offset, size), { offset }),
          'RANGE_INVALID',
          what,
        );
        assert.equal(error.detail.offset, current, `${what}: error.detail.offset`);
      };
      await expectOffset(upload, 1, 10, 0, 'first chunk at offset 1');
      await upload.append(pattern.bytes(0, p), { offset: 0 });
      await expectOffset(upload, 0, p, p, 'duplicate part-sized chunk');
      await upload.append(pattern.bytes(p, 1000), { offset: p });
      await expectOffset(upload, p, 1000, p + 1000, 'duplicate tail-sized chunk');
      await expectOffset(upload, p + 990, 20, p + 1000, 'overlapping chunk');
      await expectOffset(upload, p + 2000, 10, p + 1000, 'chunk after a gap');
      await expectOffset(upload, 2 * p, p, p + 1000, 'large chunk out of order');
      await rejectsWithCode(
        upload.append(junk.bytes(0, 1), { offset: -1 }),
        'RANGE_INVALID',
        'negative offset',
      );
      const other = await (await ctx.openSecond()).uploads.resume(upload.id);
      await expectOffset(other, p, 1000, p + 1000, 'duplicate from a second instance');
      assert.equal((await upload.status()).offset, p + 1000, 'offset unchanged by refused chunks');
      await other.append(pattern.bytes(p + 1000, p), { offset: p + 1000 });
      await expectOffset(upload, p + 1000, 10, 2 * p + 1000, 'stale instance appending at its old offset');
      const total = 2 * p + 1000;
      const result = await upload.commit({ digest: pattern.digest(total), size: total });
      await assertBlob(ctx.store, result.digest, total, 'blob after refused chunks');
    },
  );

  const racing = async (ctx: StoreCaseContext, exactlyOne: boolean) => {
    const p = partSize(ctx.limits);
    for (const [label, size] of [
      ['tail-sized', Math.max(1, Math.floor(p / 4))],
      ['part-sized', p],
    ] as const) {
      const prefix = new Pattern(`race-prefix-${label}`).bytes(0, 100);
      const chunks = [
        new Pattern(`race-a-${label}`).bytes(0, size),
        new Pattern(`race-b-${label}`).bytes(0, size),
      ];
      const first = await ctx.store.uploads.start();
      await first.append(prefix, { offset: 0 });
      const second = await (await ctx.openSecond()).uploads.resume(first.id);
      const uploads = [first, second];
      const results = await Promise.allSettled(
        uploads.map((u, i) => u.append(chunks[i] as Buffer, { offset: 100 })),
      );
      const winners: number[] = [];
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') winners.push(i);
        else {
          const error = assertCode(result.reason, 'RANGE_INVALID', `${label}: losing append`);
          assert.equal(typeof error.detail.offset, 'number', `${label}: the loser learns the current offset`);
        }
      });
      if (exactlyOne) assert.equal(winners.length, 1, `${label}: ${winners.length} of 2 appends won`);
      else assert.ok(winners.length >= 1, `${label}: no append won`);
      const digests = chunks.map((chunk) => digestOf(Buffer.concat([prefix, chunk])));
      const winner = uploads[winners[0] as number] as Upload;
      let committed: string | undefined;
      for (const i of exactlyOne ? winners : [0, 1]) {
        try {
          committed = (await winner.commit({ digest: digests[i] as string, size: 100 + size })).digest;
          break;
        } catch (error) {
          assertCode(error, 'DIGEST_INVALID', `${label}: commit of writer ${i}'s content`);
        }
      }
      assert.ok(committed, `${label}: the upload holds neither writer's whole chunk`);
      if (exactlyOne) assert.equal(committed, digests[winners[0] as number], `${label}: the winner's bytes`);
      await assertBlob(ctx.store, committed, 100 + size, `${label}: final blob`);
    }
  };
  if (strict) {
    add(
      'store uploads: two instances appending at the same offset concurrently → exactly one wins, the final blob is correct',
      (ctx) => racing(ctx, true),
    );
  } else {
    add(
      'store uploads (weaker): two instances appending at the same offset concurrently → at least one wins, the final blob is one whole version',
      (ctx) => racing(ctx, false),
      SHORT,
      weakWhy,
    );
  }

  add(
    'store uploads: cancel, then resume from any instance is BLOB_UPLOAD_UNKNOWN and nothing is left',
    async (ctx) => {
      await ctx.store.put(Buffer.from('warm-up'));
      const before = await snapshot(ctx.driver);
      const p = partSize(ctx.limits);
      const pattern = new Pattern('cancel');
      const upload = await ctx.store.uploads.start();
      await appendRange(upload, pattern, 0, p + 500, p);
      await upload.cancel();
      const second = await ctx.openSecond();
      await rejectsWithCode(
        ctx.store.uploads.resume(upload.id),
        'BLOB_UPLOAD_UNKNOWN',
        'resume after cancel',
      );
      await rejectsWithCode(
        second.uploads.resume(upload.id),
        'BLOB_UPLOAD_UNKNOWN',
        'resume after cancel (second instance)',
      );
      await rejectsWithCode(
        upload.append(pattern.bytes(p + 500, 10), { offset: p + 500 }),
        'BLOB_UPLOAD_UNKNOWN',
        'append after cancel',
      );
      await rejectsWithCode(
        upload.commit({ digest: pattern.digest(p + 500) }),
        'BLOB_UPLOAD_UNKNOWN',
        'commit after cancel',
      );
      await assertNothingLeft(ctx.driver, before, 'cancel', ctx.note);
      assert.equal(
        await ctx.driver.stat(ctx.store.layout.uploadStateKey(upload.id)),
        null,
        'upload state after cancel',
      );

      const other = await ctx.store.uploads.start();
      await appendRange(other, pattern, 0, 1000, 1000);
      await (await second.uploads.resume(other.id)).cancel();
      await rejectsWithCode(
        other.append(pattern.bytes(1000, 10), { offset: 1000 }),
        'BLOB_UPLOAD_UNKNOWN',
        'append after another instance cancelled',
      );
      await rejectsWithCode(other.status(), 'BLOB_UPLOAD_UNKNOWN', 'status after another instance cancelled');
      await assertNothingLeft(ctx.driver, before, 'cancel from another instance', ctx.note);
      assert.equal(
        await ctx.driver.stat(ctx.store.layout.uploadStateKey(other.id)),
        null,
        'upload state after cancel',
      );
    },
  );

  add('store uploads: unknown and forged upload ids are BLOB_UPLOAD_UNKNOWN', async ({ store }) => {
    const real = await store.uploads.start();
    const flip = (c: string) => (c === '0' ? '1' : '0');
    const forged = [
      '0'.repeat(32),
      flip(real.id[0] as string) + real.id.slice(1),
      real.id.slice(0, 31),
      `${real.id}0`,
      'z'.repeat(32),
      '',
      `../${real.id}`,
      `${real.id}/state`,
      `${real.id.slice(0, 16)}/${real.id.slice(17)}`,
      `${real.id.slice(0, 31)}\0`,
      ` ${real.id}`,
    ];
    for (const id of forged) {
      await rejectsWithCode(store.uploads.resume(id), 'BLOB_UPLOAD_UNKNOWN', `resume(${JSON.stringify(id)})`);
    }
    assert.equal((await store.uploads.resume(real.id)).id, real.id, 'the real id still resumes');
  });

  add('store uploads: ids are 32 lowercase hex characters (128 bits) and unique', async ({ store }) => {
    const ids = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const upload = await store.uploads.start();
      assert.match(upload.id, /^[0-9a-f]{32}$/, 'upload id format');
      ids.add(upload.id);
      await upload.cancel();
    }
    assert.equal(ids.size, 8, 'ids repeat');
  });

  const crowd = async (ctx: StoreCaseContext, exactlyOne: boolean) => {
    const p = partSize(ctx.limits);
    const size = 2 * p + 1234;
    const pattern = new Pattern('crowd');
    const bytes = pattern.bytes(0, size);
    const digest = digestOf(bytes);
    const second = await ctx.openSecond();
    const uploads = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? second : ctx.store).uploads.start()),
    );
    await Promise.all(uploads.map((u) => u.append(bytes, { offset: 0 })));
    const results = await Promise.all(uploads.map((u) => u.commit({ digest, size })));
    for (const result of results) assert.equal(result.digest, digest, 'every commit reports the digest');
    const fresh = results.filter((r) => !r.deduplicated).length;
    const copies = await copiesOfSize(ctx.driver, size);
    if (exactlyOne) {
      assert.equal(fresh, 1, `${fresh} commits claim to have stored a new copy`);
      assert.equal(copies, 1, `${copies} physical copies of the blob`);
    } else {
      assert.ok(fresh >= 1 && copies >= 1, 'the blob is stored');
      ctx.note(`${fresh} commits stored a copy; ${copies} physical copies left for GC to collect`);
    }
    for (const upload of uploads) {
      assert.equal(
        await ctx.driver.stat(ctx.store.layout.uploadStateKey(upload.id)),
        null,
        'upload state left behind',
      );
    }
    await assertBlob(ctx.store, digest, size, 'the blob');
  };
  if (strict) {
    add(
      'store uploads: 20 concurrent uploads of the same content committing at once → one physical copy, all succeed with the same digest',
      (ctx) => crowd(ctx, true),
    );
  } else {
    add(
      'store uploads (weaker): 20 concurrent uploads of the same content committing at once → all succeed with the same digest, copies beyond one are GC orphans',
      (ctx) => crowd(ctx, false),
      SHORT,
      weakWhy,
    );
  }

  add(
    'store uploads: resume after the hash state is deleted re-hashes, commits correctly and says so in its status',
    async (ctx) => {
      const p = partSize(ctx.limits);
      const total = 3 * p + 77;
      const pattern = new Pattern('rehash');
      const first = await ctx.store.uploads.start();
      await appendRange(first, pattern, 0, p + 500, p);
      await rewriteUploadRecord(ctx, first.id, (record) => {
        assert.ok('hashState' in record, 'the upload state record has a hashState field');
        delete record.hashState;
      });
      const resumed = await (await ctx.openSecond()).uploads.resume(first.id);
      const before = await resumed.status();
      assert.equal(before.hashState, 'missing', 'status.hashState after the state was deleted');
      await appendRange(resumed, pattern, p + 500, total - (p + 500), p);
      const after = await resumed.status();
      assert.equal(after.rehash, true, 'status.rehash once new bytes arrived without a hash state');
      const result = await resumed.commit({ digest: pattern.digest(total), size: total });
      assert.equal(result.digest, pattern.digest(total), 'commit digest');
      assert.ok(result.rehashedBytes > 0, 'the commit reports the bytes it re-read');
      await assertBlob(ctx.store, result.digest, total, 'blob after a re-hash');
    },
  );

  add(
    'store uploads: a commit with a wrong digest is DIGEST_INVALID (nothing visible, upload still resumable); a wrong size is SIZE_INVALID',
    async (ctx) => {
      const p = partSize(ctx.limits);
      const total = p + 321;
      const pattern = new Pattern('commit-wrong');
      const upload = await ctx.store.uploads.start();
      await appendRange(upload, pattern, 0, total, p);
      const wrong = digestOf(Buffer.from('not these bytes'));
      await rejectsWithCode(upload.commit({ digest: wrong }), 'DIGEST_INVALID', 'commit with a wrong digest');
      await rejectsWithCode(
        upload.commit({ digest: 'sha256:xyz' }),
        'DIGEST_INVALID',
        'commit with a malformed digest',
      );
      await rejectsWithCode(
        upload.commit({ digest: pattern.digest(total), size: total + 1 }),
        'SIZE_INVALID',
        'commit with a wrong size',
      );
      assert.equal(await ctx.store.stat(wrong), null, 'the wrong digest is not stored');
      assert.equal(await ctx.store.stat(pattern.digest(total)), null, 'nothing stored yet');
      const resumed = await (await ctx.openSecond()).uploads.resume(upload.id);
      assert.equal((await resumed.status()).offset, total, 'the upload is still resumable at its offset');
      const result = await resumed.commit({ digest: pattern.digest(total), size: total });
      await assertBlob(ctx.store, result.digest, total, 'blob committed after refused commits');
    },
  );

  add('store uploads: a 0-byte and a 1-byte upload commit', async ({ store }) => {
    const empty = await store.uploads.start();
    const zero = await empty.commit({ digest: digestOf(Buffer.alloc(0)), size: 0 });
    await assertBlob(store, zero.digest, 0, 'empty upload');
    const one = await store.uploads.start();
    await one.append(Buffer.from('x'), { offset: 0 });
    const result = await one.commit({ digest: digestOf(Buffer.from('x')) });
    await assertBlob(store, result.digest, 1, '1-byte upload');
  });

  return cases;
}
