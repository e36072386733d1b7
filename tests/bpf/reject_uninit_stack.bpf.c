// SPDX-License-Identifier: GPL-2.0
/*
 * reject_uninit_stack.bpf.c - fixture: rejected by the verifier (uninitialized
 * stack).
 *
 * Passes a `struct bpf_dynptr` that lives on the stack but was never
 * initialized to bpf_dynptr_read(). Kernel 6.18 says
 *   Expected an initialized dynptr as arg #2
 * for any loader, root included.
 *
 * Why not the classic "pass an unwritten key to bpf_map_lookup_elem()": since
 * Linux 6.3 the verifier lets loaders with CAP_PERFMON (so root) read
 * uninitialized stack, treating it as an unknown value. That version loads
 * fine as root and is refused ("invalid read from stack R2 off=-4 size=4")
 * only for a loader without CAP_PERFMON/CAP_SYS_ADMIN; its real log is kept
 * in tests/unit/data/verifier/uninit_key_unprivileged.log
 * (source: tests/bpf/uninit_key_unpriv.bpf.c).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_uninit_stack(struct xdp_md *ctx)
{
	struct bpf_dynptr src;	/* BUG (on purpose): never initialized */
	__u32 word = 0;

	bpf_dynptr_read(&word, sizeof(word), &src, 0, 0);

	return word ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
