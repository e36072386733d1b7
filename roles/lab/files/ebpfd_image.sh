#!/bin/sh
# Builds one lab VM image from Debian packages only (ebpf.deploy.lab, called by ebpfd_vm.py):
#     ebpfd_image.sh build SUITE PACKAGES_FILE MIRROR OUTDIR
# writes OUTDIR/rootfs.img (a sparse ext4 file system, no partition table), OUTDIR/vmlinuz and
# OUTDIR/initrd.img (the image's own kernel and initrd, for qemu's direct kernel boot) and
# OUTDIR/packages.txt (what got installed). The caller picks MIRROR from this machine's apt sources
# and keys the image by a digest of the package list and this script.
#     ebpfd_image.sh essential|customize ROOT     (mmdebstrap's hooks, internal)
# Inside the image, ebpfd-lab-seed.service reads the per-VM seed disk (a tar archive on the virtio
# disk with serial "ebpfd-seed") at boot: host keys, authorized_keys, hostname and the addresses of
# the data and management interfaces. No password is set; sshd takes keys only.
set -eu

# essential ROOT: before the kernel is installed, make its initrd small: MODULES=list (none from
# the list, which stays the package's) plus a hook that loads what the lab's VMs boot from.
essential() {
    root=$1
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
    echo MODULES=list >"$root/etc/initramfs-tools/conf.d/ebpfd-lab.conf"
    cat >"$root/etc/initramfs-tools/hooks/ebpfd-lab" <<'EOF'
#!/bin/sh
# ebpf.deploy lab VM: the initrd needs only the virtio disk and ext4
case ${1:-} in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk ext4; do force_load "$m"; done
EOF
    chmod 0755 "$root/etc/initramfs-tools/hooks/ebpfd-lab"
}

customize() {
    root=$1
    cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 1
EOF
    rm -f "$root"/etc/ssh/ssh_host_*
    mkdir -p "$root/etc/ssh/sshd_config.d"
    cat >"$root/etc/ssh/sshd_config.d/ebpfd-lab.conf" <<'EOF'
# ebpf.deploy lab VM: one host key from the seed disk, keys only
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
    cat >"$root/usr/local/sbin/ebpfd-lab-seed" <<'EOF'
#!/bin/sh
# ebpf.deploy lab VM: apply the seed disk (written by ebpfd_vm.py on the controller).
set -eu
# the seed disk by its serial, straight from sysfs (no wait for udev's /dev/disk/by-id)
seed_disk() {
    for s in /sys/block/vd*/serial; do
        [ "$(cat "$s" 2>/dev/null)" = ebpfd-seed ] && { d=${s%/serial}; echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}
i=0
until dev=$(seed_disk) && [ -b "$dev" ]; do
    [ "$i" -lt 300 ] || { echo "ebpfd-lab-seed: no disk with serial ebpfd-seed" >&2; exit 1; }
    sleep 0.1; i=$((i + 1))
done
seed=/run/ebpfd-lab
mkdir -p -m 0700 "$seed"
tar -xf "$dev" -C "$seed"
. "$seed/lab.env"
hostname "$LAB_HOSTNAME"
echo "$LAB_HOSTNAME" >/etc/hostname
# the host's own name resolves without DNS, as on a Debian install (setup's getfqdn waited 10 s for
# a resolver the guest cannot reach)
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$LAB_HOSTNAME" >/etc/hosts
install -m 0600 "$seed/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$seed/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d -m 0700 /root/.ssh
install -m 0600 "$seed/authorized_keys" /root/.ssh/authorized_keys
# interfaces by MAC: the data NIC becomes eth0, the management NIC mgmt0 (as on netns lab hosts)
ifname_of() {
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address")" = "$1" ] && { basename "$d"; return 0; }
    done
    return 1
}
i=0
until ifname_of "$LAB_DATA_MAC" >/dev/null && ifname_of "$LAB_MGMT_MAC" >/dev/null; do
    [ "$i" -lt 300 ] || { echo "ebpfd-lab-seed: NICs $LAB_DATA_MAC/$LAB_MGMT_MAC missing" >&2; exit 1; }
    sleep 0.1; i=$((i + 1))
done
data=$(ifname_of "$LAB_DATA_MAC"); mgmt=$(ifname_of "$LAB_MGMT_MAC")
ip link set dev "$data" down name ebpfd-tmp-data
ip link set dev "$mgmt" down name ebpfd-tmp-mgmt
ip link set dev ebpfd-tmp-data name eth0
ip link set dev ebpfd-tmp-mgmt name mgmt0
ip link set lo up
ip link set eth0 up
ip addr add "$LAB_DATA_ADDRESS/$LAB_DATA_PREFIXLEN" dev eth0
ip neigh replace "$LAB_PEER_ADDRESS" lladdr "$LAB_PEER_MAC" dev eth0 nud permanent
ip link set mgmt0 up
ip addr add "$LAB_MGMT_ADDRESS" dev mgmt0
ip route add default via "$LAB_MGMT_GATEWAY" dev mgmt0
EOF
    chmod 0755 "$root/usr/local/sbin/ebpfd-lab-seed"
    cat >"$root/etc/systemd/system/ebpfd-lab-seed.service" <<'EOF'
[Unit]
Description=ebpf.deploy lab: host keys, hostname and addresses from the seed disk
After=systemd-udev-trigger.service local-fs.target
Before=network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ebpfd-lab-seed

[Install]
WantedBy=multi-user.target
EOF
    chroot "$root" systemctl enable ebpfd-lab-seed.service >/dev/null 2>&1
    # nothing in the lab runs on a timer, and the boot stays short under TCG: no timers, no
    # modules the lab never uses (loop, dm, fuse, drm, pstore), no utmp bookkeeping
    chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
        fstrim.timer man-db.timer getty@tty1.service getty-static.service systemd-timesyncd.service \
        modprobe@loop.service modprobe@dm_mod.service modprobe@fuse.service modprobe@drm.service \
        modprobe@efi_pstore.service systemd-pstore.service e2scrub_reap.service \
        systemd-update-utmp.service systemd-update-utmp-runlevel.service >/dev/null 2>&1
    echo ebpfd-vm >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
    # no resolver: the guest reaches nothing but the lab (restrict=on), and mmdebstrap copied this
    # machine's resolv.conf, whose name server the guest would wait for on every lookup
    rm -f "$root/etc/resolv.conf" && : >"$root/etc/resolv.conf"   # a file of its own, never a link out of the chroot
    # shellcheck disable=SC2016  # dpkg-query expands the format, not the shell
    chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$root/ebpfd-packages.txt"
}

