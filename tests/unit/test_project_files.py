"""The files people look for before they use or contribute to a collection are there and true."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _pin(package: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==(\S+)", line.strip())
        if m:
            return m[1]
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def _tested_with() -> dict[str, list[str]]:
    section = README.split("\n## Tested with\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    table = {}
    for row in rows[1:]:  # the first row is the header
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        table[cells[0]] = cells[1:]
    return table


def test_tested_with_names_the_pinned_ansible_core():
    assert _tested_with()["ansible-core"][0] == _pin("ansible-core")


def test_tested_with_covers_controller_host_and_debian_releases():
    table = _tested_with()
    for row in ("controller Python", "host Python", "Debian 12, kernel 6.1", "Debian 13, kernel 6.12"):
        assert row in table, f"README 'Tested with' has no row {row!r}"
    # the VM lab rows stay marked until a tier runs on those kernels
    for row in ("Debian 12, kernel 6.1", "Debian 13, kernel 6.12"):
        assert table[row][0] != "-" or "in progress" in table[row][1], table[row]


def test_code_of_conduct_and_contributing_are_linked_from_the_readme():
    for name in ("CODE_OF_CONDUCT.md", "CONTRIBUTING.md"):
        assert (REPO / name).is_file(), name
        assert f"]({name})" in README, f"README does not link {name}"
    assert "\n## Contributing\n" in README
    conduct = (REPO / "CODE_OF_CONDUCT.md").read_text()
    assert "## Reporting" in conduct


def test_requires_ansible_starts_at_the_tested_core():
    """requires_ansible must not claim releases no tier runs: its lower bound is the tested minor."""
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    tested = ".".join(_pin("ansible-core").split(".")[:2])
    assert runtime["requires_ansible"] == f">={tested}.0", runtime["requires_ansible"]
    for role in ("host", "rollout"):
        meta = yaml.safe_load((REPO / "roles" / role / "meta" / "main.yml").read_text())
        assert meta["galaxy_info"]["min_ansible_version"] == tested, role


# --- molecule: the version, the variables, the scenario a user runs against their own hosts ----------
MOLECULE_GUIDE = (REPO / "docs" / "docsite" / "rst" / "molecule.rst").read_text()
# What molecule itself sets for the playbooks it runs; any other MOLECULE_ name is the project's own
# and would sit in molecule's reserved prefix.
MOLECULE_OWN = {"MOLECULE_EPHEMERAL_DIRECTORY", "MOLECULE_SCENARIO_DIRECTORY", "MOLECULE_PROJECT_DIRECTORY",
                "MOLECULE_SCENARIO_NAME", "MOLECULE_INVENTORY_FILE", "MOLECULE_FILE", "MOLECULE_STATE_FILE"}


def test_molecule_guide_states_the_pinned_molecule_version():
    assert f"molecule {_pin('molecule')}" in MOLECULE_GUIDE
    assert f"molecule=={_pin('molecule')}" in MOLECULE_GUIDE


def test_molecule_scenarios_read_no_variable_of_their_own_with_molecules_prefix():
    used = set()
    for path in [*(REPO / "molecule").rglob("*.yml"), REPO / "tools" / "molecule.sh"]:
        used |= set(re.findall(r"\bMOLECULE_[A-Z0-9_]+", path.read_text()))
    assert "MOLECULE_EPHEMERAL_DIRECTORY" in used   # the check reads the scenarios at all
    assert used <= MOLECULE_OWN, sorted(used - MOLECULE_OWN)


def _code_blocks(rst: str) -> list[str]:
    blocks, lines, i = [], rst.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith(".. code-block::"):
            i += 2
            body = []
            while i < len(lines) and (lines[i].startswith("   ") or not lines[i].strip()):
                body.append(lines[i][3:])
                i += 1
            blocks.append("\n".join(body).strip() + "\n")
        else:
            i += 1
    return blocks


def test_the_guide_shows_the_existing_scenario_as_make_molecule_runs_it():
    """molecule.rst shows molecule/existing's files, which tools/molecule.sh runs: they must not drift."""
    blocks = _code_blocks(MOLECULE_GUIDE)
    for name in ("molecule.yml", "converge.yml", "verify.yml", "vars.yml"):
        text = (REPO / "molecule" / "existing" / name).read_text()
        assert text in blocks, f"molecule.rst does not show molecule/existing/{name} as it is"
    assert "molecule test --all --exclude existing" in (REPO / "tools" / "molecule.sh").read_text()
    assert "molecule test -s existing" in (REPO / "tools" / "molecule.sh").read_text()
