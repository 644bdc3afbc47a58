/**
 * `s3://bucket/prefix?option=value&…` → S3DriverOptions.
 *
 *   endpoint=https://host:port   S3 endpoint (default: AWS for the region)
 *   region=us-east-1             signing region (default: the SDK's chain, then us-east-1)
 *   forcePathStyle=true          path-style addressing (needed by most on-prem servers)
 *   caBundle=/path/ca.pem        extra PEM CA certificates to trust for TLS endpoints
 *   conditionalWrites=false      the server does not enforce If-None-Match / If-Match on PUT
 *   multipartAbort=false         the server lacks AbortMultipartUpload (see index.ts)
 *   partSize=8388608             bytes per part for writes of unknown length (≥ 5 MiB; K/M/G suffixes)
 *   concurrency=4                parts in flight per write (memory: partSize × concurrency)
 *   checksum=sha256              send x-amz-checksum-sha256 with single-request PUTs
 *   httpHandler=undici           HTTP client under the SDK: node (default) or undici
 *
 * Credentials never come from the URL (a URL with user info is refused without echoing
 * it): the SDK's default provider chain supplies them. There is no option that turns
 * TLS verification off.
 */

import { blobError } from '../../src/errors.js';
import { validatePrefix } from '../../src/keys.js';
import type { S3DriverOptions } from './index.js';

const BOOLEAN: Record<string, boolean> = {
  true: true,
  '1': true,
  yes: true,
  false: false,
  '0': false,
  no: false,
};

function bool(name: string, value: string): boolean {
  const parsed = BOOLEAN[value.toLowerCase()];
  if (parsed === undefined) throw invalid(`${name} must be true or false, got ${JSON.stringify(value)}`);
  return parsed;
}

function bytes(name: string, value: string): number {
  const match = /^(\d+)([KMG]i?B?)?$/i.exec(value.trim());
  if (!match)
    throw invalid(`${name} must be a byte count (e.g. 8388608 or 8MiB), got ${JSON.stringify(value)}`);
  const unit = (match[2] ?? '').toUpperCase().charAt(0);
  const scale = unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1;
  return Number(match[1]) * scale;
}

function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    throw invalid(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

function invalid(message: string) {
  return blobError('UNSUPPORTED', `s3 store URL: ${message}`, { driver: 's3' });
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses an `s3:` store URL. Throws UNSUPPORTED (naming the bad option, never a secret). */
export function parseS3Url(url: URL): S3DriverOptions {
  if (url.protocol !== 's3:') throw invalid(`expected an s3: URL, got ${url.protocol}`);
  if (url.username !== '' || url.password !== '') {
    throw invalid(
      'credentials in the URL are not accepted; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile',
    );
  }
  const bucket = url.hostname;
  if (!BUCKET.test(bucket))
    throw invalid(`bucket name ${JSON.stringify(bucket)} is not a valid S3 bucket name`);
  if (url.port !== '') throw invalid('put the port in the endpoint option, not after the bucket');
  let path = decodeURIComponent(url.pathname).replace(/^\/+/, '');
  if (path !== '' && !path.endsWith('/')) path += '/';
  try {
    validatePrefix(path);
  } catch (cause) {
    throw blobError('UNSUPPORTED', `s3 store URL: prefix ${JSON.stringify(path)} is not a valid key prefix`, {
      driver: 's3',
      cause,
    });
  }
  const options: S3DriverOptions = { bucket, prefix: path };
  for (const [name, value] of url.searchParams) {
    switch (name) {
      case 'endpoint': {
        let endpoint: URL;
        try {
          endpoint = new URL(value);
        } catch {
          throw invalid('endpoint must be an http(s) URL');
        }
        if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') {
          throw invalid('endpoint must be an http(s) URL');
        }
        if (endpoint.username !== '' || endpoint.password !== '') {
          throw invalid('credentials in the endpoint URL are not accepted');
        }
        options.endpoint = endpoint.toString().replace(/\/$/, '');
        break;
      }
      case 'region':
        if (!/^[a-z0-9-]+$/i.test(value))
          throw invalid(`region ${JSON.stringify(value)} is not a region name`);
        options.region = value;
        break;
      case 'forcePathStyle':
        options.forcePathStyle = bool(name, value);
        break;
      case 'caBundle':
        if (value === '') throw invalid('caBundle must be a path to a PEM file');
        options.caBundle = value;
        break;
      case 'conditionalWrites':
        options.conditionalWrites = bool(name, value);
        break;
      case 'multipartAbort':
        options.multipartAbort = bool(name, value);
        break;
      case 'partSize':
        options.partSize = bytes(name, value);
        break;
      case 'concurrency':
        options.concurrency = positiveInt(name, value);
        break;
      case 'checksum':
        if (value !== 'sha256' && value !== 'none') throw invalid('checksum must be sha256 or none');
        options.checksum = value;
        break;
      case 'httpHandler':
        if (value !== 'node' && value !== 'undici') throw invalid('httpHandler must be node or undici');
        options.httpHandler = value;
        break;
      default:
        throw invalid(
          `unknown option ${JSON.stringify(name)} (known: endpoint, region, forcePathStyle, caBundle, conditionalWrites, multipartAbort, partSize, concurrency, checksum, httpHandler)`,
        );
    }
  }
  return options;
}
