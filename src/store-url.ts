/**
 * Store URLs → drivers. Drivers are imported on demand so that, say, the S3 SDK is only
 * loaded by a process that opens an `s3://` store.
 *
 *   memory:                  a private in-memory backend
 *   memory://name            a process-wide in-memory backend shared by name
 *   file:///abs/path         the filesystem driver (drivers/fs/README.md)
 *   pvc:///mount/path        the shared-volume driver (drivers/pvc/README.md)
 *   s3://bucket/prefix?…     S3 and S3-compatible stores (drivers/s3/README.md)
 *   azure://container/prefix Azure Blob Storage (drivers/azure/README.md)
 */
import type { Driver } from './driver.js';
import { blobError } from './errors.js';

type DriverOpener = (url: URL) => Promise<Driver>;

const openers: Record<string, DriverOpener> = {
  'memory:': async (url) => {
    const { createMemoryDriver, namedMemoryBackend } = await import('../drivers/memory/index.js');
    return url.host ? createMemoryDriver({ backend: namedMemoryBackend(url.host) }) : createMemoryDriver();
  },
  'file:': async (url) => (await import('../drivers/fs/index.js')).createFsDriverFromUrl(url),
  'pvc:': async (url) => (await import('../drivers/pvc/index.js')).createPvcDriverFromUrl(url),
  's3:': async (url) => (await import('../drivers/s3/index.js')).s3DriverFromUrl(url),
  'azure:': async (url) => (await import('../drivers/azure/index.js')).azureDriverFromUrl(url),
};

/** Lets a driver package add a scheme (`registerDriverScheme('gs:', …)`). */
export function registerDriverScheme(protocol: string, opener: DriverOpener): void {
  openers[protocol.endsWith(':') ? protocol : `${protocol}:`] = opener;
}

export async function openDriver(target: string | URL): Promise<Driver> {
  let url: URL;
  try {
    url = target instanceof URL ? target : new URL(target);
  } catch (cause) {
    throw blobError('UNSUPPORTED', `not a store URL: ${String(target)}`, { cause });
  }
  const opener = openers[url.protocol];
  if (!opener) {
    throw blobError(
      'UNSUPPORTED',
      `no driver for ${url.protocol} URLs (known: ${Object.keys(openers).join(' ')})`,
    );
  }
  return opener(url);
}
