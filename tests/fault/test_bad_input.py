"""Bad inputs against a live deployment: every one must fail in one line and change nothing.

One deployment of the packet counter (`ebpfd_bi*` under a fresh bpffs root `ebpfd_fault_bi_*`) is
attached to the host side of a veth in a namespace and counts packets from the peer. Each case
snapshots the host (bpftool programs/maps/links of the deployment, `ls -R` of the bpffs root, the
interface's XDP attachment, the contents of every pinned map of the deployment, its /run metadata,
and any extra path the case watches), runs one bad task through Ansible on localhost (the action
plugins are part of it), snapshots again and asserts:

* the task failed with a one-line `msg` (no newline, no Traceback), within a time limit (a hung
  module is ended by its process group and reported as such);
* the snapshots are identical (same programs attached, same pins, same map contents, same metadata);
* the counter still counts packets sent afterwards.

Unreadable sources: root reads a chmod 000 file anyway, so "unreadable" is made three ways here: a
path that does not exist, a directory, and a FIFO (which has no writer: a naive open() blocks).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.fault import faultlib as fl

BAD = Path("/tmp") / f"ebpfd_fault_inputs_{secrets.token_hex(3)}"
VICTIM = Path("/tmp") / f"ebpfd_fault_victim_{secrets.token_hex(3)}"
NOT_BPFFS = Path("/tmp") / f"ebpfd_fault_plaindir_{secrets.token_hex(3)}"
FOREIGN = f"ebpfd_foreign{secrets.token_hex(3)}"   # another tool's directory under the live root
SPIN_LOCK_DIR = "ebpfd_spinlock"   # spin_lock_pair's programs and maps, pinned under the root by bpftool
ZERO64 = "0" * 64
ARGSPEC_HEADER = "Validation of arguments failed:\n"


@dataclass
class Case:
    id: str
    module: str                      # a module name, or "role" for the rollout role
    args: Callable                   # live deployment -> module args (or role vars)
    expect: str = ""                 # a regex the msg must match (case-insensitive): the right reason
    watch: tuple = ()                # extra paths whose `ls -R` is part of the snapshot
    timeout: float = 45
    via: str = ""                    # "ansible" (ad hoc, action plugins included) or "direct"

    @property
    def runner(self) -> str:
        """Controller-side cases (src on the controller) and the role go through Ansible; the rest
        run the module file directly: the same AnsibleModule code, without the controller's start-up
        (the suite has to fit in a few minutes on two cores)."""
        return self.via or "direct"


def obj(stem: str) -> str:
    return str(fl.BPF_DIR / f"{stem}.bpf.o")


def prog(stem_or_path: str, **extra):
    """bpf_program on the live deployment's name and root, from the controller."""
    def args(live):  # remote_src false: run through Ansible, see Case.runner
        src = stem_or_path if stem_or_path.startswith("/") else obj(stem_or_path)
        return dict({"name": live.name, "src": src, "bpffs_root": str(live.root)}, **extra)
    return args


def remote(stem_or_path: str, **extra):
    return prog(stem_or_path, remote_src=True, **extra)


def attach(**extra):
    return lambda live: dict(live.xdp_args(), **extra)


def hook(**extra):
    """bpf_attach on the live deployment's program; None drops an option."""
    def args(live):
        base = dict(live.xdp_args(), **extra)
        return {key: value for key, value in base.items() if value is not None}
    return args


def bmap(**extra):
    return lambda live: dict({"deployment": live.name, "map": "pkt_count", "bpffs_root": str(live.root)}, **extra)


def role(deployments: Callable, **extra):
    """Vars for the rollout role on localhost, attaching to the live veth."""
    def args(live):
        return dict({"rollout_deployments": deployments(live), "rollout_bpffs_root": str(live.root),
                     "rollout_health": {"soak_seconds": 0, "checks": [{"type": "attached"}]}}, **extra)
    return args


def dep(src: Optional[str] = "counter_v2", **extra):
    def make(live):
        item = {"name": live.name,
                "attach": [{"interface": live.ifname, "netns": live.netns, "program": fl.PROGRAM}]}
        if src is not None:
            item["src"] = src if src.startswith("/") else obj(src)
        item.update(extra)
        return [item]
    return make


