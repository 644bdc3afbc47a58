/**
 * Azure driver specifics beyond the conformance suite, on real Azurite servers: store
 * URLs and every credential source (connection string, account key, SAS, a
 * TokenCredential object on an HTTPS + OAuth Azurite), secrets kept out of errors and
 * `util.inspect`, error mapping (status codes, retries, timeouts), idempotent block
 * re-staging, listing 1,005+ keys with and without remembered continuation tokens,
 * signed URLs fetched with undici (refused after tampering, expiry, or for writing),
 * and bounded memory for a streamed write of unknown length.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inspect, promisify } from 'node:util';
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  RestError,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { Agent, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { parseConnectionString, Secrets } from '../drivers/azure/config.js';
import { mapAzureError } from '../drivers/azure/errors.js';
import {
  AZURE_RETRY_DEFAULTS,
  azureDriverFromUrl,
  createAzureDriver,
  DEFAULT_MIN_PART_SIZE,
  DEFAULT_PART_BLOCK_SIZE,
  MAX_PARTS,
  type TokenCredentialLike,
} from '../drivers/azure/index.js';
import type { Driver } from '../src/driver.js';
import { type BlobcoreError, isBlobcoreError } from '../src/errors.js';
import { azureFactory, containerName, useAzurite } from './fixtures/azure-helpers.js';
import { codeOf, MiB, sha256 } from './helpers.js';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TLS = {
  cert: join(ROOT, 'test/fixtures/azure-azurite-tls-cert.pem'),
  key: join(ROOT, 'test/fixtures/azure-azurite-tls-key.pem'),
};

const azurite = await useAzurite();
const factory = azureFactory(azurite, 'drv');
/** A second server over HTTPS that accepts OAuth tokens, for TokenCredential and user-delegation SAS. */
const secure = await useAzurite({ tls: TLS, oauth: true });
const ca = await readFile(TLS.cert);
const dispatcher = new Agent({ connect: { ca } });

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function errorOf(promise: Promise<unknown>): Promise<BlobcoreError> {
  try {
    await promise;
  } catch (error) {
    if (isBlobcoreError(error)) return error;
    throw new Error(`expected a BlobcoreError, got ${inspect(error)}`);
  }
  throw new Error('expected a rejection');
}

/** Everything an error or a driver shows, as one string. */
function shown(value: unknown): string {
  const parts = [inspect(value, { depth: 10, showHidden: true })];
  if (value instanceof Error)
    parts.push(value.message, String(value.stack), inspect(value.cause, { depth: 10 }));
  try {
    parts.push(JSON.stringify(value) ?? '');
  } catch {
    // circular: inspect covers it
  }
  return parts.join('\n');
}

function expectNoSecret(text: string, secrets: (string | undefined)[]): void {
  for (const secret of secrets) {
    if (!secret) continue;
    expect(text.includes(secret), `a secret (${secret.slice(0, 4)}…) appears in: ${text.slice(0, 400)}`).toBe(
      false,
    );
    expect(text.includes(encodeURIComponent(secret))).toBe(false);
  }
}

async function withDriver<T>(work: (driver: Driver, container: string) => Promise<T>): Promise<T> {
  const driver = await factory.create();
  try {
    return await work(driver, factory.containerOf(driver));
  } finally {
    await factory.destroy(driver);
  }
}

function containerSas(container: string, permissions: string, expiresInSeconds = 3600): string {
  const { server } = azurite;
  return generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse(permissions),
      expiresOn: new Date(Date.now() + expiresInSeconds * 1000),
    },
    new StorageSharedKeyCredential(server.accountName, server.accountKey),
  ).toString();
}

