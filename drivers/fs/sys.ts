/**
 * System-call layer shared by the fs and pvc drivers.
 *
 * - `mapFsError` turns a Node `errno` error into a BlobcoreError. ENOENT is never mapped
 *   here (callers decide what a missing file means), and nothing but ENOENT ever becomes
 *   NOT_FOUND.
 * - `Sys` runs single metadata calls with the driver's retry policy: the pvc driver retries
 *   ESTALE/EAGAIN/EBUSY/ETIMEDOUT with exponential backoff (network filesystems report
 *   these transiently), the fs driver does not retry.
 * - `FileSink` writes a body into a file at a position with large batched `writev` calls,
 *   one write in flight while the next batch is gathered, short writes resumed; for a
 *   durable write it starts `fdatasync` in the background as the file grows, so the disk
 *   flushes while the caller hashes and the final fsync has only the tail left.
 */
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type BuffersBinding, loadBuffersBinding } from '../../src/buffers-addon.js';
import { abortedError, BlobcoreError, blobError, throwIfAborted } from '../../src/errors.js';

/** Batch size for body writes: chunks are gathered (not copied) up to this many bytes per `writev`. */
export const WRITE_BATCH_BYTES = 1024 * 1024;
/** Objects up to this size are read whole, in one read (no stream machinery). */
export const READ_CHUNK_BYTES = 256 * 1024;
/**
 * A read stream's chunk (objects larger than READ_CHUNK_BYTES). Measured on a 256 MiB get
 * in the bench, with recycled buffers: 256 KiB chunks read at 1.0 GB/s, 1 MiB at 1.7,
 * 2 MiB at 1.5–1.8, 4 MiB at 2.0–2.1; a verified get (reads feeding a native tap) ran at
 * 0.78–0.82× the hash limit with 1 MiB, 0.90–0.94× with 2 MiB and 0.93× with 4 MiB,
 * because each read handed to the thread pool costs the main thread 50–300 µs on this VM
 * (waking a worker). A stream holds up to three (one buffered, two reading), so 2 MiB
 * keeps a hundred concurrent downloads near 600 MiB.
 */
export const STREAM_CHUNK_BYTES = 2 * 1024 * 1024;
/**
 * A durable write starts a background `fdatasync` each time this many more bytes have
 * been written. Without it the whole file is flushed by the final fsync, after the last
 * byte is hashed, and a 256 MiB put waits ~180 ms for the disk with nothing to overlap;
 * measured with 16 MiB steps the durable write keeps up with hashing (0.85–0.95× of
 * sha256 alone, against 0.6× with one fsync at the end).
 */
export const EARLY_SYNC_BYTES = 16 * 1024 * 1024;
/** An in-memory body is written in slices of this size (views, no copy). */
const BODY_SLICE_BYTES = 4 * 1024 * 1024;

export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function isErrno(error: unknown, ...codes: string[]): boolean {
  const code = errnoCode(error);
  return code !== undefined && codes.includes(code);
}

const STORAGE_FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);
const TRANSIENT = new Set([
  'ESTALE',
  'EAGAIN',
  'EBUSY',
  'ETIMEDOUT',
  'EINTR',
  'EMFILE',
  'ENFILE',
  'ECONNRESET',
]);
const DENIED = new Set(['EACCES', 'EPERM', 'EROFS']);

/**
 * Maps an errno error to a BlobcoreError. BlobcoreErrors pass through unchanged.
 * ENOENT maps to UNAVAILABLE here on purpose: only a caller that knows the missing path
 * is the object itself may say NOT_FOUND.
 */
export function mapFsError(error: unknown, what: string, driver: string): BlobcoreError {
  if (error instanceof BlobcoreError) return error;
  const code = errnoCode(error);
  const detail = code === undefined ? {} : { errno: code };
  const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
  if (error instanceof Error && error.name === 'AbortError') {
    return new BlobcoreError('ABORTED', message, { driver, cause: error });
  }
  if (code !== undefined && STORAGE_FULL.has(code)) {
    return blobError('INSUFFICIENT_STORAGE', message, { driver, cause: error, detail });
  }
  if (code !== undefined && TRANSIENT.has(code)) {
    return blobError('UNAVAILABLE', message, { driver, cause: error, retryable: true, detail });
  }
  if (code !== undefined && DENIED.has(code)) {
    return blobError('UNAVAILABLE', message, { driver, cause: error, retryable: false, detail });
  }
  if (code === 'ENAMETOOLONG') return blobError('KEY_INVALID', message, { driver, cause: error, detail });
  return blobError('UNAVAILABLE', message, { driver, cause: error, retryable: false, detail });
}

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  baseDelayMs: number;
  codes: ReadonlySet<string>;
}

