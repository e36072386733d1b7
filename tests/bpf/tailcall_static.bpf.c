// SPDX-License-Identifier: GPL-2.0-only
/*
 * tailcall_static.bpf.c - fixture: an XDP entry program tail-calling slot 0 of a statically
 * initialised PROG_ARRAY (libbpf fills the slot at load, from `.values`).
 *
 * The callee counts each packet into `hits[VERSION]`: `hits` is an ordinary map, shared by the
 * versions of a deployment, so a test sees which version's callee a running entry program reaches.
 * tailcall_static_v2.bpf.c is this source built with VERSION 2.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef VERSION
#define VERSION 1
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("xdp")
int xdp_tail_callee(struct xdp_md *ctx)
{
	__u32 key = VERSION;
	__u64 *value = bpf_map_lookup_elem(&hits, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int (void *));
} jmp_table SEC(".maps") = {
	.values = {
		[0] = (void *)&xdp_tail_callee,
	},
};

SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
