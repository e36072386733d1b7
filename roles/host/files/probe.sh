#!/bin/sh
# ebpf.deploy.host: everything the role reads from the host, in one run and without Python (a
# module run costs a Python start and Ansible's imports on the host; this costs a few commands).
# Usage: probe.sh BPFFS_PATH TRACEFS_PATH PACKAGE...   Prints one JSON object:
#   kernel      the running kernel's release (uname -r)
#   btf         whether the kernel exposes its BTF (/sys/kernel/btf/vmlinux)
#   systemd     whether systemd runs the host (it made /run/systemd/system, as sd_booted(3) reads it)
#   restore_enabled  whether systemd has the role's ebpf-deploy-restore.service enabled
#   dpkg        whether dpkg manages the host's packages (the Debian family)
#   installed   which of the PACKAGEs dpkg has installed
#   bpffs, tracefs   mountpoint(1)'s status for the paths: 0 mounted, 32 not, 1 no such directory
set -u
bpffs=$1 tracefs=$2
shift 2
flag() { if "$@"; then echo true; else echo false; fi; }
mounted() { mountpoint -q "$1"; echo $?; }
installed=
if command -v dpkg-query >/dev/null 2>&1; then
    dpkg=true
    # shellcheck disable=SC2016  # dpkg-query expands the format, not the shell
    installed=$(dpkg-query --show --showformat '${Package} ${db:Status-Status}\n' "$@" 2>/dev/null \
        | awk '$2 == "installed" { printf "%s\"%s\"", sep, $1; sep = ", " }')
else
    dpkg=false
fi
systemd=$(flag test -d /run/systemd/system)
restore_enabled=false
if [ "$systemd" = true ] && systemctl --quiet is-enabled ebpf-deploy-restore.service 2>/dev/null; then
    restore_enabled=true
fi
printf '{"kernel": "%s", "btf": %s, "systemd": %s, "restore_enabled": %s, "dpkg": %s, "installed": [%s], "bpffs": %s, "tracefs": %s}\n' \
    "$(uname -r)" "$(flag test -e /sys/kernel/btf/vmlinux)" "$systemd" \
    "$restore_enabled" "$dpkg" \
    "$installed" "$(mounted "$bpffs")" "$(mounted "$tracefs")"
