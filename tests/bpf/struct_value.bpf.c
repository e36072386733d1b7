// SPDX-License-Identifier: GPL-2.0
/*
 * struct_value.bpf.c - fixture: a map whose value is a struct described in BTF.
 *
 * Used by bpf_map tests for typed values (field names, padding-free layout:
 * 4 + 2 + 2 + 8 = 16 bytes). The program adds the packet length to
 * `bytes` of the entry with key 0 when user space has created it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct rate_cfg {
	__u32 rate;
	__u16 burst;
	__u8 flags[2];
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct rate_cfg);	/* BTF keeps the field layout */
} config SEC(".maps");

SEC("xdp")
int xdp_config(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	__u32 key = 0;
	struct rate_cfg *cfg = bpf_map_lookup_elem(&config, &key);

	if (cfg)
		__sync_fetch_and_add(&cfg->bytes, len);

	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
