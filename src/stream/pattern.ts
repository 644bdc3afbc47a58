/**
 * Deterministic pseudo-random bytes with random access: AES-128-CTR over zeros, keyed
 * by a seed. Any process can regenerate any slice of a "blob" without storing it, which
 * lets the self-test, benchmarks and tests hand halves of one upload to two processes.
 */
import { createCipheriv, createHash } from 'node:crypto';

export function patternBytes(seed: string, offset: number, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const block = Math.floor(offset / 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(block), 8);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  const skip = offset - block * 16;
  const out = cipher.update(Buffer.alloc(length + skip));
  return out.subarray(skip);
}