# cleanup DIR: remove a (half-made) build dir. A build that was killed may have left mmdebstrap's
# mounts (/proc, /sys, /dev) inside its chroot: unmount them first and never cross into another
# file system, so the machine's own /dev is never touched.
cleanup() {
    [ -e "$1" ] || return 0
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || :
    done
    rm -rf --one-file-system "$1"
}

build() {
    suite=$1 packages=$2 mirror=$3 out=$4
    include=$(grep -v '^[[:space:]]*#' "$packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
    tmp="$out.tmp"
    cleanup "$tmp"
    mkdir -p "$tmp"
    trap 'cleanup "$tmp"' EXIT
    # a small initrd (only what the lab's virtio disk and ext4 root need) boots much faster under TCG
    mmdebstrap --quiet --mode=root --variant=apt --include="$include" \
        --essential-hook="\"$0\" essential \"\$1\"" \
        --customize-hook="\"$0\" customize \"\$1\"" \
        "$suite" "$tmp/root" "$mirror"
    cp "$tmp"/root/boot/vmlinuz-* "$tmp/vmlinuz"
    cp "$tmp"/root/boot/initrd.img-* "$tmp/initrd.img"
    mv "$tmp/root/ebpfd-packages.txt" "$tmp/packages.txt"
    mkfs.ext4 -q -F -L ebpfd-root -d "$tmp/root" "$tmp/rootfs.img" 2G >/dev/null
    cleanup "$tmp/root"
    rm -rf --one-file-system "$out"
    mv "$tmp" "$out"
    trap - EXIT
}

case ${1:-} in
    build) shift; build "$@" ;;
    essential) shift; essential "$@" ;;
    customize) shift; customize "$@" ;;
    *) echo "usage: $0 build SUITE PACKAGES_FILE MIRROR OUTDIR | essential ROOT | customize ROOT" >&2; exit 2 ;;
esac
