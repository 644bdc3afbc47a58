/**
 * The reference OCI registry endpoint: a plain `(req, res)` handler for node:http and
 * node:https over a BlobStore, implementing the OCI Distribution Spec v1.1 endpoints.
 *
 *   GET    /v2/                                     API root (200 {}), the place to log in
 *   GET    /v2/_catalog?n=&last=                    repositories (paged, Link)
 *   HEAD   /v2/<name>/blobs/<digest>                size, digest; refreshes the blob's liveness
 *   GET    /v2/<name>/blobs/<digest>                bytes, streamed; one `Range`; or 307 to a signed URL
 *   DELETE /v2/<name>/blobs/<digest>                unlink from the repository (GC frees the bytes)
 *   POST   /v2/<name>/blobs/uploads/                start a session (202)
 *   POST   …/blobs/uploads/?digest=<d>              monolithic upload of the body (201)
 *   POST   …/blobs/uploads/?mount=<d>&from=<repo>   cross-repository mount (201), else a session (202)
 *   GET    /v2/<name>/blobs/uploads/<id>            session status (204, Range)
 *   PATCH  /v2/<name>/blobs/uploads/<id>            append a chunk: streamed, or at `Content-Range`
 *   PUT    /v2/<name>/blobs/uploads/<id>?digest=<d> optional last chunk, then commit (201)
 *   DELETE /v2/<name>/blobs/uploads/<id>            cancel (204)
 *   HEAD   /v2/<name>/manifests/<tag|digest>        Content-Type, Content-Length, Docker-Content-Digest
 *   GET    /v2/<name>/manifests/<tag|digest>        the manifest, byte for byte as pushed
 *   PUT    /v2/<name>/manifests/<tag|digest>        store (≤ 4 MiB, 413 beyond), tag, OCI-Subject
 *   DELETE /v2/<name>/manifests/<digest>            delete the manifest (and its tags)
 *   DELETE /v2/<name>/manifests/<tag>               delete the tag only
 *   GET    /v2/<name>/tags/list?n=&last=            tags (paged, Link)
 *   GET    /v2/<name>/referrers/<digest>?artifactType=  referrers index (OCI-Filters-Applied)
 *
 * Bodies stream: blob bytes go from the request into the store and from the store into
 * the response without being held whole; only manifests (≤ 4 MiB) are read into memory.
 *
 * Upload sessions are the store's resumable uploads (../upload.ts): the Location is
 * `/v2/<name>/blobs/uploads/<id>` and all state lives in the backend, so any process
 * sharing the store continues a session another one started (no sticky sessions).
 *
 * A PATCH cut short (the client disconnects, or sends fewer bytes than it declared):
 * the store keeps the bytes of every part it finished and drops the part in flight. A
 * chunk with a known length (Content-Length or Content-Range) is one part, so it is
 * dropped whole; a streamed chunk without a length is cut into parts of the store's
 * `partSize` (8 MiB by default), so its finished parts stay as a resumable prefix. The
 * session is never corrupted: `GET` on the session reports the offset the store holds
 * and the client continues from there.
 *
 * Errors are the spec's JSON bodies; see ./errors.ts for the mapping of blobcore codes.
 * Access control: ./auth.ts.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { referenceBlob } from '../blob-index.js';
import { isDigest, parseDigest } from '../digest.js';
import { blobError, isBlobcoreError } from '../errors.js';
import { catalogKey } from '../layout.js';
import { MAX_MANIFEST_BYTES, MediaTypes, parseManifest } from '../manifest.js';
import { validateRepositoryName, validateTag } from '../names.js';
import type { Repository } from '../repository.js';
import type { BlobStore } from '../store.js';
import type { Upload } from '../upload.js';
import type { Authorize, RegistryAction } from './auth.js';
import { type ErrorContext, errorBody, HttpError, httpError, toHttpError } from './errors.js';
import {
  contentLength,
  hasBody,
  matchRoute,
  nextLink,
  pageSize,
  parseContentRange,
  parseRange,
  type Route,
  readLimited,
} from './http.js';

export interface RegistryOptions {
  /** Access control hook (see ./auth.ts); every request is allowed when absent. */
  authorize?: Authorize | undefined;
  /** Realm named in `WWW-Authenticate: Basic realm="…"`. Default 'blobcore'. */
  realm?: string | undefined;
  /**
   * Blob GETs answer 307 to a signed URL of the driver (S3, Azure), so the backend serves
   * the bytes. Only when the driver declares `capabilities.signedUrl`; otherwise the
   * bytes are streamed as usual. `expiresIn` in seconds, default 300.
   */
  redirect?: boolean | { expiresIn?: number | undefined } | undefined;
  /** DELETE of blobs and manifests; 405 UNSUPPORTED when false. Default true. */
  deleteEnabled?: boolean | undefined;
  /** Hash whole-blob GETs while streaming and cut the response if the bytes are corrupt. Default false. */
  verifyBlobReads?: boolean | undefined;
  /** Largest manifest accepted (413 beyond). Default and maximum 4 MiB. */
  maxManifestBytes?: number | undefined;
  /** Largest page of tags or repositories one request returns (then `Link` to the next). Default 1000. */
  pageLimit?: number | undefined;
  /** Called once per request when its response is over. */
  log?: ((entry: RegistryLogEntry) => void) | undefined;
}

