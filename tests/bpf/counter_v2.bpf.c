// SPDX-License-Identifier: GPL-2.0
/*
 * counter_v2.bpf.c - fixture: version 2 of examples/bpf/counter.bpf.c.
 *
 * Used by upgrade tests. Same program name and the same `pkt_count` map spec
 * (ARRAY, u32 -> u64, 1 entry) so the pinned map is compatible and reused;
 * the code differs (it also counts bytes into a new map `byte_count`), so
 * the object digest differs and a new version is loaded.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Must stay identical to the spec in examples/bpf/counter.bpf.c. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

/* New in v2: created on upgrade, absent from v1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} byte_count SEC(".maps");

SEC("xdp")
int xdp_packet_counter(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	__u32 key = 0;
	__u64 *value;

	value = bpf_map_lookup_elem(&pkt_count, &key);
	if (value)
		__sync_fetch_and_add(value, 1);

	value = bpf_map_lookup_elem(&byte_count, &key);
	if (value)
		__sync_fetch_and_add(value, len);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
