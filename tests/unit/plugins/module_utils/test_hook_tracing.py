"""_hook_tracing: probe targets, kallsyms and PMU formats, and the refusals a tracing hook makes
before it touches the kernel (pure parts; the links themselves are proven on the VM lab hosts,
tests/integration/test_vm_hooks.py)."""
from __future__ import annotations

import errno
import struct
from types import SimpleNamespace

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tracing as tracing
from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError, InvalidInput, SyscallError, UnsupportedFeature)

from test_btf import BPF_DIR, elf_section
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
    def __init__(self, target=None, loaded_target=None, state="present"):
        self.target = target
        self.loaded_target = loaded_target
        self.state = state


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


# --- freplace: /pin/of/the/program:function, its BTF's FUNC, the section's function ----------------
TARGET_PIN = "/sys/fs/bpf/ebpf_deploy/ebpfd_app/0123456789ab/progs/fr_getpid"


@pytest.fixture(scope="module")
def target_btf() -> bytes:
    """The BTF of tests/bpf/freplace_target.bpf.o (what the kernel holds once it is loaded)."""
    obj = BPF_DIR / "freplace_target.bpf.o"
    if not obj.exists():
        pytest.skip(f"{obj} missing: run `make bpf`")
    return elf_section(obj, ".BTF")


def btf_blob(funcs) -> bytes:
    """A BTF blob of one FUNC_PROTO (void (void)) and a FUNC per (name, linkage)."""
    strings = b"\0" + b"".join(name.encode() + b"\0" for name, _linkage in funcs)
    types = struct.pack("<III", 0, 13 << 24, 0)
    offset = 1
    for name, linkage in funcs:
        types += struct.pack("<III", offset, (12 << 24) | linkage, 1)
        offset += len(name) + 1
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings


@pytest.mark.parametrize("target, parsed", [
    (f"{TARGET_PIN}:ebpfd_policy", (TARGET_PIN, "ebpfd_policy")),
    ("/sys/fs/bpf//a/../b/prog:_f1", ("/sys/fs/bpf/b/prog", "_f1")),
    ("/sys/fs/bpf/we:ird/prog:policy", ("/sys/fs/bpf/we:ird/prog", "policy")),
])
def test_freplace_targets(target, parsed):
    assert tracing.parse_freplace(target) == parsed


@pytest.mark.parametrize("bad", [None, "", "ebpfd_policy", "prog:ebpfd_policy", f"{TARGET_PIN}:", f"{TARGET_PIN}",
                                 ":ebpfd_policy", f"{TARGET_PIN}:do.it", f"{TARGET_PIN}:1st"])
def test_bad_freplace_targets_are_refused_in_one_line(bad):
    with pytest.raises(InvalidInput, match=r"^freplace target must be /pin/of/the/program:function ") as err:
        tracing.parse_freplace(bad)
    assert "\n" not in err.value.msg


def test_the_replaced_function_is_a_global_func_of_the_program_s_btf(target_btf):
    btf = Btf(target_btf)
    func_id = tracing.replaced_function(target_btf, "ebpfd_policy", program="program 'fr_getpid' (id 7)")
    assert btf.get(func_id).kind_name == "FUNC" and btf.get(func_id).name == "ebpfd_policy"
    assert btf.get(btf.get(func_id).size_or_type).kind_name == "FUNC_PROTO"
    with pytest.raises(InvalidInput) as err:
        tracing.replaced_function(target_btf, "ebpfd_nope", program="program 'fr_getpid' (id 7)")
    assert err.value.msg == ("program 'fr_getpid' (id 7) has no function 'ebpfd_nope' in its BTF (its global "
                             "functions: ebpfd_policy, fr_getpid)")
    blob = btf_blob([("helper", 0), ("policy", 1)])
    assert Btf(blob).get(tracing.replaced_function(blob, "policy", program="p")).name == "policy"
    with pytest.raises(InvalidInput, match=r"^function 'helper' of p is static; freplace replaces global functions only"):
        tracing.replaced_function(blob, "helper", program="p")
    with pytest.raises(InvalidInput, match=r"^p: its BTF cannot be read \(not BTF"):
        tracing.replaced_function(b"\0" * 32, "policy", program="p")


class _FakeLib:
    """What _hook_tracing asks libbpf about a pin: one program (or map) with its BTF; fds counted."""

    def __init__(self, blob: bytes, *, kind: str = "prog", btf_id: int = 41) -> None:
        self.blob, self.kind, self.btf_id = blob, kind, btf_id
        self.open = 0
        self.created = []

    def obj_get(self, path):
        if path != TARGET_PIN:
            raise SyscallError("bpf_obj_get", errno.ENOENT, path)
        self.open += 1
        return 9

    def close(self, fd):
        self.open -= 1

    def fd_kind(self, fd):
        return self.kind

    def prog_info(self, fd):
        return SimpleNamespace(id=7, name="fr_getpid", btf_id=self.btf_id)

    def btf_raw(self, btf_id):
        assert btf_id == self.btf_id
        return self.blob

    def link_create_hook(self, prog_fd, target, attach_type, **kwargs):
        self.created.append((prog_fd, target, attach_type, kwargs["target_btf_id"]))
        return 12


