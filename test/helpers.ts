/** Shared helpers for blobcore's own tests. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { isBlobcoreError } from '../src/errors.js';

export const MiB = 1024 * 1024;

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Resolves to the error code a promise rejects with ('resolved' if it does not). */
export async function codeOf(promise: Promise<unknown> | (() => Promise<unknown>)): Promise<string> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
    return 'resolved';
  } catch (error) {
    return isBlobcoreError(error) ? error.code : `not a BlobcoreError: ${String(error)}`;
  }
}

/** Rejection error of a promise, for checking `detail`. */
export async function errorOf(
  promise: Promise<unknown>,
): Promise<{ code?: string; detail?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; detail?: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

/** A stream of `bytes` in chunks of `chunk`, optionally failing after `failAfter` bytes. */
export function streamOf(bytes: Uint8Array, chunk = 64 * 1024, failAfter?: number): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (let at = 0; at < bytes.length; at += chunk) {
      if (failAfter !== undefined && at >= failAfter) throw new Error('source failed on purpose');
      yield Buffer.from(bytes.subarray(at, at + chunk));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return Readable.from(generate());
}

/** Seeded xorshift so random chunk sizes are reproducible from the printed seed. */
export function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
