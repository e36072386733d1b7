"""The execution environment definitions: the tested ansible-core, no hard-coded collection version,
the collection's own requirements as lower bounds, host packages kept out of an image's bindep.

`make publish` renders the definition with ansible-builder and checks what the image would get.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[m[1].lower()] = m[2]
    return pins


def _requirements(path: Path) -> dict[str, str]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", line)
            reqs[m[1].lower()] = m[2]
    return reqs


def test_builder_v3_definition_installs_the_tested_core_and_the_built_collection():
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={_pins(REPO / 'constraints.txt')['ansible-core']}"
    assert ee["images"]["base_image"]["name"]
    (extra,) = ee["additional_build_files"]
    (collection,) = deps["galaxy"]["collections"]
    assert collection["type"] == "file"
    assert collection["name"] == f"{extra['dest']}/{Path(extra['src']).name}"
    # the name `make build-collection` writes besides the versioned one
    assert extra["src"] == "build/ebpf-deploy.tar.gz"
    assert "$(BUILD)/ebpf-deploy.tar.gz" in (REPO / "Makefile").read_text()


def test_definition_does_not_name_the_collection_version():
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    text = (REPO / "execution-environment.yml").read_text()
    assert f"ebpf-deploy-{version}" not in text and f"ebpf-deploy-{version.split('.')[0]}." not in text


def test_collection_metadata_points_at_files_that_ship_with_the_collection():
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    ignored = yaml.safe_load((REPO / "galaxy.yml").read_text()).get("build_ignore", [])
    for kind in ("python", "system"):
        path = meta["dependencies"][kind]
        assert (REPO / path).is_file(), path
        assert path not in ignored, f"{path} is left out of the collection tarball"


def test_collection_python_requirements_are_lower_bounds_pinned_in_constraints():
    reqs = _requirements(REPO / "requirements.txt")
    pins = _pins(REPO / "constraints.txt")
    assert "jmespath" in reqs
    for name, spec in reqs.items():
        assert spec.startswith(">=") and "==" not in spec and "<" not in spec, f"{name}{spec}: not a lower bound"
        assert name in pins, f"{name} has no exact pin in constraints.txt"
        low = tuple(int(p) for p in re.findall(r"\d+", spec)[:3])
        pinned = tuple(int(p) for p in re.findall(r"\d+", pins[name])[:3])
        assert pinned >= low, f"{name}: constraints.txt pins {pins[name]}, below {spec}"
    # pyroute2 is needed on the managed hosts, not on the controller
    assert "pyroute2" not in reqs


def test_bindep_entries_stay_behind_their_profiles():
    """An EE installs bindep entries without a profile: the controller needs no system package,
    and compilers, sshd or the host packages (the host role installs those) must not be among them."""
    host_only = {"libbpf1", "bpftool", "python3-pyroute2", "iproute2"}
    seen = set()
    for line in (REPO / "bindep.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(\S+)(?:\s+\[([^\]]*)\])?$", line)
        assert m, f"unparsable bindep line: {line!r}"
        selectors = (m[2] or "").split()
        assert [s for s in selectors if s.startswith("platform:")], f"{m[1]}: no platform selector"
        profiles = {s for s in selectors if not s.startswith("platform:")}
        assert profiles & {"build", "test"}, f"{m[1]} would be installed into every image"
        seen.add(m[1])
    assert host_only <= seen, "the lab hosts (this machine) need the host packages under the test profile"
