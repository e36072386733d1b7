#!/usr/bin/env bash
# Builds the HTML docs site with antsibull-docs and Sphinx, as Ansible's own collections do:
# module and role reference from the code, guides from docs/docsite/rst (docs/docsite/extra-docs.yml).
# Any warning fails the build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
site="$repo/.build/docs"
rm -rf "$site"; mkdir -p "$site/rst"
cp "$repo/docs/site/conf.py" "$repo/docs/site/antsibull-docs.cfg" "$site/"
cp "$repo"/docs/site/*.rst "$site/rst/"
chmod og-w "$site/rst"   # antsibull-docs wants the directory writable only by itself

# the changelog: rendered from the fragments as the next release would be (a copy of the tree, so
# nothing here is released or consumed)
preview="$site/changelog-preview"
mkdir -p "$preview"
cp -r "$repo/changelogs" "$repo/plugins" "$repo/roles" "$repo/meta" "$repo/galaxy.yml" "$preview/"
version=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$repo/galaxy.yml")
(cd "$preview" && antsibull-changelog release --version "$version" --date "$(date +%F)" >"$preview/log" 2>&1) || { cat "$preview/log"; exit 1; }
python3 - "$preview/CHANGELOG.rst" "$site/rst/changelog.rst" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
title = "ebpf.deploy changelog (next release, from the fragments)"
# the rendered notes open with an over- and underlined title: give it ours, lines as long
start = next(i for i, line in enumerate(lines) if line.startswith("ebpf.deploy Release Notes"))
body = lines[start + 2:]
rule = "=" * len(title)
open(sys.argv[2], "w").write("\n".join([".. _changelog:", "", rule, title, rule, *body]) + "\n")
PY

antsibull-docs lint-collection-docs --plugin-docs "$repo"
(cd "$site" && antsibull-docs --config-file antsibull-docs.cfg collection --use-current --no-indexes \
  --fail-on-error --dest-dir rst ebpf.deploy)
sphinx-build -M html "$site/rst" "$site/build" -c "$site" -W --keep-going -q
echo "docs site: $site/build/html/index.html"
