/**
 * Canonical SHA-256 hash state, format v1.
 *
 * Every implementation (the native addon over Node's OpenSSL, the hash-wasm fallback)
 * exports and imports exactly this, so a replica with the addon and one without can
 * resume each other's uploads. It is a plain field copy of the SHA-256 working state
 * (FIPS 180-4 §6.2): the eight chaining words, the message length so far, and the bytes
 * of the partial block not yet compressed.
 *
 * Layout (integers big-endian):
 *
 *   offset  size  field
 *   0       4     magic 'BCSH' (0x42 0x43 0x53 0x48)
 *   4       1     version = 1
 *   5       1     algorithm = 1 (SHA-256)
 *   6       1     n = buffered bytes of the partial block, 0..63
 *   7       1     reserved = 0
 *   8       32    h[0..7], u32 each
 *   40      8     total bytes hashed, u64, at most 2^53 - 1, and ≡ n (mod 64)
 *   48      n     the partial block's bytes
 *   48 + n  8     checksum: first 8 bytes of SHA-256(bytes 0 .. 48 + n)
 *
 * Total length 56 + n (56..119 bytes). Decoding rejects, with BLOB_UPLOAD_INVALID: a
 * non-Uint8Array, a wrong magic, version, algorithm or reserved byte, n ≥ 64, a length
 * other than 56 + n, a bad checksum, a byte count that is unsafe as a JS number or
 * inconsistent with n, and a state that claims fewer than 64 bytes but whose chaining
 * words are not the initial ones. The checksum catches storage corruption; it is not a
 * MAC (anyone can forge a state for data they chose, which only hurts their own upload,
 * because the final digest is always compared with the one the client claims).
 */
import { createHash } from 'node:crypto';
import { blobError } from '../errors.js';

export const STATE_MAGIC = Uint8Array.of(0x42, 0x43, 0x53, 0x48); // 'BCSH'
export const STATE_VERSION = 1;
export const STATE_ALGORITHM_SHA256 = 1;
const HEADER_LENGTH = 48;
const CHECKSUM_LENGTH = 8;
const BLOCK_SIZE = 64;

/** SHA-256 initial chaining words (FIPS 180-4 §5.3.3). */
export const SHA256_IV: readonly number[] = Object.freeze([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

/** The decoded working state of a SHA-256 computation. */
export interface Sha256State {
  /** The eight chaining words. */
  readonly h: readonly number[];
  /** Total message bytes hashed so far. */
  readonly bytesHashed: number;
  /** The partial block, `bytesHashed % 64` bytes. */
  readonly buffer: Uint8Array;
}

function invalid(message: string): never {
  throw blobError('BLOB_UPLOAD_INVALID', `invalid hash state: ${message}`);
}

function checksum(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, CHECKSUM_LENGTH);
}

/** Checks the invariants every state must hold, whichever way it was made. */
export function checkState(state: Sha256State): void {
  const { h, bytesHashed, buffer } = state;
  if (h.length !== 8 || !h.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
    invalid('chaining words are not eight u32 values');
  }
  if (!Number.isSafeInteger(bytesHashed) || bytesHashed < 0)
    invalid(`byte count ${bytesHashed} out of range`);
  if (buffer.length >= BLOCK_SIZE) invalid(`partial block of ${buffer.length} bytes (must be < 64)`);
  if (bytesHashed % BLOCK_SIZE !== buffer.length) {
    invalid(`byte count ${bytesHashed} does not match a partial block of ${buffer.length} bytes`);
  }
  if (bytesHashed < BLOCK_SIZE && h.some((w, i) => w !== SHA256_IV[i])) {
    invalid('no block was hashed but the chaining words are not the initial ones');
  }
}

export function encodeState(state: Sha256State): Uint8Array {
  checkState(state);
  const n = state.buffer.length;
  const out = new Uint8Array(HEADER_LENGTH + n + CHECKSUM_LENGTH);
  const view = new DataView(out.buffer);
  out.set(STATE_MAGIC, 0);
  out[4] = STATE_VERSION;
  out[5] = STATE_ALGORITHM_SHA256;
  out[6] = n;
  out[7] = 0;
  for (let i = 0; i < 8; i++) view.setUint32(8 + 4 * i, state.h[i] ?? 0);
  view.setBigUint64(40, BigInt(state.bytesHashed));
  out.set(state.buffer, HEADER_LENGTH);
  out.set(checksum(out.subarray(0, HEADER_LENGTH + n)), HEADER_LENGTH + n);
  return out;
}

/** Parses and fully validates an exported state; throws BLOB_UPLOAD_INVALID. */
export function decodeState(bytes: unknown): Sha256State {
  if (!(bytes instanceof Uint8Array)) invalid('not a Uint8Array');
  if (bytes.length < HEADER_LENGTH + CHECKSUM_LENGTH) invalid(`too short (${bytes.length} bytes)`);
  for (let i = 0; i < STATE_MAGIC.length; i++) if (bytes[i] !== STATE_MAGIC[i]) invalid('bad magic');
  if (bytes[4] !== STATE_VERSION) invalid(`unsupported version ${bytes[4]}`);
  if (bytes[5] !== STATE_ALGORITHM_SHA256) invalid(`unsupported algorithm ${bytes[5]}`);
  const n = bytes[6] ?? 0;
  if (n >= BLOCK_SIZE) invalid(`partial block of ${n} bytes (must be < 64)`);
  if (bytes[7] !== 0) invalid('reserved byte is not zero');
  const bodyLength = HEADER_LENGTH + n;
  if (bytes.length !== bodyLength + CHECKSUM_LENGTH) {
    invalid(`length ${bytes.length} (expected ${bodyLength + CHECKSUM_LENGTH})`);
  }
  const expected = checksum(bytes.subarray(0, bodyLength));
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    if (bytes[bodyLength + i] !== expected[i]) invalid('checksum mismatch');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h: number[] = [];
  for (let i = 0; i < 8; i++) h.push(view.getUint32(8 + 4 * i));
  const count = view.getBigUint64(40);
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) invalid(`byte count ${count} out of range`);
  const state: Sha256State = {
    h,
    bytesHashed: Number(count),
    buffer: bytes.slice(HEADER_LENGTH, bodyLength),
  };
  checkState(state);
  return state;
}
