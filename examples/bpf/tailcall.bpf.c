// SPDX-License-Identifier: GPL-2.0
/*
 * tailcall.bpf.c - an entry program that tail-calls into a stage program.
 *
 * `xdp_entry` jumps to whatever program sits in slot 0 of `jmp_table`; when
 * the slot is empty the tail call returns and the packet passes untouched.
 * `xdp_stage_count` is a stage that can be put in a slot: it counts packets
 * in `stage_count`. Used to show that programs in a PROG_ARRAY are deployed
 * and swapped as map entries.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);	/* program fd on update, program id on lookup */
} jmp_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stage_count SEC(".maps");

SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 0);
	/* Only reached when slot 0 is empty (or the tail call limit is hit). */
	return XDP_PASS;
}

SEC("xdp")
int xdp_stage_count(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&stage_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
