// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm_count.bpf.c - fixture for bpf_attach's lsm hook (VM lab): file opens per process.
 *
 * lsm_open (lsm/file_open): opens[tgid]++; returns 0, so every open is allowed.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} opens SEC(".maps");

SEC("lsm/file_open")
int lsm_open(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *value = bpf_map_lookup_elem(&opens, &tgid);

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&opens, &tgid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
