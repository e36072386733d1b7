/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tgid_counts.h - what the VM lab's tracing fixtures share (probe_hooks, freplace_target): COUNTS(name),
 * a hash map of u64 counts per process (tgid), and bump(map), one more for the current process.
 */
#ifndef EBPFD_TGID_COUNTS_H
#define EBPFD_TGID_COUNTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define COUNTS(name) \
	struct { \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__uint(max_entries, 1024); \
		__type(key, __u32); \
		__type(value, __u64); \
	} name SEC(".maps")

static __always_inline int bump(void *map)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *value = bpf_map_lookup_elem(map, &tgid);

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(map, &tgid, &one, BPF_NOEXIST);
	return 0;
}

#endif
