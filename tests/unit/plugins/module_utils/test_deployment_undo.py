"""bpf_deployment's undo with fake managers (no kernel): a failure at each step after the switch
(an attachment, a map write, the record write) undoes what the run did, newest first, and leaves
the record as it was; an undo that fails too says both errors in one line."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import List, Optional

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _deployment as deployment
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._map import MapResult
from ansible_collections.ebpf.deploy.plugins.module_utils._program import ProgramResult
from ansible_collections.ebpf.deploy.plugins.module_utils._xdp import XdpResult

NAME = "ebpfd_undo"
V1, V2 = "111111111111", "222222222222"
ATTACH = [{"program": "xdp_count", "interface": "ebpfd0"}, {"program": "xdp_count", "interface": "ebpfd1"}]
MAPS = [{"map": "counts", "entries": [{"key": 1, "value": 2}]}, {"map": "limits", "entries": [{"key": 3, "value": 4}]}]
HOLDERS = {"ebpfd0": 7, "ebpfd1": None}   # what held each interface before the switch


class Lab:
    """The fakes' shared state: a bpffs-like directory, the journal, the step that fails."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal: List[tuple] = []
        self.fail_at: Optional[tuple] = None
        self.undo_fails_at: Optional[tuple] = None

    @property
    def dep(self) -> Path:
        return self.root / NAME

    def current(self) -> Optional[str]:
        link = self.dep / "current"
        return os.readlink(link) if link.is_symlink() else None

    def step(self, *what) -> None:
        self.journal.append(what)
        if what in (self.fail_at, self.undo_fails_at):
            raise SyscallError("BPF_LINK_UPDATE", 1, f"{what[-1]} (a fake failure)")


class FakeProgram:
    def __init__(self, lab: Lab, request, *, on_switch=None, **_options) -> None:
        self.lab, self.req, self.on_switch = lab, request, on_switch
        self.object_data = None

    def run(self) -> ProgramResult:
        lab, req = self.lab, self.req
        old = lab.current()
        if req.state == "absent":
            shutil.rmtree(lab.dep, ignore_errors=True)
            lab.step("removed", NAME)
            return ProgramResult(changed=old is not None, version=None, previous_version=old)
        version = req.version or (V1 if req.src.endswith("v1.bpf.o") else V2)
        (lab.dep / version).mkdir(parents=True, exist_ok=True)
        if version != old:
            if self.on_switch is not None:
                self.on_switch(version, old)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lab.dep / "current")
            os.symlink(version, lab.dep / "current")
            lab.step("current", version)
        return ProgramResult(changed=version != old, version=version, previous_version=old,
                             action="load" if req.src else ("switch" if version != old else "none"),
                             programs=[{"name": "xdp_count"}], removed_versions=[])

    def unpin_new(self, version: str, *, maps_before: set) -> List[str]:
        shutil.rmtree(self.lab.dep / version)
        self.lab.step("unpinned", version)
        return [f"version {version} unpinned"]


class FakeXdp:
    def __init__(self, lab: Lab, request, *, before_change=None, **_options) -> None:
        self.lab, self.req, self.before_change = lab, request, before_change

    def run(self) -> XdpResult:
        iface = self.req.interface
        if self.before_change is not None:
            self.before_change({"prog_id": HOLDERS[iface], "mode": "generic", "method": "link"}, object())
        self.lab.step("attached", iface)
        return XdpResult(changed=True, action="replace", previous_prog_id=HOLDERS[iface],
                         diff={"before": {}, "after": {}}, extra={"interface": iface, "netns": None})


class FakeMap:
    def __init__(self, lab: Lab, request, *, before_write=None, **_options) -> None:
        self.lab, self.params, self.before_write = lab, request, before_write

    def run(self) -> MapResult:
        pin = str(self.lab.dep / "maps" / self.params["map"])
        self.before_write(pin, [{"key": "01000000", "old": "00" * 8}])
        self.lab.step("written", self.params["map"])
        return MapResult(changed=True, map={"pin": pin, "name": self.params["map"]}, added=[1])


