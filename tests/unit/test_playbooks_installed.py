"""Playbooks run by FQCN from an installed collection, as in an execution environment, and write
only where the user is.

The audit runs against this machine (connection local; bpf_facts only reads the kernel) from an
empty working directory, with the collection installed from its tarball.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="bpf_facts reads BPF state as root"),
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work, REPO],
                   check=True, capture_output=True, text=True, cwd=work, env=env)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    dest = work / "collections"
    subprocess.run([BIN / "ansible-galaxy", "collection", "install", "-p", dest, work / f"ebpf-deploy-{version}.tar.gz"],
                   check=True, capture_output=True, text=True, cwd=work, env=env)
    return dest


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize("report", [None, "reports/fleet.json"])
def test_audit_writes_its_report_where_the_user_is(installed: Path, tmp_path: Path, report):
    collection = installed / "ansible_collections" / "ebpf" / "deploy"
    before = _files(collection)
    cwd = tmp_path / "user"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    args = [BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", "ebpf.deploy.audit",
            "-e", f"ansible_python_interpreter={sys.executable}"]
    if report:
        args += ["-e", f"audit_report={report}"]
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = cwd / (report or "ebpf_deploy_audit.json")
    assert "localhost" in json.loads(written.read_text())
    assert _files(collection) == before, "the audit wrote inside the installed collection"
