// SPDX-License-Identifier: GPL-2.0
/*
 * tcx_counter.bpf.c - fixture for bpf_attach: a tcx program that counts every packet.
 *
 * pkt_count[0] counts the packets the program sees; it lets them through to the next program
 * (TCX_NEXT, -1: the kernel's value, spelled out for older uapi headers).
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

SEC("tcx/ingress")
int tcx_count(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
