#!/usr/bin/env bash
# Checks that the collection can be published and consumed the way the Ansible ecosystem expects:
#   import  galaxy-importer (the code Galaxy and Automation Hub run on an upload, with its
#           ansible-doc and ansible-lint runs) accepts the tarball `ansible-galaxy collection build`
#           writes, without a warning, and finds every module's docs and every role
#   reuse   every file of the checkout has a licence and a copyright (REUSE.toml) and every
#           licence used has its text in LICENSES/ (`reuse lint`)
#   ee      `ansible-builder create` renders execution-environment.yml (Containerfile and build
#           context) with the tarball `make build-collection` writes, and what the image's builder
#           stage would find in the collection is controller-only: Python requirements as lower
#           bounds, no system package outside the build/test profiles
# Each check prints its own time; `tools/publish.sh ee reuse` runs only those. The tools come from
# .venv-publish (requirements-publish.txt).
# shellcheck disable=SC2317  # the checks are functions that step() calls
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv-publish"
[ -x "$venv/bin/python" ] || { echo "publish: $venv is missing (make publish installs it)" >&2; exit 1; }
mkdir -p "$repo/.build"
work=$(mktemp -d "$repo/.build/publish.XXXXXX")
trap 'rm -rf "$work"' EXIT
# the tools must see the tarball only, not this checkout (the Makefile's ANSIBLE_* point at it)
clean_env=(env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG PATH="$venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
           HOME="$work/home" ANSIBLE_LOCAL_TEMP="$work/tmp")
mkdir -p "$work/home" "$work/tmp"

step() {  # step NAME COMMAND...: run COMMAND, print NAME's time, keep the status
  local name=$1 start rc
  shift
  start=$(date +%s%N)
  "$@" && rc=0 || rc=$?
  printf 'publish: %-7s %s in %.1f s\n' "$name" "$([ $rc -eq 0 ] && echo passed || echo FAILED)" \
    "$(( ($(date +%s%N) - start) / 1000000 ))e-3"
  return $rc
}

import_check() {
  "${clean_env[@]}" "$venv/bin/ansible-galaxy" collection build --output-path "$work" "$repo" >/dev/null
  local tarball=("$work"/ebpf-deploy-*.tar.gz)
  # galaxy-importer requires `repository`. The collection has no public home yet, so galaxy.yml
  # names none (a made-up link would be worse); the check gives the tarball's MANIFEST.json a
  # stand-in and says so. Once galaxy.yml has a repository, the tarball is checked as built.
  "$venv/bin/python" - "${tarball[0]}" <<'PY'
import io, json, sys, tarfile
path = sys.argv[1]
with tarfile.open(path) as tar:
    members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
manifest = next(data for m, data in members if m.name == "MANIFEST.json")
meta = json.loads(manifest)
if meta["collection_info"].get("repository"):
    sys.exit(0)
print("publish: galaxy.yml has no `repository` (no public home yet): importing with a stand-in;"
      " Galaxy refuses an upload until galaxy.yml names the real one")
meta["collection_info"]["repository"] = "https://repository.invalid/ebpf/deploy"
with tarfile.open(path, "w:gz") as tar:
    for member, data in members:
        if member.name == "MANIFEST.json":
            data = json.dumps(meta, indent=4).encode()
            member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data is not None else None)
PY
  local log="$work/import.log" rc=0
  (cd "$work" && "${clean_env[@]}" "$venv/bin/python" -m galaxy_importer.main "${tarball[0]}") >"$log" 2>&1 || rc=$?
  "$venv/bin/python" - "$log" "$work/importer_result.json" "$repo" "$rc" <<'PY'
import json, pathlib, sys
log, result, repo, rc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])
text = log.read_text()
problems = [line for line in text.splitlines() if line.startswith(("ERROR", "WARNING", "CRITICAL"))]
if rc or "Importer processing completed successfully" not in text:
    problems.append(f"galaxy-importer exited {rc} without completing")
