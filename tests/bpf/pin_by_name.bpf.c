// SPDX-License-Identifier: GPL-2.0
/*
 * pin_by_name.bpf.c - fixture: a map declared with LIBBPF_PIN_BY_NAME.
 *
 * libbpf pins such a map by itself at <pin_root_path>/<map name>, /sys/fs/bpf/ebpfd_pbn_cnt by
 * default: outside any deployment, at load time, in check mode and in preflight's dry load too.
 * The collection must keep every map of a deployment under the deployment (maps/ebpfd_pbn_cnt).
 * The name starts with ebpfd so a leftover is recognisably a test's.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ebpfd_pbn_cnt SEC(".maps");

SEC("xdp")
int xdp_pin_by_name(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&ebpfd_pbn_cnt, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
