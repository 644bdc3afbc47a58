/**
 * blobcore errors → OCI distribution error responses.
 *
 * A 4xx JSON body must use one of the spec's codes (distribution-spec "Error Codes"), so
 * each blobcore code maps to one of them and its status; the blobcore code itself always
 * travels in `detail.blobcore` (with the error's own `detail`, e.g. an upload's offset),
 * so nothing is collapsed. 5xx bodies are not constrained by the spec: they carry the
 * blobcore code (UNAVAILABLE, INSUFFICIENT_STORAGE, ...) directly.
 *
 *   blobcore code          status  OCI code
 *   BLOB_UNKNOWN           404     BLOB_UNKNOWN
 *   BLOB_UPLOAD_UNKNOWN    404     BLOB_UPLOAD_UNKNOWN
 *   BLOB_UPLOAD_INVALID    400     BLOB_UPLOAD_INVALID
 *   DIGEST_INVALID         400     DIGEST_INVALID
 *   SIZE_INVALID           400     SIZE_INVALID
 *   NAME_INVALID           400     NAME_INVALID
 *   TAG_INVALID            400     MANIFEST_INVALID  (a reference that cannot name a manifest)
 *   MANIFEST_INVALID       400     MANIFEST_INVALID
 *   MANIFEST_BLOB_UNKNOWN  400     MANIFEST_BLOB_UNKNOWN
 *   MANIFEST_UNKNOWN       404     MANIFEST_UNKNOWN
 *   RANGE_INVALID          416     BLOB_UPLOAD_INVALID on upload routes, SIZE_INVALID on blob reads,
 *                                  (400 UNSUPPORTED for a bad page size `n`)
 *   UNSUPPORTED            405     UNSUPPORTED
 *   PRECONDITION_FAILED    503     PRECONDITION_FAILED  (a concurrent writer won: retry)
 *   UNAVAILABLE            503     UNAVAILABLE          (transient backend failure: retry)
 *   INSUFFICIENT_STORAGE   507     INSUFFICIENT_STORAGE
 *   NOT_FOUND, KEY_INVALID 500     the same code (the store should have said more: a bug or lost data)
 *   ABORTED                503     ABORTED (the request was cancelled; usually nobody is listening)
 *   anything else          500     UNKNOWN
 */
import { type ErrorCode, isBlobcoreError } from '../errors.js';

/** Codes a 4xx body may carry (distribution-spec v1.1). */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS';

/** Which family of endpoint raised the error; decides codes the spec leaves open. */
export type ErrorContext = 'blob' | 'upload' | 'manifest' | 'list' | 'other';

/** An error response the handler sends as is. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function httpError(
  status: number,
  code: OciErrorCode,
  message: string,
  detail: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): HttpError {
  return new HttpError(status, code, message, detail, headers);
}

const DIRECT: Partial<Record<ErrorCode, [number, string]>> = {
  BLOB_UNKNOWN: [404, 'BLOB_UNKNOWN'],
  BLOB_UPLOAD_UNKNOWN: [404, 'BLOB_UPLOAD_UNKNOWN'],
  BLOB_UPLOAD_INVALID: [400, 'BLOB_UPLOAD_INVALID'],
  DIGEST_INVALID: [400, 'DIGEST_INVALID'],
  SIZE_INVALID: [400, 'SIZE_INVALID'],
  NAME_INVALID: [400, 'NAME_INVALID'],
  TAG_INVALID: [400, 'MANIFEST_INVALID'],
  MANIFEST_INVALID: [400, 'MANIFEST_INVALID'],
  MANIFEST_BLOB_UNKNOWN: [400, 'MANIFEST_BLOB_UNKNOWN'],
  MANIFEST_UNKNOWN: [404, 'MANIFEST_UNKNOWN'],
  UNSUPPORTED: [405, 'UNSUPPORTED'],
  PRECONDITION_FAILED: [503, 'PRECONDITION_FAILED'],
  UNAVAILABLE: [503, 'UNAVAILABLE'],
  INSUFFICIENT_STORAGE: [507, 'INSUFFICIENT_STORAGE'],
  NOT_FOUND: [500, 'NOT_FOUND'],
  KEY_INVALID: [500, 'KEY_INVALID'],
  ABORTED: [503, 'ABORTED'],
};

/** The response for any thrown value. */
export function toHttpError(error: unknown, context: ErrorContext): HttpError {
  if (error instanceof HttpError) return error;
  if (!isBlobcoreError(error)) {
    const message = error instanceof Error ? error.message : String(error);
    return new HttpError(500, 'UNKNOWN', message || 'internal error');
  }
  const detail: Record<string, unknown> = { blobcore: error.code, ...error.detail };
  if (error.code === 'RANGE_INVALID') {
    if (context === 'list') return new HttpError(400, 'UNSUPPORTED', error.message, detail);
    const code = context === 'upload' ? 'BLOB_UPLOAD_INVALID' : 'SIZE_INVALID';
    return new HttpError(416, code, error.message, detail);
  }
  const [status, code] = DIRECT[error.code] ?? [500, 'UNKNOWN'];
  const headers: Record<string, string> = status === 503 ? { 'Retry-After': '1' } : {};
  return new HttpError(status, code, error.message, detail, headers);
}

/** The spec's error body. */
export function errorBody(error: HttpError): string {
  const entry: Record<string, unknown> = { code: error.code, message: error.message };
  if (Object.keys(error.detail).length > 0) entry.detail = error.detail;
  return JSON.stringify({ errors: [entry] });
}
