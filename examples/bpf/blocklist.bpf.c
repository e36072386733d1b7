// SPDX-License-Identifier: GPL-2.0
/*
 * blocklist.bpf.c - drop IPv4 packets whose source address is listed.
 *
 * The `blocklist` map is filled from user space (the bpf_map module): key is
 * the IPv4 source address exactly as it appears in the packet (network byte
 * order), value is the number of packets dropped for it. Everything else
 * passes and is counted in `pass_count`.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);	/* IPv4 source address, network byte order */
	__type(value, __u64);	/* packets dropped */
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);	/* packets passed */
} pass_count SEC(".maps");

static __always_inline int count_pass(void)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&pass_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_blocklist(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u64 *drops;
	__u32 saddr;

	/* Every header is bounds-checked against data_end before it is read:
	 * the verifier rejects the program otherwise. */
	if ((void *)(eth + 1) > data_end)
		return count_pass();
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count_pass();

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return count_pass();

	saddr = ip->saddr;	/* kept in network byte order, like the map keys */
	drops = bpf_map_lookup_elem(&blocklist, &saddr);
	if (!drops)
		return count_pass();

	__sync_fetch_and_add(drops, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
