// SPDX-License-Identifier: GPL-2.0
/*
 * reject_stack_limit.bpf.c - fixture: rejected by the verifier (stack size).
 *
 * Each function stays under the 512-byte BPF stack limit, so clang compiles
 * it, but the call chain xdp_stack_limit -> fill_outer -> fill_inner needs
 * more than 512 bytes of stack in total. The kernel adds up the frames of
 * bpf-to-bpf calls and refuses the chain. Kernel 6.18 says
 *   combined stack size of 3 calls is 640. Too large
 * after verifying every path, so the log has no instruction before it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define WORDS 40	/* 40 * 8 = 320 bytes of stack per function */

/* volatile and unrolled: every word is really stored, so each function keeps
 * its full 320-byte frame, and the verifier walks no loop. */
static __noinline __u64 fill_inner(__u64 seed)
{
	volatile __u64 buf[WORDS];
	int i;

#pragma unroll
	for (i = 0; i < WORDS; i++)
		buf[i] = seed + i;
	return buf[0] + buf[WORDS - 1];
}

static __noinline __u64 fill_outer(__u64 seed)
{
	volatile __u64 buf[WORDS];
	int i;

#pragma unroll
	for (i = 0; i < WORDS; i++)
		buf[i] = seed - i;
	return buf[0] + buf[WORDS - 1] + fill_inner(seed + 1);
}

SEC("xdp")
int xdp_stack_limit(struct xdp_md *ctx)
{
	__u64 seed = ctx->data_end - ctx->data;

	return fill_outer(seed) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