export const NO_RETRY: RetryPolicy = { attempts: 1, baseDelayMs: 0, codes: new Set() };
export const NETWORK_RETRY: RetryPolicy = {
  attempts: 6,
  baseDelayMs: 5,
  codes: new Set(['ESTALE', 'EAGAIN', 'EBUSY', 'ETIMEDOUT', 'EINTR']),
};

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleepTimer(ms, undefined, signal ? { signal } : undefined);
  } catch (error) {
    if (signal?.aborted) throw abortedError(signal);
    throw error;
  }
}

/**
 * Metadata calls through Node's callback API rather than `fs/promises`: a GC or a burst
 * of small reads makes hundreds of thousands of them, and the callback form costs the
 * main thread about 0.6× as much per call (measured on 92,000 files: stat 0.51 s against
 * 0.80 s; open + close 1.0 s against 1.6 s). Raw descriptors (`openFd`) serve reads and
 * directory syncs, which never need a FileHandle's streaming helpers.
 */
const nativeReads = loadBuffersBinding();

const callback = {
  open: promisify(fs.open),
  close: promisify(fs.close),
  fstat: (fd: number) =>
    new Promise<fs.Stats>((resolve, reject) => {
      fs.fstat(fd, (error, stat) => (error ? reject(error) : resolve(stat)));
    }),
  fstatBig: (fd: number) =>
    new Promise<fs.BigIntStats>((resolve, reject) => {
      fs.fstat(fd, { bigint: true }, (error, stat) => (error ? reject(error) : resolve(stat)));
    }),
  fsync: promisify(fs.fsync),
  read: (fd: number, buffer: Uint8Array, offset: number, length: number, position: number) =>
    new Promise<number>((resolve, reject) => {
      fs.read(fd, buffer, offset, length, position, (error, bytesRead) =>
        error ? reject(error) : resolve(bytesRead),
      );
    }),
  rename: promisify(fs.rename),
  link: promisify(fs.link),
  unlink: promisify(fs.unlink),
  stat: (path: string) =>
    new Promise<fs.BigIntStats>((resolve, reject) => {
      fs.stat(path, { bigint: true }, (error, stat) => (error ? reject(error) : resolve(stat)));
    }),
  lstat: (path: string) =>
    new Promise<fs.BigIntStats>((resolve, reject) => {
      fs.lstat(path, { bigint: true }, (error, stat) => (error ? reject(error) : resolve(stat)));
    }),
  symlink: promisify(fs.symlink),
  readlink: (path: string) =>
    new Promise<string>((resolve, reject) => {
      fs.readlink(path, (error, target) => (error ? reject(error) : resolve(target)));
    }),
  readdir: (path: string) =>
    new Promise<fs.Dirent[]>((resolve, reject) => {
      fs.readdir(path, { withFileTypes: true }, (error, entries) =>
        error ? reject(error) : resolve(entries),
      );
    }),
  readdirNames: (path: string) =>
    new Promise<string[]>((resolve, reject) => {
      fs.readdir(path, (error, names) => (error ? reject(error) : resolve(names)));
    }),
  mkdir: (path: string, mode: number) =>
    new Promise<void>((resolve, reject) => {
      fs.mkdir(path, { mode }, (error) => (error ? reject(error) : resolve()));
    }),
  rmdir: promisify(fs.rmdir),
};

/** Metadata calls with the driver's retry policy. Data streaming is never retried here. */
export class Sys {
  constructor(readonly retry: RetryPolicy) {}

