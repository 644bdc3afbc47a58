/**
 * The S3 driver: the driver contract over any S3-compatible object store, through
 * `@aws-sdk/client-s3`.
 *
 * Layout. A store URL `s3://bucket/prefix` maps driver key `k` to object `prefix/k`
 * (prefix empty: `k`). Nothing else is written there, except on servers without
 * AbortMultipartUpload (`multipartAbort: false`): aborting writes a zero-byte tombstone
 * `prefix/:blobcore/aborted/<sha256(uploadId)>` that completion checks first. `:` is
 * outside the key alphabet, so no driver key can collide with it, and `list` hides it.
 *
 * Writes. `write` is atomic, as S3 objects are: one PutObject when the body fits in one
 * part (buffered, so the SDK can retry it), otherwise a native multipart upload of
 * uniform parts (size from the declared length, else `partSize`), at most `concurrency`
 * parts in memory and in flight, aborted on any failure so nothing becomes visible. A
 * conditional write with a known length up to 5 GiB is one streamed PutObject, which the
 * server checks atomically. Streamed request bodies keep their last chunk back until
 * the source has ended cleanly (see ./body.ts), so a size or abort failure can never
 * hand the server a complete body.
 *
 * Conditional writes (`conditionalWrites`, default true) send `If-None-Match: *` and
 * `If-Match: <etag>` on PutObject. radosgw 16 answers 412 to a *quoted* ETag in
 * If-Match even when it is current, so the driver sends it unquoted (AWS accepts both).
 * Both also go on CompleteMultipartUpload (AWS enforces them there; radosgw 16.2
 * ignores them, so a conditional write that needs a multipart upload — unknown length
 * over one part, or over 5 GiB — is checked by a HEAD first and only best-effort
 * there). With `conditionalWrites: false` the driver declares `conditionalWrite: false`
 * and checks conditions with a HEAD before writing (best-effort, racy).
 *
 * Multipart staging (the store's resumable uploads) is S3's own: `createMultipart`
 * is CreateMultipartUpload, `uploadPart` an UploadPart with the part's exact
 * ContentLength, `completeMultipart` a CompleteMultipartUpload — O(1) in the blob's
 * size, no copy. Handles are `{ key, uploadId }`.
 *
 * Reads: a GetObject with an explicit `bytes=first-last` range (never a suffix range,
 * which the emulator gets wrong), checked against Content-Range and clipped, so a
 * server that ignores or widens a range still yields exactly the bytes asked for; a
 * response cut short fails the stream with UNAVAILABLE. A 416 is resolved with a HEAD:
 * offset == size is an empty stream, past the end RANGE_INVALID, missing NOT_FOUND.
 *
 * HTTP: the SDK's Node handler with keep-alive agents — measured against the undici
 * handler (`httpHandler: 'undici'`, ./undici-handler.ts) on radosgw with 256 MiB: PUT
 * equal (~186 MB/s), multipart write equal (~170), GET 390 vs 299 MB/s, so it stays
 * the default — (a custom CA bundle is added to
 * Node's roots; there is deliberately no switch that turns verification off), request
 * and response checksums only when an operation requires them (radosgw 16 and the
 * emulator reject or corrupt aws-chunked uploads), the SDK's standard retries (buffered
 * bodies are retried; streamed ones cannot be). Credentials come from the SDK's default
 * provider chain; they are never printed (see ./errors.ts and `inspect` below).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { inspect } from 'node:util';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type {
  Body,
  Driver,
  DriverCapabilities,
  DriverLimits,
  ListOptions,
  ListPage,
  MultipartHandle,
  ObjectStat,
  PartRef,
  ReadOptions,
  SignalOptions,
  SignedUrlOptions,
  WriteOptions,
  WriteResult,
} from '../../src/driver.js';
import { DEFAULT_LIST_LIMIT, guardDriver } from '../../src/driver.js';
import { blobError, isBlobcoreError, throwIfAborted } from '../../src/errors.js';
import { isValidKey, validateKey } from '../../src/keys.js';
import { ClipStream, chunksReadable, holdLastChunk, PieceReader } from './body.js';
import { type S3ErrorContext, s3Error } from './errors.js';
import { UndiciHttpHandler } from './undici-handler.js';
import { parseS3Url } from './url.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Every part of a multipart upload but the last must be at least 5 MiB (S3 EntityTooSmall). */
export const S3_MIN_PART_SIZE = 5 * MiB;
/** No part may exceed 5 GiB. */
export const S3_MAX_PART_SIZE = 5 * GiB;
/** Part numbers run from 1 to 10,000. */
export const S3_MAX_PARTS = 10_000;
/** The largest object one PutObject (or one CopyObject) may write. */
export const S3_MAX_PUT_SIZE = 5 * GiB;
/** DeleteObjects takes at most 1,000 keys per call. */
export const S3_MAX_DELETE_BATCH = 1000;
/** ListObjectsV2 returns at most 1,000 keys per page. */
export const S3_MAX_LIST_KEYS = 1000;
/** Object keys are at most 1,024 bytes, prefix included. */
export const S3_MAX_KEY_BYTES = 1024;
/** Presigned URLs live at most 7 days (SigV4). */
export const S3_MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** Part size for writes of unknown length: 8 MiB × 10,000 parts caps them at 78 GiB. */
export const DEFAULT_PART_SIZE = 8 * MiB;
/** Parts in flight (and in memory) per write. */
export const DEFAULT_CONCURRENCY = 4;

