"""The changelog follows antsibull-changelog's rules, and CHANGELOG.rst is what it generates.

- Fragments lint clean; none announces a new module or plugin (antsibull-changelog finds those
  from their `version_added`); new roles and playbooks are announced with `add object.role` /
  `add object.playbook`; the next release has a `release_summary`.
- antsibull-changelog generates CHANGELOG.rst from the releases in changelogs/changelog.yaml and
  refuses to while there is none. Until the first release there is no CHANGELOG.rst (a hand-written
  one would be checked by nothing); from then on the checked-in file must be exactly what
  `antsibull-changelog generate` writes. The preview test runs `release` in a copy of the tree,
  checks what the release notes would say, and that `generate` then reproduces them.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = Path(sys.executable).parent / "antsibull-changelog"
FRAGMENTS = REPO / "changelogs" / "fragments"
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))

pytestmark = pytest.mark.skipif(not CHANGELOG.exists(), reason="antsibull-changelog is not installed (make venv)")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{CHANGELOG.parent}:{os.environ.get('PATH', '')}")
    return subprocess.run([str(CHANGELOG), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def fragments() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) or {} for p in sorted(FRAGMENTS.glob("*.y*ml"))}


def entries(fragment: dict) -> list[str]:
    """The change entries of a fragment (not its release summary or its `add ...` lists)."""
    found = []
    for section, value in fragment.items():
        if section == "release_summary" or section.startswith("add "):
            continue
        found.extend(value if isinstance(value, list) else [value])
    return found


def plugins_with_version_added() -> set[str]:
    """Modules and plugins antsibull-changelog announces by itself (they document `version_added`)."""
    names = set()
    for path in (REPO / "plugins").glob("*/*"):
        if path.parent.name in ("module_utils", "action", "doc_fragments") or path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            tree = ast.parse(path.read_text())
            docs = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets)
                    and isinstance(node.value, ast.Constant)]
            doc = yaml.safe_load(docs[0]) if docs else None
        elif path.suffix in (".yml", ".yaml"):
            doc = (yaml.safe_load(path.read_text()) or {}).get("DOCUMENTATION")
        else:
            continue
        if doc and doc.get("version_added"):
            names.add(doc.get("name") or doc.get("module") or path.stem)
    return names


def released_objects(kind: str) -> set[str]:
    changes = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text()) or {}
    names = set()
    for release in (changes.get("releases") or {}).values():
        names.update(obj["name"] for obj in (release.get("objects") or {}).get(kind, []))
    return names


def test_fragments_lint_clean():
    proc = run("lint", cwd=REPO)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_changelog_yaml_lints_clean():
    proc = run("lint-changelog-yaml", "changelogs/changelog.yaml", cwd=REPO)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_no_fragment_announces_a_new_module_or_plugin():
    plugins = plugins_with_version_added()
    assert {"bpf_program", "bpf_deployment", "rollout_summary"} <= plugins, sorted(plugins)
    new = re.compile(r"\bnew (module|plugin|filter|callback|lookup|test|inventory)\b", re.IGNORECASE)
    for name, fragment in fragments().items():
        for section in fragment:
            if section.startswith("add plugin.") or section == "add module":
                added = {item["name"] for item in fragment[section]}
                assert not added & plugins, f"{name}: {section} lists {sorted(added & plugins)}, found from version_added"
        for entry in entries(fragment):
            subject = entry.split(" - ", 1)[0]
            named = {p.strip().removeprefix("ebpf.deploy.") for p in subject.split(",")} & plugins
            assert not (named and new.search(entry)), \
                f"{name}: announces new {sorted(named)}; antsibull-changelog lists it from version_added"


def test_every_role_and_playbook_is_announced():
    announced = {"role": released_objects("role"), "playbook": released_objects("playbook")}
    for fragment in fragments().values():
        for kind in announced:
            announced[kind].update(item["name"] for item in fragment.get(f"add object.{kind}", []))
    assert not set(ROLES) - announced["role"], "roles without `add object.role`"
    assert not set(PLAYBOOKS) - announced["playbook"], "playbooks without `add object.playbook`"


def test_the_next_release_has_a_summary():
    pending = fragments()
    if pending:
        assert [name for name, fragment in pending.items() if fragment.get("release_summary")], \
            "no fragment has a release_summary"


def test_changelog_rst_is_what_antsibull_changelog_generates(tmp_path):
    changes = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text()) or {}
    checked_in = REPO / "CHANGELOG.rst"
    if not changes.get("releases"):
        assert not checked_in.exists(), ("CHANGELOG.rst exists but nothing is released: antsibull-changelog "
                                         "release writes it; do not write it by hand")
        return
    for name in ("changelogs", "plugins", "roles", "meta", "playbooks"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "galaxy.yml", tmp_path)
    proc = run("generate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checked_in.read_text() == (tmp_path / "CHANGELOG.rst").read_text(), \
        "CHANGELOG.rst is not what `antsibull-changelog generate` writes: run it"


@pytest.mark.slow
def test_fragments_render_into_the_release_notes(tmp_path):
    for name in ("changelogs", "plugins", "roles", "meta", "playbooks"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "galaxy.yml", tmp_path)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    proc = run("release", "--version", version, "--date", "2026-01-01", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = (tmp_path / "CHANGELOG.rst").read_text()
    assert f"v{version}" in notes and "Release Summary" in notes
    for name, fragment in fragments().items():
        for entry in entries(fragment):
            assert entry.split(" - ")[0] in notes, f"{name} missing"

    def section(title: str) -> str:
        return notes.split(f"\n{title}\n", 1)[1].split("\n\n", 2)[1] if f"\n{title}\n" in notes else ""

    for module in MODULES:
        assert f"- ebpf.deploy.{module} - " in section("New Modules"), module
    for role in ROLES:
        assert f"- ebpf.deploy.{role} - " in section("New Roles"), role
    for playbook in PLAYBOOKS:
        assert f"- ebpf.deploy.{playbook} - " in section("New Playbooks"), playbook
    # what `release` wrote is valid, and `generate` writes the same notes from it
    proc = run("lint-changelog-yaml", "changelogs/changelog.yaml", cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    proc = run("generate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "CHANGELOG.rst").read_text() == notes
