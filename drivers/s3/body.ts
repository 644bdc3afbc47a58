/**
 * Body plumbing for the S3 driver: reading bounded pieces of a stream, holding back
 * the last chunk of a streamed request, and clipping ranged responses.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { abortedError, blobError } from '../../src/errors.js';

/** Resolves with the iterator's next result, or rejects ABORTED as soon as the signal fires. */
export function nextOrAbort<T>(
  iterator: AsyncIterator<T>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<T>> {
  const next = iterator.next();
  if (!signal) return next;
  if (signal.aborted) {
    next.catch(() => undefined);
    return Promise.reject(abortedError(signal));
  }
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortedError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([next, aborted]).finally(() => {
    if (onAbort) signal.removeEventListener('abort', onAbort);
    next.catch(() => undefined);
  });
}

/**
 * Reads chunks from an iterator into a list of at most `limit` bytes. A chunk that
 * straddles the limit is split and its remainder kept in `carry` for the next call.
 */
export class PieceReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private carry: Uint8Array | null = null;
  private done = false;

  constructor(body: AsyncIterable<Uint8Array>) {
    this.iterator = body[Symbol.asyncIterator]();
  }

  /** Up to `limit` bytes as chunks; fewer only at the end of the body. */
  async read(
    limit: number,
    signal: AbortSignal | undefined,
  ): Promise<{ chunks: Uint8Array[]; size: number }> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    while (size < limit) {
      let chunk: Uint8Array;
      if (this.carry) {
        chunk = this.carry;
        this.carry = null;
      } else {
        if (this.done) break;
        const next = await nextOrAbort(this.iterator, signal);
        if (next.done) {
          this.done = true;
          break;
        }
        chunk = next.value;
      }
      if (chunk.byteLength === 0) continue;
      const room = limit - size;
      if (chunk.byteLength > room) {
        this.carry = chunk.subarray(room);
        chunk = chunk.subarray(0, room);
      }
      chunks.push(chunk);
      size += chunk.byteLength;
    }
    return { chunks, size };
  }

  /**
   * Copies up to `target.length` bytes into `target` and returns how many; fewer only at
   * the end of the body. The source's chunks are dropped as soon as they are copied.
   */
  async readInto(target: Buffer, signal: AbortSignal | undefined): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      const { chunks, size } = await this.read(Math.min(target.length - filled, 1024 * 1024), signal);
      if (size === 0) break;
      for (const chunk of chunks) {
        target.set(chunk, filled);
        filled += chunk.byteLength;
      }
    }
    return filled;
  }

  /** True once the body has no more bytes (may pull one chunk to find out). */
  async ended(signal: AbortSignal | undefined): Promise<boolean> {
    if (this.carry) return false;
    while (!this.done) {
      const next = await nextOrAbort(this.iterator, signal);
      if (next.done) {
        this.done = true;
        break;
      }
      if (next.value.byteLength > 0) {
        this.carry = next.value;
        return false;
      }
    }
    return true;
  }

  /** Stops the source (its `finally` blocks run); does not wait for a stalled one. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.iterator.return?.()?.catch(() => undefined);
  }
}

/**
 * Re-yields a body but keeps its last chunk back until the source has ended cleanly.
 *
 * A streamed PUT carries its Content-Length, so the server commits as soon as it has
 * that many bytes, without waiting for the client's end of stream. The guard's size and
 * abort checks run in the source's final `next()`, after the last chunk; holding that
 * chunk until then means a failing check leaves the request short, and the server
 * discards it.
 */
export async function* holdLastChunk(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let held: Uint8Array | null = null;
  for await (const chunk of body) {
    if (chunk.byteLength === 0) continue;
    if (held) yield held;
    held = chunk;
  }
  if (held) yield held;
}

/** A Readable over chunks already in memory (no copy). */
export function chunksReadable(chunks: readonly Uint8Array[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

/**
 * Passes bytes [skip, skip + length) of what flows through and checks that exactly
 * that many arrive: a connection that ends early fails the stream with UNAVAILABLE
 * instead of looking like a short object. `length` undefined: to the end, unchecked.
 */
export class ClipStream extends Transform {
  private skip: number;
  private left: number | undefined;

  constructor(
    skip: number,
    length: number | undefined,
    private readonly what: string,
  ) {
    super();
    this.skip = skip;
    this.left = length;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let bytes = chunk;
    if (this.skip > 0) {
      const dropped = Math.min(this.skip, bytes.length);
      this.skip -= dropped;
      bytes = bytes.subarray(dropped);
    }
    if (this.left !== undefined) {
      if (bytes.length > this.left) bytes = bytes.subarray(0, this.left);
      this.left -= bytes.length;
    }
    if (bytes.length > 0) this.push(bytes);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.skip > 0 || (this.left !== undefined && this.left > 0)) {
      callback(
        blobError(
          'UNAVAILABLE',
          `${this.what}: the response ended ${(this.left ?? 0) + this.skip} bytes early`,
          {
            driver: 's3',
            retryable: true,
          },
        ),
      );
      return;
    }
    callback();
  }
}
