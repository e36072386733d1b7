// SPDX-License-Identifier: GPL-2.0
/*
 * counter.bpf.c - the demo packet counter, written race-free.
 *
 * Counts every packet seen on the interface in a single-slot ARRAY map and
 * lets it pass. The map is what a deployment keeps across upgrades, so its
 * spec (ARRAY, u32 -> u64, 1 entry) must stay stable between versions.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
	__u64 *value;

	value = bpf_map_lookup_elem(&pkt_count, &key);
	/* An ARRAY lookup cannot fail for key 0, but the verifier insists. */
	if (value)
		/* Atomic: the program runs on many CPUs at once; a plain
		 * "+= 1" would lose increments (see tests/bpf/racy_counter). */
		__sync_fetch_and_add(value, 1);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
