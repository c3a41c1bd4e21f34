#!/usr/bin/env bash
# Builds, once, the Debian 12 image that `make vm-test` boots: a minimal root file system made
# with debootstrap from the mirror apt uses, with systemd as PID 1, a kernel and initrd, and the
# runtime libraries of our services. Cached outside the repository under a key made of the
# suite, the mirror, the package list and the customization below: change any of them and the
# next run builds a new image (and removes the old one).
#
# Usage: vm-image.sh            prints the image folder (vmlinuz, initrd.img, root.img)
#        GEMMA_VM_REBUILD=1 ... builds again even when cached
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${GEMMA_VM_CACHE:-$HOME/.cache/gemma-serve/vm}
suite=bookworm

# The mirror apt uses here (deb822 or one-line format), else Debian's.
apt_mirror() {
  local uri
  uri=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | awk '{print $2}' | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | grep -v security | grep -E " $suite( |$)" | awk '{print $2}' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
mirror=${GEMMA_VM_MIRROR:-$(apt_mirror)}

# The base system (PID 1, devices, kernel, networking tools, python for the test's control
# channel) and what `ldd` lists for our binaries built with --static-swift-stdlib.
packages=(
  systemd systemd-sysv udev dbus libnss-systemd linux-image-amd64 initramfs-tools iproute2 kmod
  python3-minimal util-linux procps
  libopenblas0-pthread libsentencepiece0 libprotobuf-c1 libpng16-16 libsystemd0 libstdc++6
  libgcc-s1 zlib1g
)

# Everything the image needs besides packages. Its text is part of the cache key.
customize() {
  local root=$1
  echo gemma-vm > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 gemma-vm\n' > "$root/etc/hosts"
  # A fixed machine id: not a "first boot", so no presets are applied at boot.
  echo 6a0f1e3c9d8b4b7e8f2a5c4d3b2a1908 > "$root/etc/machine-id"
  cat > "$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,noatime 0 1
LABEL=gemmashare /mnt/share ext4 ro,nofail,x-systemd.device-timeout=30s 0 0
FSTAB
  mkdir -p "$root/mnt/share"
  # QEMU user networking: the guest is 10.0.2.15, the host 10.0.2.2.
  mkdir -p "$root/etc/systemd/network"
  cat > "$root/etc/systemd/network/10-user.network" <<'NET'
[Match]
Name=e*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
NET
  chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
  # Nothing periodic or unneeded during a two-minute boot.
  for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
           dpkg-db-backup.timer systemd-networkd-wait-online.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$t"
  done
  # The test runner: starts after multi-user.target, runs the script on the share disk (which
  # prints the results and powers off). Type=exec: a oneshot ordered after multi-user.target
  # would hold is-system-running at "starting" for the whole test.
  cat > "$root/etc/systemd/system/gemma-vm-test.service" <<'UNIT'
[Unit]
Description=gemma VM integration test (script on the share disk)
After=multi-user.target
RequiresMountsFor=/mnt/share
ConditionPathExists=/mnt/share/guest-test.sh

[Service]
Type=exec
ExecStart=/bin/bash /mnt/share/guest-test.sh
ExecStopPost=/bin/sh -c '[ -e /mnt/share/keep-running ] || systemctl --no-block poweroff'
StandardOutput=journal+console
StandardError=journal+console
TimeoutStopSec=10s

[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/gemma-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/"
  # A root without password for debugging on the serial console (GEMMA_VM_KEEP=1).
  chroot "$root" passwd -d root >/dev/null
  rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages
}

key=$( { echo "$suite $mirror ${packages[*]}"; declare -f customize; } | sha256sum | cut -c1-16)
image=$cache/image-$key
if [ -z "${GEMMA_VM_REBUILD:-}" ] && [ -f "$image/ok" ]; then
  echo "$image"
  exit 0
fi

log() { echo "vm-image: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot)"; exit 1; }
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null
fi

start=$(date +%s)
mkdir -p "$cache"
work=$cache/build-$key
rm -rf "$work"
mkdir -p "$work"
cleanup() {
  for m in proc sys dev/pts dev; do umount "$work/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
log "debootstrap $suite from $mirror (${#packages[@]} packages and their dependencies)"
includes=$(IFS=,; echo "${packages[*]}")
if ! debootstrap --variant=minbase --include="$includes" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -30 "$work/debootstrap.log" >&2
  cat "$work/rootfs/debootstrap/debootstrap.log" 2>/dev/null | tail -30 >&2 || true
  exit 1
fi
log "debootstrap done in $(( $(date +%s) - start )) s"
customize "$work/rootfs"
mkdir -p "$work/out"
cp -L "$work/rootfs/vmlinuz" "$work/out/vmlinuz"
cp -L "$work/rootfs/initrd.img" "$work/out/initrd.img"
used_mb=$(du -sm "$work/rootfs" | cut -f1)
size_mb=$(( used_mb * 13 / 10 + 256 ))
mkfs.ext4 -q -F -L gemmaroot -d "$work/rootfs" "$work/out/root.img" "${size_mb}M"
{ echo "suite=$suite"; echo "mirror=$mirror"; echo "packages=${packages[*]}"; echo "rootfs_mb=$used_mb";
  echo "image_mb=$size_mb"; echo "build_seconds=$(( $(date +%s) - start ))";
  chroot "$work/rootfs" dpkg-query -W -f='${Package} ${Version}\n' | sed 's/^/pkg /'; } > "$work/out/manifest"
touch "$work/out/ok"
rm -rf "$image"
mv "$work/out" "$image"
# Older images (other keys) are no longer used.
for old in "$cache"/image-*; do [ "$old" = "$image" ] || rm -rf "$old"; done
log "image built in $(( $(date +%s) - start )) s: $image (rootfs $used_mb MB, ext4 image $size_mb MB)"
echo "$image"
