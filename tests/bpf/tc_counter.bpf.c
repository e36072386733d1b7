// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc_counter.bpf.c - fixture for bpf_attach's tc clsact hooks on the VM lab: SEC("tc"), the
 * section every libbpf knows (Debian 12's libbpf 1.1 does not know "tcx/"), counting every packet.
 *
 * pkt_count[0] counts the packets the program sees; TC_ACT_OK lets them through.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
