#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/ebpf/deploy,
# each test in its own venv. get-pip comes from tools/offline_get_pip.py (no download).
# SANITY_VENV picks the ansible-core that runs it (default .venv; tools/compat.sh passes its own),
# and that venv's Python is the one the tests run on.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${SANITY_VENV:-$repo/.venv}
py="$venv/bin/python"
py_version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test looks for its pip bootstrap script in this cache, named after the pip version it pins
pip_version=$("$py" - <<'PY'
import re, ansible_test, pathlib
src = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache
mkdir -p "$cache"
# written aside and renamed: a sanity run of another ansible-core may be reading it meanwhile
script="$cache/get_pip_${pip_version//./_}.py"
install -m 0644 "$repo/tools/offline_get_pip.py" "$script.$$" && mv -f "$script.$$" "$script"

# a clean copy of what git would ship (tracked and new files, not ignored ones)
# a private copy per run, so that two runs never share (or delete) each other's tree
mkdir -p "$repo/.build"
work=$(mktemp -d "$repo/.build/sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/ebpf/deploy"
mkdir -p "$dest"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q . && git add -A >/dev/null 2>&1   # ansible-test lists files through git when present
"$venv/bin/ansible-test" sanity --venv --python "$py_version" --color no "$@" 2>&1 \
  | grep --line-buffered -v "^WARNING: Location 'file:///opt/"   # this machine's pip config lists absent local indexes
