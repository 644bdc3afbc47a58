/**
 * The Azure Blob Storage driver, on block blobs only.
 *
 * Layout: key `k` is the block blob `<prefix>k` in one container (`azure://container/prefix`).
 * Nothing else is stored: no marker objects, no sidecar metadata. Append and page blobs
 * are never used (append blobs cannot be copied or retried safely).
 *
 * write(key, body)
 *   bytes up to `blockSize`, or a stream that ends within one block: one Put Blob.
 *   Larger bodies: blocks of `blockSize` are staged in parallel (`concurrency` at a
 *   time, so memory stays ≤ blockSize × concurrency whatever the length) under a fresh
 *   nonce, then Put Block List commits them at once. Either way readers see the old blob
 *   or the whole new one. `ifNoneMatch: '*'` / `ifMatch` travel as If-None-Match /
 *   If-Match on that final request, so Azure enforces them atomically
 *   (`capabilities.conditionalWrite = true`). A conditional write also sets the
 *   metadata `blobcorewrite=<random id>`: if a retry of a request whose response was
 *   lost meets 409/412, the driver reads that id back and, when it is its own, reports
 *   the success the lost response carried instead of a false conflict.
 *   Staged blocks of a failed or aborted write stay uncommitted (invisible to reads and
 *   listings) until Azure collects them after 7 days or the blob's next commit.
 *
 * Multipart (the store's resumable uploads)
 *   createMultipart  → plain JSON handle { key, v, nonce, blockSize: partBlockSize }; no request.
 *   uploadPart(n)    → stages the part as ⌈size / partBlockSize⌉ (≤ 5) blocks, in
 *                      parallel, with ids derived from (nonce, n, block index):
 *                      re-uploading part n replaces it, and a retried Put Block is
 *                      idempotent. Parts are cut into 2 MiB blocks by default so that
 *                      the store's 8 MiB parts (one per chunk) still stage 4 blocks at
 *                      once: a chunked upload is sequential part by part.
 *                      PartRef.etag = `azb1:<offset>:<size>`.
 *   completeMultipart→ checks the parts are contiguous, checks every block is staged
 *                      with the right size (Get Block List: listing is a check, the
 *                      store's upload record stays the source of truth), then one Put
 *                      Block List. O(number of parts), never O(bytes): nothing is copied.
 *                      Part numbers may skip (the store skips one after a takeover).
 *   abortMultipart   → if the target blob does not exist yet and holds our staged
 *                      blocks, commits an empty block list create-only and deletes that
 *                      empty blob (Azure has no "discard uncommitted blocks" call). On an
 *                      existing blob the blocks stay uncommitted until its next commit or
 *                      the 7-day collection. The store always targets a fresh random key.
 *   One multipart per key at a time: any commit of a blob discards all its uncommitted
 *   blocks, including another writer's.
 *
 * list(prefix, { startAfter, limit }) is List Blobs (flat) with `prefix`, paged by Azure's
 * continuation token. Azure has no "start after": the driver remembers, per instance,
 * the continuation token behind every cursor it returned (LRU of 512), so paging with
 * its own cursors costs one request per page. A `startAfter` it has no token for (another
 * instance, a key between keys) is served by listing from the prefix start in pages of
 * 5,000 and skipping keys ≤ startAfter (optionally helped by `startFrom`, see
 * `listStartFrom`). Results are always filtered, so either path returns the same keys.
 *
 * Retries: the SDK's storage retry policy, exponential, 6 tries (waits 0, 0.5, 1.5, 3.5,
 * 7.5 s; capped at 15 s), on 500, 503, timeouts and connection errors; plus a client
 * timeout of 120 s per attempt (until the response headers), which the SDK alone does
 * not have, so a hung connection is retried instead of waited on forever. Downloads
 * resume a broken body up to 5 times (If-Match the etag, so a changed blob fails
 * instead of mixing). What still fails maps to UNAVAILABLE (retryable). See ./errors.ts.
 *
 * Signed URLs: read-only (`sp=r`) blob SAS with an expiry, signed with the account key,
 * or, with a TokenCredential, a user-delegation SAS (key cached, ≤ 7 days). A driver
 * holding only a SAS token cannot sign and declares `signedUrl: false`.
 */
import { Agent as HttpsAgent } from 'node:https';
import { PassThrough, Readable } from 'node:stream';
import { inspect } from 'node:util';
import {
  AnonymousCredential,
  BlobSASPermissions,
  BlobServiceClient,
  type BlockBlobClient,
  type ContainerClient,
  generateBlobSASQueryParameters,
  newPipeline,
  type RequestPolicy,
  type RequestPolicyFactory,
  RestError,
  SASProtocol,
  StorageRetryPolicyType,
  StorageSharedKeyCredential,
  type UserDelegationKey,
  type WebResource,
} from '@azure/storage-blob';
import { toBuffer } from '../../src/bytes.js';
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
import { blobError } from '../../src/errors.js';
import { Block, BlockReader, blockId, blocksOf, newNonce, nonceOfBlockId, runBounded } from './blocks.js';
import {
  type AuthKind,
  type AzureDriverOptions,
  type AzureRetryOptions,
  checkContainer,
  normalizePrefix,
  optionsFromUrl,
  resolveAuth,
  Secrets,
  type TokenCredentialLike,
} from './config.js';
import { azureCodeOf, mapAzureError, statusOf } from './errors.js';

