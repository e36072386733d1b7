// SPDX-License-Identifier: GPL-2.0-only
/*
 * fentry_count.bpf.c - fixture for bpf_attach's fentry/fexit hooks (VM lab): getpid(2) calls per process.
 *
 * fe_getpid (fentry __do_sys_getpid): entries[tgid]++.
 * fx_getpid (fexit __do_sys_getpid): returns[tgid]++.
 *
 * __do_sys_getpid, not __x64_sys_getpid: the syscall wrapper is no BTF function on Debian's 6.1
 * and 6.12 kernels (so libbpf cannot load for it: ESRCH); the two share one address.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
