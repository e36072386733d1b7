// SPDX-License-Identifier: GPL-2.0-only
/*
 * kprobe_count.bpf.c - fixture for bpf_attach's kprobe hooks (VM lab): getpid(2) calls per process.
 *
 * kp_getpid (kprobe __x64_sys_getpid): entries[tgid]++.
 * krp_getpid (kretprobe __x64_sys_getpid): returns[tgid]++.
 */
#include "tgid_counts.h"

SEC("kprobe/__x64_sys_getpid")
int kp_getpid(void *ctx)
{
	return bump(&entries);
}

SEC("kretprobe/__x64_sys_getpid")
int krp_getpid(void *ctx)
{
	return bump(&returns);
}

char LICENSE[] SEC("license") = "GPL";
