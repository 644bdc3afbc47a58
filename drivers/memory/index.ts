/**
 * The memory driver: the whole contract over a Map, for tests and embedded use.
 *
 * Objects live in a `MemoryBackend`; several driver instances may share one backend,
 * which is how tests stand in for a second process (`memory://name` URLs share a
 * process-wide backend by name, plain `memory:` gets a private one). Writes collect the
 * body first and then swap the entry, so readers see the old or the new object only.
 *
 * Like a Node Writable, the driver keeps the chunks it is given instead of copying them
 * (an object is a list of chunks; completing a multipart write joins the lists): do not
 * modify a buffer after handing it to a write. Copying would make this driver measure
 * memcpy and page faults rather than the store above it.
 * Conditional writes are checked and applied in one synchronous step, so they are
 * enforced (`capabilities.conditionalWrite = true`).
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { iterateBody, toBuffer } from '../../src/bytes.js';
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
  WriteOptions,
  WriteResult,
} from '../../src/driver.js';
import { DEFAULT_LIST_LIMIT, guardDriver } from '../../src/driver.js';
import { blobError } from '../../src/errors.js';

interface StoredObject {
  chunks: Buffer[];
  size: number;
  etag: string;
  modified: Date;
}

interface StagedPart {
  chunks: Buffer[];
  size: number;
  etag: string;
  offset: number;
}

async function collectChunks(body: Body): Promise<{ chunks: Buffer[]; size: number }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of iterateBody(body)) {
    if (chunk.byteLength === 0) continue;
    chunks.push(toBuffer(chunk));
    size += chunk.byteLength;
  }
  return { chunks, size };
}

/** Yields bytes [offset, end) of a chunk list as views. */
function* sliceChunks(chunks: Buffer[], offset: number, end: number): Generator<Buffer> {
  let at = 0;
  for (const chunk of chunks) {
    const from = Math.max(offset - at, 0);
    const to = Math.min(end - at, chunk.length);
    if (from < to) yield chunk.subarray(from, to);
    at += chunk.length;
    if (at >= end) return;
  }
}

/** The shared state behind memory drivers. */
export class MemoryBackend {
  readonly objects = new Map<string, StoredObject>();
  readonly multiparts = new Map<string, { key: string; parts: Map<number, StagedPart> }>();
  private version = 0;

  nextEtag(): string {
    this.version += 1;
    return `"m${this.version.toString(36)}-${randomBytes(4).toString('hex')}"`;
  }
}

const namedBackends = new Map<string, MemoryBackend>();

/** A process-wide backend by name, created on first use (`memory://name`). */
export function namedMemoryBackend(name: string): MemoryBackend {
  let backend = namedBackends.get(name);
  if (!backend) {
    backend = new MemoryBackend();
    namedBackends.set(name, backend);
  }
  return backend;
}

export interface MemoryDriverOptions {
  backend?: MemoryBackend;
  /** Defaults chosen so tests exercise the small-tail path: parts below 64 KiB are held back. */
  limits?: Partial<DriverLimits>;
}

export const MEMORY_LIMITS: DriverLimits = {
  minPartSize: 64 * 1024,
  maxPartSize: 1024 ** 3,
  maxParts: 10_000,
};

const CAPABILITIES: DriverCapabilities = {
  conditionalWrite: true,
  signedUrl: false,
  copy: true,
  link: false,
  usage: false,
};

function statOf(object: StoredObject): ObjectStat {
  return { size: object.size, etag: object.etag, modified: object.modified };
}

class MemoryDriver implements Driver {
  readonly name = 'memory';
  readonly capabilities = CAPABILITIES;
  readonly limits: DriverLimits;

  constructor(
    readonly backend: MemoryBackend,
    limits: DriverLimits,
  ) {
    this.limits = limits;
  }

  async stat(key: string): Promise<ObjectStat | null> {
    const object = this.backend.objects.get(key);
    return object ? statOf(object) : null;
  }

