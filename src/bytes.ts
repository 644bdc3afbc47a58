/** Small helpers over bodies and byte arrays, shared by drivers and the store. */
import { Readable } from 'node:stream';
import type { Body } from './driver.js';
import { blobError } from './errors.js';

/** Reads a whole body into one Buffer. Only for bodies known to be small or in-memory drivers. */
export async function collectBody(body: Body): Promise<Buffer> {
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof Readable) return collectReadable(body);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
}

/**
 * A Node stream through its events: records are read by the hundred thousand (GC, index
 * look-ups), and an async iterator costs more than the read of a small file itself.
 */
function collectReadable(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Uint8Array) => {
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    });
    stream.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.once('close', () => {
      if (!stream.readableEnded) reject(blobError('UNAVAILABLE', 'stream closed before its end'));
    });
  });
}

/** Yields a body's chunks whether it is bytes or a stream. */
export async function* iterateBody(body: Body): AsyncGenerator<Uint8Array> {
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  yield* body;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
