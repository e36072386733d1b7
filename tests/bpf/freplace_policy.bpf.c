// SPDX-License-Identifier: GPL-2.0-only
/*
 * freplace_policy.bpf.c - fixture for bpf_attach's freplace hook (VM lab): replaces the global
 * function ebpfd_policy of a loaded freplace_target program (BPF_PROG_TYPE_EXT).
 *
 * Loaded with bpf_program's attach_program (the target program's pin): libbpf finds ebpfd_policy
 * in that program's BTF and the kernel checks that both have the same prototype. Attached, the
 * target's calls count in replaced instead of entries.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("freplace/ebpfd_policy")
int ebpfd_policy(__u32 tgid)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
