// SPDX-License-Identifier: GPL-2.0
/*
 * racy_counter.bpf.c - fixture: the classic racy packet counter.
 *
 * `*value += 1` compiles to a load, an add and a store (no BPF atomic
 * instruction), so two CPUs counting at once lose increments. Kept as a
 * fixture to show the difference with examples/bpf/counter.bpf.c; the
 * `volatile` makes sure clang keeps the separate load and store.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} racy_count SEC(".maps");

SEC("xdp")
int xdp_racy_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	volatile __u64 *value = bpf_map_lookup_elem(&racy_count, &key);

	if (value)
		*value += 1;	/* NOT atomic: read-modify-write */

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
