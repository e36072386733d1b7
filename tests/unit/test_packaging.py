"""The collection builds into a tarball that ansible-galaxy installs, and every module's docs render."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build the collection and install the tarball into an empty collections path."""
    work = tmp_path_factory.mktemp("galaxy")
    # away from the repository's ansible.cfg, which already puts this checkout on the collections path
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work, REPO],
                   check=True, capture_output=True, text=True, cwd=work, env=env)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = work / f"ebpf-deploy-{version}.tar.gz"
    assert tarball.is_file(), sorted(work.iterdir())
    dest = work / "collections"
    subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--force", "-p", dest, tarball],
                   check=True, capture_output=True, text=True, cwd=work, env=env)
    return dest


def test_tarball_installs_without_build_outputs(installed: Path):
    root = installed / "ansible_collections" / "ebpf" / "deploy"
    assert (root / "MANIFEST.json").is_file()
    assert (root / "meta" / "runtime.yml").is_file()
    shipped = [p.relative_to(root) for p in root.rglob("*")]
    assert not [p for p in shipped if p.suffix in (".o", ".pyc") or p.parts[0] in ("build", ".build")
                or p.parts[0].startswith(".venv")]


def test_every_module_is_shipped(installed: Path):
    assert MODULES, "the collection has no modules"
    root = installed / "ansible_collections" / "ebpf" / "deploy" / "plugins" / "modules"
    assert sorted(p.stem for p in root.glob("*.py")) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(installed: Path, module: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([BIN / "ansible-doc", "-t", "module", f"ebpf.deploy.{module}"],
                          capture_output=True, text=True, env=env, check=False, cwd=installed)
    assert proc.returncode == 0, proc.stderr
    assert f"ebpf.deploy.{module}" in proc.stdout
    assert "EXAMPLES:" in proc.stdout and "RETURN VALUES:" in proc.stdout, proc.stdout[:2000]
    assert "[WARNING]" not in proc.stderr, proc.stderr


def test_galaxy_links_are_real_or_absent():
    """A made-up link (example.*, *.invalid, localhost) must not ship; a missing one is reported by make publish."""
    meta = yaml.safe_load((REPO / "galaxy.yml").read_text())
    for key in ("repository", "documentation", "homepage", "issues"):
        url = meta.get(key)
        if url is None:
            continue
        host = url.split("://", 1)[-1].split("/", 1)[0]
        assert url.startswith("https://"), f"{key}: {url}"
        assert not (host.startswith("example.") or host.endswith((".invalid", ".example", ".test", "localhost"))), \
            f"{key} is a placeholder: {url}"


ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_a_readme(role: str):
    """galaxy-importer refuses a collection with a role without README.md (checked for real by make publish)."""
    readme = REPO / "roles" / role / "README.md"
    assert readme.is_file(), f"roles/{role}/README.md is missing"
    text = readme.read_text()
    assert text.startswith(f"# ebpf.deploy.{role}\n"), text[:80]
    assert "```yaml" in text, "no example"


@pytest.mark.parametrize("role", ["host", "rollout"])
def test_role_readme_says_what_users_need(role: str):
    text = (REPO / "roles" / role / "README.md").read_text()
    for heading in ("## Inputs", "## What it changes on the host", "## Idempotence", "## Tags"):
        assert f"\n{heading}\n" in text, f"roles/{role}/README.md: no {heading!r} section"
    # every input of the role's argument spec is named in its README
    spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    for option in spec["argument_specs"]["main"]["options"]:
        assert f"`{option}`" in text, f"roles/{role}/README.md does not mention {option}"