export type { AzureDriverOptions, AzureRetryOptions, TokenCredentialLike } from './config.js';
export { AzureRequestError } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// ── Azure's limits (service version 2019-12-12 and later) ──────────────────────────
/** Largest block one Put Block may stage. */
export const AZURE_MAX_BLOCK_SIZE = 4000 * MiB;
/** Committed blocks one block blob may consist of. */
export const AZURE_MAX_COMMITTED_BLOCKS = 50_000;
/** Uncommitted blocks one blob may hold at a time. */
export const AZURE_MAX_UNCOMMITTED_BLOCKS = 100_000;
/** Block ids: at most 64 bytes before base64, all ids of one blob the same length. */
export const AZURE_MAX_BLOCK_ID_BYTES = 64;
/** Largest body of a single Put Blob (this driver goes single-shot only up to `blockSize`). */
export const AZURE_MAX_PUT_BLOB_SIZE = 5000 * MiB;
/** Most names one List Blobs page returns. */
export const AZURE_MAX_LIST_PAGE = 5000;
/** Longest validity of a user-delegation key, and so of a user-delegation SAS. */
export const AZURE_MAX_DELEGATION_MS = 7 * 24 * 3600 * 1000;
/**
 * SAS format version of the signed URLs. The SDK would default to 2026-04-06, whose
 * user-delegation string-to-sign Azurite 3.35 cannot check yet; Azure accepts older
 * versions, so the URLs use 2025-11-05, the newest both understand.
 */
export const SAS_VERSION = '2025-11-05';

// ── This driver's choices ─────────────────────────────────────────────────────────────
/** Default block size: the unit of staging, of retries and of buffering. */
export const DEFAULT_BLOCK_SIZE = 8 * MiB;
/** Smallest configurable block size (small blocks are for tests; Azure accepts 1 byte). */
export const MIN_BLOCK_SIZE = 4 * KiB;
/** Default block size inside multipart parts (see the header comment). */
export const DEFAULT_PART_BLOCK_SIZE = 2 * MiB;
/** Default blocks in flight per write or part. */
export const DEFAULT_CONCURRENCY = 4;
/** Part numbers run 1..10,000, as on S3. */
export const MAX_PARTS = 10_000;
/** Blocks one part may span, so that MAX_PARTS parts never exceed Azure's 50,000 committed blocks. */
export const BLOCKS_PER_PART = AZURE_MAX_COMMITTED_BLOCKS / MAX_PARTS;
/**
 * Default smallest non-final part. Azure has no minimum, but with 10,000 parts the
 * minimum decides the largest upload the store can always finish whatever the client's
 * chunk size: 10,000 × 4 MiB ≈ 39 GiB; parts of the default maximum (5 × 2 MiB) reach
 * 10,000 × 10 MiB ≈ 97 GiB. Smaller chunks wait in the store's tail objects until
 * 4 MiB have arrived. Larger uploads: raise partBlockSize.
 */
export const DEFAULT_MIN_PART_SIZE = 4 * MiB;

/** Retry settings (see the header comment for why). */
export const AZURE_RETRY_DEFAULTS: Required<AzureRetryOptions> = {
  maxTries: 6,
  retryDelayMs: 500,
  maxRetryDelayMs: 15_000,
  requestTimeoutMs: 120_000,
  readRetries: 5,
};

const MARKER_CACHE_SIZE = 512;
const PART_ETAG = /^azb1:(\d+):(\d+)$/;
const EMPTY = new Block([], 0);

interface AzureHandle extends MultipartHandle {
  readonly key: string;
  readonly v: 1;
  readonly nonce: string;
  readonly blockSize: number;
}

interface MarkerEntry {
  /** Continuation token to list from; undefined = from the prefix start. */
  marker: string | undefined;
  /** True when the token starts right after the cursor key (no skipping needed). */
  exact: boolean;
}

type Conditions = { ifNoneMatch: '*' } | { ifMatch: string };

function positiveInteger(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw blobError(
      'UNSUPPORTED',
      `azure driver: ${name} must be an integer in ${min}..${max}, got ${value}`,
      {
        driver: 'azure',
      },
    );
  }
  return value;
}

