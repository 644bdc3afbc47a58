/**
 * Resumable chunked uploads.
 *
 * One JSON state record per upload (`uploads/<id>/state`, see ./layout.ts), rewritten
 * with compare-and-swap at every step, is the only truth about an upload; any process
 * sharing the backend can resume it. It holds the offset, the sha256 of the bytes so far
 * (prefix digest), the exported hash state at that offset, the multipart handle and the
 * staged parts, and the small tail of bytes not yet big enough to be a part.
 *
 * append(body, { offset }):
 *   1. offset must equal the record's offset (re-read once if not), else RANGE_INVALID
 *      carrying the current offset; nothing is written.
 *   2. Bytes that, with the tail, stay below the driver's minPartSize are written to a
 *      tail object under a fresh random key, then the record is swapped. Of two
 *      instances racing at one offset, the swap lets exactly one win; the loser deletes
 *      its tail object.
 *   3. Otherwise the instance first swaps a *claim* into the record (owner, expiry),
 *      because a part is written in place (fs) or by part number (S3, Azure) and two
 *      writers must never stage the same part. It then uploads tail + new bytes as the
 *      next part, hashing as they stream, and swaps in the new offset, prefix digest and
 *      hash state, releasing the claim. A claim left by a crashed process expires after
 *      `uploadLeaseMs`.
 *   3'. On drivers with `capabilities.exclusiveParts` (fs, pvc) no claim is written: the
 *      driver holds the part's byte range against every other part write and completion,
 *      in any process, and runs the store's hooks under that hold — before any byte is
 *      written, the record's etag is checked (a stale copy stops with RANGE_INVALID and
 *      the current offset); once every byte is written, the new record's swap is
 *      staged while the part syncs and published only once it is durable (the driver
 *      hands `written` that promise; the swap is written with `notBefore` on it). So
 *      an append costs one state write, and no part can be staged over another between
 *      its write and the swap that names it. A writer found holding the range is
 *      reported as busy (RANGE_INVALID with `busy`); a crashed holder's hold is broken
 *      by the driver (dead owner, or lease). The multipart upload itself is created and
 *      recorded once, before the first part.
 *   Bodies of unknown length are cut into `partSize` pieces in memory (bounded).
 *   On any failure the live hasher is dropped and rebuilt from the record, so it never
 *   counts bytes the record does not.
 *
 * commit({ digest, size }):
 *   compares against the prefix digest (no bytes are re-read, no hash state needed),
 *   assembles the parts at the upload's data key (completeMultipart: no copy), and
 *   publishes the blob index create-only (./blob-index.ts). An existing digest is a
 *   dedup: the staged bytes are dropped. A wrong digest with a known prefix digest
 *   leaves the upload as it was (resumable). When the hash state was lost (or the driver
 *   cannot enforce conditional writes), the assembled bytes are re-read and hashed
 *   before publishing — the last resort, counted in `store.counters.rehashedBytes`; a
 *   mismatch found that way fails the upload cleanly (it is removed).
 *
 * cancel(): deletes the record first (so every other instance's next swap fails with
 *   BLOB_UPLOAD_UNKNOWN), then the staged parts and tail objects.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { findBlob, publishIndex } from './blob-index.js';
import { type DigestAlgorithm, formatDigest, parseDigest } from './digest.js';
import type { Body, Driver, MultipartHandle, PartHold, PartRef, SignalOptions } from './driver.js';
import { blobError, isBlobcoreError, throwIfAborted } from './errors.js';
import { createResumableSha256, type ResumableSha256 } from './hash/index.js';
import { isUploadId, newDataKey, newUploadId, tailKey, uploadPrefix, uploadStateKey } from './layout.js';
import { listAll, readRecord, swapRecord } from './records.js';
import { ByteReader } from './stream/byte-reader.js';
import { HashTap } from './stream/hashing.js';

/** Tries of a held part write that found its range claimed, and the first pause between them. */
const HOLD_ATTEMPTS = 6;
const HOLD_BACKOFF_MS = 4;

export interface StoreCounters {
  /** Bytes read back from the backend to rebuild a digest the hash state could not give. */
  rehashedBytes: number;
}

export interface UploadOptions {
  uploadLeaseMs: number;
  partSize: number;
  verifyCommit: 'auto' | 'always';
}

