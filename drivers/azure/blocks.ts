/**
 * Block staging: deterministic block ids, cutting a body into blocks, and staging them
 * in parallel with bounded memory.
 *
 * Block ids are base64 of the 28 ASCII bytes `<nonce: 16 hex>-<part: 6 digits>-<index: 4 digits>`.
 * Azure wants every block id of one blob to have the same length (at most 64 bytes
 * before encoding); ours always do. The nonce is random per plain write and per
 * multipart handle, so two writers never name each other's blocks; within a handle the
 * id depends only on (part number, block index), so re-staging a part after a timeout
 * replaces its blocks instead of adding new ones (Put Block with an existing id
 * overwrites that uncommitted block): retries cannot duplicate data.
 *
 * Memory: a body is read one block at a time, and a block is read only when fewer than
 * `concurrency` blocks are in flight, so at most `concurrency` blocks (of `blockSize`
 * bytes) are held per write or part, whatever the body's length. A block keeps the
 * chunks it arrived in (views, no copy) and goes out as a replayable stream of them.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { toBuffer } from '../../src/bytes.js';
import { abortedError } from '../../src/errors.js';

export const BLOCK_ID_BYTES = 28;

export function newNonce(): string {
  return randomBytes(8).toString('hex');
}

export function blockId(nonce: string, part: number, index: number): string {
  const raw = `${nonce}-${String(part).padStart(6, '0')}-${String(index).padStart(4, '0')}`;
  return Buffer.from(raw, 'ascii').toString('base64');
}

/** The nonce of one of our block ids, or undefined for anyone else's. */
export function nonceOfBlockId(id: string): string | undefined {
  const raw = Buffer.from(id, 'base64').toString('latin1');
  return /^[0-9a-f]{16}-\d{6}-\d{4}$/.test(raw) ? raw.slice(0, 16) : undefined;
}

const sourceErrors = new WeakSet<object>();

/**
 * True for an error thrown by the caller's body rather than by Azure, so that a source
 * failing with, say, ECONNRESET is passed on as it is, not reported as Azure unavailable.
 */
export function isSourceError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && sourceErrors.has(error);
}

/**
 * One block's bytes, kept as the chunks they arrived in: never joined into a new
 * buffer, so a block costs no copy and no second allocation.
 */
export class Block {
  constructor(
    readonly chunks: readonly Buffer[],
    readonly size: number,
  ) {}

  /** A request body: the buffer itself, or a stream factory the SDK calls once per attempt (so retries resend it). */
  body(): Buffer | (() => NodeJS.ReadableStream) {
    if (this.chunks.length === 0) return Buffer.alloc(0);
    const only = this.chunks.length === 1 ? this.chunks[0] : undefined;
    return only ?? (() => Readable.from(this.chunks, { objectMode: false }));
  }
}

/** Reads a body in blocks; a stalled source still gives way to an AbortSignal. */
export class BlockReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  readonly #signal: AbortSignal | undefined;
  #pending: Uint8Array | undefined;
  #done = false;
  #aborted: Promise<never> | undefined;
  #onAbort: (() => void) | undefined;

  constructor(body: AsyncIterable<Uint8Array>, signal?: AbortSignal) {
    this.#iterator = body[Symbol.asyncIterator]();
    this.#signal = signal;
    if (signal) {
      this.#aborted = new Promise<never>((_, reject) => {
        this.#onAbort = () => reject(abortedError(signal));
        signal.addEventListener('abort', this.#onAbort, { once: true });
      });
      this.#aborted.catch(() => {});
    }
  }

  async #pull(): Promise<Uint8Array | undefined> {
    if (this.#pending) {
      const chunk = this.#pending;
      this.#pending = undefined;
      return chunk;
    }
    while (!this.#done) {
      if (this.#signal?.aborted) throw abortedError(this.#signal);
      const next = this.#iterator.next();
      next.catch(() => {}); // when the abort wins the race, a late rejection is expected
      let result: IteratorResult<Uint8Array>;
      try {
        result = this.#aborted ? await Promise.race([next, this.#aborted]) : await next;
      } catch (error) {
        if (typeof error === 'object' && error !== null) sourceErrors.add(error);
        throw error;
      }
      if (result.done) {
        this.#done = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
    return undefined;
  }

  /** The next `size` bytes (fewer only at the end), or null when the body is exhausted. */
  async read(size: number): Promise<Block | null> {
    const chunks: Buffer[] = [];
    let filled = 0;
    while (filled < size) {
      const chunk = await this.#pull();
      if (!chunk) break;
      const take = Math.min(size - filled, chunk.byteLength);
      chunks.push(toBuffer(take === chunk.byteLength ? chunk : chunk.subarray(0, take)));
      if (take < chunk.byteLength) this.#pending = chunk.subarray(take);
      filled += take;
    }
    return filled === 0 ? null : new Block(chunks, filled);
  }

  /** True when no bytes are left (reads one chunk ahead if needed). */
  async ended(): Promise<boolean> {
    if (this.#pending) return false;
    const chunk = await this.#pull();
    if (!chunk) return true;
    this.#pending = chunk;
    return false;
  }

  /** Stops reading: lets the source clean up (without waiting for a stalled one). */
  close(): void {
    if (this.#onAbort) this.#signal?.removeEventListener('abort', this.#onAbort);
    if (!this.#done) {
      this.#done = true;
      this.#iterator.return?.()?.catch(() => {});
    }
  }
}

/** Block-sized views of bytes already in memory (no copies). */
export function blocksOf(bytes: Uint8Array, blockSize: number): () => Promise<Block | null> {
  const buffer = toBuffer(bytes);
  let at = 0;
  return async () => {
    if (at >= buffer.byteLength) return null;
    const view = buffer.subarray(at, at + blockSize);
    at += view.byteLength;
    return new Block([view], view.byteLength);
  };
}

/**
 * Runs `work` on the items `next` produces, at most `concurrency` at a time, asking for
 * the next item only when a slot is free. On the first failure (of `next` or `work`) it
 * stops asking, aborts the work in flight, waits for it, and throws that failure.
 */
export async function runBounded<T>(
  next: () => Promise<T | null>,
  work: (item: T, signal: AbortSignal) => Promise<unknown>,
  concurrency: number,
  signal?: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown) => {
    failure ??= { error };
    stop.abort();
  };
  try {
    while (!failure) {
      while (inFlight.size >= concurrency && !failure) await Promise.race(inFlight);
      if (failure) break;
      let item: T | null;
      try {
        item = await next();
      } catch (error) {
        fail(error);
        break;
      }
      if (item === null) break;
      const task: Promise<void> = work(item, combined).then(
        () => {
          inFlight.delete(task);
        },
        (error: unknown) => {
          inFlight.delete(task);
          fail(error);
        },
      );
      inFlight.add(task);
    }
  } finally {
    await Promise.all(inFlight);
  }
  if (failure) throw failure.error;
}
