/**
 * Azure driver configuration: options, store-URL parsing and credential resolution.
 *
 * Credentials, first match wins:
 *   1. in code: `credential` (a TokenCredential: managed / workload identity, any
 *      object with `getToken`), `connectionString`, `accountKey` (+ account name), or
 *      `sasToken`;
 *   2. environment: AZURE_STORAGE_CONNECTION_STRING; AZURE_STORAGE_ACCOUNT with
 *      AZURE_STORAGE_KEY (or AZURE_STORAGE_ACCESS_KEY); AZURE_STORAGE_ACCOUNT with
 *      AZURE_STORAGE_SAS_TOKEN (the variables the az CLI reads).
 * The store URL never carries a secret: `azure://container/prefix?endpoint=…&account=…`
 * rejects `sig`, `key` and the like, because URLs end up in logs and process lists.
 *
 * Secrets are kept out of every message: `Secrets.redact` scrubs the account key, the
 * SAS token (and any `sig=` value), connection-string fields and auth headers from text
 * before it goes into an error.
 */
import { blobError } from '../../src/errors.js';
import { validateKey } from '../../src/keys.js';

/** Minimal shape of an `@azure/core-auth` TokenCredential (no dependency on @azure/identity). */
export interface TokenCredentialLike {
  getToken(
    scopes: string | string[],
    options?: object,
  ): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

export interface AzureRetryOptions {
  /** Attempts per request, the first included. Default 6. */
  maxTries?: number;
  /** Base of the exponential back-off: waits 0, 1×, 3×, 7×, 15× this. Default 500 ms. */
  retryDelayMs?: number;
  /** Upper bound of one wait. Default 15 s. */
  maxRetryDelayMs?: number;
  /**
   * Client-side limit for one attempt, until the response headers arrive (so it covers
   * sending a block). A timed-out attempt is retried. Default 120 s.
   */
  requestTimeoutMs?: number;
  /** Times a broken download body is resumed from where it stopped (If-Match the etag). Default 5. */
  readRetries?: number;
}

export interface AzureDriverOptions {
  /** Container name (3–63 lowercase letters, digits and single hyphens). Must exist unless `createContainer`. */
  container: string;
  /** Key prefix inside the container (`a/b` stores key `k` as blob `a/b/k`). */
  prefix?: string | undefined;
  /**
   * Blob service endpoint: `https://<account>.blob.core.windows.net`, a private or
   * sovereign endpoint, or Azurite's path-style `http://127.0.0.1:10000/devstoreaccount1`.
   * Default: from the connection string, else `https://<account>.blob.core.windows.net`.
   */
  endpoint?: string | undefined;
  accountName?: string | undefined;
  accountKey?: string | undefined;
  /** A SAS token (with or without the leading `?`). Signed URLs are unavailable with a SAS alone. */
  sasToken?: string | undefined;
  connectionString?: string | undefined;
  /** A TokenCredential (e.g. from @azure/identity). Signed URLs use user-delegation SAS. */
  credential?: TokenCredentialLike | undefined;
  /** Where the environment credentials are read from. Default `process.env`. */
  env?: Record<string, string | undefined> | undefined;
  /** Bytes per staged block, and so the buffer per in-flight block. Default 8 MiB. */
  blockSize?: number | undefined;
  /**
   * Bytes per block inside a multipart part; a part spans at most 5 blocks, so
   * maxPartSize = 5 × this. Default 2 MiB (an 8 MiB part stages 4 blocks at once).
   */
  partBlockSize?: number | undefined;
  /** Blocks staged in parallel by one write or part. Memory per write ≤ blockSize × concurrency. Default 4. */
  concurrency?: number | undefined;
  /** Every multipart part but the last must be at least this large. Default 4 MiB (see index.ts). */
  minPartSize?: number | undefined;
  retry?: AzureRetryOptions | undefined;
  /** Create the container on first use if it is missing. Default false. */
  createContainer?: boolean | undefined;
  /**
   * Send `startFrom` (service version 2026-02-06) when listing from a `startAfter` this
   * instance has no continuation token for. Results are filtered either way, so a server
   * that ignores it stays correct, only slower. Default false.
   */
  listStartFrom?: boolean | undefined;
  /** Extra CA certificates (PEM) to trust for HTTPS, e.g. a private endpoint or a test server. */
  ca?: string | Buffer | undefined;
}

export type AuthKind = 'shared-key' | 'sas' | 'token';

/** Resolved connection settings. Secret fields are only read by the driver's constructor. */
export interface ResolvedAuth {
  kind: AuthKind;
  /** Service endpoint without query or trailing slash. */
  endpoint: string;
  accountName: string;
  accountKey?: string;
  sasToken?: string;
  credential?: TokenCredentialLike;
  /** Where the settings came from, for messages (never a value). */
  source: string;
}

/** Azurite's well-known development account (public; `UseDevelopmentStorage=true`). */
const DEV_ACCOUNT = 'devstoreaccount1';
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const DEV_ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

const CONTAINER_NAME = /^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

function configError(message: string): Error {
  return blobError('UNSUPPORTED', `azure driver: ${message}`, { driver: 'azure' });
}

/** Collects secret strings and scrubs them (and anything shaped like one) from text. */
export class Secrets {
  readonly #values: string[] = [];

