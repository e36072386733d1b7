// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry_count.bpf.c - fixture: a valid fentry (BPF_PROG_TYPE_TRACING) program.
 *
 * Counts calls of do_unlinkat. A kernel in lockdown refuses to load tracing
 * programs with EPERM even for root: the module must say lockdown, not point
 * at capabilities or memory limits. Loads where the kernel is not locked down.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unlink_calls SEC(".maps");

SEC("fentry/do_unlinkat")
int fentry_unlink(unsigned long long *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&unlink_calls, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
