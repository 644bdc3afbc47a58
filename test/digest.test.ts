import { createHash } from 'node:crypto';
import { CID } from 'multiformats/cid';
import { describe, expect, it } from 'vitest';
import {
  cidToDigest,
  digestToCid,
  digestToMultihash,
  formatDigest,
  isDigest,
  multihashToDigest,
  parseDigest,
} from '../src/digest.js';
import { isBlobcoreError } from '../src/errors.js';

const hex256 = createHash('sha256').update('blobcore').digest('hex');
const hex512 = createHash('sha512').update('blobcore').digest('hex');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return isBlobcoreError(error) ? error.code : `not a BlobcoreError: ${String(error)}`;
  }
}

describe('parseDigest', () => {
  it('accepts sha256 and sha512 in canonical form', () => {
    expect(parseDigest(`sha256:${hex256}`)).toEqual({
      algorithm: 'sha256',
      hex: hex256,
      value: `sha256:${hex256}`,
    });
    expect(parseDigest(`sha512:${hex512}`).algorithm).toBe('sha512');
    expect(isDigest(`sha256:${hex256}`)).toBe(true);
  });

  const invalid: [string, unknown][] = [
    ['empty', ''],
    ['no algorithm', hex256],
    ['uppercase hex', `sha256:${hex256.toUpperCase()}`],
    ['one uppercase digit', `sha256:${hex256.slice(0, 63)}A`],
    ['uppercase algorithm', `SHA256:${hex256}`],
    ['too short', `sha256:${hex256.slice(0, 63)}`],
    ['too long', `sha256:${hex256}0`],
    ['sha512 length under sha256', `sha256:${hex512}`],
    ['sha256 length under sha512', `sha512:${hex256}`],
    ['unknown algorithm', `md5:${hex256.slice(0, 32)}`],
    ['sha384', `sha384:${hex512.slice(0, 96)}`],
    ['leading space', ` sha256:${hex256}`],
    ['trailing newline', `sha256:${hex256}\n`],
    ['space after colon', `sha256: ${hex256}`],
    ['missing hex', 'sha256:'],
    ['missing colon', `sha256${hex256}`],
    ['double colon', `sha256::${hex256}`],
    ['non-hex letter', `sha256:${hex256.slice(0, 63)}g`],
    ['algorithm with plus', `sha256+b64:${hex256}`],
    ['NUL byte', `sha256:${hex256.slice(0, 63)}\0`],
    ['not a string', 42],
    ['unicode digit', `sha256:${hex256.slice(0, 63)}٣`],
  ];
  it.each(invalid)('rejects %s with DIGEST_INVALID', (_name, input) => {
    expect(codeOf(() => parseDigest(input as string))).toBe('DIGEST_INVALID');
    expect(isDigest(input)).toBe(false);
  });
});

describe('multihash and CID conversions', () => {
  it.each([`sha256:${hex256}`, `sha512:${hex512}`])('round-trips %s losslessly', (digest) => {
    const multihash = digestToMultihash(digest);
    expect(multihash.code).toBe(digest.startsWith('sha256') ? 0x12 : 0x13);
    expect(multihashToDigest(multihash)).toBe(digest);
    expect(multihashToDigest(multihash.bytes)).toBe(digest);
    const cid = digestToCid(digest);
    expect(cid.version).toBe(1);
    expect(cid.code).toBe(0x55);
    expect(cidToDigest(cid)).toBe(digest);
    expect(cidToDigest(cid.toString())).toBe(digest);
    expect(cidToDigest(CID.parse(cid.toString()))).toBe(digest);
  });

  it('formats raw hash bytes', () => {
    expect(formatDigest('sha256', createHash('sha256').update('blobcore').digest())).toBe(`sha256:${hex256}`);
    expect(codeOf(() => formatDigest('sha256', new Uint8Array(31)))).toBe('DIGEST_INVALID');
  });

  it('rejects CIDs that are not raw v1 and multihashes of other functions', () => {
    const dagPb = CID.createV0(digestToMultihash(`sha256:${hex256}`) as never);
    expect(codeOf(() => cidToDigest(dagPb))).toBe('DIGEST_INVALID');
    expect(codeOf(() => cidToDigest('not-a-cid'))).toBe('DIGEST_INVALID');
    const identity = new Uint8Array([0x00, 0x03, 1, 2, 3]);
    expect(codeOf(() => multihashToDigest(identity))).toBe('DIGEST_INVALID');
    expect(codeOf(() => multihashToDigest(new Uint8Array([0xff])))).toBe('DIGEST_INVALID');
  });
});
