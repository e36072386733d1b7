// SPDX-License-Identifier: GPL-2.0
/*
 * nf_count.bpf.c - fixture for bpf_attach's netfilter hook: counts the packets of the hook it is
 * attached to and accepts them (NF_ACCEPT).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NF_ACCEPT 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

SEC("netfilter")
int nf_count(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return NF_ACCEPT;
}

char LICENSE[] SEC("license") = "GPL";
