/**
 * The POSIX engine behind the fs and pvc drivers (one implementation, two profiles).
 *
 * On-disk layout, format v1 (a volume moves freely between the fs and pvc drivers):
 *
 *   <root>/v1/FORMAT                      {"format":"blobcore-posix","version":1,...}
 *   <root>/v1/objects/<s1>,/<s2>,/…/<sN>  object with key `s1/s2/…/sN`: directory segments
 *                                         carry a `,` suffix (`,` is not a key character), so
 *                                         keys `a` and `a/b` can both exist; the last segment
 *                                         is the file name, unchanged. A 255-byte directory
 *                                         segment (no room for the suffix) is stored as
 *                                         `,<sha256 hex of it>` holding a `,name` file with the
 *                                         segment. Sharding comes from the keys: the store uses
 *                                         `blobs/sha256/ab/cd/<hex>` and `data/ab/cd/<id>`, i.e.
 *                                         65,536 leaf directories, ~150 entries each at 10M blobs.
 *   <root>/v1/tmp/<owner>.<rand>.tmp      temp files of writes in flight (same filesystem, so
 *                                         rename never hits EXDEV); never listed
 *   <root>/v1/tmp/<owner>.<rand>.dead     staging directories being removed
 *   <root>/v1/staging/<uploadId>/         one multipart upload:
 *        meta.json                        {"key": target key, "created": ...}
 *        data                             the object being assembled, parts written in place
 *        r.<part>.<offset>.<size>.<etag>  receipt of a written part (empty file)
 *        c.<start>.<end|x>.<owner>.<rand> claim on a byte range while a part is written;
 *                                         `c.0.x.…` is the seal taken by completion
 *        complete.json                    {"key","etag","size"} written just before publishing
 *   <root>/v1/locks/<sha256(key)[0..40]>  per-key lock files (O_EXCL), see ./owner.ts
 *
 * Writes: body → exclusive temp file (large batched writes, no per-chunk fsync) → mtime set
 * to a random instant within the last two seconds (etag entropy, see below) → fsync per
 * durability → publish:
 *   - create-only (`ifNoneMatch: '*'`): link(temp, final); EEXIST → PRECONDITION_FAILED.
 *     Without hard links: under the key lock, check absence and rename.
 *   - `ifMatch` and unconditional writes: under the key lock, compare the current etag
 *     (re-read from the server: open+fstat on network filesystems) and rename(temp, final).
 *   - delete: under the key lock, unlink. So every check-then-act on a key is serialized
 *     across processes, and link-based create-only needs no lock at all.
 *   then fsync the parent directory when durability is `full`. A small conditional write
 *   that publishes under the lock (a record swap) takes it while its temp file is written,
 *   and checks while the file syncs: fewer calls one after the other. A write behind a
 *   barrier (`notBefore`, capabilities.writeBarrier) writes its temp file (and takes that
 *   lock) at once, then syncs and publishes once the barrier is passed.
 * Etag: `"<ino>-<mtime ns>-<size>"` (base 36). Objects are never modified in place, so a
 * new version is a new inode; because ext4 reuses freed inode numbers at once, the mtime
 * of every published file is stamped explicitly at sub-microsecond resolution (see
 * `stampSeconds`), so an inode reused by a later version still gets a new etag.
 *
 * Multipart: parts are written with pwrite at their offset into staging `data`; a writer
 * first creates a claim for its byte range, then lists the claims: if another live claim
 * overlaps it backs off with PRECONDITION_FAILED (both may back off, never both proceed),
 * then runs the caller's `hold.before` (capabilities.exclusiveParts), removes receipts its
 * range overlaps, writes (with a background fdatasync every PART_SYNC_BYTES, so writeback
 * overlaps the rest of the body) while it creates its receipt and (full) fsyncs the folder,
 * runs `hold.written(ref, durable)` once every byte is written, while it fdatasyncs the
 * rest, and drops its claim only after both. (fdatasync suffices: the bytes and the size
 * must survive, the mtime need not; completion fsyncs. A receipt made before its bytes
 * are durable is safe: completion trusts only receipts carrying the etag of a part the
 * caller recorded, and the caller records it only once `durable` fulfils.)
 * Completion takes the seal claim (same rule), checks the
 * receipts of the given parts (same etag, contiguous from 0), truncates, fsyncs, records
 * complete.json and renames `data` onto the key: O(1) in the object size. A retried
 * completion after a crash finds complete.json and the published object and succeeds.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  type BigIntStats,
  chmodSync,
  close as closeDescriptor,
  closeSync,
  type Dirent,
  fstatSync,
  futimesSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { Readable } from 'node:stream';
import { BufferPool } from '../../src/buffer-pool.js';
import type {
  Body,
  DeleteOptions,
  Driver,
  DriverCapabilities,
  DriverLimits,
  ListOptions,
  ListPage,
  MultipartHandle,
  ObjectStat,
  PartOptions,
  PartRef,
  ReadOptions,
  ReadTap,
  SignalOptions,
  StorageUsage,
  WriteOptions,
  WriteResult,
} from '../../src/driver.js';
import { DEFAULT_LIST_LIMIT } from '../../src/driver.js';
import { abortable, BlobcoreError, blobError, throwIfAborted } from '../../src/errors.js';
import { MAX_SEGMENT_BYTES, validateKey } from '../../src/keys.js';
import { type DetectedMount, detectMount } from './mountinfo.js';
import {
  breakStale,
  currentOwner,
  inspectLock,
  isStale,
  KeyLocks,
  LeaseRefresher,
  type OwnerIdentity,
  ownerAlive,
  parseOwnerTag,
} from './owner.js';
import { DirPruner } from './pruner.js';
import {
  EARLY_SYNC_BYTES,
  FileSink,
  isErrno,
  mapFsError,
  READ_CHUNK_BYTES,
  type RetryPolicy,
  STREAM_CHUNK_BYTES,
  Sys,
  writeBody,
} from './sys.js';

export type Durability = 'none' | 'data' | 'full';
export const DURABILITIES: readonly Durability[] = ['none', 'data', 'full'];

export const FORMAT_NAME = 'blobcore-posix';
export const FORMAT_VERSION = 1;
const DIR_SUFFIX = ',';
const SEGMENT_CHARS = /^[A-Za-z0-9._~=+@-]+$/;
const UPLOAD_ID = /^[0-9a-f]{32}$/;
/** Directory segments up to this length carry a one-byte suffix; longer ones are hashed. */
export const MAX_DIR_SEGMENT_BYTES = MAX_SEGMENT_BYTES - 1;
const LONG_DIR = /^,[0-9a-f]{64}$/;
const LONG_DIR_NAME_FILE = ',name';

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The directory name of a key segment (see the layout above). */
function dirName(segment: string): string {
  return segment.length <= MAX_DIR_SEGMENT_BYTES ? `${segment}${DIR_SUFFIX}` : `,${sha256Hex(segment)}`;
}

/**
 * Limits. Parts are written in place, so a part has no fixed cost to amortise: every
 * appended chunk goes straight to its final position and the store never needs its
 * small-tail path. maxPartSize only bounds one call (1 TiB); maxParts matches S3.
 */
export const POSIX_LIMITS: DriverLimits = {
  minPartSize: 1,
  maxPartSize: 2 ** 40,
  maxParts: 10_000,
};

/** Reserve: bytes to keep free, as a function of the volume's capacity. */
export type ReserveFn = (capacity: number) => number;

export interface PosixConfig {
  name: string;
  root: string;
  durability: Durability;
  /** fs: create the root if missing. pvc: the root is a mount and must exist. */
  createRoot: boolean;
  /** pvc: group rw files and setgid, group-writable directories on top of the umask. */
  groupShared: boolean;
  retry: RetryPolicy;
  /** Re-read attributes from the server (open+fstat) for stat and etag checks. */
  freshStat: boolean;
  leaseMs: number;
  lockTimeoutMs: number;
  reserve: ReserveFn | undefined;
  mountInfoPath: string;
  /** Force hard-link use on or off; default: detect. */
  hardLinks: boolean | undefined;
}

export interface FsInfo {
  fsType: string;
  family: string;
  mountPoint: string;
  source: string;
  network: boolean;
  hardLinks: boolean;
  /** Sub-microsecond mtimes are stored (etag entropy); false on coarse filesystems. */
  preciseTimestamps: boolean;
}

export interface SweepOptions extends SignalOptions {
  /** Only remove files not modified for this many milliseconds. Default 15 minutes. */
  olderThan?: number | undefined;
}

export interface SweepReport {
  scanned: number;
  removed: number;
  kept: number;
  bytesFreed: number;
}

