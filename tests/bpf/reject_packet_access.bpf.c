// SPDX-License-Identifier: GPL-2.0
/*
 * reject_packet_access.bpf.c - fixture: rejected by the verifier (bounds).
 *
 * Reads the Ethernet protocol field without first checking the header against
 * ctx->data_end. clang compiles it; the kernel verifier refuses it because
 * the packet pointer has no proven readable range (r=0).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdp_unchecked_access(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	/* BUG (on purpose): no `if ((void *)(eth + 1) > data_end)` check. */
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return XDP_DROP;

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
