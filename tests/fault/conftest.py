"""Fault suite (issue 8): bad inputs, kills at any point, concurrent runs, a host lost mid-rollout.

Shared code lives in faultlib.py; what the integration tier does too is in tests/helpers.py. At the
end of the session one line per part and a total are printed, e.g.

    fault: bad input: 52 cases, 52 host unchanged, 0 changed

The `lab` fixture is the same as the integration tier's: netns lab hosts (tests/lab/labctl.py), one
lab of three per file.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import pytest

from tests.fault import faultlib
from tests.lab import labctl


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the fault suite needs root (BPF, netns)")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _ansible_temp_of_this_session():
    """Ansible's local and remote temp directories under one of this session's (a worker's, under
    pytest-xdist), removed at its end: the runs this suite kills leave theirs behind (module
    payload caches, AnsiballZ files), which under ~/.ansible/tmp would outlive the suite. The lab
    hosts share this machine's /tmp, so the remote one is reachable from here too."""
    root = tempfile.mkdtemp(prefix="ebpfd-fault-ansible-")
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ANSIBLE_LOCAL_TEMP", os.path.join(root, "local"))
            env.setenv("ANSIBLE_REMOTE_TMP", os.path.join(root, "remote"))
            yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def lab():
    with labctl.running(count=3) as hosts:
        yield hosts


@pytest.fixture(scope="session")
def totals():
    return faultlib.tally


# under pytest-xdist each worker counts its own files: it hands its totals to the controlling
# process, which prints the sum
def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_totals"] = {name: dataclasses.asdict(t) for name, t in faultlib.TOTALS.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    faultlib.merge_totals(getattr(node, "workeroutput", {}).get("fault_totals", {}))


def _line(name: str, t: faultlib.Tally, ok_word: str, bad_word: str) -> str:
    extra = "".join(f", {n} {k}" for k, n in t.notes.items())
    return f"fault: {name}: {t.cases} cases, {t.ok} {ok_word}, {t.changed} {bad_word}, {t.lost} lost{extra}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    parts = faultlib.TOTALS
    if not parts:
        return
    words = {
        "bad input": ("host unchanged", "changed"),
        "kill at any point": ("converged", "not converged"),
        "concurrency": ("consistent", "inconsistent"),
        "host lost": ("consistent", "inconsistent"),
        "controller lost": ("reverted by the host", "not reverted"),
    }
    terminalreporter.section("fault totals")
    for name in ("bad input", "kill at any point", "concurrency", "host lost", "controller lost"):
        if name in parts:
            ok_word, bad_word = words[name]
            t = parts[name]
            if name == "bad input":
                terminalreporter.write_line(
                    f"fault: bad input: {t.cases} cases, {t.ok} host unchanged, {t.changed} changed"
                    + (f", {t.lost} lost" if t.lost else ""))
            else:
                terminalreporter.write_line(_line(name, t, ok_word, bad_word))
    cases = sum(t.cases for t in parts.values())
    ok = sum(t.ok for t in parts.values())
    lost = sum(t.lost for t in parts.values())
    terminalreporter.write_line(
        f"fault: total: {cases} cases run, {ok} ended unchanged or converged, {cases - ok} did not, {lost} lost")
