/**
 * Resumable SHA-256 for uploads: a hasher whose state can be exported at any chunk
 * boundary, stored, and resumed in another process (or on another replica) without
 * re-reading the data.
 *
 * Two implementations, one canonical state format (state.ts), so either resumes the
 * other's uploads:
 *   - 'native': build/Release/blobcore_sha256.node, an N-API addon over the OpenSSL
 *     SHA-256 that the `node` binary itself exports (SHA-NI speed; native.ts);
 *   - 'wasm': hash-wasm, portable and slower (wasm.ts).
 *
 * Selection, by the environment variable BLOBCORE_HASH, read at each call:
 *   unset, '' or 'auto'  native when the addon loads, else wasm;
 *   'native'             native, and a missing addon is an UNSUPPORTED error;
 *   'wasm'               wasm.
 * Whenever wasm is used, one line saying so and why goes to stderr, once per process.
 *
 * Plain one-shot hashing (no state to keep) should use node:crypto, not this.
 */
import { blobError } from '../errors.js';
import { createNativeSha256, loadNativeBinding, type NativeBinding } from './native.js';
import { decodeState } from './state.js';
import type { ResumableSha256 } from './types.js';
import { createWasmSha256 } from './wasm.js';

export type { ResumableSha256 } from './types.js';

export type HashImplementation = 'native' | 'wasm';
export type HashMode = 'auto' | HashImplementation;

/** Parses BLOBCORE_HASH; an unknown value is an UNSUPPORTED error, not a silent default. */
export function hashModeFromEnv(value: string | undefined = process.env.BLOBCORE_HASH): HashMode {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'native' || value === 'wasm') return value;
  throw blobError('UNSUPPORTED', `BLOBCORE_HASH=${value}: expected native, wasm or auto`);
}

export interface HashSelection {
  implementation: HashImplementation;
  /** Why the fallback is in use (the stderr notice); undefined for native. */
  reason?: string;
}

/** The selection rule, kept pure so tests can give it a loader that fails. */
export function selectImplementation(mode: HashMode, load: () => NativeBinding): HashSelection {
  if (mode === 'wasm') return { implementation: 'wasm', reason: 'forced by BLOBCORE_HASH=wasm' };
  try {
    load();
    return { implementation: 'native' };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (mode === 'native') {
      throw blobError(
        'UNSUPPORTED',
        `BLOBCORE_HASH=native but the native SHA-256 addon is unavailable: ${message}`,
        {
          cause: error,
        },
      );
    }
    return { implementation: 'wasm', reason: `native addon unavailable: ${message}` };
  }
}

// Process-wide, not module-wide: vitest and bundlers may evaluate this module more than once.
const NOTICE_KEY = Symbol.for('blobcore.hash.fallbackNotice');

function noticeOnce(reason: string): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[NOTICE_KEY] === true) return;
  g[NOTICE_KEY] = true;
  const why = reason.replace(/\s+/g, ' ').trim();
  process.stderr.write(`blobcore: SHA-256 uses the hash-wasm fallback, slower than native (${why})\n`);
}

function currentSelection(): HashSelection {
  const selection = selectImplementation(hashModeFromEnv(), loadNativeBinding);
  if (selection.reason !== undefined) noticeOnce(selection.reason);
  return selection;
}

/** Which implementation createResumableSha256 uses: 'native' (the addon) or 'wasm' (hash-wasm fallback). */
export async function hashImplementation(): Promise<HashImplementation> {
  return currentSelection().implementation;
}

/** New hasher, or one continuing from an exported state. Corrupt/unknown state → BlobcoreError code 'BLOB_UPLOAD_INVALID'. */
export async function createResumableSha256(state?: Uint8Array): Promise<ResumableSha256> {
  const decoded = state === undefined ? undefined : decodeState(state);
  return currentSelection().implementation === 'native'
    ? createNativeSha256(decoded)
    : createWasmSha256(decoded);
}

/** Reads bytesHashed out of an exported state without building a hasher (validates it). */
export function stateBytesHashed(state: Uint8Array): number {
  return decodeState(state).bytesHashed;
}
