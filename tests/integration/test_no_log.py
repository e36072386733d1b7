"""The inline object (`content`, the whole ELF in base64, up to ~5.6 MB) is never logged.

The action plugins send a controller-side object to the host as `content`. AnsibleModule logs every
invocation (syslog/journald) and returns it as `invocation`; an argument without `no_log` is logged
in full. Each module that takes `content` runs here through a wrapper that records what
AnsibleModule.log is given, in check mode (nothing is loaded or pinned).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BPF_DIR, BPFFS, REPO, forget_deployment, unique

MASK = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
WRAPPER = """
import json, runpy, sys
from ansible.module_utils import basic
log_file, module_file, args_file = sys.argv[1:4]
def log(self, msg, log_args=None):
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"msg": msg, "log_args": log_args}) + "\\n")
basic.AnsibleModule.log = log
sys.argv = [module_file, args_file]
runpy.run_path(module_file, run_name="__main__")
"""


def run_logged(module: str, args: dict, tmp_path: Path) -> tuple:
    """(result, every line AnsibleModule.log was given) of one check-mode run of ``module``."""
    args_file, log_file = tmp_path / "args.json", tmp_path / "log.jsonl"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=True)}),
                         encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO / ".build" / "collections"))
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(log_file), str(REPO / "plugins" / "modules" / f"{module}.py"),
                           str(args_file)], capture_output=True, text=True, env=env, timeout=120, check=False)
    logged = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
    return json.loads(proc.stdout), logged, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", ["bpf_program", "bpf_preflight", "bpf_deployment"])
def test_inline_object_is_neither_logged_nor_returned(module, tmp_path):
    content = base64.b64encode((BPF_DIR / "counter.bpf.o").read_bytes()).decode("ascii")
    root = BPFFS / unique("ebpfd_nolog_", 4)
    name = unique("ebpfd_nolog")
    args = {"src": "counter.bpf.o", "content": content, "bpffs_root": str(root)}
    if module != "bpf_preflight":
        args["name"] = name
    try:
        result, logged, output = run_logged(module, args, tmp_path)
        assert not result.get("failed"), result.get("msg")
        assert "Invoked with" in logged, "AnsibleModule did not log the invocation"
        assert content[:64] not in logged, f"{module} logged the object: {logged[:300]}"
        assert result["invocation"]["module_args"]["content"] == MASK
        assert content[:64] not in output
    finally:
        shutil.rmtree(root, ignore_errors=True)
        forget_deployment(name, root)
