/**
 * What the numbers were measured on: CPU, cores, memory, Node, the hasher in use, and
 * the disk under the benchmark's temp directory (device, filesystem type, whether the
 * kernel calls it rotational, and what the device is — virtio, NVMe, SCSI…). Read from
 * /proc and /sys where they exist; fields that cannot be found are null, never guessed.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import { hashImplementation } from '../src/hash/index.js';

export interface DiskInfo {
  /** Directory whose disk this describes. */
  path: string;
  mountPoint: string | null;
  fsType: string | null;
  /** Block device (e.g. `vda`), or the mount source for virtual filesystems. */
  device: string | null;
  /** e.g. `virtio`, `nvme`, `scsi`, `tmpfs`, `ssd`; null when unknown. */
  kind: string | null;
  /** The kernel's `queue/rotational` flag (virtio disks often report 1 whatever backs them). */
  rotational: boolean | null;
  model: string | null;
}

export interface MachineInfo {
  hostname: string;
  platform: string;
  kernel: string;
  arch: string;
  cpu: { model: string; cores: number; mhz: number | null; flags: string[] };
  memoryMiB: number;
  node: string;
  v8: string;
  /** Resumable-hash implementation the store uses for uploads (native addon or wasm fallback). */
  hash: string;
  disk: DiskInfo;
  /** 1/5/15-minute load averages when the run started and ended. */
  load: { start: number[]; end?: number[] };
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  devMajorMinor: string;
}

/** The mountinfo entry with the longest mount point containing `path`. */
function mountOf(path: string): MountEntry | null {
  const text = readText('/proc/self/mountinfo');
  if (!text) return null;
  let best: MountEntry | null = null;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const mountPoint = (fields[4] ?? '').replace(/\\040/g, ' ');
    const [fsType = '', source = ''] = right.split(' ');
    const inside = path === mountPoint || path.startsWith(mountPoint === '/' ? '/' : `${mountPoint}/`);
    if (inside && (!best || mountPoint.length >= best.mountPoint.length)) {
      best = { mountPoint, fsType, source, devMajorMinor: fields[2] ?? '' };
    }
  }
  return best;
}

function blockDevice(majorMinor: string): string | null {
  const link = `/sys/dev/block/${majorMinor}`;
  try {
    const resolved = realpathSync(link);
    // A partition's parent directory is its disk.
    const name = resolved.split('/').pop() ?? null;
    if (name && readText(`${resolved}/partition`) !== null)
      return resolved.split('/').slice(-2, -1)[0] ?? name;
    return name;
  } catch {
    return null;
  }
}

function diskKind(device: string): string | null {
  if (device.startsWith('nvme')) return 'nvme';
  if (device.startsWith('vd')) return 'virtio';
  if (device.startsWith('xvd')) return 'xen';
  if (device.startsWith('loop')) return 'loop';
  if (device.startsWith('sd')) return 'scsi/sata';
  if (device.startsWith('mmcblk')) return 'mmc';
  return null;
}

export function describeDisk(path: string): DiskInfo {
  let real = path;
  try {
    real = realpathSync(path);
    statSync(real);
  } catch {
    // describe the path as given
  }
  const mount = mountOf(real);
  const info: DiskInfo = {
    path: real,
    mountPoint: mount?.mountPoint ?? null,
    fsType: mount?.fsType ?? null,
    device: null,
    kind: null,
    rotational: null,
    model: null,
  };
  if (!mount) return info;
  const device = blockDevice(mount.devMajorMinor);
  if (!device) {
    info.device = mount.source || null;
    info.kind = ['tmpfs', 'overlay', 'nfs', 'nfs4', 'cephfs', 'cifs', 'smb3'].includes(mount.fsType)
      ? mount.fsType
      : null;
    return info;
  }
  info.device = device;
  info.kind = diskKind(device);
  const rotational = readText(`/sys/block/${device}/queue/rotational`);
  info.rotational = rotational === null ? null : rotational === '1';
  info.model =
    readText(`/sys/block/${device}/device/model`) ??
    (readText(`/sys/block/${device}/device/vendor`) === '0x1af4' ? 'virtio-blk (Red Hat/QEMU)' : null);
  return info;
}

export async function machineInfo(diskPath: string): Promise<MachineInfo> {
  const cpus = os.cpus();
  const cpuinfo = readText('/proc/cpuinfo') ?? '';
  const flags = (/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '').split(' ');
  return {
    hostname: os.hostname(),
    platform: `${os.platform()} ${os.release()}`,
    kernel: os.version(),
    arch: os.arch(),
    cpu: {
      model: cpus[0]?.model.trim() ?? 'unknown',
      cores: cpus.length,
      mhz: cpus[0]?.speed || null,
      // The ones that decide hashing speed.
      flags: ['sha_ni', 'avx2', 'avx512f', 'aes'].filter((flag) => flags.includes(flag)),
    },
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    v8: process.versions.v8,
    hash: await hashImplementation(),
    disk: describeDisk(diskPath),
    load: { start: os.loadavg().map((n) => Number(n.toFixed(2))) },
  };
}
