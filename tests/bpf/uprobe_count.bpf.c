// SPDX-License-Identifier: GPL-2.0-only
/*
 * uprobe_count.bpf.c - fixture for bpf_attach's uprobe hooks (VM lab): calls of libc's getpid()
 * per process.
 *
 * up_getpid (uprobe on Debian's libc getpid): entries[tgid]++.
 * urp_getpid (uretprobe on it): returns[tgid]++.
 */
#include "tgid_counts.h"

#define LIBC "/usr/lib/x86_64-linux-gnu/libc.so.6"

SEC("uprobe/" LIBC ":getpid")
int up_getpid(void *ctx)
{
	return bump(&entries);
}

SEC("uretprobe/" LIBC ":getpid")
int urp_getpid(void *ctx)
{
	return bump(&returns);
}

char LICENSE[] SEC("license") = "GPL";