def deployment(live) -> dict:
    """bpf_deployment of counter_v2 onto the live deployment's interface (object on the host)."""
    return {"name": live.name, "src": obj("counter_v2"), "remote_src": True, "bpffs_root": str(live.root),
            "attach": [{"interface": live.ifname, "netns": live.netns, "program": fl.PROGRAM}]}


def tcx_deployment(live) -> dict:
    """bpf_deployment of the tcx counter onto the live interface's tcx ingress (hook from the section;
    libbpf 1.1 needs the type of a tcx/ section said)."""
    return {"name": live.name, "src": obj("tcx_counter"), "remote_src": True, "bpffs_root": str(live.root),
            "program_type": "sched_cls",
            "attach": [{"interface": live.ifname, "netns": live.netns, "program": "tcx_count"}]}


def short_section_headers(data: bytes, entsize: int) -> bytes:
    """An ELF64 whose e_shentsize is below the 64 bytes of a section header, cut where such a table
    would end (reading real headers at that step runs past the end of the file)."""
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    return (data[:0x3A] + entsize.to_bytes(2, "little") + data[0x3C:])[:shoff + entsize * shnum]


REJECTS = ["reject_gpl_helper", "reject_map_lookup", "reject_packet_access", "reject_stack_limit",
           "reject_unbounded_loop", "reject_uninit_stack"]

