/**
 * The store's core paths against their limits, on one backend:
 *   sha256 (node:crypto) of N bytes      the hashing limit on one core
 *   store.put of N bytes                 verified put (hash + write)          target ≥ 0.9× hash-only
 *   upload of N bytes in 8 MiB chunks    state record saved at every chunk   target ≥ 0.85× put
 * Each iteration stores new content (a counter in the first bytes), so no run dedups
 * against an earlier one, and deletes it afterwards.
 */
import { createHash } from 'node:crypto';
import type { BlobStore } from '../../src/store.js';
import { patternBytes } from '../../src/stream/pattern.js';
import type { TaskSpec } from '../harness.js';

const MiB = 1024 * 1024;

export interface CoreScenario {
  tasks: TaskSpec[];
  /** Ratios to print: [label, numerator task, denominator task, target]. */
  ratios: [string, string, string, number][];
}

export function storeCoreTasks(store: BlobStore, label: string, size: number, chunk = 8 * MiB): CoreScenario {
  const buffer = patternBytes(`bench-${label}`, 0, size);
  let counter = 0;
  let digest: string | undefined;
  let expected = '';
  const fresh = () => {
    counter += 1;
    buffer.writeUInt32BE(counter, 0);
    buffer.writeUInt32BE(process.pid, 4);
  };
  const cleanup = async () => {
    if (digest) await store.delete(digest);
    digest = undefined;
  };
  const mib = `${Math.round(size / MiB)} MiB`;
  const hashName = `sha256 node:crypto ${mib}`;
  const putName = `${label} put ${mib}`;
  const uploadName = `${label} upload ${mib} in ${chunk / MiB} MiB chunks`;
  return {
    tasks: [
      {
        name: hashName,
        bytes: size,
        beforeEach: fresh,
        fn: () => createHash('sha256').update(buffer).digest(),
      },
      {
        name: putName,
        bytes: size,
        beforeEach: fresh,
        fn: async () => {
          digest = (await store.put(buffer)).digest;
        },
        afterEach: cleanup,
      },
      {
        name: uploadName,
        bytes: size,
        beforeEach: () => {
          fresh();
          // The client knows its digest before it pushes; computing it is not the store's cost.
          expected = `sha256:${createHash('sha256').update(buffer).digest('hex')}`;
        },
        fn: async () => {
          const upload = await store.uploads.start();
          for (let offset = 0; offset < size; offset += chunk) {
            await upload.append(buffer.subarray(offset, Math.min(size, offset + chunk)), { offset });
          }
          digest = (await upload.commit({ digest: expected, size })).digest;
        },
        afterEach: cleanup,
      },
    ],
    ratios: [
      [`${label} put / hash-only`, putName, hashName, 0.9],
      [`${label} chunked upload / put`, uploadName, putName, 0.85],
    ],
  };
}
