// SPDX-License-Identifier: GPL-2.0-only
/*
 * uprobe_count.bpf.c - fixture for bpf_attach's uprobe hooks (VM lab): calls of libc's getpid()
 * per process.
 *
 * up_getpid (uprobe on Debian's libc getpid): entries[tgid]++.
 * urp_getpid (uretprobe on it): returns[tgid]++.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define LIBC "/usr/lib/x86_64-linux-gnu/libc.so.6"
#define COUNTS(name) \
	struct { \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__uint(max_entries, 1024); \
		__type(key, __u32); \
		__type(value, __u64); \
	} name SEC(".maps")

COUNTS(entries);
COUNTS(returns);

static __always_inline int bump(void *map)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *value = bpf_map_lookup_elem(map, &tgid);

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(map, &tgid, &one, BPF_NOEXIST);
	return 0;
}

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