/** A stand-in for @azure/identity: an unsigned JWT that Azurite's `--oauth basic` accepts. */
function fakeTokenCredential(): TokenCredentialLike & { calls: number } {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return {
    calls: 0,
    async getToken() {
      this.calls += 1;
      const now = Math.floor(Date.now() / 1000);
      const tenant = 'ab1f708d-50f6-404c-a006-d71b2ac7a606';
      const payload = {
        aud: 'https://storage.azure.com',
        iss: `https://sts.windows.net/${tenant}/`,
        iat: now - 60,
        nbf: now - 60,
        exp: now + 3600,
        oid: '11059fcc-5514-4800-b5f8-49808b9cfab6',
        tid: tenant,
      };
      const token = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(payload)}.${Buffer.from('not-checked').toString('base64url')}`;
      return { token, expiresOnTimestamp: (now + 3600) * 1000 };
    },
  };
}

/** A tiny HTTP server that answers every request with `respond`, counting requests. */
async function fakeServer(respond: (n: number, res: import('node:http').ServerResponse) => void) {
  let count = 0;
  const server: Server = createServer((req, res) => {
    count += 1;
    req.resume();
    respond(count, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}/devstoreaccount1`,
    get count() {
      return count;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('azure: store URLs and credentials', { timeout: 60_000 }, () => {
  it('parses azure://container/prefix?… into container, prefix, endpoint and tuning options', async () => {
    const { server } = azurite;
    const container = containerName('url');
    const url = new URL(
      `azure://${container}/deep/prefix?endpoint=${encodeURIComponent(server.endpoint)}` +
        '&blockSize=1MiB&partBlockSize=256KiB&concurrency=2&minPartSize=512KiB&createContainer=true',
    );
    const driver = azureDriverFromUrl(url, {
      env: { AZURE_STORAGE_CONNECTION_STRING: server.connectionString },
    });
    expect(driver.limits).toEqual({ minPartSize: 512 * 1024, maxPartSize: 1280 * 1024, maxParts: MAX_PARTS });
    await driver.write('k', Buffer.from('hello'));
    const names: string[] = [];
    for await (const blob of azurite.service.getContainerClient(container).listBlobsFlat())
      names.push(blob.name);
    expect(names).toEqual(['deep/prefix/k']);
    expect((await driver.list('')).keys).toEqual(['k']);
    await azurite.service.getContainerClient(container).delete();
  });

  it('uses the documented defaults', () => {
    const driver = createAzureDriver({ container: 'abc', accountName: 'acct', accountKey: 'a2V5' });
    expect(driver.limits).toEqual({
      minPartSize: DEFAULT_MIN_PART_SIZE,
      maxPartSize: 5 * DEFAULT_PART_BLOCK_SIZE,
      maxParts: 10_000,
    });
    expect(driver.capabilities).toEqual({
      conditionalWrite: true,
      signedUrl: true,
      copy: false,
      link: false,
      usage: false,
    });
    expect(AZURE_RETRY_DEFAULTS).toEqual({
      maxTries: 6,
      retryDelayMs: 500,
      maxRetryDelayMs: 15_000,
      requestTimeoutMs: 120_000,
      readRetries: 5,
    });
  });

  it('rejects secrets and unknown parameters in the URL without echoing them, and bad names', async () => {
    const secret = 'c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw';
    for (const url of [
      `azure://box/p?sig=${secret}`,
      `azure://box/p?sv=2024&sig=${secret}`,
      `azure://box/p?accountKey=${secret}`,
      `azure://user:${secret}@box/p`,
    ]) {
      const error = await errorOf((async () => azureDriverFromUrl(new URL(url), { env: {} }))());
      expect(error.code).toBe('UNSUPPORTED');
      expectNoSecret(shown(error), [secret]);
    }
    for (const url of ['azure://box/p?bogus=1', 'azure://Bad_Name/p', 'azure://ab/p', 'azure://box/a//b']) {
      expect(
        await codeOf(async () => azureDriverFromUrl(new URL(url), { accountName: 'a', accountKey: 'a2V5' })),
      ).toBe('UNSUPPORTED');
    }
  });

  it('without credentials, says which environment variables to set', async () => {
    const error = await errorOf((async () => azureDriverFromUrl(new URL('azure://box'), { env: {} }))());
    expect(error.code).toBe('UNSUPPORTED');
    expect(error.message).toContain('AZURE_STORAGE_CONNECTION_STRING');
    expect(error.message).toContain('AZURE_STORAGE_KEY');
    expect(error.message).toContain('AZURE_STORAGE_SAS_TOKEN');
  });

  it('parses connection strings (values with "=", any key case, UseDevelopmentStorage)', () => {
    const fields = parseConnectionString('AccountName=a;accountkey=abc==;BlobEndpoint=http://h:1/a;');
    expect(fields.get('accountkey')).toBe('abc==');
    expect(fields.get('blobendpoint')).toBe('http://h:1/a');
    const dev = createAzureDriver({ container: 'box', connectionString: 'UseDevelopmentStorage=true' });
    expect(inspect(dev)).not.toContain('Eby8');
    expect(
      createAzureDriver({
        container: 'box',
        env: { AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' },
      }).capabilities.signedUrl,
    ).toBe(true);
  });

  it('connection string from AZURE_STORAGE_CONNECTION_STRING: round trip', async () => {
    const { server } = azurite;
    const container = containerName('cs');
    await azurite.service.createContainer(container);
    const driver = azureDriverFromUrl(new URL(`azure://${container}`), {
      env: { AZURE_STORAGE_CONNECTION_STRING: server.connectionString },
    });
    await driver.write('a/b', Buffer.from('via connection string'));
    expect((await readAll(await driver.read('a/b'))).toString()).toBe('via connection string');
    await azurite.service.getContainerClient(container).delete();
  });

  it('account name + key from AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY, endpoint from the URL: round trip', async () => {
    const { server } = azurite;
    const container = containerName('key');
    await azurite.service.createContainer(container);
    const driver = azureDriverFromUrl(
      new URL(`azure://${container}/p?endpoint=${encodeURIComponent(server.endpoint)}`),
      { env: { AZURE_STORAGE_ACCOUNT: server.accountName, AZURE_STORAGE_KEY: server.accountKey } },
    );
    await driver.write('x', Buffer.from('via account key'));
    expect((await readAll(await driver.read('x'))).toString()).toBe('via account key');
    expect(await driver.delete('x')).toBe(true);
    await azurite.service.getContainerClient(container).delete();
  });

  it('explicit options win over the environment', async () => {
    const { server } = azurite;
    const container = containerName('opt');
    await azurite.service.createContainer(container);
    const driver = createAzureDriver({
      container,
      endpoint: server.endpoint,
      accountName: server.accountName,
      accountKey: server.accountKey,
      env: {
        AZURE_STORAGE_CONNECTION_STRING:
          'AccountName=wrong;AccountKey=d3Jvbmc=;BlobEndpoint=http://127.0.0.1:1/x',
      },
    });
    await driver.write('k', Buffer.from('1'));
    expect((await driver.stat('k'))?.size).toBe(1);
    await azurite.service.getContainerClient(container).delete();
  });

  it('a SAS token (AZURE_STORAGE_SAS_TOKEN): objects and multipart work; signed URLs are declared absent', async () => {
    const { server } = azurite;
    const container = containerName('sas');
    await azurite.service.createContainer(container);
    const sas = containerSas(container, 'racwdl');
    const driver = azureDriverFromUrl(
      new URL(`azure://${container}/s?endpoint=${encodeURIComponent(server.endpoint)}`),
      { env: { AZURE_STORAGE_ACCOUNT: server.accountName, AZURE_STORAGE_SAS_TOKEN: `?${sas}` } },
    );
    expect(driver.capabilities.signedUrl).toBe(false);
    await driver.write('k', Buffer.from('via SAS'));
    expect((await readAll(await driver.read('k'))).toString()).toBe('via SAS');
    const handle = await driver.createMultipart('mp');
    const part = await driver.uploadPart(handle, 1, 0, Buffer.from('multipart via SAS'), 17);
    await driver.completeMultipart(handle, [part]);
    expect((await readAll(await driver.read('mp'))).toString()).toBe('multipart via SAS');
    expect((await driver.list('')).keys).toEqual(['k', 'mp']);
    expect(await codeOf(driver.signedUrl?.('k', { expiresIn: 60 }) ?? Promise.resolve())).toBe('UNSUPPORTED');
    expectNoSecret(shown(driver), [sas, new URLSearchParams(sas).get('sig') ?? undefined]);
    await azurite.service.getContainerClient(container).delete();
  });

  it('rejects a credential that is not a TokenCredential', async () => {
    expect(
      await codeOf(async () =>
        createAzureDriver({
          container: 'box',
          accountName: 'a',
          credential: { token: 'x' } as unknown as TokenCredentialLike,
        }),
      ),
    ).toBe('UNSUPPORTED');
  });
});

describe('azure: TokenCredential and user-delegation SAS (HTTPS + OAuth Azurite)', {
  timeout: 60_000,
}, () => {
  it('a TokenCredential object is accepted: objects, multipart, listing, and signed URLs fetched with undici', async () => {
    const credential = fakeTokenCredential();
    const container = containerName('tok');
    const driver = createAzureDriver({
      container,
      prefix: 'tok',
      endpoint: secure.server.endpoint,
      credential,
      createContainer: true,
      ca,
    });
    expect(driver.capabilities.signedUrl).toBe(true);
    const body = Buffer.from('read me through a user-delegation SAS');
    await driver.write('obj', body);
    await driver.write('other', Buffer.from('not this one'));
    const handle = await driver.createMultipart('mp');
    await driver.completeMultipart(handle, [await driver.uploadPart(handle, 1, 0, body, body.length)]);
    expect((await driver.list('')).keys).toEqual(['mp', 'obj', 'other']);
    expect(credential.calls).toBeGreaterThan(0);

    const url = (await driver.signedUrl?.('obj', { expiresIn: 300 })) as string;
    expect(url).toContain('skoid=');
    const ok = await request(url, { dispatcher });
    expect(ok.statusCode).toBe(200);
    expect(Buffer.from(await ok.body.arrayBuffer())).toEqual(body);
    const other = await request(url.replace('/tok/obj?', '/tok/other?'), { dispatcher });
    await other.body.dump();
    expect(other.statusCode).toBe(403);
    const put = await request(url, {
      method: 'PUT',
      dispatcher,
      body: 'x',
      headers: { 'x-ms-blob-type': 'BlockBlob' },
    });
    await put.body.dump();
    expect(put.statusCode).toBe(403);
    expect(await codeOf(driver.signedUrl?.('obj', { expiresIn: 8 * 24 * 3600 }) ?? Promise.resolve())).toBe(
      'RANGE_INVALID',
    );
    expect(shown(driver)).not.toContain('eyJ');
    await driver.close?.();
  });
});

describe('azure: no secrets in errors or util.inspect', { timeout: 60_000 }, () => {
  it('inspect and JSON of a driver show account, container and endpoint, never the key', async () => {
    const { server } = azurite;
    const driver = createAzureDriver({
      container: 'box',
      endpoint: server.endpoint,
      accountName: server.accountName,
      accountKey: server.accountKey,
    });
    const text = shown(driver);
    expectNoSecret(text, [server.accountKey]);
    const viaConnection = createAzureDriver({ container: 'box', connectionString: server.connectionString });
    expectNoSecret(shown(viaConnection), [server.accountKey]);
  });

  it('a wrong account key: 403 → a non-retryable auth error naming account and container, without the key or signature', async () => {
    const { server } = azurite;
    await withDriver(async (_, container) => {
      const wrongKey = Buffer.from('definitely-not-the-key-0123456789').toString('base64');
      const driver = createAzureDriver({
        container,
        endpoint: server.endpoint,
        accountName: server.accountName,
        accountKey: wrongKey,
      });
      for (const call of [
        () => driver.write('k', Buffer.from('x')),
        () => driver.read('k'),
        () => driver.stat('k'),
        () => driver.list(''),
      ]) {
        const error = await errorOf(call());
        expect(error.code).toBe('UNAVAILABLE');
        expect(error.retryable).toBe(false);
        expect(error.detail.auth).toBe(true);
        expect(error.detail.status).toBe(403);
        expect(error.message).toContain(server.accountName);
        expect(error.message).toContain(container);
        expectNoSecret(shown(error), [wrongKey, server.accountKey]);
        expect(shown(error)).not.toMatch(/SharedKey [^:\s]+:[A-Za-z0-9+/=]{20,}/);
      }
    });
  });

  it('a SAS with a wrong signature or missing permission: errors never show the SAS', async () => {
    const { server } = azurite;
    await withDriver(async (_, container) => {
      const good = containerSas(container, 'r');
      const sig = new URLSearchParams(good).get('sig') as string;
      const forged = good.replace(encodeURIComponent(sig), encodeURIComponent(`A${sig.slice(1)}`));
      for (const sas of [good, forged]) {
        const driver = createAzureDriver({ container, endpoint: server.endpoint, sasToken: sas });
        const error = await errorOf(driver.write('k', Buffer.from('x')));
        expect(error.code).toBe('UNAVAILABLE');
        expect(error.detail.auth).toBe(true);
        expectNoSecret(shown(error), [sas, sig, `A${sig.slice(1)}`]);
        expectNoSecret(shown(driver), [sas, sig]);
      }
    });
  });

  it('an unreachable endpoint with a SAS: UNAVAILABLE (retryable), no SAS in the error', async () => {
    const closed = await fakeServer(() => {});
    await closed.close();
    const sas = containerSas('box', 'racwdl');
    const driver = createAzureDriver({
      container: 'box',
      endpoint: closed.endpoint,
      sasToken: sas,
      retry: { maxTries: 2, retryDelayMs: 1, maxRetryDelayMs: 2 },
    });
    const error = await errorOf(driver.stat('k'));
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.retryable).toBe(true);
    expectNoSecret(shown(error), [sas, new URLSearchParams(sas).get('sig') ?? undefined]);
  });

  it('Secrets.redact scrubs keys, SAS signatures, SharedKey headers and bearer tokens', () => {
    const secrets = new Secrets();
    secrets.add('c2VjcmV0a2V5');
    const text = secrets.redact(
      'key c2VjcmV0a2V5 url https://a/b?sv=1&sig=abc%2Bdef&se=2 AccountKey=zzz; Authorization: SharedKey acct:QUJDREVGR0g= Bearer eyJhbGciOi.x.y',
    );
    expect(text).not.toMatch(/c2VjcmV0a2V5|abc%2Bdef|zzz|QUJDREVGR0g|eyJhbGciOi/);
    expect(inspect(secrets)).toMatch(/^Secrets\(\d+\)$/);
    expect(JSON.stringify({ secrets })).toBe('{"secrets":"Secrets"}');
  });
});

describe('azure: error mapping', { timeout: 60_000 }, () => {
  const ctx = { op: 'write', key: 'k', account: 'acct', container: 'box', secrets: new Secrets() };
  const map = (statusCode: number | undefined, code: string) =>
    mapAzureError(
      new RestError('boom', statusCode === undefined ? { code } : { statusCode, code }),
      ctx,
    ) as BlobcoreError;

  it('maps status codes to blobcore codes', () => {
    const table: [number | undefined, string, string, boolean][] = [
      [404, 'BlobNotFound', 'NOT_FOUND', false],
      [404, 'ContainerNotFound', 'UNAVAILABLE', false],
      [409, 'BlobAlreadyExists', 'PRECONDITION_FAILED', false],
      [412, 'ConditionNotMet', 'PRECONDITION_FAILED', false],
      [416, 'InvalidRange', 'RANGE_INVALID', false],
      [400, 'InvalidBlockList', 'BLOB_UPLOAD_INVALID', false],
      [413, 'RequestBodyTooLarge', 'SIZE_INVALID', false],
      [403, 'AuthorizationFailure', 'UNAVAILABLE', false],
      [401, 'InvalidAuthenticationInfo', 'UNAVAILABLE', false],
      [500, 'InternalError', 'UNAVAILABLE', true],
      [503, 'ServerBusy', 'UNAVAILABLE', true],
      [408, 'OperationTimedOut', 'UNAVAILABLE', true],
      [undefined, 'ECONNRESET', 'UNAVAILABLE', true],
      [undefined, 'REQUEST_SEND_ERROR', 'UNAVAILABLE', true],
      [400, 'InvalidHeaderValue', 'UNAVAILABLE', false],
    ];
    for (const [status, code, expected, retryable] of table) {
      const error = map(status, code);
      expect([status, code, error.code, error.retryable]).toEqual([status, code, expected, retryable]);
      expect(error.driver).toBe('azure');
      expect(error.cause).toBeInstanceOf(Error);
      expect((error.cause as Error).name).toBe('AzureRequestError');
    }
    const abort = new Error('The operation was aborted.');
    abort.name = 'AbortError';
    expect((mapAzureError(abort, ctx) as BlobcoreError).code).toBe('ABORTED');
    const own = new Error('source broke');
    expect(mapAzureError(own, ctx)).toBe(own);
  });

  it("the caller's body failing (even with a network-like code) is passed on as it is, not as Azure's failure", async () => {
    await withDriver(async (driver) => {
      for (const size of [1000, 20 * MiB]) {
        const failure = Object.assign(new Error('client connection reset'), { code: 'ECONNRESET' });
        async function* body() {
          yield Buffer.alloc(size, 1);
          throw failure;
        }
        await expect(driver.write('src', body())).rejects.toBe(failure);
      }
      expect(await driver.stat('src')).toBe(null);
    });
  });

  it('a missing container is an error, not a missing key (stat does not return null)', async () => {
    const { server } = azurite;
    const driver = createAzureDriver({
      container: containerName('gone'),
      endpoint: server.endpoint,
      accountName: server.accountName,
      accountKey: server.accountKey,
    });
    for (const call of [() => driver.stat('k'), () => driver.read('k'), () => driver.delete('k')]) {
      const error = await errorOf(call());
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('does not exist');
    }
  });

  it('500/503 are retried maxTries times, then UNAVAILABLE (retryable)', async () => {
    const server = await fakeServer((n, res) => {
      const code = n % 2 ? 'ServerBusy' : 'InternalError';
      res.writeHead(n % 2 ? 503 : 500, { 'x-ms-error-code': code, 'content-type': 'application/xml' });
      res.end(
        `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`,
      );
    });
    try {
      const driver = createAzureDriver({
        container: 'box',
        endpoint: server.endpoint,
        accountName: 'devstoreaccount1',
        accountKey: azurite.server.accountKey,
        retry: { maxTries: 3, retryDelayMs: 5, maxRetryDelayMs: 10 },
      });
      const error = await errorOf(driver.write('k', Buffer.from('x')));
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.retryable).toBe(true);
      expect(server.count).toBe(3);
    } finally {
      await server.close();
    }
  });

  it('an attempt with no response is timed out (requestTimeoutMs) and retried, then UNAVAILABLE', async () => {
    const server = await fakeServer(() => {
      // never answer
    });
    try {
      const driver = createAzureDriver({
        container: 'box',
        endpoint: server.endpoint,
        accountName: 'devstoreaccount1',
        accountKey: azurite.server.accountKey,
        retry: { maxTries: 2, retryDelayMs: 5, maxRetryDelayMs: 10, requestTimeoutMs: 300 },
      });
      const started = Date.now();
      const error = await errorOf(driver.stat('k'));
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.retryable).toBe(true);
      expect(server.count).toBe(2);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await server.close();
    }
  });
});

describe('azure: multipart staging', { timeout: 60_000 }, () => {
  const small = azureFactory(azurite, 'blk', { partBlockSize: 64 * 1024, minPartSize: 64 * 1024 });

  it('re-staging a part (a retry after a timeout) replaces its blocks: nothing is duplicated', async () => {
    const driver = await small.create();
    try {
      const container = azurite.service.getContainerClient(small.containerOf(driver));
      const part1 = Buffer.alloc(160 * 1024, 1); // 3 blocks of ≤ 64 KiB
      const part2 = Buffer.alloc(10 * 1024, 2);
      const handle = await driver.createMultipart('mp/restaged');
      const first = await driver.uploadPart(handle, 1, 0, part1, part1.length);
      const again = await driver.uploadPart(
        handle,
        1,
        0,
        Readable.from([part1.subarray(0, 7), part1.subarray(7)]),
        part1.length,
      );
      expect(again).toEqual(first);
      const blob = container.getBlockBlobClient('mp/restaged');
      const staged = await blob.getBlockList('uncommitted');
      expect(staged.uncommittedBlocks?.length).toBe(3);
      const ref2 = await driver.uploadPart(handle, 2, part1.length, part2, part2.length);
      await driver.completeMultipart(handle, [first, ref2]);
      const committed = await blob.getBlockList('committed');
      expect(committed.committedBlocks?.map((b) => b.size)).toEqual([65536, 65536, 32768, 10240]);
      expect(await readAll(await driver.read('mp/restaged'))).toEqual(Buffer.concat([part1, part2]));
      // Completing again (a retry after a lost response) is harmless.
      await driver.completeMultipart(handle, [first, ref2]);
      expect((await driver.stat('mp/restaged'))?.size).toBe(part1.length + part2.length);
    } finally {
      await small.destroy(driver);
    }
  });

  it('part numbers may skip (after a takeover); a stale or foreign part receipt is BLOB_UPLOAD_INVALID', async () => {
    const driver = await small.create();
    try {
      const a = Buffer.alloc(100_000, 3);
      const b = Buffer.alloc(5_000, 4);
      const handle = await driver.createMultipart('mp/skip');
      const p1 = await driver.uploadPart(handle, 1, 0, a, a.length);
      const p3 = await driver.uploadPart(handle, 3, a.length, b, b.length);
      expect(await codeOf(driver.completeMultipart(handle, [p1, { ...p3, etag: 'bogus' }]))).toBe(
        'BLOB_UPLOAD_INVALID',
      );
      expect(await codeOf(driver.completeMultipart(handle, [p3]))).toBe('BLOB_UPLOAD_INVALID');
      expect(await codeOf(driver.completeMultipart(handle, [p1, { ...p3, partNumber: 4 }]))).toBe(
        'BLOB_UPLOAD_INVALID',
      );
      await driver.uploadPart(handle, 3, a.length, b.subarray(0, 100), 100); // replaced with another size
      expect(await codeOf(driver.completeMultipart(handle, [p1, p3]))).toBe('BLOB_UPLOAD_INVALID');
      expect(await driver.stat('mp/skip')).toBe(null);
      const p3b = await driver.uploadPart(handle, 3, a.length, b, b.length);
      await driver.completeMultipart(handle, [p1, p3b]);
      expect(await readAll(await driver.read('mp/skip'))).toEqual(Buffer.concat([a, b]));
    } finally {
      await small.destroy(driver);
    }
  });

  it('staged blocks are invisible: no stat, no listing, until completion', async () => {
    const driver = await small.create();
    try {
      const handle = await driver.createMultipart('mp/hidden');
      const ref = await driver.uploadPart(handle, 1, 0, Buffer.alloc(1000, 5), 1000);
      expect(await driver.stat('mp/hidden')).toBe(null);
      expect((await driver.list('')).keys).toEqual([]);
      expect(await codeOf(driver.read('mp/hidden'))).toBe('NOT_FOUND');
      await driver.abortMultipart(handle);
      expect(await codeOf(driver.completeMultipart(handle, [ref]))).toBe('BLOB_UPLOAD_INVALID');
    } finally {
      await small.destroy(driver);
    }
  });

  it('aborting a multipart over an existing object leaves the object intact', async () => {
    const driver = await small.create();
    try {
      await driver.write('mp/kept', Buffer.from('keep me'));
      const handle = await driver.createMultipart('mp/kept');
      await driver.uploadPart(handle, 1, 0, Buffer.alloc(100, 6), 100);
      await driver.abortMultipart(handle);
      expect((await readAll(await driver.read('mp/kept'))).toString()).toBe('keep me');
    } finally {
      await small.destroy(driver);
    }
  });
});

describe('azure: listing', { timeout: 60_000 }, () => {
  it('1,005 keys under a key prefix page completely with the same instance, fresh instances and startFrom', async () => {
    const driver = await factory.create();
    try {
      const container = factory.containerOf(driver);
      const { server } = azurite;
      const open = (extra: object = {}) =>
        createAzureDriver({
          container,
          prefix: 'lst',
          endpoint: server.endpoint,
          accountName: server.accountName,
          accountKey: server.accountKey,
          ...extra,
        });
      const writer = open();
      const keys = Array.from({ length: 1005 }, (_, i) => `many/k${String(i).padStart(4, '0')}`);
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((key) => writer.write(key, Buffer.from(key))));
      }
      await writer.write('man', Buffer.from('noise'));
      await driver.write('lst-outside', Buffer.from('outside the prefix'));

      const collect = async (next: () => Driver, limit: number, startFrom = false) => {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await next().list('many/', { startAfter: cursor, limit });
          seen.push(...page.keys);
          cursor = page.cursor;
          pages += 1;
          expect(pages).toBeLessThan(100);
        } while (cursor !== undefined);
        return { seen, pages, startFrom };
      };
      const same = open();
      expect((await collect(() => same, 100)).seen).toEqual(keys);
      expect((await collect(() => same, 1000)).seen).toEqual(keys);
      expect((await collect(() => open(), 333)).seen).toEqual(keys); // no remembered tokens: skip path
      const withStartFrom = open({ listStartFrom: true });
      expect((await collect(() => withStartFrom, 250)).seen).toEqual(keys);
      expect((await open().list('many/', { startAfter: 'many/k0500x', limit: 2 })).keys).toEqual([
        'many/k0501',
        'many/k0502',
      ]);
      const end = await open().list('many/', { startAfter: 'many/k1004' });
      expect(end).toEqual({ keys: [] });
      expect((await same.list('', { limit: 1 })).keys).toEqual(['man']);
    } finally {
      await factory.destroy(driver);
    }
  }, 120_000);
});

