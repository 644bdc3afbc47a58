/**
 * The driver contract: a dumb, fast byte mover under validated keys.
 *
 * Drivers know nothing of digests, repositories or GC. They store opaque objects under
 * `/`-separated keys, stage multipart writes whose handles are plain JSON (so any
 * process can finish them), and declare what they can do in `capabilities`.
 *
 * Every driver is used through `guardDriver()` (see ./driver-guard.ts), which
 * validates keys, ranges and part numbers, checks AbortSignals, enforces declared
 * sizes and tags errors with the driver name, so no driver repeats that work.
 * The executable form of this contract is `blobcore/conformance`.
 */
import type { Readable } from 'node:stream';

/** A body to write: bytes in memory, or a stream of chunks (a Node Readable is one). */
export type Body = Uint8Array | AsyncIterable<Uint8Array>;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface SignalOptions {
  signal?: AbortSignal | undefined;
}

export interface DeleteOptions extends SignalOptions {
  /**
   * The delete may be lost if the machine crashes soon after (the key comes back), and the
   * caller does not need to wait for it to be durable: what it removes is garbage that a
   * later pass finds again (swept bytes without an index become GC orphans). Drivers that
   * make each change durable on its own (fs, pvc: a directory fsync) skip that for it;
   * the delete is visible to every reader at once either way.
   */
  lazy?: boolean | undefined;
}

export interface ObjectStat {
  size: number;
  /** Opaque version tag; changes whenever the object is rewritten. Used for `ifMatch`. */
  etag: string;
  modified: Date;
}

export interface ReadOptions extends SignalOptions {
  /** First byte to read. `offset === size` gives an empty stream; past the end is RANGE_INVALID. */
  offset?: number | undefined;
  /** Bytes to read at most; clipped to the object's end. */
  length?: number | undefined;
  /**
   * Only for drivers with `capabilities.readTap`: every byte the stream yields goes to
   * this tap first, once and in order (the store passes a digest here to verify a read
   * without a second pass over the bytes).
   */
  tap?: ReadTap | undefined;
}

/**
 * Sees the bytes of a read in order (see `capabilities.readTap`). The contract, for a
 * driver that declares it:
 * - the tap sees exactly the bytes the stream yields, each once, in order, and each
 *   before it is yielded: no read-ahead bytes the stream will not yield, no bytes fed
 *   twice when the driver retries a read internally;
 * - a chunk is not changed after it was fed (a verified get vouches for the bytes as fed);
 * - `update` may block briefly or throw; a throw fails the stream;
 * - when `native` is set and the driver has a native read path that takes such handles
 *   (blobcore_buffers' `readInto`), it may pass the handle there instead of calling
 *   `update`: the read then feeds the tap on its own thread, in the order the reads were
 *   started. A driver never mixes the two within one stream.
 * Wrappers that forward `read` must pass `tap` through unchanged, or not declare the
 * capability. The tap is opaque: a driver does not know what it computes.
 */
export interface ReadTap {
  update(bytes: Uint8Array): void;
  readonly native?: object | undefined;
}

export interface WriteOptions extends SignalOptions {
  /** Exact body length when known. A body of another length fails with SIZE_INVALID and writes nothing. */
  size?: number | undefined;
  /** Create-only: PRECONDITION_FAILED if the key exists (enforced when `capabilities.conditionalWrite`). */
  ifNoneMatch?: '*' | undefined;
  /** Replace only this version: PRECONDITION_FAILED if the current etag differs or the key is missing. */
  ifMatch?: string | undefined;
  /**
   * Publish nothing before this settles: the write may stage its body meanwhile, then
   * makes it visible once the promise fulfils, or fails with its reason (nothing
   * published, the key as it was) if it rejects. A record that names other bytes is
   * written this way while those bytes become durable. Drivers without
   * `capabilities.writeBarrier` get it from the guard, which waits before calling them.
   */
  notBefore?: Promise<unknown> | undefined;
}

export interface WriteResult {
  etag: string;
  size: number;
}

export interface ListOptions extends SignalOptions {
  /** Return only keys strictly greater than this one (the previous page's `cursor`). */
  startAfter?: string | undefined;
  /** Page size; drivers may return fewer. Default and maximum 1000. */
  limit?: number | undefined;
}

export interface ListPage {
  /** Keys starting with the prefix, in ascending byte order. */
  keys: string[];
  /** Present when more keys may follow: pass it as `startAfter`. */
  cursor?: string;
}

/**
 * A multipart write in progress. Plain JSON: the store persists it in an upload's state
 * record and another process hands it back to finish the write. `key` is the target.
 */
export interface MultipartHandle {
  readonly key: string;
  readonly [field: string]: Json;
}

/** Receipt for one staged part; `completeMultipart` takes them in order. */
export interface PartRef {
  readonly partNumber: number;
  readonly size: number;
  readonly etag: string;
}

