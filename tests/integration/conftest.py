"""Integration fixtures: run the collection's real modules through Ansible against the real kernel.

`ansible_module` runs one module ad hoc on localhost (or on a lab host through its inventory) and
returns the parsed result, so a test reads exactly what a playbook user would get back.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))
BPFFS = Path("/sys/fs/bpf")
ANSIBLE = Path(sys.executable).parent / "ansible"   # the venv's, whatever PATH says

_RESULT_LINE = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z!]+)(?: \| rc=\d+)? => (?P<json>\{.*\})\s*$")


class ModuleRun:
    """Runs a module ad hoc and parses the `oneline` callback's JSON result."""

    def __init__(self, inventory: str = "localhost,", host: str = "localhost", extra_env: dict | None = None):
        self.inventory = inventory
        self.host = host
        self.env = dict(os.environ)
        self.env.update(
            ANSIBLE_STDOUT_CALLBACK="oneline",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
            ANSIBLE_NOCOLOR="1",
        )
        self.env.update(extra_env or {})

    def __call__(self, module: str, args: dict, *, check: bool = False, diff: bool = False,
                 host: str | None = None) -> dict:
        fqcn = module if "." in module else f"ebpf.deploy.{module}"
        cmd = [str(ANSIBLE), host or self.host, "-i", self.inventory, "-m", fqcn, "-a", json.dumps(args)]
        if self.inventory == "localhost,":
            cmd += ["-c", "local", "-e", f"ansible_python_interpreter={REPO / '.venv' / 'bin' / 'python'}"]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=300, check=False)
        for line in proc.stdout.splitlines():
            match = _RESULT_LINE.match(line)
            if match:
                result = json.loads(match["json"])
                result.setdefault("failed", match["status"].startswith("FAILED") or match["status"] == "UNREACHABLE!")
                result["_status"] = match["status"]
                result["_stderr"] = proc.stderr
                return result
        raise AssertionError(f"no result from {' '.join(cmd)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


@pytest.fixture(scope="session")
def ansible_module() -> ModuleRun:
    """Run an ebpf.deploy module on localhost: ansible_module('bpf_program', {...}, check=True)."""
    return ModuleRun()


STATE_DIR = Path("/var/lib/ebpf_deploy")   # the host record's default home


def record_dir(root: Path) -> Path:
    """Where the host's record of deployments under a bpffs root lives (as _record.root_id names it)."""
    return STATE_DIR / ("root-" + hashlib.sha256(str(root).encode()).hexdigest()[:12])


@pytest.fixture
def bpffs_root():
    """A fresh, prefixed pin root under the bpffs, removed afterwards with the host's record of it."""
    root = BPFFS / f"ebpfd_test_{secrets.token_hex(4)}"
    yield root
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(record_dir(root), ignore_errors=True)


@pytest.fixture(scope="session")
def bpf_object():
    """Path to a compiled BPF object by file stem, e.g. bpf_object('counter')."""
    def find(stem: str) -> Path:
        path = BPF_DIR / f"{stem}.bpf.o"
        if not path.exists():
            raise AssertionError(f"{path} missing: run `make bpf`")
        return path
    return find


@pytest.fixture(scope="session")
def vm_lab():
    """A lab with one netns host and two VM hosts, debian12 (6.1) and debian13 (6.12), booted once
    per session in parallel; torn down (and checked for leftovers) at the end. Skips, saying why,
    only when qemu cannot run here at all."""
    sys.path.insert(0, str(REPO))
    from tests.lab import labctl  # pylint: disable=import-outside-toplevel

    reason = labctl.vm_unavailable()
    if reason:
        pytest.skip(reason)
    before = labctl.snapshot()
    lab = labctl.new_lab(count=1, vms=2, vm_images=["debian12", "debian13"])
    try:
        t0 = time.monotonic()
        result = lab.up(timeout=1200)
        print(f"\nvm_lab: up in {time.monotonic() - t0:.1f} s; images {result.get('images')}; "
              f"boot {result.get('boot_seconds')}; {'; '.join(result.get('notices', []))}")
        yield lab
    finally:
        lab.down()
        leaks = labctl.leaks(before, labctl.snapshot(), lab)
        assert leaks == {"netns": [], "links": [], "bpffs": [], "pids": {}}, leaks
        assert not lab.lab_dir.exists(), list(lab.lab_dir.rglob("*"))