/** `{ abortSignal }` only when there is one (exactOptionalPropertyTypes). */
function abortOf(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

function emptyStream(): Readable {
  return Readable.from([], { objectMode: false });
}

/**
 * Per-attempt client timeout (until the response headers) and an optional HTTPS agent.
 * The SDK's own `tryTimeoutInMs` only asks the *server* to time out, and a core
 * request timeout surfaces as a non-retried AbortError; this policy instead fails a
 * silent attempt with a RestError coded TIMEOUT, which the storage retry policy retries.
 *
 * The class name matters: @azure/storage-blob 12.32 places legacy policy factories
 * named `InjectorPolicyFactory` after its retry policy (Pipeline.js,
 * processDownlevelPipeline), so this runs once per attempt, not once per operation.
 * test/azure-driver.test.ts checks that a silent server is retried and then reported.
 */
class InjectorPolicyFactory implements RequestPolicyFactory {
  constructor(
    private readonly timeoutMs: number,
    private readonly agent: HttpsAgent | undefined,
  ) {}

  create(next: RequestPolicy): RequestPolicy {
    const { timeoutMs, agent } = this;
    return {
      async sendRequest(request: WebResource) {
        if (agent && request.url.startsWith('https:')) request.agent = agent;
        const outer = request.abortSignal;
        const attempt = new AbortController();
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          attempt.abort();
        }, timeoutMs);
        const native = outer instanceof AbortSignal;
        const onAbort = () => attempt.abort();
        if (outer && !native) outer.addEventListener('abort', onAbort);
        request.abortSignal = native ? AbortSignal.any([outer, attempt.signal]) : attempt.signal;
        try {
          return await next.sendRequest(request);
        } catch (error) {
          if (timedOut && !outer?.aborted) {
            throw new RestError(`no response within ${timeoutMs} ms`, { code: 'TIMEOUT' });
          }
          throw error;
        } finally {
          clearTimeout(timer);
          // Assign (not delete): the request is a proxy that passes assignments through.
          (request as { abortSignal: WebResource['abortSignal'] | undefined }).abortSignal = outer;
          if (outer && !native) outer.removeEventListener('abort', onAbort);
        }
      },
    };
  }
}

class AzureDriver implements Driver {
  readonly name = 'azure';
  readonly capabilities: DriverCapabilities;
  readonly limits: DriverLimits;

  readonly #account: string;
  readonly #containerName: string;
  readonly #prefix: string;
  readonly #endpoint: string;
  readonly #authKind: AuthKind;
  readonly #authSource: string;
  readonly #secrets: Secrets;
  readonly #service: BlobServiceClient;
  readonly #container: ContainerClient;
  readonly #sharedKey: StorageSharedKeyCredential | undefined;
  readonly #agent: HttpsAgent | undefined;
  readonly #blockSize: number;
  readonly #partBlockSize: number;
  readonly #concurrency: number;
  readonly #readRetries: number;
  readonly #listStartFrom: boolean;
  readonly #createContainer: boolean;
  readonly #markers = new Map<string, MarkerEntry>();
  #containerReady: Promise<void> | undefined;
  #delegation: Promise<UserDelegationKey> | undefined;

  constructor(options: AzureDriverOptions) {
    this.#secrets = new Secrets();
    this.#containerName = checkContainer(options.container);
    this.#prefix = normalizePrefix(options.prefix);
    const auth = resolveAuth(options, this.#secrets);
    this.#account = auth.accountName;
    this.#endpoint = auth.endpoint;
    this.#authKind = auth.kind;
    this.#authSource = auth.source;
    this.#blockSize = positiveInteger(
      'blockSize',
      options.blockSize ?? DEFAULT_BLOCK_SIZE,
      MIN_BLOCK_SIZE,
      AZURE_MAX_BLOCK_SIZE,
    );
    this.#concurrency = positiveInteger('concurrency', options.concurrency ?? DEFAULT_CONCURRENCY, 1, 64);
    const retry = { ...AZURE_RETRY_DEFAULTS, ...options.retry };
    this.#readRetries = positiveInteger('retry.readRetries', retry.readRetries, 0, 100);
    this.#listStartFrom = options.listStartFrom ?? false;
    this.#createContainer = options.createContainer ?? false;

    this.#partBlockSize = positiveInteger(
      'partBlockSize',
      options.partBlockSize ?? DEFAULT_PART_BLOCK_SIZE,
      MIN_BLOCK_SIZE,
      AZURE_MAX_BLOCK_SIZE,
    );
    const maxPartSize = BLOCKS_PER_PART * this.#partBlockSize;
    const minPartSize =
      options.minPartSize === undefined
        ? Math.min(DEFAULT_MIN_PART_SIZE, maxPartSize)
        : positiveInteger('minPartSize', options.minPartSize, 1, maxPartSize);
    this.limits = { minPartSize, maxPartSize, maxParts: MAX_PARTS };
    this.capabilities = {
      conditionalWrite: true,
      signedUrl: auth.kind !== 'sas',
      copy: false,
      link: false,
      usage: false,
    };

