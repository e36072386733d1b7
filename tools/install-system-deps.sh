#!/usr/bin/env bash
# Installs the Debian packages the collection's build, lab and tests need, only when missing,
# and mounts the bpffs. Quick when everything is present. Runs as root on Debian 12.
set -euo pipefail

# package -> a file that proves it is installed
declare -A probe=(
  [clang]=/usr/bin/clang
  [llvm]=/usr/bin/llvm-objdump
  [libbpf-dev]=/usr/include/bpf/bpf_helpers.h
  [libbpf1]=/usr/lib/x86_64-linux-gnu/libbpf.so.1
  [linux-libc-dev]=/usr/include/linux/bpf.h
  [bpftool]=/usr/sbin/bpftool
  [iproute2]=/usr/sbin/ip
  [openssh-server]=/usr/sbin/sshd
  [openssh-client]=/usr/bin/ssh
  [util-linux]=/usr/bin/unshare
  # the netns lab hosts run this machine's /usr/bin/python3: map health checks need jmespath there
  [python3-jmespath]=/usr/lib/python3/dist-packages/jmespath/__init__.py
  [procps]=/usr/bin/pgrep
  [shellcheck]=/usr/bin/shellcheck
  [make]=/usr/bin/make
  [libmagic1]=/usr/lib/x86_64-linux-gnu/libmagic.so.1   # reuse (make publish) reads file types with it
  # the bench runs the modules with Debian's /usr/bin/python3, as a fleet host does (the host role installs it)
  [python3-pyroute2]=/usr/lib/python3/dist-packages/pyroute2/__init__.py
  # lab VM hosts: images from Debian packages, qemu guests on copy-on-write overlays
  [mmdebstrap]=/usr/bin/mmdebstrap
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [qemu-utils]=/usr/bin/qemu-img
  [e2fsprogs]=/usr/sbin/mkfs.ext4
)

missing=()
for pkg in "${!probe[@]}"; do
  # these libraries' paths differ per architecture: accept any multiarch location
  if [[ $pkg == libbpf1 || $pkg == libmagic1 ]]; then
    compgen -G "/usr/lib/*/${pkg%1}.so.1" >/dev/null && continue
  elif [[ -e ${probe[$pkg]} ]]; then
    continue
  fi
  missing+=("$pkg")
done
# the venv needs ensurepip, which Debian ships apart from python3
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)

if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
