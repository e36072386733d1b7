"""Module docs declare what the ecosystem looks for, and their samples match what the code emits.

The docs are read as ansible-doc reads them: DOCUMENTATION from the module's AST with its
`extends_documentation_fragment` merged by ansible-core's own `add_fragments` (the fragments read
from plugins/doc_fragments/ by AST too). RETURN takes no fragments in ansible-core.

Attributes: `action_group` on every module of the `ebpf` group (meta/runtime.yml), `platform`,
and `action` (full exactly when the module has an action plugin). The merged options are the
module's argument spec (names, types, defaults, choices, required, to the last sub-option).
`seealso` points at the guides and the kernel's BPF documentation. RETURN documents the failure
keys the errors put in a failed result, and the `error_kind` sample is a kind the verifier parser
can return.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest
import yaml
from ansible.utils.plugin_docs import add_fragments

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
GROUP = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]["ebpf"]
GUIDES = {p.stem for p in (REPO / "docs" / "docsite" / "rst").glob("*.rst")}


def _strings(body: list) -> dict:
    """The string constants assigned by name in a module's or a class's body."""
    return {node.targets[0].id: node.value.value for node in body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


class _Fragments:
    """What add_fragments asks of ansible's fragment loader: the fragment class of a name, or None."""

    def get(self, name: str) -> Optional[SimpleNamespace]:
        short = name[len("ebpf.deploy."):] if name.startswith("ebpf.deploy.") else None
        path = REPO / "plugins" / "doc_fragments" / f"{short}.py"
        if short is None or "." in short or not path.is_file():
            return None   # add_fragments then tries the last part as the fragment's variable
        tree = ast.parse(path.read_text())
        body = next(node.body for node in tree.body if isinstance(node, ast.ClassDef)
                    and node.name == "ModuleDocFragment")
        return SimpleNamespace(ansible_name=name, **_strings(body))


def _docs(module: str) -> dict:
    path = REPO / "plugins" / "modules" / f"{module}.py"
    strings = _strings(ast.parse(path.read_text()).body)
    docs = {key: yaml.safe_load(strings[key]) for key in ("DOCUMENTATION", "RETURN")}
    add_fragments(docs["DOCUMENTATION"], str(path), _Fragments(), is_module=True)
    return docs


def _spec_of_docs(options: dict) -> dict:
    return {name: (opt.get("type", "str"), opt.get("default"), sorted(map(str, opt.get("choices") or [])),
                   bool(opt.get("required")), opt.get("elements"), _spec_of_docs(opt.get("suboptions") or {}))
            for name, opt in options.items()}


def _spec_of_code(spec: dict) -> dict:
    return {name: (opt.get("type", "str"), opt.get("default"), sorted(map(str, opt.get("choices") or [])),
                   bool(opt.get("required")), opt.get("elements"), _spec_of_code(opt.get("options") or {}))
            for name, opt in spec.items()}


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


def test_fragments_are_merged_as_ansible_doc_merges_them():
    docs = _docs("bpf_program")["DOCUMENTATION"]
    assert "extends_documentation_fragment" not in docs
    assert docs["options"]["keep_versions"]["default"] == 1               # ebpf.deploy.program
    assert docs["attributes"]["action"]["support"] == "full"              # ...attributes.action_plugin
    assert docs["attributes"]["check_mode"]["support"] == "full"          # ebpf.deploy.attributes
    assert docs["attributes"]["check_mode"]["details"]                    # the module's own, kept
    with pytest.raises(Exception, match="unknown doc_fragment"):
        add_fragments({"extends_documentation_fragment": ["ebpf.deploy.nothing"]}, "x", _Fragments())


@pytest.mark.parametrize("module", MODULES)
def test_documented_options_are_the_argument_spec(module: str):
    code = importlib.import_module(f"ansible_collections.ebpf.deploy.plugins.modules.{module}")
    assert _spec_of_docs(_docs(module)["DOCUMENTATION"]["options"]) == _spec_of_code(code.ARGUMENT_SPEC)


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
