/**
 * The base wrapper every driver is used through (`guardDriver`).
 *
 * It does, once for all drivers: key and prefix validation (KEY_INVALID), range and
 * part-number checks (RANGE_INVALID), AbortSignal checks before work starts and while
 * bodies stream (ABORTED), declared-size enforcement (SIZE_INVALID, raised before the
 * driver can publish anything), UNSUPPORTED for capabilities a driver lacks, and
 * tagging every BlobcoreError with the driver's name.
 */
import type { Readable } from 'node:stream';
import type {
  Body,
  Driver,
  ListOptions,
  ListPage,
  MultipartHandle,
  PartOptions,
  PartRef,
  ReadOptions,
  SignalOptions,
  SignedUrlOptions,
  WriteOptions,
  WriteResult,
} from './driver.js';
import { DEFAULT_LIST_LIMIT } from './driver.js';
import { abortable, abortedError, BlobcoreError, blobError, throwIfAborted } from './errors.js';
import { validateKey, validatePrefix } from './keys.js';

const GUARDED = Symbol.for('blobcore.guardedDriver');

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function checkRange(name: string, value: number | undefined): void {
  if (value !== undefined && !isNonNegativeInteger(value)) {
    throw blobError('RANGE_INVALID', `${name} must be a non-negative integer, got ${value}`);
  }
}

function checkSize(name: string, value: number | undefined): void {
  if (value !== undefined && !isNonNegativeInteger(value)) {
    throw blobError('SIZE_INVALID', `${name} must be a non-negative integer, got ${value}`);
  }
}

/** Converts what a driver threw into a tagged BlobcoreError where the meaning is certain. */
function tag(error: unknown, driver: string, signal: AbortSignal | undefined): unknown {
  if (error instanceof BlobcoreError) {
    error.driver ??= driver;
    return error;
  }
  if (signal?.aborted || (error instanceof Error && error.name === 'AbortError')) {
    const aborted = abortedError(signal);
    aborted.driver = driver;
    return aborted;
  }
  return error;
}

/**
 * Re-yields a body's chunks, failing with ABORTED when the signal fires and with
 * SIZE_INVALID when the total differs from the declared size. The size error comes
 * from the final `next()` call, i.e. before the driver can commit what it received.
 */
export async function* guardBody(
  body: AsyncIterable<Uint8Array>,
  size: number | undefined,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  let total = 0;
  const iterator = body[Symbol.asyncIterator]();
  let done = false;
  try {
    while (true) {
      // A source that stalls must not keep an aborted write waiting for its next chunk.
      const next = await nextOrAbort(iterator, signal);
      throwIfAborted(signal);
      if (next.done) {
        done = true;
        break;
      }
      const chunk = next.value;
      if (!(chunk instanceof Uint8Array)) throw blobError('SIZE_INVALID', 'body chunks must be Uint8Array');
      total += chunk.byteLength;
      if (size !== undefined && total > size) {
        throw blobError('SIZE_INVALID', `body is longer than the declared ${size} bytes`);
      }
      yield chunk;
    }
  } finally {
    if (!done) {
      // Close the source; after an abort its pending next() may never settle, so don't wait.
      const closing = iterator.return?.();
      if (closing) {
        if (signal?.aborted) closing.catch(() => {});
        else await closing;
      }
    }
  }
  throwIfAborted(signal);
  if (size !== undefined && total !== size) {
    throw blobError('SIZE_INVALID', `body has ${total} bytes, declared ${size}`);
  }
}

