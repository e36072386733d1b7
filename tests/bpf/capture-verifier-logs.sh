#!/usr/bin/env bash
# Re-captures the real kernel verifier logs kept in tests/unit/data/verifier/
# from the fixtures in this directory. Run as root from the repository root
# after `make bpf`, on a kernel you want the unit tests to reflect:
#     tests/bpf/capture-verifier-logs.sh
# Loads each object with bpftool under /sys/fs/bpf/ebpfd_cap_* (removed again)
# and keeps only the kernel's log, i.e. what libbpf prints between
# "-- BEGIN PROG LOAD LOG --" and "-- END PROG LOAD LOG --". Nothing is attached.
set -euo pipefail

BPF_DIR=${EBPF_DEPLOY_BPF_DIR:-build/bpf}
OUT=tests/unit/data/verifier
PIN=/sys/fs/bpf/ebpfd_cap_$$
mkdir -p "$OUT"

cleanup() { rm -rf "$PIN"; }
trap cleanup EXIT

# extract_log <file>: the kernel log without libbpf's markers.
extract_log() {
    sed -n '/-- BEGIN PROG LOAD LOG --/,/-- END PROG LOAD LOG --/p' "$1" | sed '1d;$d'
}

# capture <name> <object> [bpftool options...]: load, keep the log, clean up.
capture() {
    local name=$1 obj=$2 raw
    shift 2
    raw=$(mktemp)
    "$@" prog loadall "$BPF_DIR/$obj" "$PIN" >"$raw" 2>&1 || true
    extract_log "$raw" >"$OUT/$name.log"
    rm -f "$raw"
    cleanup
    [ -s "$OUT/$name.log" ] || { echo "no verifier log for $obj" >&2; exit 1; }
    echo "$OUT/$name.log: $(grep -v '^processed ' "$OUT/$name.log" | tail -n 1)"
}

# Rejected programs, as libbpf loads them by default (log_level 1 on failure).
for fixture in reject_packet_access reject_map_lookup reject_unbounded_loop \
               reject_gpl_helper reject_uninit_stack reject_stack_limit; do
    capture "$fixture" "$fixture.bpf.o" bpftool
done

# A CO-RE relocation this kernel's BTF cannot resolve: libbpf poisons the instruction and rewrites
# the verifier's complaint about it into "failed to resolve CO-RE relocation ...".
capture core_missing_field core_missing_field.bpf.o bpftool

# With -d bpftool asks for log_level 1+2+4: full trace plus statistics.
capture counter_ok counter.bpf.o bpftool -d
capture reject_stack_limit_verbose reject_stack_limit.bpf.o bpftool -d

# Reading uninitialized stack is refused only without CAP_PERFMON/CAP_SYS_ADMIN.
capture uninit_key_unprivileged uninit_key_unpriv.bpf.o \
    setpriv --inh-caps=-all --bounding-set=-perfmon,-sys_admin bpftool
