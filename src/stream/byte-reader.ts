/**
 * Pulls exact byte counts out of an async iterable of chunks without copying more than
 * a chunk boundary requires. Used to carve an upload's incoming body into parts of a
 * known size (S3 needs a Content-Length per part) with bounded memory.
 */
import { blobError } from '../errors.js';

export class ByteReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private leftover: Uint8Array | undefined;
  private done = false;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.iterator =
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
        : toAsync(source as Iterable<Uint8Array>);
  }

  private async next(): Promise<Uint8Array | undefined> {
    if (this.leftover) {
      const chunk = this.leftover;
      this.leftover = undefined;
      return chunk;
    }
    while (!this.done) {
      const result = await this.iterator.next();
      if (result.done) {
        this.done = true;
        return undefined;
      }
      if (result.value.byteLength > 0) return result.value;
    }
    return undefined;
  }

  /** True when no bytes remain. */
  async ended(): Promise<boolean> {
    const chunk = await this.next();
    if (chunk === undefined) return true;
    this.leftover = chunk;
    return false;
  }

  /** Yields exactly `count` bytes; SIZE_INVALID if the source ends first. */
  async *take(count: number): AsyncGenerator<Uint8Array> {
    let remaining = count;
    while (remaining > 0) {
      const chunk = await this.next();
      if (chunk === undefined) throw blobError('SIZE_INVALID', `body ended ${remaining} bytes early`);
      if (chunk.byteLength > remaining) {
        this.leftover = chunk.subarray(remaining);
        yield chunk.subarray(0, remaining);
        return;
      }
      remaining -= chunk.byteLength;
      yield chunk;
    }
  }

  /** Reads up to `limit` bytes into memory (fewer only at the end of the source). */
  async readUpTo(limit: number): Promise<Buffer> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    while (total < limit) {
      const chunk = await this.next();
      if (chunk === undefined) break;
      const room = limit - total;
      if (chunk.byteLength > room) {
        this.leftover = chunk.subarray(room);
        chunks.push(chunk.subarray(0, room));
        total += room;
        break;
      }
      chunks.push(chunk);
      total += chunk.byteLength;
    }
    return Buffer.concat(chunks, total);
  }

  /** Stops the source early (e.g. after an error), releasing a stream's resources. */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.iterator.return?.();
    }
  }
}

async function* toAsync<T>(source: Iterable<T>): AsyncGenerator<T> {
  yield* source;
}
