/**
 * Azure failures → blobcore error codes.
 *
 *   404 BlobNotFound                       NOT_FOUND (stat → null, delete → false)
 *   404 ContainerNotFound                  UNAVAILABLE, not retryable, naming container and account
 *   409 / 412 (BlobAlreadyExists,          PRECONDITION_FAILED
 *        ConditionNotMet, …)
 *   416 InvalidRange                       RANGE_INVALID
 *   400 InvalidBlockList                   BLOB_UPLOAD_INVALID (a staged part is missing)
 *   413 RequestBodyTooLarge                SIZE_INVALID
 *   401 / 403                              UNAVAILABLE, not retryable: an auth error naming account
 *                                          and container (detail.auth = true), never a secret
 *   408, 500, 502, 503, 504, timeouts,     UNAVAILABLE, retryable — after the SDK's own retries
 *   connection resets / refusals             (see retry settings in ./index.ts)
 *   other 4xx                              UNAVAILABLE, not retryable, with status and Azure code
 *   an AbortError                          ABORTED
 *   anything the caller's body threw        passed on unchanged (even with a network-like code)
 *
 * The SDK's RestError is never attached as the cause: it carries the request (URL with
 * any SAS, headers) and the response body (which can echo a signature). The cause is a
 * plain `AzureRequestError` with status, Azure error code and request id, and its
 * message goes through `Secrets.redact` like every message here.
 */
import { BlobcoreError, blobError, type ErrorCode } from '../../src/errors.js';
import { isSourceError } from './blocks.js';
import type { Secrets } from './config.js';

export interface ErrorContext {
  /** What was being done, e.g. `write`, `stat`, `completeMultipart`. */
  op: string;
  key?: string | undefined;
  account: string;
  container: string;
  secrets: Secrets;
}

/** Network-level failures the SDK reports without an HTTP status. */
const TRANSIENT_CODES = new Set([
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'REQUEST_SEND_ERROR',
  'TIMEOUT',
]);
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** A sanitized record of one failed Azure request; safe to log. */
export class AzureRequestError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly azureCode: string | undefined,
    readonly requestId: string | undefined,
  ) {
    super(message);
    this.name = 'AzureRequestError';
  }
}

export interface AzureFailure {
  status: number | undefined;
  code: string | undefined;
  requestId: string | undefined;
  message: string;
}

/** Reads status, Azure error code and request id off an SDK error (RestError or network error). */
export function describeFailure(error: unknown): AzureFailure | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as {
    name?: unknown;
    statusCode?: unknown;
    code?: unknown;
    message?: unknown;
    details?: { errorCode?: unknown; 'x-ms-request-id'?: unknown; requestId?: unknown };
  };
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const code =
    typeof e.code === 'string'
      ? e.code
      : typeof e.details?.errorCode === 'string'
        ? e.details.errorCode
        : undefined;
  if (status === undefined && e.name !== 'RestError' && !(code && TRANSIENT_CODES.has(code)))
    return undefined;
  const requestId = e.details?.['x-ms-request-id'] ?? e.details?.requestId;
  const firstLine = typeof e.message === 'string' ? (e.message.split('\n')[0] ?? '') : '';
  return {
    status,
    code,
    requestId: typeof requestId === 'string' ? requestId : undefined,
    message: firstLine.slice(0, 300),
  };
}

export function isAbortError(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error.name === 'AbortError' || (error as { code?: unknown }).code === 'ABORT_ERR')
  );
}

export function statusOf(error: unknown): number | undefined {
  return describeFailure(error)?.status;
}

export function azureCodeOf(error: unknown): string | undefined {
  return describeFailure(error)?.code;
}

function where(ctx: ErrorContext): string {
  return `${ctx.op}${ctx.key === undefined ? '' : ` ${JSON.stringify(ctx.key)}`}`;
}

/** Maps anything the SDK threw to a BlobcoreError; other errors pass through (redacted if needed). */
export function mapAzureError(error: unknown, ctx: ErrorContext): unknown {
  if (error instanceof BlobcoreError) return error;
  if (isAbortError(error)) return blobError('ABORTED', `${where(ctx)}: aborted`, { driver: 'azure' });
  const failure = isSourceError(error) ? undefined : describeFailure(error);
  if (!failure) {
    // Not from Azure (e.g. the caller's body stream failed): keep it, unless it leaks a secret.
    if (error instanceof Error && ctx.secrets.redact(error.message) !== error.message) {
      return blobError('UNAVAILABLE', ctx.secrets.redact(`${where(ctx)}: ${error.message}`), {
        driver: 'azure',
        retryable: false,
      });
    }
    return error;
  }
  const { status, code, requestId } = failure;
  const summary = ctx.secrets.redact(
    `HTTP ${status ?? '-'} ${code ?? ''}${failure.message ? `: ${failure.message}` : ''}`.trim(),
  );
  const cause = new AzureRequestError(summary, status, code, requestId);
  const detail: Record<string, unknown> = { status, azureCode: code, requestId };
  const make = (
    errorCode: ErrorCode,
    message: string,
    retryable?: boolean,
    extra: Record<string, unknown> = {},
  ) =>
    blobError(errorCode, ctx.secrets.redact(message), {
      driver: 'azure',
      cause,
      detail: { ...detail, ...extra },
      ...(retryable === undefined ? {} : { retryable }),
    });

  if (status === 401 || status === 403) {
    return make(
      'UNAVAILABLE',
      `${where(ctx)}: Azure refused the request (${status} ${code ?? 'AuthenticationFailed'}) for account ` +
        `"${ctx.account}", container "${ctx.container}": check the credentials (key, SAS or token), ` +
        'their expiry and their permissions on this container',
      false,
      { auth: true, account: ctx.account, container: ctx.container },
    );
  }
  if (status === 404 && code === 'ContainerNotFound') {
    return make(
      'UNAVAILABLE',
      `${where(ctx)}: container "${ctx.container}" does not exist in account "${ctx.account}" ` +
        '(create it, or pass createContainer)',
      false,
      { account: ctx.account, container: ctx.container },
    );
  }
  if (status === 404) return make('NOT_FOUND', `${where(ctx)}: no such key (${code ?? 'NotFound'})`);
  if (status === 409 || status === 412) {
    return make('PRECONDITION_FAILED', `${where(ctx)}: precondition failed (${status} ${code ?? ''})`.trim());
  }
  if (status === 416) return make('RANGE_INVALID', `${where(ctx)}: range not satisfiable`);
  if (status === 400 && code === 'InvalidBlockList') {
    return make('BLOB_UPLOAD_INVALID', `${where(ctx)}: a staged block is missing (InvalidBlockList)`);
  }
  if (status === 413)
    return make('SIZE_INVALID', `${where(ctx)}: Azure says the body is too large (${code})`);
  if (status === undefined || TRANSIENT_STATUS.has(status)) {
    return make(
      'UNAVAILABLE',
      `${where(ctx)}: Azure is unavailable (${summary}) after the SDK's retries`,
      true,
    );
  }
  return make('UNAVAILABLE', `${where(ctx)}: Azure rejected the request (${summary})`, false);
}
