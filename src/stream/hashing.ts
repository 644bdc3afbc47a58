/**
 * Hashing bytes while they stream to or from a driver.
 *
 * `HashTap` hashes each chunk on the next turn of the event loop
 * (setImmediate) after handing it to the consumer. A driver that starts an I/O for the
 * chunk and awaits it leaves the main thread idle, so the hash of chunk N runs while
 * chunk N is being written — measured faster than hashing first and writing after.
 * Before the next chunk is handed out, the previous one is certainly hashed, so the
 * hash always covers exactly the bytes delivered so far, in order.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { blobError } from '../errors.js';

/** Anything that can absorb bytes in order: node:crypto Hash or a ResumableSha256. */
export interface ByteSink {
  update(data: Uint8Array): unknown;
}

/** Largest slice handed out at once, so hashing can overlap I/O on big in-memory bodies. */
export const STREAM_SLICE = 4 * 1024 * 1024;

/** Splits a large Uint8Array into slices (views, no copies). */
export function* sliceBytes(bytes: Uint8Array, slice = STREAM_SLICE): Generator<Uint8Array> {
  if (bytes.byteLength === 0) return;
  for (let at = 0; at < bytes.byteLength; at += slice)
    yield bytes.subarray(at, Math.min(at + slice, bytes.byteLength));
}

/**
 * Feeds the bytes of one or more streams to hash sinks while a consumer moves them.
 * `finish()` hashes whatever is still pending; call it once the consumer is done,
 * because a consumer that stops pulling at a known length never resumes the generator.
 */
export class HashTap {
  /** Bytes hashed so far. */
  bytes = 0;
  private pending: Uint8Array | undefined;
  private readonly flush = () => {
    const chunk = this.pending;
    if (chunk === undefined) return;
    this.pending = undefined;
    for (const sink of this.sinks) sink.update(chunk);
    this.bytes += chunk.byteLength;
  };

  constructor(private readonly sinks: readonly ByteSink[]) {}

  async *wrap(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      this.flush();
      if (chunk.byteLength === 0) continue;
      this.pending = chunk;
      setImmediate(this.flush);
      yield chunk;
    }
    this.flush();
  }

  finish(): number {
    this.flush();
    return this.bytes;
  }
}

/**
 * A pass-through that hashes a full read and fails the stream with DIGEST_INVALID,
 * instead of ending it, when the bytes do not match. The check runs in `flush`, so a
 * consumer never sees a clean end of corrupt data.
 */
export function verifyingTransform(
  hash: { update(data: Uint8Array): unknown; digest(): string },
  expected: string,
  expectedSize: number,
): Transform {
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const actual = hash.digest();
      if (size !== expectedSize || actual !== expected) {
        callback(
          blobError(
            'DIGEST_INVALID',
            `stored bytes do not match ${expected} (read ${size} bytes hashing to ${actual})`,
          ),
        );
        return;
      }
      callback();
    },
  });
}
