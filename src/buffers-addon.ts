/**
 * The blobcore_buffers addon (build/Release/blobcore_buffers.node): recycled read buffers
 * (native/buffer-pool.c, used by buffer-pool.ts) and reads on the thread pool that can
 * feed a byte tap there (native/read-into.c). Loaded once; `null` when it is not built or
 * does not load, and every user then has a plain-JavaScript way that gives the same bytes.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './hash/native.js';

export interface BuffersBinding {
  createPool(slabBytes: number, maxIdle: number): object;
  take(pool: object): Buffer | undefined;
  trim(pool: object): number;
  stats(pool: object): { idle: number; lent: number };
  /**
   * Fills `buffer` from `fd` at `position` (short only at the end of the file) on a
   * thread-pool worker and resolves to the bytes read; with `tap` (a native ReadTap
   * handle), that worker then feeds the bytes to it, in the order of the calls. Rejects
   * with an fs-style Error (`code`, `errno`, `syscall`).
   */
  readInto(fd: number, buffer: Uint8Array, position: number, tap?: object): Promise<number>;
}

const ADDON_FILE = join('build', 'Release', 'blobcore_buffers.node');

let binding: BuffersBinding | null | undefined;

export function loadBuffersBinding(): BuffersBinding | null {
  if (binding === undefined) {
    try {
      const path = join(packageRoot(), ADDON_FILE);
      binding = existsSync(path) ? (createRequire(import.meta.url)(path) as BuffersBinding) : null;
    } catch {
      binding = null;
    }
  }
  return binding;
}
