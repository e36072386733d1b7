// SPDX-License-Identifier: GPL-2.0
/*
 * map_too_large.bpf.c - fixture: a map the kernel refuses to create.
 *
 * `huge` is an ARRAY whose value_size is 2 GiB (0x80000000), one byte more
 * than INT_MAX. array_map_alloc_check() in kernel/bpf/arraymap.c refuses any
 * value_size > INT_MAX with -E2BIG ("Argument list too long") before a
 * single byte is allocated, so the failure is immediate and deterministic
 * and never makes the kernel try to allocate the nominal size.
 * max_entries is large too (2^20, nominal total 2 PiB) so that a preflight
 * memory estimate also flags it; the kernel check above fires first anyway.
 * Verified on 6.18 (takes ~2 ms): `bpftool prog loadall` fails with
 *   libbpf: Error in bpf_create_map_xattr(huge):Argument list too long(-7). Retrying without BTF.
 *   libbpf: map 'huge': failed to create: Argument list too long(-7)
 * and `bpftool map create ... type array key 4 value 2147483648 entries
 * 1048576` fails with the same errno (E2BIG = 7).
 *
 * The value is declared as a 2 GiB array type rather than with
 * __uint(value_size, ...): that macro encodes the number as an array of
 * ints whose BTF size (8 GiB) overflows u32, and the kernel would then
 * reject the object's BTF as well, which is not what this fixture is about.
 * (A struct wrapping the array does not work either: clang 14 writes its
 * BTF size as 0.)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* 2^28 * 8 = 2^31 bytes: only a type, nothing of this size is ever allocated. */
typedef __u64 huge_value_t[1 << 28];

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__type(value, huge_value_t);	/* INT_MAX + 1 bytes -> E2BIG */
} huge SEC(".maps");

SEC("xdp")
int xdp_big(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&huge, &key);

	if (value)
		__sync_fetch_and_add(value, 1);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
