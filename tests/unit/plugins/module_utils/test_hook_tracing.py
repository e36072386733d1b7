"""_hook_tracing: probe targets, kallsyms and PMU formats, and the refusals a tracing hook makes
before it touches the kernel (pure parts; the links themselves are proven on the VM lab hosts,
tests/integration/test_vm_hooks.py)."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tracing as tracing
from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    InvalidInput, UnsupportedFeature)

from test_elf import SEGMENTS, SYMBOLS, make_shared_object

KALLSYMS = ("ffffffff81000000 T _stext\nffffffff810a1b20 T __x64_sys_getpid\n"
            "ffffffff810a1b40 t do_unlinkat.isra.0\nffffffffc0001000 t ebpfd_mod_fn\t[ebpfd_mod]\n")


@pytest.mark.parametrize("target, parsed", [
    ("__x64_sys_getpid", ("__x64_sys_getpid", 0)),
    ("do_unlinkat+16", ("do_unlinkat", 16)),
    ("do_unlinkat+0x10", ("do_unlinkat", 16)),
    ("do_unlinkat.isra.0", ("do_unlinkat.isra.0", 0)),
])
def test_function_targets(target, parsed):
    assert tracing.parse_function(target, hook="kprobe") == parsed


@pytest.mark.parametrize("bad", [None, "", "+4", "do_unlinkat+", "do_unlinkat+x", "do_unlinkat+-4", "a b", "1fn"])
def test_bad_function_targets_are_refused_in_one_line(bad):
    with pytest.raises(InvalidInput, match="kprobe target must be a function or function[+]offset") as err:
        tracing.parse_function(bad, hook="kprobe")
    assert "\n" not in err.value.msg


def test_uprobe_targets():
    assert tracing.parse_uprobe("/usr/lib/x86_64-linux-gnu/libc.so.6:getpid", hook="uprobe") == (
        "/usr/lib/x86_64-linux-gnu/libc.so.6", "getpid", 0)
    assert tracing.parse_uprobe("/opt/a:b/bin//x:main+0x8", hook="uretprobe") == ("/opt/a:b/bin/x", "main", 8)
    for bad in (None, "getpid", "libc.so.6:getpid", "/usr/bin/bash", "/usr/bin/bash:", ":getpid"):
        with pytest.raises(InvalidInput, match="uprobe target must be /absolute/binary:symbol"):
            tracing.parse_uprobe(bad, hook="uprobe")


def test_kallsyms_and_pmu_formats():
    assert tracing.kallsyms_has(KALLSYMS, "__x64_sys_getpid")
    assert tracing.kallsyms_has(KALLSYMS, "ebpfd_mod_fn") and tracing.kallsyms_has(KALLSYMS, "do_unlinkat.isra.0")
    assert not tracing.kallsyms_has(KALLSYMS, "__x64_sys_getpi") and not tracing.kallsyms_has(KALLSYMS, "do_unlinkat")
    assert not tracing.kallsyms_has(KALLSYMS, "ffffffff81000000")
    assert tracing.format_bit("config:0\n") == 0 and tracing.format_bit("config:63") == 63
    assert tracing.format_bit(None) is None and tracing.format_bit("config:0-3") is None


class _Req:
    def __init__(self, target=None, loaded_target=None):
        self.target = target
        self.loaded_target = loaded_target


def family(hook: str, **request) -> tracing.TracingFamily:
    return tracing.TracingFamily(hooks.hook(hook), _Req(**request), lib=object())


def test_fentry_fexit_lsm_go_where_they_were_loaded_for():
    target = family("fentry", target="__x64_sys_getpid", loaded_target="__x64_sys_getpid").resolve(check_mode=True)
    assert target.data == {"target": "__x64_sys_getpid"} and target.key == "__x64_sys_getpid"
    assert family("lsm", target="file_open", loaded_target="file_open").resolve(check_mode=True).label == \
        "lsm LSM hook file_open"
    with pytest.raises(InvalidInput, match=r"hook fexit: target 'do_unlinkat' disagrees with '__x64_sys_getpid', "
                                           r"the target the program was loaded for \(section fexit/__x64_sys_getpid\)"):
        family("fexit", target="do_unlinkat", loaded_target="__x64_sys_getpid").resolve(check_mode=True)
    with pytest.raises(InvalidInput, match=r"hook lsm: give section .*lsm/file_open"):
        family("lsm", target="file_open").resolve(check_mode=True)


def test_an_unknown_kernel_function_is_named(monkeypatch):
    monkeypatch.setattr(tracing, "read_text", lambda path: KALLSYMS if path == tracing.KALLSYMS else None)
    target = family("kretprobe", target="__x64_sys_getpid+0x4").resolve(check_mode=True)
    assert target.data == {"target": "__x64_sys_getpid+0x4", "_name": "__x64_sys_getpid", "_offset": 4}
    assert target.describe() == {"target": "__x64_sys_getpid+0x4"} and target.key == "__x64_sys_getpid%2B0x4"
    with pytest.raises(InvalidInput, match=r"^kprobe: no kernel function 'ebpfd_nope' on this kernel "
                                           r"\(not in /proc/kallsyms\)$"):
        family("kprobe", target="ebpfd_nope").resolve(check_mode=True)
    monkeypatch.setattr(tracing, "read_text", lambda path: None)   # unreadable: the kernel tells at attach
    assert family("kprobe", target="ebpfd_nope").resolve(check_mode=True).data["_name"] == "ebpfd_nope"


def test_a_uprobe_s_symbol_and_binary_are_named(tmp_path):
    lib = tmp_path / "libebpfd.so"
    lib.write_bytes(make_shared_object(SYMBOLS, SEGMENTS))
    target = family("uprobe", target=f"{lib}:getpid+2").resolve(check_mode=True)
    assert target.data == {"target": f"{lib}:getpid+2", "_name": str(lib), "_offset": 0x1042}
    with pytest.raises(InvalidInput, match=rf"^uprobe: no function 'ebpfd_nope' in {lib} \(neither .symtab nor "):
        family("uprobe", target=f"{lib}:ebpfd_nope").resolve(check_mode=True)
    with pytest.raises(InvalidInput, match=rf"^uretprobe: cannot read binary {tmp_path}/nope \(No such file"):
        family("uretprobe", target=f"{tmp_path}/nope:getpid").resolve(check_mode=True)
    (tmp_path / "text").write_text("#!/bin/sh\n" * 20)
    with pytest.raises(InvalidInput, match=r"is not an ELF64 executable or library"):
        family("uprobe", target=f"{tmp_path}/text:main").resolve(check_mode=True)


def test_lsm_needs_the_bpf_lsm_active(monkeypatch):
    monkeypatch.setattr(tracing, "lockdown_mode", lambda: None)
    monkeypatch.setattr(hooks, "kernel_at_least", lambda release, wanted: True)
    monkeypatch.setattr(tracing, "active_lsms", lambda: ["lockdown", "capability", "apparmor"])
    with pytest.raises(UnsupportedFeature, match=r"^hook lsm: the BPF LSM is not active on this kernel \(active "
                                                 r"LSMs: lockdown,capability,apparmor; boot with "
                                                 r"lsm=lockdown,capability,apparmor,bpf\) \(requires CONFIG_BPF_LSM"):
        family("lsm", target="file_open").check_kernel()
    monkeypatch.setattr(tracing, "active_lsms", lambda: ["lockdown", "capability", "bpf"])
    family("lsm", target="file_open").check_kernel()
    monkeypatch.setattr(tracing, "active_lsms", lambda: None)   # securityfs unreadable: not refused here
    family("lsm", target="file_open").check_kernel()


def test_lockdown_is_named_before_the_lsm_list(monkeypatch):
    monkeypatch.setattr(tracing, "lockdown_mode", lambda: "integrity")
    monkeypatch.setattr(tracing, "active_lsms", lambda: ["capability"])
    with pytest.raises(UnsupportedFeature, match=r"kernel lockdown \(integrity\) refuses lsm programs"):
        family("lsm", target="file_open").check_kernel()
