/**
 * The pvc driver: a volume shared by many registry replicas (`pvc:///mount/path`), such as
 * a Kubernetes PersistentVolumeClaim mounted ReadWriteMany over NFS, CephFS or SMB.
 *
 * Same engine and on-disk layout as the fs driver (../fs/posix.ts), so a volume moves
 * between them. What the pvc profile changes:
 *   - no flock and no in-process-only locking: create-only is link() (or, where the
 *     filesystem has no hard links, a lease lock + existence check + rename); every other
 *     replacement and delete holds a per-key lease lock file (O_EXCL, owner id, expiry);
 *   - stat and compare-and-swap checks re-read attributes from the server (open+fstat,
 *     NFS close-to-open), so an attribute cache cannot hide a newer version;
 *   - metadata calls retry ESTALE/EAGAIN/EBUSY/ETIMEDOUT with exponential backoff;
 *   - durability 'full' by default;
 *   - files are created group read/write and directories group-writable + setgid on top of
 *     the umask's bits for others (OpenShift runs pods with an arbitrary uid in group 0);
 *   - a `reserve` (bytes or a percentage of capacity) that a write or part of known size
 *     may not eat into: INSUFFICIENT_STORAGE before anything is written;
 *   - the filesystem type comes from /proc/self/mountinfo; hard links are declared only
 *     where they work (not on SMB/CIFS), checked by a probe at start;
 *   - `probe()` for readiness checks.
 */
import { guardDriver } from '../../src/driver.js';
import { blobError } from '../../src/errors.js';
import {
  booleanParam,
  checkDurability,
  checkPositive,
  DEFAULT_LEASE_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  numberParam,
  queryOptions,
} from '../fs/index.js';
import {
  type Durability,
  PosixDriver,
  type PosixDriverHandle,
  type ReserveFn,
  withExtras,
} from '../fs/posix.js';
import { NETWORK_RETRY } from '../fs/sys.js';

export type {
  Durability,
  FsInfo,
  PosixExtras,
  PosixStats,
  PosixUsage,
  ProbeResult,
  SweepOptions,
  SweepReport,
} from '../fs/index.js';

export interface PvcDriverOptions {
  /** Absolute path of the mounted volume (or a folder in it). Must exist; data lives in `<root>/v1/`. */
  root: string;
  /** Default 'full' (fsync file and directory). See the fs driver for 'data' and 'none'. */
  durability?: Durability;
  /**
   * Space to keep free: a number of bytes, or a string such as '5%' (of capacity),
   * '512MiB', '2GiB', '1000000'. A write or part of known size that would leave less
   * free fails with INSUFFICIENT_STORAGE before writing. Default: none.
   */
  reserve?: number | string;
  /** Lease of locks, claims and temp files whose owner is on another host. Default 30 s. */
  leaseMs?: number;
  /** How long a writer waits for a key lock before UNAVAILABLE. Default 60 s. */
  lockTimeoutMs?: number;
  /** Retries of metadata calls failing with ESTALE/EAGAIN/EBUSY/ETIMEDOUT. Default 6 attempts from 5 ms. */
  retry?: { attempts?: number; baseDelayMs?: number };
  /** Group read/write files and setgid group-writable directories. Default true. */
  groupShared?: boolean;
  /** Force hard-link use on or off. Default: from the filesystem type, checked by a probe. */
  hardLinks?: boolean;
  /** Mount table to read (tests). Default /proc/self/mountinfo. */
  mountInfoPath?: string;
}

