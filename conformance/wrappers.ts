/**
 * Driver wrappers the suite re-runs things over. `countingDriver` counts the calls and
 * bytes that reach the wrapped driver, so a case can prove "no data was written".
 */
import type { Body, Driver } from '../src/driver.js';

export interface WriteCounts {
  /** `write` calls, by key. */
  writes: string[];
  /** Bytes passed to `write` and `uploadPart`. */
  bytesWritten: number;
  uploadParts: number;
  completes: number;
  copies: number;
}

function counted(body: Body, add: (n: number) => void): Body {
  if (body instanceof Uint8Array) {
    add(body.byteLength);
    return body;
  }
  return (async function* () {
    for await (const chunk of body) {
      add(chunk.byteLength);
      yield chunk;
    }
  })();
}

/** Wraps a driver (usually a guarded one) and counts what is written through it. */
export function countingDriver(inner: Driver): { driver: Driver; counts: WriteCounts; reset(): void } {
  const counts: WriteCounts = { writes: [], bytesWritten: 0, uploadParts: 0, completes: 0, copies: 0 };
  const add = (n: number) => {
    counts.bytesWritten += n;
  };
  const driver: Driver = {
    name: inner.name,
    capabilities: inner.capabilities,
    limits: inner.limits,
    stat: (key, options) => inner.stat(key, options),
    read: (key, options) => inner.read(key, options),
    write: (key, body, options) => {
      counts.writes.push(key);
      return inner.write(key, counted(body, add), options);
    },
    delete: (key, options) => inner.delete(key, options),
    list: (prefix, options) => inner.list(prefix, options),
    createMultipart: (key, options) => inner.createMultipart(key, options),
    uploadPart: (handle, partNumber, offset, body, size, options) => {
      counts.uploadParts += 1;
      return inner.uploadPart(handle, partNumber, offset, counted(body, add), size, options);
    },
    completeMultipart: (handle, parts, options) => {
      counts.completes += 1;
      return inner.completeMultipart(handle, parts, options);
    },
    abortMultipart: (handle, options) => inner.abortMultipart(handle, options),
  };
  if (inner.signedUrl) driver.signedUrl = inner.signedUrl.bind(inner);
  if (inner.usage) driver.usage = inner.usage.bind(inner);
  if (inner.copy) {
    const copy = inner.copy.bind(inner);
    driver.copy = (from, to, options) => {
      counts.copies += 1;
      return copy(from, to, options);
    };
  }
  if (inner.link) {
    const link = inner.link.bind(inner);
    driver.link = (from, to, options) => {
      counts.copies += 1;
      return link(from, to, options);
    };
  }
  return {
    driver,
    counts,
    reset() {
      counts.writes = [];
      counts.bytesWritten = 0;
      counts.uploadParts = 0;
      counts.completes = 0;
      counts.copies = 0;
    },
  };
}
