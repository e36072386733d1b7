# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what this kernel offers BPF, probed with libbpf and cached per boot.

Program types (libbpf_probe_bpf_prog_type), map types (libbpf_probe_bpf_map_type) and, for each
available program type, the helpers it may call. Helpers are probed like libbpf's
libbpf_probe_bpf_helper does (load ``call <id>; exit`` and read the verifier's answer), but here:
libbpf 1.1 only recognises the old "unknown func" wording, and kernels since 6.x say "program of
this type cannot use helper", so libbpf would report every helper as available. A type whose
trivial program (``r0 = 0; exit``) does not load cannot be probed and gets None. Probing loads tiny
programs and takes well under a second; the answer cannot change before a reboot, so it is kept in
``/run/ebpf_deploy/features-<boot_id>.json`` (boot id from /proc/sys/kernel/random/boot_id; /run is
emptied on reboot anyway) and files of other boots are removed when a new one is written.

A probe that cannot tell (libbpf answers EOPNOTSUPP for tracing/ext/lsm/struct_ops helpers) is
recorded as None, never as "absent".

No Ansible here; every kernel call goes through _libbpf.
"""
from __future__ import annotations

import json
import os
from typing import Optional

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
STATE_DIR = "/run/ebpf_deploy"
CACHE_FORMAT = 1

# Helper names by id, in the order of __BPF_FUNC_MAPPER (include/uapi/linux/bpf.h): the id of
# bpf_<name> is its index here.
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
    "user_ringbuf_drain", "x", "cgrp_storage_get", "cgrp_storage_delete",
)


def helper_name(helper_id: int) -> str:
    """``6`` → ``bpf_trace_printk``; ``bpf_helper_<n>`` for ids newer than this table."""
    if 0 < helper_id < len(HELPER_NAMES):
        return "bpf_" + HELPER_NAMES[helper_id]
    return f"bpf_helper_{helper_id}"


def helper_label(helper_id: int) -> str:
    """``bpf_trace_printk#6``, as the verifier names a helper."""
    return f"{helper_name(helper_id)}#{helper_id}"


def boot_id(path: str = BOOT_ID_PATH) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def cache_path(state_dir: str = STATE_DIR, boot: Optional[str] = None) -> str:
    return os.path.join(state_dir, f"features-{boot or boot_id()}.json")


# What a probe program needs to load for some types (as libbpf's probe_prog_load sets them):
# expected_attach_type (enum bpf_attach_type) and prog_flags.
_PROBE_ATTACH = {
    "cgroup_sock_addr": (10, 0),   # BPF_CGROUP_INET4_CONNECT
    "cgroup_sockopt": (21, 0),     # BPF_CGROUP_GETSOCKOPT
    "sk_lookup": (36, 0),          # BPF_SK_LOOKUP
    "lirc_mode2": (16, 0),         # BPF_LIRC_MODE2
    "syscall": (0, 1 << 4),        # BPF_F_SLEEPABLE
}
# Needs a BTF attach target: helper availability cannot be probed with a bare program.
_UNPROBEABLE = frozenset({"tracing", "ext", "lsm", "struct_ops"})
_HELPER_ABSENT = ("invalid func ", "unknown func ", "cannot use helper")
_EXIT_0 = bytes.fromhex("b700000000000000 9500000000000000")  # r0 = 0; exit


def _call_exit(helper_id: int) -> bytes:
    """call <helper_id>; exit (r0 is the helper's return value)."""
    return bytes.fromhex("85000000") + helper_id.to_bytes(4, "little") + bytes.fromhex("9500000000000000")


def helper_absent(log: str) -> bool:
    """Does a verifier log say the helper does not exist for this program type?"""
    return any(marker in log for marker in _HELPER_ABSENT)


def probe_helpers(libbpf, prog_type: int, type_name: str) -> Optional[list]:
    """Helper ids a program of this type may call, or None when this type cannot be probed."""
    if type_name in _UNPROBEABLE:
        return None
    attach, flags = _PROBE_ATTACH.get(type_name, (0, 0))
    fd, _err, _log = libbpf.prog_load_raw(prog_type, _EXIT_0, expected_attach_type=attach,
                                          prog_flags=flags, log_level=0, log_size=16)
    if fd < 0:
        return None
    os.close(fd)
    found = []
    for helper_id in range(1, len(HELPER_NAMES)):
        fd, _err, log = libbpf.prog_load_raw(prog_type, _call_exit(helper_id), expected_attach_type=attach,
                                             prog_flags=flags, log_size=4096)
        if fd >= 0:
            os.close(fd)
            found.append(helper_id)
        elif not helper_absent(log):
            found.append(helper_id)  # refused for another reason (arguments): the helper exists
    return found


def probe_all(libbpf) -> dict:
    """Run every probe now. ``libbpf`` is the _libbpf module (or a stand-in in tests)."""
    prog_types = libbpf.prog_type_names()
    map_types = libbpf.map_type_names()
    progs = {name: libbpf.probe_prog_type(num) for num, name in prog_types.items()}
    maps = {name: libbpf.probe_map_type(num) for num, name in map_types.items()}
    helpers = {name: probe_helpers(libbpf, num, name)
               for num, name in prog_types.items() if progs.get(name)}
    return {
        "format": CACHE_FORMAT,
        "kernel_release": os.uname().release,
        "program_type_ids": {name: num for num, name in prog_types.items()},
        "map_type_ids": {name: num for num, name in map_types.items()},
        "program_types": progs,
        "map_types": maps,
        "helper_ids": helpers,
    }


def _read_cache(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return None
    if data.get("kernel_release") != os.uname().release:
        return None
    return data


def _write_cache(path: str, data: dict) -> bool:
    """Write atomically; drop other boots' files. False when /run is not writable (no cache)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
        for entry in os.listdir(directory):
            if entry.startswith("features-") and entry.endswith(".json") and entry != os.path.basename(path):
                os.unlink(os.path.join(directory, entry))
    except OSError:
        return False
    return True


def features(*, refresh: bool = False, state_dir: str = STATE_DIR, libbpf=None) -> dict:
    """The probed features, from this boot's cache unless ``refresh``; adds ``cached``/``boot_id``."""
    if libbpf is None:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
    boot = boot_id()
    path = cache_path(state_dir, boot)
    data = None if refresh else _read_cache(path)
    cached = data is not None
    if data is None:
        data = probe_all(libbpf)
        data["boot_id"] = boot
        _write_cache(path, data)
    return dict(data, cached=cached, boot_id=boot, cache_file=path)


def as_facts(data: dict) -> dict:
    """The ``features`` facts: type availability and helper names per program type."""
    helpers = {}
    for prog_type, ids in data["helper_ids"].items():
        helpers[prog_type] = None if ids is None else [helper_name(i) for i in ids]
    return {
        "program_types": data["program_types"],
        "map_types": data["map_types"],
        "helpers": helpers,
        "boot_id": data.get("boot_id"),
        "cached": data.get("cached", False),
        "cache_file": data.get("cache_file"),
    }


class HostFeatures:
    """The questions preflight asks, answered from a features() dict (or a fake one in tests)."""

    def __init__(self, data: dict):
        self.data = data
        self._type_by_id = {num: name for name, num in data.get("program_type_ids", {}).items()}

    def prog_type_name(self, prog_type: int) -> str:
        return self._type_by_id.get(prog_type, f"type_{prog_type}")

    def has_prog_type(self, prog_type: int) -> Optional[bool]:
        """True/False, or None when the probe could not tell or libbpf does not know the type."""
        name = self._type_by_id.get(prog_type)
        return None if name is None else self.data["program_types"].get(name)

    def has_helper(self, prog_type: int, helper_id: int) -> Optional[bool]:
        name = self._type_by_id.get(prog_type)
        ids = self.data.get("helper_ids", {}).get(name) if name else None
        if ids is None:
            return None
        return helper_id in ids
