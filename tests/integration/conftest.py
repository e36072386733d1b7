"""Integration fixtures: run the collection's real modules through Ansible against the real kernel.

`ansible_module` runs one module ad hoc on localhost and returns the parsed result, so a test reads
exactly what a playbook user would get back (tests/helpers.py). One name, one meaning:

* `veth` — a veth pair between two fresh namespaces (tests/integration/xdp_helpers.py VethLab), per
  test; a file names its namespaces with `VETH_TAG` (`ebpfd-<tag>-…`);
* `lab` — netns lab hosts reached over SSH (tests/lab/labctl.py), one lab per file;
* `vm_lab` — a lab with VM hosts, one per session; each test using it reports what it cost in CPU
  (its guests' and the whole machine's) in a table at the end of the run: on 2 cores with TCG guests
  the suite is CPU-bound, so CPU, not wall time, says which test to make cheaper.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import helpers
from tests.integration.xdp_helpers import VethLab
from tests.lab import labctl


@pytest.fixture(scope="session")
def ansible_module() -> helpers.ModuleRun:
    """Run an ebpf.deploy module on localhost: ansible_module('bpf_program', {...}, check=True)."""
    return helpers.ModuleRun()


@pytest.fixture
def bpffs_root():
    """A fresh, prefixed pin root under the bpffs, removed afterwards with the host's record of it."""
    root = helpers.BPFFS / helpers.unique(helpers.TEST_ROOT_PREFIX, 4)
    yield root
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(helpers.record_dir(root), ignore_errors=True)


@pytest.fixture
def deployment(bpffs_root):
    """A fresh deployment name; what its runs leave under /run/ebpf_deploy is removed afterwards."""
    name = helpers.unique("ebpfd_", 4)
    yield name
    helpers.forget_deployment(name, bpffs_root)


@pytest.fixture(scope="session")
def bpf_object():
    """Path to a compiled BPF object by file stem, e.g. bpf_object('counter')."""
    def find(stem: str):
        path = helpers.BPF_DIR / f"{stem}.bpf.o"
        if not path.exists():
            raise AssertionError(f"{path} missing: run `make bpf`")
        return path
    return find


@pytest.fixture
def veth(request):
    """A veth whose host side is in namespace `ebpfd-<VETH_TAG>-…-h` and whose peer sends packets."""
    with VethLab(tag=getattr(request.module, "VETH_TAG", "it")) as pair:
        yield pair


@pytest.fixture(scope="session")
def vm_lab():
    """A lab with one netns host and two VM hosts, debian12 (6.1) and debian13 (6.12), booted once
    per session in parallel (`make vm` runs the VM files on two workers, each a session of its own);
    torn down (and checked for leftovers) at the end. Skips, saying why, only when qemu cannot run
    here at all."""
    reason = labctl.vm_unavailable()
    if reason:
        pytest.skip(reason)
    before = labctl.snapshot()
    lab = labctl.new_lab(count=1, vms=2, vm_images=["debian12", "debian13"])
    try:
        t0 = time.monotonic()
        result = lab.up(timeout=1200)
        print(f"\nvm_lab: up in {time.monotonic() - t0:.1f} s (guests' CPU {labctl.cpu_seconds(v['pid'] for v in lab.vm_hosts):.1f} s); "
              f"images {result.get('images')}; boot {result.get('boot_seconds')}; {'; '.join(result.get('notices', []))}")
        yield lab
    finally:
        lab.down()
        leaks = labctl.leaks(before, labctl.snapshot(), lab)
        assert leaks == {"netns": [], "links": [], "bpffs": [], "pids": {}}, leaks
        assert not lab.lab_dir.exists(), list(lab.lab_dir.rglob("*"))


@pytest.fixture(autouse=True)
def _vm_cpu(request):
    """A VM test's wall time, its guests' CPU time (every qemu of the lab) and the machine's."""
    if "vm_lab" not in request.fixturenames:
        yield
        return
    lab = request.getfixturevalue("vm_lab")
    pids = [v["pid"] for v in lab.vm_hosts]
    guests, machine, start = labctl.cpu_seconds(pids), labctl.machine_cpu_seconds(), time.monotonic()
    yield
    request.node.user_properties.append(("vm_cpu", {
        "wall": time.monotonic() - start, "guests": labctl.cpu_seconds(pids) - guests,
        "machine": labctl.machine_cpu_seconds() - machine}))


def pytest_terminal_summary(terminalreporter):
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", []))
            if getattr(report, "when", None) == "teardown" and "vm_cpu" in props:
                rows.append((report.nodeid, props["vm_cpu"]))
    if not rows:
        return
    terminalreporter.write_sep("-", "VM tests: wall and CPU seconds (guests: the lab's qemus; machine: every core)")
    for nodeid, cpu in sorted(rows, key=lambda row: -row[1]["guests"]):
        terminalreporter.write_line(f"{cpu['wall']:8.1f} wall {cpu['guests']:8.1f} guests {cpu['machine']:8.1f} machine  "
                                    f"{nodeid.split('::', 1)[-1]}")
    # no machine total: tests of the two VM files run at the same time, so their machine seconds overlap
    # (the vm tier's own row in run-tiers says what the machine spent); each file has its own guests
    totals = {key: sum(cpu[key] for _nodeid, cpu in rows) for key in ("wall", "guests")}
    terminalreporter.write_line(f"{totals['wall']:8.1f} wall {totals['guests']:8.1f} guests {'':18s}"
                                f"all {len(rows)} VM tests")


class Signing(type(Path())):
    """A directory of signing material (see the ``signing`` fixture)."""

    def fingerprint(self, key: str) -> str:
        return ssh_keygen("-l", "-f", str(self / f"{key}.pub")).split()[1]   # SHA256:...


def ssh_keygen(*args: str) -> str:
    return subprocess.run(["ssh-keygen", *args], capture_output=True, check=True, text=True).stdout


@pytest.fixture
def signing(tmp_path, bpf_object):
    """Two ed25519 keys (ops@ebpfd allowed, rogue not), counter and counter_v2 copied beside their
    signatures: counter.bpf.o signed by ops, counter_v2.bpf.o by rogue, a tampered copy of counter
    with ops's signature of the original, and an unsigned copy."""
    for key in ("ops", "rogue"):
        ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(tmp_path / key))
    public = (tmp_path / "ops.pub").read_text().split()
    (tmp_path / "allowed_signers").write_text(f'ops@ebpfd namespaces="ebpf.deploy" {public[0]} {public[1]}\n')
    for stem, key in (("counter", "ops"), ("counter_v2", "rogue")):
        (tmp_path / f"{stem}.bpf.o").write_bytes(bpf_object(stem).read_bytes())
        ssh_keygen("-Y", "sign", "-f", str(tmp_path / key), "-n", "ebpf.deploy", str(tmp_path / f"{stem}.bpf.o"))
    tampered = tmp_path / "tampered.bpf.o"
    tampered.write_bytes(bpf_object("counter").read_bytes() + b"\0")
    (tmp_path / "tampered.bpf.o.sig").write_bytes((tmp_path / "counter.bpf.o.sig").read_bytes())
    (tmp_path / "unsigned.bpf.o").write_bytes(bpf_object("counter").read_bytes())
    return Signing(tmp_path)
