#!/usr/bin/env bash
# Real volumes for the fs/pvc driver tests (no mocks).
#
#   volume.sh ext4  <mountpoint> [size-MiB]   loop-mount a fresh ext4 image (default 64 MiB)
#                                              kept at <mountpoint>.img, no reserved blocks (-m 0)
#   volume.sh tmpfs <mountpoint> <size>        mount a tmpfs limited to <size> (e.g. 16m)
#   volume.sh remove <mountpoint>              unmount (lazily if busy) and delete the image
#
# Needs root (mount, losetup) and mkfs.ext4 (Debian: e2fsprogs; mount/losetup: mount,
# util-linux). Fails loudly with the reason when it cannot mount; it never skips.
set -euo pipefail

die() {
  echo "volume.sh: $*" >&2
  exit 1
}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    die "must run as root to mount test volumes (uid $(id -u)); run the tests as root, as CI does"
  fi
}

need_tool() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install Debian package '$2' (apt-get install -y $2)"
}

cmd="${1:-}"
mnt="${2:-}"
[ -n "$cmd" ] && [ -n "$mnt" ] || die "usage: volume.sh ext4|tmpfs|remove <mountpoint> [size]"
case "$mnt" in
  /*) ;;
  *) die "mountpoint must be an absolute path: $mnt" ;;
esac

case "$cmd" in
  ext4)
    need_root
    need_tool mkfs.ext4 e2fsprogs
    need_tool mount mount
    need_tool losetup mount
    size="${3:-64}"
    img="${mnt}.img"
    mkdir -p "$mnt"
    if mountpoint -q "$mnt"; then die "$mnt is already a mount point"; fi
    rm -f "$img"
    truncate -s "${size}M" "$img" || die "cannot create image $img"
    mkfs.ext4 -F -q -m 0 -E lazy_itable_init=0,lazy_journal_init=0 "$img" >/dev/null 2>&1 \
      || mkfs.ext4 -F -q -m 0 "$img" || die "mkfs.ext4 failed on $img"
    if ! out=$(mount -o loop "$img" "$mnt" 2>&1); then
      rm -f "$img"
      die "cannot loop-mount $img on $mnt: $out (needs root with CAP_SYS_ADMIN and a free /dev/loop device)"
    fi
    echo "ext4 ${size}MiB at $mnt"
    ;;
  tmpfs)
    need_root
    need_tool mount mount
    size="${3:-}"
    [ -n "$size" ] || die "tmpfs needs a size, e.g. 16m"
    mkdir -p "$mnt"
    if mountpoint -q "$mnt"; then die "$mnt is already a mount point"; fi
    if ! out=$(mount -t tmpfs -o "size=${size},mode=0755" tmpfs "$mnt" 2>&1); then
      die "cannot mount tmpfs on $mnt: $out (needs root with CAP_SYS_ADMIN)"
    fi
    echo "tmpfs ${size} at $mnt"
    ;;
  remove)
    if mountpoint -q "$mnt" 2>/dev/null; then
      umount "$mnt" 2>/dev/null || umount -l "$mnt" || die "cannot unmount $mnt"
    fi
    rm -f "${mnt}.img"
    rmdir "$mnt" 2>/dev/null || true
    ;;
  *)
    die "unknown command '$cmd' (ext4, tmpfs, remove)"
    ;;
esac
