// SPDX-License-Identifier: GPL-2.0-only
/*
 * mapinmap_static.bpf.c - fixture: an XDP program reaching its inner map through slot 0 of a
 * statically initialised ARRAY_OF_MAPS (libbpf fills the slot from `.values` when it creates
 * the outer map; a reused outer map would keep the slot it had).
 *
 * Each version has an inner map of its own (inner_v1, inner_v2) and counts each packet into
 * slot 0 of the inner map its outer map holds, and into `hits[VERSION]`: `hits` is an ordinary
 * map, shared by the versions of a deployment. mapinmap_static_v2.bpf.c is this source built
 * with VERSION 2.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef VERSION
#define VERSION 1
#endif

#define PASTE(a, b) a##b
#define INNER_OF(v) PASTE(inner_v, v)
#define INNER INNER_OF(VERSION)

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} INNER SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer SEC(".maps") = {
	.values = {
		[0] = &INNER,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("xdp")
int xdp_inner_count(struct xdp_md *ctx)
{
	__u32 zero = 0, version = VERSION;
	__u64 *value;
	void *inner = bpf_map_lookup_elem(&outer, &zero);

	if (inner) {
		value = bpf_map_lookup_elem(inner, &zero);
		if (value)
			__sync_fetch_and_add(value, 1);
	}
	value = bpf_map_lookup_elem(&hits, &version);
	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