export interface RegistryLogEntry {
  method: string;
  url: string;
  status: number;
  /** Milliseconds from the request to the end of the response. */
  ms: number;
  /** The blobcore or OCI error code of a failed request. */
  error?: string;
  /** False when the connection closed before the response was complete. */
  completed: boolean;
}

export type RegistryHandler = (request: IncomingMessage, response: ServerResponse) => void;

const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };
const JSON_TYPE = 'application/json';
const OCTETS = 'application/octet-stream';

interface Context {
  request: IncomingMessage;
  response: ServerResponse;
  url: URL;
  route: Route;
  signal: AbortSignal;
}

/** Allowed methods per route kind (405 with `Allow` otherwise). */
const METHODS: Record<Route['kind'], string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  blob: ['GET', 'HEAD', 'DELETE'],
  upload: ['POST', 'GET', 'PATCH', 'PUT', 'DELETE'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  tags: ['GET'],
  referrers: ['GET'],
};

function actionOf(route: Route, method: string): RegistryAction {
  if (method === 'DELETE' && route.kind !== 'upload') return 'delete';
  if (route.kind === 'upload' || method === 'PUT') return 'push';
  return 'pull';
}

function contextOf(route: Route | null): ErrorContext {
  switch (route?.kind) {
    case 'blob':
      return 'blob';
    case 'upload':
      return 'upload';
    case 'manifest':
      return 'manifest';
    case 'tags':
    case 'catalog':
      return 'list';
    default:
      return 'other';
  }
}

/** Resolves when `promise` settles, or rejects with ABORTED when the signal fires first. */
function waitFor(promise: Promise<unknown>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(blobError('ABORTED', 'client went away'));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(blobError('ABORTED', 'client went away'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
    );
  });
}