CASES = [
    # --- bad objects (bpf_program; the controller's checks, then the host's) ----------------------
    Case("program-not-elf", "bpf_program", prog(f"{BAD}/notelf.bpf.o"), r"not an ELF"),
    Case("program-not-elf-remote", "bpf_program", remote(f"{BAD}/notelf.bpf.o"), r"not an ELF"),
    Case("program-empty-file", "bpf_program", remote(f"{BAD}/empty.bpf.o"), r"not an ELF"),
    Case("program-truncated-elf", "bpf_program", prog(f"{BAD}/truncated.bpf.o"), r"truncated"),
    Case("program-truncated-elf-remote", "bpf_program", remote(f"{BAD}/truncated.bpf.o"), r"truncated"),
    Case("program-elf-short-section-headers", "bpf_program", prog(f"{BAD}/shentsize.bpf.o"), r"e_shentsize"),
    Case("program-elf-short-section-headers-remote", "bpf_program", remote(f"{BAD}/shentsize.bpf.o"),
         r"e_shentsize"),
    Case("program-elf-x86-64", "bpf_program", prog(f"{BAD}/x86.o"), r"x86-64"),
    Case("program-elf-x86-64-remote", "bpf_program", remote(f"{BAD}/x86.o"), r"x86-64"),
    Case("program-missing-program", "bpf_program", remote("counter", programs=["ebpfd_no_such_prog"]),
         r"not found"),
    *[Case(f"program-verifier-{stem}", "bpf_program", remote(stem), r"") for stem in REJECTS],
    Case("program-map-spec-conflict", "bpf_program", remote("map_conflict"), r"pkt_count"),
    Case("program-map-too-large", "bpf_program", remote("map_too_large"), r"map"),
    Case("program-checksum-mismatch", "bpf_program", prog("counter_v2", checksum=f"sha256:{ZERO64}"),
         r"checksum|sha256|digest"),
    Case("program-checksum-mismatch-remote", "bpf_program", remote("counter_v2", checksum=f"sha256:{ZERO64}"),
         r"checksum|sha256|digest"),
    Case("program-checksum-malformed", "bpf_program", remote("counter_v2", checksum="md5:1234"),
         r"checksum|sha256"),
    Case("program-src-missing", "bpf_program", prog(f"{BAD}/ebpfd_nothing_here.bpf.o"), r"not found|does not exist"),
    Case("program-src-missing-remote", "bpf_program", remote(f"{BAD}/ebpfd_nothing_here.bpf.o"),
         r"does not exist"),
    Case("program-src-directory-remote", "bpf_program", remote(f"{BAD}/adir.bpf.o"), r"directory|not a regular"),
    Case("program-src-fifo-remote", "bpf_program", remote(f"{BAD}/fifo.bpf.o"), r"regular file", timeout=20),
    Case("program-src-fifo-controller", "bpf_program", prog(f"{BAD}/fifo.bpf.o"), r"regular file", timeout=20),
    Case("program-unknown-program-type", "bpf_program", remote("counter_v2", program_type="ebpfd_nope"),
         r"program_type"),
    # --- load-time globals: refused by name before anything loads -----------------------------------
    Case("program-global-unknown", "bpf_program", remote("globals_port", globals={"targt_port": 53}),
         r"no global 'targt_port' \(its globals: burst, limits, mode, seen_packets, tag, target_port\)"),
    Case("program-global-wrong-type", "bpf_program", remote("globals_port", globals={"target_port": "http"}),
         r"globals\.target_port: expected an integer"),
    Case("program-global-out-of-range", "bpf_program", remote("globals_port", globals={"target_port": 70000}),
         r"globals\.target_port: 70000 does not fit in 16 unsigned bits"),
    Case("program-global-unknown-enum", "bpf_program", remote("globals_port", globals={"mode": "MATCH_ALL"}),
         r"globals\.mode: 'MATCH_ALL' is not one of MATCH_COUNT, MATCH_DROP"),
    Case("program-global-unknown-field", "bpf_program", remote("globals_port", globals={"limits": {"ttl": 1}}),
         r"globals\.limits: no field ttl"),
    Case("program-global-array-too-long", "bpf_program", remote("globals_port", globals={"tag": "ebpfd"}),
         r"globals\.tag: 5 bytes do not fit in 4"),
    Case("program-global-is-a-map", "bpf_program", remote("globals_port", globals={"port_hits": 1}),
         r"no global 'port_hits'"),
    Case("program-global-object-has-none", "bpf_program", remote("counter_v2", globals={"target_port": 53}),
         r"no global 'target_port' \(its globals: none\)"),
    Case("program-global-without-object", "bpf_program",
         lambda L: {"name": L.name, "bpffs_root": str(L.root), "version": "previous", "globals": {"target_port": 53}},
         r"globals are set when an object is loaded"),
    Case("deployment-global-out-of-range", "bpf_deployment",
         lambda L: dict(deployment(L), src=obj("globals_port"), globals={"limits": {"ttl_min": 256}}),
         r"globals\.limits\.ttl_min: 256 does not fit"),
    # --- names and paths that try to leave the bpffs root ----------------------------------------
    Case("program-name-dotdot-slash", "bpf_program", lambda L: dict(prog("counter_v2")(L), name="../escape"),
         r"leave|may only"),
    Case("program-name-dotdot", "bpf_program", lambda L: dict(prog("counter_v2")(L), name=".."), r"leave"),
    Case("program-name-with-dot", "bpf_program", lambda L: dict(prog("counter_v2")(L), name="pkt.count"), r"'\.'"),
    Case("program-root-dotdot", "bpf_program",
         lambda L: dict(prog("counter_v2")(L), bpffs_root=f"/sys/fs/bpf/../../../tmp/{NOT_BPFFS.name}"),
         r"\.\.", watch=(str(NOT_BPFFS),)),
    Case("program-root-relative", "bpf_program", lambda L: dict(prog("counter_v2")(L), bpffs_root="sys/fs/bpf/x"),
         r"absolute"),
    Case("program-root-not-bpffs", "bpf_program",
         lambda L: dict(remote("counter_v2")(L), bpffs_root=str(NOT_BPFFS)), r"bpf filesystem|bpffs",
         watch=(str(NOT_BPFFS),)),
    Case("program-root-not-bpffs-absent", "bpf_program",
         lambda L: {"name": L.name, "bpffs_root": str(VICTIM), "state": "absent"}, r"bpf filesystem|bpffs",
         watch=(str(VICTIM),)),
    Case("program-programs-duplicate", "bpf_program",
         remote("counter_v2", programs=[fl.PROGRAM, fl.PROGRAM]), r"more than once"),
    Case("program-programs-dotdot", "bpf_program", remote("counter_v2", programs=["../x"]), r"leave|may only"),
    Case("program-version-dotdot", "bpf_program",
         lambda L: {"name": L.name, "version": "../../etc", "bpffs_root": str(L.root)}, r"version"),
    Case("program-version-not-pinned", "bpf_program",
         lambda L: {"name": L.name, "version": "0123456789ab", "bpffs_root": str(L.root)}, r"not pinned"),
    Case("program-version-previous-none", "bpf_program",
         lambda L: {"name": L.name, "version": "previous", "bpffs_root": str(L.root)}, r"no previous"),
    # a NUL byte in a path option: C stops reading at it (a pin somewhere else than asked)
    Case("program-src-nul-remote", "bpf_program", remote(f"{BAD}/notelf.bpf.o\0x"), r"NUL byte"),
    Case("program-root-nul", "bpf_program",
         lambda L: dict(remote("counter_v2")(L), bpffs_root=f"{L.root}\0x"), r"NUL byte"),
    Case("preflight-src-nul-remote", "bpf_preflight",
         lambda L: {"src": f"{obj('counter_v2')}\0x", "remote_src": True, "bpffs_root": str(L.root)},
         r"NUL byte"),
    Case("map-create-path-nul", "bpf_map",
         lambda L: {"path": f"{L.root}/ebpfd_nul\0x", "entries": [],
                    "create": {"type": "array", "key_size": 4, "value_size": 8, "max_entries": 1}},
         r"NUL byte"),
    Case("attach-pin-nul", "xdp_attach",
         lambda L: {"interface": L.ifname, "netns": L.netns, "bpffs_root": str(L.root),
                    "pin": f"{L.root}/{L.name}/{L.versions['counter']}/progs/{fl.PROGRAM}\0x"}, r"NUL byte"),
    Case("attach-root-nul", "xdp_attach", attach(bpffs_root="/sys/fs/bpf/ebpfd\0x"), r"NUL byte"),
    # --- xdp_attach -----------------------------------------------------------------------------
    Case("attach-unknown-interface", "xdp_attach", attach(interface="ebpfdnope0"), r"ebpfdnope0"),
    Case("attach-unknown-netns", "xdp_attach", attach(netns="ebpfd-no-such-ns"), r"ebpfd-no-such-ns"),
    Case("attach-netns-dotdot", "xdp_attach", attach(netns="../../proc/1/ns/net"), r"netns|namespace"),
    Case("attach-interface-too-long", "xdp_attach", attach(interface="ebpfd" + "x" * 20), r"interface"),
    Case("attach-unknown-program", "xdp_attach", attach(program="ebpfd_no_such_prog"), r"ebpfd_no_such_prog"),
    Case("attach-undeployed-deployment", "xdp_attach", attach(deployment="ebpfd_never_deployed"),
         r"no current version"),
    Case("attach-deployment-dotdot", "xdp_attach", attach(deployment="../x"), r"leave|may only"),
    Case("attach-pin-outside-bpffs", "xdp_attach",
         lambda L: {"interface": L.ifname, "netns": L.netns, "pin": "/sys/fs/bpf/../../../etc/passwd",
                    "bpffs_root": str(L.root)}, r"not a pinned program"),
    Case("attach-pin-is-a-map", "xdp_attach",
         lambda L: {"interface": L.ifname, "netns": L.netns, "pin": str(L.map_pin), "bpffs_root": str(L.root)},
         r"not a pinned program"),
    Case("attach-mode-offload-on-veth", "xdp_attach", attach(mode="offload"), r"offload"),
    # --- bpf_attach (the live deployment's program is XDP) -------------------------------------------
    Case("hook-wrong-program-type", "bpf_attach", hook(hook="tcx_ingress"), r"is a xdp program; hook tcx_ingress"),
    # hook xdp is attached by bpf_attach now (xdp_attach's code): what it refuses is the other hooks' options
    Case("hook-xdp-with-priority", "bpf_attach", hook(hook="xdp", priority=3),
         r"priority is an option of netfilter and tc hooks; hook xdp"),
    Case("hook-mode-on-tcx", "bpf_attach", hook(hook="tcx_ingress", mode="generic"), r"mode is an XDP option"),
    Case("hook-tc-wrong-program-type", "bpf_attach", hook(hook="tc_ingress"), r"is a xdp program; hook tc_ingress"),
    Case("hook-tc-without-interface", "bpf_attach", hook(hook="tc_egress", interface=None, netns=None),
         r"hook tc_egress needs interface"),
    Case("hook-tc-unknown-interface", "bpf_attach", hook(hook="tc_ingress", interface="ebpfdnope0"), r"ebpfdnope0"),
    Case("hook-tc-priority-out-of-range", "bpf_attach", hook(hook="tc_ingress", priority=0), r"1\.\.65535"),
    Case("hook-unknown-hook", "bpf_attach", hook(hook="tcx_sideways"), r"hook"),
    Case("hook-section-without-direction", "bpf_attach", hook(hook=None, section="tc"), r"ingress or egress"),
    Case("hook-unknown-interface", "bpf_attach", hook(hook="tcx_ingress", interface="ebpfdnope0"), r"ebpfdnope0"),
    Case("hook-unknown-cgroup", "bpf_attach", hook(hook="cgroup_skb_egress", interface=None, netns=None,
                                                   cgroup="ebpfd-no-such-cgroup"), r"does not exist"),
    Case("hook-unknown-tracepoint", "bpf_attach", hook(hook="tracepoint", interface=None, netns=None,
                                                       target="syscalls/sys_enter_ebpfd_nope"), r"no tracepoint"),
    Case("hook-netfilter-without-hooknum", "bpf_attach", hook(hook="netfilter", interface=None, pf="ipv4"),
         r"needs pf"),
    Case("hook-order-on-cgroup", "bpf_attach", hook(hook="cgroup_skb_egress", interface=None, netns=None,
                                                    cgroup="ebpfd-no-such-cgroup", before="1"), r"tcx hooks only"),
    Case("hook-kprobe-without-kprobes", "bpf_attach", hook(hook="kprobe", interface=None, target="do_unlinkat"),
         r"kprobe"),
    # --- bpf_map ----------------------------------------------------------------------------------
    Case("map-key-type-wrong-size", "bpf_map", bmap(key_type="u64", value_type="u64",
                                                    entries=[{"key": 0, "value": 1}]), r"key"),
    Case("map-value-type-wrong-size", "bpf_map", bmap(key_type="u32", value_type="u32",
                                                      entries=[{"key": 0, "value": 1}]), r"value"),
    Case("map-value-not-a-number", "bpf_map", bmap(key_type="u32", value_type="u64",
                                                   entries=[{"key": 0, "value": "ebpfd"}]), r"value|integer"),
    Case("map-value-too-big", "bpf_map", bmap(key_type="u32", value_type="u64",
                                              entries=[{"key": 0, "value": 2 ** 70}]), r"range|big|u64"),
    Case("map-key-out-of-range", "bpf_map", bmap(key_type="u32", value_type="u64",
                                                 entries=[{"key": 5, "value": 1}]), r"max_entries|index|range"),
    Case("map-wrong-value-type-ipv6", "bpf_map", bmap(key_type="u32", value_type="ipv6",
                                                      entries=[{"key": 0, "value": "::1"}]), r"value|size"),
    Case("map-unknown-map", "bpf_map", bmap(map="ebpfd_no_such_map", dump=True), r"ebpfd_no_such_map"),
    Case("map-name-dotdot", "bpf_map", bmap(map="../maps/pkt_count", dump=True), r"leave|may only"),
    Case("map-path-is-a-program", "bpf_map",
         lambda L: {"path": str(L.root / L.name / L.versions["counter"] / "progs" / fl.PROGRAM), "dump": True},
         r"not a map|map"),
    Case("map-create-not-bpffs", "bpf_map",
         lambda L: {"path": f"{NOT_BPFFS}/m", "entries": [],
                    "create": {"type": "array", "key_size": 4, "value_size": 8, "max_entries": 1}},
         r"bpf", watch=(str(NOT_BPFFS),)),
    # integers beyond what the C argument holds (ctypes would keep the low 32 bits)
    Case("map-create-max-entries-over-u32", "bpf_map",
         lambda L: {"path": f"{L.root}/ebpfd_wide", "entries": [],
                    "create": {"type": "array", "key_size": 4, "value_size": 8, "max_entries": 2 ** 32 + 1}},
         r"create\.max_entries 4294967297 is out of range"),
    Case("map-prog-array-id-over-u32", "bpf_map",
         lambda L: {"path": f"{L.root}/ebpfd_jmp",
                    "create": {"type": "prog_array", "key_size": 4, "value_size": 4, "max_entries": 4},
                    "entries": [{"key": 0, "value": 2 ** 32 + L.prog_ids[L.versions["counter"]]}]},
         r"program id\) \d+ is out of range"),
    Case("map-absent-symlink", "bpf_map", lambda L: {"path": f"{L.root}/ebpfd_maplink", "state": "absent"},
         r"symlink"),
    Case("map-spin-lock-field-written", "bpf_map",
         lambda L: {"path": f"{L.root}/{SPIN_LOCK_DIR}/maps/pairs",
                    "entries": [{"key": 0, "value": {"lock": {"val": 1}, "a": 1, "b": 1}}]},
         r"'lock' is the value's bpf_spin_lock"),
    # --- a bpffs_root shared with another tool: its directory of the same name is left alone
    Case("program-absent-foreign-dir", "bpf_program",
         lambda L: {"name": FOREIGN, "bpffs_root": str(L.root), "state": "absent"},
         r"not made by ebpf\.deploy"),
    Case("program-into-foreign-dir", "bpf_program",
         lambda L: dict(remote("counter_v2")(L), name=FOREIGN), r"not made by ebpf\.deploy"),
    # --- bpf_facts ---------------------------------------------------------------------------------
    Case("facts-dmesg-cursor-malformed", "bpf_facts",
         lambda L: {"gather_subset": ["dmesg"], "dmesg_since": "yesterday", "bpffs_root": str(L.root)},
         r"dmesg_since 'yesterday' is not a cursor"),
    Case("facts-dmesg-cursor-bad-boot-id", "bpf_facts",
         lambda L: {"gather_subset": ["dmesg"], "dmesg_since": "not-a-boot:12", "bpffs_root": str(L.root)},
         r"is not a cursor"),
    # --- bpf_deployment: refused before its switch ----------------------------------------------------
    Case("deployment-health-unknown-check", "bpf_deployment",
         lambda L: dict(deployment(L), confirm_timeout=60, health={"checks": [{"type": "ebpfd_bogus"}]}),
         r"unknown type 'ebpfd_bogus'"),
    Case("deployment-health-soak-past-the-deadline", "bpf_deployment",
         lambda L: dict(deployment(L), confirm_timeout=5, health={"soak_seconds": 10, "checks": [{"type": "attached"}]}),
         r"must be shorter than confirm_timeout"),
    Case("deployment-attach-interface-twice", "bpf_deployment",
         lambda L: dict(deployment(L), attach=deployment(L)["attach"] * 2), r"twice"),
    Case("deployment-map-listed-twice", "bpf_deployment",
         lambda L: dict(deployment(L), maps=[{"map": "pkt_count", "entries": []}] * 2), r"more than once"),
    # attach items on other hooks: refused before anything loads
    Case("deployment-hook-wrong-program-type", "bpf_deployment",
         lambda L: dict(deployment(L), attach=[dict(deployment(L)["attach"][0], hook="tcx_ingress")]),
         r"is a xdp program; hook tcx_ingress takes sched_cls"),
    Case("deployment-hook-missing-target", "bpf_deployment",
         lambda L: dict(tcx_deployment(L), attach=[{"program": "tcx_count"}]), r"hook tcx_ingress needs interface"),
    Case("deployment-hook-missing-cgroup", "bpf_deployment",
         lambda L: dict(tcx_deployment(L), program_type="cgroup_skb",
                        attach=[{"program": "tcx_count", "hook": "cgroup_skb_egress"}]), r"needs cgroup"),
    Case("deployment-hook-unknown-interface", "bpf_deployment",
         lambda L: dict(tcx_deployment(L), attach=[{"program": "tcx_count", "interface": "ebpfdnope0"}]),
         r"ebpfdnope0"),
    Case("deployment-hook-xdp-mode-on-tcx", "bpf_deployment",
         lambda L: dict(tcx_deployment(L), attach=[dict(tcx_deployment(L)["attach"][0], mode="generic")]),
         r"mode is an XDP option"),
    Case("deployment-hook-item-twice", "bpf_deployment",
         lambda L: dict(tcx_deployment(L), attach=tcx_deployment(L)["attach"] * 2), r"twice"),
    # --- the rollout role ----------------------------------------------------------------------------
    Case("role-soak-past-the-confirm-timeout", "role",
         role(dep(), rollout_confirm_timeout=5, rollout_health={"soak_seconds": 10, "checks": [{"type": "attached"}]}),
         r"must be shorter than rollout_confirm_timeout", timeout=60),
    Case("role-deployment-without-src", "role", role(dep(src=None)), r"src", timeout=60),
    Case("role-unknown-check-type", "role",
         lambda L: dict(role(dep())(L), rollout_health={"soak_seconds": 0, "checks": [{"type": "ebpfd_bogus"}]}),
         r"ebpfd_bogus|check type", timeout=60),
    Case("role-unknown-on-failure", "role", role(dep(), rollout_on_failure="ebpfd_sometimes"),
         r"rollout_on_failure|ebpfd_sometimes", timeout=60),
    Case("role-verifier-rejected-object", "role", role(dep("reject_packet_access")), r"", timeout=90),
    Case("role-src-missing", "role", role(dep(f"{BAD}/ebpfd_nothing_here.bpf.o")), r"not found", timeout=90),
    Case("role-global-unknown", "role", role(dep("globals_port", globals={"ebpfd_port": 53})),
         r"no global 'ebpfd_port'", timeout=90),
]

