"""The option groups: composed without a name declared twice, and offering exactly what the
managers behind them accept (the groups write their choices out, to keep module payloads small)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _options as options
from ansible_collections.ebpf.deploy.plugins.module_utils._codec import TYPE_NAMES
from ansible_collections.ebpf.deploy.plugins.module_utils._hooks import HOOKS, NF_HOOKS, NF_PFS
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import DEFAULT_BPFFS_ROOT
from ansible_collections.ebpf.deploy.plugins.module_utils._program import MAP_CONFLICT_CHOICES
from ansible_collections.ebpf.deploy.plugins.module_utils._record import DEFAULT_STATE_DIR
from ansible_collections.ebpf.deploy.plugins.module_utils._xdp import METHODS, MODES

SOURCE = Path(options.__file__)


def test_compose_refuses_an_option_declared_twice():
    with pytest.raises(ValueError, match="declared twice: interface"):
        options.compose(options.XDP_ATTACHMENT, interface=dict(type="str"))
    with pytest.raises(ValueError, match="declared twice: bpffs_root"):
        options.compose(options.PINS, options.PINS)


def test_compose_and_require_copy_so_no_module_changes_a_group():
    spec = options.compose(options.OBJECT, options.PINS)
    spec["src"]["required"] = True
    assert "required" not in options.OBJECT["src"]
    assert options.require(options.OBJECT, "src")["src"]["required"] is True
    assert "required" not in options.OBJECT["src"]


def test_the_choices_are_the_ones_the_managers_accept():
    assert set(options.VALUE_TYPES) == set(TYPE_NAMES)
    assert len(options.VALUE_TYPES) == len(TYPE_NAMES)
    assert options.XDP_ATTACHMENT["mode"]["choices"] == list(MODES)
    assert options.XDP_ATTACHMENT["method"]["choices"] == list(METHODS)
    assert options.PROGRAM["map_conflict"]["choices"] == list(MAP_CONFLICT_CHOICES)
    assert options.PINS["bpffs_root"]["default"] == DEFAULT_BPFFS_ROOT
    assert options.RECORD["state_dir"]["default"] == DEFAULT_STATE_DIR
    assert options.HOOK_ATTACHMENT["hook"]["choices"] == sorted(HOOKS)
    assert options.HOOK_ATTACHMENT["pf"]["choices"] == sorted(NF_PFS)
    assert options.HOOK_ATTACHMENT["hooknum"]["choices"] == sorted(NF_HOOKS)


def test_bpf_attach_takes_the_hook_group_and_its_own_options_only():
    from ansible_collections.ebpf.deploy.plugins.modules.bpf_attach import ARGUMENT_SPEC
    own = (set(ARGUMENT_SPEC) - set(options.HOOK_ATTACHMENT) - set(options.XDP_MODE) - set(options.PINS)
           - set(options.LOCK))
    assert own == {"section", "deployment", "program", "pin", "state"}
    assert ARGUMENT_SPEC["mode"] == options.XDP_MODE["mode"] and ARGUMENT_SPEC["method"] == options.XDP_MODE["method"]


def test_deployment_parts_are_the_standalone_groups_plus_what_names_the_part():
    # an item on any hook: bpf_attach's options, XDP's mode and method, the program
    assert set(options.DEPLOYMENT_ATTACH) == (set(options.XDP_ATTACHMENT) | set(options.HOOK_ATTACHMENT)
                                              | {"program"})
    assert set(options.XDP_ATTACHMENT) <= set(options.DEPLOYMENT_ATTACH)
    assert "required" not in options.DEPLOYMENT_ATTACH["interface"]   # a cgroup or tracepoint item has none
    assert set(options.DEPLOYMENT_MAP) == set(options.MAP_ENTRIES) | {"map", "entries"}
    # bpf_map checks each entry; bpf_deployment's entries go to the map manager as they are
    assert options.DEPLOYMENT_MAP["entries"] == dict(type="list", elements="dict", default=[])


def test_options_imports_nothing_of_the_collection():
    """Every module imports _options: it must not pull another module_utils file into the payload."""
    tree = ast.parse(SOURCE.read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("ansible_collections")], imported


def test_attach_program_is_bpf_program_s_alone():
    """freplace programs load with bpf_program (FREPLACE); bpf_deployment refuses them, so it takes no target."""
    from ansible_collections.ebpf.deploy.plugins.modules.bpf_deployment import ARGUMENT_SPEC as DEPLOYMENT_SPEC
    from ansible_collections.ebpf.deploy.plugins.modules.bpf_program import ARGUMENT_SPEC as PROGRAM_SPEC
    assert PROGRAM_SPEC["attach_program"] == options.FREPLACE["attach_program"] == {"type": "path"}
    assert "attach_program" not in DEPLOYMENT_SPEC and "attach_program" not in options.PROGRAM
    assert "freplace" in options.HOOK_ATTACHMENT["hook"]["choices"]
    assert options.DEPLOYMENT_ATTACH["hook"]["choices"] == [h for h in options.HOOK_NAMES if h != "freplace"]
