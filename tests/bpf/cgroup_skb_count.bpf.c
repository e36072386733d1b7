// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_skb_count.bpf.c - fixture for bpf_attach on a cgroup: counts the egress packets of the
 * processes in the cgroup it is attached to.
 *
 * pkt_count[0]: every egress packet; pkt_count[1]: IPv4 UDP packets to port 47474 (the test's
 * stream, so other traffic of the processes does not blur the count). Lets everything pass.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TEST_PORT 47474

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pkt_count SEC(".maps");

static __always_inline void bump(__u32 key)
{
	__u64 *value = bpf_map_lookup_elem(&pkt_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("cgroup_skb/egress")
int cg_egress_count(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	bump(0);
	if (skb->protocol != bpf_htons(0x0800))
		return 1;
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
		return 1;
	if (ip.protocol != IPPROTO_UDP || ip.ihl != 5)
		return 1;
	if (bpf_skb_load_bytes(skb, sizeof(ip), &udp, sizeof(udp)))
		return 1;
	if (udp.dest == bpf_htons(TEST_PORT))
		bump(1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
