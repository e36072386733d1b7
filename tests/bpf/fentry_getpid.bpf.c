// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry_getpid.bpf.c - fixture for bpf_attach's fentry/fexit hooks (VM lab): getpid(2) calls per process.
 *
 * fe_getpid (fentry __do_sys_getpid): entries[tgid]++.
 * fx_getpid (fexit __do_sys_getpid): returns[tgid]++.
 *
 * __do_sys_getpid, not __x64_sys_getpid: the syscall wrapper is no BTF function on Debian's 6.1
 * and 6.12 kernels (so libbpf cannot load for it: ESRCH); the two share one address.
 */
#include "tgid_counts.h"

SEC("fentry/__do_sys_getpid")
int fe_getpid(void *ctx)
{
	return bump(&entries);
}

SEC("fexit/__do_sys_getpid")
int fx_getpid(void *ctx)
{
	return bump(&returns);
}

char LICENSE[] SEC("license") = "GPL";