/** Links a committed blob into the repository an upload was started for. */
export type RepositoryLinker = (
  repository: string,
  digest: string,
  size: number,
  signal?: AbortSignal,
) => Promise<void>;

export interface StartOptions extends SignalOptions {
  /** Link the blob into this repository on commit. */
  repository?: string | undefined;
}

interface TailRef {
  key: string;
  offset: number;
  size: number;
}

/** A run of new bytes headed for a tail object or a part. */
interface Piece {
  size: number;
  bytes: Uint8Array | AsyncIterable<Uint8Array>;
  tail: boolean;
}

interface Claim {
  owner: string;
  expires: number;
}

/** The persisted upload state record. */
export interface UploadRecord {
  v: 1;
  id: string;
  created: string;
  updated: string;
  offset: number;
  /** sha256 of bytes [0, offset); null once unknown (hash state lost). */
  prefixDigest: string | null;
  /** Canonical hash state at `offset` (base64); null or absent when unavailable. */
  hashState?: string | null;
  dataKey: string;
  multipart: MultipartHandle | null;
  parts: PartRef[];
  tail: TailRef[];
  claim: Claim | null;
  /** Number for the next staged part. A takeover skips one (see `claim`). */
  nextPart: number;
  /** Times an instance took over an expired claim of another. */
  takeovers: number;
  /** Repository the blob is linked into on commit. */
  repository?: string;
}

export interface UploadStatus {
  id: string;
  /** Bytes accepted so far; the next append must start here. */
  offset: number;
  created: Date;
  updated: Date;
  /**
   * 'live': this instance holds the hasher; 'persisted': the record holds a hash state
   * any instance can continue from; 'missing': it was lost, so commit re-reads the bytes.
   */
  hashState: 'live' | 'persisted' | 'missing';
  /** True when commit will (or did) re-read stored bytes to compute the digest. */
  rehash: boolean;
  parts: number;
}

export interface AppendOptions extends SignalOptions {
  /** Where this chunk starts; must equal the upload's current offset. */
  offset: number;
  /** The chunk's length when known (required by nothing, but lets parts stream without buffering). */
  size?: number | undefined;
}

export interface CommitOptions extends SignalOptions {
  digest: string;
  size?: number | undefined;
}

export interface CommitResult {
  digest: string;
  size: number;
  deduplicated: boolean;
  /** Bytes re-read to verify this commit (0 on the normal path). */
  rehashedBytes: number;
}

function now(): string {
  return new Date().toISOString();
}

/** A commit of this record uploads its tail as one more part (it has parts, and a tail). */
function stagesTailAsPart(record: UploadRecord): boolean {
  return record.parts.length > 0 && tailSize(record) > 0;
}

function tailSize(record: UploadRecord): number {
  return record.tail.reduce((sum, tail) => sum + tail.size, 0);
}

function rangeInvalid(record: UploadRecord, why: string, busy = false): Error {
  return blobError('RANGE_INVALID', `${why}; upload ${record.id} is at offset ${record.offset}`, {
    detail: { offset: record.offset, ...(busy ? { busy: true } : {}) },
  });
}

function unknownUpload(id: string): Error {
  return blobError(
    'BLOB_UPLOAD_UNKNOWN',
    `upload ${id} does not exist (finished, cancelled or never started)`,
  );
}

export class UploadManager {
  constructor(
    private readonly driver: Driver,
    private readonly options: UploadOptions,
    private readonly counters: StoreCounters,
    private readonly linker: RepositoryLinker,
  ) {}

  async start(options: StartOptions = {}): Promise<Upload> {
    throwIfAborted(options.signal);
    const hasher = await createResumableSha256();
    const id = newUploadId();
    const record: UploadRecord = {
      v: 1,
      id,
      created: now(),
      updated: now(),
      offset: 0,
      prefixDigest: hasher.digest(),
      hashState: Buffer.from(hasher.exportState()).toString('base64'),
      dataKey: newDataKey(),
      multipart: null,
      parts: [],
      tail: [],
      claim: null,
      nextPart: 1,
      takeovers: 0,
    };
    if (options.repository !== undefined) record.repository = options.repository;
    const etag = await swapRecord(this.driver, uploadStateKey(id), record, null, options);
    if (etag === null) throw blobError('BLOB_UPLOAD_INVALID', `upload id collision: ${id}`);
    return new Upload(this.driver, this.options, this.counters, this.linker, record, etag, hasher);
  }