def freplace(lib, target, loaded="ebpfd_policy") -> tracing.TracingFamily:
    return tracing.TracingFamily(hooks.hook("freplace"), _Req(target=target, loaded_target=loaded), lib=lib)


def test_freplace_resolves_the_function_s_btf_id_and_links_with_it(target_btf):
    lib = _FakeLib(target_btf)
    fam = freplace(lib, f"{TARGET_PIN}:ebpfd_policy")
    assert not fam.can_detach   # released by unpinning, one extension per function: released before attaching
    target = fam.resolve(check_mode=True)
    func_id = Btf(target_btf).function("ebpfd_policy").type_id
    assert target.data == {"target": f"{TARGET_PIN}:ebpfd_policy", "_pin": TARGET_PIN, "_prog_id": 7,
                           "_btf_id": func_id}
    assert target.label == "function ebpfd_policy of program id 7" and "%2F" in target.key and lib.open == 0
    assert fam.attach(5, target) == 12
    assert lib.created == [(5, 9, 0, func_id)] and lib.open == 0


def test_freplace_refusals_name_the_pin_the_program_and_the_function(target_btf):
    cases = [
        (_FakeLib(target_btf), "/sys/fs/bpf/nope:ebpfd_policy", "ebpfd_policy",
         r"^hook freplace: no pinned program at /sys/fs/bpf/nope \(bpf_obj_get: ENOENT\)$"),
        (_FakeLib(target_btf, kind="map"), f"{TARGET_PIN}:ebpfd_policy", "ebpfd_policy",
         rf"^hook freplace: {TARGET_PIN} is a pinned map, not a program$"),
        (_FakeLib(target_btf, btf_id=0), f"{TARGET_PIN}:ebpfd_policy", "ebpfd_policy",
         rf"^hook freplace: program 'fr_getpid' \(id 7\) at {TARGET_PIN} has no BTF"),
        (_FakeLib(target_btf), f"{TARGET_PIN}:ebpfd_nope", "ebpfd_policy",
         rf"^program 'fr_getpid' \(id 7\) at {TARGET_PIN} has no function 'ebpfd_nope' in its BTF"),
        (_FakeLib(target_btf), f"{TARGET_PIN}:fr_getpid", "ebpfd_policy",
         r"^hook freplace: function 'fr_getpid' disagrees with 'ebpfd_policy', the function the program was "
         r"loaded for \(section freplace/ebpfd_policy\)$"),
        (_FakeLib(target_btf), f"{TARGET_PIN}:ebpfd_policy", None, r"^hook freplace: give section .*freplace/ebpfd_policy"),
    ]
    for lib, target, loaded, words in cases:
        with pytest.raises(InvalidInput, match=words) as err:
            freplace(lib, target, loaded).resolve(check_mode=True)
        assert "\n" not in err.value.msg and lib.open == 0, (target, err.value.msg)


def test_freplace_absent_needs_only_the_target_s_text(target_btf):
    """Our link pin is named by the target: state absent finds it when the program there is gone already."""
    lib = _FakeLib(target_btf)
    request = _Req(target="/sys/fs/bpf/gone/p:ebpfd_policy", loaded_target="ebpfd_policy", state="absent")
    target = tracing.TracingFamily(hooks.hook("freplace"), request, lib=lib).resolve(check_mode=False)
    assert target.key == tracing.encode_component("/sys/fs/bpf/gone/p:ebpfd_policy") and lib.open == 0
    assert target.describe() == {"target": "/sys/fs/bpf/gone/p:ebpfd_policy"}


def test_freplace_waits_for_the_old_extension_to_leave_then_says_ebusy(target_btf, monkeypatch):
    lib = _FakeLib(target_btf)
    fam = freplace(lib, f"{TARGET_PIN}:ebpfd_policy")
    target = fam.resolve(check_mode=True)
    busy = iter([True, True, False])

    def create(prog_fd, fd, attach_type, **kwargs):
        if next(busy):
            raise SyscallError("BPF_LINK_CREATE", errno.EBUSY, "x")
        return 13
    monkeypatch.setattr(lib, "link_create_hook", create)
    monkeypatch.setattr(tracing.time, "sleep", lambda s: None)
    assert fam.attach(5, target) == 13 and lib.open == 0
    monkeypatch.setattr(tracing, "FREPLACE_RELEASE_WAIT", 0.0)
    busy = iter([True] * 3)
    with pytest.raises(EbpfDeployError, match=r"^the kernel refused to attach freplace on function ebpfd_policy of "
                                              r"program id 7 \(BPF_LINK_CREATE: EBUSY\): another freplace program"):
        fam.attach(5, target)
    assert lib.open == 0


def test_freplace_is_refused_under_lockdown_first(monkeypatch):
    monkeypatch.setattr(tracing, "lockdown_mode", lambda: "integrity")
    monkeypatch.setattr(hooks, "kernel_at_least", lambda release, wanted: True)
    with pytest.raises(UnsupportedFeature, match=r"^hook freplace: kernel lockdown \(integrity\) refuses freplace "
                                                 r"programs \(BPF_PROG_LOAD: EPERM\)"):
        freplace(object(), f"{TARGET_PIN}:ebpfd_policy").check_kernel()
