/**
 * Assertion and data helpers for conformance cases. No vitest here: cases must run
 * under the plain runner too.
 *
 * Test data comes from `Pattern`: AES-256-CTR over zeros, keyed by a seed. It is
 * deterministic, runs at native speed, and any byte range can be regenerated on its
 * own (the counter is the block number), so a 256 MiB object is compared by sha256 of
 * the expected range without ever holding the expected bytes.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Driver, ReadOptions } from '../src/driver.js';
import { BlobcoreError, type ErrorCode } from '../src/errors.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

const ZEROS = Buffer.alloc(4 * MiB);

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Deterministic pseudo-random bytes, addressable by offset. */
export class Pattern {
  private readonly key: Buffer;

  constructor(readonly seed: number | string) {
    this.key = createHash('sha256').update(`blobcore-conformance:${seed}`).digest();
  }

  private cipherAt(offset: number) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64BE(BigInt(Math.floor(offset / 16)), 8);
    const cipher = createCipheriv('aes-256-ctr', this.key, iv);
    const skip = offset % 16;
    if (skip > 0) cipher.update(ZEROS.subarray(0, skip));
    return cipher;
  }

  /** Yields fresh buffers (never reused) covering [offset, offset + length). */
  *chunks(offset: number, length: number, chunkSize = MiB): Generator<Buffer> {
    const cipher = this.cipherAt(offset);
    for (let done = 0; done < length; ) {
      const n = Math.min(chunkSize, length - done);
      let out: Buffer;
      if (n <= ZEROS.length) {
        out = cipher.update(ZEROS.subarray(0, n));
      } else {
        out = Buffer.allocUnsafe(n);
        for (let at = 0; at < n; at += ZEROS.length) {
          cipher.update(ZEROS.subarray(0, Math.min(ZEROS.length, n - at))).copy(out, at);
        }
      }
      done += n;
      yield out;
    }
  }

  bytes(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    for (const chunk of this.chunks(offset, length, ZEROS.length)) {
      chunk.copy(out, at);
      at += chunk.length;
    }
    return out;
  }

  /** An async body for `write`/`uploadPart`; `pace` ms between chunks makes writes slow. */
  async *stream(offset: number, length: number, chunkSize = MiB, pace = 0): AsyncGenerator<Uint8Array> {
    for (const chunk of this.chunks(offset, length, chunkSize)) {
      if (pace > 0) await sleep(pace);
      yield chunk;
    }
  }

  sha256(offset: number, length: number): string {
    const hash = createHash('sha256');
    for (const chunk of this.chunks(offset, length, ZEROS.length)) hash.update(chunk);
    return hash.digest('hex');
  }

  /** The OCI digest string of [0, length). */
  digest(length: number): string {
    return `sha256:${this.sha256(0, length)}`;
  }
}

/** A small seeded PRNG (mulberry32) for sizes and offsets. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max], log-uniform so small and large values both occur. */
export function logUniform(random: () => number, min: number, max: number): number {
  const lo = Math.log(Math.max(1, min));
  const hi = Math.log(max + 1);
  return Math.min(max, Math.max(min, Math.floor(Math.exp(lo + random() * (hi - lo)))));
}

/** Splits bytes into an async stream of `parts` pieces (for stream-body variants). */
export async function* streamOf(bytes: Uint8Array, pieceSize = 7): AsyncGenerator<Uint8Array> {
  if (bytes.byteLength === 0) return;
  for (let at = 0; at < bytes.byteLength; at += pieceSize) {
    await Promise.resolve();
    yield Uint8Array.prototype.slice.call(bytes, at, at + pieceSize);
  }
}

/** A body that yields `before` and then fails. */
export async function* failingStream(before: Iterable<Uint8Array>, error: Error): AsyncGenerator<Uint8Array> {
  for (const chunk of before) {
    await sleep(1);
    yield chunk;
  }
  throw error;
}

/**
 * A body that yields `first` and then waits until `release` resolves (a client that
 * stopped sending). Used to prove an AbortSignal ends a write without a next chunk.
 */
export async function* stalledStream(
  first: Uint8Array,
  release: Promise<unknown>,
): AsyncGenerator<Uint8Array> {
  yield first;
  await release;
}

