"""_preflight: every static check against a simulated host (features, limits, pinned maps).

The host's feature table is simulated here (HostFeatures over a dict), so the checks are proven
independently of the kernel the tests run on; tests/integration/test_bpf_preflight.py runs the
same checks against the real one. Object specs are built by hand, the object code comes from the
compiled fixtures (build/bpf) when a case needs real instructions.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _limits as lim
from ansible_collections.ebpf.deploy.plugins.module_utils import _preflight as pf
from ansible_collections.ebpf.deploy.plugins.module_utils import _race_lint as rl
from ansible_collections.ebpf.deploy.plugins.module_utils._features import HostFeatures
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import MapSpec, ObjectSpec, ProgramSpec

BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", Path(__file__).resolve().parents[4] / "build" / "bpf"))
XDP, LIRC = 6, 20
ALL_HELPERS = list(range(1, 212))


def features(*, lirc: bool = False, xdp_helpers=None, release: str = "") -> HostFeatures:
    return HostFeatures({
        "kernel_release": release,
        "program_type_ids": {"xdp": XDP, "lirc_mode2": LIRC, "tracing": 26},
        "program_types": {"xdp": True, "lirc_mode2": lirc, "tracing": None},
        "helper_ids": {"xdp": ALL_HELPERS if xdp_helpers is None else xdp_helpers,
                       "lirc_mode2": ALL_HELPERS if lirc else None},
    })


def host(*, budget=1 << 30, feats=None, pinned=None) -> pf.HostState:
    return pf.HostState(features=feats or features(),
                        limits={"possible_cpus": 2, "bpf_memory_budget": {"bytes": budget, "limited_by": "memory_cgroup"}},
                        pinned_maps=pinned or {}, pinned_paths={k: f"/sys/fs/bpf/x/maps/{k}" for k in (pinned or {})})


def mapspec(name="pkt_count", type_=2, type_name="array", key=4, value=8, entries=1, flags=0) -> MapSpec:
    return MapSpec(name=name, type=type_, type_name=type_name, key_size=key, value_size=value,
                   max_entries=entries, map_flags=flags)


def prog(name="xdp_packet_counter", type_=XDP, type_name="xdp", section="xdp", insn_cnt=12) -> ProgramSpec:
    return ProgramSpec(name=name, section=section, type=type_, type_name=type_name,
                       expected_attach_type=37, insn_cnt=insn_cnt)


def spec(programs=(), maps=(), license="GPL") -> ObjectSpec:
    return ObjectSpec(digest="0" * 64, size=1, license=license, programs=tuple(programs), maps=tuple(maps))


def code(stem: str) -> rl.ObjectCode:
    path = BPF_DIR / f"{stem}.bpf.o"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make bpf`")
    return rl.read_object_code(path.read_bytes())


def checks(findings):
    return sorted((f.severity, f.check) for f in findings)


def test_clean_counter_has_no_finding():
    findings = pf.check_object(spec([prog()], [mapspec()]), code("counter"), host())
    assert findings == []


def test_absent_program_type_is_an_error_and_skips_its_helpers():
    s = spec([prog(name="lirc_prog", type_=LIRC, type_name="lirc_mode2", section="lirc_mode2")])
    findings = pf.check_object(s, rl.ObjectCode(programs=[], license="GPL"), host())
    assert checks(findings) == [("error", "program_type")]
    assert "lirc_mode2" in findings[0].message and findings[0].program == "lirc_prog"
    assert pf.check_object(s, rl.ObjectCode(programs=[], license="GPL"), host(feats=features(lirc=True))) == []


def test_unknown_section_and_unprobeable_type():
    unknown = spec([prog(name="p", type_=0, type_name="unspec", section="foo")])
    assert checks(pf.check_program_types(unknown, host())) == [("error", "program_type")]
    tracing = spec([prog(name="t", type_=26, type_name="tracing", section="fentry/x")])
    assert checks(pf.check_program_types(tracing, host())) == [("info", "program_type")]


def test_a_hook_newer_than_the_kernel_is_refused_by_hook_and_release():
    # libbpf 1.1 (Debian 12) knows no tcx section: the type is unknown, the hook says why
    tcx = spec([prog(name="tcx_count", type_=0, type_name="unspec", section="tcx/ingress")])
    none = rl.ObjectCode(programs=[], license="GPL")
    findings = pf.check_object(tcx, none, host(feats=features(release="6.1.0-28-amd64")))
    assert checks(findings) == [("error", "hook")]
    assert ("tcx_ingress" in findings[0].message and "kernel >= 6.6" in findings[0].message
            and "6.1.0-28-amd64" in findings[0].message), findings[0].message
    assert findings[0].details["requires"] == "kernel >= 6.6"
    # on 6.12 the hook exists: what is left is the section this (fake) libbpf does not know
    assert checks(pf.check_object(tcx, none, host(feats=features(release="6.12.48+deb13-amd64")))) == \
        [("error", "program_type")]
    # an XDP program needs no XDP link (the netlink method): never refused by its hook
    assert pf.check_hooks(spec([prog()]), host(feats=features(release="5.4.0"))) == []
    # no release probed: nothing to compare
    assert pf.check_hooks(tcx, host()) == []


def test_findings_name_the_kernel_release():
    s = spec([prog(name="lirc_prog", type_=LIRC, type_name="lirc_mode2", section="lirc_mode2")])
    (finding,) = pf.check_program_types(s, host(feats=features(release="6.1.0-28-amd64")))
    assert "kernel 6.1.0-28-amd64 does not offer" in finding.message, finding.message
    findings = pf.check_object(spec([prog()], [mapspec()]), code("counter"),
                               host(feats=features(xdp_helpers=[2, 3], release="6.1.0-28-amd64")))
    assert "on kernel 6.1.0-28-amd64" in findings[0].message, findings[0].message


def test_helper_the_program_type_lacks_is_an_error():
    s = spec([prog()], [mapspec()])
    findings = pf.check_object(s, code("counter"), host(feats=features(xdp_helpers=[2, 3])))
    assert checks(findings) == [("error", "helper")]
    assert "bpf_map_lookup_elem#1" in findings[0].message


def test_gpl_only_helper_in_a_non_gpl_object():
    s = spec([prog(name="xdp_gpl_helper", insn_cnt=9)], license="Proprietary")
    findings = pf.check_object(s, code("reject_gpl_helper"), host())
    assert checks(findings) == [("error", "gpl_helper")]
    assert "bpf_trace_printk#6" in findings[0].message and "'Proprietary'" in findings[0].message
    dual = spec([prog(name="xdp_gpl_helper", insn_cnt=9)], license="Dual BSD/GPL")
    assert pf.check_object(dual, code("reject_gpl_helper"), host()) == []


def test_gpl_table():
    assert {4, 6, 25, 113, 177}.issubset(pf.GPL_ONLY_HELPERS)
    assert not {1, 2, 3, 5, 12, 23, 51, 130}.intersection(pf.GPL_ONLY_HELPERS)
    assert pf.gpl_compatible("GPL") and pf.gpl_compatible("Dual MIT/GPL")
    assert not pf.gpl_compatible("MIT") and not pf.gpl_compatible(None) and not pf.gpl_compatible("gpl")


def test_map_that_does_not_fit_is_named_before_anything_is_created():
    s = spec([], [mapspec("small", entries=1), mapspec("big", value=1 << 20, entries=2)])
    findings = pf.check_memory(s, host(budget=1 << 20))
    assert checks(findings) == [("error", "memory")]
    assert findings[0].map == "big" and "2.0 MiB" in findings[0].message
    assert "memory_cgroup" in findings[0].message


def test_the_map_that_tips_the_sum_over_is_named():
    s = spec([], [mapspec("a", value=600 << 10), mapspec("b", value=600 << 10), mapspec("c")])
    (finding,) = pf.check_memory(s, host(budget=1 << 20))
    # two 600 KiB arrays: values plus each map's struct bpf_array (_limits.map_memory)
    assert finding.map == "b" and finding.details["cumulative"] == 2 * (lim.ARRAY_STRUCT + (600 << 10))


def test_more_than_half_the_budget_is_a_warning_and_reused_maps_are_free():
    s = spec([], [mapspec("a", value=600 << 10)])
    assert checks(pf.check_memory(s, host(budget=1 << 20))) == [("warning", "memory")]
    reused = host(budget=1 << 20, pinned={"a": mapspec("a", value=600 << 10)})
    assert pf.check_memory(s, reused) == []
    assert pf.memory_report(s, reused)["maps"][0]["reused"]


def test_oversized_fixture_map_hits_both_the_kernel_limit_and_memory():
    huge = mapspec("huge", value=1 << 31, entries=1 << 20)
    findings = pf.check_map_limits(spec([], [huge])) + pf.check_memory(spec([], [huge]), host())
    assert checks(findings) == [("error", "map_limits"), ("error", "memory")]
    assert all(f.map == "huge" for f in findings)


@pytest.mark.parametrize("m,needle", [
    (mapspec("h", 1, "hash", key=1024), "key_size 1024"),
    (mapspec("pc", 6, "percpu_array", value=64 << 10), "PCPU_MIN_UNIT_SIZE"),
    (mapspec("rb", 27, "ringbuf", key=0, value=0, entries=5000), "power of two"),
])
def test_map_limits(m, needle):
    (finding,) = pf.check_map_limits(spec([], [m]))
    assert needle in finding.message


def test_pinned_map_conflict_names_both_specs():
    s = spec([prog()], [mapspec(type_=1, type_name="hash", entries=4096)])
    findings = pf.check_pinned_maps(s, host(pinned={"pkt_count": mapspec()}))
    assert checks(findings) == [("error", "pinned_map")]
    f = findings[0]
    assert "type array \u2192 hash" in f.message and "max_entries 1 \u2192 4096" in f.message
    assert f.details["pinned"]["max_entries"] == 1 and f.details["wanted"]["max_entries"] == 4096
    assert pf.check_pinned_maps(spec([], [mapspec()]), host(pinned={"pkt_count": mapspec()})) == []


def test_racy_counter_is_a_warning_with_its_instruction():
    s = spec([prog(name="xdp_racy_counter", insn_cnt=13)], [mapspec("racy_count")])
    findings = pf.check_object(s, code("racy_counter"), host())
    assert checks(findings) == [("warning", "race")]
    assert findings[0].insn == 10 and findings[0].map == "racy_count"
    assert "__sync_fetch_and_add" in findings[0].message


def test_program_size():
    assert checks(pf.check_program_size(spec([prog(insn_cnt=1_000_001)]))) == [("error", "program_size")]
    assert pf.check_program_size(spec([prog(insn_cnt=1_000_000)])) == []


def test_fail_on_threshold_and_summary():
    findings = [pf.Finding("warning", "race", "w"), pf.Finding("info", "x", "i")]
    assert pf.at_or_above(findings, "error") == []
    assert [f.check for f in pf.at_or_above(findings, "warning")] == ["race"]
    assert len(pf.at_or_above(findings, "info")) == 2
    assert pf.at_or_above(findings, "never") == []
    assert pf.summarize(findings) == "1 warning, 1 info: w"
    assert pf.summarize([]) == "no findings"
    expected = {"severity": "error", "check": "memory", "message": "m", "map": "x"}
    assert pf.Finding("error", "memory", "m", map="x").to_dict() == expected


# --- the manager contract: Request.from_params(params) → PreflightManager(request).run() ------------
def params(**over) -> dict:
    base = {"src": "/tmp/ebpfd_counter.bpf.o", "content": None, "checksum": None, "name": None,
            "bpffs_root": "/sys/fs/bpf/ebpf_deploy", "dry_verify": False, "fail_on": "error",
            "refresh_features": False}
    base.update(over)
    return base


def test_request_from_params_takes_the_module_options():
    req = pf.Request.from_params(params(name="pktcount", bpffs_root="/sys/fs/bpf/x/", dry_verify=True,
                                        fail_on="warning"))
    assert (req.deployment, req.bpffs_root, req.dry_verify, req.fail_on) == ("pktcount", "/sys/fs/bpf/x", True, "warning")
    assert req.label == "ebpfd_counter.bpf.o"
    defaults = pf.Request.from_params(params(bpffs_root=None, fail_on=None))
    assert (defaults.deployment, defaults.bpffs_root, defaults.fail_on) == (None, "/sys/fs/bpf/ebpf_deploy", "error")


@pytest.mark.parametrize("over, needle", [
    ({"bpffs_root": "relative/root"}, "bpffs_root must be an absolute path"),
    ({"bpffs_root": "/sys/fs/bpf/../x"}, "must not contain '..'"),
    ({"name": "maps"}, "is reserved"),
    ({"name": "no/slash"}, "deployment name"),
    ({"src": "/tmp/a\0b.o"}, "contains a NUL byte"),
])
def test_request_from_params_refuses_bad_input(over, needle):
    with pytest.raises(pf.InvalidInput, match=needle):
        pf.Request.from_params(params(**over))


def test_manager_judges_the_report_by_fail_on(monkeypatch):
    import base64
    seen = {}

    def fake_run(data, **kwargs):
        seen.update(kwargs, data=data)
        return {"findings": [], "_findings": [pf.Finding("warning", "race", "racy")]}

    monkeypatch.setattr(pf, "run", fake_run)
    content = base64.b64encode(b"\x7fELF").decode()
    passed = pf.PreflightManager(pf.Request.from_params(params(content=content, name="d"))).run()
    assert (passed["passed"], passed["changed"], passed["msg"]) == (True, False, "preflight passed: 1 warning: racy")
    assert passed["counts"] == {"info": 0, "warning": 1, "error": 0} and "_findings" not in passed
    assert (seen["data"], seen["source"], seen["deployment"]) == (b"\x7fELF", "ebpfd_counter.bpf.o", "d")
    failed = pf.PreflightManager(pf.Request.from_params(params(content=content, fail_on="warning")),
                                 check_mode=True).run()
    assert (failed["passed"], failed["msg"]) == (False, "preflight failed (warning or worse): 1 warning: racy")


def test_manager_refuses_an_object_whose_checksum_differs():
    import base64
    req = pf.Request.from_params(params(content=base64.b64encode(b"x").decode(), checksum="sha256:" + "0" * 64))
    with pytest.raises(pf.InvalidInput, match="checksum mismatch for ebpfd_counter.bpf.o"):
        pf.PreflightManager(req).run()
