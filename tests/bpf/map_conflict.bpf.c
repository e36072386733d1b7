// SPDX-License-Identifier: GPL-2.0
/*
 * map_conflict.bpf.c - fixture: a map whose spec conflicts with the counter.
 *
 * Same program name and map name as examples/bpf/counter.bpf.c, but
 * `pkt_count` is a HASH with 4096 entries instead of an ARRAY with 1. Loading
 * this over a deployment that pinned the counter's map must be refused with
 * both specs in the error (map_type and max_entries differ).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);	/* counter.bpf.c: ARRAY */
	__uint(max_entries, 4096);		/* counter.bpf.c: 1 */
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

SEC("xdp")
int xdp_packet_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 one = 1;
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&pkt_count, &key, &one, BPF_NOEXIST);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
