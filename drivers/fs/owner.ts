/**
 * Who owns a temp file, a lock or a part claim, and whether that owner is still alive.
 *
 * Every process gets an owner tag `<boot>.<pidns>.<pid>.<start>`: the first 12 hex digits
 * of the kernel boot id, the inode of its pid namespace, its pid, and its start time in
 * clock ticks (field 22 of /proc/<pid>/stat). Temp files, lock files and claims carry the
 * tag. Liveness rule (`ownerAlive`):
 *   - same boot id and same pid namespace: alive iff /proc/<pid>/stat exists and shows
 *     the same start time (so a reused pid is not mistaken for the owner);
 *   - otherwise (another host, another pod, another boot): unknown. Such an owner is
 *     presumed alive while the file's mtime is younger than the lease; owners refresh
 *     the mtime of their open temp files and claims every lease/4 (`LeaseRefresher`).
 *
 * Key locks (`KeyLocks`) serialize every replacement of one key across processes without
 * flock: a lock is `locks/<sha256(key)[0..40]>`, created atomically and exclusively as a
 * symlink whose target is the owner tag (one call), or, where the filesystem has no
 * symlinks (SMB without mfsymlinks), as a file created with O_EXCL holding the tag. Both
 * kinds exclude each other, so processes in either mode share a volume safely. A waiter backs off exponentially; a lock whose owner is dead, or (foreign
 * owner) whose mtime is older than the lease, is broken by renaming it to a private name,
 * checking the renamed inode is the one judged stale, and unlinking it. Holders keep a
 * lock for a stat and a rename; a small conditional write also while its temp file is
 * written and synced, and, behind a barrier (an upload's state swap), while the part it
 * names syncs (see PosixDriver.write). A held lock's mtime is refreshed every
 * lease/4, as temp files and claims are, so a holder stalled in a slow call on a network
 * filesystem is never taken for abandoned.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { blobError, throwIfAborted } from '../../src/errors.js';
import { isErrno, type Sys, sleep } from './sys.js';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Start time (clock ticks since boot) of a process, from /proc/<pid>/stat. */
export function processStartTicks(pid: number | 'self'): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19]; // field 22 overall: starttime
}

export interface OwnerIdentity {
  tag: string;
  boot: string;
  pidns: string;
  pid: number;
  start: string;
}

const TAG_PATTERN = /^([0-9a-f]{12})\.([0-9]+)\.([0-9]+)\.([0-9]+)$/;

export function currentOwner(): OwnerIdentity {
  const bootRaw = readText('/proc/sys/kernel/random/boot_id')?.trim().replace(/-/g, '');
  const boot = (bootRaw && /^[0-9a-f]{12,}$/.test(bootRaw) ? bootRaw : randomBytes(6).toString('hex')).slice(
    0,
    12,
  );
  let pidns = '0';
  try {
    pidns = readlinkSync('/proc/self/ns/pid').replace(/[^0-9]/g, '') || '0';
  } catch {
    // no /proc: liveness of other processes is then never claimed
  }
  const pid = process.pid;
  const start = processStartTicks('self') ?? '0';
  return { tag: `${boot}.${pidns}.${pid}.${start}`, boot, pidns, pid, start };
}

export function parseOwnerTag(
  tag: string,
): { boot: string; pidns: string; pid: number; start: string } | null {
  const match = TAG_PATTERN.exec(tag);
  if (!match) return null;
  return {
    boot: match[1] as string,
    pidns: match[2] as string,
    pid: Number(match[3]),
    start: match[4] as string,
  };
}

/** true = provably alive, false = provably dead, undefined = cannot tell (other host/pod/boot). */
export function ownerAlive(self: OwnerIdentity, tag: string): boolean | undefined {
  const other = parseOwnerTag(tag);
  if (!other || other.boot !== self.boot || other.pidns !== self.pidns || self.pidns === '0')
    return undefined;
  if (other.pid === self.pid && other.start === self.start) return true;
  const start = processStartTicks(other.pid);
  return start !== undefined && start === other.start;
}

/**
 * Stale rule shared by locks, claims and temp files: dead owner → stale; live owner →
 * not stale; unknown owner → stale once the file has not been touched for `leaseMs`.
 */
export function isStale(self: OwnerIdentity, tag: string, mtimeMs: number, leaseMs: number): boolean {
  const alive = ownerAlive(self, tag);
  if (alive !== undefined) return !alive;
  return Date.now() - mtimeMs > leaseMs;
}

