// SPDX-License-Identifier: GPL-2.0-only
/*
 * spin_lock_pair.bpf.c - fixture: map values that hold a bpf_spin_lock.
 *
 * `pairs` (HASH) and `pair_slots` (ARRAY) hold { lock; a; b }. Per packet the XDP program
 * increments a and b of every entry it finds for keys 0..3, both under the value's lock, so a
 * reader that copies the value under the same lock (BPF_F_LOCK) always sees a == b; a reader
 * that does not can see one increment without the other.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair {
	struct bpf_spin_lock lock;
	__u64 a;
	__u64 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct pair);
} pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct pair);
} pair_slots SEC(".maps");

static __always_inline void bump(struct pair *value)
{
	if (!value)
		return;
	bpf_spin_lock(&value->lock);
	value->a += 1;
	/* a few hundred instructions between the two: a copy taken outside the lock has a real
	 * chance to catch a != b, so the test that reads under the lock can fail */
	for (int i = 0; i < 128; i++)
		asm volatile("" ::: "memory");
	value->b += 1;
	bpf_spin_unlock(&value->lock);
}

static __always_inline void bump_key(__u32 key)
{
	bump(bpf_map_lookup_elem(&pairs, &key));
	bump(bpf_map_lookup_elem(&pair_slots, &key));
}

SEC("xdp")
int xdp_lock_pair(struct xdp_md *ctx)
{
	/* spelt out, not a loop: the verifier follows one lock at a time through straight code */
	bump_key(0);
	bump_key(1);
	bump_key(2);
	bump_key(3);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