class FakeParts(deployment.Parts):
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def program(self, request, **options):
        return FakeProgram(self.lab, request, **options)

    def xdp(self, request, **options):
        return FakeXdp(self.lab, request, **options)

    def map(self, request, **options):
        return FakeMap(self.lab, request, **options)

    @staticmethod
    def map_request(params: dict):
        return params

    @staticmethod
    def check_interface(spec: dict) -> None:
        pass

    def keep_program(self, bpf, prog_id: int, path: str) -> None:
        self.lab.step("kept", prog_id)

    def give_back(self, root: str, held: dict, *, our_link_pin: str) -> str:
        self.lab.step("given back", held["interface"])
        return "replace" if held.get("prog_id") else "detach"

    def restore_entries(self, pin: str, prior: List[dict]) -> int:
        self.lab.step("restored", os.path.basename(pin))
        return len(prior)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setattr(deployment, "deployment_lock", lambda *_args, **_kw: contextlib.nullcontext())
    monkeypatch.setattr(deployment.watcher, "ensure_runtime", lambda state_dir: None)
    the_lab = Lab(tmp_path / "bpffs")
    the_lab.root.mkdir()
    # v1 deployed and committed by a run that succeeded
    run(the_lab, tmp_path, "v1")
    assert the_lab.current() == V1
    the_lab.journal.clear()
    return the_lab


def run(lab: Lab, tmp_path: Path, which: str) -> dict:
    request = deployment.Request(name=NAME, src=f"/srv/{which}.bpf.o", bpffs_root=str(lab.root),
                                 state_dir=str(tmp_path / "record"), attach=ATTACH, maps=MAPS)
    return deployment.DeploymentManager(request, parts=FakeParts(lab)).run()


def record_of(tmp_path: Path, lab: Lab) -> dict:
    """The record's state, without the time it was written."""
    state = deployment.record.Record(str(tmp_path / "record"), str(lab.root), NAME).state()
    state.pop("updated_at", None)
    return state


DONE = [("current", V2), ("kept", 7), ("attached", "ebpfd0"), ("attached", "ebpfd1"),
        ("written", "counts"), ("written", "limits")]
UNDONE = {
    "attach": [("given back", "ebpfd1"), ("given back", "ebpfd0")],
    "maps": [("restored", "limits"), ("restored", "counts"), ("given back", "ebpfd1"), ("given back", "ebpfd0")],
}


@pytest.mark.parametrize("failing", ["attach", "maps", "record"])
def test_a_failure_after_the_switch_undoes_the_run_newest_first(lab, tmp_path, monkeypatch, failing):
    before = record_of(tmp_path, lab)
    if failing == "attach":
        lab.fail_at = ("attached", "ebpfd1")
        done = DONE[:4]
    elif failing == "maps":
        lab.fail_at = ("written", "limits")
        done = DONE
    else:
        def torn(*_args, **_kw):
            raise OSError(28, "No space left on device", str(tmp_path / "record"))
        monkeypatch.setattr(deployment.record.Record, "store_version", torn)
        done = DONE
    undone = UNDONE.get(failing, UNDONE["maps"]) + [("current", V1), ("unpinned", V2)]

    with pytest.raises(EbpfDeployError) as err:
        run(lab, tmp_path, "v2")

    assert lab.journal == done + undone
    assert lab.current() == V1 and not (lab.dep / V2).exists()
    assert record_of(tmp_path, lab) == before
    assert "\n" not in err.value.msg
    if failing != "attach":
        assert err.value.details["undone"][:2] == ["map limits: 1 entries restored", "map counts: 1 entries restored"]
    assert err.value.details["undone"][-3:] == ["ebpfd0 given back to program id 7", f"version {V1} is current again",
                                                f"version {V2} unpinned"]


def test_an_undo_that_fails_too_reports_both_errors_in_one_line(lab, tmp_path):
    lab.fail_at = ("written", "limits")
    lab.undo_fails_at = ("given back", "ebpfd0")

    with pytest.raises(EbpfDeployError) as err:
        run(lab, tmp_path, "v2")

    msg = err.value.msg
    assert "\n" not in msg
    first, _sep, second = msg.partition("; undoing this run failed too: ")
    assert "limits (a fake failure)" in first and "ebpfd0 (a fake failure)" in second, msg
    assert err.value.details["undo_error"] == second
    # the undo stopped where it failed: what came after it was not attempted
    assert lab.journal[-1] == ("given back", "ebpfd0")
    assert ("current", V1) not in lab.journal
