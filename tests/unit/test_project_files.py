"""The files people look for before they use or contribute to a collection are there and true."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _pin(package: str, constraints: str = "constraints.txt") -> str:
    for line in (REPO / constraints).read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==(\S+)", line.strip())
        if m:
            return m[1]
    raise AssertionError(f"{package} is not pinned in {constraints}")


def _declared_python(constraints: str) -> str:
    m = re.search(r"^# python: (3\.\d+)\b", (REPO / constraints).read_text(), re.M)
    assert m, f"{constraints} names no '# python: 3.N' (the controller Python its venv is made with)"
    return m[1]


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _tested_cores() -> dict[str, tuple[str, str, str]]:
    """The one list of tested ansible-core releases, minor -> (pinned version, controller Python,
    constraints file): .venv's (constraints.txt, every tier) and one per constraints-core-<minor>.txt,
    the files tools/compat.sh takes its versions from."""
    cores = {}
    for constraints in ["constraints.txt", *sorted(p.name for p in REPO.glob("constraints-core-*.txt"))]:
        pinned = _pin("ansible-core", constraints)
        minor = ".".join(pinned.split(".")[:2])
        assert minor not in cores, f"ansible-core {minor} is pinned by {cores.get(minor, ('', '', ''))[2]} and {constraints}"
        cores[minor] = (pinned, _declared_python(constraints), constraints)
    return dict(sorted(cores.items(), key=lambda item: _minor(item[0])))


def _tested_with() -> dict[str, list[str]]:
    section = README.split("\n## Tested with\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    table = {}
    for row in rows[1:]:  # the first row is the header
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        table[cells[0]] = cells[1:]
    return table


def test_tested_with_names_the_pinned_ansible_core():
    assert _tested_with()[f"ansible-core {'.'.join(_pin('ansible-core').split('.')[:2])}"][0] == _pin("ansible-core")


def test_tested_with_lists_exactly_the_tested_cores_and_their_pythons():
    """One row per ansible-core a venv runs, with its pin and its controller Python; no other."""
    table = _tested_with()
    cores = _tested_cores()
    assert {row for row in table if row.startswith("ansible-core")} == {f"ansible-core {m}" for m in cores}
    for minor, (pinned, python, constraints) in cores.items():
        version, how = table[f"ansible-core {minor}"]
        assert version == pinned, (minor, version, constraints)
        assert f"controller Python {python}" in how and f"`{constraints}`" in how, (minor, how)
    pythons = sorted({python for _pinned, python, _file in cores.values()}, key=_minor)
    assert table["controller Python"][0] == ", ".join(pythons), table["controller Python"]


def test_compat_constraints_are_named_after_the_core_they_pin():
    """tools/compat.sh takes the version from the file's name, the venv gets the pinned one."""
    compat = sorted(REPO.glob("constraints-core-*.txt"))
    assert compat, "no constraints-core-<minor>.txt: `make compat` would test nothing"
    for path in compat:
        minor = path.name.removeprefix("constraints-core-").removesuffix(".txt")
        assert _pin("ansible-core", path.name).startswith(f"{minor}."), path.name


def test_the_main_venv_runs_the_python_constraints_txt_names():
    if Path(sys.executable).parent != REPO / ".venv" / "bin":
        pytest.skip(f"run by {sys.executable}, not .venv (a compat venv of tools/compat.sh)")
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == _declared_python("constraints.txt")


def test_make_test_runs_every_tier_and_the_vm_tier_beside_the_light_ones():
    tiers = re.search(r"^\t@tools/run-tiers (.*)$", (REPO / "Makefile").read_text(), re.M)
    assert tiers, "make test does not go through tools/run-tiers"
    words = tiers[1].split()
    every = {"unit", "sanity", "lint", "docs", "publish", "compat", "integration", "molecule", "fault", "vm"}
    assert every <= set(words) - {"--beside", "--then"}, f"make test leaves out {every - set(words)}"
    assert words[:2] == ["--beside", "vm"], "make test does not run the vm tier beside the others"
    # the tiers that keep both cores busy on their own run after the vm lane, not beside it
    assert "--then" in words and {"integration", "fault"} <= set(words[words.index("--then"):]), words


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
    """requires_ansible must not claim releases no tier runs: from the oldest tested minor (.venv's)
    to the newest one a compat venv runs, and no gap between them."""
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    tested = ".".join(_pin("ansible-core").split(".")[:2])
    minors = [_minor(m) for m in _tested_cores()]
    assert minors[0] == _minor(tested), f"constraints.txt's ansible-core {tested} is not the oldest tested"
    assert minors == [(minors[0][0], n) for n in range(minors[0][1], minors[0][1] + len(minors))], minors
    newest = minors[-1]
    assert runtime["requires_ansible"] == f">={tested}.0,<{newest[0]}.{newest[1] + 1}", runtime["requires_ansible"]
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
