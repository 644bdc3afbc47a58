/**
 * A digest computed while a driver reads (a ReadTap, src/driver.ts). The store's verified
 * get hands one to drivers with `capabilities.readTap` instead of hashing the stream in a
 * transform of its own; puts feed one through a HashTap, as the fastest SHA-256 at hand.
 *
 * For sha256 with the native addon the tap is native (native/byte-tap.h): the fs and pvc
 * drivers pass it to their reads, whose thread-pool worker hashes each chunk right after
 * reading it, while it is in that core's cache, and the JS thread hashes nothing. Measured
 * on a 256 MiB get: ~1.1 GB/s against ~0.9 GB/s hashing on the JS thread the chunks
 * another core had just read. Otherwise (sha512, no addon, BLOBCORE_HASH=wasm) the tap is
 * node:crypto, fed by `update`.
 */
import { createHash } from 'node:crypto';
import { type DigestAlgorithm, formatDigest } from '../digest.js';
import type { ReadTap } from '../driver.js';
import { hashModeFromEnv, selectImplementation } from './index.js';
import { loadNativeBinding, type NativeBinding } from './native.js';

export interface DigestTap extends ReadTap {
  /** The digest of every byte fed, as '<algorithm>:<hex>'. */
  digest(): string;
}

export function createDigestTap(algorithm: DigestAlgorithm): DigestTap {
  const binding = algorithm === 'sha256' ? nativeTapBinding() : undefined;
  if (binding) {
    const native = binding.createTap();
    return {
      native,
      update: (bytes) => binding.tapUpdate(native, bytes),
      digest: () => binding.tapDigest(native),
    };
  }
  const hash = createHash(algorithm);
  return {
    update: (bytes) => hash.update(bytes),
    digest: () => formatDigest(algorithm, hash.digest()),
  };
}

/**
 * The addon when the hash selection (BLOBCORE_HASH) is native and the build has taps. A
 * selection that fails (an unknown BLOBCORE_HASH, or `native` without the addon) is the
 * resumable hasher's error to raise: a verified get simply uses node:crypto.
 */
function nativeTapBinding(): NativeBinding | undefined {
  try {
    if (selectImplementation(hashModeFromEnv(), loadNativeBinding).implementation !== 'native')
      return undefined;
    const binding = loadNativeBinding();
    return typeof binding.createTap === 'function' ? binding : undefined;
  } catch {
    return undefined;
  }
}
