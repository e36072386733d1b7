// SPDX-License-Identifier: GPL-2.0
/*
 * counter_drop.bpf.c - fixture: a "bad" version of the counter.
 *
 * Loads and verifies fine and keeps the compatible `pkt_count` map, but drops
 * every packet. Used by rollout tests: the health check (traffic still flows)
 * must fail and the rollout must roll back to the previous version.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Same spec as examples/bpf/counter.bpf.c so the pinned map is reused. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

SEC("xdp")
int xdp_packet_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);

	return XDP_DROP;	/* the bug this fixture stands for */
}

char LICENSE[] SEC("license") = "GPL";