describe('azure: signed URLs (shared key) fetched with undici', { timeout: 60_000 }, () => {
  it('GET returns the bytes (also for keys with + = @ ~); another key, an altered signature, a write, or an expired URL are refused', async () => {
    await withDriver(async (driver) => {
      const body = Buffer.from('signed content');
      await driver.write('signed/obj', body);
      await driver.write('signed/obk', Buffer.from('other content'));
      const url = (await driver.signedUrl?.('signed/obj', { expiresIn: 300 })) as string;
      expect(new URL(url).searchParams.get('sp')).toBe('r');
      const ok = await request(url);
      expect(ok.statusCode).toBe(200);
      expect(Buffer.from(await ok.body.arrayBuffer())).toEqual(body);

      const sig = new URL(url).searchParams.get('sig') as string;
      const altered = new URL(url);
      altered.searchParams.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
      for (const [what, target, method] of [
        ['another key', url.replace('signed/obj', 'signed/obk'), 'GET'],
        ['altered signature', altered.href, 'GET'],
        ['a write', url, 'PUT'],
      ] as const) {
        const response = await request(target, {
          method,
          ...(method === 'PUT' ? { body: 'overwrite', headers: { 'x-ms-blob-type': 'BlockBlob' } } : {}),
        });
        await response.body.dump();
        expect([what, response.statusCode]).toEqual([what, 403]);
      }
      expect((await readAll(await driver.read('signed/obj'))).toString()).toBe('signed content');

      for (const key of ['chars/~=+@-_.', 'a+b=c@d~']) {
        await driver.write(key, Buffer.from(key));
        const response = await request((await driver.signedUrl?.(key, { expiresIn: 60 })) as string);
        expect([key, response.statusCode, await response.body.text()]).toEqual([key, 200, key]);
      }

      const shortLived = (await driver.signedUrl?.('signed/obj', { expiresIn: 1 })) as string;
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const expired = await request(shortLived);
      await expired.body.dump();
      expect(expired.statusCode).toBe(403);
    });
  });
});

