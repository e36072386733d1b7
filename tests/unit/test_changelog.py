"""Changelog fragments are valid, and would render into CHANGELOG.rst at the next release.

Until the first release, changelogs/changelog.yaml has no release and there is no CHANGELOG.rst:
antsibull-changelog renders only released versions. `antsibull-changelog release` writes both at
release time; the preview below does that in a copy of the tree and checks every fragment shows up.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = Path(sys.executable).parent / "antsibull-changelog"
FRAGMENTS = REPO / "changelogs" / "fragments"

pytestmark = pytest.mark.skipif(not CHANGELOG.exists(), reason="antsibull-changelog is not installed (make venv)")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{CHANGELOG.parent}:{os.environ.get('PATH', '')}")
    return subprocess.run([str(CHANGELOG), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_fragments_lint_clean():
    proc = run("lint", cwd=REPO)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_changelog_yaml_lints_clean():
    proc = run("lint-changelog-yaml", "changelogs/changelog.yaml", cwd=REPO)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@pytest.mark.slow
def test_fragments_render_into_the_release_notes(tmp_path):
    for name in ("changelogs", "plugins", "roles", "meta"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "galaxy.yml", tmp_path)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    proc = run("release", "--version", version, "--date", "2026-01-01", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = (tmp_path / "CHANGELOG.rst").read_text()
    assert f"v{version}" in notes
    for fragment in sorted(FRAGMENTS.glob("*.y*ml")):
        for section, entries in yaml.safe_load(fragment.read_text()).items():
            for entry in entries if isinstance(entries, list) else [entries]:
                assert entry.split(" - ")[0] in notes, f"{fragment.name} ({section}) missing"
    for module in ("bpf_program", "bpf_map", "xdp_attach", "bpf_facts", "bpf_preflight"):
        assert f"ebpf.deploy.{module} - " in notes
