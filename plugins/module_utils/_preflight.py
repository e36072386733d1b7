# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: compare a BPF object with a host before anything is created.

``check_object(spec, code, host)`` is pure: it takes the object as libbpf reads it without loading
(``_objects.ObjectSpec``), its instructions as the ELF holds them (``_race_lint.ObjectCode``) and
what the host offers (``HostState``: probed features, limits, the deployment's pinned maps), and
returns findings ``{severity, check, message, program?, map?, insn?}``:

==================  =========  ==========================================================
check               severity   what
==================  =========  ==========================================================
hook                error      a hook the program's section names that this kernel lacks (tcx, netfilter, ...)
program_type        error      a program type the kernel does not offer
helper              error      a helper (call insn id) the program type does not offer here
gpl_helper          error      a GPL-only helper in an object whose license is not GPL-compatible
program_size        error      more instructions than the kernel loads (1,000,000)
map_limits          error      a map size the kernel refuses outright (E2BIG/EINVAL)
memory              error      the maps do not fit the BPF memory budget (names the map)
memory              warning    the maps take more than half of it
pinned_map          error      a pinned map of the deployment with a different spec
race                warning    a non-atomic read-modify-write of a shared map value
verifier            error      (dry_verify) the verifier refuses a program
complexity          warning    (dry_verify) processed instructions or stack close to the limits
==================  =========  ==========================================================

``dry_verify()`` loads a copy of the object for real (its own maps, nothing pinned, everything
closed afterwards) to get verified_insns and the stack depth; it is only run when no error was
found, so an oversized map is never created. ``gather_host()`` and ``run()`` do the host I/O.

No Ansible here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks, _limits, _race_lint
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._features import HostFeatures, helper_label

SEVERITIES = ("info", "warning", "error")

# GPL-only helpers: the helpers whose `struct bpf_func_proto` has `.gpl_only = true` in the Linux
# kernel source (kernel/trace/bpf_trace.c, kernel/bpf/helpers.c, kernel/bpf/stackmap.c,
# net/core/filter.c); check_helper_call() in kernel/bpf/verifier.c refuses them in a program whose
# license is not GPL-compatible: "cannot call GPL-restricted function from non-GPL compatible
# program". Every id below except those marked "source" was confirmed on Linux 6.18 by loading
# `call <id>; exit` with license "Proprietary" for each program type that offers the helper
# (tests/integration/test_bpf_preflight.py repeats that check on the host it runs on); the
# "source" ones are not offered on that host (lockdown, tracing-only) and come from the source.
GPL_ONLY_HELPERS = frozenset({
    4,    # probe_read
    6,    # trace_printk
    22,   # perf_event_read
    25,   # perf_event_output
    27,   # get_stackid
    35,   # get_current_task
    36,   # probe_write_user (source)
    45,   # probe_read_str
    55,   # perf_event_read_value
    56,   # perf_prog_read_value
    58,   # override_return (source)
    67,   # get_stack
    69,   # fib_lookup
    100,  # tcp_check_syncookie
    110,  # tcp_gen_syncookie
    111,  # skb_output
    112,  # probe_read_user
    113,  # probe_read_kernel
    114,  # probe_read_user_str
    115,  # probe_read_kernel_str
    119,  # read_branch_records
    121,  # xdp_output
    126,  # seq_printf (source)
    127,  # seq_write (source)
    150,  # seq_printf_btf (source)
    158,  # get_current_task_btf
    163,  # check_mtu
    165,  # snprintf
    169,  # timer_init
    170,  # timer_set_callback
    171,  # timer_start
    172,  # timer_cancel
    173,  # get_func_ip
    175,  # task_pt_regs
    176,  # get_branch_snapshot
    177,  # trace_vprintk
    183,  # get_func_arg (source)
    184,  # get_func_ret (source)
    185,  # get_func_arg_cnt (source)
    191,  # copy_from_user_task
    204,  # tcp_raw_gen_syncookie_ipv4
    205,  # tcp_raw_gen_syncookie_ipv6
    206,  # tcp_raw_check_syncookie_ipv4
    207,  # tcp_raw_check_syncookie_ipv6
})

# include/linux/license.h: license_is_gpl_compatible()
GPL_COMPATIBLE_LICENSES = frozenset({
    "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL",
})

# Kernel limits on single maps (refused with E2BIG/EINVAL before any allocation).
MAX_HASH_KEY = _limits.MAX_BPF_STACK                 # htab_map_alloc_check: key_size > MAX_BPF_STACK
KMALLOC_MAX_SIZE = 1 << 22                            # x86-64, 4 KiB pages, MAX_PAGE_ORDER 10
MAX_HASH_VALUE = KMALLOC_MAX_SIZE - _limits.MAX_BPF_STACK - _limits.HTAB_ELEM
MAX_ARRAY_VALUE = (1 << 31) - 1                       # array_map_alloc_check: value_size > INT_MAX
PCPU_MIN_UNIT_SIZE = 32 << 10                         # per-CPU values: value_size > PCPU_MIN_UNIT_SIZE
HASH_TYPES = frozenset({_limits.HASH, _limits.LRU_HASH, _limits.PERCPU_HASH, _limits.LRU_PERCPU_HASH,
                        _limits.HASH_OF_MAPS})
PERCPU_TYPES = frozenset({_limits.PERCPU_HASH, _limits.PERCPU_ARRAY, _limits.LRU_PERCPU_HASH})

MEMORY_WARN_FRACTION = 0.5
COMPLEXITY_WARN_FRACTION = 0.9


@dataclass
class Finding:
    severity: str
    check: str
    message: str
    program: Optional[str] = None
    map: Optional[str] = None
    insn: Optional[int] = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"severity": self.severity, "check": self.check, "message": self.message}
        for key in ("program", "map", "insn"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class HostState:
    """What preflight compares the object with. Built by gather_host() or by hand in tests."""

    features: Optional[HostFeatures] = None
    limits: dict = field(default_factory=dict)
    pinned_maps: dict = field(default_factory=dict)   # name → _objects.MapSpec
    pinned_paths: dict = field(default_factory=dict)  # name → pin path

    @property
    def kernel_release(self) -> str:
        """The release the features were probed on (the running kernel's when probed by gather_host)."""
        return str((self.features.data if self.features else {}).get("kernel_release") or "")

    @property
    def possible_cpus(self) -> int:
        return int(self.limits.get("possible_cpus") or 1)


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def at_or_above(findings: Iterable[Finding], threshold: str) -> List[Finding]:
    """Findings whose severity is ``threshold`` or worse (``never``: none)."""
    if threshold == "never":
        return []
    rank = severity_rank(threshold)
    return [f for f in findings if severity_rank(f.severity) >= rank]


def gpl_compatible(license_text: Optional[str]) -> bool:
    return (license_text or "") in GPL_COMPATIBLE_LICENSES


# --- the pure checks ----------------------------------------------------------------------------
def check_object(spec, code, host: HostState) -> List[Finding]:
    """Every static check; ``spec``: _objects.ObjectSpec, ``code``: _race_lint.ObjectCode."""
    findings: List[Finding] = []
    code_by_name = {p.name: p for p in code.programs}
    helpers_by_prog = {name: _race_lint.program_helper_ids(prog, big_endian=code.big_endian)
                       for name, prog in code_by_name.items()}
    hooks = check_hooks(spec, host)
    findings += hooks
    # the hook finding says why more precisely than "libbpf knows no such section"
    findings += check_program_types(spec, host, skip={f.program for f in hooks})
    findings += check_helpers(spec, helpers_by_prog, host)
    findings += check_license(spec, helpers_by_prog)
    findings += check_program_size(spec)
    findings += check_map_limits(spec)
    findings += check_pinned_maps(spec, host)
    findings += check_memory(spec, host)
    findings += check_races(spec, code)
    return findings


def check_hooks(spec, host: HostState) -> List[Finding]:
    """A program whose section names a hook newer than this kernel (SEC("tcx/ingress") on 6.1) is
    refused by the hook and the kernel it needs, whether or not this host's libbpf knows the section."""
    release = host.kernel_release
    if not release:
        return []
    out = []
    for prog in spec.programs:
        try:
            row = _hooks.hook(_hooks.parse_section(prog.section).hook)
        except InvalidInput:
            continue   # a section that names no hook is for program_type (or bpf_attach's hook) to judge
        # XDP's row names the first kernel with XDP links; xdp_attach's netlink method needs none
        if row.family != "xdp" and not _hooks.kernel_at_least(release, row.kernel):
            out.append(Finding("error", "hook",
                               f"program '{prog.name}' (section '{prog.section}') is for hook {row.name}, "
                               f"which needs {row.requires}; this host runs kernel {release}",
                               program=prog.name, details={"hook": row.name, "requires": row.requires,
                                                           "kernel_release": release}))
    return out


def check_program_types(spec, host: HostState, skip: Iterable[str] = ()) -> List[Finding]:
    """``skip``: programs another finding already refused."""
    out = []
    skip = set(skip)
    for prog in spec.programs:
        if prog.name in skip:
            continue
        if prog.type == 0:
            out.append(Finding("error", "program_type",
                               f"program '{prog.name}': section '{prog.section}' names no program type "
                               "libbpf knows (SEC(\"xdp\"), SEC(\"tc\"), ...)", program=prog.name))
            continue
        if host.features is None:
            continue
        offered = host.features.has_prog_type(prog.type)
        if offered is False:
            out.append(Finding("error", "program_type",
                               f"program '{prog.name}' is of type {prog.type_name} (section "
                               f"'{prog.section}'), which kernel {host.kernel_release or '(unknown)'} does not offer",
                               program=prog.name, details={"program_type": prog.type_name}))
        elif offered is None:
            out.append(Finding("info", "program_type",
                               f"program '{prog.name}': cannot tell whether this kernel offers "
                               f"program type {prog.type_name}", program=prog.name))
    return out


def check_helpers(spec, helpers_by_prog: dict, host: HostState) -> List[Finding]:
    out = []
    if host.features is None:
        return out
    for prog in spec.programs:
        if not prog.type or host.features.has_prog_type(prog.type) is not True:
            continue  # reported by check_program_types
        missing = [h for h in helpers_by_prog.get(prog.name, ())
                   if host.features.has_helper(prog.type, h) is False]
        for helper_id in missing:
            out.append(Finding("error", "helper",
                               f"program '{prog.name}' ({prog.type_name}) calls helper "
                               f"{helper_label(helper_id)}, which {prog.type_name} programs cannot use "
                               f"on kernel {host.kernel_release or '(unknown)'}", program=prog.name,
                               details={"helper_id": helper_id, "helper": helper_label(helper_id)}))
    return out


def check_license(spec, helpers_by_prog: dict) -> List[Finding]:
    if gpl_compatible(spec.license):
        return []
    out = []
    for prog in spec.programs:
        for helper_id in helpers_by_prog.get(prog.name, ()):
            if helper_id in GPL_ONLY_HELPERS:
                out.append(Finding(
                    "error", "gpl_helper",
                    f"program '{prog.name}' calls GPL-only helper {helper_label(helper_id)} but the "
                    f"object's license {spec.license!r} is not GPL-compatible: the verifier refuses "
                    "it (\"cannot call GPL-restricted function from non-GPL compatible program\"); "
                    "use a GPL-compatible license (\"GPL\", \"Dual BSD/GPL\", ...) or drop the helper",
                    program=prog.name,
                    details={"helper_id": helper_id, "helper": helper_label(helper_id), "license": spec.license}))
    return out


def check_program_size(spec) -> List[Finding]:
    return [Finding("error", "program_size",
                    f"program '{p.name}' has {p.insn_cnt} instructions, more than the kernel loads "
                    f"({_limits.BPF_COMPLEXITY_LIMIT_INSNS})", program=p.name,
                    details={"insn_cnt": p.insn_cnt, "limit": _limits.BPF_COMPLEXITY_LIMIT_INSNS})
            for p in spec.programs if p.insn_cnt > _limits.BPF_COMPLEXITY_LIMIT_INSNS]


def map_limit_problem(m) -> Optional[str]:
    """Why the kernel refuses this map spec outright (None if it does not)."""
    if m.type in HASH_TYPES:
        if m.key_size > MAX_HASH_KEY:
            return f"key_size {m.key_size} > {MAX_HASH_KEY} (hash keys live on the BPF stack): E2BIG"
        if m.value_size >= MAX_HASH_VALUE:
            return f"value_size {m.value_size} >= {MAX_HASH_VALUE} (KMALLOC_MAX_SIZE): E2BIG"
    if m.type in (_limits.ARRAY, _limits.PERCPU_ARRAY) and m.value_size > MAX_ARRAY_VALUE:
        return f"value_size {m.value_size} > INT_MAX: E2BIG"
    if m.type in PERCPU_TYPES and m.value_size > PCPU_MIN_UNIT_SIZE:
        return f"per-CPU value_size {m.value_size} > {PCPU_MIN_UNIT_SIZE} (PCPU_MIN_UNIT_SIZE): E2BIG"
    if m.type == _limits.RINGBUF:
        page = _limits.PAGE_SIZE
        if m.max_entries < page or m.max_entries & (m.max_entries - 1):
            return f"ring buffer size {m.max_entries} is not a power of two >= {page}: EINVAL"
    return None


def check_map_limits(spec) -> List[Finding]:
    out = []
    for m in spec.maps:
        problem = map_limit_problem(m)
        if problem:
            out.append(Finding("error", "map_limits",
                               f"map '{m.name}' ({m.type_name}): the kernel refuses it: {problem}",
                               map=m.name, details={"spec": m.as_dict()}))
    return out


def reused_maps(spec, host: HostState) -> set:
    """Maps that will reuse a pinned map of the deployment (same spec): they need no new memory."""
    from ansible_collections.ebpf.deploy.plugins.module_utils._objects import diff_map_spec
    return {m.name for m in spec.maps if not m.per_version   # one per version: always new
            and m.name in host.pinned_maps and not diff_map_spec(host.pinned_maps[m.name], m)}


def memory_report(spec, host: HostState) -> dict:
    """Per-map estimates, their sum and the budget (bytes, limited_by)."""
    cpus = host.possible_cpus
    reused = reused_maps(spec, host)
    maps = []
    for m in spec.maps:
        est = _limits.map_spec_memory(m, cpus)
        maps.append({"name": m.name, "type": m.type_name, "bytes": est["bytes"], "formula": est["formula"],
                     "reused": m.name in reused})
    total = sum(m["bytes"] for m in maps if not m["reused"])
    budget = host.limits.get("bpf_memory_budget") or {"bytes": None, "limited_by": None}
    return {"maps": maps, "total": total, "budget": budget.get("bytes"), "limited_by": budget.get("limited_by")}


def check_memory(spec, host: HostState) -> List[Finding]:
    report = memory_report(spec, host)
    budget, source = report["budget"], report["limited_by"]
    if budget is None:
        return []
    out = []
    running = 0
    for m in report["maps"]:
        if m["reused"]:
            continue
        running += m["bytes"]
        if m["bytes"] > budget or running > budget:
            alone = m["bytes"] > budget
            out.append(Finding(
                "error", "memory",
                f"map '{m['name']}' ({m['type']}) needs about {_limits.human_bytes(m['bytes'])} "
                f"({m['formula']}){'' if alone else ', ' + _limits.human_bytes(running) + ' with the maps before it'}"
                f", more than the {_limits.human_bytes(budget)} BPF may use on this host "
                f"(limited by {source}); shrink max_entries/value size",
                map=m["name"], details={"bytes": m["bytes"], "cumulative": running, "budget": budget,
                                        "limited_by": source, "formula": m["formula"]}))
            break
    if not out and report["total"] > budget * MEMORY_WARN_FRACTION:
        out.append(Finding("warning", "memory",
                           f"the object's maps need about {_limits.human_bytes(report['total'])}, more than "
                           f"half of the {_limits.human_bytes(budget)} BPF may use on this host "
                           f"(limited by {source})",
                           details={"total": report["total"], "budget": budget, "limited_by": source}))
    return out


def check_pinned_maps(spec, host: HostState) -> List[Finding]:
    from ansible_collections.ebpf.deploy.plugins.module_utils._objects import (
        describe_map_conflict, diff_map_spec)
    out = []
    for m in spec.maps:
        pinned = host.pinned_maps.get(m.name)
        if pinned is None or m.per_version:   # a per-version table never reuses the shared pin
            continue
        changes = diff_map_spec(pinned, m)
        if changes:
            out.append(Finding(
                "error", "pinned_map",
                f"{describe_map_conflict(m.name, changes)}: the deployment's pinned map "
                f"{host.pinned_paths.get(m.name, '')} has a different spec than the object's; "
                "a deployment would refuse it unless a migration is asked for",
                map=m.name,
                details={"pinned": pinned.as_dict(), "wanted": m.as_dict(), "pin": host.pinned_paths.get(m.name),
                         "changes": [{"field": f, "pinned": a, "wanted": b} for f, a, b in changes]}))
    return out


def check_races(spec, code) -> List[Finding]:
    map_types = {m.name: m.type for m in spec.maps}
    out = []
    for prog in code.programs:
        for race in _race_lint.lint_program(prog, map_types=map_types, big_endian=code.big_endian):
            out.append(Finding("warning", "race", race.message(prog.name), program=prog.name,
                               map=race.map, insn=race.insn, details=race.to_dict()))
    return out


# --- host I/O -----------------------------------------------------------------------------------
def gather_host(*, bpffs_root: Optional[str], deployment: Optional[str], refresh_features: bool = False) -> HostState:
    """Features (cached per boot), limits and the deployment's pinned maps."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _features, _libbpf, _objects, _pins

    host = HostState(features=HostFeatures(_features.features(refresh=refresh_features)),
                     limits=_limits.host_limits())
    if deployment:
        dep = _pins.Deployment(bpffs_root or _pins.DEFAULT_BPFFS_ROOT, deployment)
        for name, path in dep.pinned_maps().items():
            with _libbpf.closing_fd(_libbpf.obj_get(str(path))) as fd:
                if _libbpf.fd_kind(fd) != "map":
                    continue
                host.pinned_maps[name] = _objects.map_spec_from_info(_libbpf.map_info(fd))
                host.pinned_paths[name] = str(path)
    return host


def dry_verify(data: bytes, *, name: str = "preflight") -> tuple:
    """Load a private copy of the object (maps included), read the verifier's figures, close it.

    Returns (findings, {program: {verified_insns, processed_insns, stack_depth, ...}}).
    """
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf, _objects, _verifier

    findings: List[Finding] = []
    stats: dict = {}
    obj, _spec = _objects.open_object(data, name=name)
    try:
        try:
            obj.load(log_level=4)  # BPF_LOG_STATS: the summary lines only, not the whole trace
        except _libbpf.ObjectLoadError as exc:
            findings.append(_load_failure(exc, _verifier))
            return findings, stats
        for prog in obj.programs():
            if not prog.autoload:
                continue
            info = _libbpf.prog_info(prog.fd)
            parsed = _verifier.parse_stats(prog.log)
            depth = parsed.get("stack_depth") or []
            entry = {"verified_insns": info.verified_insns,
                     "processed_insns": parsed.get("processed_insns", info.verified_insns),
                     "stack_depth": sum(depth) if depth else None, "stack_depth_per_function": depth,
                     "verification_time_usec": parsed.get("verification_time_usec"),
                     "jited_prog_len": info.jited_prog_len, "xlated_prog_len": info.xlated_prog_len}
            stats[prog.name] = entry
            limit = _limits.BPF_COMPLEXITY_LIMIT_INSNS
            if entry["processed_insns"] >= limit * COMPLEXITY_WARN_FRACTION:
                findings.append(Finding("warning", "complexity",
                                        f"program '{prog.name}': the verifier processed "
                                        f"{entry['processed_insns']} instructions, close to its limit of {limit}",
                                        program=prog.name, details=entry))
            if depth and max(depth) >= _limits.MAX_BPF_STACK * COMPLEXITY_WARN_FRACTION:
                findings.append(Finding("warning", "complexity",
                                        f"program '{prog.name}': stack depth {'+'.join(map(str, depth))} "
                                        f"bytes, close to the {_limits.MAX_BPF_STACK}-byte limit",
                                        program=prog.name, details=entry))
    finally:
        obj.close()
    return findings, stats


def _load_failure(exc, verifier) -> Finding:
    if exc.program and exc.verifier_log:
        found = verifier.classify_rejection(exc.verifier_log)
        return Finding("error", "verifier", verifier.one_line_message(exc.program, found),
                       program=exc.program, insn=found.insn,
                       details={"error_kind": found.error_kind, "summary": found.summary,
                                "errno": exc.errno})
    return Finding("error", "verifier" if exc.program else "map_create", exc.msg,
                   program=exc.program, map=exc.map_name, details={"errno": exc.errno})


def run(data: bytes, *, source: str = "object", bpffs_root: Optional[str] = None,
        deployment: Optional[str] = None, dry_verify_load: bool = False,
        refresh_features: bool = False, host: Optional[HostState] = None, spec=None) -> dict:
    """The whole preflight of one object: {findings, programs, maps, memory, license, ...}.

    spec: the object's ObjectSpec when the caller has opened it already (else it is opened here)."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _objects

    if spec is None:
        obj, spec = _objects.open_object(data, name=_object_name(source), source=source)
        obj.close()
    code = _race_lint.read_object_code(data)
    if host is None:
        host = gather_host(bpffs_root=bpffs_root, deployment=deployment, refresh_features=refresh_features)
    findings = check_object(spec, code, host)
    stats: dict = {}
    dry = {"requested": dry_verify_load, "done": False}
    if dry_verify_load:
        if at_or_above(findings, "error"):
            dry["skipped"] = "errors were found: nothing is loaded (no map is created)"
            findings.append(Finding("info", "dry_verify", "dry_verify skipped: " + dry["skipped"]))
        else:
            extra, stats = dry_verify(data, name=_object_name(source))
            findings += extra
            dry["done"] = True
    code_by_name = {p.name: p for p in code.programs}
    programs = []
    for prog in spec.programs:
        entry = prog.as_dict()
        entry["type"] = prog.type_name
        entry.pop("type_name", None)
        helpers = (_race_lint.program_helper_ids(code_by_name[prog.name], big_endian=code.big_endian)
                   if prog.name in code_by_name else [])
        entry["helpers"] = [helper_label(h) for h in helpers]
        entry.update(stats.get(prog.name, {}))
        programs.append(entry)
    findings.sort(key=lambda f: -severity_rank(f.severity))
    return {
        "findings": [f.to_dict() for f in findings],
        "_findings": findings,
        "programs": programs,
        "maps": [m.as_dict() for m in spec.maps],
        "memory": memory_report(spec, host),
        "license": spec.license,
        "gpl_compatible": gpl_compatible(spec.license),
        "dry_verify": dry,
        "digest": spec.digest,
    }


def _object_name(source: str) -> str:
    base = os.path.basename(source or "object")
    for suffix in (".bpf.o", ".o"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base or "object"


def count_by_severity(findings: Iterable[Finding]) -> dict:
    """``{"info": n, "warning": n, "error": n}``."""
    findings = list(findings)
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}


def summarize(findings: List[Finding]) -> str:
    """``2 errors, 1 warning: <first error message>``."""
    counts = count_by_severity(findings)
    parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in reversed(SEVERITIES) if counts[s]]
    if not parts:
        return "no findings"
    worst = max(findings, key=lambda f: severity_rank(f.severity))
    return f"{', '.join(parts)}: {worst.message}"


