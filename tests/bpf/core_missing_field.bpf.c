// SPDX-License-Identifier: GPL-2.0-only
/*
 * core_missing_field.bpf.c - fixture: a CO-RE relocation that no kernel can resolve.
 *
 * The program reads a field of struct task_struct through a CO-RE relocation
 * (preserve_access_index, as vmlinux.h declares every kernel type), but the
 * field does not exist in any kernel's task_struct. libbpf cannot relocate the
 * access against the host's vmlinux BTF, poisons the instruction, and the load
 * fails: the module must say it is a CO-RE relocation failure and name the type
 * and the field, in one line, with nothing left behind.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* What a BPF program built against another kernel's vmlinux.h would expect. */
struct task_struct {
	int ebpfd_missing_field;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int core_read_missing(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&seen, &key);

	if (value)
		*value = BPF_CORE_READ(task, ebpfd_missing_field);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
