// SPDX-License-Identifier: GPL-2.0
/*
 * uninit_key_unpriv.bpf.c - fixture: a verdict that depends on privileges.
 *
 * The classic uninitialized-stack bug: the map key is never written before
 * bpf_map_lookup_elem() reads it. Since Linux 6.3 the verifier accepts this
 * from a loader with CAP_PERFMON (root), reading the slot as an unknown
 * value, so this program LOADS as root. Without CAP_PERFMON/CAP_SYS_ADMIN
 * (CAP_BPF + CAP_NET_ADMIN only) kernel 6.18 refuses it with
 *   invalid read from stack R2 off=-4 size=4
 * (log kept in tests/unit/data/verifier/uninit_key_unprivileged.log).
 * For a program that every loader is refused, see reject_uninit_stack.bpf.c.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} uninit_count SEC(".maps");

SEC("xdp")
int xdp_uninit_key(struct xdp_md *ctx)
{
	__u32 key;	/* BUG (on purpose): never written */
	__u64 *value = bpf_map_lookup_elem(&uninit_count, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
