// SPDX-License-Identifier: GPL-2.0
/*
 * reject_unbounded_loop.bpf.c - fixture: rejected by the verifier (loop).
 *
 * Spins until user space sets a flag in a map. Nothing in the loop changes
 * the verifier's view of the program state, so at the loop head it sees the
 * exact state it has already seen and reports an infinite loop. (The volatile
 * read keeps clang from turning the loop into something else.)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} go_flag SEC(".maps");

SEC("xdp")
int xdp_unbounded_loop(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *flag = bpf_map_lookup_elem(&go_flag, &key);

	if (!flag)
		return XDP_PASS;

	/* BUG (on purpose): no bound on the number of iterations. */
	while (*(volatile __u64 *)flag == 0)
		;

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
