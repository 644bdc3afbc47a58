/**
 * The fs driver: a single-host local filesystem, the embedded default (`file:///abs/path`).
 *
 * Layout, atomicity, create-only and compare-and-swap rules, multipart staging and the
 * temp-file sweep are described in ./posix.ts (shared with the pvc driver) and README.md.
 * Defaults: durability 'full' (an acknowledged write survives power loss: fsync of the
 * file before rename and of its directory after), no retries, files and directories
 * created with the process umask.
 */
import { fileURLToPath } from 'node:url';
import { guardDriver } from '../../src/driver.js';
import { blobError } from '../../src/errors.js';
import { DURABILITIES, type Durability, PosixDriver, type PosixDriverHandle, withExtras } from './posix.js';
import { NO_RETRY } from './sys.js';

export { detectMount, type FsFamily, fsFamily, parseMountInfo } from './mountinfo.js';
export type {
  Durability,
  FsInfo,
  PosixExtras,
  PosixStats,
  PosixUsage,
  ProbeResult,
  SweepOptions,
  SweepReport,
} from './posix.js';
export { etagOf, FORMAT_NAME, FORMAT_VERSION, MAX_DIR_SEGMENT_BYTES, POSIX_LIMITS } from './posix.js';

export interface FsDriverOptions {
  /** Absolute path of the store root; created if missing. The data lives in `<root>/v1/`. */
  root: string;
  /**
   * 'full' (default): fsync the file before rename and the directory after, so an
   * acknowledged write survives power loss. 'data': fsync the file only (a crash may lose
   * the last renames but never exposes a torn file). 'none': no fsync (tests, caches).
   */
  durability?: Durability;
  /** Lease after which a lock, claim or temp file of an owner on another host counts as abandoned. Default 30 s. */
  leaseMs?: number;
  /** How long a writer waits for a key lock before UNAVAILABLE. Default 60 s. */
  lockTimeoutMs?: number;
  /** Force hard-link use (link capability, link()-based create-only) on or off. Default: detected. */
  hardLinks?: boolean;
  /** Mount table to read (tests). Default /proc/self/mountinfo. */
  mountInfoPath?: string;
}

export type FsDriver = PosixDriverHandle;

export const DEFAULT_LEASE_MS = 30_000;
export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;

export function checkDurability(value: unknown): Durability {
  if (value === undefined) return 'full';
  if (typeof value === 'string' && (DURABILITIES as readonly string[]).includes(value))
    return value as Durability;
  throw blobError(
    'UNSUPPORTED',
    `durability must be one of ${DURABILITIES.join(', ')}, got ${String(value)}`,
  );
}

export function checkPositive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value;
  throw blobError('UNSUPPORTED', `${name} must be a positive number of milliseconds, got ${String(value)}`);
}

export function createFsDriver(options: FsDriverOptions): FsDriver {
  if (!options || typeof options.root !== 'string')
    throw blobError('UNSUPPORTED', 'fs driver needs a root path');
  const inner = new PosixDriver({
    name: 'fs',
    root: options.root,
    durability: checkDurability(options.durability),
    createRoot: true,
    groupShared: false,
    retry: NO_RETRY,
    freshStat: false,
    leaseMs: checkPositive('leaseMs', options.leaseMs, DEFAULT_LEASE_MS),
    lockTimeoutMs: checkPositive('lockTimeoutMs', options.lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS),
    reserve: undefined,
    mountInfoPath: options.mountInfoPath ?? '/proc/self/mountinfo',
    hardLinks: options.hardLinks,
  });
  return withExtras(guardDriver(inner), inner);
}

/** Reads numeric and boolean query parameters shared by `file:` and `pvc:` URLs. */
export function queryOptions(
  url: URL,
  allowed: readonly string[],
): Record<string, string> & { durability?: string } {
  const out: Record<string, string> = {};
  for (const [name, value] of url.searchParams) {
    if (!allowed.includes(name)) {
      throw blobError(
        'UNSUPPORTED',
        `unknown ${url.protocol} store option "${name}" (known: ${allowed.join(', ')})`,
      );
    }
    out[name] = value;
  }
  return out;
}

export function numberParam(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0)
    throw blobError('UNSUPPORTED', `${name} must be a positive number`);
  return number;
}

export function booleanParam(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw blobError('UNSUPPORTED', `${name} must be true or false`);
}

/**
 * `file:///abs/path?durability=full&leaseMs=30000&lockTimeoutMs=60000&hardLinks=true`
 * → FsDriverOptions. Unknown parameters are rejected (UNSUPPORTED).
 */
export function fsDriverOptionsFromUrl(url: URL | string): FsDriverOptions {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  if (parsed.protocol !== 'file:') throw blobError('UNSUPPORTED', `not a file: URL: ${parsed.href}`);
  if (parsed.host !== '' && parsed.host !== 'localhost') {
    throw blobError(
      'UNSUPPORTED',
      `file: URLs must name a local path (file:///abs/path), got host ${parsed.host}`,
    );
  }
  const query = queryOptions(parsed, ['durability', 'leaseMs', 'lockTimeoutMs', 'hardLinks']);
  const options: FsDriverOptions = { root: fileURLToPath(parsed) };
  if (query.durability !== undefined) options.durability = checkDurability(query.durability);
  const leaseMs = numberParam('leaseMs', query.leaseMs);
  if (leaseMs !== undefined) options.leaseMs = leaseMs;
  const lockTimeoutMs = numberParam('lockTimeoutMs', query.lockTimeoutMs);
  if (lockTimeoutMs !== undefined) options.lockTimeoutMs = lockTimeoutMs;
  const hardLinks = booleanParam('hardLinks', query.hardLinks);
  if (hardLinks !== undefined) options.hardLinks = hardLinks;
  return options;
}

export function createFsDriverFromUrl(url: URL | string): FsDriver {
  return createFsDriver(fsDriverOptionsFromUrl(url));
}
