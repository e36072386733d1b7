"""The rollout role takes, per deployment, the options of bpf_deployment: its argument spec offers
the module's options with the same types, choices and defaults (or leaves one out, with the
reason below), its validation accepts them, and its switch hands every one of them on."""
from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "rollout"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
DEPLOYMENT = importlib.import_module("ansible_collections.ebpf.deploy.plugins.modules.bpf_deployment").ARGUMENT_SPEC

# options of bpf_deployment that the role does not take per deployment, and why
LEFT_OUT = {
    "state": "the role's phases choose it (present at the switch, committed, rolled_back)",
    "confirm_timeout": "one for the whole rollout: rollout_confirm_timeout",
    "rollback_to": "the rollback phase returns to the committed record",
    "version": "a rollout ships an object; switching to a pinned version is the rollback's business",
    "content": "set by the action plugin from src, never by a user",
    "signature_content": "set by the action plugin from signature, never by a user",
    "allowed_signers_content": "set by the action plugin from allowed_signers, never by a user",
    "health": "the role's rollout_health, judged in the last deployment's switch",
    "bpffs_root": "one root for every deployment: rollout_bpffs_root",
    "preflight_fail_on": "one for the whole rollout: rollout_preflight and rollout_preflight_fail_on",
    "state_dir": "the host's record stays where the host role's restore service looks (the default)",
    "lock_timeout": "the module's default",
}
# option fields in which the role differs on purpose, and why
DIFFERS = {
    ("src", "required"): "a rollout always ships an object (the module also takes version instead)",
    ("keep_versions", "default"): "omitted, the role's rollout_keep_versions applies",
}
FIELDS = ("type", "elements", "choices", "default", "required")
# bpf_deployment options that reached the role only with this change (role validation refused them)
ADDED = {"checksum": "sha256:" + "0" * 64, "program_type": "xdp", "verifier_log_level": 1,
         "allowed_signers": "/etc/ebpfd/allowed_signers", "signature": "/srv/ebpfd/x.bpf.o.sig",
         "signature_namespace": "ebpf.deploy", "globals": {"target_port": 53, "limits": {"ttl_min": 2}}}
ADDED_ATTACH = {"force": True}
ADDED_MAPS = {"overwrite": False, "value_deployment": "other"}


def _deployment_options(entry_point: str) -> dict:
    return SPECS[entry_point]["options"]["rollout_deployments"]["options"]


def _field(option: dict, field: str):
    value = option.get(field)
    if field == "type":
        return value or "str"
    if field == "required":
        return bool(value)
    if field == "choices" and value is not None:
        return sorted(map(str, value))
    return value


def _compare(module: dict, role: dict, where: str = "") -> list:
    problems = []
    for name in sorted(set(role) - set(module)):
        problems.append(f"{where}{name}: the role offers an option bpf_deployment does not have")
    for name, option in sorted(module.items()):
        if not where and name in LEFT_OUT:
            assert name not in role, f"{name} is listed as left out, but the role offers it"
            continue
        if name not in role:
            problems.append(f"{where}{name}: missing from the role's argument spec")
            continue
        for field in FIELDS:
            if not where and (name, field) in DIFFERS:
                continue
            if _field(option, field) != _field(role[name], field):
                problems.append(f"{where}{name}.{field}: module {option.get(field)!r}, role {role[name].get(field)!r}")
        problems += _compare(option.get("options") or {}, role[name].get("options") or {}, f"{where}{name}[].")
    return problems


@pytest.mark.parametrize("entry_point", ["main", "converged"])
def test_the_role_offers_the_options_of_bpf_deployment(entry_point: str):
    assert _compare(DEPLOYMENT, _deployment_options(entry_point)) == []


def test_left_out_and_differing_options_exist():
    """A reason for an option the module no longer has would hide nothing and mislead."""
    assert set(LEFT_OUT) <= set(DEPLOYMENT)
    assert {name for name, _field in DIFFERS} <= set(DEPLOYMENT)


def _validate(deployment: dict):
    spec = copy.deepcopy(SPECS["main"]["options"])   # the other tests read the spec as the file has it
    return ArgumentSpecValidator(spec).validate({"rollout_deployments": [deployment]})


def test_role_validation_accepts_the_options_it_used_to_refuse():
    deployment = dict(name="fw", src="files/fw.bpf.o", **ADDED,
                      attach=[dict(interface="eth0", program="xdp_fw", **ADDED_ATTACH)],
                      maps=[dict(map="blocklist", key_type="ipv4", entries=[], **ADDED_MAPS)])
    result = _validate(deployment)
    assert result.error_messages == []
    accepted = result.validated_parameters["rollout_deployments"][0]
    assert {k: accepted[k] for k in ADDED} == ADDED
    assert accepted["attach"][0]["force"] is True
    assert accepted["maps"][0]["overwrite"] is False


def test_role_validation_still_refuses_what_bpf_deployment_refuses():
    assert _validate(dict(name="fw", src="x.o", verifier_log_level=3)).error_messages
    assert _validate(dict(name="fw", src="x.o", maps=[dict(map="m", key_type="u7")])).error_messages
    assert _validate(dict(name="fw", src="x.o", attach=[dict(interface="eth0", program="p", forced=True)])).error_messages


@pytest.mark.parametrize("tasks", ["switch.yml", "converged.yml"])
def test_every_option_the_role_takes_reaches_bpf_deployment(tasks: str):
    task = next(t for t in yaml.safe_load((ROLE / "tasks" / tasks).read_text())
                if "ebpf.deploy.bpf_deployment" in t)
    args = task["ebpf.deploy.bpf_deployment"]
    for name in _deployment_options("main"):
        assert name in args and f"item.{name}" in str(args[name]), f"{tasks} does not pass {name} on"


def test_the_readme_names_every_option_of_a_deployment():
    text = (ROLE / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `rollout_deployments` |"))
    options = _deployment_options("main")
    names = set(options) | {sub for name in ("attach", "maps") for sub in options[name]["options"]}
    assert not [name for name in sorted(names) if f"`{name}`" not in row]
