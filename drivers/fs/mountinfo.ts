/**
 * Filesystem detection from /proc/self/mountinfo (see proc(5)).
 *
 * Each line: `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`;
 * paths escape space, tab, newline and backslash as octal (`\040`). The mount holding a
 * path is the entry with the longest mount point that is a path prefix of it (the last
 * such line wins, as later mounts cover earlier ones).
 */
import { readFileSync, realpathSync } from 'node:fs';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  superOptions: string;
}

export type FsFamily =
  | 'nfs'
  | 'cephfs'
  | 'smb'
  | 'ext4'
  | 'xfs'
  | 'btrfs'
  | 'tmpfs'
  | 'overlay'
  | 'fuse'
  | 'other';

export interface FsTraits {
  family: FsFamily;
  /** Shared over a network: attributes may be cached, transient errors (ESTALE) happen. */
  network: boolean;
  /** Whether the family is expected to support hard links (verified again by a probe). */
  hardLinks: boolean;
  /** Whether names are expected to be case-sensitive. */
  caseSensitive: boolean;
}

function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (separator < 0 || fields.length < separator + 3) continue;
    entries.push({
      mountPoint: unescapeOctal(fields[4] as string),
      options: fields[5] as string,
      fsType: fields[separator + 1] as string,
      source: unescapeOctal(fields[separator + 2] as string),
      superOptions: fields[separator + 3] ?? '',
    });
  }
  return entries;
}

/** The mount holding absolute path `path` (already resolved through symlinks). */
export function findMount(entries: readonly MountEntry[], path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const entry of entries) {
    const point = entry.mountPoint;
    const covers =
      point === '/' || path === point || path.startsWith(point.endsWith('/') ? point : `${point}/`);
    if (covers && (!best || point.length >= best.mountPoint.length)) best = entry;
  }
  return best;
}

export function fsFamily(fsType: string): FsFamily {
  const type = fsType.toLowerCase();
  if (type === 'nfs' || type === 'nfs4') return 'nfs';
  if (type === 'ceph' || type === 'fuse.ceph-fuse' || type === 'fuse.ceph') return 'cephfs';
  if (type === 'cifs' || type === 'smb3' || type === 'smbfs' || type === 'smb') return 'smb';
  if (type === 'ext4' || type === 'ext3' || type === 'ext2') return 'ext4';
  if (type === 'xfs') return 'xfs';
  if (type === 'btrfs') return 'btrfs';
  if (type === 'tmpfs' || type === 'ramfs') return 'tmpfs';
  if (type === 'overlay') return 'overlay';
  if (type.startsWith('fuse')) return 'fuse';
  return 'other';
}

export function fsTraits(fsType: string): FsTraits {
  const family = fsFamily(fsType);
  switch (family) {
    case 'nfs':
    case 'cephfs':
      return { family, network: true, hardLinks: true, caseSensitive: true };
    case 'smb':
      // SMB/CIFS shares (Azure Files and the like): no POSIX hard links, names usually case-insensitive.
      return { family, network: true, hardLinks: false, caseSensitive: false };
    case 'fuse':
      return { family, network: true, hardLinks: true, caseSensitive: true };
    default:
      return { family, network: false, hardLinks: true, caseSensitive: true };
  }
}

export interface DetectedMount {
  fsType: string;
  mountPoint: string;
  source: string;
  traits: FsTraits;
}

/** Detects the filesystem holding `path` (which must exist). Unknown when /proc is unavailable. */
export function detectMount(path: string, mountInfoPath = '/proc/self/mountinfo'): DetectedMount {
  let text: string;
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    // keep the given path
  }
  try {
    text = readFileSync(mountInfoPath, 'utf8');
  } catch {
    return { fsType: 'unknown', mountPoint: '/', source: '', traits: fsTraits('unknown') };
  }
  const entry = findMount(parseMountInfo(text), real);
  if (!entry) return { fsType: 'unknown', mountPoint: '/', source: '', traits: fsTraits('unknown') };
  return {
    fsType: entry.fsType,
    mountPoint: entry.mountPoint,
    source: entry.source,
    traits: fsTraits(entry.fsType),
  };
}