  /** Continues an upload started by any instance on this backend. */
  async resume(id: string, options: StartOptions = {}): Promise<Upload> {
    throwIfAborted(options.signal);
    if (!isUploadId(id)) throw unknownUpload(String(id).slice(0, 80));
    const found = await readRecord<UploadRecord>(this.driver, uploadStateKey(id), options);
    if (found?.value.v !== 1 || found.value.id !== id) throw unknownUpload(id);
    // An upload belongs to the repository it was started for (or to none).
    if (found.value.repository !== options.repository) throw unknownUpload(id);
    return new Upload(this.driver, this.options, this.counters, this.linker, found.value, found.etag, null);
  }
}

export class Upload {
  readonly id: string;
  /** Identifies this instance in claims; two Upload objects never share one. */
  private readonly owner = randomBytes(8).toString('hex');
  private hasher: ResumableSha256 | null;
  private finished = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly driver: Driver,
    private readonly options: UploadOptions,
    private readonly counters: StoreCounters,
    private readonly linker: RepositoryLinker,
    private record: UploadRecord,
    private etag: string,
    hasher: ResumableSha256 | null,
  ) {
    this.id = record.id;
    this.hasher = hasher;
  }

  /** Runs operations of this instance one at a time, in call order. */
  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private ensureOpen(): void {
    if (this.finished) throw unknownUpload(this.id);
  }

  /** Re-reads the record unless our copy is still current. */
  private async refresh(options: SignalOptions): Promise<void> {
    const stat = await this.driver.stat(uploadStateKey(this.id), options);
    if (stat?.etag === this.etag) return;
    const found = stat ? await readRecord<UploadRecord>(this.driver, uploadStateKey(this.id), options) : null;
    if (!found) {
      this.finished = true;
      throw unknownUpload(this.id);
    }
    this.record = found.value;
    this.etag = found.etag;
    if (this.hasher && this.hasher.bytesHashed !== this.record.offset) this.hasher = null;
  }

  private claimedByOther(record: UploadRecord): boolean {
    return record.claim !== null && record.claim.owner !== this.owner && record.claim.expires > Date.now();
  }

  /** Swaps in `next`; on a lost race re-reads and reports the upload's real offset. */
  private async swap(
    next: UploadRecord,
    signal: AbortSignal | undefined,
    notBefore?: Promise<void>,
  ): Promise<void> {
    next.updated = now();
    const etag = await swapRecord(this.driver, uploadStateKey(this.id), next, this.etag, {
      signal,
      notBefore,
    });
    if (etag === null) {
      this.hasher = null;
      await this.refresh({ signal });
      throw rangeInvalid(this.record, 'another writer changed the upload');
    }
    this.record = next;
    this.etag = etag;
  }

  /** The hasher positioned at the record's offset, or null when the hash state is lost. */
  private async liveHasher(): Promise<ResumableSha256 | null> {
    if (this.hasher && this.hasher.bytesHashed === this.record.offset) return this.hasher;
    this.hasher = null;
    const state = this.record.hashState;
    if (typeof state !== 'string') return null;
    try {
      const hasher = await createResumableSha256(Buffer.from(state, 'base64'));
      if (hasher.bytesHashed !== this.record.offset) return null;
      this.hasher = hasher;
      return hasher;
    } catch {
      return null; // a corrupt state is treated as lost: commit re-hashes
    }
  }

  private withHash(next: UploadRecord, hasher: ResumableSha256 | null): UploadRecord {
    if (hasher) {
      next.prefixDigest = hasher.digest();
      next.hashState = Buffer.from(hasher.exportState()).toString('base64');
    } else {
      next.prefixDigest = null;
      next.hashState = null;
    }
    return next;
  }

  private statusOf(): UploadStatus {
    const persisted = typeof this.record.hashState === 'string';
    const live = this.hasher !== null && this.hasher.bytesHashed === this.record.offset;
    return {
      id: this.id,
      offset: this.record.offset,
      created: new Date(this.record.created),
      updated: new Date(this.record.updated),
      hashState: live ? 'live' : persisted ? 'persisted' : 'missing',
      rehash: !live && !persisted && this.record.prefixDigest === null,
      parts: this.record.parts.length,
    };
  }

  async status(options: SignalOptions = {}): Promise<UploadStatus> {
    return this.serialize(async () => {
      this.ensureOpen();
      await this.refresh(options);
      return this.statusOf();
    });
  }

  async append(body: Body, options: AppendOptions): Promise<UploadStatus> {
    return this.serialize(() => this.appendNow(body, options));
  }

  private async appendNow(body: Body, options: AppendOptions): Promise<UploadStatus> {
    const { signal } = options;
    throwIfAborted(signal);
    this.ensureOpen();
    if (!Number.isSafeInteger(options.offset) || options.offset < 0) {
      throw rangeInvalid(this.record, `offset must be a non-negative integer, got ${options.offset}`);
    }
    if (options.size !== undefined && !(Number.isSafeInteger(options.size) && options.size >= 0)) {
      throw blobError('SIZE_INVALID', `size must be a non-negative integer, got ${options.size}`);
    }
    if (body instanceof Uint8Array && options.size !== undefined && options.size !== body.byteLength) {
      throw blobError('SIZE_INVALID', `chunk has ${body.byteLength} bytes, declared ${options.size}`);
    }
    // Our copy of the record may be stale (another instance appended or holds a claim):
    // re-read once, then judge offset and claim on the same, current record.
    if (options.offset !== this.record.offset || this.claimedByOther(this.record))
      await this.refresh({ signal });
    if (options.offset !== this.record.offset) {
      throw rangeInvalid(this.record, `chunk starts at ${options.offset}`);
    }
    if (this.claimedByOther(this.record))
      throw rangeInvalid(this.record, 'another writer is appending', true);

    // An in-memory body is cut into pieces by view (their hashing starts at once, see
    // HashTap); a stream is read through a ByteReader.
    const inMemory = body instanceof Uint8Array ? body : undefined;
    const known = inMemory ? inMemory.byteLength : options.size;
    const reader = inMemory ? undefined : new ByteReader(body as Exclude<Body, Uint8Array>);
    let used = 0; // bytes of an in-memory body already in pieces
    const hasher = await this.liveHasher();
    const written: string[] = []; // tail keys written but not yet in a swapped record
    try {
      const { minPartSize, maxPartSize } = this.driver.limits;
      let remaining = known;
      let last = false;
      while (!last) {
        throwIfAborted(signal);
        const pending = tailSize(this.record); // always below minPartSize
        let piece: Piece;
        if (remaining === undefined) {
          // Unknown length: buffer up to one part, so the part's size is known.
          const room = Math.min(Math.max(this.options.partSize, minPartSize), maxPartSize) - pending;
          const buffered = await (reader as ByteReader).readUpTo(room);
          last = await (reader as ByteReader).ended();
          piece = {
            size: buffered.length,
            bytes: buffered,
            tail: pending + buffered.length < minPartSize,
          };
        } else {
          const tail = pending + remaining < minPartSize;
          const size = tail ? remaining : Math.min(remaining, maxPartSize - pending);
          const bytes = inMemory ? inMemory.subarray(used, used + size) : (reader as ByteReader).take(size);
          piece = { size, bytes, tail };
          used += size;
          remaining -= size;
          last = remaining === 0;
        }
        if (piece.size === 0) break;
        // A stream longer than its declared size must fail before the last swap.
        const check = last && reader && known !== undefined ? () => this.checkEnded(reader) : undefined;
        if (piece.tail) await this.appendTail(piece, hasher, written, check, signal);
        else await this.appendPart(piece, hasher, last, check, signal);
      }
      if (this.record.claim?.owner === this.owner) await this.swap({ ...this.record, claim: null }, signal);
      return this.statusOf();
    } catch (error) {
      this.hasher = null; // may have absorbed bytes the record does not hold
      await reader?.close().catch(() => undefined);
      for (const key of written) await this.driver.delete(key).catch(() => false);
      await this.releaseClaim();
      throw error;
    }
  }

  private async checkEnded(reader: ByteReader): Promise<void> {
    if (!(await reader.ended())) throw blobError('SIZE_INVALID', 'chunk is longer than its declared size');
  }

  /** Writes bytes that stay below minPartSize to a fresh tail object, then swaps the record. */
  private async appendTail(
    piece: Piece,
    hasher: ResumableSha256 | null,
    written: string[],
    check: (() => Promise<void>) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const key = tailKey(this.id, this.record.offset);
    written.push(key);
    const tap = new HashTap(hasher ? [hasher] : []);
    await tap.stopOnFailure(() =>
      this.driver.write(key, tap.wrap(piece.bytes), { size: piece.size, signal }),
    );
    tap.finish();
    await check?.();
    const next: UploadRecord = {
      ...this.record,
      offset: this.record.offset + piece.size,
      tail: [...this.record.tail, { key, offset: this.record.offset, size: piece.size }],
    };
    await this.swap(this.withHash(next, hasher), signal);
    written.splice(written.indexOf(key), 1);
  }

  /**
   * Claims the upload so no other instance stages a part or commits at the same time.
   * Taking over an expired claim means its owner crashed or stalled; if it merely
   * stalled it may still stage the part it was on. So a takeover moves on to a fresh
   * part number (drivers that stage by number never see the two collide) and marks
   * the upload for verification at commit (drivers that stage in place might).
   */
  private async claim(withMultipart: boolean, signal: AbortSignal | undefined): Promise<void> {
    const current = this.record;
    const takeover = current.claim !== null && current.claim.owner !== this.owner;
    const next: UploadRecord = {
      ...current,
      claim: { owner: this.owner, expires: Date.now() + this.options.uploadLeaseMs },
      nextPart: takeover ? current.nextPart + 1 : current.nextPart,
      takeovers: takeover ? current.takeovers + 1 : current.takeovers,
    };
    // A part follows, or the commit stages the tail as one more part.
    if (withMultipart || stagesTailAsPart(current)) this.checkPartNumber(next.nextPart);
    if (withMultipart) await this.swapWithMultipart(next, signal);
    else await this.swap(next, signal);
  }

  /** A part past the driver's last part number fails before anything is written. */
  private checkPartNumber(partNumber: number): void {
    if (partNumber > this.driver.limits.maxParts) {
      throw blobError(
        'BLOB_UPLOAD_INVALID',
        `upload ${this.id} would exceed ${this.driver.limits.maxParts} parts`,
      );
    }
  }

  /**
   * Swaps in `next`, first creating the multipart upload it names if it has none yet;
   * a multipart created for a swap that fails is aborted.
   */
  private async swapWithMultipart(next: UploadRecord, signal: AbortSignal | undefined): Promise<void> {
    if (next.multipart) return this.swap(next, signal);
    const multipart = await this.driver.createMultipart(next.dataKey, { signal });
    try {
      await this.swap({ ...next, multipart }, signal);
    } catch (error) {
      await this.driver.abortMultipart(multipart).catch(() => {});
      throw error;
    }
  }

  /**
   * After a failed append or commit: gives the claim back if the record still holds it.
   * Re-reads first, because on a driver without enforced compare-and-swap a blind write
   * of our (possibly stale) copy could roll back another writer's progress.
   */
  private async releaseClaim(): Promise<void> {
    try {
      await this.refresh({});
    } catch {
      return; // gone (cancelled) or unreadable: nothing to release
    }
    if (this.record.claim?.owner !== this.owner) return;
    await this.swap({ ...this.record, claim: null }, undefined).catch(() => undefined);
  }

  /** Uploads tail + new bytes as the next part and swaps the record (keeping the claim unless `last`). */
  private async appendPart(
    piece: Piece,
    hasher: ResumableSha256 | null,
    last: boolean,
    check: (() => Promise<void>) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const held = this.driver.capabilities.exclusiveParts === true && this.record.claim?.owner !== this.owner;
    if (!held && this.record.claim?.owner !== this.owner) await this.claim(true, signal);
    if (held && !this.record.multipart) await this.swapWithMultipart(this.record, signal);
    const record = this.record;
    const multipart = record.multipart as MultipartHandle;
    const pending = tailSize(record);
    // A takeover of an expired claim (its owner crashed or stalled) is counted as in claim().
    const takeover = record.claim !== null && record.claim.owner !== this.owner;
    const partNumber = takeover ? record.nextPart + 1 : record.nextPart;
    if (held) this.checkPartNumber(partNumber); // `claim` checked it otherwise
    const tap = new HashTap(hasher ? [hasher] : []);
    const driver = this.driver;
    let pulled = false;
    // Wrapped now, not when the driver first pulls: an in-memory piece starts hashing
    // while the driver claims its range. A failed part write stops the tap (below); once
    // every byte is written, `finish` waits for the hash before it stages the swap.
    const newBytes = tap.wrap(piece.bytes);
    async function* partBody(): AsyncGenerator<Uint8Array> {
      pulled = true;
      for (const tail of record.tail) yield* await driver.read(tail.key, { signal });
      yield* newBytes;
    }
    const size = pending + piece.size;
    const progress = (ref: PartRef): UploadRecord => ({
      ...record,
      offset: record.offset + piece.size,
      parts: [...record.parts, { partNumber: ref.partNumber, size: ref.size, etag: ref.etag }],
      nextPart: partNumber + 1,
      takeovers: takeover ? record.takeovers + 1 : record.takeovers,
      tail: [],
      claim: last || held ? null : { owner: this.owner, expires: Date.now() + this.options.uploadLeaseMs },
    });
    // `durable` (held parts): the swap is staged while the part syncs and published after.
    const finish = async (ref: PartRef, durable?: Promise<void>) => {
      await tap.finished();
      await check?.();
      await this.swap(this.withHash(progress(ref), hasher), signal, durable);
    };
    // Held: the driver holds the part's range, in every process, from `before` to the end
    // of `after`, so the record is checked and swapped under it: a writer whose copy of the
    // record went stale stops before writing a byte, and no one can stage over a part
    // between its write and the record swap that names it. No claim record is written.
    const hold: PartHold | undefined = held
      ? {
          before: async () => {
            const current = await driver.stat(uploadStateKey(this.id), { signal });
            if (current?.etag === this.etag) return;
            this.hasher = null;
            await this.refresh({ signal });
            throw rangeInvalid(this.record, 'another writer changed the upload');
          },
          written: finish,
        }
      : undefined;
    const body = partBody();
    const ref = await tap.stopOnFailure(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await driver.uploadPart(multipart, partNumber, record.offset - pending, body, size, {
            signal,
            hold,
          });
        } catch (error) {
          if (!held) throw error;
          if (isBlobcoreError(error, 'NOT_FOUND')) {
            await this.refresh({ signal }); // cancelled or finished elsewhere: BLOB_UPLOAD_UNKNOWN
            throw error;
          }
          if (!isBlobcoreError(error, 'PRECONDITION_FAILED')) throw error;
          // Another writer holds the range. Two that claimed at the same instant both back
          // off; retrying after a random pause (body untouched) lets one of them through,
          // and the other then finds the record moved on. A long-held range is busy.
          if (pulled || attempt >= HOLD_ATTEMPTS)
            throw rangeInvalid(this.record, 'another writer is appending', true);
          const pause = HOLD_BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
          await sleep(pause, undefined, { signal }).catch(() => throwIfAborted(signal));
        }
      }
    });
    if (!held) await finish(ref);
    for (const tail of record.tail) await this.driver.delete(tail.key).catch(() => false);
  }

  async commit(options: CommitOptions): Promise<CommitResult> {
    return this.serialize(() => this.commitNow(options));
  }

  private async commitNow(options: CommitOptions): Promise<CommitResult> {
    const { signal } = options;
    throwIfAborted(signal);
    this.ensureOpen();
    const digest = parseDigest(options.digest);
    if (options.size !== undefined && !(Number.isSafeInteger(options.size) && options.size >= 0)) {
      throw blobError('SIZE_INVALID', `size must be a non-negative integer, got ${options.size}`);
    }
    await this.refresh({ signal });
    if (this.claimedByOther(this.record))
      throw rangeInvalid(this.record, 'another writer is appending', true);
    const size = this.record.offset;
    if (options.size !== undefined && options.size !== size) {
      throw blobError('SIZE_INVALID', `upload holds ${size} bytes, commit says ${options.size}`);
    }
    const known = digest.algorithm === 'sha256' ? this.record.prefixDigest : null;
    if (known !== null && known !== digest.value) {
      throw blobError('DIGEST_INVALID', `upload hashes to ${known}, commit says ${digest.value}`);
    }
    const verify =
      known === null ||
      this.record.takeovers > 0 ||
      this.options.verifyCommit === 'always' ||
      !this.driver.capabilities.conditionalWrite;

    // A miss costs one read (see findBlob): most commits are of new blobs.
    if (!verify && (await findBlob(this.driver, digest.value, { signal }))) {
      await this.linkCommitted(digest.value, size, signal);
      await this.discard();
      return { digest: digest.value, size, deduplicated: true, rehashedBytes: 0 };
    }

    await this.claim(false, signal);
    try {
      await this.assemble(signal);
    } catch (error) {
      await this.releaseClaim();
      throw error;
    }
    let rehashedBytes = 0;
    if (verify) {
      const actual = await this.rehash(digest.algorithm, signal);
      rehashedBytes = size;
      if (actual !== digest.value) {
        await this.driver.delete(this.record.dataKey, { lazy: true }).catch(() => false);
        await this.discard();
        throw blobError(
          'DIGEST_INVALID',
          `upload hashes to ${actual}, commit says ${digest.value}; upload removed`,
        );
      }
    }
    const { created, record } = await publishIndex(
      this.driver,
      { v: 1, digest: digest.value, size, data: this.record.dataKey, created: now() },
      { signal },
    );
    if (!created) await this.driver.delete(this.record.dataKey, { lazy: true }).catch(() => false);
    await this.linkCommitted(digest.value, size, signal);
    await this.discard();
    return { digest: digest.value, size: record.size, deduplicated: !created, rehashedBytes };
  }

  private async linkCommitted(digest: string, size: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.record.repository !== undefined) await this.linker(this.record.repository, digest, size, signal);
  }

  /** Puts the upload's bytes at its data key: the last part from the tail, then complete. */
  private async assemble(signal: AbortSignal | undefined): Promise<void> {
    const record = this.record;
    const driver = this.driver;
    async function* tailBytes(): AsyncGenerator<Uint8Array> {
      for (const tail of record.tail) yield* await driver.read(tail.key, { signal });
    }
    const pending = tailSize(record);
    if (record.parts.length === 0) {
      await driver.write(record.dataKey, tailBytes(), { size: pending, signal });
      if (record.multipart) await driver.abortMultipart(record.multipart).catch(() => {});
      return;
    }
    const multipart = record.multipart as MultipartHandle;
    const parts = [...record.parts];
    if (stagesTailAsPart(record)) {
      parts.push(
        await driver.uploadPart(multipart, record.nextPart, record.offset - pending, tailBytes(), pending, {
          signal,
        }),
      );
    }
    try {
      await driver.completeMultipart(multipart, parts, { signal });
    } catch (error) {
      // A commit that crashed after completing leaves the bytes in place: accept those.
      const existing = await driver.stat(record.dataKey, { signal });
      if (existing?.size !== record.offset) throw error;
    }
  }

  private async rehash(algorithm: DigestAlgorithm, signal: AbortSignal | undefined): Promise<string> {
    const hash = createHash(algorithm);
    let bytes = 0;
    for await (const chunk of await this.driver.read(this.record.dataKey, { signal })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    this.counters.rehashedBytes += bytes;
    return formatDigest(algorithm, hash.digest());
  }

  /** Removes the record first, then staged data. Ends this Upload object. */
  private async discard(): Promise<void> {
    this.finished = true;
    this.hasher = null;
    await this.driver.delete(uploadStateKey(this.id));
    if (this.record.multipart) await this.driver.abortMultipart(this.record.multipart).catch(() => {});
    await deletePrefix(this.driver, uploadPrefix(this.id));
  }

  async cancel(options: SignalOptions = {}): Promise<void> {
    return this.serialize(async () => {
      throwIfAborted(options.signal);
      this.ensureOpen();
      await this.refresh(options);
      await this.discard();
    });
  }
}

/** Deletes every key under a prefix (an upload's tail objects). */
async function deletePrefix(driver: Driver, prefix: string): Promise<void> {
  for await (const key of listAll(driver, prefix)) await driver.delete(key).catch(() => false);
}