/** `iterator.next()`, or ABORTED as soon as the signal fires while it is pending. */
function nextOrAbort<T>(
  iterator: AsyncIterator<T>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<T>> {
  throwIfAborted(signal);
  return abortable(iterator.next(), signal);
}

/** Lets go of a body that will not be written: a stream is destroyed, an iterator ended. */
async function dropBody(body: Body): Promise<void> {
  if (body instanceof Uint8Array) return;
  const stream = body as { destroy?: unknown };
  if (typeof stream.destroy === 'function') {
    (stream as { destroy(): void }).destroy();
    return;
  }
  await body[Symbol.asyncIterator]()
    .return?.()
    ?.catch(() => undefined);
}

function guardedBody(body: Body, size: number | undefined, signal: AbortSignal | undefined): Body {
  if (body instanceof Uint8Array) {
    if (size !== undefined && body.byteLength !== size) {
      throw blobError('SIZE_INVALID', `body has ${body.byteLength} bytes, declared ${size}`);
    }
    return body;
  }
  if (body === null || typeof body !== 'object' || !(Symbol.asyncIterator in body)) {
    throw blobError('SIZE_INVALID', 'body must be a Uint8Array or an async iterable of Uint8Array');
  }
  return guardBody(body, size, signal);
}

/** Makes a read stream fail with ABORTED when the signal fires while it is being consumed. */
function abortStreamOnSignal(stream: Readable, signal: AbortSignal | undefined): Readable {
  if (!signal) return stream;
  const onAbort = () => stream.destroy(abortedError(signal));
  if (signal.aborted) {
    // Fired while the driver was opening the stream: an 'abort' listener would never run.
    onAbort();
    return stream;
  }
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
  return stream;
}

function unsupported(driver: string, what: string): BlobcoreError {
  return blobError('UNSUPPORTED', `the ${driver} driver does not support ${what}`, { driver });
}

export function isGuarded(driver: Driver): boolean {
  return (driver as unknown as Record<symbol, unknown>)[GUARDED] === true;
}

/** Wraps a driver with the shared guard. Guarding twice returns the same object. */
export function guardDriver(inner: Driver): Driver {
  if (isGuarded(inner)) return inner;
  const name = inner.name;

  async function run<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
    try {
      throwIfAborted(signal);
      return await work();
    } catch (error) {
      throw tag(error, name, signal);
    }
  }

  function checkPart(handle: MultipartHandle, partNumber: number): void {
    if (handle === null || typeof handle !== 'object' || typeof handle.key !== 'string') {
      throw blobError('BLOB_UPLOAD_INVALID', 'multipart handle must be an object with a key');
    }
    validateKey(handle.key);
    if (!Number.isSafeInteger(partNumber) || partNumber < 1 || partNumber > inner.limits.maxParts) {
      throw blobError('RANGE_INVALID', `part number must be 1..${inner.limits.maxParts}, got ${partNumber}`);
    }
  }

  const guarded: Driver & { [GUARDED]: true } = {
    [GUARDED]: true,
    name,
    capabilities: inner.capabilities,
    limits: inner.limits,

    stat: (key, options?: SignalOptions) => run(options?.signal, () => inner.stat(validateKey(key), options)),

    read: (key, options: ReadOptions = {}) =>
      run(options.signal, async () => {
        validateKey(key);
        checkRange('offset', options.offset);
        checkRange('length', options.length);
        if (options.tap !== undefined && inner.capabilities.readTap !== true) {
          throw unsupported(name, 'feeding a read tap (readTap)');
        }
        return abortStreamOnSignal(await inner.read(key, options), options.signal);
      }),

    write: (key, body, options: WriteOptions = {}): Promise<WriteResult> =>
      run(options.signal, () => {
        validateKey(key);
        checkSize('size', options.size);
        if (options.ifNoneMatch !== undefined && options.ifNoneMatch !== '*') {
          throw blobError('PRECONDITION_FAILED', 'ifNoneMatch only accepts "*"');
        }
        const guarded = guardedBody(body, options.size, options.signal);
        const { notBefore, ...rest } = options;
        if (notBefore === undefined || inner.capabilities.writeBarrier === true)
          return inner.write(key, guarded, options);
        // The driver cannot stage behind the barrier: the write starts once it is passed.
        return abortable(notBefore, options.signal).then(
          () => inner.write(key, guarded, rest),
          async (error: unknown) => {
            await dropBody(body);
            throw error;
          },
        );
      }),

    delete: (key, options?: SignalOptions) =>
      run(options?.signal, () => inner.delete(validateKey(key), options)),

    list: (prefix, options: ListOptions = {}): Promise<ListPage> =>
      run(options.signal, () => {
        validatePrefix(prefix);
        if (options.startAfter !== undefined) validatePrefix(options.startAfter);
        const limit = options.limit ?? DEFAULT_LIST_LIMIT;
        if (!Number.isSafeInteger(limit) || limit < 1) {
          throw blobError('RANGE_INVALID', `list limit must be a positive integer, got ${limit}`);
        }
        return inner.list(prefix, { ...options, limit: Math.min(limit, DEFAULT_LIST_LIMIT) });
      }),

    createMultipart: (key, options?: SignalOptions) =>
      run(options?.signal, () => inner.createMultipart(validateKey(key), options)),

    uploadPart: (handle, partNumber, offset, body, size, options?: PartOptions): Promise<PartRef> =>
      run(options?.signal, () => {
        checkPart(handle, partNumber);
        if (options?.hold !== undefined && inner.capabilities.exclusiveParts !== true) {
          throw unsupported(name, "holding a part's range while it is written (exclusiveParts)");
        }
        checkRange('offset', offset);
        checkSize('part size', size);
        if (size > inner.limits.maxPartSize) {
          throw blobError(
            'SIZE_INVALID',
            `part of ${size} bytes exceeds maxPartSize ${inner.limits.maxPartSize}`,
          );
        }
        return inner.uploadPart(
          handle,
          partNumber,
          offset,
          guardedBody(body, size, options?.signal),
          size,
          options,
        );
      }),

    completeMultipart: (handle, parts, options?: SignalOptions) =>
      run(options?.signal, () => {
        checkPart(handle, 1);
        parts.forEach((part, i) => {
          checkPart(handle, part.partNumber);
          const previous = parts[i - 1];
          if (previous && part.partNumber <= previous.partNumber) {
            throw blobError('BLOB_UPLOAD_INVALID', 'parts must be in ascending part-number order');
          }
          if (i < parts.length - 1 && part.size < inner.limits.minPartSize) {
            throw blobError(
              'SIZE_INVALID',
              `part ${part.partNumber} is below minPartSize ${inner.limits.minPartSize}`,
            );
          }
        });
        return inner.completeMultipart(handle, parts, options);
      }),

    abortMultipart: (handle, options?: SignalOptions) =>
      run(options?.signal, () => {
        checkPart(handle, 1);
        return inner.abortMultipart(handle, options);
      }),

    signedUrl: (key, options: SignedUrlOptions) =>
      run(options?.signal, () => {
        validateKey(key);
        if (!inner.capabilities.signedUrl || !inner.signedUrl) throw unsupported(name, 'signed URLs');
        if (!(options.expiresIn > 0)) throw blobError('RANGE_INVALID', 'expiresIn must be positive seconds');
        return inner.signedUrl(key, options);
      }),

    copy: (from, to, options?: SignalOptions) =>
      run(options?.signal, () => {
        validateKey(from);
        validateKey(to);
        if (!inner.capabilities.copy || !inner.copy) throw unsupported(name, 'copy');
        return inner.copy(from, to, options);
      }),

    link: (from, to, options?: SignalOptions) =>
      run(options?.signal, () => {
        validateKey(from);
        validateKey(to);
        if (!inner.capabilities.link || !inner.link) throw unsupported(name, 'link');
        return inner.link(from, to, options);
      }),

    usage: (options?: SignalOptions) =>
      run(options?.signal, () => {
        if (!inner.capabilities.usage || !inner.usage) throw unsupported(name, 'usage');
        return inner.usage(options);
      }),

    close: async () => {
      await inner.close?.();
    },
  };
  return guarded;
}