export const S3_LIMITS: DriverLimits = {
  minPartSize: S3_MIN_PART_SIZE,
  maxPartSize: S3_MAX_PART_SIZE,
  maxParts: S3_MAX_PARTS,
};

/** Objects the driver keeps for itself live under `prefix + INTERNAL`; `:` is not a key character. */
const INTERNAL = ':blobcore/';

export interface S3DriverOptions {
  bucket: string;
  /** Key prefix inside the bucket: `''` or segments ending in `/`. */
  prefix?: string | undefined;
  /** e.g. `http://127.0.0.1:7480`; default: AWS for the region. */
  endpoint?: string | undefined;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, then `us-east-1`. */
  region?: string | undefined;
  forcePathStyle?: boolean | undefined;
  /** Default: the SDK's provider chain (env, shared profile, web identity/IRSA, container, instance metadata). */
  credentials?: S3ClientConfig['credentials'];
  /** Path of a PEM file with extra CA certificates to trust (private CAs on-prem). */
  caBundle?: string | undefined;
  /** PEM CA certificates to trust, in memory (added to `caBundle` and Node's roots). */
  ca?: string | Buffer | undefined;
  /** The server enforces If-None-Match / If-Match on PutObject (default true). */
  conditionalWrites?: boolean | undefined;
  /** The server implements AbortMultipartUpload (default true); false: tombstones, see above. */
  multipartAbort?: boolean | undefined;
  /** Bytes per part for writes of unknown length, ≥ 5 MiB (default 8 MiB). */
  partSize?: number | undefined;
  /** Parts in flight per write (default 4); memory per write ≈ partSize × concurrency. */
  concurrency?: number | undefined;
  /** `sha256`: send x-amz-checksum-sha256 with single-request PUTs (servers that support it). */
  checksum?: 'sha256' | 'none' | undefined;
  /** SDK attempts per request, first included (default 3). */
  maxAttempts?: number | undefined;
  /** Sockets per agent (default 64). */
  maxSockets?: number | undefined;
  /** HTTP client under the SDK: its own Node handler (default) or undici (see ./undici-handler.ts). */
  httpHandler?: 'node' | 'undici' | undefined;
  /** Use this client instead of building one (the endpoint, credential and TLS options are then ignored). */
  client?: S3Client | undefined;
}

interface Resolved {
  bucket: string;
  prefix: string;
  conditionalWrites: boolean;
  multipartAbort: boolean;
  partSize: number;
  concurrency: number;
  checksum: boolean;
  endpoint: string | undefined;
  region: string;
}

/** Buffered bytes of one driver instance (for tests of bounded memory). */
export interface S3DriverStats {
  bufferedBytes: number;
  peakBufferedBytes: number;
}

