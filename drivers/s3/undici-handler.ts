/**
 * An HTTP handler for the AWS SDK built on undici (`httpHandler: 'undici'`), the
 * alternative to the SDK's own Node handler. The SDK signs a request object
 * (protocol, host, port, escaped path, query map, headers, body); this sends it with
 * an undici Agent (keep-alive pool, the same CA handling as the Node handler) and
 * hands back status, headers and the body stream.
 *
 * `Expect: 100-continue`, which the S3 client adds to large bodies, is dropped: undici
 * does not implement it, and the body is sent right away as most S3 clients do.
 */
import type { Readable } from 'node:stream';
import { Agent } from 'undici';

interface SdkRequest {
  protocol: string;
  hostname: string;
  port?: number;
  method: string;
  path: string;
  query?: Record<string, string | string[] | null>;
  headers: Record<string, string>;
  body?: unknown;
}

function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The query string as the SDK's own handler builds it (sorted keys, RFC 3986 escapes). */
function queryString(query: SdkRequest['query']): string {
  const parts: string[] = [];
  for (const key of Object.keys(query ?? {}).sort()) {
    const value = query?.[key];
    if (Array.isArray(value)) for (const v of value) parts.push(`${escapeUri(key)}=${escapeUri(v)}`);
    else if (value || typeof value === 'string') parts.push(`${escapeUri(key)}=${escapeUri(value)}`);
    else parts.push(escapeUri(key));
  }
  return parts.join('&');
}

export interface UndiciHandlerOptions {
  ca?: string[] | undefined;
  connections: number;
  timeoutMs: number;
}

export class UndiciHttpHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  readonly #agent: Agent;

  constructor(options: UndiciHandlerOptions) {
    this.#agent = new Agent({
      connections: options.connections,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: { timeout: 10_000, ...(options.ca ? { ca: options.ca } : {}) },
    });
  }

  async handle(
    request: SdkRequest,
    options: { abortSignal?: AbortSignal } = {},
  ): Promise<{ response: { statusCode: number; headers: Record<string, string>; body: Readable } }> {
    const query = queryString(request.query);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (name.toLowerCase() !== 'expect') headers[name] = value;
    }
    const port = request.port ? `:${request.port}` : '';
    const result = await this.#agent.request({
      origin: `${request.protocol}//${request.hostname}${port}`,
      path: query ? `${request.path}?${query}` : request.path,
      method: request.method as 'GET',
      headers,
      body: (request.body ?? null) as Buffer | Readable | string | null,
      ...(options.abortSignal ? { signal: options.abortSignal } : {}),
    });
    const flat: Record<string, string> = {};
    for (const [name, value] of Object.entries(result.headers)) {
      if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    return {
      response: { statusCode: result.statusCode, headers: flat, body: result.body as unknown as Readable },
    };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    this.#agent.close().catch(() => undefined);
  }
}