if result.is_file():
    blob = json.loads(result.read_text())["docs_blob"]["contents"]
    found = {(c["content_type"], c["content_name"]): c for c in blob}
    modules = sorted(p.stem for p in (repo / "plugins/modules").glob("*.py") if not p.name.startswith("_"))
    roles = sorted(p.name for p in (repo / "roles").iterdir() if p.is_dir())
    for name in modules:
        entry = found.get(("module", name))
        if not entry or not (entry.get("doc_strings") or {}).get("doc"):
            problems.append(f"module {name}: no docs in the import result")
    for name in roles:
        entry = found.get(("role", name))
        if not entry or not entry.get("readme_html"):
            problems.append(f"role {name}: missing from the import result or without a README")
else:
    problems.append("galaxy-importer wrote no importer_result.json")
if problems:
    print(text)
    print("publish: galaxy-importer refused or warned:", *problems, sep="\n  ")
    sys.exit(1)
PY
}

ee_check() {
  make --no-print-directory -C "$repo" build-collection >/dev/null
  local ctx="$work/ee"
  (cd "$repo" && "$venv/bin/ansible-builder" create -f execution-environment.yml -c "$ctx" \
     --output-filename Containerfile >/dev/null)
  # what the image's builder stage does: install the collection, then read its requirements
  (cd "$work" && "${clean_env[@]}" ANSIBLE_COLLECTIONS_PATH="$work/ee-collections" \
     "$venv/bin/ansible-galaxy" collection install --offline \
     -p "$work/ee-collections" "$ctx/_build/collections/ebpf-deploy.tar.gz" >/dev/null)
  "$venv/bin/ansible-builder" introspect --sanitize --write-pip "$work/ee-pip.txt" \
    --write-bindep "$work/ee-bindep.txt" "$work/ee-collections" >/dev/null
  # the packages an image would install from bindep: entries without a profile (this is dpkg)
  "$venv/bin/bindep" -f "$work/ee-bindep.txt" -l newline >"$work/ee-system.txt" || true
  "$venv/bin/python" - "$ctx" "$work" "$repo" <<'PY'
import pathlib, re, sys, tarfile
import yaml
ctx, work, repo = (pathlib.Path(a) for a in sys.argv[1:])
problems = []
containerfile = (ctx / "Containerfile").read_text()
for needle in ("FROM base AS galaxy", "ansible-galaxy collection install", "introspect.py introspect"):
    if needle not in containerfile:
        problems.append(f"Containerfile has no {needle!r}")
(tarball,) = [c["name"] for c in yaml.safe_load((ctx / "_build/requirements.yml").read_text())["collections"]]
built = ctx / "_build" / tarball
version = yaml.safe_load((repo / "galaxy.yml").read_text())["version"]
if not built.is_file():
    problems.append(f"{tarball} is not in the build context")
else:
    with tarfile.open(built) as tar:
        manifest = yaml.safe_load(tar.extractfile("MANIFEST.json"))
    if manifest["collection_info"]["version"] != version:
        problems.append(f"the build context has version {manifest['collection_info']['version']}, galaxy.yml {version}")
pip = [line.split("#")[0].strip() for line in (work / "ee-pip.txt").read_text().splitlines() if line.split("#")[0].strip()]
if not pip:
    problems.append("no Python requirements found in the collection")
for req in pip:
    if re.search(r"==|~=|<", req):
        problems.append(f"Python requirement {req!r} is not a lower bound (exact pins belong in constraints.txt)")
    if req.lower().startswith("pyroute2"):
        problems.append("pyroute2 is a host package, not a controller one")
system = (work / "ee-system.txt").read_text().split()
if system:
    problems.append(f"bindep entries an image would install: {system}")
if problems:
    print("publish: execution environment:", *problems, sep="\n  ")
    sys.exit(1)
PY
}

reuse_check() {
  "$venv/bin/reuse" --root "$repo" lint --quiet || { "$venv/bin/reuse" --root "$repo" lint | tail -30; return 1; }
}

status=0
for check in "${@:-import ee reuse}"; do
  for name in $check; do
    step "$name" "${name}_check" || status=1
  done
done
exit $status