/** Promise-based deferred, for stalls and gates. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${code === undefined ? '' : ` ${String(code)}`}: ${error.message}`;
  }
  return `non-Error value ${String(error)}`;
}

/** Asserts a typed BlobcoreError with the given code and returns it. */
export function assertCode(error: unknown, code: ErrorCode, what: string): BlobcoreError {
  if (!(error instanceof BlobcoreError)) {
    assert.fail(`${what}: expected a BlobcoreError ${code}, got ${describeError(error)}`);
  }
  if (error.code !== code) assert.fail(`${what}: expected ${code}, got ${describeError(error)}`);
  return error;
}

/**
 * Awaits `action` and asserts it rejects with a BlobcoreError of `code`.
 * `what` names the call in the failure message.
 */
export async function rejectsWithCode(
  action: Promise<unknown> | (() => Promise<unknown>),
  code: ErrorCode,
  what: string,
): Promise<BlobcoreError> {
  let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
  try {
    const promise = typeof action === 'function' ? action() : action;
    outcome = { ok: true, value: await promise };
  } catch (error) {
    outcome = { ok: false, error };
  }
  if (outcome.ok) {
    if (isReadable(outcome.value)) outcome.value.destroy();
    assert.fail(`${what}: expected rejection with ${code}, but it succeeded`);
  }
  return assertCode(outcome.error, code, what);
}

/** Awaits `action` and asserts it rejects with any Error (used where the code is the source's). */
export async function rejects(action: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await action;
  } catch (error) {
    assert.ok(error instanceof Error, `${what}: rejected with a non-Error value`);
    return error;
  }
  assert.fail(`${what}: expected a rejection, but it succeeded`);
}

function isReadable(value: unknown): value is { destroy(): void } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { destroy?: unknown }).destroy === 'function'
  );
}

/** Reads a whole (small) stream into one Buffer. */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    assert.ok(chunk instanceof Uint8Array, 'read streams must yield Uint8Array chunks');
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** Hashes a stream without keeping it. */
export async function hashStream(
  stream: AsyncIterable<Uint8Array>,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    assert.ok(chunk instanceof Uint8Array, 'read streams must yield Uint8Array chunks');
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Consumes a stream and asserts it errors with `code`. */
export async function streamFailsWithCode(
  stream: AsyncIterable<Uint8Array>,
  code: ErrorCode,
  what: string,
): Promise<BlobcoreError> {
  try {
    for await (const _chunk of stream) {
      // drain
    }
  } catch (error) {
    return assertCode(error, code, what);
  }
  assert.fail(`${what}: expected the stream to fail with ${code}, but it ended normally`);
}

export async function readKey(driver: Driver, key: string, options?: ReadOptions): Promise<Buffer> {
  return readAll(await driver.read(key, options));
}

export function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.compare(Buffer.from(actual), Buffer.from(expected)) === 0) return;
  const show = (b: Uint8Array) =>
    `${b.byteLength} bytes ${Buffer.from(b.subarray(0, 16)).toString('hex')}${b.byteLength > 16 ? '…' : ''}`;
  assert.fail(`${what}: got ${show(actual)}, expected ${show(expected)} (sha256 differs)`);
}

/** Every key under `prefix`, following cursors; fails on repeats, disorder or runaway paging. */
export async function listAll(driver: Driver, prefix: string, limit?: number): Promise<string[]> {
  const keys: string[] = [];
  let startAfter: string | undefined;
  for (let page = 0; page < 100_000; page++) {
    const result = await driver.list(prefix, { startAfter, limit });
    if (limit !== undefined) assert.ok(result.keys.length <= limit, `list returned more than limit ${limit}`);
    for (const key of result.keys) {
      assert.ok(key.startsWith(prefix), `list(${JSON.stringify(prefix)}) returned ${JSON.stringify(key)}`);
      const last = keys[keys.length - 1];
      if (last !== undefined) {
        assert.ok(
          compareKeys(last, key) < 0,
          `list is not strictly ascending: ${JSON.stringify(last)} then ${JSON.stringify(key)}`,
        );
      }
      keys.push(key);
    }
    if (result.cursor === undefined) return keys;
    assert.ok(
      startAfter === undefined || compareKeys(result.cursor, startAfter) > 0,
      'list cursor did not advance',
    );
    startAfter = result.cursor;
  }
  assert.fail('list paging did not end');
}

/** Byte order of UTF-8 keys (the contract's list order). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function sortKeys(keys: Iterable<string>): string[] {
  return [...keys].sort(compareKeys);
}

/** Runs `fn` over items with at most `concurrency` in flight. */
export async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** Rejects with a clear message when `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms (hung?)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export { sleep };
