/**
 * Driver-level conformance cases: the contract of src/driver.ts, made executable.
 *
 * `driverCases(selection)` returns the list for one driver. The manifest picks the
 * variant of each capability-dependent case: a declared capability is exercised fully;
 * an absent one is checked to fail with UNSUPPORTED, and cases that rely on enforced
 * conditional writes run their weaker-guarantee variant. Such cases carry `weaker`
 * with the reason, and both runners print it.
 *
 * Keys never double as a directory prefix of another key (`a` and `a/b`): the contract
 * leaves that undefined, and a filesystem cannot hold both.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { Driver, DriverLimits, MultipartHandle, PartRef } from '../src/driver.js';
import { BlobcoreError } from '../src/errors.js';
import { createDigestTap } from '../src/hash/digest-tap.js';
import {
  assertBytes,
  assertCode,
  deferred,
  failingStream,
  hashStream,
  KiB,
  listAll,
  MiB,
  Pattern,
  pool,
  prng,
  readAll,
  readKey,
  rejects,
  rejectsWithCode,
  sha256,
  sleep,
  sortKeys,
  stalledStream,
  streamOf,
  within,
} from './helpers.js';
import type { CaseSelection, DriverCase, DriverCaseContext } from './types.js';

const SHORT = 30_000;
const LONG = 180_000;

/** Sizes of the parts for a multipart test: `count` full parts of at least minPartSize, then a tail. */
function partSizes(limits: DriverLimits, count: number, tail: number): number[] {
  const full = Math.min(Math.max(limits.minPartSize, 1), limits.maxPartSize);
  return [...Array.from({ length: count }, () => full), Math.min(tail, limits.maxPartSize)];
}

function offsetsOf(sizes: readonly number[]): number[] {
  const offsets: number[] = [];
  let at = 0;
  for (const size of sizes) {
    offsets.push(at);
    at += size;
  }
  return offsets;
}

function total(sizes: readonly number[]): number {
  return sizes.reduce((a, b) => a + b, 0);
}

async function uploadPattern(
  driver: Driver,
  handle: MultipartHandle,
  pattern: Pattern,
  sizes: readonly number[],
  index: number,
  asStream = false,
): Promise<PartRef> {
  const offset = offsetsOf(sizes)[index] as number;
  const size = sizes[index] as number;
  const body = asStream ? pattern.stream(offset, size, 64 * KiB + 3) : pattern.bytes(offset, size);
  const ref = await driver.uploadPart(handle, index + 1, offset, body, size);
  assert.equal(ref.partNumber, index + 1, 'PartRef.partNumber');
  assert.equal(ref.size, size, 'PartRef.size');
  assert.equal(typeof ref.etag, 'string', 'PartRef.etag');
  return ref;
}

async function assertContent(driver: Driver, key: string, pattern: Pattern, size: number, what: string) {
  const got = await hashStream(await driver.read(key));
  assert.equal(got.size, size, `${what}: size read back`);
  assert.equal(got.sha256, pattern.sha256(0, size), `${what}: sha256 of bytes read back`);
}

/** Valid keys from the issue, each under its own root so none is a directory of another. */
function validKeys(): string[] {
  const long: string[] = ['max'];
  while (long.join('/').length < 1024) {
    const room = 1024 - long.join('/').length - 1;
    long.push('x'.repeat(Math.min(255, room)));
  }
  const maxKey = long.join('/');
  assert.equal(maxKey.length, 1024);
  return [
    'k',
    'k.b.c',
    'k-b',
    'k--b',
    'k_b',
    '__k__',
    '.abc',
    'dot/.abc',
    '...k',
    'deep/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/leaf',
    'MiXeD/CaSe.Key',
    'chars/~=+@-_.',
    'y'.repeat(255),
    maxKey,
  ];
}

const INVALID_KEYS: readonly string[] = [
  '',
  '/',
  '//x',
  'a//b',
  'a/../b',
  '..',
  '.',
  './a',
  'a/./b',
  'a/',
  '/a',
  'a\0b',
  'a\\b',
  'a b',
  'a:b',
  'é',
  'x'.repeat(1025),
  `s/${'x'.repeat(256)}`,
];

const INVALID_PREFIXES: readonly string[] = [
  '/',
  '//x',
  'a//b',
  'a/../b',
  './a',
  '/a',
  'a\0',
  'a\\b',
  'a b',
  'x'.repeat(1025),
];

function method(driver: Driver, name: 'copy' | 'link' | 'signedUrl' | 'usage') {
  const fn = driver[name];
  assert.equal(typeof fn, 'function', `guarded driver lacks ${name}()`);
  return (fn as (...args: unknown[]) => Promise<unknown>).bind(driver);
}

