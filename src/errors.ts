/**
 * One error family for everything blobcore throws.
 *
 * Callers branch on `code`, never on message text. Codes follow the OCI distribution
 * spec where one fits, so a registry can map them straight to HTTP; the storage codes
 * below them describe what a backend did.
 *
 * `instanceof BlobcoreError` works across two copies of this package (a registry and a
 * driver may each bundle one): the class is branded with a `Symbol.for` key and
 * `Symbol.hasInstance` checks the brand, as undici does.
 */

export const ErrorCodes = [
  // OCI distribution codes
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'DIGEST_INVALID',
  'SIZE_INVALID',
  'NAME_INVALID',
  'TAG_INVALID',
  'MANIFEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_UNKNOWN',
  'RANGE_INVALID',
  'UNSUPPORTED',
  // storage codes
  'NOT_FOUND',
  'KEY_INVALID',
  'PRECONDITION_FAILED',
  'INSUFFICIENT_STORAGE',
  'UNAVAILABLE',
  'ABORTED',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

/** Codes a caller may retry without changing its request. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(['UNAVAILABLE']);

const BRAND = Symbol.for('blobcore.error');

export interface BlobcoreErrorOptions {
  /** Name of the driver that raised or passed on the error (`memory`, `fs`, `s3`, ...). */
  driver?: string | undefined;
  retryable?: boolean;
  cause?: unknown;
  /** Structured details, e.g. `{ offset }` on RANGE_INVALID for uploads. */
  detail?: Record<string, unknown>;
}

export class BlobcoreError extends Error {
  readonly code: ErrorCode;
  driver: string | undefined;
  readonly retryable: boolean;
  readonly detail: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: BlobcoreErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BlobcoreError';
    this.code = code;
    this.driver = options.driver;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.detail = options.detail ?? {};
  }

  get [BRAND](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Shorthand used throughout: `throw blobError('NOT_FOUND', 'no such key: a/b')`. */
export function blobError(code: ErrorCode, message: string, options?: BlobcoreErrorOptions): BlobcoreError {
  return new BlobcoreError(code, message, options);
}

export function isBlobcoreError(value: unknown, code?: ErrorCode): value is BlobcoreError {
  return value instanceof BlobcoreError && (code === undefined || value.code === code);
}

/** The error to throw when an AbortSignal fires; keeps the signal's reason as the cause. */
export function abortedError(signal?: AbortSignal): BlobcoreError {
  return new BlobcoreError('ABORTED', 'operation aborted', { cause: signal?.reason });
}

/**
 * `work`'s outcome, or ABORTED as soon as the signal fires while it is pending (`work`
 * then settles unobserved).
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(abortedError(signal));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Like `signal.throwIfAborted()`, but throws the typed ABORTED error. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(signal);
}
