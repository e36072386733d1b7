"""What importing each module compiles of ours before main() runs (issue 19, module start-up).

AnsiballZ ships module_utils as source, so every file a module imports is compiled again in every
module process (tests/bench/startup.py measures it). The standard library modules are not the
cost: ansible.module_utils.basic imports ctypes, json, subprocess and the like itself, and they
come with cached bytecode. So each module is imported in a fresh interpreter after basic, as the
AnsiballZ loader does, and the module_utils (and pyroute2) it pulls in at import time are checked
against what its runs need: a file only some runs use is imported by the function that uses it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[4] / ".build" / "collections"
MODULE_UTILS = "ansible_collections.ebpf.deploy.plugins.module_utils."

# Needed by no module at import: the kernel log (facts' dmesg subset), the verifier log parser (a
# rejection), the host's own CLI, pyroute2 (XDP writes over netlink only).
NEVER = {"_dmesg", "_verifier", "_host_cli", "pyroute2"}
# Per module, what only some of its runs (or other modules) need; the memory model (_limits) is
# bpf_preflight's own business, to the others it is an error hint, a map creation or a facts subset.
NOT_AT_IMPORT = {
    "bpf_attach": {"_limits", "_libbpf", "_program", "_objects", "_map", "_xdp", "_netlink", "_record", "_watcher"},
    "bpf_deployment": {"_limits", "_map", "_btf", "_codec", "_globals", "_preflight", "_features", "_facts", "_signature",
                       "_health"},
    "bpf_facts": {"_limits", "_libbpf", "_netlink", "_pins", "_record", "_program", "_map", "_xdp"},
    "bpf_map": {"_limits", "_program", "_objects", "_xdp", "_netlink", "_record", "_watcher"},
    "bpf_preflight": {"_libbpf", "_objects", "_pins", "_program", "_map", "_xdp", "_netlink", "_record"},
    "bpf_program": {"_limits", "_xdp", "_netlink", "_map", "_btf", "_codec", "_globals", "_record", "_watcher", "_signature"},
    "xdp_attach": {"_limits", "_libbpf", "_program", "_objects", "_elf", "_map", "_record", "_watcher"},
}
# What the import is expected to bring (proves the probe sees our files at all).
NEEDED = {"bpf_attach": "_attach", "bpf_deployment": "_deployment", "bpf_facts": "_facts", "bpf_map": "_map",
          "bpf_preflight": "_preflight", "bpf_program": "_program", "xdp_attach": "_xdp"}

PROBE = textwrap.dedent("""
    import importlib, json, sys
    import ansible.module_utils.basic  # the AnsiballZ loader imports it before the module
    before = set(sys.modules)
    importlib.import_module("ansible_collections.ebpf.deploy.plugins.modules." + sys.argv[1])
    print(json.dumps(sorted(set(sys.modules) - before)))
""")


def imported_by(module: str) -> set[str]:
    """Our module_utils (short names) and top-level packages a fresh import of `module` adds."""
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    names = json.loads(proc.stdout)
    ours = {name[len(MODULE_UTILS):] for name in names if name.startswith(MODULE_UTILS)}
    return ours | {name.split(".")[0] for name in names if not name.startswith("ansible")}


def test_every_module_is_checked():
    modules = {path.stem for path in (COLLECTIONS / "ansible_collections/ebpf/deploy/plugins/modules").glob("*.py")}
    assert modules - {"__init__"} == set(NOT_AT_IMPORT)


@pytest.mark.parametrize("module", sorted(NOT_AT_IMPORT))
def test_module_imports_only_what_its_runs_need(module):
    imported = imported_by(module)
    assert NEEDED[module] in imported, imported
    assert not imported & (NEVER | NOT_AT_IMPORT[module]), sorted(imported & (NEVER | NOT_AT_IMPORT[module]))
