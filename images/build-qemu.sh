#!/usr/bin/env bash
# `make image`: the data-center image (QCOW2, and VMDK by conversion) built on
# this machine from Debian packages, without Packer's qemu builder.
#
# Why not the qemu builder: it boots an installer ISO or a cloud base image,
# and neither is reachable here (only the Debian package mirror and PyPI are);
# it then provisions over the VM's user-mode network, whose resolver does not
# know the mirror's address. So: debootstrap a Debian 12 root into a
# partitioned raw disk, run the very provisioning script the Packer sources run
# (images/provision.sh, TRANSIT_BOOT_SOURCE=drive) in a chroot, install GRUB,
# and convert with qemu-img. The template's qemu source does the same where
# the internet is reachable.
#
# Output: build/image/transit-<version>.qcow2 and .vmdk. Needs root and loop devices.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/image"
version=$("$root/.venv/bin/python" -c 'import tomllib,sys;print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$root/pyproject.toml")
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
raw="$out/transit-$version.raw"
mnt="$out/mnt"
size=${IMAGE_SIZE:-3G}

"$root/tools/bootstrap-apt.sh" "$root/images/apt-packages.txt"
"$root/images/stage.sh"

loop=""
# Unmount for real (not lazily) and sync before the loop device goes: qemu-img
# reads the raw file, and a lazy unmount may not have written the filesystem yet.
cleanup() {
  set +e
  for m in tmp/transit-image run sys proc dev/pts dev; do mountpoint -q "$mnt/$m" && { umount "$mnt/$m" || umount -l "$mnt/$m"; }; done
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  sync
  [[ -n "$loop" ]] && losetup -d "$loop"
  sync
}
trap cleanup EXIT

echo "image: raw disk $raw ($size, one ext4 partition, BIOS boot)"
mkdir -p "$out" "$mnt"
rm -f "$raw"
truncate -s "$size" "$raw"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup -f --show -P "$raw")
for _ in $(seq 20); do [[ -b "${loop}p1" ]] && break; sleep 0.1; done
# Some kernels (loop max_part=0) scan the table only when asked.
[[ -b "${loop}p1" ]] || partx -a "$loop"
mkfs.ext4 -q -L transit-root "${loop}p1"
mount "${loop}p1" "$mnt"

echo "image: debootstrap $suite from $mirror"
nice -n 10 debootstrap --variant=minbase \
  --include=systemd-sysv,udev,dbus,linux-image-amd64,grub-pc,initramfs-tools,iproute2,ca-certificates \
  "$suite" "$mnt" "$mirror" >"$out/debootstrap.log" 2>&1 || { tail -20 "$out/debootstrap.log"; exit 1; }

for m in dev dev/pts proc sys run; do mount --bind "/$m" "$mnt/$m"; done
# The build host's names and apt settings reach the mirror; they leave with the build.
cp /etc/resolv.conf "$mnt/etc/resolv.conf"
cp /etc/hosts "$mnt/etc/hosts"
for f in $(grep -l '^Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null); do cp "$f" "$mnt/etc/apt/apt.conf.d/99build-host-$(basename "$f")"; done
mkdir -p "$mnt/tmp/transit-image"
mount --bind "$out/stage" "$mnt/tmp/transit-image"

echo "image: provision (images/provision.sh)"
chroot "$mnt" /usr/bin/env -i TRANSIT_BOOT_SOURCE=drive TRANSIT_IMAGE_FILES=/tmp/transit-image PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  nice -n 10 bash /tmp/transit-image/provision.sh

echo "image: system settings, GRUB"
uuid=$(blkid -s UUID -o value "${loop}p1")
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$mnt/etc/fstab"
echo "transit" > "$mnt/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 transit\n' > "$mnt/etc/hosts"
rm -f "$mnt/etc/resolv.conf" "$mnt"/etc/apt/apt.conf.d/99build-host-*
# Every NIC asks for DHCP (systemd-networkd); a data-center connector with
# static addresses gets a .network file in /etc/systemd/network, as any Debian host.
cat > "$mnt/etc/systemd/network/80-transit-dhcp.network" <<'NET'
[Match]
Type=ether

[Network]
DHCP=ipv4
NET
mkdir -p "$mnt/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat > "$mnt/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf" <<'NET'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60
NET
chroot "$mnt" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service
# GRUB and the kernel on the serial console too: a data-center VM is often run headless.
sed -i 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 console=ttyS0,115200n8"/; s/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' "$mnt/etc/default/grub"
printf 'GRUB_TERMINAL="console serial"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n' >> "$mnt/etc/default/grub"
chroot "$mnt" passwd -l root >/dev/null
chroot "$mnt" grub-install --target=i386-pc "$loop" 2>&1 | tail -1
chroot "$mnt" update-grub 2>&1 | tail -1
# Without udev in the chroot grub-mkconfig names the root by its loop device; boot by UUID.
sed -i "s|root=/dev/loop[0-9]*p1|root=UUID=$uuid|" "$mnt/boot/grub/grub.cfg"
grep -q "root=UUID=$uuid" "$mnt/boot/grub/grub.cfg"
chroot "$mnt" apt-get clean
chroot "$mnt" /opt/transit/bin/transit-agent --version
# What the image must hold to boot; checked before it is converted.
for f in "$mnt/boot/grub/grub.cfg" "$mnt"/boot/vmlinuz-* "$mnt"/boot/initrd.img-* "$mnt/boot/grub/i386-pc/core.img"; do
  [[ -s "$f" ]] || { echo "image: $f is missing" >&2; exit 1; }
done

trap - EXIT
cleanup
loop=""
echo "image: convert"
qemu-img convert -c -f raw -O qcow2 "$raw" "$out/transit-$version.qcow2"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$out/transit-$version.vmdk"
rm -f "$raw"
ls -la "$out"/transit-"$version".*
