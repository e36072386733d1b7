# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the kernel's BPF constants, as pure values (no I/O, no imports).

Every number here is the kernel's own, from include/uapi/linux/bpf.h (``/usr/include/linux/bpf.h``
on a host with the kernel headers; the enums below run to Linux 6.18, whose BTF they were read
from). The names are the enum's without its prefix, in lower case: the names libbpf gives them
(``libbpf_bpf_prog_type_str``), bpftool prints and the modules accept. Every other file takes
its program, map, attach and link types, their flags and the helper ids from here (the instruction
encoding stays with _race_lint, the one file that decodes instructions).
"""
from __future__ import annotations

# enum bpf_prog_type
PROG_TYPES = {
    "unspec": 0, "socket_filter": 1, "kprobe": 2, "sched_cls": 3, "sched_act": 4, "tracepoint": 5,
    "xdp": 6, "perf_event": 7, "cgroup_skb": 8, "cgroup_sock": 9, "lwt_in": 10, "lwt_out": 11,
    "lwt_xmit": 12, "sock_ops": 13, "sk_skb": 14, "cgroup_device": 15, "sk_msg": 16,
    "raw_tracepoint": 17, "cgroup_sock_addr": 18, "lwt_seg6local": 19, "lirc_mode2": 20,
    "sk_reuseport": 21, "flow_dissector": 22, "cgroup_sysctl": 23, "raw_tracepoint_writable": 24,
    "cgroup_sockopt": 25, "tracing": 26, "struct_ops": 27, "ext": 28, "lsm": 29, "sk_lookup": 30,
    "syscall": 31, "netfilter": 32,
}
# enum bpf_map_type
MAP_TYPES = {
    "unspec": 0, "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5,
    "percpu_array": 6, "stack_trace": 7, "cgroup_array": 8, "lru_hash": 9, "lru_percpu_hash": 10,
    "lpm_trie": 11, "array_of_maps": 12, "hash_of_maps": 13, "devmap": 14, "sockmap": 15,
    "cpumap": 16, "xskmap": 17, "sockhash": 18, "cgroup_storage": 19, "reuseport_sockarray": 20,
    "percpu_cgroup_storage": 21, "queue": 22, "stack": 23, "sk_storage": 24, "devmap_hash": 25,
    "struct_ops": 26, "ringbuf": 27, "inode_storage": 28, "task_storage": 29, "bloom_filter": 30,
    "user_ringbuf": 31, "cgrp_storage": 32, "arena": 33,
}
# enum bpf_attach_type
ATTACH_TYPES = {
    "cgroup_inet_ingress": 0, "cgroup_inet_egress": 1, "cgroup_inet_sock_create": 2,
    "cgroup_sock_ops": 3, "sk_skb_stream_parser": 4, "sk_skb_stream_verdict": 5,
    "cgroup_device": 6, "sk_msg_verdict": 7, "cgroup_inet4_bind": 8, "cgroup_inet6_bind": 9,
    "cgroup_inet4_connect": 10, "cgroup_inet6_connect": 11, "cgroup_inet4_post_bind": 12,
    "cgroup_inet6_post_bind": 13, "cgroup_udp4_sendmsg": 14, "cgroup_udp6_sendmsg": 15,
    "lirc_mode2": 16, "flow_dissector": 17, "cgroup_sysctl": 18, "cgroup_udp4_recvmsg": 19,
    "cgroup_udp6_recvmsg": 20, "cgroup_getsockopt": 21, "cgroup_setsockopt": 22,
    "trace_raw_tp": 23, "trace_fentry": 24, "trace_fexit": 25, "modify_return": 26, "lsm_mac": 27,
    "trace_iter": 28, "cgroup_inet4_getpeername": 29, "cgroup_inet6_getpeername": 30,
    "cgroup_inet4_getsockname": 31, "cgroup_inet6_getsockname": 32, "xdp_devmap": 33,
    "cgroup_inet_sock_release": 34, "xdp_cpumap": 35, "sk_lookup": 36, "xdp": 37,
    "sk_skb_verdict": 38, "sk_reuseport_select": 39, "sk_reuseport_select_or_migrate": 40,
    "perf_event": 41, "trace_kprobe_multi": 42, "lsm_cgroup": 43, "struct_ops": 44,
    "netfilter": 45, "tcx_ingress": 46, "tcx_egress": 47, "trace_uprobe_multi": 48,
    "cgroup_unix_connect": 49, "cgroup_unix_sendmsg": 50, "cgroup_unix_recvmsg": 51,
    "cgroup_unix_getpeername": 52, "cgroup_unix_getsockname": 53, "netkit_primary": 54,
    "netkit_peer": 55, "trace_kprobe_session": 56, "trace_uprobe_session": 57,
}
# enum bpf_link_type
LINK_TYPES = {
    "unspec": 0, "raw_tracepoint": 1, "tracing": 2, "cgroup": 3, "iter": 4, "netns": 5, "xdp": 6,
    "perf_event": 7, "kprobe_multi": 8, "struct_ops": 9, "netfilter": 10, "tcx": 11,
    "uprobe_multi": 12, "netkit": 13, "sockmap": 14,
}

PROG_TYPE_NAMES = {value: name for name, value in PROG_TYPES.items()}
MAP_TYPE_NAMES = {value: name for name, value in MAP_TYPES.items()}
ATTACH_TYPE_NAMES = {value: name for name, value in ATTACH_TYPES.items()}
LINK_TYPE_NAMES = {value: name for name, value in LINK_TYPES.items()}

# Maps whose value is one slot per possible CPU (a lookup returns round_up(value, 8) per CPU).
PERCPU_MAP_TYPES = frozenset(MAP_TYPES[name] for name in (
    "percpu_hash", "percpu_array", "lru_percpu_hash", "percpu_cgroup_storage"))
# Maps built on kernel/bpf/hashtab.c (htab_map_alloc_check: key_size <= MAX_BPF_STACK).
HASH_MAP_TYPES = frozenset(MAP_TYPES[name] for name in (
    "hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "hash_of_maps"))

# BPF_MAP_CREATE map_flags
MAP_FLAGS = {
    "no_prealloc": 1 << 0, "no_common_lru": 1 << 1, "numa_node": 1 << 2, "rdonly": 1 << 3,
    "wronly": 1 << 4, "stack_build_id": 1 << 5, "zero_seed": 1 << 6, "rdonly_prog": 1 << 7,
    "wronly_prog": 1 << 8, "clone": 1 << 9, "mmapable": 1 << 10, "preserve_elems": 1 << 11,
    "inner_map": 1 << 12, "link": 1 << 13, "path_fd": 1 << 14, "vtype_btf_obj_fd": 1 << 15,
    "token_fd": 1 << 16, "segv_on_fault": 1 << 17, "no_user_conv": 1 << 18,
}
BPF_F_NO_PREALLOC = MAP_FLAGS["no_prealloc"]
BPF_F_MMAPABLE = MAP_FLAGS["mmapable"]

# BPF_MAP_UPDATE_ELEM flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
# BPF_MAP_UPDATE_ELEM / BPF_MAP_LOOKUP_ELEM: copy the value under its bpf_spin_lock (not the lock)
BPF_F_LOCK = 1 << 2
# BPF_LINK_UPDATE / BPF_PROG_ATTACH flags, and the tcx/mprog position flags
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE, BPF_F_AFTER, BPF_F_ID = 1 << 3, 1 << 4, 1 << 5
# BPF_PROG_LOAD prog_flags
BPF_F_SLEEPABLE = 1 << 4
# enum bpf_stats_type
BPF_STATS_RUN_TIME = 0
# enum bpf_cmd, for the commands called through syscall(2) directly
BPF_PROG_QUERY, BPF_RAW_TRACEPOINT_OPEN, BPF_LINK_CREATE = 16, 17, 28

# netfilter links: enum nf_inet_hooks and the protocol families (NFPROTO_*) they take
NF_HOOKS = {"prerouting": 0, "local_in": 1, "forward": 2, "local_out": 3, "postrouting": 4}
NF_PFS = {"ipv4": 2, "ipv6": 10}

BPF_OBJ_NAME_LEN = 16   # names of programs and maps, with their NUL
BPF_TAG_SIZE = 8

# enum bpf_func_id (__BPF_FUNC_MAPPER): the id of the helper bpf_<name> is its index here.
HELPER_NAMES = (
    "unspec", "map_lookup_elem", "map_update_elem", "map_delete_elem", "probe_read",
    "ktime_get_ns", "trace_printk", "get_prandom_u32", "get_smp_processor_id", "skb_store_bytes",
    "l3_csum_replace", "l4_csum_replace", "tail_call", "clone_redirect", "get_current_pid_tgid",
    "get_current_uid_gid", "get_current_comm", "get_cgroup_classid", "skb_vlan_push",
    "skb_vlan_pop", "skb_get_tunnel_key", "skb_set_tunnel_key", "perf_event_read", "redirect",
    "get_route_realm", "perf_event_output", "skb_load_bytes", "get_stackid", "csum_diff",
    "skb_get_tunnel_opt", "skb_set_tunnel_opt", "skb_change_proto", "skb_change_type",
    "skb_under_cgroup", "get_hash_recalc", "get_current_task", "probe_write_user",
    "current_task_under_cgroup", "skb_change_tail", "skb_pull_data", "csum_update",
    "set_hash_invalid", "get_numa_node_id", "skb_change_head", "xdp_adjust_head", "probe_read_str",
    "get_socket_cookie", "get_socket_uid", "set_hash", "setsockopt", "skb_adjust_room",
    "redirect_map", "sk_redirect_map", "sock_map_update", "xdp_adjust_meta",
    "perf_event_read_value", "perf_prog_read_value", "getsockopt", "override_return",
    "sock_ops_cb_flags_set", "msg_redirect_map", "msg_apply_bytes", "msg_cork_bytes",
    "msg_pull_data", "bind", "xdp_adjust_tail", "skb_get_xfrm_state", "get_stack",
    "skb_load_bytes_relative", "fib_lookup", "sock_hash_update", "msg_redirect_hash",
    "sk_redirect_hash", "lwt_push_encap", "lwt_seg6_store_bytes", "lwt_seg6_adjust_srh",
    "lwt_seg6_action", "rc_repeat", "rc_keydown", "skb_cgroup_id", "get_current_cgroup_id",
    "get_local_storage", "sk_select_reuseport", "skb_ancestor_cgroup_id", "sk_lookup_tcp",
    "sk_lookup_udp", "sk_release", "map_push_elem", "map_pop_elem", "map_peek_elem",
    "msg_push_data", "msg_pop_data", "rc_pointer_rel", "spin_lock", "spin_unlock", "sk_fullsock",
    "tcp_sock", "skb_ecn_set_ce", "get_listener_sock", "skc_lookup_tcp", "tcp_check_syncookie",
    "sysctl_get_name", "sysctl_get_current_value", "sysctl_get_new_value", "sysctl_set_new_value",
    "strtol", "strtoul", "sk_storage_get", "sk_storage_delete", "send_signal", "tcp_gen_syncookie",
    "skb_output", "probe_read_user", "probe_read_kernel", "probe_read_user_str",
    "probe_read_kernel_str", "tcp_send_ack", "send_signal_thread", "jiffies64",
    "read_branch_records", "get_ns_current_pid_tgid", "xdp_output", "get_netns_cookie",
    "get_current_ancestor_cgroup_id", "sk_assign", "ktime_get_boot_ns", "seq_printf", "seq_write",
    "sk_cgroup_id", "sk_ancestor_cgroup_id", "ringbuf_output", "ringbuf_reserve", "ringbuf_submit",
    "ringbuf_discard", "ringbuf_query", "csum_level", "skc_to_tcp6_sock", "skc_to_tcp_sock",
    "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock", "skc_to_udp6_sock", "get_task_stack",
    "load_hdr_opt", "store_hdr_opt", "reserve_hdr_opt", "inode_storage_get",
    "inode_storage_delete", "d_path", "copy_from_user", "snprintf_btf", "seq_printf_btf",
    "skb_cgroup_classid", "redirect_neigh", "per_cpu_ptr", "this_cpu_ptr", "redirect_peer",
    "task_storage_get", "task_storage_delete", "get_current_task_btf", "bprm_opts_set",
    "ktime_get_coarse_ns", "ima_inode_hash", "sock_from_file", "check_mtu", "for_each_map_elem",
    "snprintf", "sys_bpf", "btf_find_by_name_kind", "sys_close", "timer_init",
    "timer_set_callback", "timer_start", "timer_cancel", "get_func_ip", "get_attach_cookie",
    "task_pt_regs", "get_branch_snapshot", "trace_vprintk", "skc_to_unix_sock",
    "kallsyms_lookup_name", "find_vma", "loop", "strncmp", "get_func_arg", "get_func_ret",
    "get_func_arg_cnt", "get_retval", "set_retval", "xdp_get_buff_len", "xdp_load_bytes",
    "xdp_store_bytes", "copy_from_user_task", "skb_set_tstamp", "ima_file_hash", "kptr_xchg",
    "map_lookup_percpu_elem", "skc_to_mptcp_sock", "dynptr_from_mem", "ringbuf_reserve_dynptr",
    "ringbuf_submit_dynptr", "ringbuf_discard_dynptr", "dynptr_read", "dynptr_write",
    "dynptr_data", "tcp_raw_gen_syncookie_ipv4", "tcp_raw_gen_syncookie_ipv6",
    "tcp_raw_check_syncookie_ipv4", "tcp_raw_check_syncookie_ipv6", "ktime_get_tai_ns",
    "user_ringbuf_drain", "cgrp_storage_get", "cgrp_storage_delete",
)
