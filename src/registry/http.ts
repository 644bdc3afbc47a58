/**
 * Small HTTP pieces of the registry endpoint: routes, ranges, bounded body reads, paging.
 */
import type { IncomingMessage } from 'node:http';
import { type HttpError, httpError } from './errors.js';

export type RouteKind = 'base' | 'catalog' | 'blob' | 'upload' | 'manifest' | 'tags' | 'referrers';

export interface Route {
  kind: RouteKind;
  /** Repository name (not yet validated). */
  name: string;
  /** Digest, upload id (may be '') or manifest reference, percent-decoded. */
  reference: string;
}

/*
 * Ordered: the name may itself contain `blobs`, `manifests`, … segments, so each pattern
 * takes the longest name that leaves a well-formed suffix, and uploads are tried before
 * plain blobs (`…/blobs/uploads/<id>` is never a blob digest).
 */
const ROUTES: [RouteKind, RegExp][] = [
  ['upload', /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/],
  ['upload', /^\/v2\/(.+)\/blobs\/uploads()$/], // POST without the trailing slash
  ['blob', /^\/v2\/(.+)\/blobs\/([^/]+)$/],
  ['manifest', /^\/v2\/(.+)\/manifests\/([^/]+)$/],
  ['tags', /^\/v2\/(.+)\/tags\/list()$/],
  ['referrers', /^\/v2\/(.+)\/referrers\/([^/]+)$/],
];

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a malformed escape stays as it is and fails validation later
  }
}

export function matchRoute(pathname: string): Route | null {
  if (pathname === '/v2/' || pathname === '/v2') return { kind: 'base', name: '', reference: '' };
  if (pathname === '/v2/_catalog') return { kind: 'catalog', name: '', reference: '' };
  for (const [kind, pattern] of ROUTES) {
    const match = pattern.exec(pathname);
    if (match) return { kind, name: decode(match[1] as string), reference: decode(match[2] as string) };
  }
  return null;
}

/** Content-Length as a number; undefined when absent. */
export function contentLength(request: IncomingMessage): number | undefined {
  const header = request.headers['content-length'];
  if (header === undefined) return undefined;
  const value = Number(header);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw httpError(400, 'SIZE_INVALID', `invalid Content-Length ${JSON.stringify(header)}`);
  }
  return value;
}

/** True when the request carries body bytes (a positive Content-Length, or chunked). */
export function hasBody(request: IncomingMessage): boolean {
  const length = contentLength(request);
  if (length !== undefined) return length > 0;
  return request.headers['transfer-encoding'] !== undefined;
}

/**
 * `Range` on a blob GET: `bytes=a-b`, `bytes=a-` or `bytes=-n` (suffix), one range.
 * null when absent or of another unit (served whole). Anything else (several ranges,
 * bad syntax, a start at or past the end, numbers beyond 2^53) is 416 with
 * `Content-Range: bytes *\/size`.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (header === undefined) return null;
  const trimmed = header.trim();
  if (!/^bytes=/i.test(trimmed)) return null;
  const unsatisfiable = (why: string): HttpError =>
    httpError(
      416,
      'SIZE_INVALID',
      `range ${JSON.stringify(header.slice(0, 100))} ${why} (blob has ${size} bytes)`,
      { blobcore: 'RANGE_INVALID', size },
      { 'Content-Range': `bytes */${size}` },
    );
  const match = /^bytes=(\d*)-(\d*)$/i.exec(trimmed);
  if (!match || (match[1] === '' && match[2] === '')) throw unsatisfiable('is not a single byte range');
  const first = match[1] === '' ? undefined : Number(match[1]);
  const last = match[2] === '' ? undefined : Number(match[2]);
  for (const value of [first, last]) {
    if (value !== undefined && !Number.isSafeInteger(value)) throw unsatisfiable('is out of bounds');
  }
  if (first === undefined) {
    // suffix: the last `last` bytes
    const length = last as number;
    if (length === 0 || size === 0) throw unsatisfiable('is empty');
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  if (last !== undefined && last < first) throw unsatisfiable('ends before it starts');
  if (first >= size) throw unsatisfiable('starts past the end');
  return { start: first, end: Math.min(last ?? size - 1, size - 1) };
}

/**
 * `Content-Range` on an upload PATCH/PUT: `<start>-<end>` (inclusive, the spec's form),
 * also accepted with a `bytes ` / `bytes=` prefix and a `/<total>` or `/*` suffix, which
 * some clients send. null when absent; 'invalid' when malformed.
 */
export function parseContentRange(
  header: string | undefined,
): { start: number; end: number } | null | 'invalid' {
  if (header === undefined) return null;
  const match = /^\s*(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?\s*$/i.exec(header);
  if (!match) return 'invalid';
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return 'invalid';
  return { start, end };
}

/** Reads a small body whole, refusing more than `limit` bytes (413) without reading further. */
export async function readLimited(request: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const tooLarge = () =>
    httpError(413, 'MANIFEST_INVALID', `${what} is larger than ${limit} bytes`, { limit });
  const declared = contentLength(request);
  if (declared !== undefined && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** `n` of a paged list: undefined when absent, a non-negative integer, else 400. */
export function pageSize(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!/^\d{1,9}$/.test(value)) {
    throw httpError(
      400,
      'UNSUPPORTED',
      `n must be a non-negative integer, got ${JSON.stringify(value.slice(0, 40))}`,
    );
  }
  return Number(value);
}

/** RFC 5988 `Link` to the next page. */
export function nextLink(path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}
