// SPDX-License-Identifier: GPL-2.0-only
/*
 * freplace_target.bpf.c - fixture for bpf_attach's freplace hook (VM lab): the program whose global
 * function an freplace program replaces while it runs.
 *
 * fr_getpid (kprobe __x64_sys_getpid) asks ebpfd_policy(tgid): 0 counts the call in entries[tgid],
 * anything else in replaced[tgid]. ebpfd_policy returns 0 until freplace_policy.bpf.c (which returns 1)
 * is attached in its place.
 *
 * ebpfd_policy is global and __noinline: the kernel replaces global functions only (a static one
 * may have been inlined or changed by the compiler). The empty asm hides its value from the
 * compiler (and uses tgid, so the caller passes it: the verifier checks a global function's
 * arguments), so fr_getpid really tests what the function returns instead of a folded constant.
 */
#include "tgid_counts.h"

COUNTS(entries);
COUNTS(replaced);

__noinline int ebpfd_policy(__u32 tgid)
{
	int verdict = 0;

	asm volatile("" : "+r"(verdict) : "r"(tgid));
	return verdict;
}

SEC("kprobe/__x64_sys_getpid")
int fr_getpid(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (ebpfd_policy(tgid))
		return bump(&replaced);
	return bump(&entries);
}

char LICENSE[] SEC("license") = "GPL";