  async read(key: string, options: ReadOptions = {}): Promise<Readable> {
    const object = this.backend.objects.get(key);
    if (!object) throw blobError('NOT_FOUND', `no such key: ${key}`);
    const offset = options.offset ?? 0;
    if (offset > object.size) {
      throw blobError('RANGE_INVALID', `offset ${offset} is past the end (${object.size} bytes)`);
    }
    const end = options.length === undefined ? object.size : Math.min(object.size, offset + options.length);
    return Readable.from(sliceChunks(object.chunks, offset, end), { objectMode: false });
  }

  async write(key: string, body: Body, options: WriteOptions = {}): Promise<WriteResult> {
    const { chunks, size } = await collectChunks(body);
    return this.publish(key, chunks, size, options);
  }

  /** Checks preconditions and swaps the entry in one synchronous step. */
  private publish(key: string, chunks: Buffer[], size: number, options: WriteOptions = {}): WriteResult {
    const current = this.backend.objects.get(key);
    if (options.ifNoneMatch === '*' && current) throw blobError('PRECONDITION_FAILED', `key exists: ${key}`);
    if (options.ifMatch !== undefined && current?.etag !== options.ifMatch) {
      throw blobError('PRECONDITION_FAILED', `etag mismatch for ${key}`);
    }
    const etag = this.backend.nextEtag();
    this.backend.objects.set(key, { chunks, size, etag, modified: new Date() });
    return { etag, size };
  }

  async delete(key: string): Promise<boolean> {
    return this.backend.objects.delete(key);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const startAfter = options.startAfter;
    const matching: string[] = [];
    for (const key of this.backend.objects.keys()) {
      if (key.startsWith(prefix) && (startAfter === undefined || key > startAfter)) matching.push(key);
    }
    matching.sort();
    const keys = matching.slice(0, limit);
    const last = keys[keys.length - 1];
    return matching.length > limit && last !== undefined ? { keys, cursor: last } : { keys };
  }

  async createMultipart(key: string): Promise<MultipartHandle> {
    const uploadId = randomBytes(16).toString('hex');
    this.backend.multiparts.set(uploadId, { key, parts: new Map() });
    return { key, uploadId };
  }

  private staging(handle: MultipartHandle) {
    const staging =
      typeof handle.uploadId === 'string' ? this.backend.multiparts.get(handle.uploadId) : undefined;
    if (!staging || staging.key !== handle.key) {
      throw blobError('NOT_FOUND', `no multipart upload in progress for ${handle.key}`);
    }
    return staging;
  }

  async uploadPart(
    handle: MultipartHandle,
    partNumber: number,
    offset: number,
    body: Body,
  ): Promise<PartRef> {
    this.staging(handle); // fail before reading the body
    const { chunks, size } = await collectChunks(body);
    const etag = this.backend.nextEtag();
    this.staging(handle).parts.set(partNumber, { chunks, size, etag, offset });
    return { partNumber, size, etag };
  }

  async completeMultipart(handle: MultipartHandle, parts: readonly PartRef[]): Promise<WriteResult> {
    const staging = this.staging(handle);
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const ref of parts) {
      const part = staging.parts.get(ref.partNumber);
      if (!part || part.etag !== ref.etag) {
        throw blobError('BLOB_UPLOAD_INVALID', `part ${ref.partNumber} is missing or was replaced`);
      }
      if (part.offset !== offset) {
        throw blobError(
          'BLOB_UPLOAD_INVALID',
          `part ${ref.partNumber} starts at ${part.offset}, expected ${offset}`,
        );
      }
      chunks.push(...part.chunks);
      offset += part.size;
    }
    const result = this.publish(handle.key, chunks, offset);
    this.backend.multiparts.delete(handle.uploadId as string);
    return result;
  }

  async abortMultipart(handle: MultipartHandle): Promise<void> {
    if (typeof handle.uploadId === 'string') this.backend.multiparts.delete(handle.uploadId);
  }

  async copy(from: string, to: string): Promise<WriteResult> {
    const object = this.backend.objects.get(from);
    if (!object) throw blobError('NOT_FOUND', `no such key: ${from}`);
    return this.publish(to, object.chunks, object.size);
  }
}

/** Creates a guarded memory driver. */
export function createMemoryDriver(options: MemoryDriverOptions = {}): Driver {
  const limits = { ...MEMORY_LIMITS, ...options.limits };
  return guardDriver(new MemoryDriver(options.backend ?? new MemoryBackend(), limits));
}
