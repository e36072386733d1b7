"""Module docs declare what the ecosystem looks for, and their samples match what the code emits.

Attributes: `action_group` on every module of the `ebpf` group (meta/runtime.yml), `platform`,
and `action` (full exactly when the module has an action plugin). `seealso` points at the guides
and the kernel's BPF documentation. RETURN documents the failure keys the errors put in a failed
result, and the `error_kind` sample is a kind the verifier parser can return.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
GROUP = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]["ebpf"]
GUIDES = {p.stem for p in (REPO / "docs" / "docsite" / "rst").glob("*.rst")}


def _docs(module: str) -> dict:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{module}.py").read_text())
    strings = {node.targets[0].id: node.value.value for node in tree.body
               if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
               and isinstance(node.value, ast.Constant)}
    return {key: yaml.safe_load(strings[key]) for key in ("DOCUMENTATION", "RETURN")}


def _error_kinds() -> set[str]:
    source = (REPO / "plugins" / "module_utils" / "_verifier.py").read_text()
    block = source.split("_KIND_PATTERNS", 1)[1].split("ERROR_KINDS", 1)[0]
    return set(re.findall(r'^\s*\("(\w+)",', block, re.M)) | {"unknown"}


def test_every_module_is_in_the_action_group():
    assert sorted(GROUP) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_attributes(module: str):
    attributes = _docs(module)["DOCUMENTATION"]["attributes"]
    assert attributes["action_group"]["membership"] == ["ebpf.deploy.ebpf"]
    assert attributes["action_group"]["support"] == "full"
    assert attributes["platform"]["platforms"] in ("linux", "posix", ["linux"], ["posix"])
    has_action_plugin = (REPO / "plugins" / "action" / f"{module}.py").is_file()
    assert attributes["action"]["support"] == ("full" if has_action_plugin else "none")


@pytest.mark.parametrize("module", MODULES)
def test_seealso_points_at_the_guides_and_the_kernel_docs(module: str):
    seealso = _docs(module)["DOCUMENTATION"]["seealso"]
    refs = [entry["ref"] for entry in seealso if "ref" in entry]
    assert refs, "no guide in seealso"
    for ref in refs:
        prefix = "ansible_collections.ebpf.deploy.docsite."
        assert ref.startswith(prefix) and ref[len(prefix):] in GUIDES, ref
    assert "https://docs.kernel.org/bpf/" in [entry.get("link") for entry in seealso]


@pytest.mark.parametrize("module", MODULES)
def test_failure_keys_are_documented(module: str):
    returns = _docs(module)["RETURN"]
    keys = {"errno", "errno_name", "syscall", "target", "requires"}
    if module in ("bpf_program", "bpf_deployment"):
        keys |= {"error_kind", "insn", "reason", "verifier_log", "verifier_summary", "pinned", "wanted"}
    assert not keys - set(returns), f"undocumented failure keys: {sorted(keys - set(returns))}"
    for key in keys - {"program"}:
        # a key that also has a meaning on success (bpf_attach's target) says what it is on failure
        assert "failure" in returns[key]["returned"], key
    if "error_kind" in returns:
        assert returns["error_kind"]["sample"] in _error_kinds()
        for kind in _error_kinds():
            assert f"V({kind})" in " ".join(returns["error_kind"]["description"]), kind