ROLE_PLAY = fl.localhost_play("the rollout role on localhost", """  roles:
    - role: ebpf.deploy.rollout
""")


@pytest.fixture(scope="module")
def live():
    BAD.mkdir(parents=True)
    try:
        (BAD / "notelf.bpf.o").write_text("this is not an ELF object\n", encoding="ascii")
        (BAD / "empty.bpf.o").write_bytes(b"")
        data = (fl.BPF_DIR / "counter.bpf.o").read_bytes()
        (BAD / "truncated.bpf.o").write_bytes(data[: len(data) // 2])
        (BAD / "shentsize.bpf.o").write_bytes(short_section_headers(data, 16))
        (BAD / "adir.bpf.o").mkdir()
        os.mkfifo(BAD / "fifo.bpf.o")
        src = BAD / "x86.c"
        src.write_text("int ebpfd(void) { return 0; }\n", encoding="ascii")
        proc = subprocess.run(["gcc", "-c", str(src), "-o", str(BAD / "x86.o")], capture_output=True, check=False)
        if proc.returncode != 0:  # no compiler: any executable of this machine will do
            shutil.copy("/bin/true", BAD / "x86.o")
        with fl.CounterOnVeth("bi") as deployment:
            sent = deployment.send(50)
            assert deployment.settled_count() >= sent, "the counter does not count before the cases"
            yield deployment
    finally:
        shutil.rmtree(BAD, ignore_errors=True)
        shutil.rmtree(VICTIM, ignore_errors=True)
        shutil.rmtree(NOT_BPFFS, ignore_errors=True)


def run_case(case: Case, live) -> dict:
    args = case.args(live)
    if case.module == "role":
        rc, out, err, timed_out = fl.playbook(ROLE_PLAY, extra_vars=args, timeout=case.timeout)
        if timed_out:
            return {"failed": True, "msg": f"TIMEOUT after {case.timeout}s", "_timeout": True}
        failed = [r for r in fl.parse_results(out) if r.get("failed")]
        if rc == 0 or not failed:
            return {"failed": rc != 0, "msg": f"rc={rc}, no failed task", "_stdout": out, "_stderr": err}
        result = failed[-1]
        result["_stdout"], result["_stderr"] = out, err
        return result
    if case.runner == "ansible" or (case.module == "bpf_program" and not args.get("remote_src")
                                    and args.get("src")):
        return fl.adhoc(case.module, args, timeout=case.timeout)
    rc, result = fl.direct(case.module, args, timeout=case.timeout, raise_on_timeout=False)
    if "_stdout" in result and "msg" not in result:  # no JSON: a crash
        result.update(failed=True, msg=(result["_stderr"] or result["_stdout"]).strip() or f"rc={rc}")
    return result


def _prepare(case: Case, live) -> None:
    if case.id == "map-absent-symlink" and not os.path.lexists(live.root / "ebpfd_maplink"):
        os.symlink(live.map_pin, live.root / "ebpfd_maplink")
    if case.id == "map-spin-lock-field-written" and not (live.root / SPIN_LOCK_DIR / "maps").exists():
        (live.root / SPIN_LOCK_DIR).mkdir(exist_ok=True)   # bpftool pins under an existing bpffs dir only
        subprocess.run(["bpftool", "prog", "loadall", obj("spin_lock_pair"), str(live.root / SPIN_LOCK_DIR / "progs"),
                        "pinmaps", str(live.root / SPIN_LOCK_DIR / "maps")], check=True, capture_output=True,
                       timeout=60)
    if case.id.endswith("foreign-dir"):  # another tool's pins under a shared root (a dir is enough)
        (live.root / FOREIGN / "tc" / "globals").mkdir(parents=True, exist_ok=True)
    if case.id == "program-root-not-bpffs-absent":
        # what a bpffs_root mistake would point at: somebody's directory named like the deployment
        shutil.rmtree(VICTIM, ignore_errors=True)
    for path in case.watch:
        Path(path).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_in_one_line_and_changes_nothing(live, case, totals):
    t = totals("bad input")
    t.cases += 1
    _prepare(case, live)
    if case.id == "program-root-not-bpffs-absent":
        (VICTIM / live.name).mkdir(parents=True, exist_ok=True)
        (VICTIM / live.name / "precious.txt").write_text("keep me\n", encoding="ascii")
    before = live.snapshot(extra=case.watch)
    started = time.monotonic()
    result = run_case(case, live)
    seconds = time.monotonic() - started
    after = live.snapshot(extra=case.watch)
    counting, c0, c1 = live.still_counts()
    diff = fl.snapshot_diff(before, after)
    if diff or not counting:
        t.changed += 1
    else:
        t.ok += 1
    if before["xdp"]["prog_id"] and not after["xdp"]["prog_id"]:
        t.lost += 1
    msg = result.get("msg")
    context = f"{case.id}: result {dict((k, v) for k, v in result.items() if not k.startswith('_'))!r:.1500}"
    assert not result.get("_timeout"), f"{case.id}: hung ({seconds:.0f}s, process group killed): {msg}"
    assert result.get("failed"), f"{case.id}: did not fail: {context}"
    if case.module == "role" and isinstance(msg, str) and msg.startswith(ARGSPEC_HEADER):
        # ansible-core's own argument-spec validation (meta/argument_specs.yml) always puts its reason
        # on a second line; the reason itself must still be one line
        msg = msg[len(ARGSPEC_HEADER):]
    assert fl.one_line(msg), f"{case.id}: msg is not one line: {msg!r}"
    assert not diff, f"{case.id}: the host changed: {diff!r:.3000}\n{msg}"
    assert counting, f"{case.id}: the counter stopped counting ({c0} -> {c1} after 10 packets)"
    if case.expect:
        assert re.search(case.expect, msg, re.I), f"{case.id}: msg does not say why ({case.expect!r}): {msg}"


def _without_link_ids(snap: dict) -> dict:
    return dict(snap, links=[dict(link, id=None) for link in snap["links"]])


def test_mode_the_driver_refuses_puts_the_program_back(live, totals):
    """generic -> native on `lo` (no native XDP): the mode change needs a detach first,
    the attach in the new mode fails, and the old program must be attached again as it was (the
    kernel has no atomic mode change, so only the bpf_link's id may differ)."""
    t = totals("bad input")
    t.cases += 1
    dummy = "lo"  # of the veth's namespace (made by this suite); it has no native XDP
    try:
        rc, first = fl.direct("xdp_attach", live.xdp_args(interface=dummy, mode="generic"))
        assert rc == 0 and not first.get("failed"), first

        def snap():
            return fl.snapshot(root=live.root, deployment=live.name, netns=live.netns, ifname=dummy)

        before, veth_before = snap(), live.snapshot()
        rc, result = fl.direct("xdp_attach", live.xdp_args(interface=dummy, mode="native"))
        after, veth_after = snap(), live.snapshot()
        diff = fl.snapshot_diff(_without_link_ids(before), _without_link_ids(after))
        veth_diff = fl.snapshot_diff(_without_link_ids(veth_before), _without_link_ids(veth_after))
        diff.update({f"veth {k}": v for k, v in veth_diff.items()})
        if diff:
            t.changed += 1
            t.lost += int(not after["xdp"]["prog_id"])
        else:
            t.ok += 1
        assert result.get("failed"), result
        assert fl.one_line(result.get("msg")), result.get("msg")
        assert "native" in result["msg"], result["msg"]
        assert not diff, f"the interface did not get its program back as it was: {diff!r:.3000}"
    finally:
        fl.direct("xdp_attach", live.xdp_args(interface=dummy, state="absent"))
