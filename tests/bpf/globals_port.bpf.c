// SPDX-License-Identifier: GPL-2.0-only
/*
 * globals_port.bpf.c - fixture: an XDP program configured by load-time globals.
 *
 * Counts the IPv4 UDP packets sent to `target_port` (a const volatile in .rodata, set before load
 * with `globals:`) in `port_hits`; every other packet passes uncounted. The .data, .bss, .data.cfg
 * and struct/array globals are there so the tests can set and refuse every kind of global.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum match_mode { MATCH_COUNT = 0, MATCH_DROP = 1 };

struct limits {
	__u32 max_len;
	__u8 ttl_min;
	__u8 reserved[3];
};

const volatile __u16 target_port = 0;			/* .rodata: 0 counts nothing */
const volatile enum match_mode mode = MATCH_COUNT;	/* .rodata: drop instead of pass */
const volatile struct limits limits = { .max_len = 65535 };
volatile __u32 seen_packets = 0;			/* .bss: written by the program */
volatile __u8 tag[4] = { 'e', 'b', 'p', 'f' };		/* .data */
volatile __u32 burst SEC(".data.cfg") = 8;		/* a custom data section */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} port_hits SEC(".maps");

SEC("xdp")
int xdp_port_counter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 key = 0;
	__u64 *hits;

	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	seen_packets++;
	if (burst == 0)
		return XDP_PASS;
	if (target_port == 0 || udp->dest != bpf_htons(target_port))
		return XDP_PASS;
	if (bpf_ntohs(ip->tot_len) > limits.max_len || ip->ttl < limits.ttl_min)
		return XDP_PASS;
	hits = bpf_map_lookup_elem(&port_hits, &key);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return mode == MATCH_DROP ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
