/**
 * OCI content digests: `sha256:<64 lowercase hex>` and `sha512:<128 lowercase hex>`.
 *
 * Parsing is strict on purpose: a digest names content forever, so `SHA256:`, uppercase
 * hex, surrounding whitespace or a wrong length are refused (DIGEST_INVALID) rather
 * than normalised — two spellings of one digest would split dedup and links.
 *
 * Conversions to a multihash and a CIDv1 (raw codec) are lossless and reversible.
 */
import { CID } from 'multiformats/cid';
import * as raw from 'multiformats/codecs/raw';
import * as Multihash from 'multiformats/hashes/digest';
import type { MultihashDigest } from 'multiformats/hashes/interface';
import { blobError } from './errors.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

/** A validated digest. `toString()` gives back the canonical OCI string. */
export interface Digest {
  readonly algorithm: DigestAlgorithm;
  /** Lowercase hex of the hash bytes. */
  readonly hex: string;
  /** `algorithm:hex`, the canonical form. */
  readonly value: string;
}

interface AlgorithmSpec {
  hexLength: number;
  multihashCode: number;
}

const ALGORITHMS: Record<DigestAlgorithm, AlgorithmSpec> = {
  sha256: { hexLength: 64, multihashCode: 0x12 },
  sha512: { hexLength: 128, multihashCode: 0x13 },
};

/** Every algorithm a digest may use: the first segment under `blobs/` and `touches/` (./layout.ts). */
export const DIGEST_ALGORITHMS = Object.keys(ALGORITHMS) as DigestAlgorithm[];

const DIGEST_PATTERN = /^(sha256|sha512):([0-9a-f]+)$/;

function invalid(input: unknown, why: string): never {
  const shown = typeof input === 'string' ? JSON.stringify(input.slice(0, 160)) : typeof input;
  throw blobError('DIGEST_INVALID', `invalid digest ${shown}: ${why}`);
}

/** Parses an OCI digest string; DIGEST_INVALID for anything but the canonical form. */
export function parseDigest(input: string): Digest {
  if (typeof input !== 'string') invalid(input, 'not a string');
  const match = DIGEST_PATTERN.exec(input);
  if (!match) invalid(input, 'expected sha256:<64 hex> or sha512:<128 hex>, lowercase');
  const algorithm = match[1] as DigestAlgorithm;
  const hex = match[2] as string;
  const expected = ALGORITHMS[algorithm].hexLength;
  if (hex.length !== expected) invalid(input, `${algorithm} needs ${expected} hex digits, got ${hex.length}`);
  return { algorithm, hex, value: input };
}

export function isDigest(input: unknown): input is string {
  if (typeof input !== 'string') return false;
  const match = DIGEST_PATTERN.exec(input);
  return match !== null && (match[2] as string).length === ALGORITHMS[match[1] as DigestAlgorithm].hexLength;
}

/** Builds a digest from raw hash bytes. */
export function formatDigest(algorithm: DigestAlgorithm, bytes: Uint8Array): string {
  const spec = ALGORITHMS[algorithm];
  if (bytes.length * 2 !== spec.hexLength) {
    invalid(`${algorithm}:…`, `${algorithm} hash must be ${spec.hexLength / 2} bytes, got ${bytes.length}`);
  }
  return `${algorithm}:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')}`;
}

export function digestBytes(digest: string | Digest): Uint8Array {
  const parsed = typeof digest === 'string' ? parseDigest(digest) : digest;
  return new Uint8Array(Buffer.from(parsed.hex, 'hex'));
}

/** Digest → multihash (sha2-256 0x12, sha2-512 0x13). */
export function digestToMultihash(digest: string | Digest): MultihashDigest {
  const parsed = typeof digest === 'string' ? parseDigest(digest) : digest;
  return Multihash.create(ALGORITHMS[parsed.algorithm].multihashCode, digestBytes(parsed));
}

/** Multihash (object or encoded bytes) → digest string. DIGEST_INVALID for other hash functions. */
export function multihashToDigest(multihash: MultihashDigest | Uint8Array): string {
  let decoded: MultihashDigest;
  try {
    decoded = multihash instanceof Uint8Array ? Multihash.decode(multihash) : multihash;
  } catch (cause) {
    throw blobError('DIGEST_INVALID', 'not a valid multihash', { cause });
  }
  for (const [algorithm, spec] of Object.entries(ALGORITHMS) as [DigestAlgorithm, AlgorithmSpec][]) {
    if (decoded.code === spec.multihashCode) return formatDigest(algorithm, decoded.digest);
  }
  throw blobError('DIGEST_INVALID', `unsupported multihash code 0x${decoded.code.toString(16)}`);
}

/** Digest → CIDv1 with the raw codec (0x55): content addressed exactly as stored. */
export function digestToCid(digest: string | Digest): CID {
  return CID.createV1(raw.code, digestToMultihash(digest));
}

/** CIDv1 raw (object or string) → digest string. DIGEST_INVALID for other codecs or versions. */
export function cidToDigest(cid: CID | string): string {
  let parsed: CID;
  try {
    parsed = typeof cid === 'string' ? CID.parse(cid) : cid;
  } catch (cause) {
    throw blobError('DIGEST_INVALID', 'not a valid CID', { cause });
  }
  if (parsed.version !== 1 || parsed.code !== raw.code) {
    throw blobError(
      'DIGEST_INVALID',
      `expected a CIDv1 with the raw codec, got v${parsed.version} 0x${parsed.code.toString(16)}`,
    );
  }
  return multihashToDigest(parsed.multihash);
}
