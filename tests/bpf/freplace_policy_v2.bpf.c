// SPDX-License-Identifier: GPL-2.0-only
/*
 * freplace_policy_v2.bpf.c - fixture for bpf_attach's freplace hook (VM lab): the next version of
 * freplace_policy.bpf.c (returns 2, also "not 0": the target keeps counting in replaced). A function
 * takes one extension at a time, so the upgrade releases the old link before it attaches this one.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("freplace/ebpfd_policy")
int ebpfd_policy(__u32 tgid)
{
	return 2;
}

char LICENSE[] SEC("license") = "GPL";