export function createRegistryHandler(store: BlobStore, options: RegistryOptions = {}): RegistryHandler {
  const realm = (options.realm ?? 'blobcore').replace(/["\\]/g, '');
  const deleteEnabled = options.deleteEnabled ?? true;
  const maxManifestBytes = Math.min(options.maxManifestBytes ?? MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES);
  const pageLimit = options.pageLimit ?? 1000;
  const redirect =
    options.redirect === undefined || options.redirect === false
      ? null
      : { expiresIn: (options.redirect === true ? undefined : options.redirect.expiresIn) ?? 300 };
  const canRedirect = (): boolean =>
    redirect !== null && store.driver.capabilities.signedUrl && typeof store.driver.signedUrl === 'function';

  // ---- responses -------------------------------------------------------------------

  function send(
    ctx: Context,
    status: number,
    headers: Record<string, string | number>,
    body?: string | Buffer,
  ): void {
    const { response } = ctx;
    const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
    const all: Record<string, string | number> = { ...API_VERSION, ...headers };
    if (bytes !== undefined) all['Content-Length'] = bytes.length;
    else if (all['Content-Length'] === undefined && status !== 204 && status !== 304)
      all['Content-Length'] = 0;
    response.writeHead(status, all);
    response.end(ctx.request.method === 'HEAD' ? undefined : bytes);
  }

  function sendJson(
    ctx: Context,
    status: number,
    value: unknown,
    headers: Record<string, string> = {},
  ): void {
    send(ctx, status, { 'Content-Type': JSON_TYPE, ...headers }, JSON.stringify(value));
  }

  function sendError(ctx: Context, error: HttpError): void {
    send(ctx, error.status, { 'Content-Type': JSON_TYPE, ...error.headers }, errorBody(error));
  }

  // ---- access control --------------------------------------------------------------

  async function allowed(ctx: Context, action: RegistryAction, repository: string | null): Promise<boolean> {
    if (!options.authorize) return true;
    const decision = await options.authorize({ action, repository, request: ctx.request });
    return decision === true || decision === 'allow';
  }

  async function requireAccess(
    ctx: Context,
    action: RegistryAction,
    repository: string | null,
  ): Promise<void> {
    if (!options.authorize) return;
    const decision = await options.authorize({ action, repository, request: ctx.request });
    if (decision === true || decision === 'allow') return;
    const scope = { type: repository === null ? 'registry' : 'repository', name: repository ?? '', action };
    if (decision === 'unauthenticated' || ctx.request.headers.authorization === undefined) {
      throw httpError(401, 'UNAUTHORIZED', 'authentication required', scope, {
        'WWW-Authenticate': `Basic realm="${realm}", charset="UTF-8"`,
      });
    }
    throw httpError(
      403,
      'DENIED',
      `requested access to ${action} ${repository ?? 'the registry'} is denied`,
      scope,
    );
  }

  // ---- dispatch --------------------------------------------------------------------

  async function handle(ctx: Context): Promise<void> {
    const { route } = ctx;
    const method = ctx.request.method ?? 'GET';
    const allowedMethods = METHODS[route.kind];
    if (
      !allowedMethods.includes(method) ||
      (route.kind === 'upload' && (method === 'POST') !== (route.reference === ''))
    ) {
      const allow =
        route.kind === 'upload'
          ? route.reference === ''
            ? ['POST']
            : allowedMethods.filter((m) => m !== 'POST')
          : allowedMethods;
      throw httpError(
        405,
        'UNSUPPORTED',
        `${method} is not supported on ${ctx.url.pathname}`,
        {},
        { Allow: allow.join(', ') },
      );
    }
    if (route.kind === 'base') {
      await requireAccess(ctx, 'pull', null);
      return sendJson(ctx, 200, {});
    }
    if (route.kind === 'catalog') return catalog(ctx);
    validateRepositoryName(route.name);
    const action = actionOf(route, method);
    if (action === 'delete' && !deleteEnabled) {
      throw httpError(405, 'UNSUPPORTED', 'deletes are disabled on this registry');
    }
    await requireAccess(ctx, action, route.name);
    const repo = store.repository(route.name);
    switch (route.kind) {
      case 'blob':
        return method === 'DELETE' ? deleteBlob(ctx, repo) : getBlob(ctx, repo);
      case 'upload':
        return upload(ctx, repo, method);
      case 'manifest':
        if (method === 'PUT') return putManifest(ctx, repo);
        if (method === 'DELETE') return deleteManifest(ctx, repo);
        return getManifest(ctx, repo);
      case 'tags':
        return tags(ctx, repo);
      case 'referrers':
        return referrers(ctx, repo);
    }
  }

  // ---- blobs -----------------------------------------------------------------------

  async function getBlob(ctx: Context, repo: Repository): Promise<void> {
    const digest = parseDigest(ctx.route.reference).value;
    const { signal } = ctx;
    const head = ctx.request.method === 'HEAD';
    const info = await repo.blobs.stat(digest, { signal });
    if (!info) throw blobError('BLOB_UNKNOWN', `blob ${digest} is not in ${repo.name}`);
    if (head) {
      // A HEAD is how a pushing client decides to skip an upload: refresh the blob's
      // liveness (touch, then re-read the index; ../liveness.ts) so a concurrent GC
      // cannot sweep it before the manifest that will name it arrives.
      if (!(await referenceBlob(store.driver, digest, { signal }))) {
        throw blobError('BLOB_UNKNOWN', `blob ${digest} is not stored`);
      }
    }
    const range = parseRange(ctx.request.headers.range, info.size);
    const headers: Record<string, string | number> = {
      'Docker-Content-Digest': digest,
      'Content-Type': OCTETS,
      'Accept-Ranges': 'bytes',
      ETag: `"${digest}"`,
    };
    if (!head && canRedirect()) {
      const url = await signedUrlOf(digest, signal);
      if (url !== null) return send(ctx, 307, { 'Docker-Content-Digest': digest, Location: url });
    }
    const offset = range?.start ?? 0;
    const length = range ? range.end - range.start + 1 : info.size;
    headers['Content-Length'] = length;
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${info.size}`;
    if (head) return send(ctx, 200, headers);
    const body = await store.get(digest, {
      offset,
      length,
      verify: options.verifyBlobReads === true && range === null,
      signal,
    });
    ctx.response.writeHead(range ? 206 : 200, { ...API_VERSION, ...headers });
    await pipeline(body, ctx.response, { signal });
  }

  async function signedUrlOf(digest: string, signal: AbortSignal): Promise<string | null> {
    const sign = store.driver.signedUrl;
    if (!sign || redirect === null) return null;
    try {
      const key = await store.layout.dataKey(digest);
      return await sign.call(store.driver, key, { expiresIn: redirect.expiresIn, method: 'GET', signal });
    } catch (error) {
      if (isBlobcoreError(error, 'UNSUPPORTED')) return null;
      throw error;
    }
  }

  async function deleteBlob(ctx: Context, repo: Repository): Promise<void> {
    const digest = parseDigest(ctx.route.reference).value;
    if (!(await repo.blobs.unlink(digest, { signal: ctx.signal }))) {
      throw blobError('BLOB_UNKNOWN', `blob ${digest} is not in ${repo.name}`);
    }
    send(ctx, 202, {});
  }

  // ---- uploads ---------------------------------------------------------------------

  function uploadLocation(repo: Repository, id: string): string {
    return `/v2/${repo.name}/blobs/uploads/${id}`;
  }

  function sessionHeaders(repo: Repository, id: string, offset: number): Record<string, string> {
    return {
      Location: uploadLocation(repo, id),
      Range: `0-${Math.max(0, offset - 1)}`,
      'Docker-Upload-UUID': id,
    };
  }

  function blobCreated(ctx: Context, repo: Repository, digest: string): void {
    send(ctx, 201, { Location: `/v2/${repo.name}/blobs/${digest}`, 'Docker-Content-Digest': digest });
  }

  async function startSession(ctx: Context, repo: Repository): Promise<void> {
    const session = await repo.uploads.start({ signal: ctx.signal });
    remember(repo, session);
    send(ctx, 202, sessionHeaders(repo, session.id, 0));
  }

  /**
   * Upload objects of recent sessions, kept between the requests of one push (POST,
   * PATCH…, PUT) so the next request skips re-reading the session record and keeps the
   * live hasher. Only a cache: each use re-validates against the record in the backend
   * (etag check, compare-and-swap), so a session another process moved on is still
   * seen as it is. Used only under the session lock; GET status always reads afresh.
   */
  const sessions = new Map<string, Upload>();
  const SESSION_CACHE = 256;

  function remember(repo: Repository, session: Upload): void {
    const key = `${repo.name}\0${session.id}`;
    sessions.delete(key);
    sessions.set(key, session);
    if (sessions.size > SESSION_CACHE) sessions.delete(sessions.keys().next().value as string);
  }

  function forget(repo: Repository, id: string): void {
    sessions.delete(`${repo.name}\0${id}`);
  }

  async function openSession(repo: Repository, id: string, signal: AbortSignal): Promise<Upload> {
    const cached = sessions.get(`${repo.name}\0${id}`);
    if (cached) return cached;
    const session = await repo.uploads.resume(id, { signal });
    remember(repo, session);
    return session;
  }

  /**
   * Requests that change one session run one at a time in this process, each on a fresh
   * view of the session's record. Across processes the store's claim and compare-and-swap
   * keep a session consistent; in one process, queueing also spares the loser of a race
   * a spurious 503.
   */
  const sessionLocks = new Map<string, Promise<void>>();

  async function withSessionLock<T>(id: string, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    const previous = sessionLocks.get(id) ?? Promise.resolve();
    let release: () => void = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = previous.then(() => mine);
    sessionLocks.set(id, chained);
    try {
      await waitFor(previous, signal);
      return await work();
    } finally {
      release();
      if (sessionLocks.get(id) === chained) sessionLocks.delete(id);
    }
  }

  async function upload(ctx: Context, repo: Repository, method: string): Promise<void> {
    if (method === 'POST') return postUpload(ctx, repo);
    if (method === 'GET') return sessionRequest(ctx, repo, method);
    return withSessionLock(ctx.route.reference, ctx.signal, () => sessionRequest(ctx, repo, method));
  }

  async function sessionRequest(ctx: Context, repo: Repository, method: string): Promise<void> {
    const id = ctx.route.reference;
    const { signal } = ctx;
    const session =
      method === 'GET' ? await repo.uploads.resume(id, { signal }) : await openSession(repo, id, signal);
    try {
      switch (method) {
        case 'GET': {
          const status = await session.status({ signal });
          return send(ctx, 204, sessionHeaders(repo, id, status.offset));
        }
        case 'DELETE':
          forget(repo, id);
          await session.cancel({ signal });
          return send(ctx, 204, {});
        case 'PATCH': {
          const offset = await appendBody(ctx, session);
          return send(ctx, 202, sessionHeaders(repo, id, offset));
        }
        default: {
          const param = ctx.url.searchParams.get('digest');
          if (param === null)
            throw httpError(400, 'DIGEST_INVALID', 'PUT needs ?digest=<digest of the whole blob>');
          const digest = parseDigest(param).value;
          if (hasBody(ctx.request)) await appendBody(ctx, session);
          await session.commit({ digest, signal });
          forget(repo, id);
          return blobCreated(ctx, repo, digest);
        }
      }
    } catch (error) {
      if (isBlobcoreError(error, 'BLOB_UPLOAD_UNKNOWN')) forget(repo, id);
      throw await withSessionHeaders(error, repo, session, signal);
    }
  }

  /** A 416 (or any upload error) tells the client where the session stands. */
  async function withSessionHeaders(
    error: unknown,
    repo: Repository,
    session: Upload,
    signal: AbortSignal,
  ): Promise<unknown> {
    if (!isBlobcoreError(error, 'RANGE_INVALID') && !(error instanceof HttpError && error.status === 416)) {
      return error;
    }
    let offset = isBlobcoreError(error) ? error.detail.offset : undefined;
    if (typeof offset !== 'number') offset = (await session.status({ signal }).catch(() => null))?.offset;
    if (typeof offset !== 'number') return error;
    const mapped = toHttpError(error, 'upload');
    return new HttpError(
      mapped.status,
      mapped.code,
      mapped.message,
      { ...mapped.detail, offset },
      {
        ...mapped.headers,
        ...sessionHeaders(repo, session.id, offset),
      },
    );
  }

  /** Appends the request body at its Content-Range (or at the session's offset); returns the new offset. */
  async function appendBody(ctx: Context, session: Upload): Promise<number> {
    const { request, signal } = ctx;
    const range = parseContentRange(request.headers['content-range']);
    if (range === 'invalid') {
      throw httpError(
        416,
        'BLOB_UPLOAD_INVALID',
        `malformed Content-Range ${JSON.stringify(String(request.headers['content-range']).slice(0, 100))}`,
        {
          blobcore: 'RANGE_INVALID',
        },
      );
    }
    let size = contentLength(request);
    let offset: number;
    if (range) {
      const chunk = range.end - range.start + 1;
      if (size !== undefined && size !== chunk) {
        throw httpError(
          400,
          'SIZE_INVALID',
          `Content-Range covers ${chunk} bytes, Content-Length says ${size}`,
        );
      }
      size = chunk;
      offset = range.start;
    } else {
      offset = (await session.status({ signal })).offset;
    }
    try {
      return (await session.append(request, { offset, size, signal })).offset;
    } catch (error) {
      // Another process holds the session's claim (requests of this process queue on the
      // session lock instead): nothing of this body was read. Ask the client to retry.
      if (isBlobcoreError(error, 'RANGE_INVALID') && error.detail.busy === true) {
        throw blobError('UNAVAILABLE', `upload ${session.id} is being written by another request; retry`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  async function postUpload(ctx: Context, repo: Repository): Promise<void> {
    const params = ctx.url.searchParams;
    const { signal } = ctx;
    const mount = params.get('mount');
    if (mount !== null) {
      const digest = parseDigest(mount).value;
      const from = params.get('from');
      // Mount needs pull on the source (push on the target was checked). Otherwise, or
      // when the source does not hold the blob, fall back to a new session (202), as the
      // spec asks: the client then uploads, and learns nothing about the source.
      if (from !== null && isRepositoryName(from) && (await allowed(ctx, 'pull', from))) {
        try {
          await repo.blobs.mount(digest, from, { signal });
          return blobCreated(ctx, repo, digest);
        } catch (error) {
          if (!isBlobcoreError(error, 'BLOB_UNKNOWN')) throw error;
        }
      }
      return startSession(ctx, repo);
    }
    const param = params.get('digest');
    if (param !== null) {
      const digest = parseDigest(param).value;
      const size = contentLength(ctx.request);
      const result = await repo.blobs.put(ctx.request, { expected: digest, size, signal });
      return blobCreated(ctx, repo, result.digest);
    }
    return startSession(ctx, repo);
  }

  // ---- manifests -------------------------------------------------------------------

  function checkReference(reference: string): void {
    if (reference.includes(':')) parseDigest(reference);
    else validateTag(reference);
  }

  async function getManifest(ctx: Context, repo: Repository): Promise<void> {
    const reference = ctx.route.reference;
    checkReference(reference);
    const { signal } = ctx;
    if (ctx.request.method === 'HEAD') {
      const info = await repo.manifests.stat(reference, { signal });
      if (!info) throw blobError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${repo.name}`);
      return send(ctx, 200, manifestHeaders(info.mediaType, info.digest, info.size));
    }
    const manifest = await repo.manifests.get(reference, { signal });
    send(ctx, 200, manifestHeaders(manifest.mediaType, manifest.digest, manifest.size), manifest.bytes);
  }

  function manifestHeaders(mediaType: string, digest: string, size: number): Record<string, string | number> {
    return {
      'Content-Type': mediaType,
      'Content-Length': size,
      'Docker-Content-Digest': digest,
      ETag: `"${digest}"`,
    };
  }

  async function putManifest(ctx: Context, repo: Repository): Promise<void> {
    const reference = ctx.route.reference;
    checkReference(reference);
    const bytes = await readLimited(ctx.request, maxManifestBytes, 'manifest');
    const mediaType = manifestMediaType(ctx.request.headers['content-type'], bytes);
    let tag: string | undefined;
    if (isDigest(reference)) {
      const parsed = parseDigest(reference);
      const actual = `${parsed.algorithm}:${createHash(parsed.algorithm).update(bytes).digest('hex')}`;
      if (actual !== parsed.value) {
        throw blobError('DIGEST_INVALID', `manifest hashes to ${actual}, pushed as ${parsed.value}`);
      }
      if (parsed.algorithm !== 'sha256') {
        throw blobError('DIGEST_INVALID', 'manifests are addressed by sha256 digests on this registry');
      }
    } else {
      tag = reference;
    }
    const info = await repo.manifests.put(bytes, { mediaType, tag, signal: ctx.signal });
    const headers: Record<string, string> = {
      Location: `/v2/${repo.name}/manifests/${info.digest}`,
      'Docker-Content-Digest': info.digest,
    };
    const subject = parseManifest(bytes, mediaType).subject;
    if (subject) headers['OCI-Subject'] = subject.digest;
    send(ctx, 201, headers);
  }

  /** Content-Type without parameters; when absent, the body's own `mediaType`. */
  function manifestMediaType(header: string | undefined, bytes: Buffer): string {
    const declared = header?.split(';')[0]?.trim();
    if (declared) return declared;
    try {
      const body = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
      if (typeof body.mediaType === 'string') return body.mediaType;
    } catch {
      // reported below
    }
    throw blobError('MANIFEST_INVALID', 'manifest PUT needs a Content-Type (or a mediaType field)');
  }

  async function deleteManifest(ctx: Context, repo: Repository): Promise<void> {
    const reference = ctx.route.reference;
    checkReference(reference);
    const { signal } = ctx;
    const removed = isDigest(reference)
      ? await repo.manifests.delete(reference, { signal })
      : await repo.tags.delete(reference, { signal });
    if (!removed) throw blobError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${repo.name}`);
    send(ctx, 202, {});
  }

  // ---- lists -----------------------------------------------------------------------

  async function repositoryExists(name: string, signal: AbortSignal): Promise<boolean> {
    return (await store.driver.stat(catalogKey(name), { signal })) !== null;
  }

  async function tags(ctx: Context, repo: Repository): Promise<void> {
    const params = ctx.url.searchParams;
    const n = pageSize(params.get('n'));
    const lastParam = params.get('last');
    const last = lastParam === null || lastParam === '' ? undefined : validateTag(lastParam);
    const { signal } = ctx;
    if (!(await repositoryExists(repo.name, signal))) {
      throw httpError(404, 'NAME_UNKNOWN', `repository ${repo.name} is not known to this registry`);
    }
    if (n === 0) return sendJson(ctx, 200, { name: repo.name, tags: [] });
    const limit = n === undefined ? (last === undefined ? undefined : pageLimit) : Math.min(n, pageLimit);
    const found = await repo.tags.list({ last, n: limit === undefined ? undefined : limit + 1 }, { signal });
    const page = limit === undefined ? found : found.slice(0, limit);
    const headers: Record<string, string> = {};
    if (limit !== undefined && found.length > limit) {
      headers.Link = nextLink(`/v2/${repo.name}/tags/list`, limit, page[page.length - 1] as string);
    }
    sendJson(ctx, 200, { name: repo.name, tags: page }, headers);
  }

  async function catalog(ctx: Context): Promise<void> {
    await requireAccess(ctx, 'pull', null);
    const params = ctx.url.searchParams;
    const n = pageSize(params.get('n'));
    const lastParam = params.get('last');
    const last = lastParam === null || lastParam === '' ? undefined : validateRepositoryName(lastParam);
    if (n === 0) return sendJson(ctx, 200, { repositories: [] });
    const limit = Math.min(n ?? pageLimit, pageLimit);
    const signal = ctx.signal;
    // Only repositories the requester may pull are listed: page through until enough pass.
    const visible: string[] = [];
    let cursor = last;
    let exhausted = false;
    while (visible.length <= limit && !exhausted) {
      const batch = await store.repositories({ last: cursor, n: limit + 1 }, { signal });
      exhausted = batch.length <= limit;
      for (const name of batch) {
        if (await allowed(ctx, 'pull', name)) visible.push(name);
        if (visible.length > limit) break;
      }
      cursor = batch[batch.length - 1];
      if (cursor === undefined) break;
    }
    const page = visible.slice(0, limit);
    const headers: Record<string, string> = {};
    if (visible.length > limit)
      headers.Link = nextLink('/v2/_catalog', limit, page[page.length - 1] as string);
    sendJson(ctx, 200, { repositories: page }, headers);
  }

  async function referrers(ctx: Context, repo: Repository): Promise<void> {
    const digest = parseDigest(ctx.route.reference).value;
    const artifactType = ctx.url.searchParams.get('artifactType') ?? undefined;
    const manifests = await repo.referrers(digest, {
      ...(artifactType === undefined ? {} : { artifactType }),
      signal: ctx.signal,
    });
    const headers: Record<string, string> = { 'Content-Type': MediaTypes.ociIndex };
    if (artifactType !== undefined) headers['OCI-Filters-Applied'] = 'artifactType';
    send(ctx, 200, headers, JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
  }

  // ---- the handler -----------------------------------------------------------------

  return (request, response) => {
    const started = Date.now();
    const controller = new AbortController();
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://registry.invalid');
    } catch {
      url = new URL('http://registry.invalid/');
    }
    const route = matchRoute(url.pathname);
    let errorCode: string | undefined;
    response.on('close', () => {
      if (!response.writableFinished) controller.abort(blobError('ABORTED', 'client went away'));
      options.log?.({
        method: request.method ?? '',
        url: request.url ?? '',
        status: response.statusCode,
        ms: Date.now() - started,
        ...(errorCode === undefined ? {} : { error: errorCode }),
        completed: response.writableFinished,
      });
    });
    if (!route) {
      const ctx = {
        request,
        response,
        url,
        route: { kind: 'base', name: '', reference: '' },
        signal: controller.signal,
      } as Context;
      errorCode = 'UNSUPPORTED';
      sendError(ctx, httpError(404, 'UNSUPPORTED', `no such endpoint: ${url.pathname.slice(0, 200)}`));
      return;
    }
    const ctx: Context = { request, response, url, route, signal: controller.signal };
    handle(ctx).catch((error: unknown) => {
      const mapped = toHttpError(error, contextOf(route));
      errorCode = typeof mapped.detail.blobcore === 'string' ? mapped.detail.blobcore : mapped.code;
      if (response.headersSent || controller.signal.aborted || response.destroyed) {
        // Mid-body failure (or nobody listening): the only honest signal left is a cut connection.
        response.destroy();
        return;
      }
      sendError(ctx, mapped);
    });
  };
}

function isRepositoryName(name: string): boolean {
  try {
    validateRepositoryName(name);
    return true;
  } catch {
    return false;
  }
}