export interface DriverLimits {
  /** Every part but the last must be at least this large. */
  minPartSize: number;
  maxPartSize: number;
  /** Part numbers run from 1 to maxParts. */
  maxParts: number;
}

export interface DriverCapabilities {
  /** `ifNoneMatch`/`ifMatch` are enforced atomically. When false they are best-effort checks. */
  conditionalWrite: boolean;
  signedUrl: boolean;
  copy: boolean;
  /** Cheap second name for an object's bytes (hard link); `to` must not exist. */
  link: boolean;
  usage: boolean;
  /**
   * `uploadPart` accepts `hold` (see PartOptions): the driver runs the hooks while it
   * holds the part's byte range exclusively against every other `uploadPart` and
   * `completeMultipart` of the same upload, in any process. Absent means false; a
   * driver without it rejects `hold` with UNSUPPORTED.
   */
  exclusiveParts?: boolean;
  /** `read` feeds `options.tap` (see ReadTap). Absent means false: the store hashes the stream itself. */
  readTap?: boolean;
  /** `write` honours `options.notBefore` itself, staging the body while it waits. Absent means false. */
  writeBarrier?: boolean;
}

/**
 * Hooks run inside a part upload, on drivers with `capabilities.exclusiveParts`, while
 * the driver holds the part's range: `before` once the hold is taken and before any
 * byte is written (a throw fails the call with nothing written); `written` once every
 * byte is written, while the part still syncs, with `durable`, which fulfils once the
 * part is durable per the driver's durability and rejects if it cannot be. Anything
 * `written` makes that names the part must wait for `durable` (a write's `notBefore`).
 * The hold is released only after both have settled. A throw from `written` fails the
 * call; the part stays staged under a ref nobody was given. The upload store uses them
 * to check and swap its state record under the hold, so claiming the upload needs no
 * record write of its own; the swap is staged while the part syncs and never names
 * bytes a crash could lose.
 */
export interface PartHold {
  before(): Promise<void>;
  written(ref: PartRef, durable: Promise<void>): Promise<void>;
}

export interface PartOptions extends SignalOptions {
  hold?: PartHold | undefined;
}

export interface SignedUrlOptions extends SignalOptions {
  /** Seconds until the URL stops working. */
  expiresIn: number;
  method?: 'GET' | undefined;
}

export interface StorageUsage {
  /** Bytes the backend can hold in all; `Infinity` when unbounded. */
  capacity: number;
  /** Bytes still free for this process. */
  free: number;
}

export interface Driver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  readonly limits: DriverLimits;

  stat(key: string, options?: SignalOptions): Promise<ObjectStat | null>;
  /** NOT_FOUND and RANGE_INVALID reject the promise; later failures error the stream. */
  read(key: string, options?: ReadOptions): Promise<Readable>;
  /** Atomic: readers see the old object or the whole new one, never a part. */
  write(key: string, body: Body, options?: WriteOptions): Promise<WriteResult>;
  /** Resolves true if something was deleted, false if the key was missing. */
  delete(key: string, options?: DeleteOptions): Promise<boolean>;
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  createMultipart(key: string, options?: SignalOptions): Promise<MultipartHandle>;
  /**
   * Stages part `partNumber` holding bytes [offset, offset + size) of the final object.
   * Uploading the same part number again replaces it.
   */
  uploadPart(
    handle: MultipartHandle,
    partNumber: number,
    offset: number,
    body: Body,
    size: number,
    options?: PartOptions,
  ): Promise<PartRef>;
  /** Publishes the parts, in the order given, as the handle's key. Contiguous, ascending part numbers. */
  completeMultipart(
    handle: MultipartHandle,
    parts: readonly PartRef[],
    options?: SignalOptions,
  ): Promise<WriteResult>;
  /** Drops staged parts. Aborting an unknown or finished handle is not an error. */
  abortMultipart(handle: MultipartHandle, options?: SignalOptions): Promise<void>;

  signedUrl?(key: string, options: SignedUrlOptions): Promise<string>;
  copy?(from: string, to: string, options?: SignalOptions): Promise<WriteResult>;
  link?(from: string, to: string, options?: SignalOptions): Promise<WriteResult>;
  usage?(options?: SignalOptions): Promise<StorageUsage>;
  /**
   * Drivers that stage writes in temp files (fs, pvc) remove those a crashed process
   * left, older than `olderThan` ms and never a live writer's. GC calls it.
   */
  sweepTemp?(options?: { olderThan?: number | undefined } & SignalOptions): Promise<{ removed: number }>;
  close?(): Promise<void>;
}

export const DEFAULT_LIST_LIMIT = 1000;

export { guardBody, guardDriver, isGuarded } from './driver-guard.js';
export { isValidKey, joinKey, MAX_KEY_BYTES, validateKey, validatePrefix } from './keys.js';