  async call<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        const code = errnoCode(error);
        if (attempt >= this.retry.attempts || code === undefined || !this.retry.codes.has(code)) throw error;
        const delay = this.retry.baseDelayMs * 2 ** (attempt - 1);
        await sleep(delay + randomInt(0, Math.max(1, Math.ceil(delay / 2))));
      }
    }
  }

  open(path: string, flags: string | number, mode?: number): Promise<FileHandle> {
    return this.call(() => fsp.open(path, flags, mode));
  }
  /** A raw descriptor, for reads and syncs; the caller closes it with `closeFd`. */
  openFd(path: string, flags: string | number, mode?: number): Promise<number> {
    return this.call(() => callback.open(path, flags, mode));
  }
  closeFd(fd: number): Promise<void> {
    return callback.close(fd);
  }
  fstat(fd: number): Promise<fs.Stats>;
  fstat(fd: number, bigint: true): Promise<fs.BigIntStats>;
  fstat(fd: number, bigint?: true): Promise<fs.Stats | fs.BigIntStats> {
    return bigint ? callback.fstatBig(fd) : callback.fstat(fd);
  }
  fsync(fd: number): Promise<void> {
    return callback.fsync(fd);
  }
  /** One `pread`; returns the bytes read (0 at the end of the file). */
  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return callback.read(fd, buffer, offset, length, position);
  }
  /** Whether `readFeeding` works (the blobcore_buffers addon is loaded). */
  readonly feedsTaps = typeof nativeReads?.readInto === 'function'; // a stale build may lack it
  /**
   * Fills `buffer` from `position` (short only at the end of the file) on a thread-pool
   * worker, which then feeds the bytes to `tap`, a native ReadTap handle, in call order.
   * Only when `feedsTaps`.
   */
  readFeeding(fd: number, buffer: Uint8Array, position: number, tap: object): Promise<number> {
    if (!this.feedsTaps) throw new Error('readFeeding without readInto in the blobcore_buffers addon');
    return (nativeReads as BuffersBinding).readInto(fd, buffer, position, tap);
  }
  rename(from: string, to: string): Promise<void> {
    return this.call(() => callback.rename(from, to));
  }
  link(from: string, to: string): Promise<void> {
    return this.call(() => callback.link(from, to));
  }
  unlink(path: string): Promise<void> {
    return this.call(() => callback.unlink(path));
  }
  /** Unlinks, treating a missing file as done. Returns whether something was removed. */
  async unlinkIfExists(path: string): Promise<boolean> {
    try {
      await this.unlink(path);
      return true;
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return false;
      throw error;
    }
  }
  stat(path: string): Promise<fs.BigIntStats> {
    return this.call(() => callback.stat(path));
  }
  lstat(path: string): Promise<fs.BigIntStats> {
    return this.call(() => callback.lstat(path));
  }
  lutimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.call(() => fsp.lutimes(path, atime, mtime));
  }
  symlink(target: string, path: string): Promise<void> {
    return this.call(() => callback.symlink(target, path));
  }
  readlink(path: string): Promise<string> {
    return this.call(() => callback.readlink(path));
  }
  readdir(path: string): Promise<fs.Dirent[]> {
    return this.call(() => callback.readdir(path));
  }
  readdirNames(path: string): Promise<string[]> {
    return this.call(() => callback.readdirNames(path));
  }
  mkdir(path: string, mode: number): Promise<void> {
    return this.call(() => callback.mkdir(path, mode));
  }
  rmdir(path: string): Promise<void> {
    return this.call(() => callback.rmdir(path));
  }
  rm(path: string): Promise<void> {
    return this.call(() => fsp.rm(path, { recursive: true, force: true, maxRetries: 3 }));
  }
  readFile(path: string): Promise<Buffer> {
    return this.call(() => fsp.readFile(path));
  }
  chmod(path: string, mode: number): Promise<void> {
    return this.call(() => fsp.chmod(path, mode));
  }
  statfs(path: string) {
    return this.call(() => fsp.statfs(path));
  }
  copyFile(from: string, to: string): Promise<void> {
    return this.call(() => fsp.copyFile(from, to, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE));
  }
}

/** Writes all of `chunks` at `position`, resuming after short writes. */
async function writeAll(handle: FileHandle, chunks: Uint8Array[], position: number): Promise<void> {
  let pending = chunks;
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } =
      pending.length === 1
        ? await handle.write(pending[0] as Uint8Array, 0, (pending[0] as Uint8Array).byteLength, at)
        : await handle.writev(pending, at);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    at += bytesWritten;
    // Drop what was written; keep the remainder of a partially written chunk.
    let skip = bytesWritten;
    const rest: Uint8Array[] = [];
    for (const chunk of pending) {
      if (skip >= chunk.byteLength) {
        skip -= chunk.byteLength;
        continue;
      }
      rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
      skip = 0;
    }
    pending = rest;
  }
}

/**
 * Streams a body into a file. Chunks are batched by reference (no copy) into `writev`
 * calls of about WRITE_BATCH_BYTES; one batch is written while the next is gathered.
 * With `syncEvery`, an `fdatasync` runs in the background as soon as that many more bytes
 * are on disk (one at a time; one that ends starts the next if enough is new again), so
 * writeback keeps up with the writes instead of waiting for the next batch; its failure
 * fails the write like a write error would.
 * Every write's and sync's failure is observed: `finish()` or `settle()` must be called.
 */