export function driverCases(selection: CaseSelection): DriverCase[] {
  const caps = selection.capabilities;
  const cases: DriverCase[] = [];
  const add = (
    name: string,
    run: (ctx: DriverCaseContext) => Promise<void>,
    timeout = SHORT,
    weaker?: string,
  ) => {
    cases.push(weaker === undefined ? { name, timeout, run } : { name, timeout, run, weaker });
  };

  // ── manifest ────────────────────────────────────────────────────────────────────
  add(
    'manifest: capabilities are booleans, limits are sane, and match the expected manifest',
    async (ctx) => {
      for (const key of ['conditionalWrite', 'signedUrl', 'copy', 'link', 'usage'] as const) {
        assert.equal(typeof ctx.capabilities[key], 'boolean', `capabilities.${key}`);
      }
      const { minPartSize, maxPartSize, maxParts } = ctx.limits;
      assert.ok(Number.isSafeInteger(minPartSize) && minPartSize >= 0, 'limits.minPartSize');
      assert.ok(
        Number.isSafeInteger(maxPartSize) && maxPartSize >= Math.max(1, minPartSize),
        'limits.maxPartSize',
      );
      assert.ok(Number.isSafeInteger(maxParts) && maxParts >= 1, 'limits.maxParts');
      for (const [key, value] of Object.entries(ctx.expectedCapabilities ?? {})) {
        assert.equal(
          ctx.capabilities[key as keyof typeof ctx.capabilities],
          value,
          `capabilities.${key} differs from the expected manifest`,
        );
      }
      const absent = Object.entries(ctx.capabilities)
        .filter(([, v]) => !v)
        .map(([k]) => k);
      ctx.note(`declared absent: ${absent.length ? absent.join(', ') : 'none'}`);
    },
  );

  // ── keys ────────────────────────────────────────────────────────────────────────
  add(
    'keys: valid keys round-trip (single char, dots, dashes, underscores, a--b, .abc segment, deep nesting, mixed case, ~=+@, 255-byte segment, 1024-byte key)',
    async ({ driver }) => {
      const keys = validKeys();
      for (const key of keys) {
        const body = Buffer.from(`content of ${key.slice(0, 40)} (${key.length})`);
        const result = await driver.write(key, body);
        assert.equal(result.size, body.length, `write(${key.slice(0, 40)}).size`);
        assertBytes(await readKey(driver, key), body, `read(${key.slice(0, 40)})`);
        assert.equal((await driver.stat(key))?.size, body.length, `stat(${key.slice(0, 40)}).size`);
      }
      assert.deepEqual(await listAll(driver, ''), sortKeys(keys), 'list("") after writing the valid keys');
      for (const key of keys) assert.equal(await driver.delete(key), true, `delete(${key.slice(0, 40)})`);
      assert.deepEqual(await listAll(driver, ''), [], 'list("") after deleting them');
    },
  );

  add(
    'keys: invalid keys ("", /, //x, a//b, a/../b, ./a, a/, NUL, backslash, over-long, ...) give KEY_INVALID on every method and change nothing',
    async ({ driver }) => {
      await driver.write('ok', Buffer.from('ok'));
      const handle = await driver.createMultipart('ok-mp');
      const one = Buffer.from('x');
      for (const key of INVALID_KEYS) {
        const show = JSON.stringify(key.length > 20 ? `${key.slice(0, 20)}…` : key);
        const calls: [string, () => Promise<unknown>][] = [
          ['stat', () => driver.stat(key)],
          ['read', () => driver.read(key)],
          ['write(bytes)', () => driver.write(key, one)],
          ['write(stream)', () => driver.write(key, streamOf(one))],
          ['write(ifNoneMatch)', () => driver.write(key, one, { ifNoneMatch: '*' })],
          ['delete', () => driver.delete(key)],
          ['createMultipart', () => driver.createMultipart(key)],
          ['uploadPart', () => driver.uploadPart({ ...handle, key }, 1, 0, one, 1)],
          ['completeMultipart', () => driver.completeMultipart({ ...handle, key }, [])],
          ['abortMultipart', () => driver.abortMultipart({ ...handle, key })],
          ['copy(from)', () => method(driver, 'copy')(key, 'ok-copy')],
          ['copy(to)', () => method(driver, 'copy')('ok', key)],
          ['link(from)', () => method(driver, 'link')(key, 'ok-link')],
          ['link(to)', () => method(driver, 'link')('ok', key)],
          ['signedUrl', () => method(driver, 'signedUrl')(key, { expiresIn: 60 })],
        ];
        for (const [name, call] of calls) await rejectsWithCode(call, 'KEY_INVALID', `${name}(${show})`);
      }
      await driver.abortMultipart(handle);
      assert.deepEqual(await listAll(driver, ''), ['ok'], 'invalid-key calls must not create anything');
    },
  );

  add(
    'keys: invalid prefixes and startAfter values give KEY_INVALID on list; a partial last segment is a valid prefix',
    async ({ driver }) => {
      for (const prefix of INVALID_PREFIXES) {
        const show = JSON.stringify(prefix.length > 20 ? `${prefix.slice(0, 20)}…` : prefix);
        await rejectsWithCode(driver.list(prefix), 'KEY_INVALID', `list(${show})`);
        await rejectsWithCode(
          driver.list('', { startAfter: prefix }),
          'KEY_INVALID',
          `list("", startAfter ${show})`,
        );
      }
      await driver.write('pre/fix', Buffer.from('1'));
      for (const prefix of ['', 'p', 'pre', 'pre/', 'pre/f', 'pre/fix']) {
        assert.deepEqual((await driver.list(prefix)).keys, ['pre/fix'], `list(${JSON.stringify(prefix)})`);
      }
      assert.deepEqual((await driver.list('pre/fix/')).keys, [], 'list("pre/fix/")');
    },
  );

  // ── content ─────────────────────────────────────────────────────────────────────
  add(
    'content: write/read of empty, 1 byte, multi-byte UTF-8, non-UTF-8 bytes, 32 random bytes and 1 MiB, as bytes and as a stream',
    async ({ driver }) => {
      const samples: [string, Buffer][] = [
        ['empty', Buffer.alloc(0)],
        ['1 byte', Buffer.from([0x61])],
        ['multi-byte UTF-8', Buffer.from('héllo wörld — ✓ 日本語 😀', 'utf8')],
        [
          'non-UTF-8 bytes',
          Buffer.from([
            0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc, 0x00,
          ]),
        ],
        ['32 random bytes', randomBytes(32)],
        ['1 MiB', new Pattern('content-1m').bytes(0, MiB)],
      ];
      for (const [i, [what, body]] of samples.entries()) {
        for (const mode of ['bytes', 'stream'] as const) {
          const key = `content/${mode}/${i}`;
          const source = mode === 'bytes' ? body : streamOf(body, body.length > 4096 ? 100_003 : 7);
          const result = await driver.write(key, source);
          assert.equal(result.size, body.length, `${what} (${mode}): write result size`);
          assert.equal(typeof result.etag, 'string', `${what} (${mode}): write result etag`);
          assertBytes(await readKey(driver, key), body, `${what} (${mode}): read back`);
          assert.equal((await driver.stat(key))?.size, body.length, `${what} (${mode}): stat size`);
        }
      }
    },
  );

  add(
    'content: a streamed 256 MiB write reads back identical (sha256)',
    async ({ driver }) => {
      const size = 256 * MiB;
      const pattern = new Pattern('content-256m');
      const result = await driver.write('big/object', pattern.stream(0, size, 4 * MiB + 5), { size });
      assert.equal(result.size, size, 'write result size');
      assert.equal((await driver.stat('big/object'))?.size, size, 'stat size');
      await assertContent(driver, 'big/object', pattern, size, '256 MiB object');
    },
    LONG,
  );

  add(
    'content: an overwrite replaces the whole object (1 MiB then 1 KiB reads back exactly 1 KiB)',
    async ({ driver }) => {
      await driver.write('over/write', new Pattern('ow-1').bytes(0, MiB));
      const small = new Pattern('ow-2').bytes(0, KiB);
      await driver.write('over/write', small);
      assertBytes(await readKey(driver, 'over/write'), small, 'read after overwrite');
      assert.equal((await driver.stat('over/write'))?.size, KiB, 'stat size after overwrite');
    },
  );

  add('content: read of a missing key is NOT_FOUND (also at offset 64)', async ({ driver }) => {
    await driver.write('present', Buffer.alloc(128));
    await rejectsWithCode(driver.read('missing/key'), 'NOT_FOUND', 'read(missing)');
    await rejectsWithCode(
      driver.read('missing/key', { offset: 64 }),
      'NOT_FOUND',
      'read(missing, offset 64)',
    );
    await rejectsWithCode(driver.read('presen'), 'NOT_FOUND', 'read of a prefix of an existing key');
    await rejectsWithCode(driver.read('present/x'), 'NOT_FOUND', 'read below an existing key');
  });

  add(
    'content: a body longer or shorter than the declared size is SIZE_INVALID and writes nothing',
    async ({ driver }) => {
      const body = Buffer.from('0123456789');
      await rejectsWithCode(
        driver.write('size/a', body, { size: 11 }),
        'SIZE_INVALID',
        'bytes, size 11 of 10',
      );
      await rejectsWithCode(
        driver.write('size/a', streamOf(body), { size: 11 }),
        'SIZE_INVALID',
        'stream shorter',
      );
      await rejectsWithCode(
        driver.write('size/a', streamOf(body), { size: 9 }),
        'SIZE_INVALID',
        'stream longer',
      );
      assert.equal(await driver.stat('size/a'), null, 'nothing written for a size mismatch');
      await driver.write('size/b', Buffer.from('old'));
      await rejectsWithCode(
        driver.write('size/b', streamOf(body), { size: 5 }),
        'SIZE_INVALID',
        'overwrite longer',
      );
      assertBytes(
        await readKey(driver, 'size/b'),
        Buffer.from('old'),
        'old object kept after a size mismatch',
      );
      assert.deepEqual(await listAll(driver, ''), ['size/b'], 'no stray keys');
    },
  );

  // ── ranges ──────────────────────────────────────────────────────────────────────
  const ranged = async (driver: Driver) => {
    const data = new Pattern('range-96').bytes(0, 96);
    await driver.write('r/96', data);
    return data;
  };

  add('ranges: offsets 0, 32 and 64 of a 96-byte object, with and without length', async ({ driver }) => {
    const data = await ranged(driver);
    for (const offset of [0, 32, 64]) {
      assertBytes(await readKey(driver, 'r/96', { offset }), data.subarray(offset), `offset ${offset}`);
      assertBytes(
        await readKey(driver, 'r/96', { offset, length: 32 }),
        data.subarray(offset, offset + 32),
        `offset ${offset} length 32`,
      );
    }
  });

  add('ranges: offset == size gives an empty stream (also with a length)', async ({ driver }) => {
    await ranged(driver);
    assert.equal((await readKey(driver, 'r/96', { offset: 96 })).length, 0, 'offset 96 of 96');
    assert.equal(
      (await readKey(driver, 'r/96', { offset: 96, length: 10 })).length,
      0,
      'offset 96 length 10',
    );
    await driver.write('r/empty', Buffer.alloc(0));
    assert.equal((await readKey(driver, 'r/empty', { offset: 0 })).length, 0, 'offset 0 of an empty object');
  });

  add('ranges: an offset past the end is RANGE_INVALID', async ({ driver }) => {
    await ranged(driver);
    await rejectsWithCode(driver.read('r/96', { offset: 97 }), 'RANGE_INVALID', 'offset 97 of 96');
    await rejectsWithCode(driver.read('r/96', { offset: 1 << 30 }), 'RANGE_INVALID', 'offset 1 GiB of 96');
    await driver.write('r/empty', Buffer.alloc(0));
    await rejectsWithCode(
      driver.read('r/empty', { offset: 1 }),
      'RANGE_INVALID',
      'offset 1 of an empty object',
    );
  });

  add('ranges: a negative or fractional offset or length is RANGE_INVALID', async ({ driver }) => {
    await ranged(driver);
    await rejectsWithCode(driver.read('r/96', { offset: -1 }), 'RANGE_INVALID', 'offset -1');
    await rejectsWithCode(driver.read('r/96', { offset: 1.5 }), 'RANGE_INVALID', 'offset 1.5');
    await rejectsWithCode(driver.read('r/96', { length: -1 }), 'RANGE_INVALID', 'length -1');
    await rejectsWithCode(driver.read('r/96', { offset: 0, length: 2.5 }), 'RANGE_INVALID', 'length 2.5');
    await rejectsWithCode(driver.read('r/96', { offset: Number.NaN }), 'RANGE_INVALID', 'offset NaN');
  });

  add('ranges: length is clipped at the end of the object; length 0 is empty', async ({ driver }) => {
    const data = await ranged(driver);
    assertBytes(
      await readKey(driver, 'r/96', { offset: 80, length: 100 }),
      data.subarray(80),
      'offset 80 length 100',
    );
    assertBytes(await readKey(driver, 'r/96', { length: 1000 }), data, 'length 1000 from 0');
    assert.equal((await readKey(driver, 'r/96', { offset: 10, length: 0 })).length, 0, 'length 0');
  });

  add('ranges: a last-byte read returns exactly the last byte', async ({ driver }) => {
    const data = await ranged(driver);
    assertBytes(await readKey(driver, 'r/96', { offset: 95 }), data.subarray(95), 'offset 95');
    assertBytes(
      await readKey(driver, 'r/96', { offset: 95, length: 1 }),
      data.subarray(95),
      'offset 95 length 1',
    );
  });

  add(
    'ranges: unaligned ranges deep inside a 3 MiB object return exactly those bytes',
    async ({ driver }) => {
      const size = 3 * MiB + 17;
      const pattern = new Pattern('range-3m');
      await driver.write('r/3m', pattern.stream(0, size, 256 * KiB + 1));
      const ranges: [number, number][] = [
        [1, 1],
        [MiB - 1, 2],
        [MiB + 12_345, MiB + 7],
        [2 * MiB + 3, size],
        [size - 17, 17],
        [4095, 4097],
      ];
      for (const [offset, length] of ranges) {
        const got = await hashStream(await driver.read('r/3m', { offset, length }));
        const expected = Math.min(length, size - offset);
        assert.equal(got.size, expected, `offset ${offset} length ${length}: size`);
        assert.equal(
          got.sha256,
          pattern.sha256(offset, expected),
          `offset ${offset} length ${length}: bytes`,
        );
      }
    },
  );

  // ── atomicity ───────────────────────────────────────────────────────────────────
  add(
    'atomicity: readers during a large overwrite see the whole old or the whole new object, never a mix or a part',
    async ({ driver, note }) => {
      const oldPattern = new Pattern('atomic-old');
      const newPattern = new Pattern('atomic-new');
      const oldSize = 8 * MiB;
      const newSize = 16 * MiB;
      await driver.write('atomic/obj', oldPattern.stream(0, oldSize));
      const allowed = new Map([
        [oldPattern.sha256(0, oldSize), 'old'],
        [newPattern.sha256(0, newSize), 'new'],
      ]);
      let writing = true;
      const write = driver.write('atomic/obj', newPattern.stream(0, newSize, 512 * KiB, 2)).finally(() => {
        writing = false;
      });
      const seen: string[] = [];
      const reader = async () => {
        while (writing) {
          // Let the event loop turn: reads of an in-memory object never leave the
          // microtask queue, and would starve the paced writer's timers.
          await sleep(1);
          const got = await hashStream(await driver.read('atomic/obj'));
          const which = allowed.get(got.sha256);
          assert.ok(which, `a reader saw ${got.size} bytes that are neither the old nor the new object`);
          seen.push(which);
          const stat = await driver.stat('atomic/obj');
          assert.ok(stat && (stat.size === oldSize || stat.size === newSize), `stat saw size ${stat?.size}`);
        }
      };
      await Promise.all([write, reader(), reader()]);
      assert.ok(seen.length >= 2, `readers overlapped the write only ${seen.length} times`);
      await assertContent(driver, 'atomic/obj', newPattern, newSize, 'after the overwrite');
      note(
        `${seen.length} reads during the write: ${seen.filter((s) => s === 'old').length} old, ${seen.filter((s) => s === 'new').length} new`,
      );
    },
    LONG,
  );

  add(
    'atomicity: a write whose source stream fails leaves the old object untouched, a new key absent, and no stray keys',
    async ({ driver }) => {
      const old = new Pattern('src-fail-old').bytes(0, MiB);
      await driver.write('fail/existing', old);
      const chunks = [...new Pattern('src-fail-new').chunks(0, 768 * KiB, 256 * KiB)];
      await rejects(
        driver.write('fail/existing', failingStream(chunks, new Error('source broke'))),
        'overwrite',
      );
      await rejects(driver.write('fail/new', failingStream(chunks, new Error('source broke'))), 'new key');
      assertBytes(await readKey(driver, 'fail/existing'), old, 'old object after a failed overwrite');
      assert.equal(await driver.stat('fail/new'), null, 'new key after a failed write');
      assert.deepEqual(await listAll(driver, ''), ['fail/existing'], 'keys after failed writes');
    },
  );

  add(
    'atomicity: a write aborted by its AbortSignal mid-stream rejects ABORTED, leaves the old object untouched and no stray keys',
    async ({ driver }) => {
      const old = new Pattern('abort-old').bytes(0, MiB);
      await driver.write('abort/existing', old);
      for (const key of ['abort/existing', 'abort/new']) {
        const controller = new AbortController();
        const pattern = new Pattern('abort-new');
        async function* body() {
          let n = 0;
          for (const chunk of pattern.chunks(0, 4 * MiB, 128 * KiB)) {
            if (++n === 4) controller.abort(new Error('client went away'));
            await sleep(1);
            yield chunk;
          }
        }
        await rejectsWithCode(
          driver.write(key, body(), { signal: controller.signal }),
          'ABORTED',
          `write(${key})`,
        );
      }
      assertBytes(await readKey(driver, 'abort/existing'), old, 'old object after an aborted overwrite');
      assert.equal(await driver.stat('abort/new'), null, 'new key after an aborted write');
      assert.deepEqual(await listAll(driver, ''), ['abort/existing'], 'keys after aborted writes');
    },
  );

  // ── conditional writes ──────────────────────────────────────────────────────────
  add(
    "conditional: ifNoneMatch '*' on an existing key is PRECONDITION_FAILED and keeps the object; on a missing key it creates",
    async ({ driver }) => {
      const created = await driver.write('cond/a', Buffer.from('first'), { ifNoneMatch: '*' });
      assert.equal(created.size, 5);
      await rejectsWithCode(
        driver.write('cond/a', Buffer.from('second'), { ifNoneMatch: '*' }),
        'PRECONDITION_FAILED',
        'ifNoneMatch on an existing key',
      );
      await rejectsWithCode(
        driver.write('cond/a', streamOf(Buffer.from('third')), { ifNoneMatch: '*' }),
        'PRECONDITION_FAILED',
        'ifNoneMatch (stream body) on an existing key',
      );
      assertBytes(await readKey(driver, 'cond/a'), Buffer.from('first'), 'object after refused writes');
      assert.equal((await driver.stat('cond/a'))?.etag, created.etag, 'etag unchanged');
    },
  );

  add(
    'conditional: ifMatch with the current etag replaces; a stale etag or a missing key is PRECONDITION_FAILED',
    async ({ driver }) => {
      const v1 = await driver.write('cond/m', Buffer.from('v1'));
      const v2 = await driver.write('cond/m', Buffer.from('v2'), { ifMatch: v1.etag });
      assert.notEqual(v2.etag, v1.etag, 'etag after a replace');
      await rejectsWithCode(
        driver.write('cond/m', Buffer.from('v3'), { ifMatch: v1.etag }),
        'PRECONDITION_FAILED',
        'ifMatch with a stale etag',
      );
      await rejectsWithCode(
        driver.write('cond/missing', Buffer.from('x'), { ifMatch: v1.etag }),
        'PRECONDITION_FAILED',
        'ifMatch on a missing key',
      );
      assertBytes(await readKey(driver, 'cond/m'), Buffer.from('v2'), 'object after a refused ifMatch');
      assert.equal(await driver.stat('cond/missing'), null, 'missing key stays missing');
    },
  );

  add(
    'barrier: a write with notBefore publishes nothing until it fulfils; a rejected one fails the write with its reason and leaves the key as it was',
    async ({ driver }) => {
      const v1 = await driver.write('barrier/k', Buffer.from('v1'));
      // Conditional where the driver enforces it: the record swaps that use barriers are.
      const condition = (etag: string) => (caps.conditionalWrite ? { ifMatch: etag } : {});
      const gate = deferred();
      let returned = false;
      const writing = driver.write('barrier/k', Buffer.from('v2'), {
        ...condition(v1.etag),
        notBefore: gate.promise,
      });
      writing.then(
        () => {
          returned = true;
        },
        () => {
          returned = true;
        },
      );
      await sleep(50);
      assert.equal(returned, false, 'the write returned before its barrier passed');
      assertBytes(await readKey(driver, 'barrier/k'), Buffer.from('v1'), 'object while the barrier holds');
      gate.resolve();
      const v2 = await writing;
      assertBytes(await readKey(driver, 'barrier/k'), Buffer.from('v2'), 'object once the barrier passed');
      assert.equal((await driver.stat('barrier/k'))?.etag, v2.etag, 'etag of the write behind the barrier');

      const refused = new BlobcoreError('UNAVAILABLE', 'the bytes this write depends on were lost');
      const failing = sleep(20).then(() => Promise.reject(refused));
      failing.catch(() => {}); // the driver may look at it only after it rejects
      const error = await rejects(
        driver.write('barrier/k', Buffer.from('v3'), { ...condition(v2.etag), notBefore: failing }),
        'a write behind a rejected barrier',
      );
      assert.equal(error, refused, 'the write fails with the barrier’s own error');
      assertBytes(await readKey(driver, 'barrier/k'), Buffer.from('v2'), 'object after a rejected barrier');
      // Nothing left held: the next write of the key goes through at once.
      await within(driver.write('barrier/k', Buffer.from('v4'), condition(v2.etag)), 5_000, 'the next write');
      assertBytes(await readKey(driver, 'barrier/k'), Buffer.from('v4'), 'object after the next write');
    },
  );

  const racers = 16;
  const raceBody = (i: number) => new Pattern(`race-${i}`).stream(0, 256 * KiB, 32 * KiB, 1);
  const raceHash = (i: number) => new Pattern(`race-${i}`).sha256(0, 256 * KiB);
  const settleRace = async (
    driver: Driver,
    key: string,
    results: PromiseSettledResult<unknown>[],
    exactlyOne: boolean,
  ) => {
    const winners: number[] = [];
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') winners.push(i);
      else assertCode(result.reason, 'PRECONDITION_FAILED', `losing writer ${i}`);
    });
    if (exactlyOne) assert.equal(winners.length, 1, `${winners.length} of ${racers} writers won`);
    else assert.ok(winners.length >= 1, 'no writer won');
    const final = await hashStream(await driver.read(key));
    const whole = winners.filter((i) => raceHash(i) === final.sha256);
    assert.equal(whole.length, 1, "the final object is not one winning writer's whole content");
    return winners.length;
  };

  if (caps.conditionalWrite) {
    add(
      `conditional: ${racers} concurrent create-only (ifNoneMatch) writers → exactly one wins`,
      async ({ driver }) => {
        const results = await Promise.allSettled(
          Array.from({ length: racers }, (_, i) =>
            driver.write('race/create', raceBody(i), { ifNoneMatch: '*' }),
          ),
        );
        await settleRace(driver, 'race/create', results, true);
      },
    );
    add(
      `conditional: ${racers} concurrent ifMatch writers on one etag → exactly one wins`,
      async ({ driver }) => {
        const base = await driver.write('race/match', Buffer.from('base'));
        const results = await Promise.allSettled(
          Array.from({ length: racers }, (_, i) =>
            driver.write('race/match', raceBody(i), { ifMatch: base.etag }),
          ),
        );
        await settleRace(driver, 'race/match', results, true);
      },
    );
  } else {
    const why = 'capabilities.conditionalWrite is false: concurrent conditional writes are best-effort';
    add(
      `conditional (weaker): ${racers} concurrent create-only writers → at least one wins and the object is one writer's whole content`,
      async ({ driver, note }) => {
        const results = await Promise.allSettled(
          Array.from({ length: racers }, (_, i) =>
            driver.write('race/create', raceBody(i), { ifNoneMatch: '*' }),
          ),
        );
        note(`${await settleRace(driver, 'race/create', results, false)} of ${racers} writers won`);
      },
      SHORT,
      why,
    );
    add(
      `conditional (weaker): ${racers} concurrent ifMatch writers → at least one wins and the object is one writer's whole content`,
      async ({ driver, note }) => {
        const base = await driver.write('race/match', Buffer.from('base'));
        const results = await Promise.allSettled(
          Array.from({ length: racers }, (_, i) =>
            driver.write('race/match', raceBody(i), { ifMatch: base.etag }),
          ),
        );
        note(`${await settleRace(driver, 'race/match', results, false)} of ${racers} writers won`);
      },
      SHORT,
      why,
    );
  }

  // ── stat ────────────────────────────────────────────────────────────────────────
  add(
    'stat: size, etag and modified of a written object match the write; a missing key is null',
    async ({ driver }) => {
      assert.equal(await driver.stat('stat/missing'), null, 'stat of a missing key');
      const before = Date.now();
      const result = await driver.write('stat/obj', new Pattern('stat').bytes(0, 1234));
      const after = Date.now();
      const stat = await driver.stat('stat/obj');
      assert.ok(stat, 'stat of a written key');
      assert.equal(stat.size, 1234, 'stat.size');
      assert.equal(stat.etag, result.etag, 'stat.etag equals the write result etag');
      assert.ok(
        stat.modified instanceof Date && Number.isFinite(stat.modified.getTime()),
        'stat.modified is a Date',
      );
      const skew = 120_000;
      assert.ok(
        stat.modified.getTime() >= before - skew && stat.modified.getTime() <= after + skew,
        `stat.modified ${stat.modified.toISOString()} is not near the write time`,
      );
      assert.equal(await driver.stat('stat'), null, 'stat of a prefix of a key');
    },
  );

  add('stat: the etag changes on every rewrite and modified does not go backwards', async ({ driver }) => {
    const etags = new Set<string>();
    let modified = 0;
    for (let i = 0; i < 3; i++) {
      const result = await driver.write('stat/re', new Pattern(`stat-re-${i}`).bytes(0, 64));
      const stat = await driver.stat('stat/re');
      assert.ok(stat, 'stat after rewrite');
      assert.equal(stat.etag, result.etag, 'stat.etag equals the write result etag');
      etags.add(stat.etag);
      assert.ok(stat.modified.getTime() >= modified, 'modified went backwards');
      modified = stat.modified.getTime();
    }
    assert.equal(etags.size, 3, 'three rewrites gave fewer than three etags');
  });

  // ── delete ──────────────────────────────────────────────────────────────────────
  add('delete: a missing key gives false; an existing key gives true and is gone', async ({ driver }) => {
    assert.equal(await driver.delete('del/missing'), false, 'delete of a missing key');
    await driver.write('del/x', Buffer.from('x'));
    assert.equal(await driver.delete('del/x'), true, 'delete of an existing key');
    assert.equal(await driver.stat('del/x'), null, 'stat after delete');
    await rejectsWithCode(driver.read('del/x'), 'NOT_FOUND', 'read after delete');
    assert.equal(await driver.delete('del/x'), false, 'second delete');
    assert.deepEqual(await listAll(driver, ''), [], 'list after delete');
  });

  add(
    'delete: a lazy delete (may be undone by a crash) is visible at once like any other',
    async ({ driver }) => {
      await driver.write('lazy/x', Buffer.from('x'));
      assert.equal(await driver.delete('lazy/x', { lazy: true }), true, 'lazy delete of an existing key');
      assert.equal(await driver.stat('lazy/x'), null, 'stat after a lazy delete');
      await rejectsWithCode(driver.read('lazy/x'), 'NOT_FOUND', 'read after a lazy delete');
      assert.deepEqual(await listAll(driver, 'lazy/'), [], 'list after a lazy delete');
      assert.equal(await driver.delete('lazy/x', { lazy: true }), false, 'lazy delete of a missing key');
    },
  );

  add('delete: deleting d/f keeps d/fsuffix, d/fx/y and d/e', async ({ driver }) => {
    for (const key of ['d/e', 'd/f', 'd/fsuffix', 'd/fx/y']) await driver.write(key, Buffer.from(key));
    assert.equal(await driver.delete('d/f'), true);
    assert.equal(await driver.delete('d/fx'), false, 'delete of a "directory" prefix is a missing key');
    assert.deepEqual(await listAll(driver, ''), ['d/e', 'd/fsuffix', 'd/fx/y'], 'keys after deleting d/f');
    assertBytes(await readKey(driver, 'd/fsuffix'), Buffer.from('d/fsuffix'), 'd/fsuffix content');
  });

  // ── list ────────────────────────────────────────────────────────────────────────
  add('list: an empty prefix on an empty store gives no keys and no cursor', async ({ driver }) => {
    const page = await driver.list('');
    assert.deepEqual(page.keys, [], 'keys');
    assert.equal(page.cursor, undefined, 'cursor');
    assert.deepEqual((await driver.list('nothing/')).keys, [], 'missing prefix');
  });

  add(
    'list: 1,005 keys paged with limit + startAfter come back complete, once each, in byte order',
    async ({ driver }) => {
      const keys = Array.from({ length: 1005 }, (_, i) => `many/k${String(i).padStart(4, '0')}`);
      await pool(keys, 32, (key) => driver.write(key, Buffer.from(key)));
      for (const noise of ['man', 'manz', 'other/x']) await driver.write(noise, Buffer.from(noise));
      assert.deepEqual(await listAll(driver, 'many/', 100), keys, 'limit 100');
      assert.deepEqual(await listAll(driver, 'many/', 333), keys, 'limit 333');
      assert.deepEqual(await listAll(driver, 'many/'), keys, 'default limit');
      const first = await driver.list('many/');
      assert.ok(first.keys.length <= 1000, 'a page holds at most 1000 keys');
      assert.ok(first.cursor !== undefined, 'a cursor when more keys follow');
      const after = await driver.list('many/', { startAfter: 'many/k0500', limit: 2 });
      assert.deepEqual(after.keys, ['many/k0501', 'many/k0502'], 'startAfter an existing key');
      const between = await driver.list('many/', { startAfter: 'many/k0500x', limit: 1 });
      assert.deepEqual(between.keys, ['many/k0501'], 'startAfter between two keys');
      const end = await driver.list('many/', { startAfter: 'many/k1004' });
      assert.deepEqual(end.keys, [], 'startAfter the last key');
      assert.equal(end.cursor, undefined, 'no cursor after the last key');
      assert.deepEqual(await listAll(driver, 'man', 250), ['man', ...keys, 'manz'], 'prefix "man"');
    },
    LONG,
  );

  add('list: prefix boundaries (d/f vs d/fsuffix vs d/fx/ vs d/)', async ({ driver }) => {
    for (const key of ['d/e', 'd/f', 'd/fsuffix', 'd/fx/y', 'd/g', 'e', 'dd'])
      await driver.write(key, Buffer.from(key));
    const cases: [string, string[]][] = [
      ['d/f', ['d/f', 'd/fsuffix', 'd/fx/y']],
      ['d/fs', ['d/fsuffix']],
      ['d/fx/', ['d/fx/y']],
      ['d/fx', ['d/fx/y']],
      ['d/', ['d/e', 'd/f', 'd/fsuffix', 'd/fx/y', 'd/g']],
      ['d', ['d/e', 'd/f', 'd/fsuffix', 'd/fx/y', 'd/g', 'dd']],
      ['d/f/', []],
      ['', ['d/e', 'd/f', 'd/fsuffix', 'd/fx/y', 'd/g', 'dd', 'e']],
    ];
    for (const [prefix, expected] of cases) {
      assert.deepEqual(await listAll(driver, prefix), expected, `list(${JSON.stringify(prefix)})`);
      assert.deepEqual(
        await listAll(driver, prefix, 1),
        expected,
        `list(${JSON.stringify(prefix)}), limit 1`,
      );
    }
  });

  add(
    "list: order is by bytes across '+', '-', '.', '/', digits, '=', '@', capitals, '_' and '~'",
    async ({ driver }) => {
      const keys = [
        'ord/a~',
        'ord/a/b',
        'ord/a.b',
        'ord/a-b',
        'ord/a0',
        'ord/aA',
        'ord/a_b',
        'ord/a+b',
        'ord/a=b',
        'ord/a@b',
      ];
      for (const key of keys) await driver.write(key, Buffer.from(key));
      const expected = sortKeys(keys);
      assert.deepEqual(
        expected,
        [
          'ord/a+b',
          'ord/a-b',
          'ord/a.b',
          'ord/a/b',
          'ord/a0',
          'ord/a=b',
          'ord/a@b',
          'ord/aA',
          'ord/a_b',
          'ord/a~',
        ],
        'byte order sanity',
      );
      assert.deepEqual(await listAll(driver, 'ord/'), expected, 'one page');
      assert.deepEqual(await listAll(driver, 'ord/', 3), expected, 'pages of 3');
      assert.deepEqual(await listAll(driver, 'ord/a', 1), expected, 'pages of 1');
    },
  );

  add('list: keys deleted mid-listing (including the cursor key) do not break paging', async ({ driver }) => {
    const keys = Array.from({ length: 50 }, (_, i) => `mid/k${String(i).padStart(2, '0')}`);
    await pool(keys, 16, (key) => driver.write(key, Buffer.from(key)));
    const first = await driver.list('mid/', { limit: 10 });
    assert.deepEqual(first.keys, keys.slice(0, 10), 'first page');
    assert.ok(first.cursor, 'cursor after the first page');
    const deleted = ['mid/k09', 'mid/k10', 'mid/k11', 'mid/k25', 'mid/k49'];
    for (const key of deleted) assert.equal(await driver.delete(key), true);
    const rest: string[] = [];
    let startAfter: string | undefined = first.cursor;
    for (let pages = 0; startAfter !== undefined; pages++) {
      assert.ok(pages < 100, 'paging did not end');
      const page: Awaited<ReturnType<Driver['list']>> = await driver.list('mid/', { startAfter, limit: 10 });
      rest.push(...page.keys);
      startAfter = page.cursor;
    }
    const expected = keys.slice(10).filter((k) => !deleted.includes(k));
    assert.deepEqual(rest, expected, 'keys after the deletions');
  });

  // ── multipart ───────────────────────────────────────────────────────────────────
  add(
    'multipart: three parts uploaded in order (bytes and stream bodies) publish the concatenation',
    async ({ driver, limits }) => {
      const sizes = partSizes(limits, 2, 12_345);
      const pattern = new Pattern('mp-order');
      const handle = await driver.createMultipart('mp/obj');
      assert.equal(handle.key, 'mp/obj', 'handle.key');
      const refs: PartRef[] = [];
      for (let i = 0; i < sizes.length; i++)
        refs.push(await uploadPattern(driver, handle, pattern, sizes, i, i === 1));
      assert.equal(await driver.stat('mp/obj'), null, 'the object is invisible before completion');
      assert.deepEqual(await listAll(driver, ''), [], 'staged parts are not listed');
      const result = await driver.completeMultipart(handle, refs);
      assert.equal(result.size, total(sizes), 'completeMultipart size');
      assert.equal((await driver.stat('mp/obj'))?.etag, result.etag, 'stat etag equals the completion etag');
      await assertContent(driver, 'mp/obj', pattern, total(sizes), 'multipart object');
      assert.deepEqual(await listAll(driver, ''), ['mp/obj'], 'only the object is listed');
    },
  );

  add('multipart: parts uploaded out of order (3, 1, 2), completed in order', async ({ driver, limits }) => {
    const sizes = partSizes(limits, 2, 999);
    const pattern = new Pattern('mp-shuffle');
    const handle = await driver.createMultipart('mp/shuffle');
    const refs: PartRef[] = [];
    for (const i of [2, 0, 1]) refs[i] = await uploadPattern(driver, handle, pattern, sizes, i);
    await driver.completeMultipart(handle, refs);
    await assertContent(driver, 'mp/shuffle', pattern, total(sizes), 'out-of-order multipart object');
  });

  add('multipart: re-uploading a part replaces it', async ({ driver, limits }) => {
    const sizes = partSizes(limits, 1, 4321);
    const first = new Pattern('mp-re-1');
    const second = new Pattern('mp-re-2');
    const handle = await driver.createMultipart('mp/re');
    const part1 = await uploadPattern(driver, handle, second, sizes, 0);
    await uploadPattern(driver, handle, first, sizes, 1);
    const part2 = await uploadPattern(driver, handle, second, sizes, 1);
    await driver.completeMultipart(handle, [part1, part2]);
    await assertContent(driver, 'mp/re', second, total(sizes), 'object after a part re-upload');
  });

  add('multipart: a zero-byte object through a single empty part', async ({ driver }) => {
    const handle = await driver.createMultipart('mp/zero');
    const ref = await driver.uploadPart(handle, 1, 0, new Uint8Array(0), 0);
    const result = await driver.completeMultipart(handle, [ref]);
    assert.equal(result.size, 0, 'completion size');
    assert.equal((await driver.stat('mp/zero'))?.size, 0, 'stat size');
    assert.equal((await readKey(driver, 'mp/zero')).length, 0, 'read back');
  });

  const minPart = (limits: DriverLimits) => limits.minPartSize;
  add(
    'multipart: a non-final part below minPartSize is refused at completion (SIZE_INVALID), nothing visible; a part over maxPartSize is SIZE_INVALID',
    async ({ driver, limits, note }) => {
      const handle = await driver.createMultipart('mp/small');
      const pattern = new Pattern('mp-small');
      if (minPart(limits) > 1) {
        const sizes = [minPart(limits) - 1, 10];
        const refs = [
          await uploadPattern(driver, handle, pattern, sizes, 0),
          await uploadPattern(driver, handle, pattern, sizes, 1),
        ];
        await rejectsWithCode(
          driver.completeMultipart(handle, refs),
          'SIZE_INVALID',
          'completion with a short part',
        );
        assert.equal(await driver.stat('mp/small'), null, 'nothing visible after a refused completion');
        await driver.abortMultipart(handle);
      } else {
        note(`minPartSize is ${minPart(limits)}: small non-final parts are accepted`);
        const sizes = [1, 1, 1];
        const refs = [0, 1, 2];
        const done = [];
        for (const i of refs) done.push(await uploadPattern(driver, handle, pattern, sizes, i));
        await driver.completeMultipart(handle, done);
        await assertContent(driver, 'mp/small', pattern, 3, 'object of 1-byte parts');
      }
      const big = await driver.createMultipart('mp/big');
      await rejectsWithCode(
        driver.uploadPart(big, 1, 0, new Uint8Array(0), limits.maxPartSize + 1),
        'SIZE_INVALID',
        'a part declared over maxPartSize',
      );
      await rejectsWithCode(
        driver.uploadPart(big, limits.maxParts + 1, 0, new Uint8Array(0), 0),
        'RANGE_INVALID',
        'a part number over maxParts',
      );
      await rejectsWithCode(
        driver.uploadPart(big, 0, 0, new Uint8Array(0), 0),
        'RANGE_INVALID',
        'part number 0',
      );
      await driver.abortMultipart(big);
    },
  );

  add(
    'multipart: abort leaves nothing; the handle cannot be completed afterwards; a second abort is fine',
    async ({ driver, limits }) => {
      const sizes = partSizes(limits, 1, 100);
      const pattern = new Pattern('mp-abort');
      const handle = await driver.createMultipart('mp/aborted');
      const refs = [
        await uploadPattern(driver, handle, pattern, sizes, 0),
        await uploadPattern(driver, handle, pattern, sizes, 1),
      ];
      await driver.abortMultipart(handle);
      assert.equal(await driver.stat('mp/aborted'), null, 'no object after abort');
      assert.deepEqual(await listAll(driver, ''), [], 'no keys after abort');
      const error = await rejects(driver.completeMultipart(handle, refs), 'completing an aborted upload');
      assert.ok(
        error instanceof BlobcoreError,
        'completing an aborted upload must fail with a BlobcoreError',
      );
      assert.equal(await driver.stat('mp/aborted'), null, 'still no object');
      await driver.abortMultipart(handle);
    },
  );

  add(
    'multipart: handle and part refs survive JSON; parts uploaded and completed from a fresh driver instance',
    async ({ driver, reopen, limits }) => {
      const sizes = partSizes(limits, 2, 777);
      const pattern = new Pattern('mp-json');
      const handle = await driver.createMultipart('mp/json');
      const part1 = await uploadPattern(driver, handle, pattern, sizes, 0);
      const saved = JSON.stringify({ handle, parts: [part1] });
      const other = await reopen();
      const restored = JSON.parse(saved) as { handle: MultipartHandle; parts: PartRef[] };
      const part2 = await uploadPattern(other, restored.handle, pattern, sizes, 1);
      const part3 = await uploadPattern(other, restored.handle, pattern, sizes, 2, true);
      const refs = JSON.parse(JSON.stringify([...restored.parts, part2, part3])) as PartRef[];
      await other.completeMultipart(restored.handle, refs);
      await assertContent(driver, 'mp/json', pattern, total(sizes), 'read from the first instance');
      await assertContent(other, 'mp/json', pattern, total(sizes), 'read from the second instance');
    },
  );

  add(
    'multipart: completion replaces an existing object atomically; until then the old object is served',
    async ({ driver, limits }) => {
      const old = Buffer.from('old object');
      const oldResult = await driver.write('mp/replace', old);
      const sizes = partSizes(limits, 1, 50);
      const pattern = new Pattern('mp-replace');
      const handle = await driver.createMultipart('mp/replace');
      const refs = [
        await uploadPattern(driver, handle, pattern, sizes, 0),
        await uploadPattern(driver, handle, pattern, sizes, 1),
      ];
      assert.equal((await driver.stat('mp/replace'))?.etag, oldResult.etag, 'old object before completion');
      assertBytes(await readKey(driver, 'mp/replace'), old, 'old bytes before completion');
      await driver.completeMultipart(handle, refs);
      await assertContent(driver, 'mp/replace', pattern, total(sizes), 'after completion');
    },
  );

  // ── concurrency ─────────────────────────────────────────────────────────────────
  add(
    'concurrency: 10 concurrent ranged readers of a 128 MiB object get exactly their ranges',
    async ({ driver }) => {
      const size = 128 * MiB;
      const pattern = new Pattern('conc-read');
      await driver.write('conc/big', pattern.stream(0, size, 8 * MiB), { size });
      const random = prng(42);
      const ranges: [number, number][] = [
        [0, size],
        [size - 1, 1],
        [size - 5 * MiB - 3, 10 * MiB],
      ];
      while (ranges.length < 10) {
        const offset = Math.floor(random() * size);
        ranges.push([offset, Math.max(1, Math.floor(random() * 16 * MiB))]);
      }
      await Promise.all(
        ranges.map(async ([offset, length]) => {
          const got = await hashStream(await driver.read('conc/big', { offset, length }));
          const expected = Math.min(length, size - offset);
          assert.equal(got.size, expected, `reader at ${offset}+${length}: size`);
          assert.equal(got.sha256, pattern.sha256(offset, expected), `reader at ${offset}+${length}: bytes`);
        }),
      );
    },
    LONG,
  );

  add(
    'concurrency: 32 concurrent 8 MiB streamed writes all land intact',
    async ({ driver }) => {
      const size = 8 * MiB;
      const writers = Array.from({ length: 32 }, (_, i) => i);
      await Promise.all(
        writers.map((i) =>
          driver.write(
            `conc/w${String(i).padStart(2, '0')}`,
            new Pattern(`w${i}`).stream(0, size, 512 * KiB),
          ),
        ),
      );
      assert.equal((await listAll(driver, 'conc/')).length, 32, 'objects listed');
      await pool(writers, 4, async (i) => {
        await assertContent(
          driver,
          `conc/w${String(i).padStart(2, '0')}`,
          new Pattern(`w${i}`),
          size,
          `writer ${i}`,
        );
      });
    },
    LONG,
  );

  // ── optional capabilities ───────────────────────────────────────────────────────
  if (caps.signedUrl) {
    add('signedUrl: a GET of the URL (fetch/undici) returns the bytes', async ({ driver }) => {
      const body = new Pattern('signed').bytes(0, 10_000);
      await driver.write('signed/obj', body);
      const url = await method(driver, 'signedUrl')('signed/obj', { expiresIn: 300 });
      assert.equal(typeof url, 'string');
      const response = await fetch(url as string);
      assert.equal(response.status, 200, 'status of a GET of the signed URL');
      assertBytes(Buffer.from(await response.arrayBuffer()), body, 'bytes from the signed URL');
    });
    add('signedUrl: a tampered URL (other key, altered signature) is refused', async ({ driver }) => {
      await driver.write('signed/obj', Buffer.from('secret one'));
      await driver.write('signed/obk', Buffer.from('secret two'));
      const url = (await method(driver, 'signedUrl')('signed/obj', { expiresIn: 300 })) as string;
      const otherKey = url.replace('signed/obj', 'signed/obk');
      assert.notEqual(otherKey, url, 'the key appears in the URL');
      const last = url.at(-1) ?? 'a';
      const flipped = url.slice(0, -1) + (last === 'a' ? 'b' : last === '0' ? '1' : 'a');
      for (const [what, tampered] of [
        ['another key', otherKey],
        ['altered last character', flipped],
      ] as const) {
        const response = await fetch(tampered);
        await response.arrayBuffer();
        assert.ok(response.status >= 400, `${what}: status ${response.status}, expected a refusal`);
      }
    });
    add(
      'signedUrl: an expired URL is refused',
      async ({ driver }) => {
        await driver.write('signed/obj', Buffer.from('short-lived'));
        const url = (await method(driver, 'signedUrl')('signed/obj', { expiresIn: 1 })) as string;
        await sleep(2500);
        const response = await fetch(url);
        await response.arrayBuffer();
        assert.ok(response.status >= 400, `status ${response.status} for an expired URL`);
      },
      SHORT,
    );
  } else {
    add(
      'signedUrl: not declared → signedUrl() rejects UNSUPPORTED',
      async ({ driver }) => {
        await driver.write('signed/obj', Buffer.from('x'));
        await rejectsWithCode(
          method(driver, 'signedUrl')('signed/obj', { expiresIn: 60 }),
          'UNSUPPORTED',
          'signedUrl',
        );
      },
      SHORT,
      'capabilities.signedUrl is false: URL GET, tamper and expiry cases replaced by the UNSUPPORTED check',
    );
  }

  if (caps.copy) {
    add(
      'copy: copies the bytes to a new key (or over an existing one); the source is unchanged; a missing source is NOT_FOUND',
      async ({ driver }) => {
        const body = new Pattern('copy').bytes(0, 100_000);
        await driver.write('copy/src', body);
        const result = await method(driver, 'copy')('copy/src', 'copy/dst');
        assert.equal((result as { size: number }).size, body.length, 'copy result size');
        assertBytes(await readKey(driver, 'copy/dst'), body, 'copied bytes');
        await driver.write('copy/over', Buffer.from('old'));
        await method(driver, 'copy')('copy/src', 'copy/over');
        assertBytes(await readKey(driver, 'copy/over'), body, 'copy over an existing key');
        await driver.write('copy/src', Buffer.from('changed'));
        assertBytes(await readKey(driver, 'copy/dst'), body, 'the copy is independent of its source');
        await rejectsWithCode(
          method(driver, 'copy')('copy/missing', 'copy/x'),
          'NOT_FOUND',
          'copy of a missing key',
        );
        assert.equal(await driver.stat('copy/x'), null, 'nothing created by a failed copy');
      },
    );
  } else {
    add(
      'copy: not declared → copy() rejects UNSUPPORTED',
      async ({ driver }) => {
        await driver.write('copy/src', Buffer.from('x'));
        await rejectsWithCode(method(driver, 'copy')('copy/src', 'copy/dst'), 'UNSUPPORTED', 'copy');
        assert.equal(await driver.stat('copy/dst'), null, 'nothing created');
      },
      SHORT,
      'capabilities.copy is false: copy case replaced by the UNSUPPORTED check',
    );
  }

  if (caps.link) {
    add(
      'link: a second name for the bytes; an existing target is PRECONDITION_FAILED; a missing source is NOT_FOUND',
      async ({ driver }) => {
        const body = new Pattern('link').bytes(0, 50_000);
        await driver.write('link/src', body);
        await method(driver, 'link')('link/src', 'link/dst');
        assertBytes(await readKey(driver, 'link/dst'), body, 'linked bytes');
        await driver.write('link/taken', Buffer.from('taken'));
        await rejectsWithCode(
          method(driver, 'link')('link/src', 'link/taken'),
          'PRECONDITION_FAILED',
          'link onto an existing key',
        );
        assertBytes(await readKey(driver, 'link/taken'), Buffer.from('taken'), 'existing target kept');
        await rejectsWithCode(
          method(driver, 'link')('link/missing', 'link/x'),
          'NOT_FOUND',
          'link of a missing key',
        );
        assert.equal(await driver.delete('link/src'), true);
        assertBytes(await readKey(driver, 'link/dst'), body, 'the link survives deleting the source');
      },
    );
  } else {
    add(
      'link: not declared → link() rejects UNSUPPORTED',
      async ({ driver }) => {
        await driver.write('link/src', Buffer.from('x'));
        await rejectsWithCode(method(driver, 'link')('link/src', 'link/dst'), 'UNSUPPORTED', 'link');
        assert.equal(await driver.stat('link/dst'), null, 'nothing created');
      },
      SHORT,
      'capabilities.link is false: link case replaced by the UNSUPPORTED check',
    );
  }

  if (caps.usage) {
    add('usage: capacity ≥ free ≥ 0', async ({ driver }) => {
      const usage = (await method(driver, 'usage')()) as { capacity: number; free: number };
      assert.equal(typeof usage.capacity, 'number', 'capacity');
      assert.equal(typeof usage.free, 'number', 'free');
      assert.ok(
        usage.free >= 0 && usage.capacity >= usage.free,
        `capacity ${usage.capacity}, free ${usage.free}`,
      );
    });
  } else {
    add(
      'usage: not declared → usage() rejects UNSUPPORTED',
      async ({ driver }) => {
        await rejectsWithCode(method(driver, 'usage')(), 'UNSUPPORTED', 'usage');
      },
      SHORT,
      'capabilities.usage is false: usage case replaced by the UNSUPPORTED check',
    );
  }

  // ── read taps ───────────────────────────────────────────────────────────────────
  if (caps.readTap) {
    add(
      'read tap: every byte a read yields reaches the tap first, once and in order (whole and ranged reads, 0 B to 5 MiB + 3)',
      async ({ driver }) => {
        const sizes = [0, 1, 16 * KiB - 1, 16 * KiB, 256 * KiB + 1, MiB + 1, 5 * MiB + 3];
        for (const size of sizes) {
          const body = new Pattern(`tap-${size}`).bytes(0, size);
          await driver.write(`tap/${size}`, body);
          const ranges = [
            { offset: 0, length: size },
            { offset: Math.floor(size / 3), length: Math.ceil(size / 2) },
          ];
          for (const [index, range] of ranges.entries()) {
            const what = `${size} bytes, ${index === 0 ? 'whole' : `range ${range.offset}+${range.length}`}`;
            const fed: Buffer[] = [];
            let fedBytes = 0;
            const tap = {
              update(bytes: Uint8Array) {
                fed.push(Buffer.from(bytes));
                fedBytes += bytes.byteLength;
              },
            };
            let yielded = 0;
            const read: Buffer[] = [];
            const options = index === 0 ? { tap } : { ...range, tap };
            // 'data' listeners run as the driver pushes, so a feed that comes after is caught.
            const stream = await driver.read(`tap/${size}`, options);
            let early = '';
            stream.on('data', (chunk: Buffer) => {
              yielded += chunk.byteLength;
              if (fedBytes < yielded && !early)
                early = `${yielded} bytes yielded, only ${fedBytes} fed before`;
              read.push(Buffer.from(chunk));
            });
            await finished(stream);
            assert.equal(early, '', `${what}: ${early}`);
            const expected = body.subarray(range.offset, range.offset + range.length);
            assertBytes(Buffer.concat(read), expected, `${what}: the stream`);
            assertBytes(Buffer.concat(fed), expected, `${what}: the tap`);
          }
        }
      },
      LONG,
    );
    add(
      "read tap: blobcore's digest tap (native where the build has it) gets the digest of a multi-chunk read",
      async ({ driver }) => {
        for (const size of [0, 100, 3 * MiB + 7, 9 * MiB]) {
          const body = new Pattern(`dtap-${size}`).bytes(0, size);
          await driver.write(`dtap/${size}`, body);
          const tap = createDigestTap('sha256');
          const bytes = await readAll(await driver.read(`dtap/${size}`, { tap }));
          assertBytes(bytes, body, `${size} bytes`);
          assert.equal(tap.digest(), `sha256:${sha256(body)}`, `${size} bytes: the tap's digest`);
        }
      },
      LONG,
    );
  } else {
    add(
      'read tap: not declared → a read with a tap rejects UNSUPPORTED',
      async ({ driver }) => {
        await driver.write('tap/obj', Buffer.from('x'));
        await rejectsWithCode(
          driver.read('tap/obj', { tap: { update() {} } }),
          'UNSUPPORTED',
          'read with a tap',
        );
      },
      SHORT,
      'capabilities.readTap is false: the store hashes reads itself; tap case replaced by the UNSUPPORTED check',
    );
  }

  // ── AbortSignal ─────────────────────────────────────────────────────────────────
  add(
    'abort: every method rejects ABORTED when the signal is already aborted, with no side effects',
    async ({ driver, limits }) => {
      await driver.write('ab/obj', Buffer.from('kept'));
      const sizes = partSizes(limits, 1, 10);
      const pattern = new Pattern('ab-pre');
      const handle = await driver.createMultipart('ab/mp');
      const part1 = await uploadPattern(driver, handle, pattern, sizes, 0);
      const part2 = await uploadPattern(driver, handle, pattern, sizes, 1);
      const controller = new AbortController();
      controller.abort(new Error('cancelled before the call'));
      const signal = controller.signal;
      const calls: [string, () => Promise<unknown>][] = [
        ['stat', () => driver.stat('ab/obj', { signal })],
        ['read', () => driver.read('ab/obj', { signal })],
        ['write(bytes)', () => driver.write('ab/new', Buffer.from('x'), { signal })],
        ['write(stream)', () => driver.write('ab/new', streamOf(Buffer.from('xyz')), { signal })],
        ['write(overwrite)', () => driver.write('ab/obj', Buffer.from('lost'), { signal })],
        ['delete', () => driver.delete('ab/obj', { signal })],
        ['list', () => driver.list('', { signal })],
        ['createMultipart', () => driver.createMultipart('ab/new', { signal })],
        [
          'uploadPart',
          () => driver.uploadPart(handle, 2, sizes[0] as number, Buffer.alloc(10), 10, { signal }),
        ],
        ['completeMultipart', () => driver.completeMultipart(handle, [part1, part2], { signal })],
        ['abortMultipart', () => driver.abortMultipart(handle, { signal })],
      ];
      if (driver.capabilities.copy)
        calls.push(['copy', () => method(driver, 'copy')('ab/obj', 'ab/new', { signal })]);
      if (driver.capabilities.link)
        calls.push(['link', () => method(driver, 'link')('ab/obj', 'ab/new', { signal })]);
      if (driver.capabilities.signedUrl) {
        calls.push(['signedUrl', () => method(driver, 'signedUrl')('ab/obj', { expiresIn: 60, signal })]);
      }
      if (driver.capabilities.usage) calls.push(['usage', () => method(driver, 'usage')({ signal })]);
      for (const [name, call] of calls) await rejectsWithCode(call, 'ABORTED', name);
      assertBytes(
        await readKey(driver, 'ab/obj'),
        Buffer.from('kept'),
        'object after aborted overwrite/delete',
      );
      assert.equal(await driver.stat('ab/new'), null, 'nothing created by aborted calls');
      assert.equal(await driver.stat('ab/mp'), null, 'aborted completion published nothing');
      await driver.completeMultipart(handle, [part1, part2]);
      await assertContent(
        driver,
        'ab/mp',
        pattern,
        total(sizes),
        'the multipart upload survived aborted calls',
      );
    },
  );

  add('abort: a read stream fails ABORTED when the signal fires mid-stream', async ({ driver }) => {
    const size = 8 * MiB;
    await driver.write('ab/read', new Pattern('ab-read').stream(0, size));
    const controller = new AbortController();
    const stream = await driver.read('ab/read', { signal: controller.signal });
    let seen = 0;
    const error = await (async () => {
      try {
        for await (const chunk of stream) {
          seen += chunk.byteLength;
          if (!controller.signal.aborted) controller.abort(new Error('reader went away'));
        }
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    assert.ok(seen < size, 'the whole object was delivered after the abort');
    assertCode(error, 'ABORTED', 'read stream after abort');
  });

  add(
    'abort: uploadPart rejects ABORTED when the signal fires mid-stream; the part can be uploaded again and completed',
    async ({ driver, limits }) => {
      const sizes = partSizes(limits, 1, 20_000);
      const pattern = new Pattern('ab-part');
      const junk = new Pattern('ab-junk');
      const handle = await driver.createMultipart('ab/part');
      const part1 = await uploadPattern(driver, handle, pattern, sizes, 0);
      const controller = new AbortController();
      async function* body() {
        let n = 0;
        for (const chunk of junk.chunks(sizes[0] as number, sizes[1] as number, 4096)) {
          if (++n === 3) controller.abort(new Error('client went away'));
          await sleep(1);
          yield chunk;
        }
      }
      await rejectsWithCode(
        driver.uploadPart(handle, 2, sizes[0] as number, body(), sizes[1] as number, {
          signal: controller.signal,
        }),
        'ABORTED',
        'uploadPart aborted mid-stream',
      );
      const part2 = await uploadPattern(driver, handle, pattern, sizes, 1);
      await driver.completeMultipart(handle, [part1, part2]);
      await assertContent(driver, 'ab/part', pattern, total(sizes), 'object after a re-uploaded part');
    },
  );

  add(
    'abort: a write or uploadPart whose source stalls rejects ABORTED promptly when the signal fires, leaving nothing',
    async ({ driver }) => {
      const release = deferred();
      try {
        const controller = new AbortController();
        const write = driver.write('ab/stall', stalledStream(Buffer.alloc(1000, 1), release.promise), {
          signal: controller.signal,
        });
        const handle = await driver.createMultipart('ab/stall-mp');
        const part = driver.uploadPart(
          handle,
          1,
          0,
          stalledStream(Buffer.alloc(1000, 2), release.promise),
          5000,
          {
            signal: controller.signal,
          },
        );
        // Observed now: if one of them hangs, the other must not reject unhandled.
        write.catch(() => {});
        part.catch(() => {});
        await sleep(50);
        controller.abort(new Error('client stopped sending'));
        await within(
          rejectsWithCode(write, 'ABORTED', 'write with a stalled source'),
          5000,
          'write after abort',
        );
        await within(
          rejectsWithCode(part, 'ABORTED', 'uploadPart with a stalled source'),
          5000,
          'uploadPart after abort',
        );
        await driver.abortMultipart(handle);
        assert.equal(await driver.stat('ab/stall'), null, 'nothing written');
        assert.deepEqual(await listAll(driver, ''), [], 'no stray keys');
      } finally {
        release.resolve();
      }
    },
  );

  add(
    'abort: a signal fired during any call gives the call’s result or ABORTED — never another error, a hang, or a partial object',
    async ({ driver, limits }) => {
      await driver.write('ab/during', Buffer.from('during'));
      const sizes = partSizes(limits, 1, 10);
      const pattern = new Pattern('ab-during');
      const handle = await driver.createMultipart('ab/during-mp');
      const refs = [
        await uploadPattern(driver, handle, pattern, sizes, 0),
        await uploadPattern(driver, handle, pattern, sizes, 1),
      ];
      const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
        ['stat', (signal) => driver.stat('ab/during', { signal })],
        ['read', async (signal) => readAll(await driver.read('ab/during', { signal }))],
        [
          'write',
          (signal) => driver.write('ab/during-w', new Pattern('w').stream(0, 2 * MiB, 64 * KiB), { signal }),
        ],
        ['list', (signal) => driver.list('', { signal })],
        ['completeMultipart', (signal) => driver.completeMultipart(handle, refs, { signal })],
        ['delete', (signal) => driver.delete('ab/during', { signal })],
      ];
      for (const [name, call] of calls) {
        const controller = new AbortController();
        const pending = call(controller.signal);
        controller.abort(new Error('fired during the call'));
        try {
          await within(pending, 10_000, name);
        } catch (error) {
          assertCode(error, 'ABORTED', `${name} with a signal fired during the call`);
        }
      }
      const written = await driver.stat('ab/during-w');
      if (written)
        await assertContent(driver, 'ab/during-w', new Pattern('w'), 2 * MiB, 'a write that finished');
      const completed = await driver.stat('ab/during-mp');
      if (completed)
        await assertContent(driver, 'ab/during-mp', pattern, total(sizes), 'a completion that finished');
      else await driver.abortMultipart(handle);
    },
  );

  return cases;
}

/** Names of every driver case for a manifest (for docs and filters). */
export function driverCaseNames(selection: CaseSelection): string[] {
  return driverCases(selection).map((c) => c.name);
}

export { readAll, sha256 };
