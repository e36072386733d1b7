"""The execution environment definitions reference files that exist and the pinned ansible-core."""
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


def test_builder_v3_definition_references_existing_files_and_the_pinned_core():
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert (REPO / deps["python"]).is_file() and deps["python"] == "requirements.txt"
    assert (REPO / deps["system"]).is_file() and deps["system"] == "bindep.txt"
    core = deps["ansible_core"]["package_pip"]
    assert core == f"ansible-core=={_pins(REPO / 'requirements.txt')['ansible-core']}"
    assert ee["images"]["base_image"]["name"]
    # the collection tarball the galaxy step installs is the one `make build-collection` writes
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    (extra,) = ee["additional_build_files"]
    assert extra["src"] == f"build/ebpf-deploy-{version}.tar.gz"
    (collection,) = deps["galaxy"]["collections"]
    assert collection["name"] == f"{extra['dest']}/ebpf-deploy-{version}.tar.gz" and collection["type"] == "file"


def test_collection_metadata_points_at_files_that_ship_with_the_collection():
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    ignored = yaml.safe_load((REPO / "galaxy.yml").read_text()).get("build_ignore", [])
    for kind in ("python", "system"):
        path = meta["dependencies"][kind]
        assert (REPO / path).is_file(), path
        assert path not in ignored, f"{path} is left out of the collection tarball"
    assert "ansible-core" in _pins(REPO / meta["dependencies"]["python"])


def test_bindep_build_and_test_packages_stay_behind_their_profiles():
    """An EE installs bindep entries without a profile; compilers and sshd must not be among them."""
    only_when_asked = {"clang", "llvm", "libbpf-dev", "linux-libc-dev", "make", "openssh-server"}
    for line in (REPO / "bindep.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(\S+)(?:\s+\[([^\]]*)\])?$", line)
        assert m, f"unparsable bindep line: {line!r}"
        profiles = (m[2] or "").split()
        assert profiles, f"{m[1]}: no platform selector"
        if m[1] in only_when_asked:
            assert {"build", "test"} & set(profiles), f"{m[1]} would be installed into every image"