export class FileSink {
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private inflight: Promise<void> | undefined;
  private syncing: Promise<void> | undefined;
  private syncError: { error: unknown } | undefined;
  private syncedUpTo = 0;
  private settling = false;
  /** Bytes of completed writes (writes run one at a time, in order). */
  private onDisk = 0;
  private position: number;
  written = 0;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly onProgress?: (written: number) => Promise<void> | void,
    private readonly syncEvery?: number,
  ) {
    this.position = start;
  }

  async add(chunk: Uint8Array): Promise<void> {
    if (chunk.byteLength === 0) return;
    this.batch.push(chunk);
    this.batchBytes += chunk.byteLength;
    if (this.batchBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batchBytes === 0) return;
    if (this.syncError) throw this.syncError.error; // the disk already failed: stop writing
    const chunks = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (this.inflight) await this.inflight;
    const at = this.position;
    this.position += bytes;
    this.written += bytes;
    const write = writeAll(this.handle, chunks, at).then(() => {
      this.onDisk += bytes;
      this.syncInBackground();
    });
    write.catch(() => {}); // observed here; the error is rethrown by the next await of `inflight`
    this.inflight = write;
    if (this.onProgress) await this.onProgress(this.written);
  }

  /** Starts an fdatasync of what is on disk so far, when enough is new and none runs. */
  private syncInBackground(): void {
    if (this.syncEvery === undefined || this.syncing || this.syncError || this.settling) return;
    const upTo = this.onDisk;
    if (upTo - this.syncedUpTo < this.syncEvery) return;
    this.syncedUpTo = upTo;
    const sync = this.handle.datasync().then(
      () => {
        this.syncing = undefined;
        this.syncInBackground(); // writes that landed meanwhile
      },
      (error: unknown) => {
        this.syncing = undefined;
        this.syncError ??= { error }; // kept until `finish()` rethrows it
      },
    );
    this.syncing = sync;
  }

  /** Writes what is left and waits for the writes, not for background syncs still running. */
  async drain(): Promise<number> {
    await this.flush();
    const last = this.inflight;
    this.inflight = undefined;
    if (last) await last;
    return this.written;
  }

  /** Writes what is left and waits for every write and background sync. */
  async finish(): Promise<number> {
    await this.drain();
    // A sync that ends may start another: wait until none runs.
    while (this.syncing) await this.syncing;
    if (this.syncError) throw this.syncError.error;
    return this.written;
  }

  /** Waits for a write or sync still in flight after a failure, ignoring its outcome. */
  async settle(): Promise<void> {
    this.settling = true; // no further background syncs
    const last = this.inflight;
    this.inflight = undefined;
    if (last) await last.catch(() => {});
    while (this.syncing) await this.syncing;
  }
}

/**
 * Writes a whole body through a sink. A stream body is pulled with its `next()` raced
 * against the signal, so a source that stalls cannot keep an aborted write waiting; the
 * abandoned `next()` is observed and the source is asked to `return()`.
 */
export async function writeBody(
  sink: FileSink,
  body: Uint8Array | AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
  until: 'synced' | 'written' = 'synced',
): Promise<number> {
  try {
    throwIfAborted(signal);
    if (body instanceof Uint8Array) {
      // In slices, so a large in-memory body still gets its background syncs.
      for (let at = 0; at < body.byteLength; at += BODY_SLICE_BYTES) {
        await sink.add(body.subarray(at, Math.min(at + BODY_SLICE_BYTES, body.byteLength)));
      }
    } else await pump(sink, body, signal);
    throwIfAborted(signal);
    // 'written': the caller ends with `sink.finish()` (or `settle()`), when it needs the syncs.
    return await (until === 'written' ? sink.drain() : sink.finish());
  } catch (error) {
    await sink.settle();
    throw error;
  }
}

async function pump(sink: FileSink, body: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined) {
  const iterator = body[Symbol.asyncIterator]();
  let onAbort: (() => void) | undefined;
  const aborted = signal
    ? new Promise<never>((_, reject) => {
        onAbort = () => reject(abortedError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
      })
    : undefined;
  aborted?.catch(() => {});
  let finished = false;
  try {
    for (;;) {
      const next = iterator.next();
      next.catch(() => {}); // a stalled source may settle after we gave up on it
      const result = aborted ? await Promise.race([next, aborted]) : await next;
      if (result.done) {
        finished = true;
        return;
      }
      throwIfAborted(signal);
      await sink.add(result.value);
    }
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    if (!finished) iterator.return?.()?.catch(() => {});
  }
}
