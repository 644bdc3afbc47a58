/**
 * S3 failures → blobcore error codes, by error `name` and HTTP status, never by message
 * text (radosgw sends no `<Message>`; the emulator's messages are its own).
 *
 *   NoSuchKey / NotFound / 404          NOT_FOUND (BLOB_UPLOAD_UNKNOWN on a multipart call)
 *   NoSuchUpload (any call)             BLOB_UPLOAD_UNKNOWN (radosgw answers NoSuchKey on ListParts)
 *   PreconditionFailed / 412            PRECONDITION_FAILED
 *   ConditionalRequestConflict / 409    PRECONDITION_FAILED (a concurrent conditional write won)
 *   InvalidRange / 416                  RANGE_INVALID
 *   EntityTooSmall                      BLOB_UPLOAD_INVALID, flagged as a bug (the guard checks part sizes first)
 *   InvalidPart / InvalidPartOrder      BLOB_UPLOAD_INVALID
 *   KeyTooLongError                     KEY_INVALID
 *   EntityTooLarge                      SIZE_INVALID
 *   QuotaExceeded / 507                 INSUFFICIENT_STORAGE
 *   403 (AccessDenied, bad signature)   UNAVAILABLE, not retryable, naming the bucket
 *   NoSuchBucket                        UNAVAILABLE, not retryable, naming the bucket
 *   500 / 503 SlowDown / timeouts /     UNAVAILABLE, retryable: the SDK has already retried
 *     connection resets
 *   abort (signal or AbortError)        ABORTED
 *
 * Secrets never reach an error: the message is built from the operation, bucket, key,
 * error name, status and request id only, and the SDK error is not kept as `cause`
 * (its `$response` carries raw headers); `cause` is a summary with the same fields.
 */
import { abortedError, BlobcoreError, blobError, type ErrorCode } from '../../src/errors.js';

export interface S3ErrorContext {
  /** What the driver was doing: `GetObject`, `UploadPart`, ... */
  operation: string;
  bucket: string;
  /** The S3 object key (prefix included), when there is one. */
  key?: string | undefined;
  /** The call works on a multipart upload: a missing upload is BLOB_UPLOAD_UNKNOWN. */
  multipart?: boolean;
  signal?: AbortSignal | undefined;
}

/** The fields of an SDK or network error that are safe to show. */
export interface S3ErrorSummary {
  name: string;
  status: number | undefined;
  code: string | undefined;
  requestId: string | undefined;
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

const TRANSIENT_NAMES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'ThrottlingException',
  'Throttling',
  'RequestTimeTooSkewed',
  'BadDigest',
  'IncompleteBody',
]);

function field(error: unknown, name: string): unknown {
  return typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[name] : undefined;
}

export function summarize(error: unknown): S3ErrorSummary {
  const metadata = field(error, '$metadata') as { httpStatusCode?: number; requestId?: string } | undefined;
  const name = typeof field(error, 'name') === 'string' ? (field(error, 'name') as string) : 'Error';
  const code = field(error, 'code') ?? field(error, 'Code');
  return {
    name,
    status: typeof metadata?.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined,
    code: typeof code === 'string' ? code : undefined,
    requestId: typeof metadata?.requestId === 'string' ? metadata.requestId : undefined,
  };
}

/** A stand-in for the SDK error as `cause`: its safe fields, no headers, no request. */
class S3ErrorCause extends Error {
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  constructor(summary: S3ErrorSummary) {
    super(
      [
        summary.name,
        summary.status && `HTTP ${summary.status}`,
        summary.code,
        summary.requestId && `request ${summary.requestId}`,
      ]
        .filter(Boolean)
        .join(', '),
    );
    this.name = summary.name;
    this.status = summary.status;
    this.code = summary.code;
    this.requestId = summary.requestId;
  }
}

function codeFor(
  s: S3ErrorSummary,
  context: S3ErrorContext,
): { code: ErrorCode; retryable: boolean; why?: string } {
  const { name, status } = s;
  if (name === 'NoSuchUpload') return { code: 'BLOB_UPLOAD_UNKNOWN', retryable: false };
  if (name === 'NoSuchBucket')
    return { code: 'UNAVAILABLE', retryable: false, why: 'the bucket does not exist' };
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return { code: context.multipart ? 'BLOB_UPLOAD_UNKNOWN' : 'NOT_FOUND', retryable: false };
  }
  if (name === 'PreconditionFailed' || status === 412)
    return { code: 'PRECONDITION_FAILED', retryable: false };
  if (name === 'ConditionalRequestConflict' || (status === 409 && name !== 'BucketNotEmpty')) {
    return { code: 'PRECONDITION_FAILED', retryable: false };
  }
  if (name === 'InvalidRange' || status === 416) return { code: 'RANGE_INVALID', retryable: false };
  if (name === 'EntityTooSmall') {
    return {
      code: 'BLOB_UPLOAD_INVALID',
      retryable: false,
      why: 'BUG: the server refused a non-final part below its minimum size, which the driver guard should have caught',
    };
  }
  if (name === 'InvalidPart' || name === 'InvalidPartOrder')
    return { code: 'BLOB_UPLOAD_INVALID', retryable: false };
  if (name === 'KeyTooLongError') return { code: 'KEY_INVALID', retryable: false };
  if (name === 'EntityTooLarge') return { code: 'SIZE_INVALID', retryable: false };
  if (name === 'QuotaExceeded' || status === 507) return { code: 'INSUFFICIENT_STORAGE', retryable: false };
  if (
    status === 403 ||
    name === 'AccessDenied' ||
    name === 'SignatureDoesNotMatch' ||
    name === 'InvalidAccessKeyId'
  ) {
    return {
      code: 'UNAVAILABLE',
      retryable: false,
      why: 'access denied: check the credentials (default provider chain) and the bucket policy',
    };
  }
  if (status !== undefined && status >= 500) return { code: 'UNAVAILABLE', retryable: true };
  if (TRANSIENT_NAMES.has(name) || (s.code !== undefined && NETWORK_CODES.has(s.code))) {
    return { code: 'UNAVAILABLE', retryable: true };
  }
  if (status === undefined) {
    // No HTTP answer at all: a network failure of some kind.
    return { code: 'UNAVAILABLE', retryable: true };
  }
  return { code: 'UNAVAILABLE', retryable: false, why: 'unexpected answer from the server' };
}

/** Maps anything an S3 call threw to a BlobcoreError (BlobcoreErrors pass through). */
export function s3Error(error: unknown, context: S3ErrorContext): BlobcoreError {
  if (error instanceof BlobcoreError) return error;
  const summary = summarize(error);
  if (context.signal?.aborted || summary.name === 'AbortError') return abortedError(context.signal);
  const { code, retryable, why } = codeFor(summary, context);
  const key =
    context.key !== undefined && context.key.length > 120 ? `${context.key.slice(0, 120)}…` : context.key;
  const where = key === undefined ? `s3://${context.bucket}` : `s3://${context.bucket}/${key}`;
  const what = [summary.name, summary.status && `HTTP ${summary.status}`, summary.code]
    .filter(Boolean)
    .join(' ');
  const message = `${context.operation} ${where}: ${what}${why ? ` — ${why}` : ''}`;
  return blobError(code, message, { driver: 's3', retryable, cause: new S3ErrorCause(summary) });
}