    this.#agent = options.ca === undefined ? undefined : new HttpsAgent({ ca: options.ca, keepAlive: true });
    let credential: StorageSharedKeyCredential | AnonymousCredential | TokenCredentialLike;
    if (auth.kind === 'shared-key') {
      this.#sharedKey = new StorageSharedKeyCredential(auth.accountName, auth.accountKey as string);
      credential = this.#sharedKey;
    } else if (auth.kind === 'token') {
      credential = auth.credential as TokenCredentialLike;
    } else {
      credential = new AnonymousCredential();
    }
    const pipeline = newPipeline(credential, {
      retryOptions: {
        retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
        maxTries: positiveInteger('retry.maxTries', retry.maxTries, 1, 100),
        retryDelayInMs: positiveInteger('retry.retryDelayMs', retry.retryDelayMs, 0, 3_600_000),
        maxRetryDelayInMs: positiveInteger('retry.maxRetryDelayMs', retry.maxRetryDelayMs, 0, 3_600_000),
      },
      userAgentOptions: { userAgentPrefix: 'blobcore' },
    });
    pipeline.factories.push(
      new InjectorPolicyFactory(
        positiveInteger('retry.requestTimeoutMs', retry.requestTimeoutMs, 1, 86_400_000),
        this.#agent,
      ),
    );
    const serviceUrl = auth.kind === 'sas' ? `${auth.endpoint}?${auth.sasToken}` : auth.endpoint;
    this.#service = new BlobServiceClient(serviceUrl, pipeline);
    this.#container = this.#service.getContainerClient(this.#containerName);
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────
  #blob(key: string): BlockBlobClient {
    return this.#container.getBlockBlobClient(this.#prefix + key);
  }

  #error(error: unknown, op: string, key?: string): unknown {
    return mapAzureError(error, {
      op,
      key,
      account: this.#account,
      container: this.#containerName,
      secrets: this.#secrets,
    });
  }

  /** Creates the container once, when asked to. */
  async #ready(signal: AbortSignal | undefined): Promise<void> {
    if (!this.#createContainer) return;
    this.#containerReady ??= this.#container.createIfNotExists().then(
      () => undefined,
      (error: unknown) => {
        this.#containerReady = undefined;
        throw error;
      },
    );
    signal?.throwIfAborted();
    await this.#containerReady;
  }

  /** Runs one operation: container check, then `work`, mapping what it throws. */
  async #run<T>(
    op: string,
    key: string | undefined,
    signal: AbortSignal | undefined,
    work: () => Promise<T>,
  ) {
    try {
      await this.#ready(signal);
      return await work();
    } catch (error) {
      throw this.#error(error, op, key);
    }
  }

  // ── objects ───────────────────────────────────────────────────────────────────────
  async stat(key: string, options: SignalOptions = {}): Promise<ObjectStat | null> {
    return this.#run('stat', key, options.signal, async () => {
      try {
        const props = await this.#blob(key).getProperties(abortOf(options.signal));
        return {
          size: props.contentLength ?? 0,
          etag: props.etag ?? '',
          modified: props.lastModified ?? new Date(0),
        };
      } catch (error) {
        if (statusOf(error) === 404 && azureCodeOf(error) !== 'ContainerNotFound') return null;
        throw error;
      }
    });
  }

  async read(key: string, options: ReadOptions = {}): Promise<Readable> {
    const { signal } = options;
    const offset = options.offset ?? 0;
    return this.#run('read', key, signal, async () => {
      // Past the end is RANGE_INVALID, exactly at the end is empty; a missing key NOT_FOUND.
      const atOrPastEnd = async (): Promise<Readable> => {
        const stat = await this.stat(key, { signal });
        if (!stat) throw blobError('NOT_FOUND', `read ${JSON.stringify(key)}: no such key`);
        if (offset > stat.size) {
          throw blobError('RANGE_INVALID', `offset ${offset} is past the end (${stat.size} bytes)`);
        }
        if (offset < stat.size && options.length !== 0) {
          throw blobError('UNAVAILABLE', `read ${JSON.stringify(key)}: the object changed during the read`);
        }
        return emptyStream();
      };
      if (options.length === 0) return atOrPastEnd();
      let body: NodeJS.ReadableStream | undefined;
      try {
        const response = await this.#blob(key).download(offset, options.length, {
          ...abortOf(signal),
          maxRetryRequests: this.#readRetries,
        });
        body = response.readableStreamBody;
      } catch (error) {
        if (statusOf(error) === 416) return atOrPastEnd();
        throw error;
      }
      if (!body) return emptyStream();
      return this.#wrapDownload(body, key);
    });
  }

  /** Passes the SDK's (resuming) download stream through, with errors mapped and redacted. */
  #wrapDownload(source: NodeJS.ReadableStream, key: string): Readable {
    const out = new PassThrough();
    const input = source as Readable;
    input.once('error', (error) => out.destroy(this.#error(error, 'read', key) as Error));
    out.once('close', () => {
      if (!input.destroyed) input.destroy();
    });
    input.pipe(out);
    return out;
  }

  async write(key: string, body: Body, options: WriteOptions = {}): Promise<WriteResult> {
    const { signal } = options;
    const conditions: Conditions | undefined =
      options.ifNoneMatch === '*'
        ? { ifNoneMatch: '*' }
        : options.ifMatch !== undefined
          ? { ifMatch: options.ifMatch }
          : undefined;
    const writeId = conditions ? newNonce() + newNonce() : undefined;
    const blob = this.#blob(key);
    return this.#run('write', key, signal, async () => {
      try {
        if (body instanceof Uint8Array) {
          if (body.byteLength <= this.#blockSize)
            return await this.#putSingle(
              blob,
              new Block([toBuffer(body)], body.byteLength),
              conditions,
              writeId,
              signal,
            );
          return await this.#putStaged(
            key,
            blob,
            blocksOf(body, this.#blockSize),
            conditions,
            writeId,
            signal,
          );
        }
        const reader = new BlockReader(body, signal);
        try {
          const first = (await reader.read(this.#blockSize)) ?? EMPTY;
          if (await reader.ended()) return await this.#putSingle(blob, first, conditions, writeId, signal);
          let pending: Block | null = first;
          const next = async () => {
            const block = pending ?? (await reader.read(this.#blockSize));
            pending = null;
            return block;
          };
          return await this.#putStaged(key, blob, next, conditions, writeId, signal);
        } finally {
          reader.close();
        }
      } catch (error) {
        const outcome = await this.#settleConditional(error, key, blob, options, writeId, signal);
        if ('result' in outcome) return outcome.result;
        throw outcome.error;
      }
    });
  }

  /**
   * A conditional write that failed: if it failed on its condition, check whether the
   * blob carries this write's id (a retried request whose first response was lost), and
   * turn the outcome into PRECONDITION_FAILED or the success it really was.
   */
  async #settleConditional(
    error: unknown,
    key: string,
    blob: BlockBlobClient,
    options: WriteOptions,
    writeId: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ result: WriteResult } | { error: unknown }> {
    const status = statusOf(error);
    const code = azureCodeOf(error);
    const conflict = status === 409 || status === 412 || (status === 404 && options.ifMatch !== undefined);
    if (writeId && conflict) {
      try {
        const props = await blob.getProperties(abortOf(signal));
        if (props.metadata?.blobcorewrite === writeId) {
          return { result: { etag: props.etag ?? '', size: props.contentLength ?? 0 } };
        }
      } catch {
        // fall through: report the conflict
      }
      const message = `write ${JSON.stringify(key)}: precondition failed (${status} ${code ?? ''})`.trim();
      return { error: blobError('PRECONDITION_FAILED', message) };
    }
    if (status === 400 && code === 'InvalidBlockList') {
      // Another commit of this blob discarded our staged blocks: a concurrent write won.
      const message = writeId
        ? `write ${JSON.stringify(key)}: a concurrent write replaced the object`
        : `write ${JSON.stringify(key)}: a concurrent write of the same key discarded this write's staged blocks; retry`;
      return {
        error: blobError(writeId ? 'PRECONDITION_FAILED' : 'UNAVAILABLE', message, { retryable: !writeId }),
      };
    }
    return { error };
  }

  async #putSingle(
    blob: BlockBlobClient,
    data: Block,
    conditions: Conditions | undefined,
    writeId: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<WriteResult> {
    const response = await blob.upload(data.body(), data.size, {
      ...abortOf(signal),
      ...(conditions ? { conditions } : {}),
      ...(writeId ? { metadata: { blobcorewrite: writeId } } : {}),
    });
    return { etag: response.etag ?? '', size: data.size };
  }

  /** Stages blocks in parallel, then commits them in one Put Block List. */
  async #putStaged(
    key: string,
    blob: BlockBlobClient,
    next: () => Promise<Block | null>,
    conditions: Conditions | undefined,
    writeId: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<WriteResult> {
    if (conditions) await this.#precheck(key, conditions, signal);
    const nonce = newNonce();
    const ids: string[] = [];
    let size = 0;
    await runBounded(
      async () => {
        const block = await next();
        if (!block) return null;
        if (ids.length >= AZURE_MAX_COMMITTED_BLOCKS) {
          throw blobError(
            'SIZE_INVALID',
            `write ${JSON.stringify(key)}: more than ${AZURE_MAX_COMMITTED_BLOCKS} blocks`,
          );
        }
        const id = blockId(nonce, 0, ids.length);
        ids.push(id);
        size += block.size;
        return { id, block };
      },
      ({ id, block }, abortSignal) => blob.stageBlock(id, block.body(), block.size, { abortSignal }),
      this.#concurrency,
      signal,
    );
    const response = await blob.commitBlockList(ids, {
      ...abortOf(signal),
      ...(conditions ? { conditions } : {}),
      ...(writeId ? { metadata: { blobcorewrite: writeId } } : {}),
    });
    return { etag: response.etag ?? '', size };
  }

  /** Fails a conditional write early, before staging a large body (Azure still enforces it at commit). */
  async #precheck(key: string, conditions: Conditions, signal: AbortSignal | undefined): Promise<void> {
    const current = await this.stat(key, { signal });
    const ok = 'ifNoneMatch' in conditions ? current === null : current?.etag === conditions.ifMatch;
    if (!ok) throw blobError('PRECONDITION_FAILED', `write ${JSON.stringify(key)}: precondition failed`);
  }

  async delete(key: string, options: SignalOptions = {}): Promise<boolean> {
    return this.#run('delete', key, options.signal, async () => {
      try {
        await this.#blob(key).delete({ deleteSnapshots: 'include', ...abortOf(options.signal) });
        return true;
      } catch (error) {
        if (statusOf(error) === 404 && azureCodeOf(error) !== 'ContainerNotFound') return false;
        throw error;
      }
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const { startAfter, signal } = options;
    const limit = Math.min(options.limit ?? DEFAULT_LIST_LIMIT, DEFAULT_LIST_LIMIT);
    return this.#run('list', prefix, signal, async () => {
      const full = this.#prefix + prefix;
      const cached = startAfter === undefined ? undefined : this.#markers.get(`${prefix}\n${startAfter}`);
      let marker = cached?.marker;
      let exact = startAfter === undefined || cached?.exact === true;
      const startFrom =
        startAfter !== undefined && cached === undefined && this.#listStartFrom
          ? this.#prefix + startAfter
          : undefined;
      const keys: string[] = [];
      for (;;) {
        const pages = this.#container
          .listBlobsFlat({
            ...(full ? { prefix: full } : {}),
            ...(startFrom !== undefined && marker === undefined ? { startFrom } : {}),
            ...abortOf(signal),
          })
          .byPage({
            ...(marker === undefined ? {} : { continuationToken: marker }),
            maxPageSize: exact ? Math.max(limit - keys.length, 1) : AZURE_MAX_LIST_PAGE,
          });
        const { value: page } = await pages.next();
        const names: string[] = page ? page.segment.blobItems.map((item: { name: string }) => item.name) : [];
        const following: string | undefined = page?.continuationToken || undefined;
        let leftover = false;
        for (const name of names) {
          const key = name.slice(this.#prefix.length);
          if (startAfter !== undefined && key <= startAfter) continue;
          if (keys.length === limit) {
            leftover = true;
            break;
          }
          keys.push(key);
        }
        const last = keys[keys.length - 1];
        if (leftover && last !== undefined) {
          this.#remember(prefix, last, { marker, exact: false });
          return { keys, cursor: last };
        }
        if (following === undefined) return { keys };
        if (keys.length === limit && last !== undefined) {
          this.#remember(prefix, last, { marker: following, exact: true });
          return { keys, cursor: last };
        }
        marker = following;
        if (keys.length > 0) exact = true;
      }
    });
  }

  #remember(prefix: string, cursor: string, entry: MarkerEntry): void {
    const id = `${prefix}\n${cursor}`;
    this.#markers.delete(id);
    this.#markers.set(id, entry);
    if (this.#markers.size > MARKER_CACHE_SIZE) {
      const oldest = this.#markers.keys().next().value;
      if (oldest !== undefined) this.#markers.delete(oldest);
    }
  }

  // ── multipart ─────────────────────────────────────────────────────────────────────
  async createMultipart(key: string, options: SignalOptions = {}): Promise<MultipartHandle> {
    return this.#run('createMultipart', key, options.signal, async () => {
      const handle: AzureHandle = { key, v: 1, nonce: newNonce(), blockSize: this.#partBlockSize };
      return handle;
    });
  }

  #handle(handle: MultipartHandle): AzureHandle {
    const { nonce, blockSize, v } = handle as Partial<AzureHandle>;
    if (
      v !== 1 ||
      typeof nonce !== 'string' ||
      !/^[0-9a-f]{16}$/.test(nonce) ||
      typeof blockSize !== 'number' ||
      !Number.isSafeInteger(blockSize) ||
      blockSize < 1 ||
      blockSize > AZURE_MAX_BLOCK_SIZE
    ) {
      throw blobError(
        'BLOB_UPLOAD_INVALID',
        `not an azure multipart handle for ${JSON.stringify(handle.key)}`,
      );
    }
    return handle as AzureHandle;
  }

  async uploadPart(
    handle: MultipartHandle,
    partNumber: number,
    offset: number,
    body: Body,
    size: number,
    options: SignalOptions = {},
  ): Promise<PartRef> {
    const { signal } = options;
    return this.#run('uploadPart', handle.key, signal, async () => {
      const h = this.#handle(handle);
      const count = Math.ceil(size / h.blockSize);
      if (count > BLOCKS_PER_PART) {
        throw blobError(
          'SIZE_INVALID',
          `part of ${size} bytes needs ${count} blocks of ${h.blockSize}; at most ${BLOCKS_PER_PART} per part`,
        );
      }
      const blob = this.#blob(h.key);
      const reader = body instanceof Uint8Array ? undefined : new BlockReader(body, signal);
      const next = reader ? () => reader.read(h.blockSize) : blocksOf(body as Uint8Array, h.blockSize);
      try {
        let index = 0;
        await runBounded(
          async () => {
            const block = await next();
            if (!block) return null;
            if (index >= count)
              throw blobError('SIZE_INVALID', `part ${partNumber} is longer than ${size} bytes`);
            return { id: blockId(h.nonce, partNumber, index++), block };
          },
          ({ id, block }, abortSignal) => blob.stageBlock(id, block.body(), block.size, { abortSignal }),
          this.#concurrency,
          signal,
        );
        if (index !== count)
          throw blobError('SIZE_INVALID', `part ${partNumber} is shorter than ${size} bytes`);
      } finally {
        reader?.close();
      }
      return { partNumber, size, etag: `azb1:${offset}:${size}` };
    });
  }

  /** Block ids and sizes of one part, derived from the handle, its number and its size. */
  #partBlocks(h: AzureHandle, partNumber: number, size: number): { id: string; size: number }[] {
    const blocks: { id: string; size: number }[] = [];
    for (let index = 0, at = 0; at < size; index++, at += h.blockSize) {
      blocks.push({ id: blockId(h.nonce, partNumber, index), size: Math.min(h.blockSize, size - at) });
    }
    return blocks;
  }

  async completeMultipart(
    handle: MultipartHandle,
    parts: readonly PartRef[],
    options: SignalOptions = {},
  ): Promise<WriteResult> {
    const { signal } = options;
    return this.#run('completeMultipart', handle.key, signal, async () => {
      const h = this.#handle(handle);
      const blocks: { id: string; size: number }[] = [];
      let offset = 0;
      for (const part of parts) {
        const match = PART_ETAG.exec(part.etag);
        if (!match || Number(match[2]) !== part.size) {
          throw blobError(
            'BLOB_UPLOAD_INVALID',
            `part ${part.partNumber}: not a part receipt of this driver`,
          );
        }
        if (Number(match[1]) !== offset) {
          throw blobError(
            'BLOB_UPLOAD_INVALID',
            `part ${part.partNumber} starts at ${match[1]}, expected ${offset}`,
          );
        }
        blocks.push(...this.#partBlocks(h, part.partNumber, part.size));
        offset += part.size;
      }
      if (blocks.length > AZURE_MAX_COMMITTED_BLOCKS) {
        throw blobError(
          'SIZE_INVALID',
          `${blocks.length} blocks exceed Azure's ${AZURE_MAX_COMMITTED_BLOCKS}`,
        );
      }
      const blob = this.#blob(h.key);
      if (blocks.length > 0) await this.#checkStaged(blob, blocks, signal);
      const response = await blob.commitBlockList(
        blocks.map((block) => block.id),
        abortOf(signal),
      );
      return { etag: response.etag ?? '', size: offset };
    });
  }

  /** Every block to commit is staged (or, after a completed commit, committed) with its size. */
  async #checkStaged(
    blob: BlockBlobClient,
    blocks: { id: string; size: number }[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let list: Awaited<ReturnType<BlockBlobClient['getBlockList']>>;
    try {
      list = await blob.getBlockList('all', abortOf(signal));
    } catch (error) {
      if (statusOf(error) === 404 && azureCodeOf(error) !== 'ContainerNotFound') {
        throw blobError('BLOB_UPLOAD_INVALID', 'no staged parts (the upload was aborted or expired)');
      }
      throw error;
    }
    const staged = new Map<string, number>();
    for (const block of list.committedBlocks ?? []) staged.set(block.name, block.size);
    for (const block of list.uncommittedBlocks ?? []) staged.set(block.name, block.size);
    for (const block of blocks) {
      const size = staged.get(block.id);
      if (size !== block.size) {
        const raw = Buffer.from(block.id, 'base64').toString('latin1');
        throw blobError(
          'BLOB_UPLOAD_INVALID',
          `block ${raw} is ${size === undefined ? 'missing' : `${size} bytes, expected ${block.size}`} ` +
            '(part aborted, expired or re-uploaded with another size)',
        );
      }
    }
  }

  async abortMultipart(handle: MultipartHandle, options: SignalOptions = {}): Promise<void> {
    const { signal } = options;
    await this.#run('abortMultipart', handle.key, signal, async () => {
      const h = this.#handle(handle);
      const blob = this.#blob(h.key);
      let uncommitted: string[];
      try {
        const list = await blob.getBlockList('uncommitted', abortOf(signal));
        uncommitted = (list.uncommittedBlocks ?? []).map((block) => block.name);
      } catch (error) {
        if (statusOf(error) === 404 && azureCodeOf(error) !== 'ContainerNotFound') return;
        throw error;
      }
      if (!uncommitted.some((id) => nonceOfBlockId(id) === h.nonce)) return;
      try {
        const empty = await blob.commitBlockList([], {
          conditions: { ifNoneMatch: '*' },
          ...abortOf(signal),
        });
        await blob.delete({ conditions: { ifMatch: empty.etag ?? '' }, ...abortOf(signal) });
      } catch (error) {
        const status = statusOf(error);
        // The blob exists (or changed meanwhile): leave it; its next commit drops our blocks.
        if (status === 404 || status === 409 || status === 412) return;
        throw error;
      }
    });
  }

  // ── signed URLs ───────────────────────────────────────────────────────────────────
  async signedUrl(key: string, options: SignedUrlOptions): Promise<string> {
    const { signal } = options;
    return this.#run('signedUrl', key, signal, async () => {
      const blob = this.#blob(key);
      const expiresOn = new Date(Date.now() + options.expiresIn * 1000);
      const values = {
        containerName: this.#containerName,
        blobName: this.#prefix + key,
        permissions: BlobSASPermissions.parse('r'),
        expiresOn,
        protocol: this.#endpoint.startsWith('https:') ? SASProtocol.Https : SASProtocol.HttpsAndHttp,
        version: SAS_VERSION,
      };
      let query: string;
      if (this.#sharedKey) {
        query = generateBlobSASQueryParameters(values, this.#sharedKey).toString();
      } else if (this.#authKind === 'token') {
        const key = await this.#delegationKey(expiresOn, signal);
        query = generateBlobSASQueryParameters(values, key, this.#account).toString();
      } else {
        throw blobError(
          'UNSUPPORTED',
          'signed URLs need an account key or a TokenCredential, not a SAS token',
        );
      }
      const url = new URL(blob.url);
      return `${url.origin}${url.pathname}?${query}`;
    });
  }

  /** A user-delegation key valid until at least `until` (cached; one day or `until`, at most 7 days). */
  async #delegationKey(until: Date, signal: AbortSignal | undefined): Promise<UserDelegationKey> {
    const now = Date.now();
    if (until.getTime() - now > AZURE_MAX_DELEGATION_MS - 120_000) {
      throw blobError('RANGE_INVALID', 'a user-delegation signed URL can be valid for at most 7 days');
    }
    const cached = this.#delegation ? await this.#delegation.catch(() => undefined) : undefined;
    if (cached && cached.signedExpiresOn.getTime() >= until.getTime() + 60_000) return cached;
    const startsOn = new Date(now - 5 * 60_000);
    const expiresOn = new Date(
      Math.min(now + AZURE_MAX_DELEGATION_MS - 60_000, Math.max(until.getTime() + 60_000, now + 86_400_000)),
    );
    this.#delegation = this.#service
      .getUserDelegationKey(startsOn, expiresOn, abortOf(signal))
      .then((response) => {
        this.#secrets.add(response.value);
        return response;
      });
    return this.#delegation;
  }

  async close(): Promise<void> {
    this.#agent?.destroy();
  }

  // ── never show secrets ────────────────────────────────────────────────────────────
  describe(): Record<string, string> {
    return {
      driver: 'azure',
      account: this.#account,
      container: this.#containerName,
      prefix: this.#prefix,
      endpoint: this.#endpoint,
      auth: `${this.#authKind} (${this.#authSource})`,
    };
  }

  [inspect.custom](): string {
    return `AzureDriver ${inspect(this.describe())}`;
  }

  toJSON(): Record<string, string> {
    return this.describe();
  }
}

/** Creates a guarded Azure Blob driver. See the header comment and ./README.md. */
export function createAzureDriver(options: AzureDriverOptions): Driver {
  return guardDriver(new AzureDriver(options));
}

/**
 * A driver for `azure://container/prefix?endpoint=…&account=…&blockSize=…&partBlockSize=…&concurrency=…&createContainer=true`.
 * Credentials come from `options` (e.g. a TokenCredential) or the environment, never the URL.
 */
export function azureDriverFromUrl(url: URL | string, options: Partial<AzureDriverOptions> = {}): Driver {
  return createAzureDriver(optionsFromUrl(url instanceof URL ? url : new URL(url), options));
}
