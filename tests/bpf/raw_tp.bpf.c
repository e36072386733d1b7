// SPDX-License-Identifier: GPL-2.0
/*
 * raw_tp.bpf.c - fixture: a valid program that is not XDP (tracing type).
 *
 * A raw tracepoint program on sys_enter counting system calls. Used to test
 * program types other than XDP/tc (loading without attaching, refusals of
 * XDP-only operations).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sys_enter_count SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int rtp_count(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&sys_enter_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