describe('azure: bounded memory', { timeout: 60_000 }, () => {
  it('a 256 MiB streamed write of unknown length holds about blockSize × concurrency, not the body', async () => {
    const { server } = azurite;
    const container = containerName('mem');
    await azurite.service.createContainer(container);
    try {
      const blockSize = 8;
      const concurrency = 4;
      const { stdout } = await execFileAsync(
        process.execPath,
        ['--expose-gc', '--import', './test/fixtures/ts-loader.mjs', 'test/fixtures/azure-memory-child.ts'],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            AZURE_STORAGE_CONNECTION_STRING: server.connectionString,
            AZURE_TEST_URL: `azure://${container}/m?blockSize=${blockSize}MiB&concurrency=${concurrency}`,
            SIZE_MIB: '256',
          },
          maxBuffer: 1 << 20,
        },
      );
      const report = JSON.parse(stdout.trim().split('\n').pop() as string) as {
        size: number;
        statSize: number;
        peakArrayBuffersMiB: number;
        peakRssMiB: number;
        seconds: number;
      };
      console.info(`[azure] streamed 256 MiB write: ${JSON.stringify(report)}`);
      expect(report.size).toBe(256 * MiB);
      expect(report.statSize).toBe(256 * MiB);
      // The bound from the issue: block size × concurrency + 64 MiB (far below the 256 MiB body).
      expect(report.peakArrayBuffersMiB).toBeLessThan(blockSize * concurrency + 64);
      expect(report.peakRssMiB).toBeLessThan(blockSize * concurrency + 64);
    } finally {
      await azurite.service.getContainerClient(container).delete();
    }
  }, 180_000);

  it('the streamed write read back is byte-identical (sha256)', async () => {
    await withDriver(async (driver) => {
      const chunks = Array.from({ length: 20 }, (_, i) => Buffer.alloc(MiB + 17, i));
      const whole = Buffer.concat(chunks);
      const result = await driver.write('streamed', Readable.from(chunks));
      expect(result.size).toBe(whole.length);
      expect(sha256(await readAll(await driver.read('streamed')))).toBe(sha256(whole));
    });
  });
});