export interface ProbeResult {
  ok: boolean;
  driver: string;
  root: string;
  fsType: string;
  latencyMs: number;
  usage?: StorageUsage & { reserved: number };
  error?: { code: string; message: string };
}

export interface PosixStats {
  fileSyncs: number;
  dirSyncs: number;
}

export interface PosixUsage extends StorageUsage {
  /** Bytes kept free by the reserve (pvc); `free` already excludes them. */
  reserved: number;
}

interface Temp {
  handle: FileHandle | undefined;
  path: string;
}

interface Claim {
  handle: FileHandle;
  path: string;
  /** The staging folder's names as listed right after the claim was made. */
  names: string[];
}

interface Receipt {
  partNumber: number;
  offset: number;
  size: number;
  etag: string;
  name: string;
}

const DEFAULT_SWEEP_AGE_MS = 15 * 60 * 1000;

function readUmask(): number {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const match = /^Umask:\s*([0-7]+)/m.exec(status);
    if (match) return Number.parseInt(match[1] as string, 8);
  } catch {
    // fall through
  }
  const mask = process.umask(0o022);
  process.umask(mask);
  return mask;
}

export function etagOf(stat: BigIntStats): string {
  return `"${stat.ino.toString(36)}-${stat.mtimeNs.toString(36)}-${stat.size.toString(36)}"`;
}

function statToObject(stat: BigIntStats): ObjectStat {
  return {
    size: Number(stat.size),
    etag: etagOf(stat),
    modified: new Date(Number(stat.mtimeNs / 1_000_000n)),
  };
}

let lastStamp = 0;

/**
 * The mtime stamped on every published file, in seconds for futimes: wall-clock time at
 * sub-microsecond resolution (performance.timeOrigin + performance.now(); ~240 ns after
 * the double conversion), strictly increasing within a process. Successive versions of
 * a key are published one after another, so a later version that reuses a freed inode
 * number still gets a later mtime and therefore a new etag.
 */