export type PvcDriver = PosixDriverHandle;

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** Parses a reserve: bytes, `N%` of capacity, or `N<unit>` (KiB/MiB/GiB/TiB, KB/MB/GB/TB, K/M/G/T). */
export function parseReserve(value: number | string | undefined): ReserveFn | undefined {
  if (value === undefined) return undefined;
  const invalid = () =>
    blobError(
      'UNSUPPORTED',
      `reserve must be bytes, a percentage like "5%" or a size like "512MiB", got ${value}`,
    );
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw invalid();
    return () => Math.floor(value);
  }
  const text = value.trim();
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
  if (percent) {
    const fraction = Number(percent[1]) / 100;
    if (fraction > 1) throw invalid();
    return (capacity) => Math.ceil(capacity * fraction);
  }
  const sized = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text);
  const unit = sized ? UNITS[(sized[2] as string).toLowerCase()] : undefined;
  if (!sized || unit === undefined) throw invalid();
  const bytes = Math.floor(Number(sized[1]) * unit);
  return () => bytes;
}

export function createPvcDriver(options: PvcDriverOptions): PvcDriver {
  if (!options || typeof options.root !== 'string')
    throw blobError('UNSUPPORTED', 'pvc driver needs a root path');
  const attempts = options.retry?.attempts ?? NETWORK_RETRY.attempts;
  const baseDelayMs = options.retry?.baseDelayMs ?? NETWORK_RETRY.baseDelayMs;
  if (!Number.isSafeInteger(attempts) || attempts < 1 || !(baseDelayMs >= 0)) {
    throw blobError('UNSUPPORTED', 'retry.attempts must be a positive integer and retry.baseDelayMs >= 0');
  }
  const inner = new PosixDriver({
    name: 'pvc',
    root: options.root,
    durability: checkDurability(options.durability),
    createRoot: false,
    groupShared: options.groupShared ?? true,
    retry: { attempts, baseDelayMs, codes: NETWORK_RETRY.codes },
    freshStat: true,
    leaseMs: checkPositive('leaseMs', options.leaseMs, DEFAULT_LEASE_MS),
    lockTimeoutMs: checkPositive('lockTimeoutMs', options.lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS),
    reserve: parseReserve(options.reserve),
    mountInfoPath: options.mountInfoPath ?? '/proc/self/mountinfo',
    hardLinks: options.hardLinks,
  });
  return withExtras(guardDriver(inner), inner);
}

/**
 * `pvc:///mount/path?reserve=5%&durability=full&leaseMs=30000&lockTimeoutMs=60000&groupShared=true&hardLinks=false`
 * → PvcDriverOptions. `5%` may also be written `5%25`. Unknown parameters are rejected.
 */
export function pvcDriverOptionsFromUrl(url: URL | string): PvcDriverOptions {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  if (parsed.protocol !== 'pvc:') throw blobError('UNSUPPORTED', `not a pvc: URL: ${parsed.href}`);
  if (parsed.host !== '') throw blobError('UNSUPPORTED', `pvc: URLs name a local mount (pvc:///mount/path)`);
  const query = queryOptions(parsed, [
    'durability',
    'reserve',
    'leaseMs',
    'lockTimeoutMs',
    'groupShared',
    'hardLinks',
  ]);
  const options: PvcDriverOptions = { root: decodeURIComponent(parsed.pathname) };
  if (query.durability !== undefined) options.durability = checkDurability(query.durability);
  if (query.reserve !== undefined) {
    parseReserve(query.reserve); // validate now
    options.reserve = query.reserve;
  }
  const leaseMs = numberParam('leaseMs', query.leaseMs);
  if (leaseMs !== undefined) options.leaseMs = leaseMs;
  const lockTimeoutMs = numberParam('lockTimeoutMs', query.lockTimeoutMs);
  if (lockTimeoutMs !== undefined) options.lockTimeoutMs = lockTimeoutMs;
  const groupShared = booleanParam('groupShared', query.groupShared);
  if (groupShared !== undefined) options.groupShared = groupShared;
  const hardLinks = booleanParam('hardLinks', query.hardLinks);
  if (hardLinks !== undefined) options.hardLinks = hardLinks;
  return options;
}

export function createPvcDriverFromUrl(url: URL | string): PvcDriver {
  return createPvcDriver(pvcDriverOptionsFromUrl(url));
}
