#!/usr/bin/env bash
# The compat tier: the collection under each newer ansible-core that meta/runtime.yml accepts.
# The versions are the names of the constraints-core-<version>.txt files at the repository root
# (the one list; tests/unit/test_project_files.py holds requires_ansible and the README to it); .venv
# (constraints.txt) is the oldest and runs every other tier. Per version, in .build/venv-core-<version>
# with the Python its constraints file names (`# python: 3.N`, found by tools/find-python):
#   sanity  ansible-test sanity of that ansible-core, with its own default test requirements
#   unit    pytest tests/unit
#   smoke   a few integration tests by node id (below): a real program loaded, one attached to a veth
#           counting packets, and the canary playbook rolled out over SSH to lab hosts
# The venv is re-installed only when its constraints or requirements change (a stamp, as the
# Makefile keeps for .venv). `tools/compat.sh 2.21` runs one version. Every step prints its time; a
# failed step does not stop the others, the exit status says whether all passed.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

SMOKE=(
  tests/integration/test_bpf_program.py::test_load_then_idempotent
  "tests/integration/test_xdp_attach.py::test_attach_counts_packets_and_detach_stops[generic-link]"
  tests/integration/test_rollout.py::test_rollout_goes_stage_by_stage_and_a_rerun_changes_nothing
)

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  for file in constraints-core-*.txt; do
    version=${file#constraints-core-}
    versions+=("${version%.txt}")
  done
fi

# venv_for VERSION: (re-)installs .build/venv-core-VERSION when it is missing or older than what it is
# installed from, and prints its path
venv_for() {
  local version=$1 constraints=constraints-core-$1.txt venv=$repo/.build/venv-core-$1 want python
  [ -f "$constraints" ] || { echo "compat: no $constraints for ansible-core $version" >&2; return 1; }
  if [ ! -f "$venv/.installed" ] || [ -n "$(find "$constraints" requirements-compat.txt requirements.txt \
                                                 -newer "$venv/.installed")" ]; then
    want=$(sed -n 's/^# python: //p' "$constraints")
    [ -n "$want" ] || { echo "compat: $constraints names no '# python: 3.N'" >&2; return 1; }
    python=$(tools/find-python "$want")
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-compat.txt \
      -c "$constraints" 2>&1 | { grep -v "^WARNING: Location 'file:///opt/" || true; } >&2   # absent local indexes
    touch "$venv/.installed"
  fi
  echo "$venv"
}

# check_venv VERSION VENV: the venv's ansible-core is the pinned one, and it is the one the tests
# take (tests/lab/labctl.py: the venv of the Python that runs them, and first on PATH)
check_venv() {
  local version=$1 venv=$2 pinned tests_bin shown
  pinned=$(sed -n 's/^ansible-core==//p' "constraints-core-$version.txt")
  tests_bin=$(PYTHONPATH=$repo "$venv/bin/python" -c 'from tests.lab import labctl; print(labctl.VENV_BIN)')
  [ "$tests_bin" = "$venv/bin" ] || { echo "compat: the tests would run $tests_bin's ansible, not $venv/bin's" >&2; return 1; }
  [ "$(command -v ansible-playbook)" = "$venv/bin/ansible-playbook" ] \
    || { echo "compat: ansible-playbook on PATH is $(command -v ansible-playbook), not $venv/bin's" >&2; return 1; }
  shown=$("$tests_bin/ansible-playbook" --version)
  shown=${shown%%$'\n'*}   # its first line (a `| head` would break ansible's pipe)
  echo "compat $version: $tests_bin/ansible-playbook --version: $shown; $("$venv/bin/python" -V)"
  [[ $shown == *"[core $pinned]"* ]] || { echo "compat: $venv has not ansible-core $pinned" >&2; return 1; }
}

base_path=$PATH
failed=0
for version in "${versions[@]}"; do
  if ! venv=$(venv_for "$version"); then failed=1; continue; fi
  # the venv first on PATH for every step: what a step runs by name is this ansible-core's
  export PATH="$venv/bin:$base_path"
  check_venv "$version" "$venv" || { failed=1; continue; }
  tools/timed "compat $version sanity" env SANITY_VENV="$venv" tools/sanity.sh || failed=1
  tools/timed "compat $version unit" "$venv/bin/python" -m pytest -q tests/unit || failed=1
  tools/timed "compat $version smoke" "$venv/bin/python" -m pytest -q --durations=5 "${SMOKE[@]}" || failed=1
done
exit $failed
