// SPDX-License-Identifier: GPL-2.0
/*
 * reject_gpl_helper.bpf.c - fixture: rejected by the verifier (license).
 *
 * Calls bpf_trace_printk() (through bpf_printk), a GPL-only helper that XDP
 * programs may use, from a program whose license string is not GPL
 * compatible. The kernel refuses the call at verification time.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_gpl_helper(struct xdp_md *ctx)
{
	bpf_printk("packet of %d bytes", (int)(ctx->data_end - ctx->data));
	return XDP_PASS;
}

/* Not GPL compatible on purpose (this source file itself is GPL-2.0). */
char LICENSE[] SEC("license") = "Proprietary";