@dataclass(frozen=True)
class Request:
    """The bpf_preflight task's parameters, validated: the object's path and where to compare it."""
    src: str
    bpffs_root: str
    content: Optional[str] = None
    checksum: Optional[str] = None
    deployment: Optional[str] = None     # the module's ``name``: whose pinned maps to compare
    dry_verify: bool = False
    fail_on: str = "error"
    refresh_features: bool = False

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        # _pins only when the module runs: importing bpf_preflight loads none of the host-side files
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
            DEFAULT_BPFFS_ROOT, validate_deployment_name, validate_path, validate_root)

        # in the order the checks ran before the request existed: root, name, then src
        bpffs_root = str(validate_root(params.get("bpffs_root") or DEFAULT_BPFFS_ROOT))
        deployment = validate_deployment_name(params["name"]) if params.get("name") else None
        return cls(src=validate_path(params["src"], "src"), content=params.get("content"),
                   checksum=params.get("checksum"), bpffs_root=bpffs_root, deployment=deployment,
                   dry_verify=bool(params.get("dry_verify")), fail_on=params.get("fail_on") or "error",
                   refresh_features=bool(params.get("refresh_features")))

    @property
    def label(self) -> str:
        """The object as messages name it: its file name."""
        return os.path.basename(self.src)


class PreflightManager:
    """The bpf_preflight module's run: read the object on the host, check it, judge by fail_on.
    It never changes anything, so check mode and diff mode change nothing in it either."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False) -> None:
        self.request = request
        self.check_mode = check_mode
        self.diff_mode = diff_mode

    def _read_object(self) -> bytes:
        from ansible_collections.ebpf.deploy.plugins.module_utils._objects import read_source, verify_checksum

        req = self.request
        data = read_source(req.src, req.content, label=req.label)
        verify_checksum(data, req.checksum, source=req.label)
        return data

    def run(self) -> dict:
        req = self.request
        report = run(self._read_object(), source=req.label, bpffs_root=req.bpffs_root,
                     deployment=req.deployment, dry_verify_load=req.dry_verify,
                     refresh_features=req.refresh_features)
        findings = report.pop("_findings")
        blocking = at_or_above(findings, req.fail_on)
        counts = count_by_severity(findings)
        if blocking:
            msg = f"preflight failed ({req.fail_on} or worse): {summarize(findings)}"
        else:
            msg = f"preflight passed: {summarize(findings)}"
        return dict(report, changed=False, passed=not blocking, counts=counts, msg=msg)
