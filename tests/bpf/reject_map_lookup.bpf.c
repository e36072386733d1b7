// SPDX-License-Identifier: GPL-2.0
/*
 * reject_map_lookup.bpf.c - fixture: rejected by the verifier (NULL check).
 *
 * Dereferences the result of bpf_map_lookup_elem() without checking it for
 * NULL. A HASH map is used on purpose: for an ARRAY with a constant in-range
 * key recent kernels prove the lookup non-NULL and would accept the program.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} lookup_count SEC(".maps");

SEC("xdp")
int xdp_unchecked_lookup(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&lookup_count, &key);

	/* BUG (on purpose): value may be NULL (key not present). */
	__sync_fetch_and_add(value, 1);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