/** Touches the mtime of open temp files and claims so other hosts see them as live. */
export class LeaseRefresher {
  private readonly handles = new Map<FileHandle, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs: number) {}

  add(handle: FileHandle): void {
    this.handles.set(handle, Promise.resolve());
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Stops refreshing `handle` and waits for a refresh in flight (so a later utimes wins). */
  async remove(handle: FileHandle): Promise<void> {
    const inflight = this.handles.get(handle);
    this.handles.delete(handle);
    if (this.handles.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    await inflight;
  }

  private tick(): void {
    const now = new Date();
    for (const [handle, previous] of this.handles) {
      const next = previous.then(() => handle.utimes(now, now)).catch(() => {});
      this.handles.set(handle, next);
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.handles.clear();
  }
}

export interface LockOptions {
  leaseMs: number;
  timeoutMs: number;
  fileMode: number;
  signal?: AbortSignal | undefined;
}

/** Per-key exclusive locks across processes (O_EXCL lock files) and within one (a promise chain). */
export class KeyLocks {
  private readonly local = new Map<string, Promise<void>>();

  constructor(
    private readonly sys: Sys,
    private readonly dir: string,
    private readonly owner: OwnerIdentity,
    private readonly ensureDir: () => Promise<void>,
  ) {}

  lockPath(key: string): string {
    return `${this.dir}/${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
  }

  /** Runs `work` holding the lock of `key`. */
  async with<T>(key: string, options: LockOptions, work: () => Promise<T>): Promise<T> {
    const release = await this.hold(key, options);
    try {
      return await work();
    } finally {
      await release();
    }
  }

  /**
   * Takes the lock of `key`; resolves to its release, which never throws and may be
   * called more than once (the lock is released the first time).
   */
  async hold(key: string, options: LockOptions): Promise<() => Promise<void>> {
    const path = this.lockPath(key);
    // In-process queue first, so one process never spins on its own lock file.
    const previous = this.local.get(path) ?? Promise.resolve();
    let passOn: () => void = () => {};
    const mine = new Promise<void>((resolve) => {
      passOn = resolve;
    });
    const tail = previous.then(() => mine);
    this.local.set(path, tail);
    const leaveQueue = () => {
      passOn();
      if (this.local.get(path) === tail) this.local.delete(path);
    };
    try {
      await previous;
      await this.acquire(path, options);
    } catch (error) {
      leaveQueue();
      throw error;
    }
    const refresh = setInterval(
      () => {
        const now = new Date();
        this.sys.lutimes(path, now, now).catch(() => {});
      },
      Math.max(50, Math.floor(options.leaseMs / 4)),
    );
    refresh.unref();
    let released: Promise<void> | undefined;
    return () => {
      clearInterval(refresh);
      released ??= this.sys
        .unlinkIfExists(path)
        .then(
          () => {},
          () => {},
        )
        .finally(leaveQueue);
      return released;
    };
  }

  private async acquire(path: string, options: LockOptions): Promise<void> {
    const deadline = Date.now() + options.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(options.signal);
      try {
        await this.create(path, options.fileMode);
        return;
      } catch (error) {
        if (isErrno(error, 'ENOENT')) {
          await this.ensureDir();
          continue;
        }
        if (!isErrno(error, 'EEXIST')) throw error;
      }
      const holder = await inspectLock(this.sys, path);
      if (holder && isStale(this.owner, holder.tag, holder.mtimeMs, options.leaseMs)) {
        await breakStale(this.sys, path, holder.ino);
        continue;
      }
      if (Date.now() > deadline) {
        throw blobError('UNAVAILABLE', `timed out waiting for the lock on ${path}`, { retryable: true });
      }
      await sleep(Math.min(50, 2 ** Math.min(attempt, 6) / 2) + Math.random(), options.signal);
    }
  }

  private symlinks = true;

  /** Creates the lock exclusively: a symlink to the owner tag, or an O_EXCL file holding it. */
  private async create(path: string, fileMode: number): Promise<void> {
    if (this.symlinks) {
      try {
        await this.sys.symlink(this.owner.tag, path);
        return;
      } catch (error) {
        if (!isErrno(error, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS')) throw error;
        this.symlinks = false;
      }
    }
    const handle = await this.sys.open(path, 'wx', fileMode);
    try {
      await handle.write(`${this.owner.tag}\n`);
    } finally {
      await handle.close();
    }
  }
}

/** Owner tag, inode and mtime of a lock (symlink or file); null if it vanished. */
export async function inspectLock(
  sys: Sys,
  path: string,
): Promise<{ tag: string; ino: bigint; mtimeMs: number } | null> {
  try {
    const stat = await sys.lstat(path);
    const tag = stat.isSymbolicLink()
      ? await sys.readlink(path)
      : (await sys.readFile(path)).toString('utf8').trim();
    return { tag, ino: stat.ino, mtimeMs: Number(stat.mtimeMs) };
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return null;
    throw error;
  }
}

/**
 * Removes a stale lock or claim file whose inode was `ino` when judged stale. It is first
 * renamed to a private name, so two breakers cannot both remove it; if the renamed file
 * turns out to be a newer one (re-created since), it is put back.
 */
export async function breakStale(sys: Sys, path: string, ino: bigint): Promise<void> {
  const aside = `${path}.${randomBytes(6).toString('hex')}.broken`;
  try {
    await sys.rename(path, aside);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  try {
    const stat = await sys.lstat(aside);
    if (stat.ino !== ino) {
      await sys.link(aside, path).catch(() => {});
    }
  } finally {
    await sys.unlinkIfExists(aside).catch(() => {});
  }
}
