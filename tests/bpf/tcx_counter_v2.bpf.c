// SPDX-License-Identifier: GPL-2.0
/*
 * tcx_counter_v2.bpf.c - fixture for bpf_deployment's hooks: version 2 of tcx_counter.
 *
 * The same pkt_count map (so an upgrade keeps counting in one place); tcx_count counts ingress
 * packets as v1 does, and tcx_count_egress, the hook v2 adds, counts egress packets in a map of
 * its own, egress_count.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TCX_NEXT (-1)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} egress_count SEC(".maps");

static __always_inline int bump(void *map)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(map, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int tcx_count(struct __sk_buff *skb)
{
	return bump(&pkt_count);
}

SEC("tcx/egress")
int tcx_count_egress(struct __sk_buff *skb)
{
	return bump(&egress_count);
}

char LICENSE[] SEC("license") = "GPL";
