// SPDX-License-Identifier: GPL-2.0
/*
 * tracing_count.bpf.c - fixture for bpf_attach's tracing hooks: counts system calls per process.
 *
 * tp_getpid (tracepoint syscalls/sys_enter_getpid): getpid_calls[tgid]++.
 * rtp_syscalls (raw tracepoint sys_enter): syscalls[{tgid, syscall nr}]++.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct sc_key {
	__u32 tgid;
	__u32 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} getpid_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sc_key);
	__type(value, __u64);
} syscalls SEC(".maps");

static __always_inline void bump(void *map, void *key)
{
	__u64 one = 1, *value = bpf_map_lookup_elem(map, key);

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_getpid(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	bump(&getpid_calls, &tgid);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int rtp_syscalls(struct bpf_raw_tracepoint_args *ctx)
{
	struct sc_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.nr = (__u32)ctx->args[1],
	};

	bump(&syscalls, &key);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
