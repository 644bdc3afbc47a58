/**
 * The shared key guard. Every key reaches a driver only after passing here, so a
 * driver can map keys to paths or object names without its own checks.
 *
 * A key is 1..1024 UTF-8 bytes of `/`-separated segments. Each segment is 1..255 bytes
 * (a filesystem name limit) drawn from `A-Z a-z 0-9 . _ - ~ = + @`, and is not `.` or
 * `..`. So: no leading or trailing `/`, no empty segments, no NUL, no backslash, no
 * spaces, no `:` (reserved on SMB shares). A segment may start with a dot (`.abc`).
 */
import { blobError } from './errors.js';

export const MAX_KEY_BYTES = 1024;
export const MAX_SEGMENT_BYTES = 255;
const SEGMENT_CHARS = /^[A-Za-z0-9._~=+@-]+$/;

function reject(key: unknown, why: string): never {
  const shown =
    typeof key === 'string' ? JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key) : typeof key;
  throw blobError('KEY_INVALID', `invalid key ${shown}: ${why}`);
}

function checkSegment(key: string, segment: string, partial: boolean): void {
  if (segment === '') {
    if (!partial) reject(key, 'empty segment');
    return;
  }
  if (!partial && (segment === '.' || segment === '..')) reject(key, `segment "${segment}" is not allowed`);
  if (segment.length > MAX_SEGMENT_BYTES) reject(key, `segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  if (!SEGMENT_CHARS.test(segment)) reject(key, 'characters outside [A-Za-z0-9._~=+@-]');
}

/** Throws KEY_INVALID unless `key` is a valid object key. */
export function validateKey(key: string): string {
  if (typeof key !== 'string') reject(key, 'not a string');
  if (key.length === 0) reject(key, 'empty');
  if (key.length > MAX_KEY_BYTES) reject(key, `longer than ${MAX_KEY_BYTES} bytes`);
  for (const segment of key.split('/')) checkSegment(key, segment, false);
  return key;
}

/**
 * Throws KEY_INVALID unless `prefix` can start a valid key: empty, or whole segments
 * followed by a partial last segment (which may be empty, i.e. a trailing `/`).
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') reject(prefix, 'not a string');
  if (prefix.length === 0) return prefix;
  if (prefix.length > MAX_KEY_BYTES) reject(prefix, `longer than ${MAX_KEY_BYTES} bytes`);
  const segments = prefix.split('/');
  segments.forEach((segment, i) => {
    checkSegment(prefix, segment, i === segments.length - 1);
  });
  return prefix;
}

export function isValidKey(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}

/** Joins segments with `/` and validates the result. */
export function joinKey(...segments: string[]): string {
  return validateKey(segments.join('/'));
}