function mebibytes(n: number): string {
  return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 2)} MiB`;
}

function partSizeFor(size: number, base: number): number {
  const least = Math.ceil(size / S3_MAX_PARTS);
  return least <= base ? base : Math.ceil(least / MiB) * MiB;
}

function unquote(etag: string): string {
  return etag.replace(/^W\//, '').replace(/"/g, '');
}

function concat(chunks: readonly Uint8Array[], size: number): Buffer {
  if (chunks.length === 1) {
    const only = chunks[0] as Uint8Array;
    return Buffer.from(only.buffer, only.byteOffset, only.byteLength);
  }
  return Buffer.concat(chunks, size);
}

function sha256Base64(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/** Builds the SDK client: keep-alive agents, extra CAs on top of Node's roots, checksums only when required. */
function buildClient(options: S3DriverOptions, region: string): S3Client {
  const extra: string[] = [];
  if (options.caBundle !== undefined) {
    try {
      extra.push(readFileSync(options.caBundle, 'utf8'));
    } catch (cause) {
      throw blobError('UNSUPPORTED', `s3: cannot read caBundle ${options.caBundle}`, { driver: 's3', cause });
    }
  }
  if (options.ca !== undefined) extra.push(options.ca.toString());
  for (const pem of extra) {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw blobError('UNSUPPORTED', 's3: the CA bundle holds no PEM certificate', { driver: 's3' });
    }
  }
  const maxSockets = options.maxSockets ?? 64;
  const ca = extra.length > 0 ? [...rootCertificates, ...extra] : undefined;
  const common: S3ClientConfig = {
    region,
    forcePathStyle: options.forcePathStyle ?? false,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: options.maxAttempts ?? 3,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
  };
  if (options.httpHandler === 'undici') {
    const handler = new UndiciHttpHandler({ ca, connections: maxSockets, timeoutMs: 120_000 });
    const requestHandler = handler as unknown as NonNullable<S3ClientConfig['requestHandler']>;
    return new S3Client({ ...common, requestHandler });
  }
  const httpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets,
    ...(ca ? { ca } : {}),
  });
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets });
  return new S3Client({
    ...common,
    requestHandler: { httpAgent, httpsAgent, connectionTimeout: 10_000, requestTimeout: 120_000 },
  });
}

class S3Driver implements Driver {
  readonly name = 's3';
  readonly capabilities: DriverCapabilities;
  readonly limits = S3_LIMITS;
  readonly stats: S3DriverStats = { bufferedBytes: 0, peakBufferedBytes: 0 };
  readonly #client: S3Client;
  readonly #config: Resolved;
  readonly #ownsClient: boolean;
  #bucketChecked: Promise<void> | null = null;
  /** Set when the server answered AbortMultipartUpload with "not implemented". */
  #tombstones: boolean;

  constructor(config: Resolved, client: S3Client, ownsClient: boolean) {
    this.#config = config;
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#tombstones = !config.multipartAbort;
    this.capabilities = {
      conditionalWrite: config.conditionalWrites,
      signedUrl: true,
      copy: true,
      link: false,
      usage: false,
    };
  }

  [inspect.custom](): string {
    const c = this.#config;
    return `S3Driver { bucket: ${c.bucket}, prefix: ${JSON.stringify(c.prefix)}, endpoint: ${c.endpoint ?? 'aws'}, region: ${c.region} }`;
  }

  toJSON(): Record<string, unknown> {
    const c = this.#config;
    return { driver: 's3', bucket: c.bucket, prefix: c.prefix, endpoint: c.endpoint, region: c.region };
  }

  // ── plumbing ──────────────────────────────────────────────────────────────────

  private objectKey(key: string): string {
    const full = this.#config.prefix + key;
    if (Buffer.byteLength(full) > S3_MAX_KEY_BYTES) {
      throw blobError(
        'KEY_INVALID',
        `key is ${Buffer.byteLength(full)} bytes with the prefix; S3 allows ${S3_MAX_KEY_BYTES}`,
        { driver: 's3' },
      );
    }
    return full;
  }

  /**
   * Sends one command; every failure becomes a BlobcoreError (./errors.ts). With a
   * streamed `body`, a failing body (source error, size or abort check in the guard)
   * aborts the request at once — piping does not forward errors, so the request would
   * otherwise wait for bytes that never come — and that failure is what rejects.
   */
  private async send<T>(
    command: object,
    context: Omit<S3ErrorContext, 'bucket' | 'signal'>,
    signal: AbortSignal | undefined,
    body?: Readable,
  ): Promise<T> {
    throwIfAborted(signal);
    let bodyFailure: { error: unknown } | undefined;
    let combined = signal;
    if (body) {
      const local = new AbortController();
      body.once('error', (error) => {
        bodyFailure = { error };
        local.abort(error);
      });
      combined = signal ? AbortSignal.any([signal, local.signal]) : local.signal;
    }
    try {
      // One entry point for every command; each caller names the output fields it reads.
      const send = this.#client.send.bind(this.#client) as (c: object, o: object) => Promise<unknown>;
      return (await send(command, combined ? { abortSignal: combined } : {})) as T;
    } catch (error) {
      if (bodyFailure) throw bodyFailure.error;
      throw s3Error(error, { ...context, bucket: this.#config.bucket, signal });
    }
  }

  private track(delta: number): void {
    this.stats.bufferedBytes += delta;
    if (this.stats.bufferedBytes > this.stats.peakBufferedBytes)
      this.stats.peakBufferedBytes = this.stats.bufferedBytes;
  }

  /**
   * A 404 from HEAD does not say whether the key or the bucket is missing, so before
   * answering "no such key" the driver checks once that the bucket exists.
   */
  private ensureBucket(signal: AbortSignal | undefined): Promise<void> {
    if (!this.#bucketChecked) {
      const bucket = this.#config.bucket;
      this.#bucketChecked = this.send(
        new HeadBucketCommand({ Bucket: bucket }),
        { operation: 'HeadBucket' },
        signal,
      )
        .then(() => undefined)
        .catch((error: unknown) => {
          if (isBlobcoreError(error, 'NOT_FOUND')) {
            this.#bucketChecked = null;
            throw blobError('UNAVAILABLE', `s3://${bucket}: the bucket does not exist`, {
              driver: 's3',
              retryable: false,
            });
          }
          // 403 on HeadBucket (no s3:ListBucket) says nothing about the bucket: carry on.
          if ((error as { cause?: { status?: number } }).cause?.status === 403) return;
          this.#bucketChecked = null;
          throw error;
        });
    }
    return this.#bucketChecked;
  }

  /** The etag a write answered with; radosgw 16 answers CompleteMultipartUpload with an empty one: ask. */
  private async etagOf(
    etag: string | undefined,
    objectKey: string,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    if (etag) return etag;
    return (await this.head(objectKey, signal))?.etag ?? '';
  }

  private async head(objectKey: string, signal: AbortSignal | undefined): Promise<ObjectStat | null> {
    try {
      const out = await this.send<{ ContentLength?: number; ETag?: string; LastModified?: Date }>(
        new HeadObjectCommand({ Bucket: this.#config.bucket, Key: objectKey }),
        { operation: 'HeadObject', key: objectKey },
        signal,
      );
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
        modified: out.LastModified ?? new Date(0),
      };
    } catch (error) {
      if (isBlobcoreError(error, 'NOT_FOUND')) {
        await this.ensureBucket(signal);
        return null;
      }
      throw error;
    }
  }

  // ── objects ───────────────────────────────────────────────────────────────────

  async stat(key: string, options: SignalOptions = {}): Promise<ObjectStat | null> {
    return this.head(this.objectKey(key), options.signal);
  }

  async read(key: string, options: ReadOptions = {}): Promise<Readable> {
    const objectKey = this.objectKey(key);
    const { signal } = options;
    const offset = options.offset ?? 0;
    const length = options.length;
    const outOfRange = async (): Promise<Readable> => {
      const stat = await this.head(objectKey, signal);
      if (!stat) throw blobError('NOT_FOUND', `no such key: ${key}`, { driver: 's3' });
      if (offset > stat.size) {
        throw blobError('RANGE_INVALID', `offset ${offset} is past the end (${stat.size} bytes)`, {
          driver: 's3',
        });
      }
      return Readable.from([]);
    };
    if (length === 0) return outOfRange();

    const range =
      offset === 0 && length === undefined
        ? undefined
        : `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    let out: { Body?: unknown; ContentLength?: number; ContentRange?: string };
    try {
      out = await this.send(
        new GetObjectCommand({ Bucket: this.#config.bucket, Key: objectKey, Range: range }),
        { operation: 'GetObject', key: objectKey },
        signal,
      );
    } catch (error) {
      if (isBlobcoreError(error, 'RANGE_INVALID')) return outOfRange();
      if (isBlobcoreError(error, 'NOT_FOUND')) await this.ensureBucket(signal);
      throw error;
    }
    const body = out.Body as Readable | undefined;
    if (!body) return outOfRange();

    // Where the bytes on the wire start, and how many there are.
    let start = 0;
    let total: number | undefined;
    const delivered = out.ContentLength;
    const match = out.ContentRange ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(out.ContentRange) : null;
    if (match) {
      start = Number(match[1]);
      if (match[3] !== '*') total = Number(match[3]);
    } else if (delivered !== undefined) {
      total = delivered; // a 200: the whole object
    }
    if (start > offset || (total !== undefined && offset > total)) {
      body.destroy();
      if (total !== undefined && offset > total) return outOfRange();
      throw blobError('UNAVAILABLE', `GetObject ${objectKey}: asked for ${range}, got ${out.ContentRange}`, {
        driver: 's3',
        retryable: true,
      });
    }
    let expected: number | undefined;
    if (delivered !== undefined) {
      const available = delivered - (offset - start);
      expected = length === undefined ? available : Math.min(length, available);
    }
    const clip = new ClipStream(offset - start, expected, `GetObject ${objectKey}`);
    body.on('error', (error) => {
      clip.destroy(
        s3Error(error, { operation: 'GetObject (body)', bucket: this.#config.bucket, key: objectKey }),
      );
    });
    clip.on('close', () => body.destroy());
    body.pipe(clip);
    return clip;
  }

  private conditions(options: WriteOptions): { IfNoneMatch?: string; IfMatch?: string } {
    if (!this.#config.conditionalWrites) return {};
    if (options.ifNoneMatch === '*') return { IfNoneMatch: '*' };
    if (options.ifMatch !== undefined) return { IfMatch: unquote(options.ifMatch) };
    return {};
  }

  /** Best-effort check of a condition with a HEAD (racy; enforced ones are checked again by the server). */
  private async precheck(key: string, objectKey: string, options: WriteOptions): Promise<void> {
    if (options.ifNoneMatch !== '*' && options.ifMatch === undefined) return;
    const current = await this.head(objectKey, options.signal);
    if (options.ifNoneMatch === '*' && current) {
      throw blobError('PRECONDITION_FAILED', `key exists: ${key}`, { driver: 's3' });
    }
    if (options.ifMatch !== undefined && (!current || unquote(current.etag) !== unquote(options.ifMatch))) {
      throw blobError('PRECONDITION_FAILED', `etag mismatch for ${key}`, { driver: 's3' });
    }
  }

  private async put(
    objectKey: string,
    body: Buffer | Readable,
    size: number,
    conditions: { IfNoneMatch?: string; IfMatch?: string },
    signal: AbortSignal | undefined,
  ): Promise<WriteResult> {
    const checksum =
      this.#config.checksum && Buffer.isBuffer(body) ? { ChecksumSHA256: sha256Base64(body) } : {};
    const out = await this.send<{ ETag?: string }>(
      new PutObjectCommand({
        Bucket: this.#config.bucket,
        Key: objectKey,
        Body: body,
        ContentLength: size,
        ...conditions,
        ...checksum,
      }),
      { operation: 'PutObject', key: objectKey },
      signal,
      Buffer.isBuffer(body) ? undefined : body,
    );
    const etag = await this.etagOf(out.ETag, objectKey, signal);
    return { etag, size };
  }

  async write(key: string, body: Body, options: WriteOptions = {}): Promise<WriteResult> {
    const objectKey = this.objectKey(key);
    const { signal } = options;
    const conditional = options.ifNoneMatch === '*' || options.ifMatch !== undefined;
    if (conditional && !this.#config.conditionalWrites) await this.precheck(key, objectKey, options);
    const conditions = this.conditions(options);

    if (body instanceof Uint8Array) {
      if (body.byteLength <= S3_MAX_PUT_SIZE) {
        return this.put(
          objectKey,
          Buffer.from(body.buffer, body.byteOffset, body.byteLength),
          body.byteLength,
          conditions,
          signal,
        );
      }
      return this.writeMultipart(
        key,
        objectKey,
        new PieceReader(chunksReadable([body])),
        body.byteLength,
        options,
      );
    }

    const declared = options.size;
    const piece = partSizeFor(declared ?? 0, this.#config.partSize);
    const reader = new PieceReader(body);
    try {
      const first = await reader.read(piece, signal);
      if (first.size < piece || (await reader.ended(signal))) {
        this.track(first.size);
        try {
          return await this.put(objectKey, concat(first.chunks, first.size), first.size, conditions, signal);
        } finally {
          this.track(-first.size);
        }
      }
      if (
        conditional &&
        this.#config.conditionalWrites &&
        declared !== undefined &&
        declared <= S3_MAX_PUT_SIZE
      ) {
        // One streamed PUT, so the server checks the condition atomically.
        async function* rest(): AsyncGenerator<Uint8Array> {
          yield* first.chunks;
          for (;;) {
            const next = await reader.read(MiB, signal);
            if (next.size === 0) return;
            yield* next.chunks;
          }
        }
        const stream = Readable.from(holdLastChunk(rest()), { objectMode: false });
        return await this.put(objectKey, stream, declared, conditions, signal);
      }
      return await this.writeMultipart(key, objectKey, reader, declared, options, first);
    } finally {
      reader.close();
    }
  }

  /**
   * A write through a native multipart upload: uniform parts, at most `concurrency`
   * buffered and in flight, completed only after the body ended cleanly, aborted on
   * any failure.
   */
  private async writeMultipart(
    key: string,
    objectKey: string,
    reader: PieceReader,
    declared: number | undefined,
    options: WriteOptions,
    first?: { chunks: Uint8Array[]; size: number },
  ): Promise<WriteResult> {
    const { signal } = options;
    const bucket = this.#config.bucket;
    const partSize = partSizeFor(declared ?? 0, this.#config.partSize);
    const conditional = options.ifNoneMatch === '*' || options.ifMatch !== undefined;
    if (conditional && this.#config.conditionalWrites) await this.precheck(key, objectKey, options);
    const created = await this.send<{ UploadId?: string }>(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: objectKey }),
      { operation: 'CreateMultipartUpload', key: objectKey },
      signal,
    );
    const uploadId = created.UploadId as string;
    const etags: string[] = [];
    const inflight = new Set<Promise<void>>();
    // At most `concurrency` part buffers, reused: the bytes a write holds stay below
    // partSize × concurrency however long the body is.
    const pool: Buffer[] = [];
    const take = () => pool.pop() ?? Buffer.allocUnsafe(partSize);
    let failure: { error: unknown } | null = null;
    let total = 0;
    try {
      let buffer = take();
      let size: number;
      if (first) {
        size = 0;
        for (const chunk of first.chunks) {
          buffer.set(chunk, size);
          size += chunk.byteLength;
        }
        first.chunks.length = 0;
      } else {
        size = await reader.readInto(buffer, signal);
      }
      for (let partNumber = 1; ; partNumber++) {
        if (partNumber > S3_MAX_PARTS) {
          throw blobError(
            'SIZE_INVALID',
            `body exceeds ${S3_MAX_PARTS} parts of ${mebibytes(partSize)}; declare its size or raise partSize`,
            { driver: 's3' },
          );
        }
        const part = buffer;
        const partBytes = size;
        this.track(partBytes);
        const upload = this.send<{ ETag?: string }>(
          new UploadPartCommand({
            Bucket: bucket,
            Key: objectKey,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: part.subarray(0, partBytes),
            ContentLength: partBytes,
          }),
          { operation: 'UploadPart', key: objectKey, multipart: true },
          signal,
        )
          .then((out) => {
            etags[partNumber - 1] = out.ETag ?? '';
          })
          .catch((error: unknown) => {
            failure ??= { error };
          })
          .finally(() => {
            this.track(-partBytes);
            pool.push(part);
            inflight.delete(upload);
          });
        inflight.add(upload);
        total += partBytes;
        while (inflight.size >= this.#config.concurrency && !failure) await Promise.race(inflight);
        if (failure) throw (failure as { error: unknown }).error;
        if (partBytes < partSize) break;
        buffer = take();
        size = await reader.readInto(buffer, signal);
        if (size === 0) break;
      }
      await Promise.all(inflight);
      if (failure) throw (failure as { error: unknown }).error;
      if (declared !== undefined && total !== declared) {
        throw blobError('SIZE_INVALID', `body has ${total} bytes, declared ${declared}`, { driver: 's3' });
      }
      const done = await this.send<{ ETag?: string }>(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: objectKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          ...this.conditions(options),
        }),
        { operation: 'CompleteMultipartUpload', key: objectKey },
        signal,
      );
      return { etag: await this.etagOf(done.ETag, objectKey, signal), size: total };
    } catch (error) {
      await Promise.allSettled([...inflight]);
      await this.abortUpload(objectKey, uploadId).catch(() => undefined);
      throw error;
    }
  }

  async delete(key: string, options: SignalOptions = {}): Promise<boolean> {
    const objectKey = this.objectKey(key);
    // DeleteObject answers 204 whether or not the key existed: ask first.
    if (!(await this.head(objectKey, options.signal))) return false;
    await this.send(
      new DeleteObjectCommand({ Bucket: this.#config.bucket, Key: objectKey }),
      { operation: 'DeleteObject', key: objectKey },
      options.signal,
    );
    return true;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const root = this.#config.prefix;
    const limit = Math.min(options.limit ?? DEFAULT_LIST_LIMIT, S3_MAX_LIST_KEYS);
    const keys: string[] = [];
    let startAfter = options.startAfter === undefined ? undefined : root + options.startAfter;
    for (;;) {
      const out = await this.send<{ Contents?: { Key?: string }[]; IsTruncated?: boolean }>(
        new ListObjectsV2Command({
          Bucket: this.#config.bucket,
          Prefix: root + prefix,
          MaxKeys: limit,
          ...(startAfter === undefined ? {} : { StartAfter: startAfter }),
        }),
        { operation: 'ListObjectsV2', key: root + prefix },
        options.signal,
      );
      const raw = (out.Contents ?? []).map((c) => c.Key ?? '');
      for (const full of raw) {
        const key = full.slice(root.length);
        // Objects the driver keeps for itself, and foreign objects no caller could name.
        if (!full.startsWith(root) || key.startsWith(INTERNAL) || !isValidKey(key)) continue;
        keys.push(key);
      }
      const truncated = out.IsTruncated === true && raw.length > 0;
      if (!truncated) return { keys };
      const last = keys[keys.length - 1];
      if (last !== undefined) return { keys, cursor: last };
      startAfter = raw[raw.length - 1]; // a page of hidden keys only: read on
    }
  }

  // ── multipart staging ────────────────────────────────────────────────────────

  private uploadId(handle: MultipartHandle): string {
    if (typeof handle.uploadId !== 'string' || handle.uploadId === '') {
      throw blobError('BLOB_UPLOAD_INVALID', 'not an S3 multipart handle (no uploadId)', { driver: 's3' });
    }
    return handle.uploadId;
  }

  private tombstoneKey(uploadId: string): string {
    return `${this.#config.prefix}${INTERNAL}aborted/${createHash('sha256').update(uploadId).digest('hex').slice(0, 40)}`;
  }

  async createMultipart(key: string, options: SignalOptions = {}): Promise<MultipartHandle> {
    const objectKey = this.objectKey(key);
    const out = await this.send<{ UploadId?: string }>(
      new CreateMultipartUploadCommand({ Bucket: this.#config.bucket, Key: objectKey }),
      { operation: 'CreateMultipartUpload', key: objectKey },
      options.signal,
    );
    if (!out.UploadId) {
      throw blobError('UNAVAILABLE', `CreateMultipartUpload ${objectKey}: no UploadId in the answer`, {
        driver: 's3',
      });
    }
    return { key, uploadId: out.UploadId };
  }

  async uploadPart(
    handle: MultipartHandle,
    partNumber: number,
    _offset: number,
    body: Body,
    size: number,
    options: SignalOptions = {},
  ): Promise<PartRef> {
    const objectKey = this.objectKey(handle.key);
    const uploadId = this.uploadId(handle);
    const { signal } = options;
    let payload: Buffer | Readable;
    let buffered = 0;
    if (body instanceof Uint8Array) {
      payload = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    } else if (size <= this.#config.partSize) {
      // Small enough to hold: a buffered part can be retried by the SDK.
      const reader = new PieceReader(body);
      try {
        const piece = await reader.read(size + 1, signal);
        buffered = piece.size;
        this.track(buffered);
        payload = concat(piece.chunks, piece.size);
      } finally {
        reader.close();
      }
    } else {
      payload = Readable.from(holdLastChunk(body), { objectMode: false });
    }
    try {
      const out = await this.send<{ ETag?: string }>(
        new UploadPartCommand({
          Bucket: this.#config.bucket,
          Key: objectKey,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: payload,
          ContentLength: size,
        }),
        { operation: 'UploadPart', key: objectKey, multipart: true },
        signal,
        Buffer.isBuffer(payload) ? undefined : payload,
      );
      return { partNumber, size, etag: out.ETag ?? '' };
    } finally {
      this.track(-buffered);
    }
  }

  async completeMultipart(
    handle: MultipartHandle,
    parts: readonly PartRef[],
    options: SignalOptions = {},
  ): Promise<WriteResult> {
    const objectKey = this.objectKey(handle.key);
    const uploadId = this.uploadId(handle);
    const { signal } = options;
    if (this.#tombstones && (await this.head(this.tombstoneKey(uploadId), signal))) {
      throw blobError('BLOB_UPLOAD_UNKNOWN', `multipart upload for ${handle.key} was aborted`, {
        driver: 's3',
      });
    }
    const size = parts.reduce((sum, part) => sum + part.size, 0);
    if (parts.length === 0) {
      // S3 refuses a completion without parts; the contract's answer is an empty object.
      const result = await this.put(objectKey, Buffer.alloc(0), 0, {}, signal);
      await this.abortMultipart(handle).catch(() => undefined);
      return result;
    }
    let out: { ETag?: string };
    try {
      out = await this.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#config.bucket,
          Key: objectKey,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
        { operation: 'CompleteMultipartUpload', key: objectKey, multipart: true },
        signal,
      );
    } catch (error) {
      // radosgw 16 answers the completion of an aborted or unknown upload with 500
      // InternalError ("This multipart completion is already in progress"): ask ListParts.
      if (isBlobcoreError(error, 'UNAVAILABLE') && (await this.uploadGone(objectKey, uploadId, signal))) {
        throw blobError('BLOB_UPLOAD_UNKNOWN', `no multipart upload in progress for ${handle.key}`, {
          driver: 's3',
          cause: error,
        });
      }
      throw error;
    }
    return { etag: await this.etagOf(out.ETag, objectKey, signal), size };
  }

  /** True when ListParts says the upload does not exist (radosgw: NoSuchKey; others: NoSuchUpload). */
  private async uploadGone(
    objectKey: string,
    uploadId: string,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    try {
      await this.send(
        new ListPartsCommand({
          Bucket: this.#config.bucket,
          Key: objectKey,
          UploadId: uploadId,
          MaxParts: 1,
        }),
        { operation: 'ListParts', key: objectKey, multipart: true },
        signal,
      );
      return false;
    } catch (error) {
      return isBlobcoreError(error, 'BLOB_UPLOAD_UNKNOWN');
    }
  }

  private async abortUpload(objectKey: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    if (!this.#tombstones) {
      try {
        await this.send(
          new AbortMultipartUploadCommand({
            Bucket: this.#config.bucket,
            Key: objectKey,
            UploadId: uploadId,
          }),
          { operation: 'AbortMultipartUpload', key: objectKey, multipart: true },
          signal,
        );
        return;
      } catch (error) {
        if (isBlobcoreError(error, 'BLOB_UPLOAD_UNKNOWN')) return; // unknown or finished: fine
        const cause = (error as { cause?: { status?: number; name?: string } }).cause;
        const missing = cause?.status === 405 || cause?.status === 501 || cause?.name === 'NotImplemented';
        if (!missing) throw error;
        this.#tombstones = true; // the server lacks the API; fall back for this instance
      }
    }
    await this.put(this.tombstoneKey(uploadId), Buffer.alloc(0), 0, {}, signal);
  }

  async abortMultipart(handle: MultipartHandle, options: SignalOptions = {}): Promise<void> {
    await this.abortUpload(this.objectKey(handle.key), this.uploadId(handle), options.signal);
  }

  // ── optional capabilities ────────────────────────────────────────────────────

  async signedUrl(key: string, options: SignedUrlOptions): Promise<string> {
    const objectKey = this.objectKey(key);
    if (options.expiresIn > S3_MAX_PRESIGN_SECONDS) {
      throw blobError('RANGE_INVALID', `expiresIn is at most ${S3_MAX_PRESIGN_SECONDS} s for S3`, {
        driver: 's3',
      });
    }
    throwIfAborted(options.signal);
    try {
      return await getSignedUrl(
        this.#client,
        new GetObjectCommand({ Bucket: this.#config.bucket, Key: objectKey }),
        {
          expiresIn: Math.ceil(options.expiresIn),
        },
      );
    } catch (error) {
      throw s3Error(error, { operation: 'presign GetObject', bucket: this.#config.bucket, key: objectKey });
    }
  }

  async copy(from: string, to: string, options: SignalOptions = {}): Promise<WriteResult> {
    const source = this.objectKey(from);
    const target = this.objectKey(to);
    const { signal } = options;
    const bucket = this.#config.bucket;
    const stat = await this.head(source, signal);
    if (!stat) throw blobError('NOT_FOUND', `no such key: ${from}`, { driver: 's3' });
    const copySource = `${bucket}/${source.split('/').map(encodeURIComponent).join('/')}`;
    const ifMatch = stat.etag ? { CopySourceIfMatch: stat.etag } : {};
    if (stat.size <= S3_MAX_PUT_SIZE) {
      const out = await this.send<{ CopyObjectResult?: { ETag?: string } }>(
        new CopyObjectCommand({ Bucket: bucket, Key: target, CopySource: copySource, ...ifMatch }),
        { operation: 'CopyObject', key: target },
        signal,
      );
      return {
        etag: await this.etagOf(out.CopyObjectResult?.ETag, target, signal),
        size: stat.size,
      };
    }
    // Over 5 GiB: a multipart upload of 5 GiB-part copies.
    const created = await this.send<{ UploadId?: string }>(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: target }),
      { operation: 'CreateMultipartUpload', key: target },
      signal,
    );
    const uploadId = created.UploadId as string;
    try {
      const parts: { PartNumber: number; ETag: string }[] = [];
      for (let at = 0, n = 1; at < stat.size; at += S3_MAX_PART_SIZE, n++) {
        const end = Math.min(at + S3_MAX_PART_SIZE, stat.size) - 1;
        const out = await this.send<{ CopyPartResult?: { ETag?: string } }>(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: target,
            UploadId: uploadId,
            PartNumber: n,
            CopySource: copySource,
            CopySourceRange: `bytes=${at}-${end}`,
            ...ifMatch,
          }),
          { operation: 'UploadPartCopy', key: target, multipart: true },
          signal,
        );
        parts.push({ PartNumber: n, ETag: out.CopyPartResult?.ETag ?? '' });
      }
      const done = await this.send<{ ETag?: string }>(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: target,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
        { operation: 'CompleteMultipartUpload', key: target, multipart: true },
        signal,
      );
      return { etag: await this.etagOf(done.ETag, target, signal), size: stat.size };
    } catch (error) {
      await this.abortUpload(target, uploadId).catch(() => undefined);
      throw error;
    }
  }

  /** See `deleteKeys`. */
  async deleteMany(keys: readonly string[], signal: AbortSignal | undefined): Promise<number> {
    const objectKeys = keys.map((key) => this.objectKey(key));
    let deleted = 0;
    for (let at = 0; at < objectKeys.length; at += S3_MAX_DELETE_BATCH) {
      const batch = objectKeys.slice(at, at + S3_MAX_DELETE_BATCH);
      const out = await this.send<{ Deleted?: unknown[]; Errors?: { Key?: string; Code?: string }[] }>(
        new DeleteObjectsCommand({
          Bucket: this.#config.bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
        { operation: 'DeleteObjects' },
        signal,
      );
      const failed = out.Errors ?? [];
      if (failed.length > 0) {
        const first = failed[0];
        throw blobError(
          'UNAVAILABLE',
          `DeleteObjects s3://${this.#config.bucket}: ${failed.length} of ${batch.length} keys not deleted (first: ${first?.Key} ${first?.Code})`,
          { driver: 's3', retryable: true },
        );
      }
      deleted += batch.length;
    }
    return deleted;
  }

  /** See `abortStaleMultipartUploads`. */
  async abortStale(olderThan: Date, prefix: string, signal: AbortSignal | undefined) {
    const bucket = this.#config.bucket;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    let aborted = 0;
    for (;;) {
      let page: {
        Uploads?: { Key?: string; UploadId?: string; Initiated?: Date }[];
        IsTruncated?: boolean;
        NextKeyMarker?: string;
        NextUploadIdMarker?: string;
      };
      try {
        page = await this.send(
          new ListMultipartUploadsCommand({
            Bucket: bucket,
            Prefix: this.#config.prefix + prefix,
            ...(keyMarker === undefined ? {} : { KeyMarker: keyMarker }),
            ...(uploadIdMarker === undefined ? {} : { UploadIdMarker: uploadIdMarker }),
          }),
          { operation: 'ListMultipartUploads' },
          signal,
        );
      } catch (error) {
        const status = (error as { cause?: { status?: number; name?: string } }).cause;
        if (status?.status === 405 || status?.status === 501 || status?.name === 'NotImplemented') {
          return { aborted, supported: false };
        }
        throw error;
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated >= olderThan) continue;
        await this.abortUpload(upload.Key, upload.UploadId, signal);
        aborted += 1;
      }
      if (!page.IsTruncated) return { aborted, supported: true };
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }
}

const inner = new WeakMap<Driver, S3Driver>();

function resolve(options: S3DriverOptions): Resolved {
  if (typeof options.bucket !== 'string' || options.bucket === '') {
    throw blobError('UNSUPPORTED', 's3: a bucket is required', { driver: 's3' });
  }
  let prefix = options.prefix ?? '';
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  if (prefix !== '' && !isValidKey(prefix.slice(0, -1))) {
    throw blobError('UNSUPPORTED', `s3: prefix ${JSON.stringify(prefix)} is not made of valid key segments`, {
      driver: 's3',
    });
  }
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  if (!Number.isSafeInteger(partSize) || partSize < S3_MIN_PART_SIZE || partSize > S3_MAX_PART_SIZE) {
    throw blobError('UNSUPPORTED', `s3: partSize must be ${mebibytes(S3_MIN_PART_SIZE)} … 5 GiB`, {
      driver: 's3',
    });
  }
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw blobError('UNSUPPORTED', 's3: concurrency must be a positive integer', { driver: 's3' });
  }
  return {
    bucket: options.bucket,
    prefix,
    conditionalWrites: options.conditionalWrites ?? true,
    multipartAbort: options.multipartAbort ?? true,
    partSize,
    concurrency,
    checksum: options.checksum === 'sha256',
    endpoint: options.endpoint,
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
  };
}

/** Creates a guarded S3 driver. */
export function createS3Driver(options: S3DriverOptions): Driver {
  const config = resolve(options);
  const client = options.client ?? buildClient(options, config.region);
  const driver = new S3Driver(config, client, options.client === undefined);
  const guarded = guardDriver(driver);
  inner.set(guarded, driver);
  return guarded;
}

/** `s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true&caBundle=/path…` (see ./url.ts). */
export function s3DriverFromUrl(url: URL): Driver {
  return createS3Driver(parseS3Url(url));
}

/**
 * Deletes many keys with DeleteObjects, 1,000 per request (missing keys are not an
 * error, as with S3). Keys are validated like every driver key. Resolves to the number
 * of keys sent; a key the server could not delete fails with UNAVAILABLE naming it.
 */
export async function deleteKeys(
  driver: Driver,
  keys: readonly string[],
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  const s3 = inner.get(driver);
  if (!s3) throw blobError('UNSUPPORTED', 'not a driver from createS3Driver', { driver: driver.name });
  for (const key of keys) validateKey(key);
  throwIfAborted(options.signal);
  return s3.deleteMany(keys, options.signal);
}

/**
 * Aborts the multipart uploads under `prefix` (a driver key prefix; default all) that
 * were started before `olderThan`: staged parts of uploads that crashed or were
 * abandoned, which S3 keeps (and bills) until aborted. For an upload purge; choose
 * `olderThan` well behind the longest upload a client may still resume. Servers
 * without ListMultipartUploads (s3rver) give `{ aborted: 0, supported: false }`.
 */
export async function abortStaleMultipartUploads(
  driver: Driver,
  options: { olderThan: Date; prefix?: string; signal?: AbortSignal },
): Promise<{ aborted: number; supported: boolean }> {
  const s3 = inner.get(driver);
  if (!s3) throw blobError('UNSUPPORTED', 'not a driver from createS3Driver', { driver: driver.name });
  throwIfAborted(options.signal);
  return s3.abortStale(options.olderThan, options.prefix ?? '', options.signal);
}

/** Buffered-byte counters of a driver from `createS3Driver` (undefined for other drivers). */
export function s3DriverStats(driver: Driver): S3DriverStats | undefined {
  return inner.get(driver)?.stats;
}

export { s3Error, summarize } from './errors.js';
export { parseS3Url } from './url.js';
