// SPDX-License-Identifier: GPL-2.0
/*
 * tcx_order.bpf.c - fixture for bpf_attach's tcx ordering, proven by packets.
 *
 * tcx_mark sets skb->mark; tcx_seen counts packets by whether the mark was already set:
 * seen[0] = marked (tcx_mark ran before), seen[1] = unmarked (tcx_mark ran after, or not at all).
 * skb->mark is scrubbed when a packet crosses into another network namespace over a veth, so
 * every packet arrives unmarked.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TCX_NEXT (-1)
#define ORDER_MARK 0xebbf

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("tcx/ingress")
int tcx_mark(struct __sk_buff *skb)
{
	skb->mark = ORDER_MARK;
	return TCX_NEXT;
}

SEC("tcx/ingress")
int tcx_seen(struct __sk_buff *skb)
{
	__u32 key = skb->mark == ORDER_MARK ? 0 : 1;
	__u64 *value = bpf_map_lookup_elem(&seen, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