function stampSeconds(): number {
  const now = (performance.timeOrigin + performance.now()) / 1000;
  lastStamp = Math.max(now, lastStamp + 1e-6);
  return lastStamp;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

function parseReceipt(name: string): Receipt | null {
  if (!name.startsWith('r.')) return null;
  const parts = name.split('.');
  if (parts.length !== 5) return null;
  const partNumber = Number(parts[1]);
  const offset = Number(parts[2]);
  const size = Number(parts[3]);
  const etag = parts[4] as string;
  if (![partNumber, offset, size].every(Number.isSafeInteger)) return null;
  return { partNumber, offset, size, etag, name };
}

interface ParsedClaim {
  start: number;
  end: number;
  tag: string;
}

function parseClaim(name: string): ParsedClaim | null {
  if (!name.startsWith('c.')) return null;
  const parts = name.split('.');
  if (parts.length !== 8) return null;
  const start = Number(parts[1]);
  const end = parts[2] === 'x' ? Number.POSITIVE_INFINITY : Number(parts[2]);
  if (!Number.isSafeInteger(start) || Number.isNaN(end)) return null;
  return { start, end, tag: parts.slice(3, 7).join('.') };
}

function claimsOverlap(a: ParsedClaim, b: ParsedClaim): boolean {
  if (a.end === Number.POSITIVE_INFINITY || b.end === Number.POSITIVE_INFINITY) return true;
  return a.start < b.end && b.start < a.end;
}

function rangesOverlap(aStart: number, aEnd: number, bStart: number, bEnd: number): boolean {
  return aStart < bEnd && bStart < aEnd;
}

/**
 * A part's background fdatasync step (FileSink `syncEvery`): smaller than a whole
 * object's, because parts are often single 1–8 MiB chunks and the sync should start
 * while the rest of the chunk still streams and hashes.
 */
const PART_SYNC_BYTES = 4 * 1024 * 1024;
/** In-memory bodies up to this size take their key's lock before being written (see write). */
const EARLY_LOCK_BYTES = 64 * 1024;
/** Staging folders whose key this process remembers (see openStaging). */
const STAGING_KEYS_KEPT = 1024;
/** A whole read on a local filesystem starts with one pread of this size (see `read`). */
const SMALL_READ_BYTES = 16 * 1024;
/** Filesystems whose short read of a regular file means its end (not FUSE, 9p, network). */
const SHORT_READ_IS_END: ReadonlySet<string> = new Set(['ext4', 'xfs', 'btrfs', 'tmpfs', 'overlay']);
/**
 * Stream chunks come from a pool that recycles a chunk's memory once its consumer drops it
 * (src/buffer-pool.ts): fresh memory for every chunk held a 256 MiB read to 0.67 GB/s.
 * 32 MiB idle covers what one garbage collection gives back during a fast read.
 */
const streamBuffers = new BufferPool(STREAM_CHUNK_BYTES, 32 * 1024 * 1024);
/**
 * Reads in flight on a stream fed to a native tap: two workers, each reading a chunk and
 * then hashing it from its cache, so one's read overlaps the other's hash. Measured on a
 * 256 MiB get: one at a time 0.85–0.93 GB/s, two 1.03–1.14, three 0.95–1.05.
 */
const FED_READS_IN_FLIGHT = 2;
/** Closes the descriptor of a read stream dropped without being ended or destroyed. */
const abandonedReads = new FinalizationRegistry<number>((fd) => closeDescriptor(fd, () => {}));

export class PosixDriver implements Driver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  readonly limits: DriverLimits = POSIX_LIMITS;
  readonly root: string;
  readonly durability: Durability;
  readonly fsInfo: FsInfo;

  private readonly config: PosixConfig;
  private readonly sys: Sys;
  private readonly owner: OwnerIdentity;
  private readonly base: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly stagingDir: string;
  private readonly locksDir: string;
  private readonly fileMode: number;
  private readonly dirMode: number;
  /** Files need an fchmod after create (the umask strips group bits pvc wants). */
  private readonly chmodFiles: boolean;
  private readonly locks: KeyLocks;
  private readonly refresher: LeaseRefresher;
  private readonly pruner = new DirPruner((dir) => this.pruneUpward(dir));
  private layoutError: unknown;
  private layoutReady = false;
  private statfsCache: { at: number; avail: number; capacity: number; pending: number } | undefined;
  private readonly longSegments = new Map<string, string>();
  private readonly counters: PosixStats = { fileSyncs: 0, dirSyncs: 0 };
  /** Staging folders matched to their key by openStaging (oldest dropped past STAGING_KEYS_KEPT). */
  private readonly stagingKeys = new Map<string, string>();

  constructor(config: PosixConfig) {
    if (!isAbsolute(config.root)) {
      throw blobError(
        'UNSUPPORTED',
        `${config.name} driver root must be an absolute path, got ${config.root}`,
      );
    }
    this.config = config;
    this.name = config.name;
    this.root = config.root.length > 1 ? config.root.replace(/\/+$/, '') : config.root;
    this.durability = config.durability;
    this.sys = new Sys(config.retry);
    this.owner = currentOwner();
    this.base = `${this.root === '/' ? '' : this.root}/v${FORMAT_VERSION}`;
    this.objectsDir = `${this.base}/objects`;
    this.tmpDir = `${this.base}/tmp`;
    this.stagingDir = `${this.base}/staging`;
    this.locksDir = `${this.base}/locks`;
    const umask = readUmask();
    if (config.groupShared) {
      this.fileMode = (0o666 & ~umask) | 0o660;
      this.dirMode = (0o777 & ~umask) | 0o2770;
      this.chmodFiles = (0o666 & ~umask) !== this.fileMode;
    } else {
      this.fileMode = 0o666;
      this.dirMode = 0o777;
      this.chmodFiles = false;
    }
    this.refresher = new LeaseRefresher(Math.max(50, Math.floor(config.leaseMs / 4)));
    this.locks = new KeyLocks(this.sys, this.locksDir, this.owner, () => this.ensureDir(this.locksDir));
    this.tryLayoutSync();
    const mount = detectMount(this.layoutReady ? this.base : this.root, config.mountInfoPath);
    this.fsInfo = this.detectTraits(mount);
    this.capabilities = {
      conditionalWrite: true,
      signedUrl: false,
      copy: true,
      link: this.fsInfo.hardLinks,
      usage: true,
      exclusiveParts: true,
      readTap: true,
      writeBarrier: true,
    };
  }

  // ---------------------------------------------------------------- setup

  /** Creates v1/ and its folders and checks the format marker; remembers a failure. */
  private tryLayoutSync(): void {
    try {
      if (this.config.createRoot) mkdirSync(this.root, { recursive: true });
      const rootStat = statSync(this.root);
      if (!rootStat.isDirectory()) throw blobError('UNAVAILABLE', `${this.root} is not a directory`);
      for (const dir of [this.base, this.objectsDir, this.tmpDir, this.stagingDir, this.locksDir]) {
        try {
          mkdirSync(dir, { mode: this.dirMode });
          if (this.config.groupShared) chmodSync(dir, this.dirMode);
        } catch (error) {
          if (!isErrno(error, 'EEXIST')) throw error;
        }
      }
      const formatPath = `${this.base}/FORMAT`;
      const marker = `${JSON.stringify({ format: FORMAT_NAME, version: FORMAT_VERSION, created: new Date().toISOString() })}\n`;
      try {
        writeFileSync(formatPath, marker, { flag: 'wx', mode: this.fileMode });
        if (this.chmodFiles) chmodSync(formatPath, this.fileMode);
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw error;
        const text = readFileSync(formatPath, 'utf8');
        let parsed: { format?: unknown; version?: unknown } = {};
        try {
          parsed = JSON.parse(text) as typeof parsed;
        } catch {
          // a marker being written by another process right now reads as empty
          if (text.trim() !== '') throw blobError('UNSUPPORTED', `unreadable format marker ${formatPath}`);
          parsed = { format: FORMAT_NAME, version: FORMAT_VERSION };
        }
        if (parsed.format !== FORMAT_NAME || parsed.version !== FORMAT_VERSION) {
          throw blobError(
            'UNSUPPORTED',
            `${formatPath} describes format ${text.trim()}, this driver reads v1`,
          );
        }
      }
      this.layoutReady = true;
      this.layoutError = undefined;
    } catch (error) {
      this.layoutError = error;
    }
  }

  private detectTraits(mount: DetectedMount): FsInfo {
    let hardLinks = mount.traits.hardLinks;
    let preciseTimestamps = true;
    if (this.layoutReady) {
      const probe = `${this.tmpDir}/${this.owner.tag}.${randomBytes(6).toString('hex')}.probe`;
      try {
        const fd = openSync(probe, 'wx', this.fileMode);
        try {
          const stamp = 1_700_000_000 + 0.123456789;
          futimesSync(fd, stamp, stamp);
          const stat = fstatSync(fd, { bigint: true });
          preciseTimestamps = stat.mtimeNs % 1_000_000n !== 0n;
        } finally {
          closeSync(fd);
        }
        // The probe can only take hard links away: a family without dependable POSIX
        // links (SMB) keeps them off even where a test link happens to work.
        if (hardLinks) {
          try {
            linkSync(probe, `${probe}.link`);
            unlinkSync(`${probe}.link`);
          } catch (error) {
            if (isErrno(error, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK'))
              hardLinks = false;
          }
        }
      } catch {
        // read-only or full volume: keep the family's defaults; operations will report
      } finally {
        try {
          unlinkSync(probe);
        } catch {
          // already gone
        }
      }
    }
    if (this.config.hardLinks !== undefined) hardLinks = this.config.hardLinks;
    return {
      fsType: mount.fsType,
      family: mount.traits.family,
      mountPoint: mount.mountPoint,
      source: mount.source,
      network: mount.traits.network,
      hardLinks,
      preciseTimestamps,
    };
  }

  private async ready(): Promise<void> {
    if (this.layoutReady) return;
    this.tryLayoutSync();
    if (!this.layoutReady) throw this.fail(this.layoutError, `cannot prepare ${this.base}`);
  }

  private fail(error: unknown, what: string): BlobcoreError {
    return mapFsError(error, what, this.name);
  }

  // ---------------------------------------------------------------- paths

  /** Maps a (guard-validated) key to its file path. */
  objectPath(key: string): string {
    const segments = key.split('/');
    let path = this.objectsDir;
    for (let i = 0; i < segments.length - 1; i++) path += `/${this.dirFor(segments[i] as string)}`;
    return `${path}/${segments[segments.length - 1]}`;
  }

  /** dirName(), remembering long segments so ensureDir can write their `,name` file. */
  private dirFor(segment: string): string {
    const name = dirName(segment);
    if (segment.length > MAX_DIR_SEGMENT_BYTES) {
      if (this.longSegments.size > 4096) this.longSegments.clear();
      this.longSegments.set(name, segment);
    }
    return name;
  }

  /** Writes the `,name` file of a hashed directory (atomically; every creator may do it). */
  private async nameLongDir(dir: string, as: string = dir): Promise<void> {
    const name = as.slice(as.lastIndexOf('/') + 1);
    const segment = this.longSegments.get(name);
    if (!LONG_DIR.test(name) || segment === undefined) return;
    const temp = `${dir}/${LONG_DIR_NAME_FILE}.${randomBytes(6).toString('hex')}`;
    const handle = await this.sys.open(temp, 'wx', this.fileMode);
    try {
      if (this.chmodFiles) await handle.chmod(this.fileMode);
      await handle.writeFile(segment);
      await this.syncFile(handle);
    } finally {
      await handle.close();
    }
    await this.sys.rename(temp, `${dir}/${LONG_DIR_NAME_FILE}`);
  }

  /** The segment a hashed directory stands for, or undefined while it is unnamed. */
  private async longDirSegment(dir: string, name: string): Promise<string | undefined> {
    try {
      const segment = (await this.sys.readFile(`${dir}/${LONG_DIR_NAME_FILE}`)).toString('utf8');
      return `,${sha256Hex(segment)}` === name ? segment : undefined;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw error;
    }
  }

  private stagingPath(handle: MultipartHandle): string | undefined {
    const id = handle.uploadId;
    return typeof id === 'string' && UPLOAD_ID.test(id) ? `${this.stagingDir}/${id}` : undefined;
  }

  private tempName(kind: string): string {
    return `${this.tmpDir}/${this.owner.tag}.${randomBytes(8).toString('hex')}.${kind}`;
  }

  // ---------------------------------------------------------------- helpers

  /** mkdir -p below the v1 folder, with the profile's modes; fsyncs new entries under `full`. */
  private async ensureDir(dir: string): Promise<void> {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        if (this.config.groupShared && dir.startsWith(`${this.objectsDir}/`)) await this.placeDir(dir);
        else await this.sys.mkdir(dir, this.dirMode);
      } catch (error) {
        if (isErrno(error, 'EEXIST', 'ENOTEMPTY')) {
          if (!this.config.groupShared) await this.nameLongDir(dir);
          return;
        }
        if (isErrno(error, 'ENOENT') && dir.length > this.base.length) {
          await this.ensureDir(parentOf(dir));
          continue;
        }
        throw error;
      }
      if (!this.config.groupShared) await this.nameLongDir(dir);
      if (this.durability === 'full') await this.syncDir(parentOf(dir));
      return;
    }
  }

  /**
   * Group-shared profile: a new object folder is built in v1/tmp with its final mode
   * (setgid, group-writable) and `,name` file, then renamed into place, so no other uid
   * ever sees it half-made (a plain mkdir + chmod leaves a window in which another
   * replica's link into it fails with EACCES). If the folder appeared meanwhile, the
   * rename fails (non-empty) or replaces an empty twin, both fine.
   */
  private async placeDir(dir: string): Promise<void> {
    const temp = this.tempName('dir');
    await this.withParent(temp, () => this.sys.mkdir(temp, this.dirMode));
    try {
      await this.sys.chmod(temp, this.dirMode);
      await this.nameLongDir(temp, dir);
      await this.sys.rename(temp, dir);
    } catch (error) {
      await this.sys.rm(temp).catch(() => {});
      throw error;
    }
  }

  /** Runs `op`, creating the parent of `path` and retrying while a concurrent prune removes it. */
  private async withParent<T>(
    path: string,
    op: () => Promise<T>,
    sourceExists?: () => Promise<boolean>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        if (!isErrno(error, 'ENOENT') || attempt >= 8) throw error;
        if (sourceExists && !(await sourceExists())) throw error;
        await this.ensureDir(parentOf(path));
      }
    }
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await this.sys.lstat(path);
      return true;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return false;
      throw error;
    }
  }

  private async syncDir(dir: string): Promise<void> {
    let fd: number | undefined;
    try {
      fd = await this.sys.openFd(dir, 'r');
      await this.sys.fsync(fd);
      this.counters.dirSyncs++;
    } catch (error) {
      // Some filesystems (FUSE, SMB) refuse fsync on directories; nothing more can be done there.
      if (!isErrno(error, 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF', 'EISDIR', 'ENOENT')) throw error;
    } finally {
      if (fd !== undefined) await this.sys.closeFd(fd).catch(() => {});
    }
  }

  /** Background-sync step for a streamed write: only when the write will be synced anyway. */
  private earlySyncBytes(step = EARLY_SYNC_BYTES): number | undefined {
    return this.durability === 'none' ? undefined : step;
  }

  private async syncFile(handle: FileHandle): Promise<void> {
    if (this.durability === 'full') {
      await handle.sync();
      this.counters.fileSyncs++;
    } else if (this.durability === 'data') {
      await this.dataSync(handle);
    }
  }

  /** Stat of a path, re-read from the server on network filesystems. null when missing. */
  private async statPath(path: string): Promise<BigIntStats | null> {
    try {
      if (!this.config.freshStat) {
        const stat = await this.sys.stat(path);
        return stat.isFile() ? stat : null;
      }
      // Opening revalidates the attributes with the server (close-to-open consistency).
      const fd = await this.sys.openFd(path, 'r');
      try {
        const stat = await this.sys.fstat(fd, true);
        return stat.isFile() ? stat : null;
      } finally {
        await this.sys.closeFd(fd);
      }
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR', 'EISDIR')) return null;
      throw error;
    }
  }

  private async createTemp(kind = 'tmp'): Promise<Temp> {
    const path = this.tempName(kind);
    const handle = await this.withParent(path, () => this.sys.open(path, 'wx', this.fileMode));
    if (this.chmodFiles) await handle.chmod(this.fileMode);
    this.refresher.add(handle);
    return { handle, path };
  }

  /**
   * Finishes a file before publishing: stops lease refreshes, stamps the entropy mtime,
   * fsyncs per durability, closes, and returns its stat (the etag source).
   */
  private async finishFile(handle: FileHandle, path: string): Promise<BigIntStats> {
    let stat: BigIntStats | undefined;
    try {
      await this.refresher.remove(handle);
      const stamp = stampSeconds();
      try {
        await handle.utimes(stamp, stamp);
      } catch (error) {
        // Only the owner may set explicit times: completing a multipart upload staged by
        // another uid (pvc, group-writable) keeps the mtime of its last write instead.
        if (!isErrno(error, 'EPERM', 'EACCES')) throw error;
      }
      await this.syncFile(handle);
      if (!this.config.freshStat) stat = await handle.stat({ bigint: true });
    } finally {
      await handle.close().catch(() => {});
    }
    stat ??= await this.sys.stat(path);
    return stat;
  }

  private async closeQuietly(handle: FileHandle | undefined): Promise<void> {
    if (!handle) return;
    await this.refresher.remove(handle);
    await handle.close().catch(() => {});
  }

  private lockOptions(signal: AbortSignal | undefined) {
    return {
      leaseMs: this.config.leaseMs,
      timeoutMs: this.config.lockTimeoutMs,
      fileMode: this.fileMode,
      signal,
    };
  }

  /**
   * Publishes a finished temp file at `finalPath`. Returns true when the temp was moved
   * (rename), false when it was linked and must still be unlinked. `locked` is the key's
   * lock when the caller took it already (and checked the precondition under it).
   */
  private async publish(
    tempPath: string,
    finalPath: string,
    key: string,
    options: WriteOptions,
    locked?: () => Promise<void>,
  ): Promise<boolean> {
    let moved: boolean;
    let releasing: Promise<void> | undefined;
    if (!locked && options.ifNoneMatch === '*' && this.fsInfo.hardLinks) {
      try {
        await this.withParent(finalPath, () => this.sys.link(tempPath, finalPath));
      } catch (error) {
        if (isErrno(error, 'EEXIST')) throw blobError('PRECONDITION_FAILED', `key exists: ${key}`);
        throw error;
      }
      moved = false;
    } else {
      const release = locked ?? (await this.locks.hold(key, this.lockOptions(options.signal)));
      try {
        if (!locked) await this.checkPrecondition(finalPath, key, options);
        await this.withParent(finalPath, () => this.sys.rename(tempPath, finalPath));
      } catch (error) {
        await release();
        throw error;
      }
      releasing = release(); // alongside the folder's sync
      moved = true;
    }
    await Promise.all([
      releasing,
      this.durability === 'full' ? this.syncDir(parentOf(finalPath)) : undefined,
    ]);
    return moved;
  }

  /**
   * Whether a small write takes the key's lock before its temp file is written (see
   * write): only a conditional one that publishes under the lock, where the check can
   * run while the file syncs. An unconditional write (a touch) has nothing to check, and
   * holding the lock longer would only queue concurrent writers of the key behind fsyncs.
   */
  private locksEarly(options: WriteOptions): boolean {
    if (options.ifNoneMatch === '*') return !this.fsInfo.hardLinks;
    return options.ifMatch !== undefined;
  }

  /** ifNoneMatch / ifMatch against the file at `finalPath`; call holding the key's lock. */
  private async checkPrecondition(finalPath: string, key: string, options: WriteOptions): Promise<void> {
    if (options.ifNoneMatch === '*') {
      if (await this.statPath(finalPath)) throw blobError('PRECONDITION_FAILED', `key exists: ${key}`);
    } else if (options.ifMatch !== undefined) {
      const current = await this.statPath(finalPath);
      if (!current || etagOf(current) !== options.ifMatch) {
        throw blobError('PRECONDITION_FAILED', `etag mismatch for ${key}`);
      }
    }
  }

  // ---------------------------------------------------------------- capacity

  private async statfs(): Promise<{ avail: number; capacity: number }> {
    const stat = await this.sys.statfs(this.root);
    const blocks = process.getuid?.() === 0 ? stat.bfree : stat.bavail;
    return { avail: blocks * stat.bsize, capacity: stat.blocks * stat.bsize };
  }

  /**
   * Fails fast with INSUFFICIENT_STORAGE when writing `size` more bytes would eat into the
   * reserve. statfs is cached for 250 ms; bytes admitted since are counted against it.
   */
  private async admit(size: number): Promise<void> {
    const reserve = this.config.reserve;
    if (!reserve) return;
    const now = Date.now();
    if (!this.statfsCache || now - this.statfsCache.at > 250) {
      const { avail, capacity } = await this.statfs();
      this.statfsCache = { at: now, avail, capacity, pending: 0 };
    }
    const cache = this.statfsCache;
    const keep = reserve(cache.capacity);
    if (cache.avail - cache.pending - size < keep) {
      throw blobError(
        'INSUFFICIENT_STORAGE',
        `writing ${size} bytes would leave less than the reserve of ${keep} bytes free (${cache.avail - cache.pending} free)`,
        { detail: { free: cache.avail - cache.pending, reserve: keep, size } },
      );
    }
    cache.pending += size;
  }

  /** Progress hook for bodies of unknown size: re-checks the reserve every 16 MiB. */
  private reserveProgress(known: boolean): ((written: number) => Promise<void>) | undefined {
    if (known || !this.config.reserve) return undefined;
    let checked = 0;
    const step = 16 * 1024 * 1024;
    return async (written) => {
      while (written - checked >= step) {
        checked += step;
        await this.admit(step);
      }
    };
  }

  // ---------------------------------------------------------------- objects

  async stat(key: string): Promise<ObjectStat | null> {
    try {
      await this.ready();
      const stat = await this.statPath(this.objectPath(key));
      return stat ? statToObject(stat) : null;
    } catch (error) {
      throw this.fail(error, `stat ${key}`);
    }
  }

  async read(key: string, options: ReadOptions = {}): Promise<Readable> {
    let fd: number | undefined;
    try {
      await this.ready();
      try {
        fd = await this.sys.openFd(this.objectPath(key), 'r');
      } catch (error) {
        if (isErrno(error, 'ENOENT', 'ENOTDIR')) throw blobError('NOT_FOUND', `no such key: ${key}`);
        throw error;
      }
      const body = await this.readOpened(fd, key, options);
      if (body instanceof Readable) {
        fd = undefined; // owned by the stream now
        return body;
      }
      const owned = fd;
      fd = undefined;
      await this.sys.closeFd(owned);
      options.tap?.update(body);
      return bufferStream(body);
    } catch (error) {
      if (fd !== undefined) await this.sys.closeFd(fd).catch(() => {});
      if (isErrno(error, 'EISDIR')) throw blobError('NOT_FOUND', `no such key: ${key}`);
      throw this.fail(error, `read ${key}`);
    }
  }

  /**
   * The requested range of an open object: small ones as bytes (the caller closes `fd`),
   * larger ones as a stream that owns `fd`.
   */
  private async readOpened(fd: number, key: string, options: ReadOptions): Promise<Buffer | Readable> {
    const offset = options.offset ?? 0;
    if (offset === 0 && options.length === undefined && SHORT_READ_IS_END.has(this.fsInfo.family)) {
      // Whole small objects (records, small blobs) in one pread and no fstat: these local
      // filesystems return less than asked only at the end of a regular file.
      const head = Buffer.allocUnsafe(SMALL_READ_BYTES);
      const bytesRead = await this.sys.read(fd, head, 0, SMALL_READ_BYTES, 0);
      if (bytesRead < SMALL_READ_BYTES) return head.subarray(0, bytesRead);
    }
    const stat = await this.sys.fstat(fd);
    if (!stat.isFile()) throw blobError('NOT_FOUND', `no such key: ${key}`);
    const size = stat.size;
    if (offset > size) throw blobError('RANGE_INVALID', `offset ${offset} is past the end (${size} bytes)`);
    const end = options.length === undefined ? size : Math.min(size, offset + options.length);
    // Up to one chunk (records, small blobs): one read, no read-ahead machinery.
    if (end - offset <= READ_CHUNK_BYTES) return readChunk(this.sys, fd, offset, end - offset, key);
    return this.rangeStream(fd, offset, end, key, options.tap);
  }

  /**
   * A read stream over [start, end) that keeps reads in flight while the consumer handles
   * the current chunk: the next one, read on the thread pool while the main thread hashes
   * (measured 1.1 GB/s for a verified get against 0.65 GB/s reading only when asked). With
   * a native tap, two: each worker reads a chunk and hashes it while it is in its cache,
   * so one chunk's read overlaps the other's hash and the main thread hashes nothing.
   */
  private rangeStream(
    fd: number,
    start: number,
    end: number,
    key: string,
    tap: ReadTap | undefined,
  ): Readable {
    const sys = this.sys;
    // A native tap is fed by the reads themselves; any other tap chunk by chunk below.
    const nativeTap = sys.feedsTaps ? tap?.native : undefined;
    const jsTap = nativeTap ? undefined : tap;
    const depth = nativeTap ? FED_READS_IN_FLIGHT : 1;
    let position = start;
    const queued: Promise<Buffer>[] = []; // in stream order
    const inFlight = new Set<Promise<unknown>>();
    const fail = (error: unknown) => this.fail(error, `read ${key}`);
    const readNext = (): Promise<Buffer> | undefined => {
      const want = Math.min(STREAM_CHUNK_BYTES, end - position);
      if (want <= 0) return undefined;
      const chunk = readChunk(sys, fd, position, want, key, streamBuffers.take(), nativeTap);
      chunk.catch(() => {}); // observed when it is taken, or dropped with the stream
      inFlight.add(chunk);
      const settled = () => inFlight.delete(chunk);
      chunk.then(settled, settled);
      position += want;
      return chunk;
    };
    const fill = () => {
      while (queued.length < depth) {
        const chunk = readNext();
        if (chunk === undefined) return;
        queued.push(chunk);
      }
    };
    const owner = {}; // unregisters the stream from `abandonedReads` once it closes its descriptor
    const stream = new Readable({
      highWaterMark: STREAM_CHUNK_BYTES,
      read() {
        fill();
        const current = queued.shift();
        if (current === undefined) {
          this.push(null);
          return;
        }
        current.then(
          (buffer) => {
            if (this.destroyed) return;
            fill(); // before the push: the consumer works while these read
            try {
              jsTap?.update(buffer);
            } catch (error) {
              this.destroy(error as Error);
              return;
            }
            this.push(buffer);
          },
          (error: unknown) => this.destroy(fail(error)),
        );
      },
      destroy(error, callback) {
        abandonedReads.unregister(owner);
        // Close only after every read in flight has returned: a descriptor closed under
        // a queued read could be reused by another open.
        const close = () =>
          sys.closeFd(fd).then(
            () => callback(error),
            () => callback(error),
          );
        Promise.allSettled([...inFlight]).then(close, close);
      },
    });
    abandonedReads.register(stream, fd, owner);
    return stream;
  }

  async write(key: string, body: Body, options: WriteOptions = {}): Promise<WriteResult> {
    let temp: Temp | undefined;
    let tempPresent = false;
    let locking: Promise<() => Promise<void>> | undefined;
    let locked: (() => Promise<void>) | undefined;
    let refused: { reason: unknown } | undefined; // the barrier's rejection, passed on as it is
    try {
      await this.ready();
      const finalPath = this.objectPath(key);
      if (options.ifNoneMatch === '*' && options.ifMatch !== undefined) {
        throw blobError('PRECONDITION_FAILED', 'ifNoneMatch and ifMatch cannot both hold');
      }
      const declared = options.size ?? (body instanceof Uint8Array ? body.byteLength : undefined);
      // A small body (a record) takes the key's lock while its temp file is written, and
      // checks the precondition under it while the file syncs: fewer steps one after the
      // other. A large one takes it only to publish, so it never holds up the key long.
      if (body instanceof Uint8Array && body.byteLength <= EARLY_LOCK_BYTES && this.locksEarly(options)) {
        locking = this.locks.hold(key, this.lockOptions(options.signal));
        locking.catch(() => {}); // observed below
      }
      await this.admit(declared ?? 0);
      temp = await this.createTemp();
      tempPresent = true;
      const sink = new FileSink(
        temp.handle as FileHandle,
        0,
        this.reserveProgress(declared !== undefined),
        this.earlySyncBytes(),
      );
      const size = await writeBody(sink, body, options.signal);
      const checking = locking?.then((release) => {
        locked = release;
        return this.checkPrecondition(finalPath, key, options);
      });
      checking?.catch(() => {}); // observed below, unless finishing fails first
      // Behind a barrier, the file is synced once it is passed: on ext4 (data=ordered) a
      // sync commits the blocks of every file in the journal's transaction, so one issued
      // while the bytes the barrier waits for are still syncing would wait for them too.
      if (options.notBefore) {
        await abortable(options.notBefore, options.signal).catch((reason: unknown) => {
          refused = { reason };
          throw reason;
        });
      }
      const handle = temp.handle as FileHandle;
      temp.handle = undefined;
      const stat = await this.finishFile(handle, temp.path);
      await checking;
      throwIfAborted(options.signal);
      const moved = await this.publish(temp.path, finalPath, key, options, locked);
      if (moved) tempPresent = false;
      return { etag: etagOf(stat), size };
    } catch (error) {
      throw refused?.reason === error ? error : this.fail(error, `write ${key}`);
    } finally {
      // A lock taken is released before this returns; one still awaited (the write failed
      // first) is released whenever it comes, rather than holding up the error.
      if (locked) await locked();
      else
        locking?.then(
          (release) => release(),
          () => {},
        );
      if (temp) {
        await this.closeQuietly(temp.handle);
        if (tempPresent) await this.sys.unlinkIfExists(temp.path).catch(() => {});
      }
    }
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    try {
      await this.ready();
      const path = this.objectPath(key);
      const removed = await this.locks.with(key, this.lockOptions(options.signal), async () => {
        try {
          return await this.sys.unlinkIfExists(path);
        } catch (error) {
          if (isErrno(error, 'ENOTDIR', 'EISDIR')) return false;
          throw error;
        }
      });
      if (removed) {
        if (this.durability === 'full' && options.lazy !== true) await this.syncDir(parentOf(path));
        this.pruner.note(parentOf(path));
      }
      return removed;
    } catch (error) {
      throw this.fail(error, `delete ${key}`);
    }
  }

  /** Removes empty directories upward from `dir`; a writer racing it recreates what it needs. */
  private async pruneUpward(dir: string): Promise<void> {
    let current = dir;
    while (current.length > this.objectsDir.length && current.startsWith(`${this.objectsDir}/`)) {
      try {
        await this.sys.rmdir(current);
      } catch {
        return;
      }
      current = parentOf(current);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    try {
      await this.ready();
      const limit = options.limit ?? DEFAULT_LIST_LIMIT;
      const slash = prefix.lastIndexOf('/');
      const dirKey = prefix.slice(0, slash + 1);
      const partial = prefix.slice(slash + 1);
      let dirPath = this.objectsDir;
      if (dirKey !== '') {
        for (const segment of dirKey.slice(0, -1).split('/')) dirPath += `/${dirName(segment)}`;
      }
      const keys: string[] = [];
      await this.walk(dirPath, dirKey, partial, options.startAfter, limit + 1, keys, options.signal);
      if (keys.length > limit) {
        keys.length = limit;
        return { keys, cursor: keys[limit - 1] as string };
      }
      return { keys };
    } catch (error) {
      throw this.fail(error, `list ${prefix}`);
    }
  }

  /**
   * Depth-first walk in key order. A directory `seg,` sorts as `seg/`, a file as `seg`, so
   * siblings sorted by that string give keys in ascending byte order. Subtrees entirely
   * at or before `startAfter` are skipped without being read.
   */
  private async walk(
    dirPath: string,
    keyPrefix: string,
    partial: string,
    startAfter: string | undefined,
    want: number,
    out: string[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    throwIfAborted(signal);
    let entries: Dirent[];
    try {
      entries = await this.sys.readdir(dirPath);
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return; // removed mid-listing, or never there
      throw error;
    }
    const items: { sortKey: string; dir: boolean; name: string }[] = [];
    for (const entry of entries) {
      let dir = entry.name.endsWith(DIR_SUFFIX);
      let segment = dir ? entry.name.slice(0, -1) : entry.name;
      if (LONG_DIR.test(entry.name) && entry.isDirectory()) {
        const long = await this.longDirSegment(`${dirPath}/${entry.name}`, entry.name);
        if (long === undefined) continue;
        dir = true;
        segment = long;
      }
      if (!SEGMENT_CHARS.test(segment) || segment === '.' || segment === '..') continue;
      if (dir ? !entry.isDirectory() : !entry.isFile()) continue;
      if (!segment.startsWith(partial)) continue;
      const sortKey = `${keyPrefix}${segment}${dir ? '/' : ''}`;
      if (startAfter !== undefined) {
        if (dir) {
          if (startAfter >= sortKey && !startAfter.startsWith(sortKey)) continue;
        } else if (sortKey <= startAfter) {
          continue;
        }
      }
      items.push({ sortKey, dir, name: entry.name });
    }
    items.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const item of items) {
      if (out.length >= want) return;
      if (item.dir) {
        const inner = startAfter?.startsWith(item.sortKey) ? startAfter : undefined;
        await this.walk(`${dirPath}/${item.name}`, item.sortKey, '', inner, want, out, signal);
      } else {
        out.push(item.sortKey);
      }
    }
  }

  // ---------------------------------------------------------------- multipart

  async createMultipart(key: string): Promise<MultipartHandle> {
    try {
      await this.ready();
      this.objectPath(key); // rejects keys this layout cannot hold before anything is staged
      const uploadId = randomBytes(16).toString('hex');
      const dir = `${this.stagingDir}/${uploadId}`;
      await this.withParent(dir, () => this.sys.mkdir(dir, this.dirMode));
      if (this.config.groupShared) await this.sys.chmod(dir, this.dirMode);
      // The two files, then the two folders, each pair made durable together (one journal
      // commit where the filesystem batches them).
      const meta = `${JSON.stringify({ key, created: new Date().toISOString() })}\n`;
      await settleAll([
        this.createStagingFile(`${dir}/data`),
        this.createStagingFile(`${dir}/meta.json`, meta),
      ]);
      if (this.durability === 'full') await settleAll([this.syncDir(dir), this.syncDir(this.stagingDir)]);
      this.rememberStaging(dir, key); // its first part need not read meta.json back
      return { key, uploadId };
    } catch (error) {
      throw this.fail(error, `create multipart upload for ${key}`);
    }
  }

  /** Notes that staging folder `dir` belongs to `key` (see openStaging). */
  private rememberStaging(dir: string, key: string): void {
    if (this.stagingKeys.size >= STAGING_KEYS_KEPT)
      this.stagingKeys.delete(this.stagingKeys.keys().next().value as string);
    this.stagingKeys.set(dir, key);
  }

  /** A new file of an upload's staging folder, with `text`, synced per durability. */
  private async createStagingFile(path: string, text?: string): Promise<void> {
    const handle = await this.sys.open(path, 'wx', this.fileMode);
    try {
      if (this.chmodFiles) await handle.chmod(this.fileMode);
      if (text !== undefined) await handle.writeFile(text);
      if (this.durability !== 'none') await this.syncFile(handle);
    } finally {
      await handle.close();
    }
  }

  /**
   * The staging folder of a live upload for `handle.key`, or NOT_FOUND. With `verified`,
   * a folder this process already matched to the key is trusted without reading meta.json
   * again (upload ids are random, so a folder is never reused for another key; a folder
   * removed since fails the caller's next open with NOT_FOUND).
   */
  private async openStaging(handle: MultipartHandle, verified = false): Promise<string> {
    const dir = this.stagingPath(handle);
    const missing = () => blobError('NOT_FOUND', `no multipart upload in progress for ${handle.key}`);
    if (!dir) throw missing();
    if (verified && this.stagingKeys.get(dir) === handle.key) return dir;
    let meta: { key?: unknown };
    try {
      meta = JSON.parse((await this.sys.readFile(`${dir}/meta.json`)).toString('utf8')) as { key?: unknown };
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR') || error instanceof SyntaxError) throw missing();
      throw error;
    }
    if (meta.key !== handle.key) throw missing();
    this.rememberStaging(dir, handle.key);
    return dir;
  }

  /**
   * Claims [start, end) of an upload's staging file (end = Infinity: the completion seal).
   * Creates the claim, then lists the others: any live overlapping claim → remove ours
   * and fail with PRECONDITION_FAILED; stale ones (dead owner, or lease expired) are broken.
   */
  private async claim(dir: string, start: number, end: number, key: string): Promise<Claim> {
    const suffix = end === Number.POSITIVE_INFINITY ? 'x' : String(end);
    const name = `c.${start}.${suffix}.${this.owner.tag}.${randomBytes(6).toString('hex')}`;
    const path = `${dir}/${name}`;
    let handle: FileHandle;
    try {
      handle = await this.sys.open(path, 'wx', this.fileMode);
    } catch (error) {
      if (isErrno(error, 'ENOENT'))
        throw blobError('NOT_FOUND', `no multipart upload in progress for ${key}`);
      throw error;
    }
    const claim: Claim = { handle, path, names: [] };
    this.refresher.add(handle);
    try {
      const mine = parseClaim(name) as ParsedClaim;
      claim.names = await this.sys.readdirNames(dir);
      for (const other of claim.names) {
        if (other === name) continue;
        const parsed = parseClaim(other);
        if (!parsed || !claimsOverlap(mine, parsed)) continue;
        let stat: BigIntStats;
        try {
          stat = await this.sys.stat(`${dir}/${other}`);
        } catch (error) {
          if (isErrno(error, 'ENOENT')) continue;
          throw error;
        }
        if (isStale(this.owner, parsed.tag, Number(stat.mtimeMs), this.config.leaseMs)) {
          await breakStale(this.sys, `${dir}/${other}`, stat.ino);
          continue;
        }
        const what =
          end === Number.POSITIVE_INFINITY ? 'a part upload is in progress' : 'the range is being written';
        throw blobError('PRECONDITION_FAILED', `multipart upload for ${key}: ${what}`, {
          retryable: true,
          detail: { start, end: suffix },
        });
      }
      return claim;
    } catch (error) {
      await this.releaseClaim(claim);
      throw error;
    }
  }

  private async releaseClaim(claim: Claim): Promise<void> {
    await this.closeQuietly(claim.handle);
    await this.sys.unlinkIfExists(claim.path).catch(() => {});
  }

  async uploadPart(
    handle: MultipartHandle,
    partNumber: number,
    offset: number,
    body: Body,
    size: number,
    options: PartOptions = {},
  ): Promise<PartRef> {
    try {
      await this.ready();
      const dir = await this.openStaging(handle, true);
      const end = offset + size;
      if (!Number.isSafeInteger(end)) throw blobError('RANGE_INVALID', 'part ends past 2^53');
      // The claim excludes every overlapping part and the completion seal, in any process
      // (and fails with NOT_FOUND once the upload is gone). Opening the data file does not
      // depend on it: both run together.
      const opening = this.sys.open(`${dir}/data`, 'r+');
      opening.catch(() => {}); // observed below, maybe after it settles
      let claim: Claim;
      try {
        claim = await this.claim(dir, offset, end, handle.key);
      } catch (error) {
        await opening.then((data) => data.close()).catch(() => {});
        throw error;
      }
      try {
        // Under the claim: the caller's check, and the file's size before this write.
        const [checked, opened, sized] = await Promise.allSettled([
          this.admit(size).then(() => options.hold?.before()),
          opening,
          this.sys.stat(`${dir}/data`),
        ]);
        if (checked.status === 'rejected' || opened.status === 'rejected' || sized.status === 'rejected') {
          if (opened.status === 'fulfilled') await opened.value.close().catch(() => {});
          if (checked.status === 'rejected') throw checked.reason;
          const error = (opened.status === 'rejected' ? opened : (sized as PromiseRejectedResult)).reason;
          if (isErrno(error, 'ENOENT')) {
            throw blobError('NOT_FOUND', `no multipart upload in progress for ${handle.key}`);
          }
          throw error;
        }
        const data = opened.value;
        const before = Number(sized.value.size);
        const etag = randomBytes(8).toString('hex');
        const receiptPath = `${dir}/r.${partNumber}.${offset}.${size}.${etag}`;
        const ref = { partNumber, size, etag };
        let receipting: Promise<void> | undefined;
        let durable: Promise<void> | undefined;
        let hooked: Promise<void> | undefined;
        try {
          // Receipts this write makes untrue go first, so a crash mid-write leaves none.
          // (Listed after our claim: any receipt made since is for a range we do not overlap.)
          for (const name of claim.names) {
            const receipt = parseReceipt(name);
            if (!receipt) continue;
            const overlaps = rangesOverlap(receipt.offset, receipt.offset + receipt.size, offset, end);
            if (overlaps || receipt.partNumber === partNumber)
              await this.sys.unlinkIfExists(`${dir}/${name}`);
          }
          // Our receipt is made, and its name synced, while the bytes are written. Before
          // the caller records the part, a receipt means nothing: completion accepts only
          // receipts with the etag of a recorded part, and this etag is new.
          receipting = this.createReceipt(receiptPath, dir);
          receipting.catch(() => {}); // observed below
          const sink = new FileSink(data, offset, undefined, this.earlySyncBytes(PART_SYNC_BYTES));
          const shrinkAfter = async (error: unknown): Promise<never> => {
            await this.shrinkAfterFailure(data, dir, claim, before, offset);
            throw error;
          };
          await writeBody(sink, body, options.signal, 'written').catch(shrinkAfter);
          // Every byte is written. They (fdatasync: the size, not the mtime) and the
          // receipt's name become durable while the caller stages its record swap, which
          // publishes nothing before they are (PartHold.written); the ref is handed out after.
          const synced = sink
            .finish()
            .then(() => (this.durability !== 'none' ? this.dataSync(data) : undefined))
            .catch(shrinkAfter);
          const partDurable = settleAll([receipting, synced]);
          durable = partDurable;
          hooked = Promise.resolve().then(() => options.hold?.written(ref, partDurable));
          hooked.catch(() => {}); // observed below
          await durable;
        } catch (error) {
          // A part that failed leaves no receipt (nor, after a failed write, its bytes).
          await durable?.catch(() => {}); // its syncs and shrink are done with the file
          if (receipting) {
            await receipting.catch(() => {});
            await this.sys.unlinkIfExists(receiptPath).catch(() => {});
          }
          await data.close().catch(() => {});
          await hooked?.catch(() => {}); // its swap waited on what failed: it published nothing
          throw error;
        }
        // The data file's close runs alongside the rest of the caller's record swap.
        const closing = data.close().catch(() => {});
        try {
          await hooked;
        } finally {
          await closing;
        }
        return ref;
      } finally {
        await this.releaseClaim(claim);
      }
    } catch (error) {
      throw this.fail(error, `upload part ${partNumber} for ${handle.key}`);
    }
  }

  /** Creates a part's receipt (an empty file) and, under `full`, syncs its folder. */
  private async createReceipt(path: string, dir: string): Promise<void> {
    await (await this.sys.open(path, 'wx', this.fileMode)).close();
    if (this.durability === 'full') await this.syncDir(dir);
  }

  private async dataSync(handle: FileHandle): Promise<void> {
    await handle.datasync();
    this.counters.fileSyncs++;
  }

  /**
   * After a failed part write that extended the staging file (ENOSPC, aborted body), gives
   * the space back by truncating to where the file ended, unless another writer holds a claim.
   */
  private async shrinkAfterFailure(
    data: FileHandle,
    dir: string,
    claim: Claim,
    before: number,
    offset: number,
  ): Promise<void> {
    try {
      if (offset < before) return;
      const names = await this.sys.readdirNames(dir);
      const mine = claim.path.slice(dir.length + 1);
      if (names.some((name) => name.startsWith('c.') && name !== mine)) return;
      await data.truncate(before);
    } catch {
      // best effort: the space is reclaimed on abort or completion anyway
    }
  }

  async completeMultipart(
    handle: MultipartHandle,
    parts: readonly PartRef[],
    options: SignalOptions = {},
  ): Promise<WriteResult> {
    try {
      await this.ready();
      const dir = await this.openStaging(handle);
      const finalPath = this.objectPath(handle.key);
      const dataPath = `${dir}/data`;
      if (!(await this.exists(dataPath))) return await this.completedEarlier(dir, handle.key, finalPath);
      const seal = await this.claim(dir, 0, Number.POSITIVE_INFINITY, handle.key);
      let result: WriteResult;
      try {
        const receipts = new Map<string, Receipt>();
        for (const name of await this.sys.readdirNames(dir)) {
          const receipt = parseReceipt(name);
          if (receipt) receipts.set(`${receipt.partNumber}.${receipt.etag}`, receipt);
        }
        let total = 0;
        for (const ref of parts) {
          const receipt = receipts.get(`${ref.partNumber}.${ref.etag}`);
          if (!receipt || receipt.size !== ref.size) {
            throw blobError('BLOB_UPLOAD_INVALID', `part ${ref.partNumber} is missing or was replaced`);
          }
          if (receipt.offset !== total) {
            throw blobError(
              'BLOB_UPLOAD_INVALID',
              `part ${ref.partNumber} starts at ${receipt.offset}, expected ${total}`,
            );
          }
          total += receipt.size;
        }
        const data = await this.sys.open(dataPath, 'r+');
        try {
          const current = (await data.stat()).size;
          if (current < total)
            throw blobError('BLOB_UPLOAD_INVALID', `staged data is shorter than ${total} bytes`);
          if (current > total) await data.truncate(total);
        } catch (error) {
          await data.close();
          throw error;
        }
        const stat = await this.finishFile(data, dataPath);
        const etag = etagOf(stat);
        const record = await this.sys.open(`${dir}/complete.json`, 'w', this.fileMode);
        try {
          await record.writeFile(`${JSON.stringify({ key: handle.key, etag, size: total })}\n`);
        } finally {
          await record.close();
        }
        throwIfAborted(options.signal);
        await this.publish(dataPath, finalPath, handle.key, { signal: options.signal });
        result = { etag, size: total };
      } finally {
        await this.releaseClaim(seal);
      }
      await this.removeStaging(dir);
      return result;
    } catch (error) {
      throw this.fail(error, `complete multipart upload for ${handle.key}`);
    }
  }

  /** A retried completion whose first attempt published the object and then died. */
  private async completedEarlier(dir: string, key: string, finalPath: string): Promise<WriteResult> {
    let record: { key?: unknown; etag?: unknown; size?: unknown } = {};
    try {
      record = JSON.parse(
        (await this.sys.readFile(`${dir}/complete.json`)).toString('utf8'),
      ) as typeof record;
    } catch (error) {
      if (!isErrno(error, 'ENOENT') && !(error instanceof SyntaxError)) throw error;
    }
    const current = await this.statPath(finalPath);
    if (record.key === key && current && etagOf(current) === record.etag && typeof record.size === 'number') {
      await this.removeStaging(dir);
      return { etag: record.etag as string, size: record.size };
    }
    throw blobError('BLOB_UPLOAD_INVALID', `multipart upload for ${key} has no staged data`);
  }

  private async removeStaging(dir: string): Promise<void> {
    this.stagingKeys.delete(dir);
    const dead = this.tempName('dead');
    try {
      await this.sys.rename(dir, dead);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw error;
    }
    await this.sys.rm(dead).catch(() => {}); // leftovers are removed by sweepTemp
  }

  async abortMultipart(handle: MultipartHandle): Promise<void> {
    try {
      await this.ready();
      let dir: string;
      try {
        dir = await this.openStaging(handle);
      } catch (error) {
        if (error instanceof BlobcoreError && error.code === 'NOT_FOUND') return;
        throw error;
      }
      await this.removeStaging(dir);
    } catch (error) {
      throw this.fail(error, `abort multipart upload for ${handle.key}`);
    }
  }

  // ---------------------------------------------------------------- optional capabilities

  async link(from: string, to: string, options: SignalOptions = {}): Promise<WriteResult> {
    try {
      await this.ready();
      throwIfAborted(options.signal);
      const fromPath = this.objectPath(from);
      const toPath = this.objectPath(to);
      try {
        await this.withParent(
          toPath,
          () => this.sys.link(fromPath, toPath),
          () => this.exists(fromPath),
        );
      } catch (error) {
        if (isErrno(error, 'EEXIST')) throw blobError('PRECONDITION_FAILED', `key exists: ${to}`);
        if (isErrno(error, 'ENOENT')) throw blobError('NOT_FOUND', `no such key: ${from}`);
        if (isErrno(error, 'EMLINK', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) {
          throw blobError('UNSUPPORTED', `cannot hard-link ${from}: ${(error as Error).message}`, {
            cause: error,
          });
        }
        throw error;
      }
      if (this.durability === 'full') await this.syncDir(parentOf(toPath));
      const stat = await this.statPath(toPath);
      if (!stat) throw blobError('NOT_FOUND', `no such key: ${to}`);
      return { etag: etagOf(stat), size: Number(stat.size) };
    } catch (error) {
      throw this.fail(error, `link ${from} to ${to}`);
    }
  }

  async copy(from: string, to: string, options: SignalOptions = {}): Promise<WriteResult> {
    const tempPath = this.tempName('tmp');
    let tempPresent = false;
    try {
      await this.ready();
      const fromPath = this.objectPath(from);
      const toPath = this.objectPath(to);
      try {
        await this.sys.copyFile(fromPath, tempPath); // reflink where the filesystem can
        tempPresent = true;
      } catch (error) {
        if (isErrno(error, 'ENOENT') && !(await this.exists(fromPath))) {
          throw blobError('NOT_FOUND', `no such key: ${from}`);
        }
        throw error;
      }
      const handle = await this.sys.open(tempPath, 'r+');
      if (this.chmodFiles) await handle.chmod(this.fileMode).catch(() => {});
      const stat = await this.finishFile(handle, tempPath);
      if (await this.publish(tempPath, toPath, to, { signal: options.signal })) tempPresent = false;
      return { etag: etagOf(stat), size: Number(stat.size) };
    } catch (error) {
      throw this.fail(error, `copy ${from} to ${to}`);
    } finally {
      if (tempPresent) await this.sys.unlinkIfExists(tempPath).catch(() => {});
    }
  }

  async usage(): Promise<PosixUsage> {
    try {
      const { avail, capacity } = await this.statfs();
      const reserved = this.config.reserve ? Math.min(capacity, this.config.reserve(capacity)) : 0;
      return { capacity, free: Math.max(0, avail - reserved), reserved };
    } catch (error) {
      throw this.fail(error, 'usage');
    }
  }

  // ---------------------------------------------------------------- maintenance

  /**
   * Removes leftovers of crashed writers from v1/tmp and v1/locks. A file is removed only
   * when it is at least `olderThan` old AND its owner is not provably alive: an owner on
   * this host (same boot id and pid namespace) is checked through /proc (pid + start
   * time); an owner elsewhere must also have let the file go untouched for the lease
   * (live writers touch their temp files every lease/4). `*.dead` folders (staging being
   * deleted) are always removed.
   */
  async sweepTemp(options: SweepOptions = {}): Promise<SweepReport> {
    const olderThan = options.olderThan ?? DEFAULT_SWEEP_AGE_MS;
    const report: SweepReport = { scanned: 0, removed: 0, kept: 0, bytesFreed: 0 };
    try {
      await this.ready();
      const now = Date.now();
      for (const name of await this.sys.readdirNames(this.tmpDir)) {
        throwIfAborted(options.signal);
        report.scanned++;
        const path = `${this.tmpDir}/${name}`;
        let stat: BigIntStats;
        try {
          stat = await this.sys.lstat(path);
        } catch (error) {
          if (isErrno(error, 'ENOENT')) continue;
          throw error;
        }
        const parts = name.split('.');
        const tag = parts.slice(0, 4).join('.');
        const kind = parts[parts.length - 1];
        const age = now - Number(stat.mtimeMs);
        let remove: boolean;
        if (kind === 'dead') {
          remove = true;
        } else {
          const alive = parseOwnerTag(tag) ? ownerAlive(this.owner, tag) : undefined;
          remove = alive !== true && age >= olderThan && (alive === false || age >= this.config.leaseMs);
        }
        if (!remove) {
          report.kept++;
          continue;
        }
        if (stat.isDirectory()) await this.sys.rm(path);
        else if (!(await this.sys.unlinkIfExists(path))) continue;
        report.removed++;
        report.bytesFreed += Number(stat.size);
      }
      for (const name of await this.sys.readdirNames(this.locksDir)) {
        throwIfAborted(options.signal);
        report.scanned++;
        const path = `${this.locksDir}/${name}`;
        const lock = await inspectLock(this.sys, path);
        if (!lock) continue;
        const tag = name.endsWith('.broken') ? '' : lock.tag;
        const age = now - lock.mtimeMs;
        if (age >= olderThan && isStale(this.owner, tag, lock.mtimeMs, this.config.leaseMs)) {
          await breakStale(this.sys, path, lock.ino);
          report.removed++;
        } else {
          report.kept++;
        }
      }
      return report;
    } catch (error) {
      throw this.fail(error, 'sweep temp files');
    }
  }

  /**
   * Readiness check: writes a small key, reads it back, deletes it, and reads usage.
   * Never throws; `ok: false` carries the error code and message.
   */
  async probe(options: SignalOptions = {}): Promise<ProbeResult> {
    const started = performance.now();
    const key = `.blobcore-probe/${this.owner.pid}-${randomBytes(8).toString('hex')}`;
    const base = { driver: this.name, root: this.root, fsType: this.fsInfo.fsType };
    try {
      const payload = randomBytes(64);
      await this.write(key, payload, { ifNoneMatch: '*', signal: options.signal });
      const chunks: Buffer[] = [];
      for await (const chunk of await this.read(key)) chunks.push(chunk as Buffer);
      if (!Buffer.concat(chunks).equals(payload)) {
        throw blobError('UNAVAILABLE', 'probe read back different bytes', { retryable: true });
      }
      if (!(await this.delete(key))) throw blobError('UNAVAILABLE', 'probe object vanished before delete');
      const usage = await this.usage();
      return { ok: true, ...base, latencyMs: performance.now() - started, usage };
    } catch (error) {
      await this.delete(key).catch(() => {});
      const failure = this.fail(error, 'probe');
      return {
        ok: false,
        ...base,
        latencyMs: performance.now() - started,
        error: { code: failure.code, message: failure.message },
      };
    }
  }

  /** Counters of fsync calls, for tests and benchmarks. */
  stats(): PosixStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.refresher.close();
    await this.pruner.flush();
  }
}

/** Methods beyond the Driver contract that the fs and pvc drivers expose. */
export interface PosixExtras {
  readonly root: string;
  readonly durability: Durability;
  readonly fsInfo: FsInfo;
  sweepTemp(options?: SweepOptions): Promise<SweepReport>;
  probe(options?: SignalOptions): Promise<ProbeResult>;
  usage(options?: SignalOptions): Promise<PosixUsage>;
  stats(): PosixStats;
  /** The file path of a key (for diagnostics and tests). */
  objectPath(key: string): string;
}

export type PosixDriverHandle = Omit<Driver, 'usage'> & PosixExtras;

/** Wraps the guarded driver with the extras, tagging their errors with the driver name. */
export function withExtras(guarded: Driver, inner: PosixDriver): PosixDriverHandle {
  const tagged =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (error) {
        if (error instanceof BlobcoreError) error.driver ??= inner.name;
        throw error;
      }
    };
  return Object.assign(guarded, {
    root: inner.root,
    durability: inner.durability,
    fsInfo: inner.fsInfo,
    sweepTemp: tagged((options?: SweepOptions) => inner.sweepTemp(options)),
    probe: (options?: SignalOptions) => inner.probe(options),
    usage: guarded.usage as (options?: SignalOptions) => Promise<PosixUsage>,
    stats: () => inner.stats(),
    objectPath: (key: string) => inner.objectPath(validateKey(key)),
  });
}

/**
 * Reads exactly `want` bytes at `position`, across short reads; a file that ends early is
 * an error. With `tap` (a native ReadTap handle) it is one native read whose worker then
 * feeds the tap at this call's turn, so such calls must come in stream order.
 */
async function readChunk(
  sys: Sys,
  fd: number,
  position: number,
  want: number,
  key: string,
  into?: Buffer,
  tap?: object,
): Promise<Buffer> {
  const buffer = into ? into.subarray(0, want) : Buffer.allocUnsafe(want);
  const shrank = () => blobError('UNAVAILABLE', `read ${key}: object shrank while reading`);
  if (tap) {
    // Short only at the end of the file; never resumed here, or unfed bytes would follow.
    const bytesRead: unknown = await sys.readFeeding(fd, buffer, position, tap);
    if (typeof bytesRead !== 'number') throw new Error(`read ${key}: the native read gave no byte count`);
    if (bytesRead < want) throw shrank();
    return buffer;
  }
  let filled = 0;
  while (filled < want) {
    const bytesRead = await sys.read(fd, buffer, filled, want - filled, position + filled);
    if (bytesRead === 0) throw shrank();
    filled += bytesRead;
  }
  return buffer;
}

/** A stream of one buffer already in memory. */
function bufferStream(bytes: Buffer): Readable {
  const stream = new Readable({ read() {} });
  if (bytes.byteLength > 0) stream.push(bytes);
  stream.push(null);
  return stream;
}

/** Waits for every promise to settle, then rejects with the first failure (if any). */
async function settleAll(work: readonly (Promise<unknown> | undefined)[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