  add(value: string | undefined): void {
    if (!value || value.length < 4) return;
    for (const form of [value, encodeURIComponent(value)]) {
      if (!this.#values.includes(form)) this.#values.push(form);
    }
  }

  /** Adds a SAS token and its signature, raw and URL-encoded. */
  addSas(token: string | undefined): void {
    if (!token) return;
    this.add(token);
    const sig = new URLSearchParams(token).get('sig');
    if (sig) this.add(sig);
  }

  redact(text: string): string {
    let out = text;
    for (const secret of this.#values) out = out.split(secret).join('[redacted]');
    return out
      .replace(/([?&;]sig=)[^&\s"'<>]+/gi, '$1[redacted]')
      .replace(/(AccountKey=)[^;\s"']+/gi, '$1[redacted]')
      .replace(/(SharedAccessSignature=)[^;\s"']+/gi, '$1[redacted]')
      .replace(/(SharedKey(?:Lite)? [^:\s]+:)[A-Za-z0-9+/=]+/g, '$1[redacted]')
      .replace(/(Bearer )[A-Za-z0-9._~+/=-]+/g, '$1[redacted]')
      .replace(/(MAC signature found in the HTTP request ')[^']*/g, '$1[redacted]');
  }

  // Never show the collected values.
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Secrets(${this.#values.length})`;
  }

  toJSON(): string {
    return 'Secrets';
  }
}

/** Parses `Key=Value;Key=Value` (values may contain `=`). Keys are case-insensitive. */
export function parseConnectionString(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of text.split(';')) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) throw configError('the connection string is malformed (expected Key=Value pairs)');
    fields.set(trimmed.slice(0, eq).trim().toLowerCase(), trimmed.slice(eq + 1).trim());
  }
  return fields;
}

function trimEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw configError('endpoint is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError('endpoint must be http(s)');
  if (url.username || url.password || url.search) {
    throw configError('endpoint must not carry credentials or a query; see the credential options');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Account name from `https://<account>.blob.<suffix>` or a path-style `http://host:port/<account>`. */
export function accountFromEndpoint(endpoint: string): string | undefined {
  const url = new URL(endpoint);
  const pathAccount = url.pathname.split('/').filter(Boolean)[0];
  if (pathAccount) return pathAccount;
  const label = url.hostname.split('.')[0];
  if (url.hostname.split('.').length > 2 && label && !/^\d+$/.test(label)) return label;
  return undefined;
}

function fromConnectionString(
  text: string,
  secrets: Secrets,
  source: string,
  endpoint?: string,
): ResolvedAuth {
  const fields = parseConnectionString(text);
  if (fields.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    const resolvedEndpoint = trimEndpoint(
      endpoint ?? fields.get('developmentstorageproxyuri') ?? DEV_ENDPOINT,
    );
    secrets.add(DEV_KEY);
    return {
      kind: 'shared-key',
      endpoint: resolvedEndpoint,
      accountName: DEV_ACCOUNT,
      accountKey: DEV_KEY,
      source,
    };
  }
  const accountKey = fields.get('accountkey');
  const sas = fields.get('sharedaccesssignature');
  secrets.add(accountKey);
  secrets.addSas(sas);
  let accountName = fields.get('accountname');
  let resolvedEndpoint = endpoint ?? fields.get('blobendpoint');
  if (!resolvedEndpoint) {
    if (!accountName) throw configError(`${source}: neither BlobEndpoint nor AccountName is set`);
    const protocol = fields.get('defaultendpointsprotocol') ?? 'https';
    const suffix = fields.get('endpointsuffix') ?? 'core.windows.net';
    resolvedEndpoint = `${protocol}://${accountName}.blob.${suffix}`;
  }
  resolvedEndpoint = trimEndpoint(resolvedEndpoint);
  accountName ??= accountFromEndpoint(resolvedEndpoint);
  if (!accountName) throw configError(`${source}: cannot tell the account name (set AccountName)`);
  if (accountKey) return { kind: 'shared-key', endpoint: resolvedEndpoint, accountName, accountKey, source };
  if (sas)
    return { kind: 'sas', endpoint: resolvedEndpoint, accountName, sasToken: sas.replace(/^\?/, ''), source };
  throw configError(`${source}: has neither AccountKey nor SharedAccessSignature`);
}

/** Works out endpoint, account and credential from options, then the environment. */
export function resolveAuth(options: AzureDriverOptions, secrets: Secrets): ResolvedAuth {
  const env = options.env ?? process.env;
  const explicitEndpoint = options.endpoint === undefined ? undefined : trimEndpoint(options.endpoint);
  const endpointFor = (
    account: string | undefined,
    source: string,
  ): { endpoint: string; accountName: string } => {
    const endpoint = explicitEndpoint ?? (account ? `https://${account}.blob.core.windows.net` : undefined);
    if (!endpoint) throw configError(`${source}: set an account name or an endpoint`);
    const accountName = account ?? accountFromEndpoint(endpoint);
    if (!accountName)
      throw configError(`${source}: cannot tell the account name from the endpoint; set accountName`);
    return { endpoint, accountName };
  };

  if (options.credential !== undefined) {
    if (typeof (options.credential as { getToken?: unknown }).getToken !== 'function') {
      throw configError('credential must be a TokenCredential (an object with getToken)');
    }
    const where = endpointFor(options.accountName ?? env.AZURE_STORAGE_ACCOUNT, 'credential');
    return { kind: 'token', ...where, credential: options.credential, source: 'TokenCredential' };
  }
  if (options.connectionString !== undefined) {
    return fromConnectionString(
      options.connectionString,
      secrets,
      'connectionString option',
      explicitEndpoint,
    );
  }
  if (options.accountKey !== undefined) {
    secrets.add(options.accountKey);
    const where = endpointFor(options.accountName, 'accountKey option');
    return { kind: 'shared-key', ...where, accountKey: options.accountKey, source: 'accountKey option' };
  }
  if (options.sasToken !== undefined) {
    const sasToken = options.sasToken.replace(/^\?/, '');
    secrets.addSas(sasToken);
    const where = endpointFor(options.accountName, 'sasToken option');
    return { kind: 'sas', ...where, sasToken, source: 'sasToken option' };
  }
  if (env.AZURE_STORAGE_CONNECTION_STRING) {
    return fromConnectionString(
      env.AZURE_STORAGE_CONNECTION_STRING,
      secrets,
      'AZURE_STORAGE_CONNECTION_STRING',
      explicitEndpoint,
    );
  }
  const envAccount = options.accountName ?? env.AZURE_STORAGE_ACCOUNT;
  const envKey = env.AZURE_STORAGE_KEY ?? env.AZURE_STORAGE_ACCESS_KEY;
  if (envKey) {
    secrets.add(envKey);
    const where = endpointFor(envAccount, 'AZURE_STORAGE_KEY');
    return {
      kind: 'shared-key',
      ...where,
      accountKey: envKey,
      source: 'AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY',
    };
  }
  if (env.AZURE_STORAGE_SAS_TOKEN) {
    const sasToken = env.AZURE_STORAGE_SAS_TOKEN.replace(/^\?/, '');
    secrets.addSas(sasToken);
    const where = endpointFor(envAccount, 'AZURE_STORAGE_SAS_TOKEN');
    return { kind: 'sas', ...where, sasToken, source: 'AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_SAS_TOKEN' };
  }
  throw configError(
    'no credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY ' +
      'or AZURE_STORAGE_SAS_TOKEN, or pass credential / connectionString / accountKey / sasToken in code',
  );
}

export function checkContainer(container: string): string {
  if (typeof container !== 'string' || !CONTAINER_NAME.test(container)) {
    throw configError(
      `invalid container name ${JSON.stringify(String(container).slice(0, 70))} ` +
        '(3–63 lowercase letters, digits and single hyphens)',
    );
  }
  return container;
}

/** `a/b` or `a/b/` → `a/b/`; empty → empty. Each segment must be a valid key segment. */
export function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (!trimmed) return '';
  try {
    validateKey(trimmed);
  } catch {
    throw configError(`invalid key prefix ${JSON.stringify(trimmed.slice(0, 70))}`);
  }
  return `${trimmed}/`;
}

const SECRET_PARAMS = new Set([
  'sig',
  'sas',
  'sastoken',
  'key',
  'accountkey',
  'connectionstring',
  'token',
  'password',
  'secret',
]);
const SIZE = /^(\d+)\s*(b|kib|mib|gib|k|m|g)?$/i;

function parseSize(name: string, value: string): number {
  const match = SIZE.exec(value.trim());
  if (!match)
    throw configError(`${name} must be a size like 8MiB, got ${JSON.stringify(value.slice(0, 20))}`);
  const unit = (match[2] ?? 'b').toLowerCase();
  const scale = unit.startsWith('g')
    ? 1024 ** 3
    : unit.startsWith('m')
      ? 1024 ** 2
      : unit.startsWith('k')
        ? 1024
        : 1;
  return Number(match[1]) * scale;
}

function parseCount(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw configError(`${name} must be a whole number`);
  return Number(value);
}

function parseBool(name: string, value: string): boolean {
  if (value === 'true' || value === '1' || value === '') return true;
  if (value === 'false' || value === '0') return false;
  throw configError(`${name} must be true or false`);
}

/**
 * `azure://container/prefix?endpoint=…&account=…&blockSize=8MiB&partBlockSize=2MiB&concurrency=4&createContainer=true`
 * → options. Credentials come from `extra` or the environment, never from the URL.
 */
export function optionsFromUrl(url: URL, extra: Partial<AzureDriverOptions> = {}): AzureDriverOptions {
  if (url.protocol !== 'azure:') throw configError(`expected an azure: URL, got ${url.protocol}`);
  if (url.username || url.password) {
    throw configError(
      'credentials are not accepted in the store URL; use the environment (see drivers/azure/README.md)',
    );
  }
  const options: AzureDriverOptions = { ...extra, container: checkContainer(url.hostname) };
  const path = decodeURIComponent(url.pathname);
  if (path && path !== '/') options.prefix = normalizePrefix(path);
  for (const [name, value] of url.searchParams) {
    const lower = name.toLowerCase();
    if (SECRET_PARAMS.has(lower) || /^s[vpetr]$/.test(lower) || lower === 'srt' || lower === 'ss') {
      throw configError(
        `credentials are not accepted in the store URL (found "${name}"); set AZURE_STORAGE_CONNECTION_STRING, ` +
          'AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN instead',
      );
    }
    switch (lower) {
      case 'endpoint':
        options.endpoint = value;
        break;
      case 'account':
      case 'accountname':
        options.accountName = value;
        break;
      case 'blocksize':
        options.blockSize = parseSize(name, value);
        break;
      case 'partblocksize':
        options.partBlockSize = parseSize(name, value);
        break;
      case 'minpartsize':
        options.minPartSize = parseSize(name, value);
        break;
      case 'concurrency':
        options.concurrency = parseCount(name, value);
        break;
      case 'createcontainer':
        options.createContainer = parseBool(name, value);
        break;
      case 'liststartfrom':
        options.listStartFrom = parseBool(name, value);
        break;
      default:
        throw configError(
          `unknown query parameter "${name.slice(0, 40)}" (known: endpoint, account, blockSize, partBlockSize, ` +
            'minPartSize, concurrency, createContainer, listStartFrom)',
        );
    }
  }
  return options;
}
